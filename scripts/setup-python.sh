#!/usr/bin/env bash
# Creates the Python virtualenv the example client and its test use, with selenium for the
# dashboard's browser test, inside the build folder (.build/python-venv), and generates the
# client stubs from the committed .proto into .build/python-stubs. Idempotent: a second run
# only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.build/python-venv
STUBS=.build/python-stubs
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import grpc, grpc_tools, cryptography, yaml, spiffe, selenium" 2>/dev/null; then
    mkdir -p .build
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r clients/python/requirements.txt \
        -r Tests/browser/requirements.txt
fi
mkdir -p "$STUBS"
"$VENV/bin/python" -m grpc_tools.protoc -I Sources/VouchAPI --python_out="$STUBS" --grpc_python_out="$STUBS" \
    Sources/VouchAPI/vouch/v1/ca.proto
echo "python client ready: $VENV/bin/python clients/python/vouch_example.py --help"
