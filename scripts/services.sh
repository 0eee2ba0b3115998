#!/usr/bin/env bash
# Start / stop the real services the FTI tests run against, on loopback only.
#
#   scripts/services.sh start    SeaweedFS S3 on 127.0.0.1:8333 (bucket fti-test, fresh data,
#                                signatures enforced) and Redis on 127.0.0.1:6379; waits until
#                                both answer; writes $FTI_SERVICES_DIR/env.sh
#   scripts/services.sh stop     stops both (by recorded PID); fine if already stopped
#   scripts/services.sh env      prints the `export ...` lines the tests need
#   scripts/services.sh status   tells whether each service is running
#
# `start` first stops whatever an earlier `start` left running, so it is safe to repeat.
# The tools come from scripts/setup.sh. Progress goes to stderr; `env` alone writes stdout.
set -euo pipefail

SERVICES_DIR="${FTI_SERVICES_DIR:-/tmp/fti-services}"
TOOLS_DIR="${FTI_TOOLS_DIR:-$HOME/.cache/fti-tools}"
VENV="$TOOLS_DIR/venv"
WEED="$VENV/bin/weed"

HOST=127.0.0.1
S3_PORT=8333
BUCKET=fti-test
REDIS_PORT=6379
# Fixed test credentials. weed enforces SigV4 only because these are in its
# environment when it starts on an empty data dir.
ACCESS_KEY=fti-test-key
SECRET_KEY=fti-test-secret

# Every port `weed mini` listens on (HTTP + gRPC = HTTP + 10000): S3, master,
# volume, filer, admin. weed silently moves to another port when one is taken,
# so all of them must be free before it starts.
WEED_PORTS=(8333 18333 9333 19333 9340 19340 8888 18888 23646 33646)

START_TIMEOUT=30 # seconds to wait for each service to become ready
STOP_TIMEOUT=30  # seconds to wait for a process to exit after SIGTERM

WEED_PID_FILE="$SERVICES_DIR/weed.pid"
WEED_LOG="$SERVICES_DIR/weed.log"
WEED_DATA="$SERVICES_DIR/s3-data"
REDIS_PID_FILE="$SERVICES_DIR/redis.pid"
REDIS_LOG="$SERVICES_DIR/redis.log"
REDIS_DATA="$SERVICES_DIR/redis-data"
ENV_FILE="$SERVICES_DIR/env.sh"

log() { printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:PORT (no ss/netstat needed).
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True while PID exists and is not a zombie (an exited child nobody reaped yet).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }" # fields after "pid (comm) "; the first is the state
    [[ "${stat:0:1}" != Z ]]
}

# True if PID is alive and its command name is NAME (guards against PID reuse).
# (/proc/PID/comm, not exe: Debian's redis-server is a symlink to redis-check-rdb.)
pid_is() {
    local pid=$1 name=$2 comm
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" == "$name" ]]
}

# PID recorded in FILE if that process is still running as NAME, else nothing.
live_pid() {
    local file=$1 name=$2 pid
    [[ -f "$file" ]] || return 0
    pid="$(tr -dc '0-9' <"$file")"
    if pid_is "$pid" "$name"; then echo "$pid"; fi
}

# HTTP status of a SigV4-signed GET on the bucket (200 once S3 is ready).
s3_status() {
    curl -s -o /dev/null -m 5 -w '%{http_code}' \
        --aws-sigv4 'aws:amz:us-east-1:s3' --user "$ACCESS_KEY:$SECRET_KEY" \
        "http://$HOST:$S3_PORT/$BUCKET" 2>/dev/null || true
}

redis_ping() { redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null || true; }

# The test environment, one `export` per line.
env_lines() {
    local -a vars=(
        "AWS_ENDPOINT=http://$HOST:$S3_PORT"
        "AWS_ALLOW_HTTP=true"
        "AWS_REGION=us-east-1"
        "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
        "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false"
        "FTI_TEST_S3_URL=s3://$BUCKET"
        "FTI_TEST_REDIS_URL=redis://$HOST:$REDIS_PORT/"
        "FTI_PYTHON=$VENV/bin/python"
        "FTI_CHROMIUM=/usr/bin/chromium"
    )
    local kv
    for kv in "${vars[@]}"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
}

# Wait until PID has exited, up to SECONDS; returns 1 if it is still alive.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------
do_stop() {
    local weed_pid redis_pid pid
    weed_pid="$(live_pid "$WEED_PID_FILE" weed)"
    redis_pid="$(live_pid "$REDIS_PID_FILE" redis-server)"

    if [[ -z "$weed_pid" && -z "$redis_pid" ]]; then
        log "no services running (from $SERVICES_DIR)"
    fi

    # Ask both to stop at once: weed takes a few seconds to shut down.
    if [[ -n "$weed_pid" ]]; then
        log "stopping SeaweedFS (pid $weed_pid)"
        kill -TERM "$weed_pid" 2>/dev/null || true
    fi
    if [[ -n "$redis_pid" ]]; then
        log "stopping Redis (pid $redis_pid)"
        redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 ||
            kill -TERM "$redis_pid" 2>/dev/null || true
    fi

    for pid in $weed_pid $redis_pid; do
        if ! wait_exit "$pid" "$STOP_TIMEOUT"; then
            log "pid $pid still alive after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_exit "$pid" 5 || { log "ERROR: pid $pid would not die"; return 1; }
        fi
    done

    rm -f "$WEED_PID_FILE" "$REDIS_PID_FILE" "$SERVICES_DIR"/*.sock
    if [[ -n "$weed_pid$redis_pid" ]]; then log "stopped"; fi
}

# ---------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------
fail_start() {
    log "ERROR: $*"
    do_stop || true
    exit 1
}

do_start() {
    [[ -x "$WEED" ]] || { log "ERROR: $WEED not found: run scripts/setup.sh"; exit 1; }
    local tool
    for tool in redis-server redis-cli curl; do
        command -v "$tool" >/dev/null || { log "ERROR: $tool not found: run scripts/setup.sh"; exit 1; }
    done

    mkdir -p "$SERVICES_DIR"

    # Whatever an earlier `start` left running goes first (fresh state every start).
    do_stop

    # Refuse to start on a busy port: weed would silently move elsewhere. A server we just
    # stopped can hold its ports for a few seconds more, so wait up to 20 s for them first.
    local port waited=0
    for port in "${WEED_PORTS[@]}" "$REDIS_PORT"; do
        while port_busy "$port" && [ "$waited" -lt 20 ]; do
            sleep 1
            waited=$((waited + 1))
        done
        if port_busy "$port"; then
            log "ERROR: port $HOST:$port is already in use (by another process, not ours)."
            if command -v ss >/dev/null; then ss -ltnp "sport = :$port" >&2 || true; fi
            exit 1
        fi
    done

    # --- SeaweedFS: fresh data dir, credentials in its environment -------------
    rm -rf "$WEED_DATA"
    mkdir -p "$WEED_DATA"
    log "starting SeaweedFS S3 on $HOST:$S3_PORT (data $WEED_DATA, log $WEED_LOG)"
    # setsid: own session, so a Ctrl-C meant for the caller does not hit it
    # directly (callers stop it through `stop`). exec keeps $! == weed's PID.
    (
        cd "$SERVICES_DIR"
        AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
            exec setsid "$WEED" mini \
            -dir="$WEED_DATA" \
            -ip="$HOST" -ip.bind="$HOST" \
            -s3.port="$S3_PORT" \
            -bucket="$BUCKET" \
            -webdav=false \
            -admin.ui=false \
            -master.telemetry=false \
            -s3.port.iceberg=0 -s3.port.lance=0 \
            -s3.localSocket="$SERVICES_DIR/s3.sock" \
            -filer.localSocket="$SERVICES_DIR/filer.sock"
    ) >"$WEED_LOG" 2>&1 </dev/null &
    local weed_pid=$!
    echo "$weed_pid" >"$WEED_PID_FILE"

    # --- Redis (starts while weed boots) ----------------------------------------
    rm -rf "$REDIS_DATA" "$REDIS_LOG"
    mkdir -p "$REDIS_DATA"
    log "starting Redis on $HOST:$REDIS_PORT (log $REDIS_LOG)"
    redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes \
        --save '' --appendonly no --lazyfree-lazy-server-del yes \
        --dir "$REDIS_DATA" --pidfile "$REDIS_PID_FILE" --logfile "$REDIS_LOG" ||
        fail_start "redis-server did not start (see $REDIS_LOG)"

    # --- wait for Redis ------------------------------------------------------------
    local deadline=$((SECONDS + START_TIMEOUT))
    until [[ "$(redis_ping)" == PONG ]]; do
        ((SECONDS < deadline)) || fail_start "Redis not answering PONG after ${START_TIMEOUT}s (see $REDIS_LOG)"
        sleep 0.1
    done
    log "Redis ready (pid $(live_pid "$REDIS_PID_FILE" redis-server))"

    # --- wait for SeaweedFS: log line on the right port, then a signed 200 --------
    deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! alive "$weed_pid"; then
            tail -n 20 "$WEED_LOG" >&2 || true
            fail_start "SeaweedFS exited during startup (see $WEED_LOG)"
        fi
        if grep -q 'S3 Endpoint:' "$WEED_LOG"; then
            grep -Eq "S3 Endpoint: *http://${HOST//./\\.}:$S3_PORT([^0-9]|\$)" "$WEED_LOG" ||
                fail_start "SeaweedFS S3 came up on another port: $(grep 'S3 Endpoint:' "$WEED_LOG")"
            [[ "$(s3_status)" == 200 ]] && break
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$WEED_LOG" >&2 || true
            fail_start "SeaweedFS not ready after ${START_TIMEOUT}s (signed GET /$BUCKET: $(s3_status))"
        fi
        sleep 0.2
    done
    pid_is "$weed_pid" weed || fail_start "pid $weed_pid is not weed"
    log "SeaweedFS ready (pid $weed_pid), bucket s3://$BUCKET answers 200"

    env_lines >"$ENV_FILE"
    log "environment written to $ENV_FILE (source it, or: eval \"\$(scripts/services.sh env)\")"
}

do_status() {
    local weed_pid redis_pid rc=0
    weed_pid="$(live_pid "$WEED_PID_FILE" weed)"
    redis_pid="$(live_pid "$REDIS_PID_FILE" redis-server)"
    if [[ -n "$weed_pid" ]]; then
        echo "seaweedfs: running (pid $weed_pid), signed GET /$BUCKET -> $(s3_status)"
    else
        echo "seaweedfs: stopped"; rc=1
    fi
    if [[ -n "$redis_pid" ]]; then
        echo "redis: running (pid $redis_pid), ping -> $(redis_ping)"
    else
        echo "redis: stopped"; rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    env) env_lines ;;
    status) do_status ;;
    *)
        echo "usage: $0 start|stop|env|status" >&2
        exit 2
        ;;
esac
