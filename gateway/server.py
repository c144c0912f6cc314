"""`sikkermail serve`: one event loop running SMTP in, the queue and the health listener.

SIGTERM (and SIGINT): stop accepting, let in-flight deliveries finish within a
grace period, stop. Whatever did not finish is still on disk and resumes at the
next start. SIGHUP: reload the policy file; an invalid one keeps the old policy
and says why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gateway import eventlog
from gateway.config import Config, parse_host_port
from gateway.facts import FactGatherer
from gateway.intake import spawn
from gateway.metrics import Metrics, start_health_server
from gateway.pipeline import Pipeline, PolicyHolder
from gateway.queue import QueueManager
from gateway.smtp_in import RelayHandler, start_smtp
from gateway.spool import Spool
from policy.policyfile import PolicyError, load_policy

DRAIN_GRACE = 30.0


@dataclass
class IntakeChildren:
    processes: list[subprocess.Popen[bytes]]
    read_fd: int
    write_fd: int


HOUSEKEEPING_INTERVAL = 3600.0


class Gateway:
    def __init__(self, cfg: Config) -> None:
        from gateway.audit import open_audit

        self.cfg = cfg
        self.metrics = Metrics()
        self.spool = Spool(cfg.spool.path)
        self.policy = PolicyHolder(load_policy(Path(cfg.policy.file)))
        self.gatherer = FactGatherer(cfg)
        self.audit = open_audit(cfg)
        self.queue = QueueManager(cfg, self.spool, Pipeline(cfg, self.policy, self.gatherer), self.audit,
                                  self.metrics)
        self.handler = RelayHandler(cfg, self.spool, self.metrics, self.queue.accepted)
        self.stopped = asyncio.Event()

    def reload_policy(self) -> None:
        try:
            self.policy.current = load_policy(Path(self.cfg.policy.file))
        except PolicyError as exc:
            eventlog.error("policy-reload-rejected", problems=[str(p) for p in exc.problems],
                           kept=self.policy.current.source)
            return
        eventlog.event("policy-reloaded", file=self.cfg.policy.file)

    async def _housekeeping(self) -> None:
        """Hourly: held messages past their retention and old finished envelopes go, audited."""
        from gateway.quarantine import purge

        loop = asyncio.get_running_loop()
        while True:
            try:
                purged = await loop.run_in_executor(None, partial(purge, self.cfg, self.audit, operator="sikkermail"))
                removed = await loop.run_in_executor(None, self.spool.purge_done, self.cfg.spool.done_retention)
                if purged or removed:
                    eventlog.event("housekeeping", quarantine_purged=len(purged), spool_done_removed=removed)
            except Exception as exc:  # housekeeping must never stop the relay
                eventlog.error("housekeeping-failed", error=repr(exc))
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    def _start_intake(self, loop: asyncio.AbstractEventLoop) -> IntakeChildren | None:
        """Intake processes (gateway/intake.py); they tell us about accepted mail by pipe.

        With more than one, all of them are children and this process only runs the
        queue, as Postfix's qmgr takes no SMTP itself: measured with bench/relay.py the
        queue process is the relay's limit, and SMTP in on its loop took about a fifth
        of its time."""
        count = self.cfg.server.intake_processes
        if count <= 1:
            return None
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        buffer = bytearray()

        def readable() -> None:
            try:
                chunk = os.read(read_fd, 65536)
            except BlockingIOError:
                return
            buffer.extend(chunk)
            *lines, rest = bytes(buffer).split(b"\n")
            buffer[:] = rest
            for line in lines:
                if line:
                    self.metrics.received.inc()
                    self.queue.accepted_id(line.decode("ascii"))

        loop.add_reader(read_fd, readable)
        processes = spawn(self.cfg.path, count, write_fd)
        eventlog.event("intake-started", processes=[p.pid for p in processes])
        return IntakeChildren(processes, read_fd, write_fd)

    async def _stop_intake(self, children: IntakeChildren | None) -> None:
        if children is None:
            return
        for process in children.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        for process in children.processes:
            try:
                await loop.run_in_executor(None, process.wait, DRAIN_GRACE)
            except Exception:  # a stuck child is killed; its mail is on disk or was never acknowledged
                process.kill()
        # whatever they reported last is still in the pipe
        loop.remove_reader(children.read_fd)
        os.close(children.write_fd)
        os.close(children.read_fd)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.queue.start()
        smtp = await start_smtp(self.cfg, self.handler) if self.cfg.server.intake_processes == 1 else None
        health = None
        if self.cfg.server.health_listen:
            host, port = parse_host_port(self.cfg.server.health_listen)
            health = await start_health_server(host, port, self.metrics, self.queue._refresh_gauges,
                                               lambda: not self.queue.stopping)
        loop.add_signal_handler(signal.SIGTERM, self.stopped.set)
        loop.add_signal_handler(signal.SIGINT, self.stopped.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_policy)
        children = self._start_intake(loop)
        queue_task = asyncio.create_task(self.queue.run())
        housekeeping = asyncio.create_task(self._housekeeping())
        eventlog.event("listening", listen=self.cfg.server.listen, spool=self.cfg.spool.path)
        try:
            await self.stopped.wait()
        finally:
            eventlog.event("stopping")
            self.handler.accepting = False
            if smtp is not None:
                smtp.close()
            await self._stop_intake(children)
            await self.queue.drain(DRAIN_GRACE)
            queue_task.cancel()
            housekeeping.cancel()
            if health is not None:
                health.close()
            await self.queue.deliverer.close()
            await self.gatherer.close()
            await self.audit.close()
            eventlog.event("stopped")


def serve(cfg: Config) -> None:
    eventlog.setup()
    Spool(cfg.spool.path).ensure()
    asyncio.run(Gateway(cfg).run())
