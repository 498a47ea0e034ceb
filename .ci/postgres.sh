#!/usr/bin/env bash
# A throwaway PostgreSQL cluster owned by one CI run, so the storage, filter and API tests
# run against PostgreSQL as well as SQLite.
#
#   .ci/postgres.sh start DIR   initdb in DIR, start on a free loopback port, print the URL
#   .ci/postgres.sh stop DIR    stop the cluster and remove DIR
#
# Nothing outside DIR is touched: trust auth on 127.0.0.1 only, the socket in DIR. When no
# server can be started, `start` prints the reason on stderr and exits 1 (the tests then
# skip, printing it). As root, the server runs as the `postgres` user (PostgreSQL refuses
# root); PG_BIN picks the binaries (default: the newest /usr/lib/postgresql/*/bin, else PATH).
set -euo pipefail

fail() {
    echo "postgres.sh: $*" >&2
    exit 1
}

pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        echo "$PG_BIN"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    elif command -v pg_config >/dev/null 2>&1; then
        pg_config --bindir
    else
        fail "no PostgreSQL server binaries (initdb) found; set PG_BIN or install postgresql"
    fi
}

# Run a command as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || fail "running as root and there is no 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 bin port
    bin=$(pg_bin)
    [[ -x "$bin/initdb" && -x "$bin/pg_ctl" ]] || fail "no initdb/pg_ctl in $bin"
    mkdir -p "$dir"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || fail "running as root and there is no 'postgres' user to own the cluster"
        chown postgres "$dir"
        runuser -u postgres -- test -w "$dir" \
            || fail "user postgres cannot write $dir (is a parent folder private?)"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U specrag --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || fail "initdb failed: $(tail -n 5 "$dir/initdb.log")"
    port=$(free_port)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start \
        >/dev/null 2>&1 || fail "the server did not start: $(tail -n 5 "$dir/data/server.log" 2>/dev/null)"
    echo "$port" >"$dir/port"
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U specrag specrag_test \
        || fail "createdb failed"
    echo "postgresql://specrag@127.0.0.1:$port/specrag_test"
}

stop() {
    local dir=$1 bin
    [[ -d "$dir" ]] || return 0
    bin=$(pg_bin)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start "${2:?usage: postgres.sh start DIR}" ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    *) fail "usage: postgres.sh start|stop DIR" ;;
esac
