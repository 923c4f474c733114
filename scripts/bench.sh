#!/usr/bin/env bash
# Vouch benchmarks, all in one run on one machine so the ratios compare like with like:
#   1. openssl speed ecdsap256: the crypto ceiling (one CSR verify + one sign per certificate)
#   2. Vouch Enroll and Renew at each concurrency level (release server, separate load generator,
#      one persistent TLS connection per worker), with the server's CPU and RSS
#   2b. CA keys in a PKCS#11 token (a SoftHSM2 token in the run's own directory) against keys in files:
#      Enroll on two fresh CAs back to back at each level, with the server's CPU per certificate, and
#      one thread's signatures per second in the token and in memory (scripts/bench/p11-sign.c)
#   3. Vouch and cfssl serve (Debian's golang-cfssl, SQLite certdb in WAL + synchronous=FULL) side by
#      side, alternately at each level, driven by one Go load generator (scripts/bench/vouch-load):
#      fleet renewal (a new TLS 1.3 connection with a client certificate per certificate) and
#      persistent connections; throughput and server CPU per certificate ratios, and the crypto floor
#   4. new mTLS connections per second: openssl s_time against the Vouch server and against
#      openssl s_server with the same P-256 certificate
#   5. admin listings with BENCH_ROWS (1M) certificates in the database
#   6. the agent: rotation from new certificate written to served, and steady-state memory
#   7. the store: Enroll on SQLite, on PostgreSQL with one replica and with two (a throwaway
#      PostgreSQL 15 cluster, scripts/test-postgres.sh), with CPU per certificate of the servers
#      and of PostgreSQL
#   8. the fleet view: ReportAgent from 10,000 enrolled agents (on open connections and on a new
#      connection per report), server CPU per report next to Enroll and Renew on the same server;
#      Admin.ListAgents and `vouch fleet list --json` with 1,000 and 10,000 agents
#
# Usage: scripts/bench.sh            (about 10 minutes after the release build)
# Knobs: BENCH_DURATION (s per level, 10), BENCH_CONCURRENCY (1,8,32,128), BENCH_ROWS (1000000),
#        BENCH_SKIP (space-separated sections to skip: speed vouch token fleet persistent handshakes listing agent replicas
#        fleet-reports),
#        BENCH_BUILD (1; 0 runs the release binaries already in .build/release without building),
#        BENCH_REPLICA_CONCURRENCY (32: workers in all, split over the replicas),
#        BENCH_AGENT_ROTATIONS (rotations before the agent's memory is read, 15),
#        BENCH_FLEET_CONCURRENCY (1,8,32: levels of the fleet-reports section),
#        BENCH_FLEET_ACTIVE (5000: identities the measured reports come from)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
LEVELS=${BENCH_CONCURRENCY:-1,8,32,128}
ROWS=${BENCH_ROWS:-1000000}
AGENT_ROTATIONS=${BENCH_AGENT_ROTATIONS:-15}
SKIP=" ${BENCH_SKIP:-} "
WORK=$(mktemp -d /tmp/vouch-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

skipped() { [[ "$SKIP" == *" $1 "* ]]; }
section() { printf '\n## %s\n\n' "$*"; }
now() { date +%s.%N; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
wait_for_line() { # file, text, seconds
    for _ in $(seq 1 $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
# Counts fsync + fdatasync calls while a load runs (perf tracepoints, whole machine: only the
# server under test writes to disk then; "n/a" without perf).
fsync_start() {
    FSYNC_OUT="$WORK/fsync.$1.$RANDOM"
    if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_fdatasync -p "$1" -- true >/dev/null 2>&1; then
        # perf prints its counts when its command ends: a sleep that fsync_stop kills.
        # System-wide (-a): a per-process count misses the worker threads the database writer starts later.
        perf stat -a -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -o "$FSYNC_OUT" -- sleep 86400 &
        FSYNC_PID=$!
        sleep 0.5
    else
        FSYNC_PID=""
    fi
}
# Sets FSYNC_COUNT; not run in $(...), since only this shell can wait for perf.
fsync_stop() {
    FSYNC_COUNT="n/a"
    [ -z "$FSYNC_PID" ] && return
    pkill -P "$FSYNC_PID" sleep || true
    wait "$FSYNC_PID" 2>/dev/null || true
    FSYNC_COUNT=$(awk -F, '$1 ~ /^[0-9]+$/ { n += $1 } END { print n + 0 }' "$FSYNC_OUT")
}
per_cert() { awk -v f="$1" -v c="$2" 'BEGIN { if (f == "n/a" || c == 0) print "n/a"; else printf "%.3f", f / c }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for tool in cfssl openssl sqlite3 python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "installing benchmark tools (golang-cfssl)" >&2
        apt-get install -y golang-cfssl openssl sqlite3 >/dev/null
        break
    fi
done

if [ "${BENCH_BUILD:-1}" = 0 ]; then
    BIN=$PWD/.build/release
else
    echo "building release binaries" >&2
    # Under the build lock others on this tree take too.
    flock /tmp/vouch-build.lock swift build -c release --product vouch >&2
    flock /tmp/vouch-build.lock swift build -c release --product vouch-bench >&2
    BIN=$(swift build -c release --show-bin-path)
fi

section "Machine"
echo "- $(nproc) cores: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- $(uname -sr), $(openssl version), SQLite $(sqlite3 --version | cut -d' ' -f1), cfssl $(cfssl version | awk '/Version/ { print $2 }')"
echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# --- 1. crypto ceiling -------------------------------------------------------------------------
if ! skipped speed; then
    section "Crypto ceiling: openssl speed ecdsap256"
    speed=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ && /ecdsa/ { print $(NF-1), $NF }' | tail -1)
    read -r signs verifies <<<"$speed"
    awk -v s="$signs" -v v="$verifies" -v n="$(nproc)" 'BEGIN {
        per = 1 / (1 / s + 1 / v)
        printf "- one core: %.0f signs/s, %.0f verifies/s\n", s, v
        printf "- one CSR verify + one sign per certificate: %.0f certs/s per core, %.0f on %d cores\n", per, per * n, n
    }'
    # What parsing a CSR costs next to verifying it (one core, scripts/bench/csr-parse.c).
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/csr_key.pem" -subj /CN=bench \
        -addext subjectAltName=URI:spiffe://bench.test/csr -outform DER -out "$WORK/csr.der" 2>/dev/null
    cc -O2 -I Sources/CVouchOpenSSL/include scripts/bench/csr-parse.c Sources/CVouchOpenSSL/csr.c -lcrypto -o "$WORK/csr-parse" && "$WORK/csr-parse" "$WORK/csr.der"
fi

# --- 2. Vouch Enroll / Renew ---------------------------------------------------------------------
CA="$WORK/ca"
"$BIN/vouch" ca init --dir "$CA" --trust-domain bench.test >/dev/null
VOUCH_PORT=$(free_port)
VOUCH_HTTP=$(free_port)
start_vouch() {
    "$BIN/vouch" server --dir "$CA" --listen "127.0.0.1:$VOUCH_PORT" --http "127.0.0.1:$VOUCH_HTTP" >"$WORK/server.log" 2>&1 &
    VOUCH_PID=$!
    PIDS+=("$VOUCH_PID")
    wait_for_line "$WORK/server.log" "vouch server listening on" 30
}
stop_vouch() { kill -TERM "$VOUCH_PID"; wait "$VOUCH_PID" 2>/dev/null || true; }
start_vouch

if ! skipped vouch; then
    for mode in enroll renew; do
        section "Vouch $mode (release server, ${DURATION}s per level, one TLS connection per worker)"
        before=$(sqlite3 "$CA/vouch.db" "SELECT count(*) FROM certificate")
        fsync_start "$VOUCH_PID"
        "$BIN/vouch-bench" --server "127.0.0.1:$VOUCH_PORT" --dir "$CA" --mode "$mode" --concurrency "$LEVELS" \
            --duration "$DURATION" --server-pid "$VOUCH_PID" --record "$WORK/vouch.jsonl" | sed 's/^/    /'
        fsync_stop
        fsyncs=$FSYNC_COUNT
        issued=$(( $(sqlite3 "$CA/vouch.db" "SELECT count(*) FROM certificate") - before ))
        echo
        echo "- certificates committed during the $mode runs (warm-ups included): $issued; fsync+fdatasync calls: $fsyncs" \
             "($(per_cert "$fsyncs" "$issued") per certificate)"
    done
    echo "- SQLite journal: $(sqlite3 "$CA/vouch.db" 'PRAGMA journal_mode'), synchronous=FULL on every server connection" \
         "(SQLiteAuthorityStore); no response is sent before its transaction commits"
fi

# --- 2b. CA keys in a PKCS#11 token ------------------------------------------------------------------
if ! skipped token; then
    section "CA keys in a PKCS#11 token (SoftHSM2) against keys in files: Enroll, ${DURATION}s per level"
    HSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
    HSM="$WORK/softhsm"
    mkdir -p "$HSM/tokens"
    # A token of this run's own: SoftHSM reads SOFTHSM2_CONF, so /etc/softhsm and /var/lib/softhsm stay untouched.
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
        "$HSM/tokens" >"$HSM/softhsm2.conf"
    export SOFTHSM2_CONF="$HSM/softhsm2.conf"
    softhsm2-util --init-token --free --label vouch-bench --so-pin 000000 --pin 123456 >/dev/null
    # The root in a token of its own, as docs/operations.md recommends: the server never gets its PIN.
    softhsm2-util --init-token --free --label vouch-root --so-pin 000000 --pin 654321 >/dev/null
    (umask 077 && printf 123456 >"$HSM/pin" && printf 654321 >"$HSM/root-pin")

    # The crypto ceiling first, while no server uses the token (p11-sign adds a key and removes it).
    P11_INCLUDE=Sources/CVouchOpenSSL/pkcs11
    [ -f "$P11_INCLUDE/pkcs11.h" ] || P11_INCLUDE=/usr/include/p11-kit-1/p11-kit
    cc -O2 -I "$P11_INCLUDE" scripts/bench/p11-sign.c -lcrypto -ldl -o "$WORK/p11-sign"
    "$WORK/p11-sign" "$HSM_MODULE" vouch-bench "$HSM/pin" 3
    echo

    # Two fresh CAs, so neither starts with the rows the sections before left in $CA.
    FILE_CA="$WORK/ca-file"
    TOKEN_CA="$WORK/ca-token"
    "$BIN/vouch" ca init --dir "$FILE_CA" --trust-domain bench.test >/dev/null
    "$BIN/vouch" ca init --dir "$TOKEN_CA" --trust-domain bench.test --pkcs11-module "$HSM_MODULE" \
        --pkcs11-token vouch-bench --pkcs11-pin-file "$HSM/pin" \
        --pkcs11-root-token vouch-root --pkcs11-root-pin-file "$HSM/root-pin" >/dev/null
    start_keyed_server() { # name, dir, extra flags...; sets KEYED_PID and KEYED_PORT
        local name=$1 dir=$2
        shift 2
        KEYED_PORT=$(free_port)
        "$BIN/vouch" server --dir "$dir" --listen "127.0.0.1:$KEYED_PORT" --http "127.0.0.1:$(free_port)" "$@" \
            >"$WORK/server-$name.log" 2>&1 &
        KEYED_PID=$!
        PIDS+=("$KEYED_PID")
        wait_for_line "$WORK/server-$name.log" "vouch server listening on" 30
    }
    start_keyed_server file "$FILE_CA"
    FILE_PID=$KEYED_PID FILE_PORT=$KEYED_PORT
    # The module and the token's label come from the CA's ca.json; the PIN only from its file.
    start_keyed_server token "$TOKEN_CA" --pkcs11-pin-file "$HSM/pin"
    TOKEN_PID=$KEYED_PID TOKEN_PORT=$KEYED_PORT
    rm -f "$WORK/token-file.jsonl" "$WORK/token-token.jsonl"
    IFS=, read -ra levels <<<"$LEVELS"
    for level in "${levels[@]}"; do
        for key in file token; do
            if [ "$key" = file ]; then dir=$FILE_CA pid=$FILE_PID port=$FILE_PORT; else dir=$TOKEN_CA pid=$TOKEN_PID port=$TOKEN_PORT; fi
            "$BIN/vouch-bench" --server "127.0.0.1:$port" --dir "$dir" --mode enroll --concurrency "$level" \
                --duration "$DURATION" --server-pid "$pid" --json --record "$WORK/token-$key.jsonl" >/dev/null
        done
    done
    python3 - "$WORK/token-file.jsonl" "$WORK/token-token.jsonl" <<'PY'
import json, sys
rows = {key: [json.loads(line) for line in open(path)] for key, path in zip(("file", "token"), sys.argv[1:])}
print("    key    conc  certs/s   p99 ms  server CPU µs/cert")
for file_row, token_row in zip(rows["file"], rows["token"]):
    for key, row in (("file", file_row), ("token", token_row)):
        load = row["load"]
        # The server's CPU over the measured window (vouch-bench reads /proc/<pid>/stat) per certificate issued in it.
        cpu = row.get("serverCPUPercent")
        per_cert = f"{cpu / 100 * load['seconds'] / load['completed'] * 1e6:.0f}" if cpu is not None and load["completed"] else "n/a"
        failed = f"  ({load['failed']} failed: {row.get('firstError')})" if load["failed"] else ""
        print(f"    {key:<6} {row['concurrency']:>4} {load['perSecond']:>8.1f} {load['p99Milliseconds']:>8.2f} {per_cert:>19}{failed}")
PY
    echo
    echo "- both CAs fresh (SQLite), servers started alike; at each level the file-key CA runs first, then the token CA"
    echo "- files named *key* in the token CA's directory: $(cd "$TOKEN_CA" && find . -name '*key*' -type f | sed 's|^\./||' | sort | paste -sd ' ')"
    token_keys=$(pkcs11-tool --module "$HSM_MODULE" --token-label vouch-bench --login --pin 123456 \
        --list-objects --type privkey 2>/dev/null || true)
    echo "- private keys in the server's token: $(grep -c 'Private Key Object' <<<"$token_keys"), Access:" \
         "$(awk -F':  *' '/Access:/ { print $2 }' <<<"$token_keys" | sort -u | paste -sd ';')"
    for pid in "$FILE_PID" "$TOKEN_PID"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done
    unset SOFTHSM2_CONF
fi

# --- 3. Fleet renewal and persistent connections: Vouch and cfssl side by side ---------------------
# One Go load generator (scripts/bench/vouch-load: grpc-go for Vouch, net/http for cfssl) drives both
# servers alike, light enough to leave the cores to the server it measures:
#   fleet       Vouch: Renew as agents do, each on a NEW TLS 1.3 connection presenting the worker's
#               newest certificate (only the newest certificate of a lineage may renew), no session
#               resumption; cfssl: serve over HTTPS requiring a client certificate, POST sign on a NEW
#               TLS 1.3 connection per request (P-256 certificates with an intermediate on both sides)
#   persistent  one connection per worker kept open. Vouch: Enroll with a multi-use token in a loop
#               (Renew cannot repeat on one connection: after the first renewal the certificate the
#               connection presents is no longer the newest of its lineage); cfssl: keep-alive HTTP to
#               its plain listener, POST sign
# At each level Vouch runs first, then cfssl, each on fresh servers of the section's own: a new CA and
# a new certdb with the same cfssl setup (SQLite WAL, synchronous=FULL) for both cfssl scenarios.
build_vouch_load() {
    bash scripts/bench/build-vouch-load.sh
    LOAD="$PWD/.build/go/bin/vouch-load"
}

# cfssl's key material, all P-256 as Vouch's: a root, an intermediate that signs (cfssl's -ca), and
# the TLS certificates of the HTTPS listener and of the load generator, issued by the intermediate.
cfssl_material() { # dir
    local dir=$1 who
    mkdir -p "$dir"
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/root-key.pem"
    openssl req -x509 -new -key "$dir/root-key.pem" -subj "/CN=cfssl bench root" -days 30 -out "$dir/root.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem"
    openssl req -new -key "$dir/ca-key.pem" -subj "/CN=cfssl bench CA" -out "$dir/ca.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$dir/ca.ext"
    openssl x509 -req -in "$dir/ca.csr" -CA "$dir/root.pem" -CAkey "$dir/root-key.pem" -CAcreateserial -days 30 \
        -extfile "$dir/ca.ext" -out "$dir/ca.pem" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    printf 'subjectAltName=URI:spiffe://bench.test/bench/load\nextendedKeyUsage=clientAuth\n' >"$dir/client.ext"
    for who in server client; do
        openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$who-key.pem"
        openssl req -new -key "$dir/$who-key.pem" -subj "/CN=cfssl bench $who" -out "$dir/$who.csr" 2>/dev/null
        openssl x509 -req -in "$dir/$who.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial -days 30 \
            -extfile "$dir/$who.ext" -out "$dir/$who-leaf.pem" 2>/dev/null
        cat "$dir/$who-leaf.pem" "$dir/ca.pem" >"$dir/$who.pem" # leaf and intermediate, as Vouch's chains
    done
    echo '{"signing":{"default":{"expiry":"1h","usages":["digital signature","server auth","client auth"]}}}' >"$dir/config.json"
}

# A fresh certdb in cfssl's own SQLite schema (certdb/sqlite/migrations/001_CreateCertificates.sql),
# WAL journal, synchronous=FULL on cfssl's connections.
cfssl_certdb() { # dir
    sqlite3 "$1/certs.db" >/dev/null <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob,
  status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL,
  expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier) REFERENCES certificates(serial_number, authority_key_identifier));
SQL
    echo "{\"driver\":\"sqlite3\",\"data_source\":\"file:$1/certs.db?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000\"}" >"$1/db.json"
}

# The crypto floor of one certificate, one core, from openssl speed (sets FLOOR_SPEED once):
# on a new connection, the server's share of a TLS 1.3 handshake with a client certificate (X25519
# key generation and derivation, counted as two derivations; its CertificateVerify signature; the
# client's CertificateVerify and the two signatures of the client's chain, leaf and intermediate,
# verified) plus the CSR's verify and the certificate's signature; on an open connection, those two.
crypto_floor() {
    if [ -z "${FLOOR_SPEED:-}" ]; then
        FLOOR_SPEED=$(openssl speed -seconds 2 ecdsap256 ecdhx25519 2>/dev/null | awk '
            /ecdsa \(nistp256\)/ { s = $(NF-1); v = $NF } /ecdh \(X25519\)/ { d = $NF } END { print s, v, d }')
    fi
    awk -v speed="$FLOOR_SPEED" 'BEGIN {
        split(speed, x, " "); s = 1e6 / x[1]; v = 1e6 / x[2]; d = 1e6 / x[3]
        printf "- crypto floor, one core (openssl speed: %.0f P-256 signs/s, %.0f verifies/s, %.0f X25519 derivations/s):\n", x[1], x[2], x[3]
        printf "  a renewal on a new connection %.0f µs (2 X25519 + 2 signs + 4 verifies: handshake, client chain, CSR, certificate);", 2 * d + 2 * s + 4 * v
        printf " a certificate on an open connection %.0f µs (CSR verify + sign)\n", v + s
    }'
}

side_by_side() { # section, Vouch scenario, cfssl scenario
    local name=$1 vouch_scenario=$2 cfssl_scenario=$3 level
    [ -n "${LOAD:-}" ] || build_vouch_load
    [ -f "$WORK/cfssl-material/ca.pem" ] || cfssl_material "$WORK/cfssl-material"
    local material="$WORK/cfssl-material" dir="$WORK/$name"
    mkdir -p "$dir/cfssl"

    "$BIN/vouch" ca init --dir "$dir/ca" --trust-domain bench.test >/dev/null
    local vouch_port vouch_pid
    vouch_port=$(free_port)
    "$BIN/vouch" server --dir "$dir/ca" --listen "127.0.0.1:$vouch_port" --http "127.0.0.1:$(free_port)" >"$dir/server.log" 2>&1 &
    vouch_pid=$!
    PIDS+=("$vouch_pid")
    wait_for_line "$dir/server.log" "vouch server listening on" 30
    "$BIN/vouch" token create --dir "$dir/ca" --server "127.0.0.1:$vouch_port" --spiffe-id spiffe://bench.test/bench/load \
        --uses 1000 --ttl 1h | tail -1 >"$dir/token"

    cfssl_certdb "$dir/cfssl"
    local cfssl_port cfssl_pid tls=()
    cfssl_port=$(free_port)
    if [ "$cfssl_scenario" = cfssl-fleet ]; then
        tls=(-tls-cert "$material/server.pem" -tls-key "$material/server-key.pem" -mutual-tls-ca "$material/root.pem")
    fi
    cfssl serve -address 127.0.0.1 -port "$cfssl_port" -ca "$material/ca.pem" -ca-key "$material/ca-key.pem" \
        -config "$material/config.json" -db-config "$dir/cfssl/db.json" "${tls[@]}" >"$dir/cfssl/serve.log" 2>&1 &
    cfssl_pid=$!
    PIDS+=("$cfssl_pid")
    wait_for_line "$dir/cfssl/serve.log" "Now listening" 30

    local vouch_before cfssl_before vouch_fsyncs=0 cfssl_fsyncs=0
    vouch_before=$(sqlite3 "$dir/ca/vouch.db" "SELECT count(*) FROM certificate")
    IFS=, read -ra levels <<<"$LEVELS"
    for level in "${levels[@]}"; do
        echo "  $name: concurrency $level" >&2
        fsync_start "$vouch_pid"
        # The token file serves the first 1000 enrollments; the admin certificate creates more when needed.
        "$LOAD" -scenario "$vouch_scenario" -server "127.0.0.1:$vouch_port" -bundle "$dir/ca/bundle.pem" \
            -token-file "$dir/token" -admin-cert "$dir/ca/admin.pem" -admin-key "$dir/ca/admin_key.pem" \
            -concurrency "$level" -warmup 2s -duration "${DURATION}s" -server-pid "$vouch_pid" \
            -json -record "$dir/vouch.jsonl" >/dev/null
        fsync_stop
        vouch_fsyncs=$(per_cert_sum "$vouch_fsyncs" "$FSYNC_COUNT")
        fsync_start "$cfssl_pid"
        "$LOAD" -scenario "$cfssl_scenario" -server "127.0.0.1:$cfssl_port" -bundle "$material/root.pem" \
            -cert "$material/client.pem" -key "$material/client-key.pem" \
            -concurrency "$level" -warmup 2s -duration "${DURATION}s" -server-pid "$cfssl_pid" \
            -json -record "$dir/cfssl.jsonl" >/dev/null
        fsync_stop
        cfssl_fsyncs=$(per_cert_sum "$cfssl_fsyncs" "$FSYNC_COUNT")
    done
    local vouch_issued cfssl_issued
    vouch_issued=$(( $(sqlite3 "$dir/ca/vouch.db" "SELECT count(*) FROM certificate") - vouch_before ))
    cfssl_issued=$(sqlite3 "$dir/cfssl/certs.db" 'SELECT count(*) FROM certificates')
    for pid in "$vouch_pid" "$cfssl_pid"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done

    python3 - "$dir/vouch.jsonl" "$dir/cfssl.jsonl" <<'PY'
import json, sys
vouch, cfssl = ([json.loads(line) for line in open(path)] for path in sys.argv[1:])
def table(rows):
    print("    scenario          conc  certs/s   p50 ms   p99 ms   max ms  failed  server CPU  server µs/cert  client CPU")
    for r in rows:
        cpu = f"{r['serverCPUPercent']:.1f}%" if "serverCPUPercent" in r else "-"
        per = f"{r['serverCPUMicrosPerCert']:.0f}" if "serverCPUMicrosPerCert" in r else "-"
        error = f"  first error: {r['firstError']}" if r.get("firstError") else ""
        print(f"    {r['scenario']:<16} {r['concurrency']:>5} {r['certsPerSecond']:>8.1f} {r['p50Ms']:>8.2f} {r['p99Ms']:>8.2f}"
              f" {r['maxMs']:>8.2f} {r['failed']:>7} {cpu:>11} {per:>15} {r['clientCPUPercent']:>10.1f}%{error}")
table(vouch)
print()
table(cfssl)
print()
print("    conc  certs/s Vouch/cfssl  server µs/cert Vouch  cfssl  Vouch/cfssl")
for v, c in zip(vouch, cfssl):
    rate = f"{v['certsPerSecond'] / c['certsPerSecond']:.2f}" if c["certsPerSecond"] else "n/a"
    pv, pc = v.get("serverCPUMicrosPerCert"), c.get("serverCPUMicrosPerCert")
    cost = f"{pv / pc:.2f}" if pv and pc else "n/a"
    print(f"    {v['concurrency']:>4} {rate:>20} {pv or 0:>20.0f} {pc or 0:>6.0f} {cost:>12}")
PY
    echo
    echo "- measured windows of ${DURATION}s after 2s of warm-up; only calls finishing inside a window count; failures" \
         "counted over warm-up and window; server CPU from /proc/PID/stat over exactly the window, per certificate in it"
    echo "- certificates committed (warm-ups included): Vouch $vouch_issued, fsync+fdatasync calls $vouch_fsyncs" \
         "($(per_cert "$vouch_fsyncs" "$vouch_issued") per certificate); cfssl $cfssl_issued, fsync+fdatasync calls $cfssl_fsyncs" \
         "($(per_cert "$cfssl_fsyncs" "$cfssl_issued") per certificate)"
    crypto_floor
}
per_cert_sum() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else print a + b }'; }

if ! skipped fleet; then
    section "Fleet renewal: a new TLS 1.3 connection per certificate, Vouch Renew and cfssl sign over HTTPS (${DURATION}s per level)"
    side_by_side fleet vouch-fleet cfssl-fleet
fi
if ! skipped persistent; then
    section "Persistent connections: Vouch Enroll and cfssl sign over keep-alive HTTP (${DURATION}s per level)"
    side_by_side persistent vouch-persistent cfssl-persistent
fi

# --- 4. new mTLS connections per second ----------------------------------------------------------
if ! skipped handshakes; then
    section "New TLS 1.3 connections per second with a client certificate (openssl s_time, 4 in parallel, ${DURATION}s)"
    s_time_rate() { # port
        for _ in 1 2 3 4; do
            openssl s_time -connect "127.0.0.1:$1" -new -time "$DURATION" -cert "$CA/admin.pem" -key "$CA/admin_key.pem" \
                -CAfile "$CA/bundle.pem" 2>/dev/null | awk '/connections in .* real seconds/ { print $1 / $4 }' &
        done | awk '{ total += $1 } END { printf "%.0f", total }'
    }
    vouch_rate=$(s_time_rate "$VOUCH_PORT")
    S_PORT=$(free_port)
    openssl s_server -accept "$S_PORT" -cert "$CA/server.pem" -key "$CA/server_key.pem" -CAfile "$CA/bundle.pem" \
        -Verify 1 -tls1_3 -quiet >"$WORK/s_server.log" 2>&1 &
    S_PID=$!
    PIDS+=("$S_PID")
    sleep 0.5
    reference_rate=$(s_time_rate "$S_PORT")
    kill "$S_PID"
    echo "- Vouch server: $vouch_rate connections/s"
    echo "- openssl s_server (same P-256 server certificate, client certificate required): $reference_rate connections/s"
    awk -v a="$vouch_rate" -v b="$reference_rate" 'BEGIN { printf "- ratio Vouch / s_server: %.2f\n", a / b }'
fi

# --- 5. listings with 1M certificates ---------------------------------------------------------------
if ! skipped listing; then
    section "Admin listings with $ROWS certificates in the database"
    stop_vouch
    seeded_start=$(now)
    # Certificates spread evenly from 1 day expired to 7 days ahead, over 5000 identities; 1% revoked.
    sqlite3 "$CA/vouch.db" >/dev/null <<SQL
PRAGMA journal_mode=WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO certificate (serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der, renewed_from, token_id)
SELECT printf('7f%030x', i), 'spiffe://bench.test/svc/' || (i % 5000), '', '',
       unixepoch() - 86400 - 3600 + (i * 691200.0 / $ROWS), unixepoch() - 86400 + (i * 691200.0 / $ROWS),
       unixepoch() - 86400 - 3600 + (i * 691200.0 / $ROWS), randomblob(480), NULL, NULL
FROM n;
INSERT INTO revocation (serial, reason, revoked_at)
SELECT serial, 1, unixepoch() FROM certificate WHERE id % 100 = 0 AND serial LIKE '7f%';
COMMIT;
SQL
    echo "- seeded in $(elapsed_ms "$seeded_start" "$(now)") ms; database $(du -m "$CA/vouch.db" | cut -f1) MB"
    start_vouch
    list() { # label, args...
        local label=$1; shift
        "$BIN/vouch" cert list --dir "$CA" --server "127.0.0.1:$VOUCH_PORT" --json "$@" >/dev/null # warm the page cache once
        local start count
        start=$(now)
        count=$("$BIN/vouch" cert list --dir "$CA" --server "127.0.0.1:$VOUCH_PORT" --json "$@" | grep -c '"serial"' || true)
        printf -- "- %s: %s certificates in %s ms (whole CLI call: process start, TLS, query, JSON)\n" \
            "$label" "$count" "$(elapsed_ms "$start" "$(now)")"
    }
    list "expiring within 1h, first 1000" --expiring-within 1h --limit 1000
    list "expiring within 1h, all of them" --expiring-within 1h --limit 1000000
    list "expiring within 24h, first 100" --expiring-within 24h --limit 100
    list "active, first 100" --status active --limit 100
    list "revoked, first 100" --status revoked --limit 100
    list "one identity (glob spiffe://bench.test/svc/4242), all" --identity 'spiffe://bench.test/svc/4242' --limit 100000
    list "identity prefix glob spiffe://bench.test/svc/42*, first 100" --identity 'spiffe://bench.test/svc/42*' --limit 100
    start=$(now)
    "$BIN/vouch" cert list --dir "$CA" --server "127.0.0.1:$VOUCH_PORT" --limit 1 --json >/dev/null
    echo "- newest certificate only (baseline for the CLI call itself): $(elapsed_ms "$start" "$(now)") ms"
    curl -sf "http://127.0.0.1:$VOUCH_HTTP/metrics" >/dev/null
    start=$(now)
    expiring=$(curl -sf "http://127.0.0.1:$VOUCH_HTTP/metrics" | awk '/^vouch_ca_certificates_expiring_within_1h / { print $2 }')
    echo "- GET /metrics, which counts the certificates expiring within 1h ($expiring) on every scrape: $(elapsed_ms "$start" "$(now)") ms"
fi

# --- 6. agent ---------------------------------------------------------------------------------------
if ! skipped agent; then
    section "Agent: rotation from certificate written to certificate served, and memory (20 s certificates)"
    AGENT_DIR="$WORK/agent"
    mkdir -p "$AGENT_DIR"
    "$BIN/vouch" token create --dir "$CA" --server "127.0.0.1:$VOUCH_PORT" --spiffe-id spiffe://bench.test/bench/agent \
        --dns localhost --ip 127.0.0.1 | tail -1 >"$WORK/token"
    AGENT_PORT=$(free_port)
    "$BIN/vouch" agent --ca "127.0.0.1:$VOUCH_PORT" --ca-bundle "$CA/bundle.pem" --token-file "$WORK/token" \
        --out "$AGENT_DIR" --listen "127.0.0.1:$AGENT_PORT" --cert-ttl 20s >"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    wait_for_line "$WORK/agent.log" "vouch agent listening on" 30
    served_serial() {
        openssl s_client -connect "127.0.0.1:$AGENT_PORT" -cert "$AGENT_DIR/svid.pem" -key "$AGENT_DIR/svid_key.pem" \
            -CAfile "$AGENT_DIR/bundle.pem" </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
    }
    file_serial() { openssl x509 -noout -serial -in "$AGENT_DIR/svid.pem" 2>/dev/null | cut -d= -f2; }
    for rotation in 1 2 3; do
        old=$(stat -c %.9Y "$AGENT_DIR/svid.pem")
        while [ "$(stat -c %.9Y "$AGENT_DIR/svid.pem")" = "$old" ]; do sleep 0.005; done
        written=$(stat -c %.9Y "$AGENT_DIR/svid.pem")
        new=$(file_serial)
        for _ in $(seq 1 500); do [ "$(served_serial)" = "$new" ] && break; done
        echo "- rotation $rotation: serial $new served $(elapsed_ms "$written" "$(now)") ms after svid.pem was written" \
             "(an upper bound: includes one openssl s_client handshake, about 10 ms)"
    done
    # Steady state: the heap grows over the first rotations (TLS and gRPC buffers on each thread),
    # then stays flat; measure after AGENT_ROTATIONS of them.
    while [ "$(grep -c '\] rotated' "$WORK/agent.log")" -lt "$AGENT_ROTATIONS" ]; do sleep 1; done
    echo "- agent memory after $AGENT_ROTATIONS rotations (scripts/bench/memory-map.py):"
    python3 scripts/bench/memory-map.py "$AGENT_PID" | sed 's/^/  /'
fi

# --- 7. SQLite, PostgreSQL with one replica and with two ----------------------------------------------
if ! skipped replicas; then
    REPLICA_LEVEL=${BENCH_REPLICA_CONCURRENCY:-32}
    section "Enroll by store and replicas (release servers, $REPLICA_LEVEL workers in all, ${DURATION}s)"
    # Outside $WORK (0700, root's): the cluster runs as its own user, who must reach its folder.
    PG=/tmp/vouch-bench-pg-$$
    PG_URL=$(bash scripts/test-postgres.sh start "$PG" $$)
    trap 'bash scripts/test-postgres.sh stop "$PG" >/dev/null 2>&1 || true; cleanup' EXIT
    PG_BIN=${VOUCH_PG_BIN:-/usr/lib/postgresql/15/bin}
    # Durable commits, as SQLite's synchronous=FULL: the test cluster turns them off for speed.
    for setting in "fsync = on" "synchronous_commit = on" "full_page_writes = on"; do
        "$PG_BIN/psql" -X -q -d "$PG_URL" -c "ALTER SYSTEM SET $setting"
    done
    "$PG_BIN/psql" -X -q -d "$PG_URL" -c "SELECT pg_reload_conf()" >/dev/null
    postgres_cpu() { # CPU seconds of every process of the cluster (postmaster and backends)
        local total=0 pid
        for pid in $(pgrep -u vouch-test-pg postgres 2>/dev/null || pgrep -f "$PG/data" || true); do
            total=$(awk -v t="$total" -v tck="$(getconf CLK_TCK)" '{ print t + ($14 + $15) / tck }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
        done
        echo "$total"
    }
    echo "    store        replicas  certs/s   p99 ms  servers CPU/cert  PostgreSQL CPU/cert  total CPU/cert"
    for config in "sqlite 1" "postgres 1" "postgres 2"; do
        read -r store count <<<"$config"
        RCA="$WORK/rca-$store-$count"
        "$BIN/vouch" ca init --dir "$RCA" --trust-domain bench.test >/dev/null
        database=()
        if [ "$store" = postgres ]; then
            db="bench_${count}"
            "$PG_BIN/psql" -X -q -d "$PG_URL" -c "CREATE DATABASE $db"
            database=(--database "${PG_URL%/*}/$db")
        fi
        pids=() ports=()
        for i in $(seq 1 "$count"); do
            port=$(free_port)
            "$BIN/vouch" server --dir "$RCA" --listen "127.0.0.1:$port" "${database[@]}" >"$WORK/replica-$store-$count-$i.log" 2>&1 &
            pids+=($!) ports+=("$port")
            PIDS+=($!)
            wait_for_line "$WORK/replica-$store-$count-$i.log" "vouch server listening on" 30
        done
        servers_before=0; for pid in "${pids[@]}"; do servers_before=$(awk -v t="$servers_before" -v c="$(cpu_seconds "$pid")" 'BEGIN { print t + c }'); done
        pg_before=$(postgres_cpu)
        rm -f "$WORK/replicas.jsonl"
        benches=()
        for i in $(seq 0 $((count - 1))); do
            "$BIN/vouch-bench" --server "127.0.0.1:${ports[$i]}" --dir "$RCA" --mode enroll --concurrency $((REPLICA_LEVEL / count)) \
                --duration "$DURATION" --warmup 2 --json --record "$WORK/replicas.jsonl" >/dev/null &
            benches+=($!)
        done
        for pid in "${benches[@]}"; do wait "$pid"; done
        servers_after=0; for pid in "${pids[@]}"; do servers_after=$(awk -v t="$servers_after" -v c="$(cpu_seconds "$pid")" 'BEGIN { print t + c }'); done
        pg_after=$(postgres_cpu)
        if [ "$store" = postgres ]; then
            certs=$("$PG_BIN/psql" -X -q -A -t -d "${PG_URL%/*}/$db" -c "SELECT count(*) FROM certificate")
        else
            certs=$(sqlite3 "$RCA/vouch.db" "SELECT count(*) FROM certificate")
        fi
        python3 - "$WORK/replicas.jsonl" "$store" "$count" "$certs" "$servers_before" "$servers_after" "$pg_before" "$pg_after" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
store, count, certs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
servers = float(sys.argv[6]) - float(sys.argv[5])
pg = float(sys.argv[8]) - float(sys.argv[7])
rate = sum(r["load"]["perSecond"] for r in rows)
p99 = max(r["load"]["p99Milliseconds"] for r in rows)
# CPU over the whole run (warm-ups included) divided by every certificate committed in it.
us = lambda seconds: f"{seconds / max(certs, 1) * 1e6:.0f} µs"
print(f"    {store:<12} {count:>8} {rate:>8.0f} {p99:>8.1f} {us(servers):>17} {us(pg) if store == 'postgres' else '-':>20} {us(servers + pg):>15}")
PY
        for pid in "${pids[@]}"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done
    done
    echo
    echo "- one vouch-bench per replica, the workers split evenly; servers, PostgreSQL and load generators share $(nproc) cores"
    echo "- PostgreSQL 15: a throwaway local cluster (scripts/test-postgres.sh) with fsync, synchronous_commit and full_page_writes on"
    bash scripts/test-postgres.sh stop "$PG" >/dev/null
fi

# --- 8. Fleet reports (ReportAgent) and ListAgents -----------------------------------------------------
# What the fleet view costs the CA, on a fresh SQLite CA of the section's own, driven by vouch-load
# (scenarios vouch-report and vouch-list-agents):
#   - 1,000 agents enrolled (10 per SPIFFE ID) and reported once; Admin.ListAgents through every page
#     (page_size 1000) and `vouch fleet list --json` end to end
#   - 9,000 more (10,000 in all); reports from BENCH_FLEET_ACTIVE of them at each level, each a changed
#     report (a row written), at most one per identity per 1.1 s (the CA refuses more than 10 changed
#     reports in 10 s per certificate): on a connection per identity kept open (the report alone), and
#     on a new TLS 1.3 connection per report, as `vouch agent` reports; then the listings with 10,000
#   - Enroll on open connections and Renew on new ones against the same server, for the ratios
if ! skipped fleet-reports; then
    FLEET_LEVELS=${BENCH_FLEET_CONCURRENCY:-1,8,32}
    FLEET_ACTIVE=${BENCH_FLEET_ACTIVE:-5000}
    section "Fleet reports (ReportAgent) and ListAgents (release server, fresh SQLite CA, ${DURATION}s per level)"
    [ -n "${LOAD:-}" ] || build_vouch_load
    FR="$WORK/fleet-reports"
    mkdir -p "$FR"
    "$BIN/vouch" ca init --dir "$FR/ca" --trust-domain bench.test >/dev/null
    FR_PORT=$(free_port)
    # A connection kept open per reporting identity: more than the default cap of 1000 connections.
    "$BIN/vouch" server --dir "$FR/ca" --listen "127.0.0.1:$FR_PORT" --http "127.0.0.1:$(free_port)" \
        --max-connections $((FLEET_ACTIVE + 1000)) >"$FR/server.log" 2>&1 &
    FR_PID=$!
    PIDS+=("$FR_PID")
    wait_for_line "$FR/server.log" "vouch server listening on" 30
    fr_load=("$LOAD" -server "127.0.0.1:$FR_PORT" -bundle "$FR/ca/bundle.pem" -admin-cert "$FR/ca/admin.pem"
        -admin-key "$FR/ca/admin_key.pem" -server-pid "$FR_PID" -json)
    fleet_listings() { # ListAgents over gRPC, then the CLI end to end (3 timed calls after one untimed)
        "${fr_load[@]}" -scenario vouch-list-agents -repeat 5 -page-size 1000 -record "$FR/list.jsonl" >/dev/null
        python3 - "$BIN/vouch" "$FR/ca" "127.0.0.1:$FR_PORT" "$FR_PID" "$FR/cli.jsonl" <<'PY'
import json, os, resource, subprocess, sys, time
vouch, ca, server, pid, record = sys.argv[1:6]
def server_cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
command = [vouch, "fleet", "list", "--dir", ca, "--server", server, "--json"]
subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
runs = []
for _ in range(3):
    s0, c0, t0 = server_cpu(), children_cpu(), time.monotonic()
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE).stdout
    runs.append({"wallMs": (time.monotonic() - t0) * 1000, "cliCPUMs": (children_cpu() - c0) * 1000,
                 "serverCPUMs": (server_cpu() - s0) * 1000, "agents": len(json.loads(out)), "bytes": len(out)})
runs.sort(key=lambda r: r["wallMs"])
row = dict(runs[1], wallMsMin=runs[0]["wallMs"], wallMsMax=runs[2]["wallMs"])
open(record, "a").write(json.dumps(row) + "\n")
PY
    }
    echo "  fleet-reports: 1,000 agents" >&2
    "${fr_load[@]}" -scenario vouch-report -spiffe-id spiffe://bench.test/fleet -agents 1000 -seed-only -record "$FR/setup.jsonl" >/dev/null
    fleet_listings
    echo "  fleet-reports: 9,000 more agents, reports at $FLEET_LEVELS" >&2
    "${fr_load[@]}" -scenario vouch-report -spiffe-id spiffe://bench.test/fleet -agents 9000 -service-offset 100 -active "$FLEET_ACTIVE" -report-modes persistent,new \
        -concurrency "$FLEET_LEVELS" -warmup 2s -duration "${DURATION}s" -record "$FR/reports.jsonl" >/dev/null
    agent_rows=$(sqlite3 "$FR/ca/vouch.db" "SELECT count(*) FROM agent_report")
    rotations_sum=$(sqlite3 "$FR/ca/vouch.db" "SELECT sum(rotations) FROM agent_report")
    fleet_listings
    echo "  fleet-reports: Enroll and Renew on the same server" >&2
    "${fr_load[@]}" -scenario vouch-persistent -concurrency "$FLEET_LEVELS" -warmup 2s -duration "${DURATION}s" -record "$FR/issue.jsonl" >/dev/null
    "${fr_load[@]}" -scenario vouch-fleet -concurrency "$FLEET_LEVELS" -warmup 2s -duration "${DURATION}s" -record "$FR/issue.jsonl" >/dev/null
    fr_rss=$(rss_mb "$FR_PID")
    kill -TERM "$FR_PID"; wait "$FR_PID" 2>/dev/null || true

    python3 - "$FR" "$agent_rows" "$rotations_sum" <<'PY'
import json, sys
fr, agent_rows, rotations_sum = sys.argv[1], int(sys.argv[2]), int(sys.argv[3] or 0)
load = lambda name: [json.loads(line) for line in open(f"{fr}/{name}.jsonl")]
setups = load("setup") + [r for r in load("reports") if r["scenario"] == "vouch-report-setup"]
reports = [r for r in load("reports") if "concurrency" in r]
total = next(r for r in load("reports") if r["scenario"] == "vouch-report-total")
issues = load("issue")
label = {"vouch-report": "report, open conn.", "vouch-report-new": "report, new conn.",
         "vouch-persistent": "Enroll, open conn.", "vouch-fleet": "Renew, new conn."}
print("    call                conc  calls/s   p50 ms   p99 ms   max ms  failed  server CPU  server µs/call  client CPU  paced")
for r in reports + issues:
    cpu = f"{r['serverCPUPercent']:.1f}%" if "serverCPUPercent" in r else "-"
    per = f"{r['serverCPUMicrosPerCert']:.0f}" if "serverCPUMicrosPerCert" in r else "-"
    error = f"  first error: {r['firstError']}" if r.get("firstError") else ""
    print(f"    {label[r['scenario']]:<18} {r['concurrency']:>5} {r['certsPerSecond']:>8.1f} {r['p50Ms']:>8.2f} {r['p99Ms']:>8.2f}"
          f" {r['maxMs']:>8.2f} {r['failed']:>7} {cpu:>11} {per:>15} {r['clientCPUPercent']:>10.1f}% {r.get('paced', '-'):>6}{error}")
print()
print("    conc  report/Enroll (open conn.)  report/Renew (new conn.)   server µs per call: ratio of the two")
by = {(r["scenario"], r["concurrency"]): r.get("serverCPUMicrosPerCert") for r in reports + issues}
for conc in sorted({r["concurrency"] for r in reports}):
    def ratio(a, b):
        x, y = by.get((a, conc)), by.get((b, conc))
        return f"{x:.0f} / {y:.0f} = {x / y:.2f}" if x and y else "n/a"
    print(f"    {conc:>4}  {ratio('vouch-report', 'vouch-persistent'):>26}  {ratio('vouch-report-new', 'vouch-fleet'):>24}")
print()
print("    10,000 agents at a 5-minute heartbeat: 33.3 reports/s; server CPU at each level's µs per report:")
for r in reports:
    if r.get("serverCPUMicrosPerCert"):
        print(f"      {label[r['scenario']]:<18} conc {r['concurrency']:>3}: {33.3 * r['serverCPUMicrosPerCert'] / 1e4:.2f}% of one core")
print()
print("    agents  pages  ListAgents: listing ms (median of 5, min-max)  first page  last page  server CPU/listing  bytes"
      "     fleet list --json: wall ms (median of 3, min-max)  CLI CPU  server CPU  output")
for lst, cli in zip(load("list"), load("cli")):
    print(f"    {lst['agents']:>6} {lst['pages']:>6}  {lst['listingMsMedian']:>12.0f} ({lst['listingMsMin']:.0f}-{lst['listingMsMax']:.0f})"
          f" {lst['firstPageMsMedian']:>26.0f} {lst['lastPageMsMedian']:>10.0f} {lst.get('serverCPUMsPerListing', 0):>16.0f} ms"
          f" {lst['responseBytesPerListing']:>8}  {cli['wallMs']:>17.0f} ({cli['wallMsMin']:.0f}-{cli['wallMsMax']:.0f})"
          f" {cli['cliCPUMs']:>23.0f} ms {cli['serverCPUMs']:>7.0f} ms {cli['bytes'] / 1e6:>5.1f} MB"
          + (f"  ({lst['withProblems']} with problems; CLI listed {cli['agents']})" if lst["withProblems"] or cli["agents"] != lst["agents"] else ""))
print()
for s in setups:
    enroll = s.get("enrollServerCPUMicrosPerAgent")
    first = s.get("firstReportServerCPUMicros")
    print(f"- setup: {s['enrolled']} agents enrolled in {s['enrollSeconds']:.1f} s"
          + (f" ({enroll:.0f} µs server CPU each)" if enroll else "")
          + f", their first reports (new connection each, the lineage walk and the row's insert) in {s['firstReportSeconds']:.1f} s"
          + (f" ({first:.0f} µs server CPU each)" if first else "")
          + (f"; {s['failed']} failed: {s.get('firstError')}" if s["failed"] else ""))
stored = total["acknowledged"] + sum(s["reported"] for s in load("setup"))
print(f"- reports acknowledged {stored} (first reports included), failed {total['failed']}; agent_report rows {agent_rows},"
      f" their rotations (one more in each report) summed {rotations_sum}: every acknowledged report stored when the two are equal")
PY
    echo "- measured windows of ${DURATION}s after 2s of warm-up; server CPU from /proc/PID/stat over exactly the window, per call in it;" \
         "reports come from $FLEET_ACTIVE identities, the server started with --max-connections $((FLEET_ACTIVE + 1000)); server RSS at the end ${fr_rss} MB"
fi
