#!/usr/bin/env bash
# Checks the benchmark harness itself in about a minute, without building or running anything
# heavy: bench/run.sh against stub pipeline binaries and a stub peer (tiny shell/Python scripts
# that create the directories the real ones would and print summaries of the same shape), then
# checks the report. Needs the peer venv (for pyarrow: as-of dates and bench/synth.py).
#
#   bash bench/selftest.sh          # work dir and report under a fresh temp dir; bench/RESULTS.md untouched
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
T=$(mktemp -d /tmp/fti-bench-selftest.XXXXXX)
echo "selftest in $T" >&2
mkdir -p "$T/bin" "$T/peer" "$T/data"
[ -s "$REPO/data/flights-3m.parquet" ] || bash "$REPO/scripts/fetch-flights.sh" >/dev/null
cp "$REPO/data/flights-3m.parquet" "$REPO/data/airports.csv" "$T/data/"

cat > "$T/bin/stub.sh" <<'EOF'
#!/usr/bin/env bash
name=$(basename "$0"); cmd=${1:-}; store=""
args=("$@"); for ((k = 0; k < ${#args[@]}; k++)); do [ "${args[k]}" = --store ] && store=${args[k+1]}; done
case "$cmd" in --help) echo "usage: $name"; exit 0 ;; check) echo '{"ok":true}'; exit 0 ;; esac
sleep 0.05
case "$name/$cmd" in
  feature-pipeline/run)
    if [ -d "$store/tables" ]; then echo '{"status":"already_done","groups":[]}'; exit 99; fi
    mkdir -p "$store/tables/labels"
    echo '{"status":"succeeded","seconds":0.05,"groups":[{"group":"labels","status":"committed","rows":3,"seconds":0.01}]}' ;;
  training-pipeline/train)
    [ -d "$store/tables" ] || { echo "no tables in $store" >&2; exit 3; }
    mkdir -p "$store/models/flight_delay/versions"
    case "$2" in *logreg*) auc=0.6637 ;; *rf*) auc=0.6790 ;; *) auc=0.6950 ;; esac
    echo "{\"status\":\"succeeded\",\"version\":1,\"metrics\":{\"roc_auc\":$auc,\"log_loss\":0.485,\"accuracy\":0.7868},\"baseline\":{\"roc_auc\":0.5,\"log_loss\":0.5194,\"accuracy\":0.7865},\"timings\":{\"assemble\":0.4,\"fit\":2.0},\"seconds\":2.5}" ;;
  inference-pipeline/score)
    [ -d "$store/models" ] || { echo "no model in $store" >&2; exit 3; }
    case "$store" in *score-12m*) [ -n "${STUB_FAIL_12M:-}" ] && { echo "stub failure" >&2; exit 3; } ;; esac
    if [ -d "$store/predictions" ]; then echo '{"status":"already_done"}'; exit 99; fi
    mkdir -p "$store/predictions"
    echo '{"status":"succeeded","entities":3399,"timings":{"load":0.1,"score":0.01,"write":0.02},"seconds":0.13}' ;;
  *) echo "stub: unknown $name $cmd" >&2; exit 2 ;;
esac
EOF
chmod +x "$T/bin/stub.sh"
for b in feature-pipeline training-pipeline inference-pipeline; do ln -s stub.sh "$T/bin/$b"; done
echo 'import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])' > "$T/peer/make_scaled.py"
touch "$T/peer/requirements.txt"
cat > "$T/peer/fti_peer.py" <<'EOF'
import argparse, json, sys, time
from pathlib import Path
p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="stage", required=True)
a = sub.add_parser("features"); a.add_argument("--impl"); a.add_argument("--source"); a.add_argument("--store")
a = sub.add_parser("train"); a.add_argument("--store")
a = sub.add_parser("predict"); a.add_argument("--store"); a.add_argument("--run-id")
args = p.parse_args(); s = Path(args.store)
time.sleep(0.1)
if args.stage == "features":
    (s / "features").mkdir(parents=True, exist_ok=True); print("  read: 0.10s\n  labels: 0.43s", file=sys.stderr)
elif args.stage == "train":
    d = s / "models/flight_delay"; d.mkdir(parents=True, exist_ok=True)
    v = 1 + max([int(x.name[1:]) for x in d.glob("v*")] or [0]); (d / f"v{v}").mkdir()
    m = {"logreg": {"accuracy": 0.78673, "roc_auc": 0.6638, "log_loss": 0.49301},
         "random_forest": {"accuracy": 0.78677, "roc_auc": 0.68058, "log_loss": 0.48701},
         "base_rate_constant": {"accuracy": 0.78654, "roc_auc": 0.5, "log_loss": 0.51941}}
    (d / f"v{v}/metadata.json").write_text(json.dumps({"version": v, "metrics_test": m}))
    print("  fit random forest: 0.30s", file=sys.stderr); print(json.dumps({"version": v, "metrics_test": m}, indent=2))
else:
    assert list((s / "models/flight_delay").glob("v*")), "no model"
    print("  load model: 0.05s", file=sys.stderr); print(json.dumps({"routes": 3399, "model_version": 1}))
EOF

export FTI_BENCH_WORK=$T/work FTI_BENCH_SKIP_BUILD=1 FTI_BENCH_BIN_DIR=$T/bin FTI_BENCH_PEER=$T/peer \
    FTI_BENCH_DATA_DIR=$T/data FTI_BENCH_OUT=$T/RESULTS.md FTI_BENCH_RUNS=2 FTI_BENCH_STARTUP_RUNS=2 \
    FTI_BENCH_ENTITIES="1000 4000" FTI_BENCH_OPTS="--max-wait 0 --attempts 1 --quiet-sample 0.05"
fail() { echo "SELFTEST FAILED: $*" >&2; exit 1; }

echo "--- 1. full run on stubs" >&2
bash "$HERE/run.sh" > "$T/run1.log" 2>&1 || fail "run.sh exited $? (see $T/run1.log)"
for section in "## Stages" "## Quality" "## Start-up" "## Scale" "## Batch inference memory" "## Machine" \
    "features, 3M rows" "train: ours GBM" "batch inference, 12M rows" "peer: RandomForest" "4,000"; do
    grep -qF "$section" "$T/RESULTS.md" || fail "report lacks '$section'"
done
[ "$(wc -l < "$T/work/results/results.jsonl")" -ge 60 ] || fail "too few records"

echo "--- 1b. the feature stages run interleaved: round 1 of every case, then round 2" >&2
python3 - "$T/work/results/results.jsonl" <<'PY' || fail "feature stages not interleaved"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
seq = [(r["run"], r["label"]) for r in recs if r["tags"].get("stage") == "features" and r["tags"].get("data") == "3m"]
labels = [l for r, l in seq if r == 1]
assert len(labels) >= 3 and labels[0] == "features 3M / ours", seq
assert seq == [(1, l) for l in labels] + [(2, l) for l in labels], seq
PY

echo "--- 2. a failing case is recorded, the rest goes on, the report lists it, exit 1" >&2
rc=0; STUB_FAIL_12M=1 FTI_BENCH_PARTS="predict12m report" bash "$HERE/run.sh" > "$T/run2.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "expected exit 1 with a failing case, got $rc (see $T/run2.log)"
grep -qF "**predict 12M / ours** failed with exit 3" "$T/RESULTS.md" || fail "failure not reported"
grep -qF "predict 12M / peer" "$T/RESULTS.md" || fail "the peer case after the failure did not run"
grep -qF "features 3M / ours" "$T/RESULTS.md" || fail "records of other parts were not kept"

echo "selftest passed ($T)" >&2
[ -n "${FTI_SELFTEST_KEEP:-}" ] || rm -rf "$T"
