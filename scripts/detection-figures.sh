#!/usr/bin/env bash
# Detection figures (issue 23, README "Detection figures"): each population mix and seed
# simulated, replayed through a policy set (one partition, the daemon's intake and
# enrichment: scripts/detection-enrichment.sh) and
# scored; the JSON reports go to bench/results/detection-<set>[-<mix>]-seed<N>.json.
# Usage: scripts/detection-figures.sh [POLICY_DIR] (default policies/recommended).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/detection-enrichment.sh
CAMFA=${CAMFA:-.build/release/camfa}
SET=${1:-policies/recommended}
NAME=$(basename "$SET")
RUNS=${RUNS:-"office:1 office:2 office:3 office:4 office:5 remote:1 remote:2 travelling:1 travelling:2"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The daemon's intake (limits, enrichment) on the offline side too, so both agree.
{ echo "policies: $(cd "$SET" && pwd)"; detection_enrichment "$work"; } > "$work/camfa.yaml"
for run in $RUNS; do
    mix=${run%%:*} seed=${run##*:}
    suffix=$([ "$mix" = office ] && echo "seed$seed" || echo "$mix-seed$seed")
    "$CAMFA" simulate --labelled "$work/labels.jsonl" --users 1500 --seed "$seed" --mix "$mix" > "$work/events.jsonl" 2>/dev/null
    "$CAMFA" replay --config "$work/camfa.yaml" "$work/events.jsonl" > "$work/decisions.jsonl"
    "$CAMFA" detection-report --labels "$work/labels.jsonl" --mfa-events "$work/decisions.jsonl" --format json \
        > "bench/results/detection-$NAME-$suffix.json"
    echo "== $mix seed $seed"
    "$CAMFA" detection-report --labels "$work/labels.jsonl" --mfa-events "$work/decisions.jsonl" | sed -n '/^account-takeover/,/cold starts/p'
done
