#!/usr/bin/env bash
# Debian packages the tests use: `chromium` (headless, for the page's browser tests). Installs once, as root
# with apt-get (CI); elsewhere it says what to install and the browser tests skip.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "[setup] Chromium is missing: install the Debian package (apt-get install -y chromium) for the browser tests" >&2
  exit 1
fi
echo "[setup] installing Chromium (Debian package) for the browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > /dev/null
