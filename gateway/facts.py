"""Gathering the facts a decision needs: certificate lookups and the domain's TLS grade.

Only what the recipient's acceptable protections need is asked for (no LDAP
query for public mail). Every failure becomes an UNKNOWN with its reason, never
a "no": the policy then fails closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import eventlog
from gateway.config import Config
from policy.model import (
    CertificateFacts,
    CertificateRef,
    FactStatus,
    Protection,
    RecipientFacts,
    TlsFacts,
)
from policy.policyfile import RuleChoice

_NOT_ASKED = "not needed by the policy for this recipient"


@dataclass(frozen=True)
class GatheredFacts:
    facts: RecipientFacts
    certificate: Any | None = None  # cryptography x509.Certificate to encrypt to
    mx_allowed: Callable[[str], bool] | None = None  # MTA-STS enforce restriction


def certificate_facts(result: Any) -> CertificateFacts:
    """certdir's LookupResult as the policy's plain fact."""
    status = {"FOUND": FactStatus.YES, "NOT_FOUND": FactStatus.NO}.get(result.status.name, FactStatus.UNKNOWN)
    if status is FactStatus.NO and any(getattr(r, "transient", False) for r in result.rejected):
        # A candidate that could not be judged (CRL/OCSP down) is not a "no": a "no"
        # would let confidential mail fall through to TLS. certdir already answers
        # UNKNOWN here; this keeps the rule if a result ever arrives otherwise.
        status = FactStatus.UNKNOWN
    ref = None
    if status is FactStatus.YES and result.chosen is not None:
        c = result.chosen
        ref = CertificateRef(subject=c.subject, issuer=c.issuer, serial=c.serial, sha256=c.sha256, source=c.source)
    return CertificateFacts(status, result.reason, ref)


class FactGatherer:
    """Used as `async with FactGatherer(cfg) as g: gathered = await g.gather(rcpt, choice)`."""

    def __init__(self, cfg: Config, *, timeout: float = 60.0) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self._directory: Any | None = None
        self._prober: Any | None = None

    async def __aenter__(self) -> FactGatherer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _get_directory(self) -> Any:
        if self._directory is None:
            from gateway.certdir_setup import directory_from_config

            self._directory = directory_from_config(self.cfg)
        return self._directory

    def _get_prober(self) -> Any:
        if self._prober is None:
            from gateway.probe_setup import prober_from_config

            self._prober = prober_from_config(self.cfg)
        return self._prober

    async def certificate(self, address: str) -> tuple[CertificateFacts, Any | None]:
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._get_directory().lookup(address)
        except TimeoutError:
            return CertificateFacts(FactStatus.UNKNOWN, "certificate lookup timed out"), None
        except Exception as exc:  # a broken directory is an unknown, never a "no"
            eventlog.error("certificate-lookup-failed", recipient=address, error=repr(exc))
            return CertificateFacts(FactStatus.UNKNOWN, f"certificate lookup failed: {exc}"), None
        facts = certificate_facts(result)
        return facts, (result.chosen.certificate if facts.status is FactStatus.YES else None)

    async def tls(self, domain: str) -> tuple[TlsFacts, Callable[[str], bool] | None]:
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._get_prober().grade(domain)
        except TimeoutError:
            return TlsFacts(FactStatus.UNKNOWN, f"TLS probe of {domain} timed out"), None
        except Exception as exc:
            eventlog.error("tls-probe-failed", domain=domain, error=repr(exc))
            return TlsFacts(FactStatus.UNKNOWN, f"TLS probe of {domain} failed: {exc}"), None
        from gateway.probe_setup import tls_facts

        return tls_facts(result), result.mx_allowed

    async def gather(self, recipient: str, choice: RuleChoice) -> RecipientFacts:
        return (await self.gather_full(recipient, choice)).facts

    async def gather_full(self, recipient: str, choice: RuleChoice) -> GatheredFacts:
        wants_cert = Protection.SMIME in choice.protections
        wants_tls = any(p.requires_tls for p in choice.protections)
        cert_facts, certificate = (
            await self.certificate(recipient) if wants_cert
            else (CertificateFacts(FactStatus.NO, _NOT_ASKED), None)
        )
        mx_allowed = None
        if wants_tls:
            tls, mx_allowed = await self.tls(recipient.rpartition("@")[2].lower())
        else:
            tls = TlsFacts(FactStatus.NO, _NOT_ASKED)
        return GatheredFacts(RecipientFacts(recipient, cert_facts, tls), certificate, mx_allowed)

    async def close(self) -> None:
        for owner in (self._directory, self._prober):
            if owner is not None:
                await owner.close()
        self._directory = self._prober = None
