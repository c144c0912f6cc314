"""certdir's own settings; gateway/certdir_setup.py maps the config file onto them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class RevocationFallback(enum.StrEnum):
    """What a certificate is worth when its revocation status cannot be established."""

    REJECT = "reject"  # not usable, with the reason (the safe default)
    ACCEPT = "accept"  # usable; the result says the status was not established


@dataclass(frozen=True)
class LdapSettings:
    name: str
    url: str  # ldap://host[:port] or ldaps://host[:port]
    base: str = "c=DK"
    filter: str = "(mail={address})"  # {address} is replaced, RFC 4515-escaped
    attribute: str = "userCertificate;binary"
    bind_dn: str = ""  # empty: anonymous
    bind_password: str = ""
    timeout: float = 10.0  # connect, and each reply
    starttls: bool = False
    size_limit: int = 20  # more entries than this for one address: an error, not a choice
    tls_ca_file: str = ""  # for ldaps/StartTLS; empty: the system's trust store

    @property
    def source(self) -> str:
        return f"ldap:{self.name}"


@dataclass(frozen=True)
class DirectorySettings:
    trust_anchors: tuple[Path, ...] = ()  # PEM/DER files; non-self-signed ones serve as intermediates
    local_store: Path | None = None
    cache_path: Path | None = None  # SQLite file; None: no persistent cache
    cache_ttl: float = 12 * 3600.0
    negative_cache_ttl: float = 3600.0
    check_revocation: bool = True
    revocation_unavailable: RevocationFallback = RevocationFallback.REJECT
    fetch_timeout: float = 10.0  # HTTP CRL/OCSP/AIA fetches
    ldap: tuple[LdapSettings, ...] = field(default_factory=tuple)
