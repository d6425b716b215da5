#!/usr/bin/env bash
# Install the npm packages in js/ (WebTorrent's browser bundle, the reference
# bittorrent-tracker client and server, @roamhq/wrtc) exactly as js/package-lock.json pins
# them, from the npm registry; and Debian's nodejs and npm first when they are missing.
# Safe to run again: nothing is done when js/node_modules already matches the lock file.
#
# npm ci runs with --ignore-scripts: one package of WebTorrent's tree (ip-set) has a
# preinstall script that runs `npx only-allow pnpm`, which fetches another package and
# refuses npm. Nothing Shoal uses needs an install script: @roamhq/wrtc's compiled module
# comes as a platform package (@roamhq/wrtc-linux-x64 ...), and the optional native
# helpers of `ws` fall back to JavaScript.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-js-deps: node and npm are missing and apt-get is not available" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-js-deps: need root or sudo to install Debian's nodejs and npm" >&2
        exit 1
    fi
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    echo "install-js-deps: installing Debian's nodejs and npm"
    for step in "update" "install -y --no-install-recommends nodejs npm"; do
        # shellcheck disable=SC2086
        if ! ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
            apt-get -q -o DPkg::Lock::Timeout=300 $step >>"$log" 2>&1; then
            cat "$log" >&2
            echo "install-js-deps: apt-get $step failed" >&2
            exit 1
        fi
    done
fi

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 18 ]; then
    echo "install-js-deps: Node.js 18 or newer is needed, found $(node --version)" >&2
    exit 1
fi

# npm writes node_modules/.package-lock.json on every install; when it is newer than the
# lock file, the tree is the one the lock file asks for.
stamp=js/node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt js/package-lock.json ] &&
    [ -f js/node_modules/webtorrent/dist/webtorrent.min.js ]; then
    exit 0
fi
echo "install-js-deps: npm ci in js/ (node $(node --version), npm $(npm --version))"
(cd js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
