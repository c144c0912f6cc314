"""Extra SMTP intake processes, as Postfix runs several `smtpd` beside one `qmgr`.

With `[server] intake_processes = N` (N > 1) the gateway starts N children that
each listen on the same address (SO_REUSEPORT: the kernel spreads connections),
accept mail exactly as the gateway's own loop does with N = 1 (same handler, same
spool, fsync before 250) and tell the queue process, which then takes no SMTP
itself, about each accepted message by writing its id to a pipe. The spool stays the truth: a notification lost with a crash
is found by the queue's scan of incoming/ and at the next start.

    python -m gateway.intake CONFIG NOTIFY_FD PARENT_PID
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway import eventlog
from gateway.config import Config, load_config
from gateway.metrics import Metrics
from gateway.smtp_in import RelayHandler, start_smtp
from gateway.spool import Envelope, Spool

PARENT_CHECK_SECONDS = 1.0


async def _serve_intake(cfg: Config, notify_fd: int, parent: int) -> None:
    # The parent's pid comes from the parent: read here, it could already be init's
    # if the gateway died while this process was still starting.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def accepted(envelope: Envelope) -> None:
        try:
            os.write(notify_fd, f"{envelope.id}\n".encode())  # < PIPE_BUF: one atomic write
        except OSError:
            stop.set()  # the queue process is gone; the message is safe in incoming/

    handler = RelayHandler(cfg, Spool(cfg.spool.path), Metrics(), accepted)
    server = await start_smtp(cfg, handler, reuse_port=True)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    eventlog.event("intake-listening", listen=cfg.server.listen, pid=os.getpid())
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=PARENT_CHECK_SECONDS)
        except TimeoutError:
            if os.getppid() != parent:  # the gateway died: never accept mail nobody will send
                eventlog.warning("intake-orphaned", pid=os.getpid())
                stop.set()
    handler.accepting = False
    server.close()
    await server.wait_closed()
    eventlog.event("intake-stopped", pid=os.getpid())


def spawn(config_path: str, count: int, notify_fd: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-m", "gateway.intake", config_path, str(notify_fd), str(os.getpid())],
                         pass_fds=(notify_fd,))
        for _ in range(count)
    ]


def main() -> None:
    config_path, fd, parent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    eventlog.setup()
    if os.getppid() != parent:
        return  # the gateway is already gone
    asyncio.run(_serve_intake(load_config(Path(config_path)), fd, parent))


if __name__ == "__main__":
    main()
