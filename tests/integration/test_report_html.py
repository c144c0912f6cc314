"""The HTML report: one self-contained file that a real browser (headless Chromium) renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.audit import AuditStore, parse_time
from gateway.cli import main
from tests.integration.test_report_month import generate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.parametrize("audit_database", ["sqlite:///var/audit.db"])  # rendering does not depend on the database
def test_html_report_is_self_contained_and_renders(audit_store: AuditStore, compliance_config: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate(audit_store, parse_time("2026-09-01"), 30)
    out = tmp_path / "rapport.html"
    status = main(["report", "--since", "2026-09-01", "--until", "2026-09-30", "-o", str(out),
                   "-c", str(compliance_config)])
    assert status == 0, capsys.readouterr().err
    assert out.stat().st_mode & 0o077 == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="da">' in page
    assert "Blev noget sendt ukrypteret?" in page and "<svg" in page
    # Self-contained: nothing fetched (the SVG namespace is a name, not a request).
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page, re.IGNORECASE)
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", page)
    assert "010190-1" not in page  # no identifier in clear

    profile = tmp_path / "chromium-profile"
    png = tmp_path / "rapport.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,2000", out.as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert png.exists(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1200, 2000)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        # Text, tables and the coloured bars: a blank or error page has a handful of colours.
        assert len(colours) > 50
        chart_colours = {(0x1B, 0x78, 0x37), (0x5A, 0xAE, 0x61), (0xD7, 0x30, 0x27)}
        present = {c for _n, c in colours}
        assert chart_colours & present, "no bar of the charts was drawn"


@pytest.mark.parametrize("audit_database", ["sqlite:///var/audit.db"])
def test_english_labels(audit_store: AuditStore, compliance_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate(audit_store, parse_time("2026-09-01"), 3)
    status = main(["report", "--since", "2026-09-01", "--until", "2026-09-30", "--lang", "en",
                   "-c", str(compliance_config)])
    page = capsys.readouterr().out
    assert status == 0
    assert '<html lang="en">' in page and "Was anything sent in clear?" in page
    assert "Recipient domains lacking certificates" in page
