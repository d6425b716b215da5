#!/usr/bin/env bash
# Install headless Chromium (Debian's `chromium` package) for the dashboard browser test.
# Idempotent and quiet: does nothing when a chromium binary is already on PATH.
set -euo pipefail

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser-deps: no chromium and no apt-get; install Debian's chromium package" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-browser-deps: apt-get failed" >&2
    exit 1
fi
command -v chromium >/dev/null 2>&1 || {
    echo "install-browser-deps: chromium is still missing after apt-get install" >&2
    exit 1
}
