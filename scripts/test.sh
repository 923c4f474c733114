#!/usr/bin/env bash
# Builds Vouch and runs the whole test suite. The end-to-end tests start the
# real `vouch` binary, so it is built first; the Python client test and the
# manifest checks use the virtualenv that setup-python.sh makes in .build, the
# Go client test the program setup-go.sh builds there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
scripts/setup-go.sh
swift build --build-tests
swift test --skip-build "$@"
