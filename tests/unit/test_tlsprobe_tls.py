"""The one client TLS context shared by the probe and the delivery."""

from __future__ import annotations

import ssl

import pytest

from tlsprobe import client_tls_context


def test_verified_context_requires_a_valid_certificate_for_the_name():
    context = client_tls_context(min_version="TLSv1.2", ca_file=None, verify=True)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_encryption_only_context_still_enforces_the_minimum_version():
    context = client_tls_context(min_version="TLSv1.3", ca_file=None, verify=False)
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3


def test_ca_file_is_added_to_the_trust_anchors(tls_lab):
    plain = client_tls_context(min_version="TLSv1.2", ca_file=None, verify=True)
    lab = client_tls_context(min_version="TLSv1.2", ca_file=tls_lab.ca_file, verify=True)
    subjects = [dict(x[0] for x in c["subject"]).get("commonName") for c in lab.get_ca_certs()]
    assert "sikkermail test CA" in subjects
    assert "sikkermail test CA" not in [dict(x[0] for x in c["subject"]).get("commonName")
                                        for c in plain.get_ca_certs()]


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "SSLv3", ""])
def test_versions_below_tls12_cannot_be_configured(version):
    with pytest.raises(ValueError, match="min_version"):
        client_tls_context(min_version=version, ca_file=None, verify=True)
