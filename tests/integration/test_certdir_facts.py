"""The pipeline's view: a lookup becomes the policy's CertificateFacts (YES / NO /
UNKNOWN, never NO for an outage), through the gateway's own wiring."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.certdir_setup import cache_path, settings_from_config
from gateway.config import load_config
from gateway.facts import FactGatherer
from policy.model import CertificateFacts, FactStatus
from tests.fixtures.oces_pki import OcesPki
from tests.fixtures.slapd import SlapdServer
from tests.integration.test_certdir_cli import write_config


def facts(config: Path, *addresses: str) -> list[tuple[CertificateFacts, x509.Certificate | None]]:
    async def go() -> list[tuple[CertificateFacts, x509.Certificate | None]]:
        async with FactGatherer(load_config(config), timeout=30) as gatherer:
            return [await gatherer.certificate(a) for a in addresses]
    return asyncio.run(go())


def test_found_not_found_and_unknown_reach_the_policy(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                     dead_ldap_url: str) -> None:
    live = write_config(tmp_path / "live", oces_pki, slapd.url)
    (found, cert), (expired, none) = facts(live, "medarbejder@kommune.test", "expired@kommune.test")
    assert found.status is FactStatus.YES
    assert found.certificate is not None
    assert found.certificate.sha256 == oces_pki.leaf("employee3").cert.fingerprint(hashes.SHA256()).hex()
    assert found.certificate.source == "ldap:oces"
    assert cert == oces_pki.leaf("employee3").cert
    assert expired.status is FactStatus.NO and "expired on" in expired.reason and none is None
    down = write_config(tmp_path / "down", oces_pki, dead_ldap_url)
    ((unknown, _),) = facts(down, "someone@kommune.test")
    assert unknown.status is FactStatus.UNKNOWN
    assert "directory oces" in unknown.reason


def test_config_maps_onto_certdir_settings(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, oces_pki, slapd.url, extra='revocation_unavailable = "accept"\ncache_ttl = "2h"')
    cfg = load_config(config)
    settings = settings_from_config(cfg)
    assert settings.trust_anchors == (oces_pki.trust_anchors,)
    assert settings.cache_path == cache_path(cfg) == tmp_path / "certcache.db"
    assert settings.cache_ttl == 7200.0
    assert settings.revocation_unavailable.value == "accept"
    assert [(s.name, s.url, s.timeout) for s in settings.ldap] == [("oces", slapd.url, 3.0)]
