#!/usr/bin/env bash
# Set up a virtualenv and run the gateway on the embedded defaults of
# config.example.toml: SMTP on 127.0.0.1:10025, spool and SQLite audit under ./var.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -e .
exec .venv/bin/sikkermail -c config.example.toml serve
