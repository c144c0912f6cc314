"""Finding and validating recipient certificates (OCES LDAP directories, local store).

The one question: `await CertificateDirectory(settings).lookup(address)` ->
`LookupResult` (FOUND with the chosen certificate, NOT_FOUND with every rejected
candidate and its reason, or UNKNOWN when a source could not answer).
"""

from certdir.directory import CertificateDirectory, ImportOutcome
from certdir.results import (
    CandidateCert,
    CertdirError,
    LookupResult,
    LookupStatus,
    Rejection,
    RejectionCode,
)
from certdir.settings import DirectorySettings, LdapSettings, RevocationFallback

__all__ = [
    "CandidateCert",
    "CertdirError",
    "CertificateDirectory",
    "DirectorySettings",
    "ImportOutcome",
    "LdapSettings",
    "LookupResult",
    "LookupStatus",
    "Rejection",
    "RejectionCode",
    "RevocationFallback",
]
