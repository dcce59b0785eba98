#!/usr/bin/env bash
# The browser test renders the HTML summary in headless Chromium (Debian package `chromium`).
# Installs it when missing and apt is usable; otherwise says so (the test then fails, loudly).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium from Debian packages for the browser test…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
else
  echo "Chromium is not installed and cannot be installed here; the browser test will fail" >&2
fi
