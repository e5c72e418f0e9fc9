#!/usr/bin/env bash
# Throwaway PostgreSQL for berth's tests, from Debian's binaries.
#
#   eval "$(scripts/pg-test.sh start)"   # prints: export BERTH_TEST_PG_URL=postgres://...
#   scripts/pg-test.sh stop              # stops it and deletes its data
#   scripts/pg-test.sh status
#
# The server listens on 127.0.0.1:<free port> and on a unix socket in its temp
# dir, with trust auth (local test use only), fsync off, and a `berth_test`
# database. Its data dir and port are recorded in the state file
# $BERTH_PG_TEST_STATE (default /tmp/berth-pg-test.state); `start` while that
# server is still running just prints its URL again. Everything except the export
# line goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTH_LOG_TAG=pg-test
# shellcheck source=images/lib.sh
. "$HERE/../images/lib.sh"

STATE=${BERTH_PG_TEST_STATE:-/tmp/berth-pg-test.state}
DB=berth_test

pg_bindir() { # newest /usr/lib/postgresql/<major>/bin
    local d
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
    [[ -n $d && -x $d/initdb ]] || return 1
    printf '%s\n' "$d"
}

# Run a PostgreSQL binary as the postgres system user when we are root
# (the server refuses to run as root).
as_pg() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url_for() { printf 'postgres://postgres@127.0.0.1:%s/%s\n' "$1" "$DB"; }

# Sets DIR, PORT, BIN from the state file; fails when there is none.
load_state() {
    [[ -f $STATE ]] || return 1
    DIR="" PORT="" BIN=""
    # shellcheck disable=SC1090
    . "$STATE"
    [[ -n $DIR && -n $PORT && -n $BIN ]]
}

running() { # is the server from the state file up and accepting connections?
    load_state && [[ -n $PORT && -f $DIR/data/postmaster.pid ]] &&
        "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 5
}

cmd_start() {
    if running; then
        berth_log "already running on 127.0.0.1:$PORT (data $DIR)"
        printf 'export BERTH_TEST_PG_URL=%s\n' "$(url_for "$PORT")"
        return
    fi
    [[ -f $STATE ]] && { berth_log "removing stale state $STATE"; cmd_stop; }

    if ! BIN=$(pg_bindir); then
        berth_need_pkgs postgresql
        BIN=$(pg_bindir) || berth_die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    fi
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || berth_die "no 'postgres' system user (install the postgresql package)"
    fi

    DIR=$(mktemp -d /tmp/berth-pg.XXXXXX)
    chmod 755 "$DIR"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$DIR"; fi
    printf 'DIR=%q\nPORT=\nBIN=%q\n' "$DIR" "$BIN" >"$STATE"

    berth_log "initdb in $DIR/data ($BIN)"
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
        >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; berth_die "initdb failed"; }

    local opts
    for _ in 1 2 3 4 5; do
        PORT=$(berth_free_port)
        printf 'DIR=%q\nPORT=%q\nBIN=%q\n' "$DIR" "$PORT" "$BIN" >"$STATE"
        # One line: pg_ctl hands these to the server through /bin/sh.
        opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR"
        opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        opts+=" -c max_connections=300 -c shared_buffers=64MB"
        if as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -o "$opts" start >/dev/null; then
            break
        fi
        if grep -q 'could not bind\|Address already in use' "$DIR/server.log" 2>/dev/null; then
            berth_log "port $PORT was taken, retrying"
            PORT=""
            continue
        fi
        tail -n 20 "$DIR/server.log" >&2 || true
        berth_die "PostgreSQL did not start (log: $DIR/server.log)"
    done
    [[ -n $PORT ]] || berth_die "PostgreSQL could not bind a port"

    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" ||
        berth_die "createdb $DB failed"
    berth_log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, socket dir $DIR, database $DB"
    printf 'export BERTH_TEST_PG_URL=%s\n' "$(url_for "$PORT")"
}

cmd_stop() {
    if ! load_state; then
        berth_log "not running (no state file $STATE)"
        rm -f "$STATE"
        return 0
    fi
    if [[ -f $DIR/data/postmaster.pid ]]; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ $DIR == /tmp/berth-pg.* && -d $DIR ]]; then
        rm -rf "$DIR"
    fi
    rm -f "$STATE"
    berth_log "stopped${PORT:+ (port $PORT)}"
}

cmd_status() {
    if running; then
        echo "running: $(url_for "$PORT") (data $DIR)"
    else
        echo "not running"
        return 1
    fi
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
