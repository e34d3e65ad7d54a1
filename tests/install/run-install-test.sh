#!/bin/bash
# The packages, installed for real (issue 10). TAP on stdout; diagnostics on stderr.
#
# Builds the .deb from the working tree (dpkg-buildpackage, upstream tests left to the suite
# that runs this) and a rebuild with a higher version, checks them with lintian, builds the .rpm
# (packaging/rpm/build-rpm.sh: rpmlint, and the same file list as the .deb), then boots a Debian
# 12 root (mmdebstrap from the machine's apt sources, cached as a tarball) with systemd-nspawn -b
# into a real systemd and, inside it:
#   apt-get install ./cplet_*.deb (apt resolves the libraries), the unit's condition on a node
#   without kubelet credentials, systemd-analyze verify and security, a start that fails before
#   READY=1 never shows "active", then a simulated node (tests/sim with --root /) and the fake API
#   server: systemctl start cplet, a target annotation drives a gated upgrade under the sandbox,
#   the package is upgraded in the middle of it and the restarted daemon resumes it, journal
#   fields, reload, the watchdog, and apt-get purge leaving /var/lib/cplet;
#   then the README's demo command from a clean clone in the same root
#   (CPLET_INSTALL_TEST_FULL=1: the README's test command too; it takes half an hour).
#
# Needs root; skips with the reason where systemd-nspawn cannot boot (inside a container, say).
# Cache: CPLET_FRESH_CACHE (default /var/cache/cplet-fresh).
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
cache=${CPLET_FRESH_CACHE:-/var/cache/cplet-fresh}
# The packages baked into the cached root; the tarball's name carries them, so a change makes a
# new root rather than reusing one without them.
root_packages=systemd,systemd-sysv,dbus,python3,python3-yaml,openssl,procps,man-db
tarball=$cache/bookworm-systemd-$(echo "$root_packages" | md5sum | cut -c1-8).tar
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
diag() { sed 's/^/# /'; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
# check NAME COMMAND...: one case; the command's output becomes the diagnostics when it fails.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name"; printf '%s\n' "$out" | tail -40 | diag; fi
}

[ "$(id -u)" = 0 ] || skip_all "needs root (dpkg-buildpackage, mmdebstrap, systemd-nspawn)"
# systemd-nspawn writes this inside its containers (tests/fresh/run-readme.sh runs the suite in
# one): a nested boot is not possible there. Elsewhere the boot itself decides, below.
if [ -e /run/systemd/container ] || [ -n "${container:-}" ]; then
    skip_all "runs inside a ${container:-$(cat /run/systemd/container)} container: systemd-nspawn cannot boot a nested one"
fi
. "$src/scripts/deps.sh"
cplet_install_deps $CPLET_PACKAGE_DEPS >&2 || skip_all "cannot install the packaging tools ($CPLET_PACKAGE_DEPS)"

work=$(mktemp -d /var/tmp/cplet-install.XXXXXX)
nspawn_pid=""
cleanup() {
    if [ -n "$nspawn_pid" ]; then
        kill -TERM "$nspawn_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---- packages --------------------------------------------------------------------------
# The working tree (committed or not), as a clean source directory.
mkdir -p "$work/src"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -c --ignore-failed-read 2>/dev/null) |
    tar -x -C "$work/src"
version=$(dpkg-parsechangelog -l "$work/src/debian/changelog" -S Version)
build_deb() {
    (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b) \
        >"$work/dpkg-buildpackage.log" 2>&1 || { tail -40 "$work/dpkg-buildpackage.log"; return 1; }
}
check "dpkg-buildpackage -us -uc -b builds cplet $version" build_deb
deb=$work/cplet_${version}_$(dpkg --print-architecture).deb
lintian_clean() {
    local out
    out=$(lintian --fail-on error,warning "$work"/cplet_"${version}"_*.changes 2>&1)
    local rc=$?
    printf '%s\n' "$out"
    [ $rc = 0 ] && ! printf '%s\n' "$out" | grep -q '^[EW]:'
}
check "lintian reports no error and no warning" lintian_clean

# The same source with a newer changelog entry: the package an upgrade installs.
next=$version+rebuild1
rebuild() {
    mkdir -p "$work/next" && mv "$deb" "$work/next/"
    { printf 'cplet (%s) bookworm; urgency=medium\n\n  * Rebuild for the install test.\n\n -- %s  %s\n\n' \
        "$next" "$(dpkg-parsechangelog -l "$work/src/debian/changelog" -S Maintainer)" "$(date -R)"
      cat "$work/src/debian/changelog"; } >"$work/changelog" && cp "$work/changelog" "$work/src/debian/changelog" &&
        build_deb && mv "$work/next/$(basename "$deb")" "$work/" && ls "$work"/cplet_"$next"_*.deb
}
check "a rebuild with the higher version $next builds" rebuild
deb_next=$(ls "$work"/cplet_"$next"_*.deb 2>/dev/null)

if [ -x "$src/packaging/rpm/build-rpm.sh" ]; then
    rpm_build() { "$src/packaging/rpm/build-rpm.sh" --nocheck --outdir "$work/rpm" --deb "$deb"; }
    check "rpmbuild -bb, rpmlint without errors, and the same file list as the .deb" rpm_build
fi

# ---- a booted Debian 12 ----------------------------------------------------------------
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
    echo "# creating a Debian 12 root with systemd (once; cached in $tarball)" >&2
    mmdebstrap --variant=minbase --format=tar \
        --include="$root_packages" \
        bookworm "$tarball.tmp" /etc/apt/sources.list.d/debian.sources >"$cache/mmdebstrap-systemd.log" 2>&1 &&
        mv "$tarball.tmp" "$tarball" || { tail -20 "$cache/mmdebstrap-systemd.log" | diag; }
fi
[ -s "$tarball" ] || { not_ok "a Debian 12 root with systemd is created"; echo "1..$n"; exit 1; }
root=$work/root
mkdir "$root" && tar -xf "$tarball" -C "$root"
# What the test drives the node with, beside the packages: the simulated node and the fake API
# server (tests/sim, tests/apiserver, examples/node), the release data the fakes refuse removed
# flags and gates from (data/releases) and the launcher every fake runs as.
mkdir -p "$root/opt/cplet-test"
cp -a "$work/src/tests" "$work/src/examples" "$work/src/data" "$root/opt/cplet-test/"
cp "$work"/cplet_*.deb "$root/opt/cplet-test/"
cc -O2 -o "$root/opt/cplet-test/cplet-sim-launcher" "$src/tests/sim/launcher.c" || not_ok "the simulated node's launcher builds"
# A clean clone for the README's commands, taken now (the root has no git).
git clone -q --no-local "$src" "$root/root/cplet" 2>&1 | diag
[ -d "$src/../shared" ] && cp -a "$src/../shared" "$root/root/shared"

systemd-nspawn -b -D "$root" --register=no --keep-unit --console=passive -q >"$work/boot.log" 2>&1 &
nspawn_pid=$!
leader=""
for _ in $(seq 300); do
    # The container's PID 1 (nspawn forks helpers before it).
    leader=$(pgrep -P "$nspawn_pid" -x systemd | head -1)
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
inside() { nsenter -t "$leader" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
state=""
# Until the container's systemd has its bus up, systemctl cannot ask it anything.
for _ in $(seq 120); do
    [ -n "$leader" ] || break
    state=$(timeout 120 nsenter -t "$leader" -a -- systemctl is-system-running --wait 2>&1)
    case $state in *"Failed to connect"*) sleep 0.5 ;; *) break ;; esac
done
case $state in
running | degraded) ok "Debian 12 boots under systemd-nspawn -b (system $state)" ;;
*)
    cat "$work/boot.log" | diag
    [ -n "$leader" ] || skip_all "systemd-nspawn cannot boot a container here: $(tail -1 "$work/boot.log")"
    not_ok "Debian 12 boots under systemd-nspawn -b (system '$state')"; echo "1..$n"; exit 1 ;;
esac

sh_in() { inside /bin/sh -c "$1"; }
check "the libraries cplet needs are not installed yet" sh_in '! dpkg -s libjansson4 libcurl4 >/dev/null 2>&1'
check "apt-get install ./cplet_$version.deb resolves its dependencies" sh_in \
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /opt/cplet-test/$(basename "$deb") &&
     dpkg -s libjansson4 libcurl4 libyaml-0-2 >/dev/null"
check "the package's files: binary, plugins, unit, tmpfiles, conffile, man pages, completion" sh_in \
    'test -x /usr/sbin/cplet && ls /usr/lib/*/cplet/plugins/kube-apiserver.so && test -f /lib/systemd/system/cplet.service &&
     dpkg-query --control-show cplet conffiles | grep -qx /etc/cplet/config.yaml &&
     man -w cplet && man -w cplet-config && test -f /usr/share/bash-completion/completions/cplet &&
     test "$(stat -c %a /var/lib/cplet)" = 700 && test "$(stat -c %a /run/cplet)" = 700'
check "enabled; without kubelet credentials: condition failed, not a crash loop" sh_in \
    'systemctl is-enabled cplet && systemctl show cplet -p ConditionResult,ActiveState,Result | tee /dev/stderr |
     tr "\n" " " | grep -q "ConditionResult=no ActiveState=inactive\|ActiveState=inactive.*ConditionResult=no"'
check "systemd-analyze verify is clean" sh_in 'out=$(systemd-analyze verify cplet.service 2>&1); echo "$out"; [ -z "$out" ]'
score=$(sh_in 'systemd-analyze security --offline=yes /lib/systemd/system/cplet.service 2>/dev/null' |
    sed -n 's/.*Overall exposure level for cplet.service: \([0-9.]*\).*/\1/p')
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    ok "systemd-analyze security --offline=yes: exposure $score (at most 2.0)"
else
    not_ok "systemd-analyze security --offline=yes: exposure '$score' (at most 2.0)"
fi

# ---- a simulated control-plane node and the API server ---------------------------------
sim="CPLET_SIM_LAUNCHER=/opt/cplet-test/cplet-sim-launcher python3 /opt/cplet-test/tests/sim/simnode.py"
check "the simulated node (v1.34.2) runs at /etc/kubernetes/manifests" sh_in "$sim up --root / --version v1.34.2 >/dev/null"
check "the fake API server runs, kubelet.conf written" inside python3 /opt/cplet-test/tests/install/node.py api-up
check "cplet status reads the node with the shipped configuration" inside /usr/sbin/cplet status

# A daemon that cannot start exits before READY=1: the unit must never show active.
bad_start() {
    sh_in 'cp /etc/cplet/config.yaml /root/config.good && echo "revisionsToKeep: 1" >>/etc/cplet/config.yaml
           ! systemctl start cplet; r=$?
           systemctl show cplet -p ActiveEnterTimestampMonotonic,Result; journalctl -u cplet -n 4 --no-pager
           systemctl stop cplet; systemctl reset-failed cplet; cp /root/config.good /etc/cplet/config.yaml; exit $r' \
        >"$work/bad-start" 2>&1
    local rc=$?
    cat "$work/bad-start"
    [ $rc = 0 ] && grep -qx 'ActiveEnterTimestampMonotonic=0' "$work/bad-start" &&
        grep -qx 'Result=exit-code' "$work/bad-start" && grep -q 'revisionsToKeep' "$work/bad-start"
}
check "an invalid configuration: start fails before READY=1, never active, the reason in the journal" bad_start
start_ok() {
    sh_in 'systemctl start cplet && systemctl show cplet -p ActiveState,SubState,StatusText,Type' >"$work/start" 2>&1
    cat "$work/start"
    for want in ActiveState=active SubState=running StatusText=Idle Type=notify; do
        grep -qx "$want" "$work/start" || return 1
    done
}
check "systemctl start cplet: active (running) after READY=1, STATUS=Idle" start_ok
sandboxed() {
    local pid
    pid=$(sh_in 'systemctl show cplet -p MainPID --value')
    sh_in "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$pid/status" | tee /dev/stderr |
        tr -s '\t\n' '  ' | grep -q 'NoNewPrivs: 1 Seccomp: 2.*CapEff: 0000000000000000 CapBnd: 0000000000000000\|CapEff: 0000000000000000 CapBnd: 0000000000000000 NoNewPrivs: 1 Seccomp: 2'
}
check "the daemon runs sandboxed: no capabilities, no new privileges, a seccomp filter" sandboxed

# ---- a rollout, and a package upgrade in the middle of it --------------------------------
pid_before=$(sh_in 'systemctl show cplet -p MainPID --value')
target='{"id":"install-test","generation":1,"binaryVersion":"v1.35.0","stableFor":"3s","stepTimeout":"120s"}'
check "the administrator writes a target" inside python3 /opt/cplet-test/tests/install/node.py annotate "$target"
check "the rollout reaches step 2" inside python3 /opt/cplet-test/tests/install/node.py wait-status \
    's.get("phase") == "Progressing" and (s.get("step") or {}).get("index", 0) >= 2' 120
check "apt-get install ./cplet_$next.deb in the middle of the rollout" sh_in \
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /opt/cplet-test/$(basename "$deb_next") && dpkg -s cplet | grep -x 'Version: $next'"
pid_after=$(sh_in 'systemctl show cplet -p MainPID --value')
if [ -n "$pid_after" ] && [ "$pid_after" != 0 ] && [ "$pid_after" != "$pid_before" ]; then
    ok "the upgrade restarted the daemon (pid $pid_before -> $pid_after)"
else
    not_ok "the upgrade restarted the daemon (pid $pid_before -> $pid_after)"
fi
check "the restarted daemon resumes the rollout and it succeeds" inside python3 /opt/cplet-test/tests/install/node.py \
    wait-status 's.get("phase") in ("Succeeded", "Failed", "RolledBack") and s.get("phase") == "Succeeded"' 240
check "the node runs v1.35.0, emulated 1.35, on every component" sh_in \
    'cplet status --json | python3 -c "import json,sys; c=json.load(sys.stdin)[\"components\"]; print(c)
assert len(c) == 3 and all(x[\"binaryVersion\"] == \"v1.35.0\" and x[\"emulatedVersion\"] == \"1.35\" for x in c), c"'
check "the journal of the second daemon says it resumed" sh_in \
    "journalctl -u cplet _PID=$pid_after --no-pager -o cat | tee /dev/stderr | grep -qi 'resum'"
journal_fields() {
    sh_in 'journalctl -u cplet -o json --no-pager' | python3 -c '
import json, sys
seen = {}
for line in sys.stdin:
    e = json.loads(line)
    for k in ("CPLET_PLAN_ID", "CPLET_COMPONENT", "CPLET_STEP", "CPLET_PHASE"):
        if k in e:
            seen.setdefault(k, e[k])
print(seen)
sys.exit(0 if len(seen) == 4 else 1)'
}
check "journalctl -o json shows CPLET_PLAN_ID, CPLET_COMPONENT, CPLET_STEP, CPLET_PHASE" journal_fields
check "systemctl reload cplet: the configuration is read again, still running" sh_in \
    'systemctl reload cplet && sleep 1 && journalctl -u cplet --no-pager -o cat | grep -q "Configuration reloaded" &&
     systemctl is-active cplet'
check "the watchdog is fed" sh_in 'systemctl show cplet -p WatchdogUSec,WatchdogTimestampMonotonic | tee /dev/stderr |
     grep -q "WatchdogTimestampMonotonic=[1-9]"'

# ---- purge -------------------------------------------------------------------------------
check "apt-get purge cplet: unit and configuration gone, /var/lib/cplet and its revisions kept" sh_in \
    'revs=$(ls /var/lib/cplet/revisions | wc -l); DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq cplet &&
     ! test -e /lib/systemd/system/cplet.service && ! test -e /etc/cplet && ! systemctl cat cplet >/dev/null 2>&1 &&
     test -d /var/lib/cplet/revisions && test "$(ls /var/lib/cplet/revisions | wc -l)" = "$revs" && test "$revs" -gt 0'
sh_in "$sim down --root /" >/dev/null 2>&1

# ---- the README's commands, from a clean clone, in the same root --------------------------
readme_cmd="./scripts/demo"
[ "${CPLET_INSTALL_TEST_FULL:-}" = 1 ] && readme_cmd="./scripts/demo && ./scripts/test"
check "the README's quick start ($readme_cmd) in the same root, from a clean clone" sh_in \
    "cd /root/cplet && $readme_cmd >/root/readme.log 2>&1 || { tail -30 /root/readme.log; exit 1; }"

echo "1..$n"
[ $failed = 0 ]
