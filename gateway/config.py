"""The configuration file: TOML, validated as a whole at start and by check-config.

Each section is a frozen dataclass; its fields, their types and defaults are the
schema. Sizes are written "50MB", durations "90s", "12h", "3d". Relative paths
are relative to the config file. Every problem names the file, line and key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any

from policy.tomlsource import Problem, TomlFileError, TomlSource


class ConfigError(TomlFileError):
    """The configuration is invalid; `.problems` lists every problem found."""


# Markers for the string forms an administrator writes.
class _Size: ...


class _Duration: ...


class _Path: ...


Size = Annotated[int, _Size]  # bytes
Duration = Annotated[float, _Duration]  # seconds
ConfigPath = Annotated[str, _Path]  # resolved against the config file's folder

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2,
               "G": 1024**3, "GB": 1024**3, "T": 1024**4, "TB": 1024**4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise ValueError(f'not a size: {value!r} (write e.g. "50MB")')
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def parse_duration(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f'not a duration: {value!r} (write e.g. "90s", "12h", "3d")')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


# RFC 1123 §2.1 host names: ASCII letters, digits and hyphens in dot-separated labels.
# The name goes into the banner, EHLO and every Received header (RFC 5321 §4.4), which
# are ASCII; an A-label (xn--...) is how an IDN is written there.
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def parse_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """ "127.0.0.1:10025", "[::1]:25"; a bare host or IPv6 address takes default_port."""
    match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", value) or re.match(r"^([^:]+)(?::(\d+))?$", value)
    if match:
        host, port_text = match.group(1), match.group(2)
    elif ":" in value:  # a bare IPv6 address
        host, port_text = value, None
    else:
        raise ValueError(f"not host:port: {value!r}")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"not host:port: {value!r}")
        return host, default_port
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {value!r}")
    return host, port


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:10025"
    hostname: str = "localhost"
    allowed_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    max_message_size: Size = 50 * 1024**2
    max_header_size: Size = 256 * 1024  # a header block beyond this is refused: 552 5.3.4
    max_recipients: int = 1000
    tls_cert: ConfigPath = ""
    tls_key: ConfigPath = ""
    require_starttls: bool = False
    users_file: ConfigPath = ""  # SMTP AUTH users (name:scrypt hash); empty: AUTH off
    data_timeout: Duration = 300.0
    health_listen: str = ""  # "127.0.0.1:9125": /metrics (Prometheus) and /healthz; empty: off
    intake_processes: int = 1  # SMTP intake processes sharing the port; 1: the gateway's own loop, more: children


@dataclass(frozen=True)
class SpoolConfig:
    path: ConfigPath = "var/spool"
    done_retention: Duration = 86400.0  # finished messages' envelopes kept for `queue show`


@dataclass(frozen=True)
class DnsConfig:
    nameservers: list[str] = field(default_factory=list)  # empty: system resolver
    timeout: Duration = 5.0


@dataclass(frozen=True)
class DeliveryConfig:
    mx_port: int = 25
    retry: list[Duration] = field(default_factory=lambda: [60.0, 300.0, 900.0, 3600.0, 14400.0])
    max_age: Duration = 3 * 86400.0
    connect_timeout: Duration = 30.0
    delivery_timeout: Duration = 600.0  # one attempt at a domain, all its MX hosts together
    max_concurrency: int = 50
    max_per_domain: int = 10
    max_in_pipeline: int = 0  # messages classified/encrypted at once; 0: 2 x CPU cores, at least 4
    bounce_sender: str = ""  # From: of DSNs and notices; empty: MAILER-DAEMON@hostname


@dataclass(frozen=True)
class TlsConfig:
    min_version: str = "TLSv1.2"
    probe_cache_ttl: Duration = 86400.0
    ca_file: ConfigPath = ""
    probe_failure_ttl: Duration = 300.0  # unknown grades (DNS trouble, all MX down) re-probed sooner
    probe_timeout: Duration = 30.0  # per MX connection: connect, replies, handshake
    mta_sts_port: int = 443  # HTTPS port of mta-sts.<domain>; other values only for test labs
    probe_cache: ConfigPath = ""  # SQLite; empty: probecache.db beside the spool folder


@dataclass(frozen=True)
class LdapSourceConfig:
    name: str = ""
    url: str = ""
    base: str = "c=DK"
    filter: str = "(mail={address})"
    attribute: str = "userCertificate;binary"
    bind_dn: str = ""
    bind_password: str = ""
    timeout: Duration = 10.0
    starttls: bool = False
    size_limit: int = 20  # more entries for one address: an error (unknown), not a choice
    tls_ca_file: ConfigPath = ""  # ldaps/StartTLS trust; empty: the system's


@dataclass(frozen=True)
class CertdirConfig:
    trust_anchors: list[ConfigPath] = field(default_factory=list)
    local_store: ConfigPath = "var/certs"
    cache_ttl: Duration = 12 * 3600.0
    negative_cache_ttl: Duration = 3600.0
    check_revocation: bool = True
    revocation_unavailable: str = "reject"  # or "accept": when no CRL/OCSP answer can be had
    accept_ec_keys: bool = False  # true is refused until gateway/cms.py does ECDH key agreement
    fetch_timeout: Duration = 10.0  # HTTP CRL, OCSP, AIA
    cache_database: ConfigPath = ""  # SQLite; empty: certcache.db beside the spool folder
    ldap: list[LdapSourceConfig] = field(default_factory=list)


@dataclass(frozen=True)
class SmimeConfig:
    cipher: str = "aes256-cbc"
    key_transport: str = "rsa-pkcs1v15"
    recipient_identifier: str = "issuer-serial"  # or "ski"
    protect_headers: bool = False  # RFC 9788: header copies inside, outer Subject "[...]"
    organisation_certificate: ConfigPath = ""  # extra recipient: the organisation reads its sent mail
    sign_certificate: ConfigPath = ""  # sign-then-encrypt with this certificate (PEM) ...
    sign_key: ConfigPath = ""  # ... and its unencrypted private key (PEM, 0600)
    sign_chain: ConfigPath = ""  # intermediates sent with the signature (PEM)
    # The executor wait for one encryption: timeout + timeout_per_mb per MiB of message.
    # Beyond it the recipients are deferred (never sent weaker) and retried later.
    timeout: Duration = 30.0
    timeout_per_mb: Duration = 1.0


@dataclass(frozen=True)
class AuditConfig:
    database: str = "sqlite:///var/audit.db"  # relative sqlite paths: against the config folder
    include_subject: bool = False


@dataclass(frozen=True)
class QuarantineConfig:
    path: ConfigPath = "var/quarantine"
    retention: Duration = 30 * 86400.0
    notice_subject: bool = False  # the original subject in quarantine/block notices to the sender


@dataclass(frozen=True)
class PolicyConfig:
    file: ConfigPath = "policy.toml"


@dataclass(frozen=True)
class Config:
    path: str
    server: ServerConfig
    spool: SpoolConfig
    dns: DnsConfig
    delivery: DeliveryConfig
    tls: TlsConfig
    certdir: CertdirConfig
    smime: SmimeConfig
    audit: AuditConfig
    quarantine: QuarantineConfig
    policy: PolicyConfig

    @property
    def listen(self) -> tuple[str, int]:
        return parse_host_port(self.server.listen)

    @property
    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.server.allowed_networks]

    @property
    def sqlite_path(self) -> str | None:
        """The audit database file when it is SQLite, absolute."""
        url = self.audit.database
        if not url.startswith("sqlite:///"):
            return None
        rest = url[len("sqlite:///"):]
        if rest.startswith("/"):
            return rest
        return str(Path(self.path).parent / rest)


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "spool": SpoolConfig,
    "dns": DnsConfig,
    "delivery": DeliveryConfig,
    "tls": TlsConfig,
    "certdir": CertdirConfig,
    "smime": SmimeConfig,
    "audit": AuditConfig,
    "quarantine": QuarantineConfig,
    "policy": PolicyConfig,
}


class _Reader:
    def __init__(self, src: TomlSource) -> None:
        self.src = src
        self.base = src.path.parent
        self.problems: list[Problem] = []

    def convert(self, key: str, hint: Any, value: Any) -> Any:
        origin = typing.get_origin(hint)
        if origin is Annotated:
            base, marker = typing.get_args(hint)[:2]
            if marker is _Size:
                return parse_size(value)
            if marker is _Duration:
                return parse_duration(value)
            if marker is _Path:
                if not isinstance(value, str):
                    raise ValueError("must be a path string")
                return str((self.base / value).resolve()) if value else ""
        if origin is list:
            (item,) = typing.get_args(hint)
            if not isinstance(value, list):
                raise ValueError("must be a list")
            if isinstance(item, type) and is_dataclass(item):
                return [self.section(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
            return [self.convert(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
        if hint is bool:
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if hint is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("must be a whole number")
            return value
        if hint is str:
            if not isinstance(value, str):
                raise ValueError("must be a string")
            return value
        raise ValueError(f"unsupported type {hint}")  # pragma: no cover - schema bug

    def section(self, key: str, cls: type, table: Any) -> Any:
        if not isinstance(table, dict):
            self.problems.append(self.src.problem(key, "must be a table"))
            return cls()
        hints = typing.get_type_hints(cls, include_extras=True)
        values: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        for name in sorted(set(table) - known):
            self.problems.append(self.src.problem(f"{key}.{name}", "unknown key"))
        for f in fields(cls):
            if f.name not in table:
                if typing.get_args(hints[f.name])[1:2] == (_Path,) and f.default:
                    values[f.name] = self.convert(f"{key}.{f.name}", hints[f.name], f.default)
                continue
            try:
                values[f.name] = self.convert(f"{key}.{f.name}", hints[f.name], table[f.name])
            except ValueError as exc:
                self.problems.append(self.src.problem(f"{key}.{f.name}", str(exc)))
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - schema bug
            self.problems.append(self.src.problem(key, str(exc)))
            return cls()


def _check(cfg: Config, src: TomlSource, problems: list[Problem]) -> None:
    """Cross-field checks the types alone cannot express."""
    try:
        parse_host_port(cfg.server.listen)
    except ValueError as exc:
        problems.append(src.problem("server.listen", str(exc)))
    if not valid_hostname(cfg.server.hostname):
        problems.append(src.problem("server.hostname", f"not a host name: {cfg.server.hostname!r} "
                                    "(ASCII letters, digits, hyphens and dots; an IDN as xn--...)"))
    for net in cfg.server.allowed_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            problems.append(src.problem("server.allowed_networks", f"not a network: {net!r}"))
    if cfg.server.health_listen:
        try:
            parse_host_port(cfg.server.health_listen)
        except ValueError as exc:
            problems.append(src.problem("server.health_listen", str(exc)))
    if bool(cfg.server.tls_cert) != bool(cfg.server.tls_key):
        problems.append(src.problem("server.tls_cert", "tls_cert and tls_key go together"))
    for name in ("tls_cert", "tls_key", "users_file"):
        path = getattr(cfg.server, name)
        if path and not os.path.exists(path):
            problems.append(src.problem(f"server.{name}", f"file not found: {path}"))
    if cfg.server.users_file and not cfg.server.tls_cert:
        problems.append(src.problem("server.users_file", "SMTP AUTH needs tls_cert/tls_key (AUTH only over TLS)"))
    if cfg.server.require_starttls and not cfg.server.tls_cert:
        problems.append(src.problem("server.require_starttls", "needs tls_cert and tls_key"))
    if not 1 <= cfg.server.intake_processes <= 64:
        problems.append(src.problem("server.intake_processes", "must be between 1 and 64"))
    if cfg.server.max_message_size <= 0:
        problems.append(src.problem("server.max_message_size", "must be positive"))
    for ns in cfg.dns.nameservers:
        try:
            host, _port = parse_host_port(ns, default_port=53)  # each server keeps its port (tlsprobe.mx)
            ipaddress.ip_address(host)
        except ValueError:
            problems.append(src.problem("dns.nameservers", f"not an IP address[:port]: {ns!r}"))
    if not 0 < cfg.delivery.mx_port < 65536:
        problems.append(src.problem("delivery.mx_port", "must be a port number"))
    if not cfg.delivery.retry:
        problems.append(src.problem("delivery.retry", "needs at least one interval"))
    if cfg.delivery.max_concurrency < 1 or cfg.delivery.max_per_domain < 1:
        problems.append(src.problem("delivery.max_concurrency", "concurrency limits must be >= 1"))
    if cfg.delivery.max_in_pipeline < 0:
        problems.append(src.problem("delivery.max_in_pipeline", "must be >= 0 (0: twice the CPU cores)"))
    if cfg.tls.min_version not in ("TLSv1.2", "TLSv1.3"):
        problems.append(src.problem("tls.min_version", "must be TLSv1.2 or TLSv1.3"))
    if not 0 < cfg.tls.mta_sts_port < 65536:
        problems.append(src.problem("tls.mta_sts_port", "must be a port number"))
    if cfg.tls.probe_timeout <= 0:
        problems.append(src.problem("tls.probe_timeout", "must be positive"))
    if cfg.tls.ca_file and not os.path.exists(cfg.tls.ca_file):
        problems.append(src.problem("tls.ca_file", f"file not found: {cfg.tls.ca_file}"))
    if cfg.smime.cipher not in ("aes256-cbc", "aes256-gcm"):
        problems.append(src.problem("smime.cipher", "must be aes256-cbc or aes256-gcm"))
    if cfg.smime.key_transport not in ("rsa-pkcs1v15", "rsa-oaep"):
        problems.append(src.problem("smime.key_transport", "must be rsa-pkcs1v15 or rsa-oaep"))
    if cfg.smime.timeout <= 0:
        problems.append(src.problem("smime.timeout", "must be positive"))
    from gateway.smime import (
        check_smime_config,  # smime reads its files; config must not import it early
    )

    for key, message in check_smime_config(cfg.smime):
        problems.append(src.problem(key, message))
    url = cfg.audit.database
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        problems.append(src.problem("audit.database", "must be sqlite:///PATH or postgresql://..."))
    for i, source in enumerate(cfg.certdir.ldap):
        key = f"certdir.ldap[{i}]"
        if not source.name:
            problems.append(src.problem(f"{key}.name", "every directory needs a name"))
        if not source.url.startswith(("ldap://", "ldaps://")):
            problems.append(src.problem(f"{key}.url", "must be ldap://host[:port] or ldaps://..."))
        if "{address}" not in source.filter:
            problems.append(src.problem(f"{key}.filter", "must contain {address}"))
        if source.size_limit < 1:
            problems.append(src.problem(f"{key}.size_limit", "must be >= 1"))
    if cfg.certdir.accept_ec_keys:
        from certdir.validation import EC_UNSUPPORTED

        problems.append(src.problem("certdir.accept_ec_keys", f"must be false: {EC_UNSUPPORTED}"))
    if cfg.certdir.revocation_unavailable not in ("reject", "accept"):
        problems.append(src.problem("certdir.revocation_unavailable", "must be reject or accept"))
    for anchor in cfg.certdir.trust_anchors:
        if not os.path.exists(anchor):
            problems.append(src.problem("certdir.trust_anchors", f"file not found: {anchor}"))


def load_config(path: Path) -> Config:
    """Read and validate the configuration; raises ConfigError listing every problem."""
    try:
        src = TomlSource.load(path)
    except TomlFileError as exc:
        raise ConfigError(exc.problems)
    reader = _Reader(src)
    sections: dict[str, Any] = {}
    for name in sorted(set(src.data) - set(_SECTIONS)):
        reader.problems.append(src.problem(name, "unknown section"))
    for name, cls in _SECTIONS.items():
        sections[name] = reader.section(name, cls, src.data.get(name, {}))
    cfg = Config(path=str(path.resolve()), **sections)
    _check(cfg, src, reader.problems)
    if reader.problems:
        raise ConfigError(reader.problems)
    return cfg


def find_config(explicit: str | None) -> Path:
    """-c PATH, else ./sikkermail.toml, else /etc/sikkermail/sikkermail.toml."""
    if explicit:
        return Path(explicit)
    for candidate in (Path("sikkermail.toml"), Path("/etc/sikkermail/sikkermail.toml")):
        if candidate.exists():
            return candidate
    return Path("sikkermail.toml")

