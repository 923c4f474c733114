#!/usr/bin/env bash
# Installs the system packages Vouch builds and tests with (Debian/Ubuntu).
set -euo pipefail
packages=(libssl-dev libsqlite3-dev openssl protobuf-compiler protoc-gen-go protoc-gen-go-grpc python3-venv curl sqlite3)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
