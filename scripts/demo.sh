#!/usr/bin/env bash
# The main job end to end on the embedded demo data (examples/flights/data/flights-demo.parquet)
# against a local filesystem store, on a fresh machine: build, then run each pipeline binary
# as its own process, the way an orchestrator would.
#
#   bash scripts/demo.sh                 # store in ./.fti/demo-store (recreated)
#   FTI_STORE=/some/dir bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STORE="${FTI_STORE:-.fti/demo-store}"
PROFILE="${FTI_PROFILE:-debug}"
step() { printf '\n=== %s\n' "$*" >&2; }

step "build ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --bins; else cargo build --bins; fi
BIN="target/$PROFILE"

rm -rf "$STORE"
export FTI_LOG_FORMAT="${FTI_LOG_FORMAT:-text}"

step "feature-pipeline: check the feature repository"
"$BIN/feature-pipeline" check examples/flights/features.toml

step "feature-pipeline: compute, validate and commit the feature groups"
"$BIN/feature-pipeline" run examples/flights/features.toml --store "$STORE"

step "feature-pipeline: re-run the same job (idempotent: exit 99, nothing committed)"
rc=0; "$BIN/feature-pipeline" run examples/flights/features.toml --store "$STORE" >/dev/null || rc=$?
[ "$rc" = 99 ] || { echo "expected exit 99 from the re-run, got $rc" >&2; exit 1; }

step "feature-pipeline: what the store holds"
"$BIN/feature-pipeline" list --store "$STORE"

step "training-pipeline: point-in-time training set, fit, evaluate, gate, register, promote"
"$BIN/training-pipeline" check examples/flights/model.toml
"$BIN/training-pipeline" train examples/flights/model.toml --store "$STORE" --promote

step "training-pipeline: the peer's logistic regression as a challenger (the gate compares it with the champion)"
rc=0; "$BIN/training-pipeline" train examples/flights/model-logreg.toml --store "$STORE" --promote || rc=$?
case "$rc" in 0|4) ;; *) echo "unexpected exit $rc from the challenger" >&2; exit 1 ;; esac

step "training-pipeline: the registry"
"$BIN/training-pipeline" models --store "$STORE"
"$BIN/training-pipeline" history flight_delay --store "$STORE"

echo >&2
step "inference-pipeline: score every route as of 2001-07-02, export, publish"
"$BIN/inference-pipeline" score examples/flights/score.toml --store "$STORE" --as-of 2001-07-02

step "inference-pipeline: the published snapshot"
"$BIN/inference-pipeline" snapshots examples/flights/score.toml --store "$STORE"
current=$(ls "$STORE"/predictions/route_delay/current/ | tail -n 1)
snapshot=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"])' "$STORE/predictions/route_delay/current/$current")
echo "first predictions (kv.jsonl):" >&2
head -n 5 "$STORE/predictions/route_delay/snapshots/$snapshot/kv.jsonl" >&2

report=$(find "$STORE/models/flight_delay/files" -name report.html | head -n 1)
echo "demo store: $STORE (tables under $STORE/tables, models under $STORE/models; layout contract in docs/STORAGE.md)" >&2
echo "model report: $report" >&2
