"""The delivery connection cache never carries mail over a connection whose TLS checks
were made for something else. Real Deliverer, real DNS, a real MX server with TLS."""

from __future__ import annotations

import asyncio

from gateway.delivery import Deliverer, DeliveryJob, DeliverySettings, Outcome
from policy.model import Protection
from tlsprobe.mx import make_resolver, resolve_mx


def _deliverer(tls_lab) -> Deliverer:
    return Deliverer(DeliverySettings(hostname="gw.sikkermail.test", mx_port=tls_lab.port, connect_timeout=3.0,
                                      delivery_timeout=10.0, min_tls_version="TLSv1.2", ca_file=tls_lab.ca_file))


def test_a_connection_verified_for_one_mx_name_is_not_reused_for_another_name_on_that_address(tls_lab, tmp_path):
    server = tls_lab.start("tls13")  # its certificate names server.name only
    alias = f"alias-{server.name}"
    zone = tls_lab.dns.zone
    zone.add(alias, "A", server.address)
    tls_lab.mail_domain("cache-a.test", [server])
    zone.add("cache-b.test", "MX", f"10 {alias}.")
    payload = tmp_path / "message"
    payload.write_bytes(b"From: a@firm.test\r\nSubject: x\r\n\r\nbody\r\n")
    resolver = make_resolver([("127.0.0.1", tls_lab.dns.port)], 2.0)
    deliverer = _deliverer(tls_lab)

    def job(domain: str) -> DeliveryJob:
        return DeliveryJob(domain=domain, sender="a@firm.test", recipients=(f"x@{domain}",), payload=payload,
                           protection=Protection.TLS_VERIFIED)

    async def run():
        try:
            first = await deliverer.deliver(job("cache-a.test"), await resolve_mx(resolver, "cache-a.test"))
            # at once, while the first connection waits in the cache for the next message
            second = await deliverer.deliver(job("cache-b.test"), await resolve_mx(resolver, "cache-b.test"))
            return first, second
        finally:
            await deliverer.close()

    (first,), (second,) = asyncio.run(run())
    assert first.outcome is Outcome.DELIVERED and first.tls is not None
    assert first.tls.mx == server.name and first.tls.verified
    assert second.outcome is Outcome.DEFERRED, second
    assert alias in second.response and "TLS handshake failed" in second.response
    assert [m.rcpt_tos for m in server.messages] == [("x@cache-a.test",)]
    assert server.connections == 2, "the second domain got its own connection, checked for its own MX name"
