#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for Vouch's tests (Debian's binaries, scripts/install-deps.sh).
#
#   test-postgres.sh start DIR [OWNER_PID]   prints postgres://vouch@127.0.0.1:PORT/postgres, also in DIR/url
#   test-postgres.sh stop DIR                stops the cluster and removes DIR
#   test-postgres.sh pause DIR               stops the server (fast shutdown), keeping its data
#   test-postgres.sh resume DIR              starts a paused server again, on the same port
#   test-postgres.sh secure DIR CERT KEY     TLS on with that server certificate and key; over TCP the role
#                                            vouch stays trusted, every other role must use TLS and a password
#
# The cluster lives in DIR/data, listens on 127.0.0.1 (a free port) and on a unix socket in DIR, and
# trusts every local connection: the role `vouch` is its superuser. Both commands are idempotent:
# `start` on a running cluster prints its URL again, `stop` on a missing DIR does nothing.
# With OWNER_PID, a watcher stops the cluster once that process is gone, for a test process that
# crashed and so ran no exit handler.
#
# PostgreSQL refuses to run as root, and tests and CI run as root: then the cluster runs as the
# system user vouch-test-pg, made here if missing. A user of its own rather than `nobody` (which
# should own no files, and whose processes could be anyone's) or Debian's `postgres` (the owner of
# the system's clusters): its processes and files are the test cluster's alone.
set -euo pipefail

script=$(realpath "$0")
pg_bin=${VOUCH_PG_BIN:-/usr/lib/postgresql/15/bin}
cluster_user=vouch-test-pg
role=vouch

# The postmaster and the watcher outlive this script: they must hold none of the caller's
# descriptors. Foundation's Process, for one, learns that its child exited when a socket the child
# inherited closes; held open by the postmaster, it would never tell.
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    # 255 is the one bash reads this script from.
    [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ] && eval "exec $fd>&-"
done

usage() { echo "usage: $0 start DIR [OWNER_PID] | stop DIR | pause DIR | resume DIR | secure DIR CERT KEY" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1 dir=$2 owner_pid=${3:-}

# Runs a command as the cluster's owner: vouch-test-pg under root, the caller otherwise.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$cluster_user" -- "$@"
    else
        "$@"
    fi
}

ensure_cluster_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id -u "$cluster_user" >/dev/null 2>&1 && return 0
    # Serialised: test processes starting at once would race useradd for /etc/passwd's lock.
    flock "$script" sh -c "id -u $cluster_user >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $cluster_user"
}

# A start that fails leaves no cluster and no DIR behind; its logs go to stderr first.
fail_start() {
    echo "test-postgres.sh: $1" >&2
    cat "$dir/initdb.log" "$dir/postgres.log" >&2 2>/dev/null || true
    stop
    exit 1
}

is_running() { [ -f "$dir/data/postmaster.pid" ] && as_owner "$pg_bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; }

# Below the kernel's ephemeral range (32768 and up), so outgoing connections do not take it first.
random_port() { echo $((15000 + RANDOM % 17000)); }

start() {
    if [ ! -x "$pg_bin/initdb" ]; then
        echo "test-postgres.sh: no $pg_bin/initdb: PostgreSQL 15 is not installed (scripts/install-deps.sh installs postgresql-15)" >&2
        exit 1
    fi
    if is_running; then
        if [ -f "$dir/url" ]; then cat "$dir/url"; return; fi
        as_owner "$pg_bin/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null
    fi
    ensure_cluster_user
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # The socket's path, DIR/.s.PGSQL.PORT, must fit a sockaddr_un (107 bytes).
    [ $((${#dir} + 17)) -le 107 ] || fail_start "$dir is too long a path for the cluster's unix socket"
    # A cluster left half made (its start failed, or it was killed) is thrown away, not repaired.
    rm -rf "$dir/data" "$dir/url" "$dir/postgres.log"
    [ "$(id -u)" -eq 0 ] && chown "$cluster_user:" "$dir"
    chmod 700 "$dir"
    as_owner test -w "$dir" || fail_start "$cluster_user cannot write $dir (is every parent folder searchable by it?)"
    cd "$dir"
    # No fsync anywhere: the cluster is thrown away, and a test waits on no disk flush.
    as_owner "$pg_bin/initdb" -D "$dir/data" -U "$role" --auth=trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 || fail_start "initdb failed in $dir"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # A port taken between the choice and the bind fails the start: then another port is tried.
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$(random_port)
        if as_owner "$pg_bin/pg_ctl" start -w -t 30 -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" >/dev/null; then
            echo "postgres://$role@127.0.0.1:$port/postgres" >"$dir/url"
            [ -z "$owner_pid" ] || watch_owner
            cat "$dir/url"
            return
        fi
        grep -q "Address already in use" "$dir/postgres.log" 2>/dev/null || break
    done
    fail_start "the cluster in $dir did not start"
}

# Detached from the caller's session and output, so it outlives the caller and holds none of its pipes.
watch_owner() {
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop "$3"' \
        watcher "$owner_pid" "$script" "$dir" </dev/null >/dev/null 2>&1 &
}

stop() {
    [ -d "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$pg_bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null 2>&1 ||
            as_owner "$pg_bin/pg_ctl" stop -D "$dir/data" -m immediate -w >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

# For outage tests: the database goes away as in a real outage (clients' connections are closed)
# and comes back with the same data on the same address.
pause() {
    [ -f "$dir/url" ] || { echo "test-postgres.sh: no cluster in $dir" >&2; exit 1; }
    as_owner "$pg_bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null
}

resume() {
    [ -f "$dir/url" ] || { echo "test-postgres.sh: no cluster in $dir" >&2; exit 1; }
    is_running && return 0
    local port
    port=$(sed -E 's|.*:([0-9]+)/.*|\1|' "$dir/url")
    as_owner "$pg_bin/pg_ctl" start -w -t 30 -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" >/dev/null
}

# For TLS and password tests: sslmode and authentication as a production server has them.
secure() {
    [ -f "$dir/url" ] || { echo "test-postgres.sh: no cluster in $dir" >&2; exit 1; }
    local cert=$1 key=$2 owner
    owner=$(stat -c %U "$dir/data")
    install -o "$owner" -m 644 "$cert" "$dir/data/server.crt"
    install -o "$owner" -m 600 "$key" "$dir/data/server.key"
    cat >>"$dir/data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
EOF
    cat >"$dir/data/pg_hba.conf" <<EOF
local all all trust
host all $role 127.0.0.1/32 trust
hostssl all all 127.0.0.1/32 scram-sha-256
EOF
    chown "$owner" "$dir/data/pg_hba.conf"
    # A restart rather than a reload: once it returns, every new connection meets the new rules.
    as_owner "$pg_bin/pg_ctl" restart -w -t 30 -D "$dir/data" -l "$dir/postgres.log" >/dev/null
}

case $command in
    start) start ;;
    stop) stop ;;
    pause) pause ;;
    resume) resume ;;
    secure) [ $# -eq 4 ] || usage; secure "$3" "$4" ;;
    *) usage ;;
esac
