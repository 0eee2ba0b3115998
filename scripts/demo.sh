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

step "feature-pipeline: compute, validate and commit the four feature groups"
"$BIN/feature-pipeline" run examples/flights/features.toml --store "$STORE"

step "feature-pipeline: re-run the same job (idempotent: exit 99, nothing committed)"
rc=0; "$BIN/feature-pipeline" run examples/flights/features.toml --store "$STORE" >/dev/null || rc=$?
[ "$rc" = 99 ] || { echo "expected exit 99 from the re-run, got $rc" >&2; exit 1; }

step "feature-pipeline: what the store holds"
"$BIN/feature-pipeline" list --store "$STORE"

echo >&2
echo "demo store: $STORE (tables under $STORE/tables, layout contract in docs/STORAGE.md)" >&2
