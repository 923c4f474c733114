#!/usr/bin/env bash
# Builds Vouch and runs the whole test suite. The end-to-end tests start the
# real `vouch` binary, so it is built first; the Python client test and the
# manifest checks use the virtualenv that setup-python.sh makes in .build, the
# Go client test the program setup-go.sh builds there. Tests that need
# PostgreSQL share one throwaway cluster (test-postgres.sh) for the run. On a
# fresh Debian/Ubuntu machine the system packages come first (install-deps.sh);
# when all are there, apt is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

# What install-deps.sh provides, checked without dpkg or apt.
deps_present() {
    local tool
    for tool in protoc protoc-gen-go protoc-gen-go-grpc go sqlite3 openssl curl python3 javac keytool java \
                softhsm2-util pkcs11-tool chromium chromedriver; do
        command -v "$tool" >/dev/null || return 1
    done
    [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ] \
        && [ -x /usr/lib/postgresql/15/bin/psql ] || return 1
    [ -x /usr/sbin/nginx ] && [ -x /usr/sbin/haproxy ] || return 1
    [ -f /usr/lib/softhsm/libsofthsm2.so ] || return 1
    [ -f /usr/include/openssl/ssl.h ] && [ -f /usr/include/sqlite3.h ] || return 1
    [ -d /usr/share/gocode/src/google.golang.org/grpc ] && [ -d /usr/share/gocode/src/google.golang.org/protobuf ] \
        && [ -d /usr/share/gocode/src/github.com/golang/protobuf ] || return 1
    # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
    [ -x .build/python-venv/bin/python ] || python3 -c 'import ensurepip, venv' 2>/dev/null || return 1
}
if ! deps_present; then
    echo "test.sh: system packages missing; running scripts/install-deps.sh" >&2
    scripts/install-deps.sh
fi

scripts/setup-python.sh
scripts/setup-go.sh
swift build --build-tests
# A URL already set names a cluster someone else runs; otherwise one is started for this run,
# stopped by the trap, or by the script's watcher if this shell is killed outright.
if [ -z "${VOUCH_TEST_POSTGRES_URL:-}" ]; then
    postgres_dir=$(mktemp -d /tmp/vouch-test-pg.XXXXXX)
    trap 'scripts/test-postgres.sh stop "$postgres_dir"' EXIT
    VOUCH_TEST_POSTGRES_URL=$(scripts/test-postgres.sh start "$postgres_dir" $$)
    export VOUCH_TEST_POSTGRES_URL
fi
swift test --skip-build "$@"
