"""Prometheus metrics and the health endpoint, on an optional loopback HTTP listener."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("sikkermail_received_total", "Messages accepted (250)", registry=r)
        self.rejected = Counter("sikkermail_rejected_total", "Messages or commands refused", ["reason"], registry=r)
        self.delivered = Counter("sikkermail_delivered_total", "Recipients delivered", ["protection"], registry=r)
        self.deferred = Counter("sikkermail_deferred_total", "Recipient delivery attempts deferred", registry=r)
        self.bounced = Counter("sikkermail_bounced_total", "Recipients bounced", registry=r)
        self.quarantined = Counter("sikkermail_quarantined_total", "Recipients quarantined", registry=r)
        self.blocked = Counter("sikkermail_blocked_total", "Recipients blocked", registry=r)
        self.queue_size = Gauge("sikkermail_queue_messages", "Messages in the spool", ["state"], registry=r)
        self.latency = Histogram(
            "sikkermail_delivery_latency_seconds", "From 250 to the recipient's delivery",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400), registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def start_health_server(
    host: str, port: int, metrics: Metrics, refresh: Callable[[], None], healthy: Callable[[], bool]
) -> asyncio.Server:
    """GET /metrics (Prometheus text) and GET /healthz (200 ok / 503)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path == b"/metrics":
                refresh()
                status, body, ctype = b"200 OK", metrics.render(), CONTENT_TYPE_LATEST.encode()
            elif path == b"/healthz":
                ok = healthy()
                status = b"200 OK" if ok else b"503 Service Unavailable"
                body, ctype = (b"ok\n" if ok else b"unhealthy\n"), b"text/plain"
            else:
                status, body, ctype = b"404 Not Found", b"not found\n", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
