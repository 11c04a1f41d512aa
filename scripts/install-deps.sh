#!/usr/bin/env bash
# Installs the Debian packages camfa builds and tests against, only those missing, so
# `make test` and `make demo` work on a fresh Debian machine with Swift installed.
set -euo pipefail
packages=(pkg-config librdkafka-dev libmaxminddb-dev libpcre2-dev libsqlite3-dev libssl-dev kcat python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "error: swift is not on PATH; install Swift 6 (https://www.swift.org/install/linux/) and retry" >&2
  exit 1
fi
