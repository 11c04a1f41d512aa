#!/usr/bin/env bash
# Installs what camfa builds, tests and demos against, only what is missing, so
# `make test` and `make demo` work on a fresh Debian machine with Swift installed.
# usage: scripts/install-deps.sh [demo]
set -euo pipefail
packages=(pkg-config librdkafka-dev libmaxminddb-dev libpcre2-dev libsqlite3-dev sqlite3 libssl-dev openssl kcat python3)
# The demo needs pip; the tests need chromium and its driver (the hosted challenge page is
# tested in a real headless browser), which the demo does not.
if [[ "${1:-}" == "demo" ]]; then packages+=(python3-pip); else packages+=(chromium chromium-driver); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# The schema tests validate with Python's jsonschema, under whichever python3 is first on PATH.
if ! python3 -c 'import jsonschema' 2>/dev/null; then
  echo "installing python3 jsonschema"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-jsonschema >/dev/null 2>&1 || true
  python3 -c 'import jsonschema' 2>/dev/null || python3 -m pip install --quiet jsonschema || python3 -m pip install --quiet --break-system-packages jsonschema
fi
# The HTTP API tests validate schemas/openapi.yaml and every recorded response against it.
if ! python3 -c 'import openapi_spec_validator, yaml' 2>/dev/null; then
  echo "installing python3 openapi-spec-validator"
  python3 -m pip install --quiet openapi-spec-validator pyyaml || python3 -m pip install --quiet --break-system-packages openapi-spec-validator pyyaml
fi
# The hostile-input tests produce with an independent client that can set a record's
# CreateTime and headers (kcat cannot): confluent-kafka, which bundles its own librdkafka.
if ! python3 -c 'import confluent_kafka' 2>/dev/null; then
  echo "installing python3 confluent-kafka"
  python3 -m pip install --quiet confluent-kafka || python3 -m pip install --quiet --break-system-packages confluent-kafka
fi
# An independent TOTP implementation for the factor tests (TOTPTests).
if ! python3 -c 'import pyotp' 2>/dev/null; then
  echo "installing python3 pyotp"
  python3 -m pip install --quiet pyotp || python3 -m pip install --quiet --break-system-packages pyotp
fi
# An independent JWT verifier for the mfaToken tests (MFATokenTests).
if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
  echo "installing python3 PyJWT"
  python3 -m pip install --quiet PyJWT cryptography || python3 -m pip install --quiet --break-system-packages PyJWT cryptography
fi
# A real SMTP server (STARTTLS, AUTH) for the email code tests (CodeDeliveryBlackBoxTests).
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "installing python3 aiosmtpd"
  python3 -m pip install --quiet aiosmtpd || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi
# Drives Debian's chromium through its chromedriver (ChallengePageBrowserTests).
if ! python3 -c 'import selenium' 2>/dev/null; then
  echo "installing python3 selenium"
  python3 -m pip install --quiet selenium || python3 -m pip install --quiet --break-system-packages selenium
fi
# The OpenAPI fuzzer run against the live daemon (SchemathesisBlackBoxTests).
if ! command -v st >/dev/null 2>&1; then
  echo "installing schemathesis"
  python3 -m pip install --quiet schemathesis || python3 -m pip install --quiet --break-system-packages schemathesis
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "error: swift is not on PATH; install Swift 6 (https://www.swift.org/install/linux/) and retry" >&2
  exit 1
fi
