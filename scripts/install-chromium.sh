#!/usr/bin/env bash
# Installs Debian's Chromium (headless UI checks in tests/deploy/test_ui.py). Idempotent:
# does nothing when /usr/bin/chromium exists. Needs root (or sudo) and Debian's package index.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
