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
from tlsprobe.results import DomainStatus, MtaStsMode, MtaStsPolicy

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


@dataclass(frozen=True)
class DeliveryMxPolicy:
    """The recipient domain's MTA-STS policy as it binds one delivery (RFC 8461 §5)."""

    known: bool  # False: protected mail must wait (neither grade nor policy could be had)
    enforce: bool  # an `enforce` policy applies: only its MX names, verified TLS only
    mx_allowed: Callable[[str], bool] | None
    reason: str

    @classmethod
    def of(cls, policy: MtaStsPolicy, source: str) -> DeliveryMxPolicy:
        """Only `enforce` restricts (`testing` only reports, §5)."""
        if policy.mode is not MtaStsMode.ENFORCE:
            return cls(True, False, None, f"MTA-STS {policy.mode.value}: not enforced ({source})")
        return cls(True, True, policy.permits,
                   f"MTA-STS enforce, mx {', '.join(policy.mx)} ({source})")


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

    async def delivery_mx_policy(self, domain: str, protection: Protection) -> DeliveryMxPolicy:
        """What the domain's MTA-STS policy demands of a delivery now (RFC 8461 §5).

        An `enforce` policy binds every message, whatever its protection: only MX hosts it
        names, and only over TLS with a certificate valid for the MX name. For protected
        mail the (cached) grade carries the policy it was measured with; when the grade
        cannot be had, a cached policy still applies (§5.1), and when neither grade nor
        policy can be had the delivery waits (fail closed). For other mail, no policy to be
        had means delivery as usual (§3.3: no cached policy and a failed fetch = no policy).

        `TLS-Required: No` (RFC 8689 §3, §4.2.2: the sender asks that MTA-STS/DANE be
        ignored) is deliberately never read, not even for public mail: for confidential
        and sensitive mail the decision and Datatilsynet's practice (check the domain, then
        force TLS) rule, not a header any client can set; for public mail delivered
        opportunistically, the header could only lift a recipient's enforce policy, some
        webmail providers stamp it on every message (so it is no considered choice of the
        sender), and a message our classifier missed would then go to an MX DNS alone named.
        """
        domain = domain.strip().rstrip(".").lower()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._delivery_mx_policy(domain, protection)
        except Exception as exc:  # a failure is an unknown, never "no policy" for protected mail
            if not isinstance(exc, TimeoutError):
                eventlog.error("mta-sts-lookup-failed", domain=domain, error=repr(exc))
            try:
                async with asyncio.timeout(self.timeout):
                    cached = await self._get_prober().cached_policy(domain)
            except Exception:
                cached = None
            if cached is not None:
                return DeliveryMxPolicy.of(cached, f"cached policy ({type(exc).__name__} looking up the current)")
            if protection.requires_tls:
                return DeliveryMxPolicy(False, False, None,
                                        f"MTA-STS policy of {domain} unknown: {type(exc).__name__} {exc}")
            return DeliveryMxPolicy(True, False, None, f"MTA-STS policy of {domain} unknown, none cached")

    async def _delivery_mx_policy(self, domain: str, protection: Protection) -> DeliveryMxPolicy:
        prober = self._get_prober()
        if protection.requires_tls:
            try:
                result = await prober.grade(domain)
            except Exception as exc:
                eventlog.error("tls-probe-failed", domain=domain, error=repr(exc))
                result = None
            if result is not None and result.mta_sts is not None:
                return DeliveryMxPolicy.of(result.mta_sts, "from the domain's TLS grade")
            if result is not None and result.status is not DomainStatus.UNKNOWN:
                return DeliveryMxPolicy(True, False, None, f"{domain} publishes no MTA-STS policy")
        policy, note = await prober.mta_sts_policy(domain)
        if policy is not None:
            return DeliveryMxPolicy.of(policy, note or policy.source)
        if note and protection.requires_tls:
            # the grade is unknown too (else we would not be here): nothing says which MX
            # hosts the domain permits, so protected mail waits
            return DeliveryMxPolicy(False, False, None, f"TLS grade and MTA-STS policy of {domain} unknown: {note}")
        return DeliveryMxPolicy(True, False, None, note or f"{domain} publishes no MTA-STS policy")

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
