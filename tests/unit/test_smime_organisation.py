"""The organisation certificate ([smime] organisation_certificate): the end entity
only, and only one fit to encrypt to; `sikkermail check-config` says what is wrong."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.config import SmimeConfig
from gateway.smime import SmimeError, SmimeOptions, check_smime_config, organisation_certificate
from tests.fixtures.smime_keys import SmimePki

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC)


def _cert(issuer_key: rsa.RSAPrivateKey, issuer: x509.Name, *, key: object = None,
          days: tuple[int, int] = (-1, 30), key_encipherment: bool = True,
          eku: list[x509.ObjectIdentifier] | None = None, ca: bool = False,
          name: str = "Kommunen (sendt post)") -> x509.Certificate:
    public = (key or rsa.generate_private_key(public_exponent=65537, key_size=2048)).public_key()  # type: ignore[attr-defined]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, key_encipherment, False, not key_encipherment and not ca,
                                     ca, ca, False, False), critical=True)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_a_file_with_the_chain_yields_the_end_entity_certificate_only(tmp_path: Path, smime_pki: SmimePki) -> None:
    for order in ((smime_pki.organisation, smime_pki.ca), (smime_pki.ca, smime_pki.organisation)):
        path = _write(tmp_path / "org.pem", *(i.cert for i in order))
        assert organisation_certificate(path) == smime_pki.organisation.cert
        options = SmimeOptions.from_config(SmimeConfig(organisation_certificate=str(path)))
        assert options.extra_recipients == (smime_pki.organisation.cert,)


def test_a_chain_with_an_intermediate_still_yields_only_the_leaf(tmp_path: Path, smime_pki: SmimePki) -> None:
    leaf = _cert(smime_pki.intermediate.key, smime_pki.intermediate.cert.subject,
                 eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    path = _write(tmp_path / "org.pem", smime_pki.ca.cert, leaf, smime_pki.intermediate.cert)
    assert organisation_certificate(path) == leaf


@pytest.mark.parametrize(
    ("problem", "make"),
    [
        ("expired on", lambda pki: [_cert(pki.ca.key, pki.ca.cert.subject, days=(-60, -1))]),
        ("not valid before", lambda pki: [_cert(pki.ca.key, pki.ca.cert.subject, days=(2, 60))]),
        ("does not permit keyEncipherment", lambda pki: [_cert(pki.ca.key, pki.ca.cert.subject,
                                                                key_encipherment=False)]),
        ("no RSA key", lambda pki: [_cert(pki.ca.key, pki.ca.cert.subject,
                                          key=ec.generate_private_key(ec.SECP256R1()))]),
        ("not for e-mail protection", lambda pki: [_cert(pki.ca.key, pki.ca.cert.subject,
                                                         eku=[ExtendedKeyUsageOID.SERVER_AUTH])]),
        ("only CA certificates", lambda pki: [pki.ca.cert, pki.intermediate.cert]),
        ("more than one end-entity certificate", lambda pki: [pki.organisation.cert, pki.alice.cert]),
    ],
)
def test_an_unfit_organisation_certificate_is_refused_with_the_reason(
    tmp_path: Path, smime_pki: SmimePki, problem: str, make: object
) -> None:
    path = _write(tmp_path / "org.pem", *make(smime_pki))  # type: ignore[operator]
    with pytest.raises(SmimeError, match=problem):
        organisation_certificate(path)
    problems = check_smime_config(SmimeConfig(organisation_certificate=str(path)))
    assert len(problems) == 1 and problem in problems[0][1] and str(path) in problems[0][1]


def test_check_config_reports_an_expired_organisation_certificate(tmp_path: Path, smime_pki: SmimePki) -> None:
    expired = _write(tmp_path / "org.pem", _cert(smime_pki.ca.key, smime_pki.ca.cert.subject, days=(-60, -1)))
    config = tmp_path / "sikkermail.toml"
    config.write_text((ROOT / "config.example.toml").read_text().replace(
        'organisation_certificate = ""', f'organisation_certificate = "{expired}"'))
    (tmp_path / "policy.toml").write_text((ROOT / "policy.toml").read_text())
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "smime" in result.stderr and "expired on" in result.stderr and str(expired) in result.stderr
