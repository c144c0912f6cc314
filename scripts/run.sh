#!/usr/bin/env bash
# Set up a virtualenv and run the gateway on the embedded defaults of
# config.example.toml: SMTP on 127.0.0.1:10025, spool and SQLite audit under ./var.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian and Ubuntu ship venv without ensurepip: `python3 -m venv` then fails (and
# leaves a .venv without pip) until python3-venv is installed.
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "installing Debian package: python3-venv"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
  else
    echo "run.sh: $PY has no venv/ensurepip; install your system's Python venv package" >&2
    exit 1
  fi
fi

# a .venv left without pip by an earlier failed attempt is made again
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  "$PY" -m venv --clear .venv
fi
.venv/bin/python -m pip install -q -e .
exec .venv/bin/sikkermail -c config.example.toml serve
