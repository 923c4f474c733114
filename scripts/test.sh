#!/usr/bin/env bash
# Builds Vouch and runs the whole test suite. The end-to-end tests start the
# real `vouch` binary, so it is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build "$@"
