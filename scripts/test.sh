#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, a virtualenv) and run them all:
# ruff, mypy (strict on policy/ certdir/ tlsprobe/, default on gateway/) and the pytest suite, which starts
# real slapd, PostgreSQL, Postfix, DNS and SMTP servers on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

APT_PACKAGES=(slapd ldap-utils postfix swaks dnsmasq-base gpgsm openssl postgresql chromium python3-venv)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  # No interactive questions, and no running system services: the tests start their own.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy policy certdir tlsprobe gateway  # strict on policy, certdir, tlsprobe (pyproject.toml)
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
