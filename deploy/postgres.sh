#!/usr/bin/env bash
# Local PostgreSQL for development and tests: a project-owned cluster (not Debian's
# system cluster) under <state>/postgres, listening on 127.0.0.1 only.
#
# Usage: deploy/postgres.sh {install|start|stop|restart|status|kill|createdbs|reset-dbs|url NAME}
#
# Environment:
#   CRM_STATE_DIR      state root (default: <repo>/.state); PostgreSQL uses <root>/postgres
#                      (data/ = PGDATA, run/ = unix socket dir, server.log)
#   PG_PORT            TCP port on 127.0.0.1            (default: 55432)
#   PG_DATABASES       databases created by start/createdbs and recreated by reset-dbs
#                      (default: "customer interaction scoring retention gateway")
#   PG_BIN_DIR         directory with initdb/pg_ctl/... (default: newest /usr/lib/postgresql/*/bin)
#   PG_START_TIMEOUT   seconds to wait for the server to accept connections (default: 60)
#
# Access is passwordless (trust) for user "postgres" over TCP; see `url NAME`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Normalised (no "//", "..", symlinks) because the running postmaster is recognised
# by the exact datadir path on its command line.
STATE_DIR="$(realpath -m "${CRM_STATE_DIR:-$REPO_ROOT/.state}/postgres")"
PGDATA_DIR="$STATE_DIR/data"
SOCKET_DIR="$STATE_DIR/run"
LOG_FILE="$STATE_DIR/server.log"

HOST=127.0.0.1
PORT="${PG_PORT:-55432}"
DATABASES="${PG_DATABASES:-customer interaction scoring retention gateway}"
START_TIMEOUT="${PG_START_TIMEOUT:-60}"
SUPERUSER=postgres
# Our settings live in their own file, included from postgresql.conf and rewritten on
# every start, so PG_PORT/state-dir changes take effect without touching initdb output.
LOCAL_CONF_NAME=crm-local.conf

PG_BIN=""

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

show_log_tail() {
    if [[ -s "$LOG_FILE" ]]; then
        printf '[postgres] ---- last 30 lines of %s ----\n' "$LOG_FILE" >&2
        tail -n 30 "$LOG_FILE" >&2 || true
        printf '[postgres] ---- end of log ----\n' >&2
    fi
}

# True while pid exists and is not a zombie (an exited child that init has not
# reaped yet still answers kill -0).
alive() {
    [[ -e "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------- install

# Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
find_pg_bin() {
    if [[ -n "${PG_BIN_DIR:-}" ]]; then
        [[ -x "$PG_BIN_DIR/initdb" && -x "$PG_BIN_DIR/postgres" ]] || return 1
        echo "$PG_BIN_DIR"
        return 0
    fi
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/postgres" ]]; then
        echo "$dir"
        return 0
    fi
    # Other layouts (e.g. a source build): initdb on PATH, resolved through symlinks.
    if command -v initdb >/dev/null 2>&1; then
        dir="$(dirname "$(readlink -f "$(command -v initdb)")")"
        if [[ -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    return 1
}

cmd_install() {
    if [[ -n "${PG_BIN_DIR:-}" ]] && ! find_pg_bin >/dev/null; then
        die "PG_BIN_DIR=$PG_BIN_DIR does not contain initdb and postgres"
    fi
    if PG_BIN="$(find_pg_bin)"; then
        log "PostgreSQL binaries found in $PG_BIN"
        return 0
    fi
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed; run as root: apt-get update && apt-get install -y postgresql"
        sudo=(sudo)
    fi
    log "PostgreSQL not found; installing Debian's postgresql package ..."
    "${sudo[@]}" apt-get update -q || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql ||
        die "apt-get install postgresql failed"
    PG_BIN="$(find_pg_bin)" || die "postgresql installed but initdb/postgres not found under /usr/lib/postgresql/*/bin"
    log "installed; binaries in $PG_BIN"
}

need_bin() {
    [[ -n "$PG_BIN" ]] || PG_BIN="$(find_pg_bin)" || die "PostgreSQL is not installed (run: deploy/postgres.sh install)"
}

# ---------------------------------------------------------------- helpers

# PostgreSQL refuses to run as root, so as root the server-side tools run as the
# "postgres" OS user; cd / so they never trip over an unreadable cwd (e.g. /root).
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Client commands connect over TCP as the trust-authenticated superuser, so they
# work the same for root and normal users.
psql_admin() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U "$SUPERUSER" -d postgres "$@"
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Prints the postmaster pid if our cluster's postmaster is alive. postmaster.pid can
# survive a SIGKILL, and its pid may have been reused, so check the process too.
postmaster_pid() {
    local pid
    [[ -f "$PGDATA_DIR/postmaster.pid" ]] || return 1
    pid="$(head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # pg_ctl starts the postmaster as `postgres -D <datadir>`: match our datadir, so a
    # reused pid (even another cluster's postgres process) is not mistaken for ours.
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$PGDATA_DIR" || return 1
    echo "$pid"
}

# Serialises start/stop/kill on this state dir (fd 9). pg_ctl gets fd 9 closed, so
# the postmaster never inherits the lock.
lock_state() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w "$((START_TIMEOUT + 60))" 9 || die "timed out waiting for another postgres.sh on $STATE_DIR"
}

# "postgres (PostgreSQL) 15.18 (Debian ...)" -> 15.18
pg_version() {
    "$PG_BIN/postgres" --version | awk '{print $3}'
}

is_ready() {
    "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PORT" -U "$SUPERUSER" -d postgres -t 2
}

wait_ready() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until is_ready; do
        if ! postmaster_pid >/dev/null; then
            show_log_tail
            die "PostgreSQL is not running (exited during startup?)"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            die "PostgreSQL did not accept connections on $HOST:$PORT within ${START_TIMEOUT}s"
        fi
        sleep 0.3
    done
}

# As root: the state dir must belong to postgres, and postgres must be able to reach
# it through every parent directory (x bit), e.g. when the repo lives under /root.
prepare_state_dir() {
    mkdir -p "$STATE_DIR" "$SOCKET_DIR"
    is_root || return 0
    id -u postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (is the postgresql package installed?)"
    chown postgres:postgres "$STATE_DIR" "$SOCKET_DIR"
    if ! runuser -u postgres -- test -w "$STATE_DIR" -a -x "$STATE_DIR"; then
        # Walk from / downwards: a dir's x bit only matters once its parent is reachable.
        local dir="" part
        local -a parts
        IFS=/ read -ra parts <<<"${STATE_DIR#/}"
        for part in "${parts[@]}"; do
            dir="$dir/$part"
            if ! runuser -u postgres -- test -x "$dir"; then
                log "granting traverse permission (o+x) on $dir so the postgres user can reach $STATE_DIR"
                chmod o+x "$dir"
            fi
        done
        runuser -u postgres -- test -w "$STATE_DIR" ||
            die "the postgres OS user cannot write $STATE_DIR; set CRM_STATE_DIR to a directory it can reach"
    fi
    # Re-own whatever may have been created by root earlier (e.g. an old log file).
    chown -R postgres:postgres "$STATE_DIR"
}

init_cluster_once() {
    if [[ -f "$PGDATA_DIR/PG_VERSION" ]]; then
        local have want
        have="$(cat "$PGDATA_DIR/PG_VERSION")"
        want="$(pg_version | cut -d. -f1)"
        [[ "$have" == "$want" ]] ||
            die "$PGDATA_DIR was created by PostgreSQL $have but $PG_BIN is version $want; delete $STATE_DIR to start fresh"
        return 0
    fi
    # No PG_VERSION means initdb never completed: start over from an empty dir.
    rm -rf "$PGDATA_DIR"
    log "initialising a new cluster in $PGDATA_DIR"
    if ! as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$SUPERUSER" --auth=trust \
            -E UTF8 --locale=C --no-instructions >"$STATE_DIR/initdb.log" 2>&1; then
        cat "$STATE_DIR/initdb.log" >&2
        die "initdb failed"
    fi
    if is_root; then chown postgres:postgres "$STATE_DIR/initdb.log"; fi
    echo "include_if_exists = '$LOCAL_CONF_NAME'" >>"$PGDATA_DIR/postgresql.conf"
}

write_local_conf() {
    local conf="$PGDATA_DIR/$LOCAL_CONF_NAME"
    cat >"$conf" <<EOF
# Generated by deploy/postgres.sh on every start - edits are overwritten.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
fsync = on
# stderr goes to server.log via pg_ctl -l
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    if is_root; then chown postgres:postgres "$conf"; fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local pid
    PG_BIN="$(find_pg_bin)" || cmd_install
    lock_state
    if pid="$(postmaster_pid)"; then
        log "already running (pid $pid) on $HOST:$PORT"
        wait_ready
        cmd_createdbs
        return 0
    fi
    # Grace period: a postmaster that was just SIGKILLed from outside may still hold it.
    local deadline=$((SECONDS + 10))
    while port_open "$PORT"; do
        ((SECONDS < deadline)) ||
            die "port $HOST:$PORT is already in use by another process (not this cluster: $PGDATA_DIR)"
        sleep 0.2
    done
    # unix socket paths are limited to 107 bytes
    if ((${#SOCKET_DIR} + 20 > 107)); then
        die "socket dir path too long for a unix socket: $SOCKET_DIR (set CRM_STATE_DIR to a shorter path)"
    fi

    prepare_state_dir
    init_cluster_once
    write_local_conf
    log "starting PostgreSQL $(pg_version) on $HOST:$PORT, log: $LOG_FILE"
    local attempt
    for attempt in 1 2; do
        # A SIGKILLed postmaster leaves postmaster.pid and the socket lock file behind.
        # PostgreSQL refuses to start while the pid in them answers kill -0, which a
        # zombie (not yet reaped by init) or a reused pid does. We hold the lock and
        # know no postmaster runs on this datadir, so both files are stale. (Shared
        # memory still attached by old backends is detected by PostgreSQL itself.)
        rm -f "$PGDATA_DIR/postmaster.pid" "$SOCKET_DIR/.s.PGSQL.$PORT.lock"
        if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG_FILE" -w -t "$START_TIMEOUT" start >/dev/null 9>&-; then
            break
        fi
        if ((attempt == 2)); then
            show_log_tail
            die "pg_ctl start failed"
        fi
        # Backends of a just-killed postmaster may still be exiting; retry once.
        log "pg_ctl start failed; retrying in 2s"
        sleep 2
    done
    wait_ready
    log "ready on $HOST:$PORT (pid $(postmaster_pid)) after ${SECONDS}s"
    cmd_createdbs
}

cmd_stop() {
    need_bin
    local pid
    [[ -d "$STATE_DIR" ]] || { log "not running"; return 0; }
    lock_state
    if ! pid="$(postmaster_pid)"; then
        log "not running"
        return 0
    fi
    log "stopping (pid $pid, fast mode) ..."
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null; then
        show_log_tail
        die "pg_ctl stop failed"
    fi
    log "stopped"
}

cmd_restart() {
    cmd_stop
    cmd_start
}

cmd_status() {
    need_bin
    local pid
    if pid="$(postmaster_pid)" && is_ready; then
        echo "postgres: running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    echo "postgres: not running"
    return 1
}

# Pids whose parent is $1, read from /proc (no dependency on procps).
children_of() {
    local d st
    local -a fields
    for d in /proc/[0-9]*; do
        read -r st <"$d/stat" 2>/dev/null || continue
        # Fields after "(comm) " are: state ppid ...
        read -ra fields <<<"${st##*) }"
        if [[ "${fields[1]:-}" == "$1" ]]; then
            echo "${d#/proc/}"
        fi
    done
}

# Simulates a crash: SIGKILL the postmaster. Its children notice the postmaster's
# death and exit on their own; wait for them (and kill stragglers) so that the next
# start does not find the old shared memory still attached.
cmd_kill() {
    local pid children child i
    [[ -d "$STATE_DIR" ]] || { log "not running"; return 0; }
    lock_state
    if ! pid="$(postmaster_pid)"; then
        log "not running"
        return 0
    fi
    children="$(children_of "$pid")"
    log "SIGKILL to postmaster pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        local any=0
        for child in $pid $children; do
            if alive "$child"; then any=1; fi
        done
        ((any)) || return 0
        sleep 0.2
    done
    for child in $children; do
        kill -KILL "$child" 2>/dev/null || true
    done
}

require_running() {
    need_bin
    if ! postmaster_pid >/dev/null || ! is_ready; then
        die "PostgreSQL is not running on $HOST:$PORT (run: deploy/postgres.sh start)"
    fi
}

cmd_createdbs() {
    require_running
    local db
    for db in $DATABASES; do
        # \gexec runs the generated statement only when the database is missing;
        # %I quotes the name safely.
        psql_admin -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SQL
    done
    log "databases present: $DATABASES"
}

cmd_reset_dbs() {
    require_running
    local db
    for db in $DATABASES; do
        # Terminate open sessions first (DROP refuses while anyone is connected);
        # WITH (FORCE) also covers a client that reconnects in between.
        psql_admin -v db="$db" <<'SQL'
SELECT count(pg_terminate_backend(pid)) AS terminated
FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid() \g /dev/null
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db')\gexec
SELECT format('CREATE DATABASE %I', :'db')\gexec
SQL
    done
    log "recreated databases: $DATABASES"
}

cmd_url() {
    local name="${1:-}"
    [[ -n "$name" ]] || die "usage: deploy/postgres.sh url NAME"
    echo "postgresql+asyncpg://$SUPERUSER@$HOST:$PORT/$name"
}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_restart ;;
        status) cmd_status ;;
        kill) cmd_kill ;;
        createdbs) cmd_createdbs ;;
        reset-dbs) cmd_reset_dbs ;;
        url) cmd_url "${2:-}" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
