#!/usr/bin/env bash
# Installs a Compose implementation that validates docker-compose.yaml without a Docker engine
# (tests/deploy/test_compose.py). Idempotent: does nothing when `docker compose` or `docker-compose`
# already works. Debian ships Compose v1 (docker-compose 1.29), which understands the Compose
# file features used here. Needs root (or sudo) and Debian's package index.
set -euo pipefail
if docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
# Parallel test workers may call these scripts at the same time: one apt run at a time.
exec 9>/tmp/threekit-pipeline-apt.lock
flock -w 900 9
if docker-compose version >/dev/null 2>&1; then
    exit 0
fi
APT_OPTS=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${APT_OPTS[@]}" update -qq
$SUDO apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends docker-compose >/dev/null
docker-compose version
