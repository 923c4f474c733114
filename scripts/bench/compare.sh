#!/usr/bin/env bash
# Before/after figures for one change, from one run: two or more builds of the Vouch server
# take turns under the same load (scripts/bench/vouch-load), round after round, so machine
# noise falls on all of them alike. Prints every round and, per build, the median throughput
# and server CPU per certificate with its ratio to the first build.
#
# Usage: scripts/bench/compare.sh LABEL=BUILD LABEL=BUILD ...
#   BUILD is a vouch binary, or a git revision: built once (release) in a worktree under
#   .build-compare/ (a full release build, about 10 minutes on two cores).
# Knobs: COMPARE_SCENARIOS (vouch-fleet vouch-persistent), COMPARE_CONCURRENCY (32),
#        COMPARE_DURATION (s per round, 8), COMPARE_ROUNDS (4)
set -euo pipefail
cd "$(dirname "$0")/../.."

SCENARIOS=${COMPARE_SCENARIOS:-vouch-fleet vouch-persistent}
CONCURRENCY=${COMPARE_CONCURRENCY:-32}
DURATION=${COMPARE_DURATION:-8}
ROUNDS=${COMPARE_ROUNDS:-4}
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

LOAD=.build/go/bin/vouch-load
[ -x "$LOAD" ] || bash scripts/bench/build-vouch-load.sh

# The binary of each LABEL=BUILD, building revisions in worktrees.
labels=() binaries=()
for pair in "$@"; do
    label=${pair%%=*} build=${pair#*=}
    if [ ! -x "$build" ]; then
        revision=$(git rev-parse --short "$build^{commit}")
        tree=.build-compare/$revision
        [ -d "$tree" ] || git worktree add --detach "$tree" "$revision" >/dev/null
        echo "building $label ($revision) in $tree" >&2
        (cd "$tree" && flock /tmp/vouch-build.lock swift build -c release --product vouch >&2)
        build="$tree/.build/release/vouch"
    fi
    labels+=("$label") binaries+=("$(realpath "$build")")
done

WORK=$(mktemp -d /tmp/vouch-compare.XXXXXX)
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One round of one build: a fresh CA and server, then the load; appends a JSON line to $WORK/rows.
measure() { # label binary scenario
    local dir="$WORK/$1" port
    rm -rf "$dir" && mkdir -p "$dir"
    "$2" ca init --dir "$dir/ca" --trust-domain bench.test >/dev/null
    port=$(free_port)
    : >"$dir/server.log"
    "$2" server --dir "$dir/ca" --listen "127.0.0.1:$port" --http "127.0.0.1:$(free_port)" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do grep -q "vouch server listening on" "$dir/server.log" && break; sleep 0.05; done
    "$2" token create --dir "$dir/ca" --server "127.0.0.1:$port" --spiffe-id spiffe://bench.test/bench/load \
        --uses 1000 --ttl 1h | tail -1 >"$dir/token"
    "$LOAD" -scenario "$3" -server "127.0.0.1:$port" -bundle "$dir/ca/bundle.pem" -token-file "$dir/token" \
        -admin-cert "$dir/ca/admin.pem" -admin-key "$dir/ca/admin_key.pem" -concurrency "$CONCURRENCY" \
        -duration "${DURATION}s" -warmup 2s -server-pid "$SERVER_PID" -json |
        python3 -c 'import json, sys; row = json.loads(sys.stdin.readline()); row["label"] = sys.argv[1]; print(json.dumps(row))' "$1" \
        >>"$WORK/rows"
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

echo "- $(nproc) cores, commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ); c=$CONCURRENCY, ${DURATION}s per round, $ROUNDS rounds"
for label_index in "${!labels[@]}"; do echo "- ${labels[$label_index]}: ${binaries[$label_index]}"; done
for scenario in $SCENARIOS; do
    : >"$WORK/rows"
    for round in $(seq 1 "$ROUNDS"); do
        for index in "${!labels[@]}"; do measure "${labels[$index]}" "${binaries[$index]}" "$scenario"; done
    done
    python3 - "$WORK/rows" "$scenario" "${labels[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
scenario, labels = sys.argv[2], sys.argv[3:]
width = max(12, *(len(label) for label in labels))
print(f"\n    {scenario}: rounds (certs/s, server µs per certificate, p99 ms)")
for label in labels:
    mine = [r for r in rows if r["label"] == label]
    print(f"    {label:<{width}} " + "   ".join(f"{r['certsPerSecond']:7.1f} {r['serverCPUMicrosPerCert']:6.0f} {r['p99Ms']:6.1f}" for r in mine))
print(f"\n    {'build':<{width}} {'certs/s':>8} {'µs/cert':>8} {'p99 ms':>7} {'certs/s ratio':>14} {'µs/cert ratio':>14}   (medians)")
first = None
for label in labels:
    mine = [r for r in rows if r["label"] == label]
    rate = statistics.median(r["certsPerSecond"] for r in mine)
    cpu = statistics.median(r["serverCPUMicrosPerCert"] for r in mine)
    p99 = statistics.median(r["p99Ms"] for r in mine)
    first = first or (rate, cpu)
    print(f"    {label:<{width}} {rate:8.1f} {cpu:8.0f} {p99:7.1f} {rate / first[0]:14.2f} {cpu / first[1]:14.2f}")
PY
done
