#!/usr/bin/env bash
# The container images of the three pipelines, built and verified for real with Podman (no
# Docker engine needed): build the images from docker/Containerfile, then run features ->
# train -> score once INSIDE them against the S3 server and Redis of scripts/services.sh on
# 127.0.0.1, and check what they wrote.
#
#   bash scripts/containers.sh            # all: install, build, run the flow, check, report sizes
#   bash scripts/containers.sh build      # install, binaries, base image, the three images
#   bash scripts/containers.sh context    # only the build context target/containers/context
#                                         # (no Podman, no root: e.g. before `docker compose build`)
#
# Environment:
#   FTI_BIN_DIR=DIR       take the three binaries from DIR instead of
#                         `cargo build --release --locked -p <the three pipelines> --bins`
#   FTI_IMAGE_TAG=TAG     image tag (default: the git short commit, or "dev"); :latest is added
#   FTI_BASE_IMAGE=REF    base of the staging stage (default localhost/fti-debian:bookworm,
#                         made here with debootstrap when it is absent)
#   FTI_DEBIAN_MIRROR=URL for debootstrap (default http://deb.debian.org/debian)
#
# Runs as root on a fresh Debian 12 machine: apt-get installs podman, buildah, runc,
# fuse-overlayfs, uidmap, debootstrap, binutils and jq when missing (idempotent, like
# scripts/setup.sh), and Podman runs rootful with vfs storage (/var/lib/containers/storage),
# the cgroupfs manager and runc, with host networking. Writes target/containers/: context/,
# flow/ (each job's stdout summary and stderr log) and sizes.md. Progress goes to stderr.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
scripts_dir="$ROOT/scripts"

ACTION=${1:-all}
case "$ACTION" in
    all | build | context) ;;
    *)
        echo "usage: $0 [all|build|context]" >&2
        exit 2
        ;;
esac

PIPELINES=(feature-pipeline training-pipeline inference-pipeline)
DEFAULT_BASE=localhost/fti-debian:bookworm
BASE_IMAGE=${FTI_BASE_IMAGE:-$DEFAULT_BASE}
DEBIAN_MIRROR=${FTI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
OUT="$ROOT/target/containers"
CONTEXT="$OUT/context"
APT_PACKAGES=(podman buildah runc fuse-overlayfs uidmap debootstrap binutils jq)

log() { printf '[containers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
step() { printf '\n=== [containers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Phase timings, printed at the end and written to sizes.md.
declare -A TIMINGS=()
TIMING_ORDER=()
timed() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    TIMINGS[$name]=$((SECONDS - start))
    TIMING_ORDER+=("$name")
}

# ---------------------------------------------------------------------------
# packages
# ---------------------------------------------------------------------------
is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    local pkg missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "Debian packages present: ${APT_PACKAGES[*]}"
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "need root to install Debian packages: ${missing[*]}"
    log "apt-get update (missing: ${missing[*]})"
    apt-get update -qq >&2
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
        "${missing[@]}" >&2
}

# ---------------------------------------------------------------------------
# podman: vfs storage, cgroupfs, runc, no default ulimits (setrlimit is not permitted here)
# ---------------------------------------------------------------------------
PODMAN=(podman --storage-driver vfs --cgroup-manager=cgroupfs --runtime=runc)

setup_podman() {
    [[ $(id -u) -eq 0 ]] || die "run as root: Podman runs rootful with vfs storage here"
    mkdir -p "$OUT"
    printf '[containers]\ndefault_ulimits = []\n' >"$OUT/containers.conf"
    export CONTAINERS_CONF="$OUT/containers.conf"
    log "$(podman --version), CONTAINERS_CONF=$CONTAINERS_CONF, storage: vfs in /var/lib/containers/storage"
}

# ---------------------------------------------------------------------------
# binaries and build context
# ---------------------------------------------------------------------------
BIN_DIR=""

build_binaries() {
    if [[ -n "${FTI_BIN_DIR:-}" ]]; then
        BIN_DIR=$(cd "$FTI_BIN_DIR" && pwd)
        log "binaries from FTI_BIN_DIR=$BIN_DIR (no cargo build)"
    else
        local target_dir
        target_dir=$(cargo metadata --format-version 1 --no-deps |
            grep -o '"target_directory":"[^"]*"' | head -n 1 | cut -d'"' -f4)
        [[ -n "$target_dir" ]] || die "cargo metadata gave no target_directory"
        log "cargo build --release --locked -p ${PIPELINES[*]} --bins (target dir $target_dir)"
        cargo build --release --locked -p feature-pipeline -p training-pipeline -p inference-pipeline --bins >&2
        BIN_DIR="$target_dir/release"
    fi
    local p
    for p in "${PIPELINES[@]}"; do
        [[ -x "$BIN_DIR/$p" ]] || die "$BIN_DIR/$p missing"
    done
}

make_context() {
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/bin"
    cp docker/stage-rootfs.sh "$CONTEXT/stage-rootfs.sh"
    local p
    for p in "${PIPELINES[@]}"; do
        if command -v strip >/dev/null; then
            strip --strip-debug -o "$CONTEXT/bin/$p" "$BIN_DIR/$p"
        else
            log "WARNING: no strip (binutils): $p goes into the image with its debug info"
            cp "$BIN_DIR/$p" "$CONTEXT/bin/$p"
        fi
        log "context: bin/$p $(($(stat -c %s "$CONTEXT/bin/$p") / 1000000)) MB (from $BIN_DIR/$p, $(($(stat -c %s "$BIN_DIR/$p") / 1000000)) MB)"
    done
    log "build context ready: $CONTEXT"
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
TAG=${FTI_IMAGE_TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
image() { echo "localhost/fti/$1:$TAG"; }

# The default base: Debian bookworm minbase + ca-certificates, made with debootstrap (nothing
# can be pulled from a registry here). apt's caches and lists are left out of the image.
make_base_image() {
    if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE present"
        return
    fi
    if [[ "$BASE_IMAGE" != "$DEFAULT_BASE" ]]; then
        log "base image $BASE_IMAGE absent: podman build will pull it"
        return
    fi
    local dir
    dir=$(mktemp -d /var/tmp/fti-debootstrap.XXXXXX)
    log "debootstrap --variant=minbase --include=ca-certificates bookworm $dir $DEBIAN_MIRROR"
    if ! debootstrap --variant=minbase --include=ca-certificates bookworm "$dir" "$DEBIAN_MIRROR" \
        >"$OUT/debootstrap.log" 2>&1; then
        tail -n 20 "$OUT/debootstrap.log" >&2
        rm -rf "$dir"
        die "debootstrap failed (log: $OUT/debootstrap.log)"
    fi
    log "podman import -> $BASE_IMAGE"
    tar -C "$dir" --numeric-owner \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        --exclude='./var/cache/apt/*' --exclude='./var/lib/apt/lists/*' \
        -c . | "${PODMAN[@]}" import --quiet - "$BASE_IMAGE" >/dev/null
    rm -rf "$dir"
    log "base image $BASE_IMAGE: $(size_mb "$BASE_IMAGE") MB"
}

size_mb() {
    local bytes
    bytes=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$1")
    awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }'
}

build_image() {
    local p=$1 version source revision previous
    previous=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$(image "$p")" 2>/dev/null || true)
    version=$(grep -m1 '^version = ' Cargo.toml | cut -d'"' -f2)
    source=$(grep -m1 '^repository = ' Cargo.toml | cut -d'"' -f2)
    revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    # The default base has everything the staging stage needs: build without network. Another
    # base may need apt-get for ca-certificates (docker/stage-rootfs.sh).
    local network=none
    [[ "$BASE_IMAGE" == "$DEFAULT_BASE" ]] || network=host
    log "podman build $(image "$p") (PIPELINE=$p, BASE=$BASE_IMAGE, log $OUT/build-$p.log)"
    # --squash-all: the runtime image is one layer (vfs stores every layer as a full copy, and
    # buildah would add an empty layer for the ENTRYPOINT stage); the base layers stay out of it.
    if ! "${PODMAN[@]}" build --squash-all --network "$network" \
        -f docker/Containerfile \
        --build-arg "PIPELINE=$p" --build-arg "BASE=$BASE_IMAGE" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" \
        -t "$(image "$p")" -t "localhost/fti/$p:latest" \
        "$CONTEXT" >"$OUT/build-$p.log" 2>&1; then
        tail -n 40 "$OUT/build-$p.log" >&2
        die "podman build of $p failed (log: $OUT/build-$p.log)"
    fi
    grep -E '^\[stage-rootfs\]   \s*(/|lib|linux-vdso)' "$OUT/build-$p.log" | sed 's/^\[stage-rootfs\]   */  ldd: /' >&2 || true
    log "built $(image "$p"): $(size_mb "$(image "$p")") MB"
    # The image this tag pointed to before, unless another tag still names it (vfs is disk hungry).
    if [[ -n "$previous" && "$previous" != "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$(image "$p")")" ]]; then
        "${PODMAN[@]}" rmi "$previous" >/dev/null 2>&1 || true
    fi
}

# What the image holds, read from its mounted filesystem: the binary, the user, the writable
# directories, and no shell, package manager or compiler.
check_image() {
    local p=$1 img dir entry user bad=()
    img=$(image "$p")
    entry=$("${PODMAN[@]}" image inspect --format '{{json .Config.Entrypoint}}' "$img")
    user=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$img")
    [[ "$entry" == "[\"/usr/local/bin/$p\"]" ]] || die "$img: entrypoint $entry"
    [[ "$user" == 10001:10001 ]] || die "$img: user '$user', expected 10001:10001"
    dir=$("${PODMAN[@]}" image mount "$img")
    [[ -x "$dir/usr/local/bin/$p" ]] || bad+=("no /usr/local/bin/$p")
    [[ "$(stat -c '%a %u:%g' "$dir/tmp")" == "1777 0:0" ]] || bad+=("/tmp is $(stat -c '%a %u:%g' "$dir/tmp")")
    [[ "$(stat -c '%u:%g' "$dir/home/fti")" == 10001:10001 ]] || bad+=("/home/fti owned by $(stat -c '%u:%g' "$dir/home/fti")")
    grep -q '^fti:x:10001:10001:' "$dir/etc/passwd" || bad+=("no user fti in /etc/passwd")
    [[ -s "$dir/etc/ssl/certs/ca-certificates.crt" ]] || bad+=("no CA bundle")
    local f
    for f in bin/sh bin/bash usr/bin/sh usr/bin/bash usr/bin/apt usr/bin/apt-get usr/bin/dpkg \
        usr/bin/cc usr/bin/gcc usr/bin/ld usr/bin/strip usr/bin/perl; do
        [[ ! -e "$dir/$f" ]] || bad+=("/$f present")
    done
    # Every file is one of ours or a shared library (what ldd listed); nothing else.
    local files file
    files=$(cd "$dir" && find . -mindepth 1 ! -type d | sort)
    while read -r file; do
        case "$file" in
            ./etc/passwd | ./etc/group | ./etc/nsswitch.conf | ./etc/ssl/certs/ca-certificates.crt) ;;
            "./usr/local/bin/$p") ;;
            ./lib/* | ./lib64/* | ./usr/lib/* | ./usr/lib64/*)
                [[ "$file" =~ \.so(\.[0-9]+)*$ ]] || bad+=("unexpected file $file")
                ;;
            *) bad+=("unexpected file $file") ;;
        esac
    done <<<"$files"
    files=$(tr '\n' ' ' <<<"$files")
    "${PODMAN[@]}" image unmount "$img" >/dev/null
    ((${#bad[@]} == 0)) || die "$img: ${bad[*]}"
    log "$img: entrypoint /usr/local/bin/$p, user 10001:10001, files: $files"
}

build_images() {
    local p
    for p in "${PIPELINES[@]}"; do
        timed "image $p" build_image "$p"
        check_image "$p"
    done
}

# ---------------------------------------------------------------------------
# the flow, inside the images, against S3 and Redis on the host
# ---------------------------------------------------------------------------
JOB_DIR=""
SERVICES_STARTED=0

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT
    if ((SERVICES_STARTED)); then
        bash "$scripts_dir/services.sh" stop || true
    fi
    if [[ -n "$JOB_DIR" ]]; then rm -rf "$JOB_DIR"; fi
    if ((rc)); then log "FAILED (exit $rc)"; fi
    exit "$rc"
}

# run_job NAME EXPECTED_EXIT PIPELINE ARGS...: one container run; its stdout (the JSON
# summary) goes to flow/NAME.json, its stderr (JSON logs) to flow/NAME.log.
run_job() {
    local name=$1 expected=$2 p=$3 rc=0 start=$SECONDS
    shift 3
    "${PODMAN[@]}" run --rm --network host --read-only --cap-drop all --security-opt no-new-privileges \
        -v "$ROOT/examples/flights:/config:ro" -v "$JOB_DIR:/job:ro" \
        -e FTI_STORE="$STORE" -e FTI_LOG_FORMAT=json \
        -e AWS_ENDPOINT -e AWS_ALLOW_HTTP -e AWS_REGION -e AWS_ACCESS_KEY_ID \
        -e AWS_SECRET_ACCESS_KEY -e AWS_VIRTUAL_HOSTED_STYLE_REQUEST \
        "$(image "$p")" "$@" >"$OUT/flow/$name.json" 2>"$OUT/flow/$name.log" || rc=$?
    TIMINGS["flow: $name"]=$((SECONDS - start))
    TIMING_ORDER+=("flow: $name")
    if [[ "$rc" != "$expected" ]]; then
        tail -n 30 "$OUT/flow/$name.log" >&2
        die "$p $* exited $rc, expected $expected (stdout flow/$name.json, stderr flow/$name.log)"
    fi
    log "$p $*: exit $rc as expected ($((SECONDS - start)) s)"
}

# expect LABEL ACTUAL WANTED
expect() {
    [[ "$2" == "$3" ]] || die "check failed: $1 is '$2', expected '$3'"
    log "ok: $1 = $2"
}

s3_get() {
    curl -sS --fail -m 30 --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$AWS_ENDPOINT/$1"
}

# The example's commented [redis] section, enabled with key prefix PREFIX (stdin to stdout).
enable_redis() {
    awk -v prefix="$1" '
        $0 == "# [redis]" { print "[redis]"; n++; next }
        $0 == "# prefix = \"route_delay\"" { print "prefix = \"" prefix "\""; n++; next }
        $0 == "# keep = 3" { print "keep = 3"; n++; next }
        { print }
        END { if (n != 3) exit 1 }'
}

run_flow() {
    bash "$scripts_dir/setup.sh"
    SERVICES_STARTED=1
    bash "$scripts_dir/services.sh" start
    # AWS_*, FTI_TEST_S3_URL (s3://fti-test), FTI_TEST_REDIS_URL
    eval "$(bash "$scripts_dir/services.sh" env)"

    local run bucket redis_host redis_port
    run="containers-$(date -u +%Y%m%dT%H%M%SZ)"
    STORE="$FTI_TEST_S3_URL/$run"
    bucket=${FTI_TEST_S3_URL#s3://}
    redis_host=$(sed -E 's#^redis://([^:/]+):([0-9]+).*#\1#' <<<"$FTI_TEST_REDIS_URL")
    redis_port=$(sed -E 's#^redis://([^:/]+):([0-9]+).*#\2#' <<<"$FTI_TEST_REDIS_URL")
    local -a rcli=(redis-cli -h "$redis_host" -p "$redis_port")
    rm -rf "$OUT/flow"
    mkdir -p "$OUT/flow"

    # The scoring config with its [redis] section enabled under a prefix of this run
    # (--redis-url alone only gives the URL; the section turns the bulk load on).
    JOB_DIR=$(mktemp -d /tmp/fti-containers-job.XXXXXX)
    chmod 0755 "$JOB_DIR"
    enable_redis "$run" <examples/flights/score.toml >"$JOB_DIR/score.toml" ||
        die "examples/flights/score.toml no longer has the commented [redis] section this script enables"
    chmod 0644 "$JOB_DIR/score.toml"
    log "store $STORE, Redis $FTI_TEST_REDIS_URL prefix $run, scoring config $JOB_DIR/score.toml"

    step "features (in $(image feature-pipeline))"
    run_job features-check 0 feature-pipeline check /config/features.toml
    run_job features-run 0 feature-pipeline run /config/features.toml
    expect "features summary .status" "$(jq -r .status "$OUT/flow/features-run.json")" succeeded
    run_job features-rerun 99 feature-pipeline run /config/features.toml

    step "training (in $(image training-pipeline))"
    run_job train-check 0 training-pipeline check /config/model.toml
    run_job train 0 training-pipeline train /config/model.toml --promote
    local version
    version=$(jq -r .version "$OUT/flow/train.json")
    expect "train summary .verdict" "$(jq -r .verdict "$OUT/flow/train.json")" accepted
    expect "train summary .promoted" "$(jq -r .promoted "$OUT/flow/train.json")" champion
    expect "train summary .metrics.roc_auc > 0.6" "$(jq '.metrics.roc_auc > 0.6' "$OUT/flow/train.json")" true

    step "scoring (in $(image inference-pipeline))"
    run_job score 0 inference-pipeline score /job/score.toml --as-of 2001-07-02 --redis-url "$FTI_TEST_REDIS_URL"
    local snapshot entities
    snapshot=$(jq -r .snapshot "$OUT/flow/score.json")
    entities=$(jq -r .entities "$OUT/flow/score.json")
    expect "score summary .outcome" "$(jq -r .outcome "$OUT/flow/score.json")" published
    expect "score summary .model_version" "$(jq -r .model_version "$OUT/flow/score.json")" "$version"
    [[ "$entities" =~ ^[1-9][0-9]*$ ]] || die "score summary .entities is '$entities'"
    run_job score-rerun 99 inference-pipeline score /job/score.toml --as-of 2001-07-02 --redis-url "$FTI_TEST_REDIS_URL"
    run_job snapshots 0 inference-pipeline snapshots /job/score.toml

    step "checks on the host"
    expect "snapshots: .snapshots" "$(jq -c .snapshots "$OUT/flow/snapshots.json")" "[\"$snapshot\"]"
    expect "snapshots: last pointer move" \
        "$(jq -r '.pointer_history[-1] | "\(.snapshot) \(.reason)"' "$OUT/flow/snapshots.json")" "$snapshot scored"
    local kv lines
    kv=$(s3_get "$bucket/$run/predictions/route_delay/snapshots/$snapshot/kv.jsonl") ||
        die "cannot read kv.jsonl of $snapshot from S3"
    lines=$(grep -c . <<<"$kv")
    expect "kv.jsonl lines (S3)" "$lines" "$entities"
    # <prefix>:current (the pointer), <prefix>:snapshots (loaded snapshots, newest first) and
    # one <prefix>:<snapshot>:<key> per entity (inference-pipeline/src/exports.rs).
    expect "Redis $run:current" "$("${rcli[@]}" get "$run:current")" "$snapshot"
    expect "Redis $run:snapshots" "$("${rcli[@]}" lrange "$run:snapshots" 0 -1 | tr '\n' ' ')" "$snapshot "
    expect "Redis keys $run:$snapshot:*" "$("${rcli[@]}" --scan --pattern "$run:$snapshot:*" | wc -l)" "$entities"
    expect "Redis keys $run:*" "$("${rcli[@]}" --scan --pattern "$run:*" | wc -l)" "$((entities + 2))"
    local line key want got
    for line in 1 2 "$lines"; do
        key=$(sed -n "${line}p" <<<"$kv" | jq -r .key)
        want=$(sed -n "${line}p" <<<"$kv" | jq -c .value)
        got=$("${rcli[@]}" get "$run:$snapshot:$key" | jq -c .value)
        expect "Redis value of $key" "$got" "$want"
    done
}

# ---------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------
report_sizes() {
    local p table
    table="| image | size (MB) | binary in it (MB) |"$'\n'"|---|---:|---:|"
    for p in "${PIPELINES[@]}"; do
        table+=$'\n'"| \`$(image "$p")\` | $(size_mb "$(image "$p")") | $(awk -v b="$(stat -c %s "$CONTEXT/bin/$p")" 'BEGIN { printf "%.1f", b / 1000000 }') |"
    done
    if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
        table+=$'\n'"| \`$BASE_IMAGE\` (staging stage only, not shipped) | $(size_mb "$BASE_IMAGE") | |"
    fi
    local timings="| phase | seconds |"$'\n'"|---|---:|" name
    for name in "${TIMING_ORDER[@]}"; do
        timings+=$'\n'"| $name | ${TIMINGS[$name]} |"
    done
    {
        echo "# Container images ($(date -u +%Y-%m-%dT%H:%M:%SZ), scripts/containers.sh $ACTION)"
        echo
        echo "$table"
        echo
        echo "Sizes from \`podman image inspect --format '{{.Size}}'\` (1 MB = 10^6 bytes)."
        echo
        echo "$timings"
    } >"$OUT/sizes.md"
    step "image sizes (also in ${OUT#"$ROOT"/}/sizes.md)"
    echo "$table" >&2
    echo >&2
    echo "$timings" >&2
    log "disk used by Podman: $(du -sh /var/lib/containers 2>/dev/null | cut -f1) in /var/lib/containers"
}

# ---------------------------------------------------------------------------
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "scripts/containers.sh $ACTION"
if [[ "$ACTION" == context ]]; then
    timed "binaries" build_binaries
    timed "context (strip)" make_context
    exit 0
fi

timed "packages" install_packages
setup_podman
timed "binaries" build_binaries
timed "context (strip)" make_context
step "base image"
timed "base image" make_base_image
step "images"
build_images
if [[ "$ACTION" == all ]]; then
    timed "flow (total, with services)" run_flow
fi
report_sizes
step "done"
