#!/usr/bin/env bash
# Install what the end-to-end tests (tests/e2e) need, from Debian's archive: the aria2 and
# Transmission BitTorrent clients, nginx (the reverse-proxy test), PostgreSQL (the
# private-mode storage tests start their own server with it), and redis-server with
# redis-cli (the Redis store tests; redis-cli builds their three-node Redis Cluster), gcc
# (it builds the compiled modules; its AddressSanitizer runtime, libasan, comes with it and
# runs the native tests under ASan), and clang (libFuzzer with AddressSanitizer for the
# compiled parsers, tests/fuzz/native).
# Idempotent and quiet: when every command is already there it does nothing (no apt-get at
# all). Uses sudo only when not root.
set -euo pipefail

# command the tests run -> Debian package that ships it
commands=(aria2c transmission-daemon transmission-remote nginx pg_ctl redis-server redis-cli gcc
          clang)
packages=(aria2 transmission-daemon transmission-cli nginx postgresql redis-server redis-tools gcc
          clang)

# nginx lives in /usr/sbin and PostgreSQL's programs in /usr/lib/postgresql/<version>/bin,
# which are not on every user's PATH.
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ||
        compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
for i in "${!commands[@]}"; do
    if ! have "${commands[$i]}"; then
        missing+=("${packages[$i]}")
    fi
done
# libFuzzer and the sanitizer runtimes come in a package of their own, apart from clang.
if ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" \
    >/dev/null; then
    missing+=(libclang-rt-dev)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-test-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt_get() {
    if ! ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o DPkg::Lock::Timeout=300 "$@" >>"$log" 2>&1; then
        echo "install-test-deps: apt-get $* failed:" >&2
        cat "$log" >&2
        exit 1
    fi
}

echo "install-test-deps: installing ${missing[*]}"
apt_get update
apt_get install -y --no-install-recommends "${missing[@]}"

for cmd in "${commands[@]}"; do
    if ! have "$cmd"; then
        echo "install-test-deps: $cmd is still missing after installing ${missing[*]}" >&2
        exit 1
    fi
done
