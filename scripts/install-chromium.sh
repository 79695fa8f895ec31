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
# Parallel test workers may call these scripts at the same time: one apt run at a time.
exec 9>/tmp/threekit-pipeline-apt.lock
flock -w 900 9
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
APT_OPTS=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${APT_OPTS[@]}" update -qq
$SUDO apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
