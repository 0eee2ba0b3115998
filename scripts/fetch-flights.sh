#!/usr/bin/env bash
# Fetch the real workload: flights-3m.parquet (3,000,000 US flights, Jan-Jun 2001) and
# airports.csv from the npm package vega-datasets@3.2.1.
#
#   bash scripts/fetch-flights.sh            # into ./data/ (repo-relative, git-ignored)
#   FTI_DATA_DIR=/tmp/fti-data bash scripts/fetch-flights.sh
#
# The only network access is `npm pack` against the npm registry. Idempotent: when both
# files are already there, nothing is fetched. Prints the two absolute paths on stdout
# (progress goes to stderr). Never commit the 13 MB parquet file.
set -euo pipefail

PACKAGE="vega-datasets@3.2.1"
FILES=(flights-3m.parquet airports.csv)
# SHA-256 of the files in vega-datasets 3.2.1, checked after extraction.
declare -A SHA256=(
    [flights-3m.parquet]=dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0
    [airports.csv]=903c7169e6d558eefb95295fe2947ec8503135fbb855ea5c737cf4a90ea603ad
)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR=${FTI_DATA_DIR:-$REPO/data}
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$REPO/$DATA_DIR" ;; esac

log() { printf '[fetch-flights] %s\n' "$*" >&2; }

have_all() {
    local f
    for f in "${FILES[@]}"; do [[ -s "$DATA_DIR/$f" ]] || return 1; done
}

if have_all; then
    log "already present in $DATA_DIR, nothing to fetch"
else
    command -v npm >/dev/null || { log "ERROR: npm is required (apt-get install npm)"; exit 1; }
    mkdir -p "$DATA_DIR"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    log "npm pack $PACKAGE"
    (cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
    tgz=$(ls "$tmp"/vega-datasets-*.tgz)
    log "extracting ${FILES[*]}"
    tar -xzf "$tgz" -C "$tmp" "${FILES[@]/#/package/data/}"
    for f in "${FILES[@]}"; do
        want=${SHA256[$f]}
        got=$(sha256sum "$tmp/package/data/$f" | cut -d' ' -f1)
        if [[ "$got" != "$want" ]]; then
            log "ERROR: $f has SHA-256 $got, expected $want"
            exit 1
        fi
        # publish atomically: a killed run never leaves a truncated file behind
        mv "$tmp/package/data/$f" "$DATA_DIR/.$f.part"
        mv "$DATA_DIR/.$f.part" "$DATA_DIR/$f"
    done
    log "done"
fi

for f in "${FILES[@]}"; do
    echo "$DATA_DIR/$f"
done
