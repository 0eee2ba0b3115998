#!/usr/bin/env bash
# THE test command: install what the tests need, start the real services
# (SeaweedFS S3 + Redis on loopback), run the whole workspace's tests against
# them, and stop the services again whatever happens.
#
#   bash scripts/test.sh                 # cargo test --workspace
#   bash scripts/test.sh -- --nocapture  # extra args go to cargo test
#
# Exits with cargo test's exit code.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts_dir="$PWD/scripts"

bash "$scripts_dir/setup.sh"

# Stop the services on any exit (success, failure, Ctrl-C, kill), keeping our exit code.
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT
    bash "$scripts_dir/services.sh" stop || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$scripts_dir/services.sh" start

# AWS_*, FTI_TEST_S3_URL, FTI_TEST_REDIS_URL, FTI_PYTHON, FTI_CHROMIUM
eval "$(bash "$scripts_dir/services.sh" env)"

echo "[test $(date +%H:%M:%S)] cargo test --workspace $*" >&2
rc=0
cargo test --workspace "$@" || rc=$?
exit "$rc"
