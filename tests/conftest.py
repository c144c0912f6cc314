"""Shared test set-up. Fixture modules under tests/fixtures/ are loaded as plugins,
so a real server (slapd, DNS, SMTP sinks, PostgreSQL) is started once per session
by whichever test first asks for it."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
