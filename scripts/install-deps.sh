#!/usr/bin/env bash
# Installs the system packages Vouch builds and tests with (Debian/Ubuntu): OpenSSL 3 and SQLite
# headers, protoc, Python for the Python client test, protoc's Go plugins with Go, grpc-go and
# protobuf-go for the Go client test (GOPATH mode, offline: no Go module downloads), and the
# PostgreSQL 15 server whose initdb and pg_ctl make the tests' throwaway cluster (test-postgres.sh),
# the relying parties the README recipes are tested against: nginx, HAProxy and OpenJDK 17, and
# SoftHSM2 with OpenSC's pkcs11-tool, the software PKCS#11 token the tests keep CA keys in, and
# Chromium with its chromedriver, the real browser the dashboard (`vouch ui`) is tested in.
set -euo pipefail
packages=(libssl-dev libsqlite3-dev openssl protobuf-compiler python3-venv curl sqlite3
          protoc-gen-go protoc-gen-go-grpc golang-go golang-google-grpc-dev golang-google-protobuf-dev
          golang-github-golang-protobuf-1-5-dev postgresql-15
          nginx haproxy openjdk-17-jdk-headless softhsm2 opensc chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  # The tests start their own nginx, HAProxy and PostgreSQL; keep Debian's postinst from starting
  # system-wide ones on ports 80 and 5432 (a policy-rc.d that exits 101 denies every service start).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
