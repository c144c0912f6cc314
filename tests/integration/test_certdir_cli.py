"""`sikkermail lookup` and `sikkermail certs` as an administrator runs them: a
subprocess with a config file, against the test directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.cli import main
from tests.fixtures.oces_pki import OcesPki
from tests.fixtures.slapd import SlapdServer


def write_config(tmp_path: Path, pki: OcesPki, ldap_url: str | None, extra: str = "") -> Path:
    lines = [
        "[spool]", f'path = "{tmp_path / "spool"}"',
        "[certdir]", f'trust_anchors = ["{pki.trust_anchors}"]', f'local_store = "{tmp_path / "certs"}"',
        'fetch_timeout = "5s"', extra,
    ]
    if ldap_url:
        lines += ["[[certdir.ldap]]", 'name = "oces"', f'url = "{ldap_url}"', 'timeout = "3s"']
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sikkermail.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sikkermail(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run from the config's folder, as an administrator would: not from the checkout,
    # where stray modules could shadow installed ones.
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(config)], cwd=config.parent,
                          capture_output=True, text=True, timeout=120)


def in_process(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    """The same CLI without a new interpreter (1 s saved per call); the subprocess
    tests above cover the real entry point."""
    code = main([*args, "-c", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def sha256(pki: OcesPki, label: str) -> str:
    return pki.leaf(label).cert.fingerprint(hashes.SHA256()).hex()


def test_lookup_prints_the_chosen_certificate(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url)
    done = sikkermail(config, "lookup", "person@borger.test")
    assert done.returncode == 0, done.stderr
    cert = oces_pki.leaf("person").cert
    out = done.stdout
    assert "person@borger.test: found" in out
    assert f"subject:  {cert.subject.rfc4514_string()}" in out
    assert f"issuer:   {cert.issuer.rfc4514_string()}" in out
    assert f"serial:   {cert.serial_number:x}" in out
    assert f"SHA-256:  {sha256(oces_pki, 'person')}" in out
    assert f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}" in out
    assert "source:   ldap:oces" in out
    # The cache file sits beside the spool folder.
    assert (tmp_path / "certcache.db").exists()


def test_lookup_json_lists_chosen_and_rejected(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url)
    done = sikkermail(config, "lookup", "two@kommune.test", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "found"
    assert data["chosen"]["sha256"] == sha256(oces_pki, "two_long")
    assert [r["code"] for r in data["rejected"]] == ["not-chosen"]
    assert data["rejected"][0]["certificate"]["sha256"] == sha256(oces_pki, "two_short")


@pytest.mark.parametrize(("address", "text"), [
    ("expired@kommune.test", "expired: expired on"),
    ("revoked-http@kommune.test", "revoked: revoked on"),
    ("untrusted@kommune.test", "untrusted: does not chain to a trusted root"),
    ("malformed@kommune.test", "malformed: directory entry holds bytes that are not a certificate"),
    ("nobody@kommune.test", "no certificate for nobody@kommune.test"),
])
def test_lookup_without_usable_certificate_exits_1_with_the_reason(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, address: str, text: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = in_process(capsys, write_config(tmp_path, oces_pki, slapd.url), "lookup", address)
    assert code == 1, out + err
    assert f"{address}: not-found" in out
    assert text in out


def test_lookup_with_directory_down_is_unknown(oces_pki: OcesPki, tmp_path: Path, dead_ldap_url: str) -> None:
    done = sikkermail(write_config(tmp_path, oces_pki, dead_ldap_url), "lookup", "person@borger.test", "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["status"] == "unknown"
    assert "directory oces" in data["reason"]


def test_unreadable_trust_anchor_is_one_line_error(oces_pki: OcesPki, tmp_path: Path) -> None:
    config = write_config(tmp_path, oces_pki, None)
    config.write_text(config.read_text().replace(str(oces_pki.trust_anchors), str(tmp_path / "missing.pem")))
    done = sikkermail(config, "lookup", "person@borger.test")
    assert done.returncode == 1
    assert "certdir.trust_anchors" in done.stderr and "missing.pem" in done.stderr
    assert "Traceback" not in done.stderr


# -- certs import / list -----------------------------------------------------------------------


def signed_mail(pki: OcesPki) -> bytes:
    signer = pki.leaf("signer")
    body = pkcs7.PKCS7SignatureBuilder().set_data(b"Content-Type: text/plain\r\n\r\nHej\r\n").add_signer(
        signer.cert, signer.key, hashes.SHA256()).sign(  # type: ignore[arg-type]
        serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    return b"From: afsender@kommune.test\r\nTo: someone@example.test\r\nSubject: signed\r\n" + body


def test_import_pem_then_lookup_finds_it_locally(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url)
    code, _, _ = in_process(capsys, config, "lookup", "lokal@andet.test")
    assert code == 1  # not in the directory; now cached as not found
    done = sikkermail(config, "certs", "import", str(oces_pki.leaf("local_only").cert_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as address:lokal@andet.test" in done.stdout
    code, out, _ = in_process(capsys, config, "lookup", "lokal@andet.test", "--json")
    assert code == 0, out  # the import cleared the cached "not found"
    data = json.loads(out)
    assert data["chosen"]["source"] == "local:address"
    assert data["chosen"]["sha256"] == sha256(oces_pki, "local_only")
    listed = sikkermail(config, "certs", "list", "--json")
    assert [(r["kind"], r["key"]) for r in json.loads(listed.stdout)] == [("address", "lokal@andet.test")]


def test_import_der_pkcs7_and_signed_mail(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url)
    der = tmp_path / "person.cer"
    der.write_bytes(oces_pki.leaf("person").der)
    p7 = tmp_path / "employee.p7b"
    p7.write_bytes(pkcs7.serialize_certificates([oces_pki.leaf("employee3").cert, oces_pki.oces3_ca.cert],
                                                serialization.Encoding.DER))
    eml = tmp_path / "signed.eml"
    eml.write_bytes(signed_mail(oces_pki))
    for path, address in [(der, "person@borger.test"), (p7, "medarbejder@kommune.test"),
                          (eml, "afsender@kommune.test")]:
        code, out, err = in_process(capsys, config, "certs", "import", str(path), "--json")
        assert code == 0, out + err
        filed = [f for item in json.loads(out) for f in item["filed_as"]]
        assert f"address:{address}" in filed
    code, out, _ = in_process(capsys, config, "certs", "list", "--json")
    assert {r["key"] for r in json.loads(out)} == {"person@borger.test", "medarbejder@kommune.test",
                                                   "afsender@kommune.test"}
    assert any((tmp_path / "certs" / "intermediates").iterdir())  # the CA from the bundle


@pytest.mark.parametrize(("label", "text"), [("expired", "expired on"), ("revoked_ldap", "revoked on"),
                                             ("untrusted", "does not chain")])
def test_import_of_an_invalid_certificate_files_nothing(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                        label: str, text: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url)
    code, out, _ = in_process(capsys, config, "certs", "import", str(oces_pki.leaf(label).cert_path))
    assert code == 1
    assert text in out
    assert not (tmp_path / "certs" / "address").exists()


def test_import_for_a_domain_serves_every_address_there(oces_pki: OcesPki, slapd: SlapdServer,
                                                        tmp_path: Path) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url)
    done = sikkermail(config, "certs", "import", str(oces_pki.leaf("domain_cert").cert_path),
                      "--domain", "myndighed.test")
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(sikkermail(config, "lookup", "sagsbehandler@myndighed.test", "--json").stdout)
    assert found["status"] == "found"
    assert found["chosen"]["source"] == "local:domain"
    wrong = sikkermail(config, "certs", "import", str(oces_pki.leaf("person").cert_path), "--domain", "myndighed.test")
    assert wrong.returncode == 1
    assert "not the domain myndighed.test" in wrong.stdout


def test_import_of_garbage_is_one_line_error(oces_pki: OcesPki, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, oces_pki, None)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello, not a certificate")
    code, _, err = in_process(capsys, config, "certs", "import", str(junk))
    assert code == 1
    assert err.count("\n") == 1 and "junk.bin: not a certificate" in err


def test_import_of_signed_mail_takes_only_the_signers_certificate(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A mail client may put any certificates into the SignedData: here the signer's
    # CA and someone else's (valid) certificate. Only the signer's is the sender's.
    signer = oces_pki.leaf("signer")
    body = (pkcs7.PKCS7SignatureBuilder().set_data(b"Content-Type: text/plain\r\n\r\nHej\r\n")
            .add_signer(signer.cert, signer.key, hashes.SHA256())  # type: ignore[arg-type]
            .add_certificate(oces_pki.leaf("person").cert).add_certificate(oces_pki.oces2_ca.cert)
            .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))
    eml = tmp_path / "signed-extra.eml"
    eml.write_bytes(b"From: afsender@kommune.test\r\nTo: someone@example.test\r\nSubject: signed\r\n" + body)
    config = write_config(tmp_path, oces_pki, slapd.url)
    code, out, err = in_process(capsys, config, "certs", "import", str(eml), "--json")
    assert code == 0, out + err
    filed = [f for item in json.loads(out) for f in item["filed_as"]]
    assert sorted(filed) == ["address:afsender@kommune.test", "intermediate"]
    code, out, _ = in_process(capsys, config, "certs", "list", "--json")
    assert [r["key"] for r in json.loads(out) if r["kind"] == "address"] == ["afsender@kommune.test"]
    assert not (tmp_path / "certs" / "address" / "person@borger.test").exists()
    intermediates = list((tmp_path / "certs" / "intermediates").iterdir())
    assert len(intermediates) == 1


# -- every case of issue 4 through `sikkermail lookup`, text and --json ----------------------

# (address, status, rejection codes, text in the reason of the first rejection or the result)
LOOKUP_CASES = [
    ("notyet@kommune.test", "not-found", ["not-yet-valid"], "not valid before"),
    ("revoked-ldap@kommune.test", "not-found", ["revoked"], "(CRL CN=CRL1,CN=TEST OCES2 Primary CA"),
    ("revoked-ocsp@kommune.test", "not-found", ["revoked"], "(OCSP http://127.0.0.1:"),
    ("nokeyenc@kommune.test", "not-found", ["key-usage"], "keyUsage does not permit keyEncipherment"),
    ("wrongmail@kommune.test", "not-found", ["address-mismatch"],
     "issued for someone.else@kommune.test, not wrongmail@kommune.test"),
    ("many@kommune.test", "unknown", [], "too many entries for many@kommune.test"),
    ("*@kommune.test", "not-found", [], "no certificate for *@kommune.test"),
    ("x)(mail=*)(x@kommune.test", "not-found", [], "no certificate for x)(mail=*)(x@kommune.test"),
    ("*)(|(mail=*@kommune.test", "not-found", [], "no certificate for *)(|(mail=*@kommune.test"),
    ("person\x00@borger.test", "not-found", [], "contains a control character"),
]


def _lookup_both(capsys: pytest.CaptureFixture[str], config: Path, address: str) -> tuple[int, str, dict]:
    code, text, err = in_process(capsys, config, "lookup", address)
    json_code, out, _ = in_process(capsys, config, "lookup", address, "--json")
    assert json_code == code, err
    return code, text, json.loads(out)


@pytest.mark.parametrize(("address", "status", "codes", "text"), LOOKUP_CASES,
                         ids=[c[0].split("@")[0] for c in LOOKUP_CASES])
def test_lookup_cli_gives_the_answer_and_reason_for_each_case(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        address: str, status: str, codes: list[str], text: str) -> None:
    code, out, data = _lookup_both(capsys, write_config(tmp_path, oces_pki, slapd.url), address)
    assert code == 1
    assert out.startswith(f"{address}: {status}")
    assert data["status"] == status and data["chosen"] is None
    assert [r["code"] for r in data["rejected"]] == codes
    if codes:
        reason = data["rejected"][0]["reason"]
        assert text in reason and reason in data["reason"]
        assert f"  - {codes[0]}: {reason}" in out
    else:
        assert text in data["reason"]
    assert f"  reason: {data['reason']}" in out


def test_lookup_cli_finds_the_oces3_rsa3072_certificate_under_a_pss_signing_ca(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, data = _lookup_both(capsys, write_config(tmp_path, oces_pki, slapd.url), "medarbejder@kommune.test")
    assert code == 0, out
    chosen = data["chosen"]
    assert data["status"] == "found" and data["rejected"] == []
    assert chosen["sha256"] == sha256(oces_pki, "employee3") and chosen["key"] == "RSA-3072"
    assert chosen["issuer"] == oces_pki.oces3_ca.cert.subject.rfc4514_string()
    assert oces_pki.oces3_ca.cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"  # RSASSA-PSS
    assert chosen["revocation"].startswith("not revoked (OCSP http://127.0.0.1:")
    assert "medarbejder@kommune.test: found" in out and "key:      RSA-3072" in out
    assert f"revocation: {chosen['revocation']}" in out


def test_lookup_cli_with_a_hung_directory_is_unknown(oces_pki: OcesPki, tmp_path: Path, silent_ldap: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, data = _lookup_both(capsys, write_config(tmp_path, oces_pki, silent_ldap), "person@borger.test")
    assert code == 1
    assert data["status"] == "unknown" and data["chosen"] is None
    assert data["reason"].startswith("could not ask every source: directory oces: ")
    assert "timed out" in data["reason"] or "no answer within" in data["reason"]
    assert any(e.startswith("directory oces: ") for e in data["errors"])
    assert out.startswith("person@borger.test: unknown") and "  could not ask: directory oces: " in out


def test_a_cached_answer_shows_the_same_lines_as_the_fresh_one(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, dead_ldap_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A dead directory first (a failed source), the live one second (OCSP revocation note).
    config = write_config(tmp_path, oces_pki, dead_ldap_url)
    config.write_text(config.read_text().replace('name = "oces"', 'name = "down"') +
                      f'[[certdir.ldap]]\nname = "oces"\nurl = "{slapd.url}"\ntimeout = "3s"\n')
    code, fresh, _ = in_process(capsys, config, "lookup", "medarbejder@kommune.test")
    assert code == 0, fresh
    assert "revocation: not revoked (OCSP http://127.0.0.1:" in fresh
    assert "  could not ask: directory down: " in fresh
    code, cached, _ = in_process(capsys, config, "lookup", "medarbejder@kommune.test")
    assert code == 0
    first, *rest = cached.splitlines()
    assert first == "medarbejder@kommune.test: found (cached)"
    assert rest == fresh.splitlines()[1:]
    code, out, _ = in_process(capsys, config, "lookup", "medarbejder@kommune.test", "--json")
    data = json.loads(out)
    assert data["cached"] and data["chosen"]["revocation"].startswith("not revoked (OCSP")
    assert [e.split(":")[0] for e in data["errors"]] == ["directory down"]
