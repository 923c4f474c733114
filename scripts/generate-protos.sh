#!/usr/bin/env bash
# Regenerates the Swift code for the .proto files under Sources/VouchAPI (vouch.v1, health) and
# Sources/VouchWorkloadAPI (the SPIFFE Workload API) with the protoc plugins pinned by
# Package.swift. With --check, fails if the committed generated code differs from a fresh generation.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
[ "${1:-}" = "--check" ] && check=true

command -v protoc >/dev/null || { echo "protoc missing: run scripts/install-deps.sh" >&2; exit 1; }
swift build --product protoc-gen-swift >/dev/null
swift build --product protoc-gen-grpc-swift-2 >/dev/null
bin=$(swift build --show-bin-path)

stale=false
# generate SOURCE_DIR PROTO...: into SOURCE_DIR/Generated, or with --check into a temporary
# directory compared with it.
generate() {
  local source=$1; shift
  local out=$source/Generated target=$source/Generated
  if $check; then target=$(mktemp -d); fi
  protoc \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
    -I "$source" \
    --swift_out="$target" --swift_opt=Visibility=Public \
    --grpc-swift-2_out="$target" --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true \
    "$@"
  if $check && ! diff -r "$out" "$target"; then stale=true; fi
}

generate Sources/VouchAPI \
  Sources/VouchAPI/vouch/v1/ca.proto Sources/VouchAPI/vouch/v1/agent.proto Sources/VouchAPI/grpc/health/v1/health.proto
generate Sources/VouchWorkloadAPI Sources/VouchWorkloadAPI/spiffe/workload/workload.proto

if $check; then
  if $stale; then
    echo "generated code is stale: run scripts/generate-protos.sh and commit" >&2
    exit 1
  fi
  echo "generated code is up to date"
fi
