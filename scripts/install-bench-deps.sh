#!/usr/bin/env bash
# Install what the benchmark needs beyond the project's own dependencies:
# matplotlib (plots) into the project's virtualenv, Debian's opentracker (the
# reference tracker) when it is missing, and Node.js with npm's bittorrent-tracker (the
# reference WebTorrent tracker of the ws mode, through scripts/install-js-deps.sh). Safe to
# run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    echo "no virtualenv at .venv (create it first: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')" >&2
    exit 1
fi
if ! "$PYTHON" -c "import matplotlib" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "matplotlib>=3.8"
fi

if ! command -v opentracker >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq opentracker
    else
        echo "opentracker is missing and apt-get is not available: the bench runs Shoal only" >&2
    fi
fi
# Debian's package starts a system opentracker on port 6969; the bench starts its own
# instances on free ports, so the system service is not needed (and is left alone).
command -v opentracker >/dev/null 2>&1 && echo "opentracker: $(command -v opentracker)"
"$PYTHON" -c "import matplotlib; print('matplotlib', matplotlib.__version__)"
# Node.js and npm's bittorrent-tracker: the reference WebTorrent tracker of the ws mode.
bash scripts/install-js-deps.sh
node_version="$(node --version)"
echo "bittorrent-tracker: js/node_modules (node $node_version)"
