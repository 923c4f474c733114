#!/usr/bin/env bash
# Builds the Go load generator (scripts/bench/vouch-load) into .build/go/bin/vouch-load, offline,
# in GOPATH mode with Debian's grpc-go and protobuf-go, next to the generated package vouchv1.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup-go.sh >&2 # generates package vouchv1 (and builds the example client)
module=.build/go/src/example.com/app
mkdir -p "$module/vouch-load"
cp scripts/bench/vouch-load/main.go "$module/vouch-load/main.go"
GO111MODULE=off GOPATH="$PWD/.build/go:/usr/share/gocode" GOCACHE="$PWD/.build/go/cache" GOFLAGS= \
    go build -o .build/go/bin/vouch-load example.com/app/vouch-load
