"""End to end: the gateway finds the recipient's OCES certificate in a real slapd,
encrypts, delivers, and the recipient's key decrypts it with `openssl cms`.

Also the Bcc rule (a separate encryption, and no Bcc header) and the audit
record (certificate subject, serial, SHA-256, source, algorithms).
"""

from __future__ import annotations

import email
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes

from tests.fixtures.relay_lab import wait_until

BODY = "Hej,\r\n\r\nKlientens CPR-nr. fremgår af de vedlagte akter. Venlig hilsen\r\nAdvokat Ærø\r\n"


@pytest.fixture
def smime_gateway(relay_lab, gateway_factory, oces_pki, slapd, tmp_path):
    borger = relay_lab.sink("borger-mx")
    kommune = relay_lab.sink("kommune-mx")
    relay_lab.domain("borger.test", [borger])
    relay_lab.domain("kommune.test", [kommune])
    gw = gateway_factory({
        "certdir": f'trust_anchors = ["{oces_pki.trust_anchors}"]\nlocal_store = "{tmp_path / "certs"}"\n'
                   f'[[certdir.ldap]]\nname = "oces"\nurl = "{slapd.url}"\nbase = "{slapd.base}"',
    }).start()
    return gw, borger, kommune


def _decrypt(data: bytes, leaf, tmp_path, name: str) -> bytes:
    smime = tmp_path / f"{name}.eml"
    smime.write_bytes(data)
    result = subprocess.run(["openssl", "cms", "-decrypt", "-in", str(smime), "-recip", str(leaf.cert_path),
                             "-inkey", str(leaf.key_path)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_confidential_mail_is_encrypted_to_the_directory_certificate(smime_gateway, oces_pki, tmp_path):
    gw, borger, kommune = smime_gateway
    message = ("From: advokat@firm.test\r\nTo: person@borger.test, medarbejder@kommune.test\r\n"
               "Subject: [fortrolig] Sag 2026-117\r\nMessage-ID: <sag117@firm.test>\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n" + BODY).encode()
    rcpts = ["person@borger.test", "medarbejder@kommune.test", "postkasse@kommune.test"]  # the last is Bcc
    assert gw.send("advokat@firm.test", rcpts, message)[0] == 250
    assert len(borger.wait_for(1, timeout=60)) == 1
    assert len(kommune.wait_for(2, timeout=60)) == 2

    to_person = borger.snapshot()[0]
    outer = email.message_from_bytes(to_person.data)
    assert outer.get_content_type() == "application/pkcs7-mime"
    assert outer.get_param("smime-type") == "enveloped-data"
    assert outer["Subject"] == "[fortrolig] Sag 2026-117" and outer["Message-ID"] == "<sag117@firm.test>"
    assert BODY.encode() not in to_person.data and "Ærø".encode() not in to_person.data
    inner = _decrypt(to_person.data, oces_pki.leaves["person"], tmp_path, "person")
    assert inner.replace(b"\r\n", b"\n").endswith(BODY.encode().replace(b"\r\n", b"\n"))

    by_rcpt = {d.rcpt_tos: d for d in kommune.snapshot()}
    visible = by_rcpt[("medarbejder@kommune.test",)]
    hidden = by_rcpt[("postkasse@kommune.test",)]
    assert b"postkasse" not in visible.data and b"Bcc" not in hidden.data.split(b"\r\n\r\n")[0]
    plain = BODY.encode().replace(b"\r\n", b"\n")
    # OCES3: RSA-3072 under an issuer that signs with RSASSA-PSS
    assert _decrypt(visible.data, oces_pki.leaves["employee3"], tmp_path, "employee3").replace(
        b"\r\n", b"\n").endswith(plain)
    assert _decrypt(hidden.data, oces_pki.leaves["function"], tmp_path, "function").replace(
        b"\r\n", b"\n").endswith(plain)
    # The Bcc recipient's own CMS: the To recipient's key does not open it.
    probe = tmp_path / "cross.eml"
    probe.write_bytes(hidden.data)
    cross = subprocess.run(["openssl", "cms", "-decrypt", "-in", str(probe),
                            "-recip", str(oces_pki.leaves["employee3"].cert_path),
                            "-inkey", str(oces_pki.leaves["employee3"].key_path)], capture_output=True, timeout=60)
    assert cross.returncode != 0

    def audited() -> dict:
        found = gw.cli("log", "search", "--json")
        records = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
        return records[0] if records else {}

    assert wait_until(lambda: len([r for r in audited().get("recipients", []) if r["status"] == "delivered"]) == 3,
                      timeout=30)
    record = audited()
    assert record["classification"]["level"] == "confidential"
    entries = {r["address"]: r for r in record["recipients"]}
    person = entries["person@borger.test"]
    assert person["protection"] == "smime"
    assert person["certificate"]["sha256"] == oces_pki.leaves["person"].cert.fingerprint(hashes.SHA256()).hex()
    assert person["certificate"]["serial"] == format(oces_pki.leaves["person"].cert.serial_number, "x")
    assert person["certificate"]["source"] == "ldap:oces"
    assert person["cipher"].startswith("aes256-cbc rsa-pkcs1v15")
    assert BODY not in json.dumps(record)
