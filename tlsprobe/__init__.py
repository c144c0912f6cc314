"""What a recipient domain's MX hosts can do: MX resolution, STARTTLS probing, grades.

Entry points: `DomainProber.grade(domain)` -> `DomainTls`, and
`client_tls_context(...)`, the one TLS policy shared with the delivery.
"""

from tlsprobe.cache import CacheError, ProbeCache
from tlsprobe.domain import DomainProber, combine
from tlsprobe.results import (
    DomainStatus,
    DomainTls,
    Grade,
    MtaStsMode,
    MtaStsPolicy,
    MxProbe,
    ProbeError,
)
from tlsprobe.starttls import MxProber, ProbeSettings
from tlsprobe.tls import client_tls_context

__all__ = [
    "CacheError",
    "DomainProber",
    "DomainStatus",
    "DomainTls",
    "Grade",
    "MtaStsMode",
    "MtaStsPolicy",
    "MxProbe",
    "MxProber",
    "ProbeCache",
    "ProbeError",
    "ProbeSettings",
    "client_tls_context",
    "combine",
]
