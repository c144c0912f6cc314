"""End to end with a non-default [smime]: the running gateway encrypts with the
configured algorithms, adds the organisation certificate (from a file that also
holds its CA), signs, protects the headers, and `openssl cms` reads what arrives.

To and Cc recipients share one CMS (their two RecipientInfos plus the
organisation's); the Bcc recipient gets a CMS of their own (theirs plus the
organisation's). The audit record names every certificate and every algorithm.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from tests.fixtures.relay_lab import wait_until
from tests.fixtures.smime_keys import openssl_print

BODY = "Hej,\r\n\r\nKlientens CPR-nr. fremgår af de vedlagte akter. Venlig hilsen\r\nAdvokat Ærø\r\n"
SUBJECT = "[fortrolig] Sag 2026-118 æøå"
MESSAGE = ("From: advokat@firm.test\r\nTo: person@borger.test\r\nCc: medarbejder@kommune.test\r\n"
           f"Subject: {SUBJECT}\r\nMessage-ID: <sag118@firm.test>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n" + BODY).encode()
TO, CC, BCC = "person@borger.test", "medarbejder@kommune.test", "postkasse@kommune.test"
LEAF = {TO: "person", CC: "employee3", BCC: "function"}

CONFIGS = {
    # Everything non-default at once.
    "gcm-oaep-ski-signed-protected": {
        "cipher": "aes256-gcm", "key_transport": "rsa-oaep", "recipient_identifier": "ski",
        "sign": True, "protect_headers": True,
    },
    # The Outlook-readable cipher with the other non-default knobs: EnvelopedData v2 with SKI.
    "cbc-pkcs1-ski-organisation": {
        "cipher": "aes256-cbc", "key_transport": "rsa-pkcs1v15", "recipient_identifier": "ski",
        "sign": False, "protect_headers": False,
    },
}


def _smime_section(variant: dict[str, Any], smime_pki: Any, folder: Path) -> str:
    # The organisation's certificate as CAs usually deliver it: with its issuer after it.
    org_file = folder / "organisation-with-chain.pem"
    org_file.write_bytes(smime_pki.organisation.cert_path.read_bytes() + smime_pki.ca.cert_path.read_bytes())
    lines = [
        f'cipher = "{variant["cipher"]}"',
        f'key_transport = "{variant["key_transport"]}"',
        f'recipient_identifier = "{variant["recipient_identifier"]}"',
        f'protect_headers = {"true" if variant["protect_headers"] else "false"}',
        f'organisation_certificate = "{org_file}"',
    ]
    if variant["sign"]:
        lines += [f'sign_certificate = "{smime_pki.signer.cert_path}"',
                  f'sign_key = "{smime_pki.signer.key_path}"',
                  f'sign_chain = "{smime_pki.intermediate.cert_path}"']
    return "\n".join(lines)


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "cms", *args], capture_output=True, timeout=120)


def _decrypt(path: Path, cert: Path, key: Path) -> bytes:
    result = _openssl("-decrypt", "-in", str(path), "-recip", str(cert), "-inkey", str(key))
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def _ski_hex(cert: Any) -> str:
    from cryptography import x509

    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def _printed_skis(printed: str) -> list[str]:
    """The subjectKeyIdentifiers `openssl cms -cmsout -print` shows, as hex."""
    skis = []
    for block in re.findall(r"d\.subjectKeyIdentifier:\s*\n((?:\s+[0-9a-f]{4} - .*\n)+)", printed):
        # "  0000 - 7e 66 2a 05 c0 77 7f 09-45 c0 97 f8 00 fc d1   ~f*..w..": 15 octets in 44 columns
        hex_columns = (line.split(" - ", 1)[1][:44] for line in block.splitlines())
        skis.append("".join("".join(hex_columns).replace("-", " ").split()))
    return skis


@pytest.mark.parametrize("variant_name", sorted(CONFIGS))
def test_non_default_smime_configuration_end_to_end(
    variant_name: str, relay_lab: Any, gateway_factory: Any, oces_pki: Any, slapd: Any,
    smime_pki: Any, tmp_path: Path,
) -> None:
    variant = CONFIGS[variant_name]
    # Sink names of their own: A records for a reused name would pile up in the lab's DNS.
    borger = relay_lab.sink(f"borger-{variant_name}")
    kommune = relay_lab.sink(f"kommune-{variant_name}")
    for domain in ("borger.test", "kommune.test"):  # other tests point these at their own sinks
        relay_lab.tls.dns.zone.remove(domain)
    relay_lab.domain("borger.test", [borger])
    relay_lab.domain("kommune.test", [kommune])
    gw = gateway_factory({
        "certdir": f'trust_anchors = ["{oces_pki.trust_anchors}"]\nlocal_store = "{tmp_path / "certs"}"\n'
                   f'[[certdir.ldap]]\nname = "oces"\nurl = "{slapd.url}"\nbase = "{slapd.base}"',
        "smime": _smime_section(variant, smime_pki, tmp_path),
    }).start()

    assert gw.send("advokat@firm.test", [TO, CC, BCC], MESSAGE)[0] == 250
    assert len(borger.wait_for(1, timeout=60)) == 1
    assert len(kommune.wait_for(2, timeout=60)) == 2
    delivered = {d.rcpt_tos[0]: d.data for d in borger.snapshot() + kommune.snapshot()}
    assert set(delivered) == {TO, CC, BCC}
    # To and Cc: the very same CMS; Bcc: another one.
    assert delivered[TO] == delivered[CC] != delivered[BCC]

    is_gcm = variant["cipher"] == "aes256-gcm"
    files = {}
    for rcpt, data in delivered.items():
        outer = email.message_from_bytes(data, policy=email.policy.default)
        assert outer.get_content_type() == "application/pkcs7-mime"
        assert outer.get_param("smime-type") == ("authEnveloped-data" if is_gcm else "enveloped-data")
        assert "Bcc" not in outer and BCC.encode() not in data
        assert outer["Subject"] == ("[...]" if variant["protect_headers"] else SUBJECT)
        assert BODY.encode() not in data and "Ærø".encode() not in data
        files[rcpt] = tmp_path / f"{LEAF[rcpt]}.eml"
        files[rcpt].write_bytes(data)

    org = smime_pki.organisation
    for rcpt, expected_readers in ((TO, [TO, CC]), (BCC, [BCC])):
        printed = openssl_print(files[rcpt])
        content_type = "id-smime-ct-authEnvelopedData" if is_gcm else "pkcs7-envelopedData"
        assert f"contentType: {content_type}" in printed
        assert ("aes-256-gcm (2.16.840.1.101.3.4.1.46)" if is_gcm else "aes-256-cbc (2.16.840.1.101.3.4.1.42)") \
            in printed
        # The recipients' own plus the organisation's; its CA (also in the file) is no recipient.
        assert printed.count("d.ktri:") == len(expected_readers) + 1
        if variant["key_transport"] == "rsa-oaep":
            assert printed.count("algorithm: rsaesOaep (1.2.840.113549.1.1.7)") == len(expected_readers) + 1
        else:
            assert printed.count("algorithm: rsaEncryption (1.2.840.113549.1.1.1)") == len(expected_readers) + 1
        assert "d.issuerAndSerialNumber" not in printed
        expected_skis = [_ski_hex(oces_pki.leaves[LEAF[r]].cert) for r in expected_readers] + [_ski_hex(org.cert)]
        assert _printed_skis(printed) == expected_skis  # recipients in order, the organisation last
        assert _ski_hex(smime_pki.ca.cert) not in _printed_skis(printed)

    for rcpt in (TO, CC, BCC):
        leaf = oces_pki.leaves[LEAF[rcpt]]
        inners = [_decrypt(files[rcpt], leaf.cert_path, leaf.key_path),
                  _decrypt(files[rcpt], org.cert_path, org.key_path)]  # the organisation reads its sent mail
        for inner in inners:
            entity = email.message_from_bytes(inner, policy=email.policy.default)
            if variant["sign"]:
                assert entity.get_content_type() == "multipart/signed"
                signed = tmp_path / "signed.eml"
                signed.write_bytes(inner)
                verified = _openssl("-verify", "-in", str(signed), "-CAfile", str(smime_pki.ca_file))
                assert verified.returncode == 0, verified.stderr.decode()
                entity = email.message_from_bytes(verified.stdout, policy=email.policy.default)
            if variant["protect_headers"]:
                assert entity.get_param("hp") == "cipher"
                assert entity["Subject"] == SUBJECT and entity["Message-ID"] == "<sag118@firm.test>"
            else:
                assert entity["Subject"] is None
            text = entity.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n")
            assert text == BODY.replace("\r\n", "\n")
    # The Bcc recipient's CMS is closed to the Cc recipient. (The fixture's person and
    # function certificates share one RSA-2048 key, so only the RSA-3072 one can show it.)
    cc = oces_pki.leaves[LEAF[CC]]
    assert _openssl("-decrypt", "-in", str(files[BCC]), "-recip", str(cc.cert_path),
                    "-inkey", str(cc.key_path)).returncode != 0

    def audited() -> dict[str, Any]:
        found = gw.cli("log", "search", "--json")
        records = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
        return records[0] if records else {}

    assert wait_until(lambda: len([r for r in audited().get("recipients", []) if r["status"] == "delivered"]) == 3,
                      timeout=30)
    record = audited()
    entries = {r["address"]: r for r in record["recipients"]}
    algorithms = f'{variant["cipher"]} {variant["key_transport"]} {variant["recipient_identifier"]}'
    org_summary = [{"subject": org.cert.subject.rfc4514_string(), "sha256": org.cert.fingerprint(hashes.SHA256()).hex()}]
    for rcpt in (TO, CC, BCC):
        cert = oces_pki.leaves[LEAF[rcpt]].cert
        entry = entries[rcpt]
        assert entry["protection"] == "smime" and entry["status"] == "delivered"
        assert entry["certificate"] == {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "source": "ldap:oces",
        }
        assert entry["cipher"] == algorithms
        smime = entry["smime"]
        assert smime["cipher"] == variant["cipher"] and smime["key_transport"] == variant["key_transport"]
        assert smime["recipient_identifier"] == "ski"
        assert smime["recipient_infos"] == (2 if rcpt == BCC else 3)
        assert smime["organisation"] == org_summary
        assert smime["headers_protected"] is variant["protect_headers"]
        assert smime["signed"] is variant["sign"]
        if variant["sign"]:
            assert smime["digest"] == "sha-256"
            assert smime["signer"]["sha256"] == smime_pki.signer.cert.fingerprint(hashes.SHA256()).hex()
        else:
            assert smime["digest"] is None and smime["signer"] is None
    assert BODY not in json.dumps(record) and "Ærø" not in json.dumps(record)
    shown = gw.cli("log", "show", record["id"])
    assert shown.returncode == 0, shown.stderr
    assert f"also to    {org_summary[0]['subject']} sha256 {org_summary[0]['sha256']} (organisation)" in shown.stdout
    assert ("signed sha-256" if variant["sign"] else "not signed") in shown.stdout
