#!/usr/bin/env bash
# Detection figures through the real daemon on a multi-partition topic (issue 23): a
# labelled month is produced to camfa.ueba of `camfa broker` (keyed by user, so each user's
# logins stay in order on one partition), `camfa run` judges it, and the MFA events read
# back from authing.security.mfa are scored. Writes
# bench/results/detection-daemon-<set>-<mix>-seed<N>-p<partitions>.json.
# Usage: [SEED=1] [MIX=office] [PARTITIONS=8] scripts/detection-daemon.sh [POLICY_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/detection-enrichment.sh
CAMFA=${CAMFA:-.build/release/camfa}
SET=$(cd "${1:-policies/recommended}" && pwd)
SEED=${SEED:-1} MIX=${MIX:-office} PARTITIONS=${PARTITIONS:-8}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

"$CAMFA" broker --partitions "$PARTITIONS" > "$work/broker.out" 2> "$work/broker.err" &
pids+=($!)
for _ in $(seq 100); do grep -qs '^bootstrap=' "$work/broker.out" && break; sleep 0.1; done
bootstrap=$(sed -n 's/^bootstrap=//p' "$work/broker.out")
[ -n "$bootstrap" ] || { echo "the broker did not start" >&2; cat "$work/broker.err" >&2; exit 1; }

"$CAMFA" simulate --labelled "$work/labels.jsonl" --users 1500 --seed "$SEED" --mix "$MIX" > "$work/events.jsonl" 2>/dev/null
events=$(wc -l < "$work/events.jsonl")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/camfa.yaml" <<YAML
kafka:
  bootstrap: $bootstrap
  groupId: camfa-detection
policies: $SET
stateDir: $work/state
$(detection_enrichment "$work")
logging:
  level: warning
http:
  enabled: true
  address: 127.0.0.1:$port
  openEndpoints: [/healthz, /readyz, /metrics]
YAML
"$CAMFA" run --config "$work/camfa.yaml" > "$work/daemon.log" 2>&1 &
pids+=($!)

processed() { curl -fs "http://127.0.0.1:$port/metrics" | awk '/^camfa_events_consumed_total/ { n += $2 } END { print n + 0 }'; }
start=$(date +%s)
# Waits until the daemon has consumed $1 events, or fails after WAIT_SECONDS.
await() {
    until [ "$(processed)" -ge "$1" ]; do
        if [ $(( $(date +%s) - start )) -gt ${WAIT_SECONDS:-600} ]; then
            echo "the daemon consumed $(processed) of $1 events in ${WAIT_SECONDS:-600} s" >&2; tail -20 "$work/daemon.log" >&2; exit 1
        fi
        sleep 0.2
    done
}
until curl -fs "http://127.0.0.1:$port/readyz" > /dev/null; do
    [ $(( $(date +%s) - start )) -gt 60 ] && { echo "the daemon was not ready in 60 s" >&2; tail -20 "$work/daemon.log" >&2; exit 1; }
    sleep 0.2
done
# In chunks, each produced once the daemon is within one chunk of the last: the mock
# broker keeps only the newest 5 MB of a partition, so a producer running far ahead of
# the daemon on one partition would have the oldest events deleted before they are read.
jq -rc '[.originalIdentity, (. | tojson)] | join("\t")' "$work/events.jsonl" | split -l 5000 -d -a 4 - "$work/chunk."
sent=0
for chunk in "$work"/chunk.*; do
    kcat -P -b "$bootstrap" -t camfa.ueba -K $'\t' -X queue.buffering.max.ms=50 < "$chunk"
    sent=$(( sent + $(wc -l < "$chunk") ))
    await $(( sent - 5000 ))
done
await "$events"
echo "the daemon consumed $events events in $(( $(date +%s) - start )) s on $PARTITIONS partitions"
sleep 3  # the last MFA events' delivery
kcat -C -b "$bootstrap" -t authing.security.mfa -o beginning -e -q > "$work/mfa.jsonl"
out="bench/results/detection-daemon-$(basename "$SET")-$MIX-seed$SEED-p$PARTITIONS.json"
"$CAMFA" detection-report --labels "$work/labels.jsonl" --mfa-events "$work/mfa.jsonl" --format json > "$out"
"$CAMFA" detection-report --labels "$work/labels.jsonl" --mfa-events "$work/mfa.jsonl"
echo "MFA events: $(wc -l < "$work/mfa.jsonl"); report: $out"
