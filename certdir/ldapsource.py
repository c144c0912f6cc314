"""One LDAP directory (ldap3), asked for the entries of one address.

ldap3's synchronous strategy is simple and well trodden; it runs in the
directory's thread pool, never on the event loop, with ldap3's own socket
timeouts plus an outer asyncio timeout. Connections are kept in a small idle
pool per directory and reused; one that failed is dropped, never reused.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from certdir.results import CertdirError
from certdir.settings import LdapSettings

T = TypeVar("T")

_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
_REFERRAL = 10
_MAX_IDLE = 4


@dataclass(frozen=True)
class DirectoryEntry:
    dn: str
    values: tuple[bytes, ...]  # the configured attribute's values (DER, unchecked)
    mail: tuple[str, ...]


def search_filter(template: str, address: str) -> str:
    """The configured filter with the address escaped per RFC 4515 section 3, so
    `*`, parentheses, backslash and NUL in an address are literal characters."""
    return template.replace("{address}", escape_filter_chars(address))


def _attribute_values(raw: dict[str, Any], name: str) -> list[bytes]:
    # Servers echo the attribute with or without the ";binary" option and in their
    # own case; match on the name, ignoring case and options.
    wanted = name.split(";")[0].lower()
    found: list[bytes] = []
    for key, values in raw.items():
        if key.split(";")[0].lower() == wanted:
            found.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
    return found


class LdapSource:
    def __init__(self, settings: LdapSettings, executor: Executor) -> None:
        self.settings = settings
        self._executor = executor
        parts = urlsplit(settings.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise CertdirError(f"directory {settings.name}: not an ldap:// or ldaps:// URL: {settings.url!r}")
        self._host = parts.hostname
        self._port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        self._ldaps = parts.scheme == "ldaps"
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        return self.settings.name

    # -- connections (called in worker threads) ----------------------------------

    def _server(self) -> ldap3.Server:
        tls = None
        if self._ldaps or self.settings.starttls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                            ca_certs_file=self.settings.tls_ca_file or None)
        return ldap3.Server(self._host, port=self._port, use_ssl=self._ldaps, tls=tls,
                            get_info=ldap3.NONE, connect_timeout=self.settings.timeout)

    def _connect(self) -> ldap3.Connection:
        s = self.settings
        conn = ldap3.Connection(
            self._server(), user=s.bind_dn or None, password=s.bind_password or None,
            auto_bind=ldap3.AUTO_BIND_NONE, client_strategy=ldap3.SYNC, read_only=True,
            # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds.
            raise_exceptions=False, receive_timeout=max(1, math.ceil(s.timeout)), auto_referrals=False,
        )
        conn.open()
        if s.starttls and not self._ldaps and not conn.start_tls():
            conn.unbind()
            raise CertdirError(f"directory {s.name}: StartTLS refused: {conn.result.get('description')}")
        if not conn.bind():
            description = conn.result.get("description") if conn.result else "no answer"
            conn.unbind()
            raise CertdirError(f"directory {s.name}: bind failed: {description}")
        return conn

    def _take(self) -> tuple[ldap3.Connection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give_back(self, conn: ldap3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        _unbind(conn)

    def _search(self, base: str, filter_: str, scope: str, attributes: list[str],
                size_limit: int) -> tuple[int, str, list[dict[str, Any]]]:
        """(result code, description, entries) on one connection; one retry on a fresh
        connection when a reused one turns out to be dead (servers drop idle clients)."""
        for attempt in range(2):
            try:
                conn, reused = self._take()
            except CertdirError:
                raise
            except Exception as exc:  # ldap3 raises socket, struct and its own errors alike
                raise CertdirError(f"directory {self.name}: {_describe(exc)}") from exc
            try:
                conn.search(base, filter_, search_scope=scope, attributes=attributes,
                            size_limit=size_limit, time_limit=max(1, int(self.settings.timeout)))
                result = conn.result or {}
                code = int(result.get("result", -1))
                entries = [r for r in (conn.response or []) if r.get("type") == "searchResEntry"]
            except Exception as exc:  # any failure mid-search: drop the connection, fail closed
                _unbind(conn)
                if reused and attempt == 0:
                    continue
                raise CertdirError(f"directory {self.name}: {_describe(exc)}") from exc
            self._give_back(conn)
            return code, str(result.get("description", "")), entries
        raise CertdirError(f"directory {self.name}: no connection")  # pragma: no cover - loop returns

    def _entries_for(self, address: str) -> list[DirectoryEntry]:
        s = self.settings
        code, description, entries = self._search(
            s.base, search_filter(s.filter, address), ldap3.SUBTREE, [s.attribute, "mail"], s.size_limit)
        if code == _SIZE_LIMIT_EXCEEDED:
            raise CertdirError(
                f"directory {s.name}: too many entries for {address} (size limit {s.size_limit} or the "
                "server's own); refusing to choose from a partial answer")
        if code != 0:
            raise CertdirError(f"directory {s.name}: search failed: {description or code}")
        found: list[DirectoryEntry] = []
        for entry in entries:
            raw = entry.get("raw_attributes", {})
            mail = tuple(v.decode("utf-8", "replace") for v in _attribute_values(raw, "mail"))
            found.append(DirectoryEntry(str(entry.get("dn", "")), tuple(_attribute_values(raw, s.attribute)), mail))
        return found

    def _binary_at(self, dn: str, attributes: list[str]) -> list[bytes] | None:
        """The values of attributes at one entry; None when this directory has no such entry."""
        code, description, entries = self._search(dn, "(objectClass=*)", ldap3.BASE, attributes, 1)
        if code in (_NO_SUCH_OBJECT, _REFERRAL):  # not held here (referrals are not followed)
            return None
        if code != 0:
            raise CertdirError(f"directory {self.name}: reading {dn}: {description or code}")
        values: list[bytes] = []
        for entry in entries:
            for name in attributes:
                values.extend(_attribute_values(entry.get("raw_attributes", {}), name))
        return values

    # -- the async face ------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        # ldap3 bounds connect and each read by `timeout`; the outer bound covers a
        # server that trickles (connect + bind + search, each just under the limit).
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn),
                                          timeout=self.settings.timeout * 3 + 1)
        except TimeoutError:
            raise CertdirError(f"directory {self.name}: no answer within {self.settings.timeout:g}s")

    async def find(self, address: str) -> list[DirectoryEntry]:
        """The entries whose attributes match the address; CertdirError when the
        directory cannot answer (down, slow, refused, too many entries)."""
        return await self._run(lambda: self._entries_for(address))

    async def read_binary(self, dn: str, attributes: list[str]) -> list[bytes] | None:
        """Binary attribute values at a DN (a CA entry's cACertificate, a CRL partition)."""
        return await self._run(lambda: self._binary_at(dn, attributes))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _unbind(conn)


def _unbind(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass  # the connection is being dropped; nothing to tell anyone


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, LDAPException) and ("socket" in text or "timed out" in text or "invalid server" in text):
        return f"cannot reach the directory ({text})"
    return text
