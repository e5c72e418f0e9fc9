#!/usr/bin/env bash
# Throwaway local Docker registry (Debian's `docker-registry`, distribution 2.x)
# for testing image pulls. This is also the recipe the Rust tests follow.
#
#   eval "$(scripts/registry-test.sh start)"  # prints: export BERTH_TEST_REGISTRY=127.0.0.1:PORT
#   scripts/registry-test.sh selftest         # push berth-test/busybox, rmi, pull it back
#   scripts/registry-test.sh status
#   scripts/registry-test.sh stop
#
# Recipe:
#   1. config.yml (below): storage in a temp dir, http.addr 127.0.0.1:PORT, no auth,
#      no TLS. Docker treats 127.0.0.0/8 as an insecure registry by default
#      (`docker info` -> "Insecure Registries: 127.0.0.0/8"), so plain HTTP works
#      without touching daemon.json.
#   2. docker-registry serve DIR/config.yml   (background; GET /v2/ -> 200 when ready)
#   3. docker tag berth-test/busybox 127.0.0.1:PORT/berth-test/busybox-pull:latest
#      docker push 127.0.0.1:PORT/berth-test/busybox-pull:latest
#      docker rmi 127.0.0.1:PORT/berth-test/busybox-pull:latest   (so a pull is needed)
#      docker pull 127.0.0.1:PORT/berth-test/busybox-pull:latest
#
# State (dir, port, pid) lives in $BERTH_REGISTRY_TEST_STATE
# (default /tmp/berth-registry-test.state). Logs go to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTH_LOG_TAG=registry-test
# shellcheck source=images/lib.sh
. "$HERE/../images/lib.sh"

STATE=${BERTH_REGISTRY_TEST_STATE:-/tmp/berth-registry-test.state}

load_state() {
    [[ -f $STATE ]] || return 1
    DIR="" PORT="" PID=""
    # shellcheck disable=SC1090
    . "$STATE"
    [[ -n $DIR && -n $PORT && -n $PID ]]
}

# GET http://127.0.0.1:$1/v2/ answers 200?
registry_ready() {
    local status
    status=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
        IFS= read -r -t 5 line <&3 && printf '%s' "$line"
    ) || return 1
    [[ $status == "HTTP/1."[01]" 200"* ]]
}

running() {
    load_state && kill -0 "$PID" 2>/dev/null && registry_ready "$PORT"
}

cmd_start() {
    if running; then
        berth_log "already running on 127.0.0.1:$PORT (pid $PID)"
        printf 'export BERTH_TEST_REGISTRY=127.0.0.1:%s\n' "$PORT"
        return
    fi
    [[ -f $STATE ]] && { berth_log "removing stale state $STATE"; cmd_stop; }

    command -v docker-registry >/dev/null || berth_need_pkgs docker-registry
    local bin i
    bin=$(command -v docker-registry) || berth_die "docker-registry not found"

    DIR=$(mktemp -d /tmp/berth-registry.XXXXXX)
    mkdir "$DIR/data"
    for _ in 1 2 3 4 5; do
        PORT=$(berth_free_port)
        cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
        # setsid: not tied to the caller's terminal/process group.
        setsid "$bin" serve "$DIR/config.yml" >"$DIR/registry.log" 2>&1 </dev/null &
        PID=$!
        printf 'DIR=%q\nPORT=%q\nPID=%q\n' "$DIR" "$PORT" "$PID" >"$STATE"
        for ((i = 0; i < 100; i++)); do
            registry_ready "$PORT" && break
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        if registry_ready "$PORT"; then
            berth_log "docker-registry ($bin) on 127.0.0.1:$PORT, storage $DIR/data"
            printf 'export BERTH_TEST_REGISTRY=127.0.0.1:%s\n' "$PORT"
            return
        fi
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        if grep -q 'address already in use' "$DIR/registry.log"; then
            berth_log "port $PORT was taken, retrying"
            continue
        fi
        cat "$DIR/registry.log" >&2
        break
    done
    rm -rf "$DIR"
    rm -f "$STATE"
    berth_die "docker-registry did not start"
}

cmd_stop() {
    if ! load_state; then
        berth_log "not running (no state file $STATE)"
        rm -f "$STATE"
        return 0
    fi
    # Only kill the pid if it still is our registry.
    if [[ -r /proc/$PID/cmdline ]] && tr '\0' ' ' </proc/"$PID"/cmdline | grep -q "serve $DIR/config.yml"; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
    fi
    [[ $DIR == /tmp/berth-registry.* && -d $DIR ]] && rm -rf "$DIR"
    rm -f "$STATE"
    berth_log "stopped (port $PORT)"
}

cmd_selftest() {
    local started=0 reg ref out cname
    if ! running; then
        eval "$(cmd_start)"
        started=1
    fi
    load_state
    reg=127.0.0.1:$PORT
    docker image inspect berth-test/busybox:latest >/dev/null 2>&1 ||
        berth_die "berth-test/busybox missing: run images/build.sh busybox"

    # a) The plain recipe. Note: berth-test/busybox keeps the layers local, so the
    #    pull only fetches the manifest and re-tags.
    ref=$reg/berth-test/busybox-pull:latest
    docker tag berth-test/busybox:latest "$ref"
    docker push "$ref" >&2
    docker rmi "$ref" >&2
    if docker image inspect "$ref" >/dev/null 2>&1; then berth_die "$ref still present after rmi"; fi
    docker pull "$ref" >&2
    out=$(docker run --rm --label berth-test=registry-selftest "$ref" pulled)
    docker rmi "$ref" >/dev/null
    [[ $out == *"greet: pulled"* ]] || berth_die "unexpected output from pulled image: $out"

    # b) An image with a layer that exists nowhere else, so the pull must download a blob.
    ref=$reg/berth-test/busybox-unique:latest
    cname=berth-registry-selftest-$$
    docker run --name "$cname" --label berth-test=registry-selftest --entrypoint /bin/sh \
        berth-test/busybox:latest -c "echo $cname > /marker"
    docker commit "$cname" "$ref" >/dev/null
    docker rm "$cname" >/dev/null
    docker push "$ref" >&2
    docker rmi "$ref" >&2 # deletes the image and its unique layer
    out=$(docker pull "$ref")
    printf '%s\n' "$out" >&2
    [[ $out == *"Pull complete"* ]] || berth_die "pull of $ref did not download a layer"
    out=$(docker run --rm --label berth-test=registry-selftest --entrypoint cat "$ref" /marker)
    docker rmi "$ref" >/dev/null
    [[ $out == "$cname" ]] || berth_die "unexpected marker from pulled image: $out"

    berth_log "selftest OK: push/rmi/pull/run via $reg"
    if ((started)); then cmd_stop; fi
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
selftest) cmd_selftest ;;
status) if running; then echo "running: 127.0.0.1:$PORT (pid $PID, dir $DIR)"; else echo "not running"; exit 1; fi ;;
*)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
