#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks need, on Debian 12 as root.
# Safe to run again: each step checks before it acts. Starts no server.
set -euo pipefail
cd "$(dirname "$0")/.."

# The shellcheck package is for the shellcheck test of tests/sanity.sh (ansible-test skips it without the program).
packages=(postgresql postgresql-contrib python3-venv util-linux shellcheck openssh-server openssh-client iproute2 procps varnish haproxy
          prometheus prometheus-postgres-exporter docker.io docker-compose docker-registry mmdebstrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # openssh-server starts the machine's own sshd; the project runs its own, in namespaces.
  if printf '%s\n' "${missing[@]}" | grep -qx openssh-server; then
    service ssh stop >/dev/null 2>&1 || true
  fi
  # Likewise varnish's own cache on :6081; the tests start theirs on free ports.
  if printf '%s\n' "${missing[@]}" | grep -qx varnish; then
    service varnish stop >/dev/null 2>&1 || true
  fi
  # And haproxy's own, with the package's configuration; the sandbox runs its own in front of the app hosts.
  if printf '%s\n' "${missing[@]}" | grep -qx haproxy; then
    service haproxy stop >/dev/null 2>&1 || true
  fi
  # And Prometheus' own (:9090) and the exporter's (:9187); the release gate tests start theirs on free ports.
  for service in prometheus prometheus-postgres-exporter; do
    if printf '%s\n' "${missing[@]}" | grep -qx "$service"; then
      service "$service" stop >/dev/null 2>&1 || true
    fi
  done
  # And Docker's own engine (/var/lib/docker, /run/docker.sock) and registry (:5000, with auth); the container tests
  # start theirs (sandbox/docker_engine.py), each with its own data root and socket, and a registry on a free port.
  if printf '%s\n' "${missing[@]}" | grep -qx docker.io; then
    service docker stop >/dev/null 2>&1 || true
  fi
  if printf '%s\n' "${missing[@]}" | grep -qx docker-registry; then
    service docker-registry stop >/dev/null 2>&1 || true
  fi
  # The package starts a default cluster on 5432; the project uses throwaway clusters only.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _port status _rest; do
      if [ "$status" = online ]; then pg_ctlcluster "$version" "$cluster" stop || true; fi
    done
  fi
fi

# A venv from Debian's python, so that another user (postgres) could run it too.
if ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing Python packages from requirements.txt"
  # pip's own warnings go to a log, shown only when the install fails.
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt 2> .venv/pip.log; then
    cat .venv/pip.log >&2
    exit 1
  fi
  echo "$wanted" > .venv/.requirements.sha256
fi

# Node's own dotenv parsers, the ones Treazrisland reads its .env with, at the exact versions of
# tests/node/package-lock.json (dotenv 8.6.0, dotenv 16, dotenv-flow 3.3.0): the configuration tests
# read the files config_apply writes with them. Debian's nodejs and npm only when no node/npm is there.
node_missing=()
command -v node >/dev/null || node_missing+=(nodejs)
command -v npm >/dev/null || node_missing+=(npm)
if [ ${#node_missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${node_missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${node_missing[@]}"
fi
wanted=$(cat tests/node/package.json tests/node/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat .build/node/.lock.sha256 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing the Node dotenv parsers from tests/node/package-lock.json"
  rm -rf .build/node
  mkdir -p .build/node
  cp tests/node/package.json tests/node/package-lock.json .build/node/
  npm ci --prefix .build/node --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$wanted" > .build/node/.lock.sha256
fi

# Ansible finds the collection through .build/collections (ANSIBLE_COLLECTIONS_PATH).
mkdir -p .build/collections/ansible_collections/treazrisland
ln -sfn ../../../.. .build/collections/ansible_collections/treazrisland/ops
echo "setup: ready (.venv, .build/collections)"
