#!/usr/bin/env bash
# berth's test command:  ./scripts/test.sh [cargo-nextest args...]
#
# 1. fails (does not skip) when Docker is unreachable;
# 2. builds the test images if missing (images/build.sh), exports BERTH_TEST_IMAGES_READY=1;
# 3. starts a throwaway PostgreSQL (scripts/pg-test.sh) unless BERTH_TEST_PG_URL is
#    set already, and stops it on exit;
# 4. runs `cargo nextest run --workspace --no-fail-fast "$@"` and exits with its code.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BERTH_LOG_TAG='test'
# shellcheck source=images/lib.sh
. "$ROOT/images/lib.sh"

if ! docker info >/dev/null 2>&1; then
    docker info >&2 || true
    berth_die "'docker info' failed: berth's tests need a running Docker daemon (they fail, never skip, without one)"
fi
command -v cargo >/dev/null || berth_die "cargo not found"
cargo nextest --version >/dev/null 2>&1 || berth_die "cargo-nextest not installed (cargo install cargo-nextest --locked)"

"$ROOT/images/build.sh"
export BERTH_TEST_IMAGES_READY=1

if [[ -z ${BERTH_TEST_PG_URL:-} ]]; then
    # A state file of our own, so parallel runs do not share a server.
    export BERTH_PG_TEST_STATE=${TMPDIR:-/tmp}/berth-pg-test.$$.state
    trap '"$ROOT/scripts/pg-test.sh" stop || true' EXIT
    pg_env=$("$ROOT/scripts/pg-test.sh" start)
    eval "$pg_env"
    [[ -n ${BERTH_TEST_PG_URL:-} ]] || berth_die "pg-test.sh did not provide BERTH_TEST_PG_URL"
fi
export BERTH_TEST_PG_URL

berth_log "BERTH_TEST_PG_URL=$BERTH_TEST_PG_URL"
rc=0
cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
exit "$rc"
