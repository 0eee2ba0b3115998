#!/usr/bin/env bash
# Side-by-side benchmark of the three FTI pipeline binaries against the Python peer
# (shared/peer/), in one sitting on this machine; writes bench/RESULTS.md.
#
#   bash bench/run.sh                              # everything (about 30-45 min on 2 idle cores, plus the build)
#   FTI_BENCH_RUNS=1 bash bench/run.sh             # one run per case (quicker, noisier)
#   FTI_BENCH_SKIP_BUILD=1 bash bench/run.sh       # use the release binaries already built
#   FTI_BENCH_PARTS="train report" bash bench/run.sh   # re-measure some parts, keep the other records
#   bash bench/selftest.sh                         # check this harness on stub binaries (no build, ~1 min)
#
# What it does:
#   1. records the machine (nproc, free -g, CPU model, kernel, date, versions, git commit);
#   2. cargo build --release --bins (unless FTI_BENCH_SKIP_BUILD=1);
#   3. the peer venv: reuses $FTI_BENCH_PEER_VENV (default /tmp/peer-venv), else creates it
#      like shared/peer/run.sh (python3 -m venv + pip install -r requirements.txt);
#   4. data: scripts/fetch-flights.sh (data/flights-3m.parquet) and the peer's make_scaled.py
#      (data/flights-12m.parquet, 4 shifted copies);
#   5. times, with bench/bench.py (N whole-process runs under /usr/bin/time -v, waiting for a
#      quiet machine before each, repeating runs disturbed by other load), stage by stage,
#      ours then the peer:
#        features 3M  ours (fresh store per run)         | peer features --impl polars/duckdb/pandas
#        train 3M     ours gbm, logreg, rf (fresh copy of the feature store per run) | peer train
#        predict 3M   ours inference-pipeline score (fresh copy per run) | peer predict
#        features 12M, predict 12M (the 3M model copied into the 12M store), both sides
#        start-up: our --help / check / idempotent no-op runs vs python -c pass and the peer's imports
#        synthetic scoring with 10k, 100k, 1M entities (bench/synth.py): memory vs entity count
#   6. bench/report.py -> bench/RESULTS.md (tables with medians and ours/peer ratios).
#
# Parts (FTI_BENCH_PARTS, default all, in this order): features3m train predict3m features12m
# predict12m startup synth report. Later parts use the stores earlier parts left in the work dir.
# With the default, earlier records are discarded; with an explicit list, the records of the cases
# re-measured are replaced and the others kept.
#
# Environment:
#   FTI_BENCH_WORK=/tmp/fti-bench        work dir: stores, results/results.jsonl, results/logs/
#   FTI_BENCH_RUNS=3                     runs per case (median reported)
#   FTI_BENCH_STARTUP_RUNS=10            runs per start-up case
#   FTI_BENCH_PEER=<repo>/../shared/peer the peer's directory
#   FTI_BENCH_PEER_VENV=/tmp/peer-venv   the peer's virtualenv
#   FTI_BENCH_PEER_IMPLS="polars duckdb pandas"  peer feature implementations timed
#   FTI_BENCH_ENTITIES="10000 100000 1000000"    synthetic entity counts
#   FTI_BENCH_SCORE_MODEL=gbm            which of our models is scored (gbm | logreg | rf)
#   FTI_BENCH_OPTS=""                    extra bench.py options, e.g. "--max-wait 0 --attempts 1"
#                                        (do not wait for / repeat around other load)
#   FTI_BENCH_SKIP_BUILD=1               skip cargo build; FTI_BENCH_BIN_DIR overrides target/release
#   FTI_BENCH_DATA_DIR=<repo>/data       where flights-3m.parquet is fetched and flights-12m.parquet made
#   FTI_BENCH_OUT=bench/RESULTS.md       the report (a copy also goes to the work dir's results/)
# Exit status: 0 when every case succeeded, 1 when some failed (the report is written anyway
# and lists them).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"

W=${FTI_BENCH_WORK:-/tmp/fti-bench}
RUNS=${FTI_BENCH_RUNS:-3}
STARTUP_RUNS=${FTI_BENCH_STARTUP_RUNS:-10}
PEER=${FTI_BENCH_PEER:-$(cd "$REPO/.." && pwd)/shared/peer}
VENV=${FTI_BENCH_PEER_VENV:-/tmp/peer-venv}
PEER_IMPLS=${FTI_BENCH_PEER_IMPLS:-polars duckdb pandas}
ENTITIES=${FTI_BENCH_ENTITIES:-10000 100000 1000000}
SCORE_MODEL=${FTI_BENCH_SCORE_MODEL:-gbm}
BENCH_OPTS=${FTI_BENCH_OPTS:-}
ALL_PARTS="features3m train predict3m features12m predict12m startup synth report"
PARTS=${FTI_BENCH_PARTS:-$ALL_PARTS}
BIN=${FTI_BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}
OUT=${FTI_BENCH_OUT:-$HERE/RESULTS.md}

RESULTS=$W/results
RES=$RESULTS/results.jsonl
ENV_DIR=$RESULTS/env
OURS=$W/ours
PEERW=$W/peer
DATA=${FTI_BENCH_DATA_DIR:-$REPO/data}
SRC3=$DATA/flights-3m.parquet
SRC12=$DATA/flights-12m.parquet
PY3=$(command -v python3)
VPY=$VENV/bin/python
FP=$BIN/feature-pipeline
TP=$BIN/training-pipeline
IP=$BIN/inference-pipeline
EX=$REPO/examples/flights
PEER_FTI=("$VPY" "$PEER/fti_peer.py")
FAILED=()

step() { printf '\n=== %s\n' "$*" >&2; }
want() { [[ " $PARTS " == *" $1 "* ]]; }
# bench LABEL [bench.py options...] -- COMMAND...   (a failed case is recorded, reported and skipped)
bench() {
    local label=$1; shift
    # shellcheck disable=SC2086  # BENCH_OPTS is a list of options
    # A case that failed is not run again in later rounds (nor listed twice).
    local failed
    for failed in "${FAILED[@]}"; do [ "$failed" = "$label" ] && return; done
    if ! "$PY3" "$HERE/bench.py" run "$label" "$RES" --runs "$RUNS" $BENCH_OPTS "$@"; then
        echo "!! $label failed; continuing (logs under $RESULTS/logs)" >&2
        FAILED+=("$label")
    fi
}
ours() { bench "$1" --tag side=ours "${@:2}"; }
peer() { bench "$1" --tag side=peer "${@:2}"; }

report() {
    date -u '+%Y-%m-%d %H:%M:%S UTC' > "$ENV_DIR/date_end.txt"
    "$PY3" "$HERE/report.py" "$RES" --out "$OUT" --env "$ENV_DIR" \
        --peer-metadata "$RESULTS/peer_model_metadata.json"
    cp "$OUT" "$RESULTS/RESULTS.md"
    REPORTED=1
}
REPORTED=0
# An unexpected error part-way (not a failed case: those are recorded and skipped) still leaves
# a report of what was measured.
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ "$REPORTED" = 0 ] && want report && [ -s "$RES" ]; then
        echo "!! aborted (exit $rc); writing a partial report" >&2
        report || true
    fi
}
case "$SCORE_MODEL" in
    gbm | logreg | rf) ;;
    *) echo "FTI_BENCH_SCORE_MODEL must be gbm, logreg or rf" >&2; exit 2 ;;
esac
for p in $PARTS; do
    [[ " $ALL_PARTS " == *" $p "* ]] || { echo "unknown part $p (known: $ALL_PARTS)" >&2; exit 2; }
done
trap on_exit EXIT

mkdir -p "$W" "$OURS" "$PEERW" "$ENV_DIR"
if [ "$PARTS" = "$ALL_PARTS" ]; then
    rm -rf "$RES" "$RESULTS/logs" "${ENV_DIR:?}"/*
fi

# ---------------------------------------------------------------------------------- machine
step "machine"
if [ "$PARTS" = "$ALL_PARTS" ] || [ ! -s "$ENV_DIR/date_start.txt" ]; then
    date -u '+%Y-%m-%d %H:%M:%S UTC' > "$ENV_DIR/date_start.txt"
else
    echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'): re-measured $PARTS at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" >> "$ENV_DIR/reruns.txt"
fi
nproc > "$ENV_DIR/nproc.txt"
free -g > "$ENV_DIR/free.txt"
{ grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; } > "$ENV_DIR/cpu_model.txt" || echo unknown > "$ENV_DIR/cpu_model.txt"
uname -srm > "$ENV_DIR/uname.txt"
# The code of the first sitting (a re-measured part names its own in reruns.txt).
if [ "$PARTS" = "$ALL_PARTS" ] || [ ! -s "$ENV_DIR/git.txt" ]; then
    { git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout"; } > "$ENV_DIR/git.txt"
    if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then echo "(uncommitted changes)" >> "$ENV_DIR/git.txt"; fi
fi
{ rustc --version 2>/dev/null || echo "rustc not found"; cargo --version 2>/dev/null || true; echo "release profile, default features"; } > "$ENV_DIR/rust.txt"
cat > "$ENV_DIR/settings.txt" <<EOF
runs per case: $RUNS; start-up runs: $STARTUP_RUNS
bench.py options: ${BENCH_OPTS:-defaults (wait up to 900 s for < 0.3 busy cores, repeat runs with > 0.25 cores of other load, 4 attempts)}
scored model: $SCORE_MODEL; peer feature implementations: $PEER_IMPLS; synthetic entities: $ENTITIES
EOF
cat "$ENV_DIR"/{cpu_model,nproc,free}.txt >&2

# ------------------------------------------------------------------------------------ build
step "build (release)"
if [ "${FTI_BENCH_SKIP_BUILD:-0}" = 1 ]; then
    echo "FTI_BENCH_SKIP_BUILD=1: using $BIN" >&2
else
    cargo build --release --bins
fi
for b in "$FP" "$TP" "$IP"; do
    [ -x "$b" ] || { echo "missing $b (build with cargo build --release --bins)" >&2; exit 1; }
done

# -------------------------------------------------------------------------------- peer venv
step "peer venv ($VENV)"
if [ ! -x "$VPY" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$PEER/requirements.txt"
fi
{ "$VPY" --version; "$VPY" -m pip freeze 2>/dev/null | grep -Ei '^(pandas|pyarrow|polars|scikit-learn|duckdb|numpy)==' | tr '\n' ' '; } > "$ENV_DIR/peer_python.txt"
cat "$ENV_DIR/peer_python.txt" >&2; echo >&2

# ------------------------------------------------------------------------------------- data
step "data"
FTI_DATA_DIR="$DATA" bash "$REPO/scripts/fetch-flights.sh" >/dev/null
if [ ! -s "$SRC12" ]; then
    "$VPY" "$PEER/make_scaled.py" "$SRC3" "$DATA/.flights-12m.parquet.part" 4
    mv "$DATA/.flights-12m.parquet.part" "$SRC12"
fi
# The day scored: the day after the last flight day (what the peer's predict derives itself).
as_of() {
    "$VPY" -c 'import sys, datetime, pyarrow.compute as pc, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1], columns=["date"])
print((pc.max(t["date"]).as_py().date() + datetime.timedelta(days=1)).isoformat())' "$1"
}
ASOF3=$(as_of "$SRC3")
ASOF12=$(as_of "$SRC12")
echo "3M: $SRC3 (as of $ASOF3); 12M: $SRC12 (as of $ASOF12)" >&2


# ----------------------------------------------------------------------- features, 3M rows
# Ours: a fresh store per run (the idempotency key of a commit is derived from config, group,
# range and source fingerprints, so a run into a store that already has the tables is a no-op).
# The peer: store removed before each run too (it would overwrite in place).
# The cases run round by round (ours, then each peer, RUNS times), not each case RUNS times in
# a row: this VM has phases of minutes in which every process runs 30-55% slower, and a phase
# that covers one case's runs but not another's skews their ratio (0.50 to 0.59 at 3M in three
# sittings of the same code); interleaved, it falls on all of them alike.
features() {  # features 3m|12m SOURCE
    local data=$1 src=$2 up i
    up=${data^^}
    step "features, $up rows ($RUNS interleaved rounds)"
    for ((i = 1; i <= RUNS; i++)); do
        ours "features $up / ours" --run "$i" --tag kind=stage --tag stage=features --tag data="$data" --tag variant=rust \
            --tag startup="startup: feature-pipeline run (already committed, exit 99)" \
            --setup "rm -rf '$OURS/feat-$data'" \
            -- "$FP" run "$EX/features.toml" --store "$OURS/feat-$data" --source "flights=$src" --run-id "bench-$data-{i}"
        for impl in $PEER_IMPLS; do
            peer "features $up / peer $impl" --run "$i" --tag kind=stage --tag stage=features --tag data="$data" --tag variant="$impl" \
                --tag startup="startup: peer features/$impl imports" \
                --setup "rm -rf '$PEERW/store-$data-$impl'" \
                -- "${PEER_FTI[@]}" features --impl "$impl" --source "$src" --store "$PEERW/store-$data-$impl"
        done
    done
}
if want features3m; then features 3m "$SRC3"; fi

# ------------------------------------------------------------------------------ train, 3M
# Ours: each run trains into a fresh copy of the 3M feature store (an identical run would be
# skipped with exit 99; no champion, so the gate does not re-evaluate one). Not promoted:
# scoring uses --model latest. The peer: train creates v1..vN in its polars store, as in its run.sh.
if want train; then
    step "train, 3M rows"
    for m in gbm logreg rf; do
        case $m in gbm) spec=model.toml ;; logreg) spec=model-logreg.toml ;; rf) spec=model-rf.toml ;; esac
        ours "train 3M / ours $m" --tag kind=stage --tag stage=train --tag data=3m --tag variant="$m" \
            --ok-exit 0,4 \
            --setup "rm -rf '$OURS/train-$m' && cp -a '$OURS/feat-3m' '$OURS/train-$m'" \
            -- "$TP" train "$EX/$spec" --store "$OURS/train-$m"
    done
    rm -rf "$PEERW/store-3m-polars/models" "$RESULTS/peer_model_metadata.json"
    peer "train 3M / peer logreg+rf" --tag kind=stage --tag stage=train --tag data=3m --tag variant=logreg+rf \
        -- "${PEER_FTI[@]}" train --store "$PEERW/store-3m-polars"
    latest=$(find "$PEERW/store-3m-polars/models/flight_delay" -maxdepth 1 -name "v*" -type d 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$latest" ]; then cp "$latest/metadata.json" "$RESULTS/peer_model_metadata.json"; fi
fi

# ------------------------------------------------------------------------ batch inference
# Ours: each run scores a fresh copy of the trained store (a snapshot is identified by model,
# version, as-of, config and table versions; a re-run would be skipped with exit 99). Exit 7
# (monitoring thresholds failed, nothing published) is accepted but flagged in the report.
predict() {  # predict 3m|12m
    local data=$1 up asof store_setup
    up=${data^^}
    step "batch inference, $up rows"
    if [ "$data" = 3m ]; then
        asof=$ASOF3
        store_setup="rm -rf '$OURS/score-3m' && cp -a '$OURS/train-$SCORE_MODEL' '$OURS/score-3m'"
    else
        asof=$ASOF12
        store_setup="rm -rf '$OURS/score-12m' && cp -a '$OURS/feat-12m' '$OURS/score-12m' && mkdir -p '$OURS/score-12m/models' && cp -a '$OURS/train-$SCORE_MODEL/models/flight_delay' '$OURS/score-12m/models/'"
        # The peer's predict at 12M uses its 3M model, copied in (as in its run.sh).
        rm -rf "$PEERW/store-12m-polars/models" && mkdir -p "$PEERW/store-12m-polars/models"
        cp -r "$PEERW/store-3m-polars/models/flight_delay" "$PEERW/store-12m-polars/models/" || true
    fi
    ours "predict $up / ours" --tag kind=stage --tag stage=predict --tag data="$data" --tag variant=rust \
        --tag startup="startup: inference-pipeline score (already published, exit 99)" \
        --ok-exit 0,7 --setup "$store_setup" \
        -- "$IP" score "$EX/score.toml" --store "$OURS/score-$data" --as-of "$asof" --model latest
    peer "predict $up / peer" --tag kind=stage --tag stage=predict --tag data="$data" --tag variant=polars+sklearn \
        --tag startup="startup: peer train/predict imports" \
        -- "${PEER_FTI[@]}" predict --store "$PEERW/store-$data-polars"
}
if want predict3m; then predict 3m; fi
if want features12m; then features 12m "$SRC12"; fi
if want predict12m; then predict 12m; fi

# --------------------------------------------------------------------------------- start-up
if want startup; then
    step "start-up"
    st=(--runs "$STARTUP_RUNS" --quiet-sample 0.5 --tag kind=startup)
    for b in feature-pipeline training-pipeline inference-pipeline; do
        ours "startup: $b --help" "${st[@]}" --tag pair=none -- "$BIN/$b" --help
    done
    ours "startup: feature-pipeline check" "${st[@]}" --tag pair=features -- "$FP" check "$EX/features.toml"
    ours "startup: training-pipeline check" "${st[@]}" --tag pair=train -- "$TP" check "$EX/model.toml"
    rm -rf "$OURS/noop-features" "$OURS/noop-score"
    cp -a "$OURS/feat-3m" "$OURS/noop-features" || true
    cp -a "$OURS/score-3m" "$OURS/noop-score" || true
    ours "startup: feature-pipeline run (already committed, exit 99)" "${st[@]}" --tag pair=features --ok-exit 99 \
        -- "$FP" run "$EX/features.toml" --store "$OURS/noop-features" --source "flights=$SRC3"
    ours "startup: inference-pipeline score (already published, exit 99)" "${st[@]}" --tag pair=predict --ok-exit 99 \
        -- "$IP" score "$EX/score.toml" --store "$OURS/noop-score" --as-of "$ASOF3" --model latest
    peer "startup: python -c pass" "${st[@]}" --tag pair=none -- "$VPY" -c pass
    peer "startup: peer fti_peer.py --help" "${st[@]}" --tag pair=other -- "${PEER_FTI[@]}" --help
    peer "startup: peer features/polars imports" "${st[@]}" --tag pair=features -- "$VPY" -c "import polars"
    peer "startup: peer features/pandas imports" "${st[@]}" --tag pair=features -- "$VPY" -c "import numpy, pandas, pyarrow.parquet"
    peer "startup: peer features/duckdb imports" "${st[@]}" --tag pair=features -- "$VPY" -c "import duckdb"
    imports="import joblib, numpy, polars, sklearn.ensemble, sklearn.impute, sklearn.linear_model, sklearn.metrics, sklearn.pipeline, sklearn.preprocessing"
    peer "startup: peer train/predict imports" "${st[@]}" --tag pair=train,predict -- "$VPY" -c "$imports"
fi

# -------------------------------------------------------- inference memory vs entity count
if want synth; then
    for n in $ENTITIES; do
        step "synthetic scoring: $n entities"
        d=$W/synth/n$n
        rm -rf "$d"
        if ! "$VPY" "$HERE/synth.py" --entities "$n" --out "$d" >&2; then
            echo "!! bench/synth.py failed for $n entities; skipping" >&2
            FAILED+=("synthetic $n: generate")
            continue
        fi
        sasof=$(cat "$d/as_of.txt")
        ours "synthetic $n: features (setup)" --runs 1 --tag kind=synth --tag entities="$n" --tag step=features \
            --setup "rm -rf '$d/store'" -- "$FP" run "$d/features.toml" --store "$d/store"
        ours "synthetic $n: train (setup)" --runs 1 --tag kind=synth --tag entities="$n" --tag step=train --ok-exit 0,4 \
            --setup "rm -rf '$d/train' && cp -a '$d/store' '$d/train'" -- "$TP" train "$d/model.toml" --store "$d/train"
        ours "synthetic $n: score" --tag kind=synth --tag entities="$n" --tag step=score --ok-exit 0,7 \
            --setup "rm -rf '$d/score' && cp -a '$d/train' '$d/score'" \
            -- "$IP" score "$d/score.toml" --store "$d/score" --as-of "$sasof" --model latest
        rm -rf "$d/store" "$d/score"   # keep the trained store and the logs only
    done
fi

# ----------------------------------------------------------------------------------- report
if want report; then
    step "report"
    report
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
    printf '\n!! %d case(s) failed: %s\n' "${#FAILED[@]}" "$(IFS=';'; echo "${FAILED[*]}")" >&2
    exit 1
fi
echo "done: $OUT (records: $RES)" >&2
