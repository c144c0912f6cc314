"""An MTA-STS `enforce` policy binds every delivery to the domain (RFC 8461 §5), not only
tls-verified mail: only the MX hosts it names, only over TLS with a certificate valid for
the MX name. Real gateway process, real DNS, real MX servers, real HTTPS policy server.
"""

from __future__ import annotations

import asyncio
import json

from gateway.config import load_config
from gateway.facts import FactGatherer
from policy.model import Protection
from tests.fixtures.relay_lab import wait_until
from tests.fixtures.tls_delivery import confidential_message as _confidential
from tests.fixtures.tls_delivery import delivered_tls as _journal_tls
from tests.fixtures.tls_delivery import recipient_state as _recipient


def _public(to: str) -> bytes:
    return (f"From: advokat@firm.test\r\nTo: {to}\r\nSubject: Frokost\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nSes vi til frokost?\r\n").encode()


def test_enforce_policy_holds_confidential_mail_its_permitted_mx_cannot_take(tls_lab, tls_only_gateway):
    # The outsider (preferred, valid TLS) is not in the policy; the permitted MX has a
    # self-signed certificate. Enforce mode demands a certificate valid for the MX name
    # (RFC 8461 §4.2), so neither MX may get the mail and the domain grades "none": the
    # confidential message is held at once, not tried as tls-enforced until max_age.
    outsider = tls_lab.start("tls13")
    permitted = tls_lab.start("selfsigned")
    domain = tls_lab.mail_domain("sts-unverified.test", [outsider, permitted])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(permitted.name,), policy_id="e1")
    gw = tls_only_gateway()
    address = f"x@{domain}"
    assert gw.send("advokat@firm.test", [address], _confidential(address))[0] == 250
    assert wait_until(lambda: _recipient(gw, address).get("status") == "quarantined", timeout=20)
    held = [h for h in json.loads(gw.cli("quarantine", "list", "--json").stdout) if address in h["recipients"]]
    assert len(held) == 1
    reason = held[0]["reasons"][address]
    assert "MTA-STS enforce policy requires a certificate valid for the MX name" in reason
    assert outsider.messages == [] and outsider.mail_commands == 0
    assert permitted.messages == [] and permitted.mail_commands == 0


def test_enforce_policy_binds_public_mail_too(tls_lab, tls_only_gateway):
    outsider = tls_lab.start("tls13")
    permitted = tls_lab.start("tls12")
    domain = tls_lab.mail_domain("sts-public.test", [outsider, permitted])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(permitted.name,), policy_id="p1")
    gw = tls_only_gateway()
    address = f"y@{domain}"
    assert gw.send("advokat@firm.test", [address], _public(address))[0] == 250
    assert wait_until(lambda: len(permitted.messages) == 1)
    assert outsider.messages == [] and outsider.mail_commands == 0
    assert _recipient(gw, address)["protection"] == "tls-opportunistic"
    assert wait_until(lambda: _journal_tls(gw, address) is not None)
    tls = _journal_tls(gw, address)
    assert tls["mx"] == permitted.name and tls["version"] == "TLSv1.2" and tls["verified"] is True
    assert "MTA-STS enforce" in tls["verification"]


def _gatherer(tls_lab, tmp_path, timeout: float) -> FactGatherer:
    config = tmp_path / "sikkermail.toml"
    config.write_text(tls_lab.config_toml().replace('timeout = "1s"', 'timeout = "3s"')
                      + f'\n[spool]\npath = "{tmp_path / "spool"}"\n')
    return FactGatherer(load_config(config), timeout=timeout)


def test_a_cached_enforce_policy_still_applies_when_the_grade_cannot_be_had(tls_lab, tmp_path):
    permitted = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("sts-cached.test", [permitted])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(permitted.name,), policy_id="c1")

    async def first() -> None:
        async with _gatherer(tls_lab, tmp_path, timeout=10) as g:
            # public mail: no probe, only the policy, which lands in the persistent cache
            rule = await g.delivery_mx_policy(domain, Protection.TLS_OPPORTUNISTIC)
            assert rule.known and rule.enforce

    asyncio.run(first())
    zone = tls_lab.dns.zone
    zone.hang(domain)  # MX lookups go unanswered: the probe cannot finish
    zone.hang(f"_mta-sts.{domain}")
    try:
        async def second() -> None:
            async with _gatherer(tls_lab, tmp_path, timeout=1) as g:
                for protection in (Protection.TLS_ENFORCED, Protection.TLS_OPPORTUNISTIC):
                    rule = await g.delivery_mx_policy(domain, protection)
                    assert rule.known and rule.enforce, (protection, rule)
                    assert rule.mx_allowed is not None
                    assert rule.mx_allowed(permitted.name) and not rule.mx_allowed(f"other.{domain}")

        asyncio.run(second())
    finally:
        zone.remove(domain)
        zone.remove(f"_mta-sts.{domain}")


def test_protected_mail_waits_when_neither_grade_nor_policy_can_be_had(tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("sts-unknown.test", [server])
    zone = tls_lab.dns.zone
    zone.hang(domain)
    zone.hang(f"_mta-sts.{domain}")
    try:
        async def check() -> None:
            async with _gatherer(tls_lab, tmp_path, timeout=1) as g:
                protected = await g.delivery_mx_policy(domain, Protection.TLS_VERIFIED)
                assert not protected.known and "unknown" in protected.reason
                # RFC 8461 §3.3: no cached policy and none to be had is "no policy" for other mail
                public = await g.delivery_mx_policy(domain, Protection.TLS_OPPORTUNISTIC)
                assert public.known and not public.enforce and public.mx_allowed is None

        asyncio.run(check())
    finally:
        zone.remove(domain)
        zone.remove(f"_mta-sts.{domain}")
