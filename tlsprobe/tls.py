"""The one place where outbound TLS policy becomes an `ssl.SSLContext`.

The probe and the delivery both build their client contexts here, so "is this
TLS good enough" is decided once (STYLE.md: one place for each decision).
"""

from __future__ import annotations

import ssl
import warnings

VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def client_tls_context(*, min_version: str, ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """A client context for STARTTLS to an MX host (or HTTPS to an MTA-STS host).

    verify=True: the chain must lead to a system CA or one in `ca_file`, and the
    certificate must be valid for the name given as `server_hostname` (the MX name,
    RFC 7672 §3.2.3 / RFC 8461 §4.2 semantics). verify=False: encryption only
    (tls-enforced); the handshake still refuses anything below `min_version`.
    A fresh context each call: callers may tweak theirs without touching others'.
    """
    try:
        minimum = VERSIONS[min_version]
    except KeyError:
        raise ValueError(f"min_version must be one of {', '.join(VERSIONS)}: {min_version!r}")
    if verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
    else:
        # no trust store to load when nothing is verified (loading it costs ~50 ms)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = minimum
    return context


def legacy_diagnosis_context() -> ssl.SSLContext:
    """Only to name what an MX that failed the real handshake does speak (e.g. "TLSv1").

    Never used to send anything: its result only goes into a reason text.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # TLSv1 is deprecated in the ssl module; here that is exactly the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:  # pragma: no cover - OpenSSL built without legacy ciphers
        pass
    return context
