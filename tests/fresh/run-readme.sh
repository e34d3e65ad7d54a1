#!/bin/bash
# Runs the README's two quick-start commands (./scripts/demo, then ./scripts/test) as root on a
# truly fresh Debian 12 (a minbase root from the machine's apt sources, booted into nothing:
# systemd-nspawn runs the commands directly), from a clean export of HEAD. A missing install
# step shows here, not on a developer's machine where everything is already installed.
#
# The root is built once with mmdebstrap and cached as a tarball (CPLET_FRESH_CACHE, default
# /var/cache/cplet-fresh), so a run costs the package installs and the build, not a bootstrap.
# Needs root, mmdebstrap and systemd-nspawn (installed when missing); works where systemd is not
# PID 1 (--register=no --keep-unit: no machined, no scope of its own).
#
# Usage: tests/fresh/run-readme.sh [demo|test|both]   (default both)
set -euo pipefail
cd "$(dirname "$0")/../.."

what=${1:-both}
cache=${CPLET_FRESH_CACHE:-/var/cache/cplet-fresh}
tarball=$cache/bookworm-minbase.tar

if [ "$(id -u)" != 0 ]; then
    echo "run-readme: needs root (systemd-nspawn, mmdebstrap)" >&2
    exit 2
fi
missing=""
command -v mmdebstrap >/dev/null || missing="$missing mmdebstrap"
command -v systemd-nspawn >/dev/null || missing="$missing systemd-container"
if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
    echo "== creating a Debian 12 minbase root (once; cached in $tarball)"
    # The machine's own apt sources, so that it works wherever apt does.
    mmdebstrap --variant=minbase bookworm "$tarball.tmp" /etc/apt/sources.list.d/debian.sources \
        >"$cache/mmdebstrap.log" 2>&1 || { tail -20 "$cache/mmdebstrap.log"; exit 1; }
    mv "$tarball.tmp" "$tarball"
fi

root=$(mktemp -d /var/tmp/cplet-fresh.XXXXXX)
trap 'rm -rf "$root"' EXIT
tar -xf "$tarball" -C "$root"
mkdir -p "$root/root/cplet"
# As a clone would: the files get the umask's modes, not the archive's (0775 directories).
git archive HEAD | tar -x --no-same-permissions -C "$root/root/cplet"
# shared/ beside the project's root, as in CI (some docs and tests refer to it).
[ -d ../shared ] && cp -a ../shared "$root/root/shared"

case $what in
demo) cmd="./scripts/demo" ;;
test) cmd="./scripts/test" ;;
both) cmd="./scripts/demo && ./scripts/test" ;;
*) echo "usage: $0 [demo|test|both]" >&2; exit 2 ;;
esac

echo "== on a fresh Debian 12 root, as root: $cmd"
systemd-nspawn --quiet --register=no --keep-unit --as-pid2 -D "$root" --chdir=/root/cplet \
    --setenv=HOME=/root --setenv=CI="${CI:-}" /bin/bash -c "$cmd"
