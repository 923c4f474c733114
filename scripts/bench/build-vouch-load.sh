#!/usr/bin/env bash
# Builds the Go load generator (scripts/bench/vouch-load) into .build/go/bin/vouch-load, offline,
# in GOPATH mode with Debian's grpc-go and protobuf-go, next to the generated package vouchv1.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup-go.sh >&2 # generates package vouchv1 from ca.proto as committed (and builds the example client)
module=.build/go/src/example.com/app
# The fleet scenarios need the fleet view's RPCs in the generated stubs.
for rpc in ReportAgent ListAgents; do
    grep -q "func (c \*certificateAuthorityClient) $rpc\|func (c \*adminClient) $rpc" "$module/vouchv1/ca_grpc.pb.go" ||
        { echo "build-vouch-load.sh: the generated vouchv1 has no $rpc (is ca.proto older than the fleet view?)" >&2; exit 1; }
done
mkdir -p "$module/vouch-load"
cp scripts/bench/vouch-load/*.go "$module/vouch-load/"
GO111MODULE=off GOPATH="$PWD/.build/go:/usr/share/gocode" GOCACHE="$PWD/.build/go/cache" GOFLAGS= \
    go build -o .build/go/bin/vouch-load example.com/app/vouch-load
