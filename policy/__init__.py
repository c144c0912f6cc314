"""The pure heart: what a message is, and what each recipient's copy needs.

No sockets, no files but the policy file it is given, no clock it is not passed.
"""

from policy.model import (
    Action,
    CertificateFacts,
    CertificateRef,
    Classification,
    Decision,
    Evidence,
    FactStatus,
    Fallback,
    Level,
    Protection,
    RecipientFacts,
    Step,
    TlsFacts,
    TlsGrade,
)

__all__ = [
    "Action",
    "CertificateFacts",
    "CertificateRef",
    "Classification",
    "Decision",
    "Evidence",
    "FactStatus",
    "Fallback",
    "Level",
    "Protection",
    "RecipientFacts",
    "Step",
    "TlsFacts",
    "TlsGrade",
]
