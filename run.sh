#!/usr/bin/env bash
# ./run.sh demo | ./run.sh test | ./run.sh <any Makefile target>
# On a fresh Debian 12 machine (as root) this installs make if needed; the
# Makefile's targets install everything else themselves.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v make >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends make
fi
exec make "${@:-test}"
