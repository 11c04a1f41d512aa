#!/usr/bin/env bash
# Simulated traffic through the example policies; prints every MFA challenge issued.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/camfa
"$bin" policy validate policies/examples
"$bin" simulate --events "${DEMO_EVENTS:-20000}" --users 300 --seed "${DEMO_SEED:-7}" \
  | "$bin" replay --policies policies/examples --format pretty -
