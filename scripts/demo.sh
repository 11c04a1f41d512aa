#!/usr/bin/env bash
# `make demo`: real GeoIP and user-agent data (fetched once from PyPI into .data/, never
# committed), then broker + daemon + simulated traffic in one process for DEMO_SECONDS,
# printing every MFA event the daemon publishes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/camfa
if [[ ! -s .data/GeoLite2-City.mmdb || ! -s .data/regexes.yaml ]]; then
  scripts/fetch-geodata.sh .data || echo "warning: could not fetch GeoIP/UA data; the demo runs without enrichment" >&2
fi
"$bin" policy validate policies/examples
exec "$bin" dev --duration "${DEMO_SECONDS:-60}" --data .data
