"""The local store: a folder an administrator can read with `ls`.

    <store>/address/<local@domain>/<sha256>.pem   certificates for one mailbox
    <store>/domain/<domain>/<sha256>.pem          a certificate for a whole domain's
                                                  function mailbox (between authorities)
    <store>/intermediates/<sha256>.pem            CA certificates from imported bundles

Files are written atomically (temp file, fsync, rename). Certificates dropped in
by hand are read the same way and validated at lookup like any other.
"""

from __future__ import annotations

import enum
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certdir.certfiles import certificates_from_bytes
from certdir.results import CertdirError

# What may name a folder: no separators, no leading dot, no control characters.
_SAFE = re.compile(r"^[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]{0,253}$")


class StoreKind(enum.StrEnum):
    ADDRESS = "address"
    DOMAIN = "domain"


@dataclass(frozen=True)
class StoredCertificate:
    kind: StoreKind
    key: str  # the address or domain it is filed under
    path: Path
    data: bytes  # the file's bytes (validated at lookup, may be unreadable)


def normalize_address(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower().rstrip('.')}"


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, kind: StoreKind, key: str) -> Path | None:
        if not _SAFE.match(key):
            return None
        return self.root / kind / key

    def _read(self, kind: StoreKind, key: str) -> list[StoredCertificate]:
        folder = self._folder(kind, key)
        if folder is None or not folder.is_dir():
            return []
        found: list[StoredCertificate] = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                found.append(StoredCertificate(kind, key, path, path.read_bytes()))
            except OSError as exc:
                raise CertdirError(f"local store {path}: {exc.strerror}")
        return found

    def for_address(self, address: str) -> list[StoredCertificate]:
        return self._read(StoreKind.ADDRESS, normalize_address(address))

    def for_domain(self, domain: str) -> list[StoredCertificate]:
        return self._read(StoreKind.DOMAIN, domain.lower().rstrip("."))

    def intermediates(self) -> list[x509.Certificate]:
        folder = self.root / "intermediates"
        certs: list[x509.Certificate] = []
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    try:
                        certs.extend(certificates_from_bytes(path.read_bytes(), name=str(path)))
                    except (CertdirError, OSError):
                        continue  # an unreadable intermediate only means fewer paths
        return certs

    def entries(self) -> list[StoredCertificate]:
        """Everything filed by address or domain, for `certs list`."""
        found: list[StoredCertificate] = []
        for kind in (StoreKind.ADDRESS, StoreKind.DOMAIN):
            base = self.root / kind
            if base.is_dir():
                for folder in sorted(base.iterdir()):
                    if folder.is_dir():
                        found.extend(self._read(kind, folder.name))
        return found

    def add(self, kind: StoreKind, key: str, cert: x509.Certificate) -> Path:
        key = normalize_address(key) if kind is StoreKind.ADDRESS else key.lower().rstrip(".")
        folder = self._folder(kind, key)
        if folder is None:
            raise CertdirError(f"cannot file a certificate under {key!r}")
        return _write_atomic(folder, cert)

    def add_intermediate(self, cert: x509.Certificate) -> Path:
        return _write_atomic(self.root / "intermediates", cert)


def _write_atomic(folder: Path, cert: x509.Certificate) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{cert.fingerprint(hashes.SHA256()).hex()}.pem"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".import-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(cert.public_bytes(serialization.Encoding.PEM))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
