"""`CertificateDirectory.lookup(address)`: is there a certificate we may encrypt to
for this address, and if not, why not?

Sources are asked in this order, and the first one that has a usable certificate
answers: the local store by address (an administrator's explicit choice), the
LDAP directories in configured order, the local store by domain (a function
mailbox certificate for the whole domain). A source that cannot answer makes the
result UNKNOWN unless a later source has a usable certificate: fail closed, an
outage is never "no certificate". The same holds for a candidate that could not
be judged because its CRL, OCSP responder or issuing CA was out of reach.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from cryptography import x509

from certdir.cache import LookupCache
from certdir.certfiles import certificates_from_bytes, read_certificate_file
from certdir.fetch import http_get
from certdir.ldapsource import LdapSource
from certdir.localstore import LocalStore, StoreKind, normalize_address
from certdir.results import (
    CandidateCert,
    CertdirError,
    LookupResult,
    LookupStatus,
    Rejection,
    RejectionCode,
)
from certdir.revocation import (
    RevocationChecker,
    RevocationStatus,
    ca_issuer_urls,
    has_revocation_pointers,
)
from certdir.settings import DirectorySettings, RevocationFallback
from certdir.validation import (
    Problem,
    TrustStore,
    address_problem,
    certificate_addresses,
    domain_problem,
    usage_problem,
)

_CA_ATTRIBUTES = ["cACertificate;binary"]
# RFC 5321 4.5.3.1: 64 octets local part, 255 domain; 254 for the whole path.
_MAX_ADDRESS = 254
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$")


def address_problem_text(address: str) -> str | None:
    """Why this is not an address we can look up, or None."""
    if not address or len(address) > _MAX_ADDRESS:
        return "not a valid e-mail address (empty or too long)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in address):
        return "not a valid e-mail address (contains a control character)"
    local, at, domain = address.rpartition("@")
    if not at or not local or len(local) > 64:
        return "not a valid e-mail address (needs local@domain)"
    try:
        ascii_domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_domain = ""
    if not _DOMAIN.match(ascii_domain):
        return f"not a valid e-mail address (bad domain {domain!r})"
    return None


@dataclass(frozen=True)
class _Found:
    """Raw material from one source: bytes that should be a certificate, and where."""

    data: bytes
    entry: str
    mail: tuple[str, ...] = ()
    pem_ok: bool = False  # local files may be PEM; directory values must be DER


@dataclass(frozen=True)
class ImportOutcome:
    """One certificate from an imported file: where it was filed, or why not."""

    candidate: CandidateCert
    filed_as: tuple[str, ...]  # "address:x@y", "domain:y", "intermediate"
    rejection: Rejection | None


class CertificateDirectory:
    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="certdir-io")
        self._ldap = [LdapSource(s, self._executor) for s in settings.ldap]
        self.store = LocalStore(settings.local_store) if settings.local_store else None
        trust = TrustStore.from_files(settings.trust_anchors)
        if self.store is not None:
            for cert in self.store.intermediates():
                trust.add_intermediate(cert)
        self.trust = trust
        self._revocation = RevocationChecker(self._ldap, self._executor, settings.fetch_timeout)
        self.cache = LookupCache(settings.cache_path) if settings.cache_path else None
        self._issuers_tried: set[str] = set()
        self._inflight: dict[tuple[str, bool], asyncio.Future[LookupResult]] = {}

    # -- the pipeline's question -------------------------------------------------------

    async def lookup(self, address: str, *, refresh: bool = False) -> LookupResult:
        address = address.strip()
        bad = address_problem_text(address)
        if bad:
            return LookupResult(address, LookupStatus.NOT_FOUND, bad)
        key = (normalize_address(address), refresh)
        task = self._inflight.get(key)
        if task is None:
            # Many recipients of one message arrive together; one lookup serves all
            # callers, and a caller that gives up (timeout) does not cancel it for
            # the others.
            task = asyncio.ensure_future(self._lookup(key[0], refresh))
            self._inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))  # type: ignore[misc]
        return await asyncio.shield(task)

    async def _lookup(self, address: str, refresh: bool) -> LookupResult:
        now = dt.datetime.now(dt.UTC)
        if self.cache is not None and not refresh:
            try:
                cached = await self.cache.get(address)
            except CertdirError:
                cached = None  # a broken cache only costs a fresh lookup
            if cached is not None and (cached.chosen is None or cached.chosen.not_after > now):
                return cached
        result = await self._gather(address, now)
        if self.cache is not None:
            ttl = self._ttl(result, now)
            try:
                await self.cache.put(result, ttl)
            except CertdirError:
                pass  # the answer stands; the next lookup asks again
        return result

    def _ttl(self, result: LookupResult, now: dt.datetime) -> float:
        if result.status is LookupStatus.FOUND and result.chosen is not None:
            return min(self.settings.cache_ttl, (result.chosen.not_after - now).total_seconds())
        if result.status is LookupStatus.NOT_FOUND and not any(r.transient for r in result.rejected):
            return self.settings.negative_cache_ttl
        return 0.0  # unknowns and transient rejections are asked again next time

    async def _gather(self, address: str, now: dt.datetime) -> LookupResult:
        rejected: list[Rejection] = []
        errors: list[str] = []
        seen: set[str] = set()
        local, _, domain = address.rpartition("@")
        asked: list[str] = []
        for source_name, fetch, ldap, by_domain in self._sources(address, domain):
            asked.append(source_name)
            try:
                found = await fetch()
            except CertdirError as exc:
                errors.append(str(exc))
                continue
            usable: list[CandidateCert] = []
            for item in found:
                outcome = await self._evaluate(item, address, domain if by_domain else None, source_name,
                                               ldap, now, seen)
                if isinstance(outcome, CandidateCert):
                    usable.append(outcome)
                elif outcome is not None:
                    rejected.append(outcome)
            if usable:
                # Issue 4: prefer the certificate valid longest, then the most recently issued.
                chosen = max(usable, key=lambda c: (c.not_after, c.not_before))
                for other in usable:
                    if other is not chosen:
                        rejected.append(Rejection(source_name, RejectionCode.NOT_CHOSEN, _not_chosen_reason(chosen),
                                                  other, other.entry))
                reason = f"{chosen.source}: {chosen.subject}, valid until {chosen.not_after:%Y-%m-%d}"
                if chosen.revocation:
                    reason += f"; {chosen.revocation}"
                return LookupResult(address, LookupStatus.FOUND, reason, chosen, tuple(rejected),
                                    errors=tuple(errors))
        if errors:
            reason = "could not ask every source: " + "; ".join(errors)
            return LookupResult(address, LookupStatus.UNKNOWN, reason, None, tuple(rejected), errors=tuple(errors))
        transient = [r for r in rejected if r.transient]
        if transient:
            # Fail closed: a candidate whose revocation status or issuer could not be
            # fetched (CRL/OCSP/CA server down) may well be usable. "No certificate"
            # would let confidential mail settle for TLS; UNKNOWN makes it wait.
            first = transient[0]
            more = f" (+{len(transient) - 1} more)" if len(transient) > 1 else ""
            return LookupResult(address, LookupStatus.UNKNOWN,
                                f"could not establish whether a certificate is usable: {first.source}: "
                                f"{first.reason}{more}", None, tuple(rejected))
        if rejected:
            first = rejected[0]
            more = f" (+{len(rejected) - 1} more rejected)" if len(rejected) > 1 else ""
            return LookupResult(address, LookupStatus.NOT_FOUND,
                                f"no usable certificate: {first.source}: {first.reason}{more}", None, tuple(rejected))
        where = ", ".join(asked) if asked else "no sources configured"
        return LookupResult(address, LookupStatus.NOT_FOUND, f"no certificate for {address} ({where})")

    def _sources(self, address: str, domain: str) -> list[tuple[str, _Fetch, LdapSource | None, bool]]:
        sources: list[tuple[str, _Fetch, LdapSource | None, bool]] = []
        store = self.store
        if store is not None:
            sources.append(("local:address", _LocalFetch(store, StoreKind.ADDRESS, address), None, False))
        for ldap in self._ldap:
            sources.append((ldap.settings.source, _LdapFetch(ldap, address), ldap, False))
        if store is not None:
            sources.append(("local:domain", _LocalFetch(store, StoreKind.DOMAIN, domain), None, True))
        return sources

    # -- one candidate -----------------------------------------------------------------

    async def _evaluate(self, item: _Found, address: str, domain: str | None, source: str,
                        ldap: LdapSource | None, now: dt.datetime, seen: set[str]) -> CandidateCert | Rejection | None:
        try:
            certs = (certificates_from_bytes(item.data, name=item.entry) if item.pem_ok
                     else [x509.load_der_x509_certificate(item.data)])
            cert = certs[0]
            candidate = CandidateCert.from_certificate(cert, source, item.entry)
        except (ValueError, CertdirError, IndexError) as exc:
            what = "file" if item.pem_ok else "directory entry"
            return Rejection(source, RejectionCode.MALFORMED,
                             f"{what} holds bytes that are not a certificate ({_short(exc)})", None, item.entry)
        if candidate.sha256 in seen:
            return None  # the same certificate published twice is one candidate
        seen.add(candidate.sha256)
        try:
            return await self._judge(candidate, address, domain, item.mail, ldap, now)
        except ValueError as exc:  # cryptography parses extensions lazily
            return Rejection(source, RejectionCode.MALFORMED, f"malformed certificate: {_short(exc)}",
                             candidate, item.entry)

    async def _judge(self, candidate: CandidateCert, address: str, domain: str | None, entry_mail: Sequence[str],
                     ldap: LdapSource | None, now: dt.datetime) -> CandidateCert | Rejection:
        cert = candidate.certificate

        def reject(problem: Problem, transient: bool = False) -> Rejection:
            return Rejection(candidate.source, problem.code, problem.reason, candidate, candidate.entry, transient)

        problem = usage_problem(cert, now)
        if problem is None:
            problem = domain_problem(cert, domain) if domain else address_problem(cert, address, entry_mail)
        if problem is not None:
            return reject(problem)
        fetch_errors = await self._fetch_issuers(cert, ldap)
        chain = self.trust.chain(cert, now)
        if isinstance(chain, Problem):
            if fetch_errors:
                return reject(Problem(chain.code, f"{chain.reason}; issuer not fetched: {'; '.join(fetch_errors)}"),
                              transient=True)
            return reject(chain)
        if not self.settings.check_revocation or len(chain) < 2:
            return replace(candidate, revocation="revocation not checked (check_revocation = false)"
                           if not self.settings.check_revocation else "")
        notes: list[str] = []
        # Issuing CAs first, from the top: a revoked CA makes all it issued unusable.
        # A CA certificate that names no CRL or responder has nothing to check against.
        for i in range(len(chain) - 2, 0, -1):
            if not has_revocation_pointers(chain[i]):
                continue
            status = await self._revocation.check(chain[i], chain[i + 1], now, ldap)
            what = f"issuing CA {chain[i].subject.rfc4514_string()}"
            if status.status is RevocationStatus.REVOKED:
                return reject(Problem(RejectionCode.REVOKED, f"{what}: {status.reason}"))
            if status.status is RevocationStatus.UNKNOWN:
                if self.settings.revocation_unavailable is RevocationFallback.REJECT:
                    return reject(Problem(RejectionCode.REVOCATION_UNKNOWN, f"{what}: {status.reason}"),
                                  transient=True)
                notes.append(f"{what}: {status.reason} (accepted: revocation_unavailable = accept)")
        status = await self._revocation.check(cert, chain[1], now, ldap)
        if status.status is RevocationStatus.REVOKED:
            return reject(Problem(RejectionCode.REVOKED, status.reason))
        if status.status is RevocationStatus.UNKNOWN:
            if self.settings.revocation_unavailable is RevocationFallback.REJECT:
                return reject(Problem(RejectionCode.REVOCATION_UNKNOWN, status.reason), transient=True)
            notes.insert(0, f"{status.reason} (accepted: revocation_unavailable = accept)")
        else:
            notes.insert(0, status.reason)
        return replace(candidate, revocation="; ".join(notes))

    async def _fetch_issuers(self, cert: x509.Certificate, ldap: LdapSource | None) -> list[str]:
        """Fetch the issuing CA when it is not known yet: the CA entry in the
        directory (OCES publishes cACertificate there), else AIA caIssuers."""
        if self.trust.knows_issuer_of(cert):
            return []
        issuer_dn = cert.issuer.rfc4514_string()
        if issuer_dn in self._issuers_tried:
            return []
        errors: list[str] = []
        found: list[x509.Certificate] = []
        sources = ([ldap] if ldap else []) + [s for s in self._ldap if s is not ldap]
        for source in sources:
            try:
                values = await source.read_binary(issuer_dn, _CA_ATTRIBUTES)
            except CertdirError as exc:
                errors.append(str(exc))
                continue
            for value in values or []:
                try:
                    found.append(x509.load_der_x509_certificate(value))
                except ValueError:
                    continue
            if found:
                break
        if not found:
            for url in ca_issuer_urls(cert):
                try:
                    data = await http_get(url, self._executor, self.settings.fetch_timeout)
                    found.extend(certificates_from_bytes(data, name=url))
                except CertdirError as exc:
                    errors.append(str(exc))
                    continue
                if found:
                    break
        for issuer in found:
            if issuer.subject == cert.issuer:
                self.trust.add_intermediate(issuer)  # the verifier still checks it chains to an anchor
        if not errors:
            self._issuers_tried.add(issuer_dn)  # asked everywhere and got an answer: do not ask again
        return errors

    # -- the local store -----------------------------------------------------------------

    async def import_certificates(self, data: bytes, name: str, *, domain: str | None = None) -> list[ImportOutcome]:
        """Validate every end-entity certificate in the file like any other and file it
        under its e-mail address(es), or under `domain`. CA certificates in the file
        are kept as intermediates. Nothing invalid is filed.

        From a signature (signed mail) only the signer's own certificate is taken:
        the other end-entity certificates a mail client put in the SignedData are not
        the sender's, and filing them would bind addresses nobody vouched for here."""
        if self.store is None:
            raise CertdirError("no local store is configured ([certdir] local_store)")
        read = read_certificate_file(data, name=name)
        certs = list(read.certificates)
        now = dt.datetime.now(dt.UTC)
        cas = [c for c in certs if _is_ca(c)]
        if read.signers is None:
            end_entities = [c for c in certs if not _is_ca(c)]
        else:
            end_entities = [c for c in read.signers if not _is_ca(c)]
            if not end_entities:
                raise CertdirError(f"{name}: the signature does not include the signer's certificate")
        for ca in cas:
            self.trust.add_intermediate(ca)
        outcomes: list[ImportOutcome] = []
        for ca in cas:
            self.store.add_intermediate(ca)
            outcomes.append(ImportOutcome(CandidateCert.from_certificate(ca, "local:intermediate"),
                                          ("intermediate",), None))
        for cert in end_entities:
            outcomes.append(await self._import_one(cert, domain, now))
        return outcomes

    async def _import_one(self, cert: x509.Certificate, domain: str | None, now: dt.datetime) -> ImportOutcome:
        assert self.store is not None
        source = "local:domain" if domain else "local:address"
        candidate = CandidateCert.from_certificate(cert, source)
        if domain:
            targets = [domain.lower().rstrip(".")]
        else:
            rfc822, subject = certificate_addresses(cert)
            targets = list(dict.fromkeys(normalize_address(a) for a in (rfc822 or subject)))
            if not targets:
                return ImportOutcome(candidate, (), Rejection(
                    source, RejectionCode.ADDRESS_MISMATCH,
                    "names no e-mail address; import it for a domain (--domain) instead", candidate))
        for target in targets:
            try:
                verdict = await self._judge(candidate, target if not domain else f"postmaster@{target}",
                                            target if domain else None, (), None, now)
            except ValueError as exc:
                verdict = Rejection(source, RejectionCode.MALFORMED, f"malformed certificate: {_short(exc)}",
                                    candidate)
            if isinstance(verdict, Rejection):
                return ImportOutcome(candidate, (), verdict)
        filed: list[str] = []
        for target in targets:
            kind = StoreKind.DOMAIN if domain else StoreKind.ADDRESS
            path = self.store.add(kind, target, cert)
            filed.append(f"{kind.value}:{target}")
            candidate = CandidateCert.from_certificate(cert, source, str(path))
            if self.cache is not None:
                await (self.cache.forget_domain(target) if domain else self.cache.forget_address(target))
        return ImportOutcome(candidate, tuple(filed), None)

    async def close(self) -> None:
        for source in self._ldap:
            source.close()
        if self.cache is not None:
            await self.cache.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _not_chosen_reason(chosen: CandidateCert) -> str:
    return f"usable, but {chosen.sha256[:16]}… is valid longer (until {chosen.not_after:%Y-%m-%d})"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # cryptography appends its parser's internal state; the first words say enough.
    return text.split(": ParseError", 1)[0][:200]


class _Fetch:
    async def __call__(self) -> list[_Found]:  # pragma: no cover - interface
        raise NotImplementedError


class _LdapFetch(_Fetch):
    def __init__(self, source: LdapSource, address: str) -> None:
        self.source = source
        self.address = address

    async def __call__(self) -> list[_Found]:
        entries = await self.source.find(self.address)
        return [_Found(value, entry.dn, entry.mail) for entry in entries for value in entry.values]


class _LocalFetch(_Fetch):
    def __init__(self, store: LocalStore, kind: StoreKind, key: str) -> None:
        self.store = store
        self.kind = kind
        self.key = key

    async def __call__(self) -> list[_Found]:
        stored = (self.store.for_address(self.key) if self.kind is StoreKind.ADDRESS
                  else self.store.for_domain(self.key))
        return [_Found(s.data, str(s.path), (), pem_ok=True) for s in stored]
