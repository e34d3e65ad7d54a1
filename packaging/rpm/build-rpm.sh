#!/bin/bash
# packaging/rpm/build-rpm.sh: builds cplet's RPMs from the committed HEAD with
# packaging/rpm/cplet.spec, checks them with rpmlint (any error fails), installs them into a
# scratch root and prints the installed file list.
#
#   packaging/rpm/build-rpm.sh [--nocheck] [--outdir DIR] [--deb PKG.deb]...
#
#   --nocheck     skip the spec's %check (the whole test suite runs in CI through scripts/test)
#   --deb PKG     at the end, compare the installed files with this .deb's (repeatable: the
#                 union of the .debs), with tests/packaging/rpm-files.py; a difference fails
#   --outdir DIR  where everything goes (default: build-rpm/ in the source tree):
#                   DIR/RPMS/ARCH/*.rpm  the packages
#                   DIR/rpmlint.txt      rpmlint's report
#                   DIR/root/            the scratch root they are installed into
#                   DIR/files.txt        `rpm -qlv` of the installed packages, the list
#                                        tests/packaging/rpm-files.py compares with a .deb's
#
# On Debian (the CI machines and this project's reference system) the build uses Debian's own
# `rpm` and `rpmlint` packages (installed with apt when missing), loads macros.debian for the
# Fedora macros Debian's rpm lacks, and passes --nodeps: the spec's BuildRequires name Fedora's
# packages (pkgconfig(jansson), python3-pyyaml, systemd-rpm-macros, ...), which no RPM database
# on a Debian machine provides; the same libraries come from scripts/deps.sh's Debian packages.
# On an RPM distribution neither is used: the BuildRequires are checked as usual.
#
# The source tarball is `git archive HEAD`: commit before building, uncommitted changes are not
# in the package.
set -euo pipefail

nocheck=""
outdir=""
debs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --nocheck) nocheck=--nocheck ;;
        --outdir) outdir="$2"; shift ;;
        --outdir=*) outdir="${1#--outdir=}" ;;
        --deb) debs+=("$(realpath "$2")"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-rpm.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

src="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$src"
spec=packaging/rpm/cplet.spec
outdir="${outdir:-$src/build-rpm}"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"

debian=""
[ -f /etc/debian_version ] && command -v dpkg-query >/dev/null && debian=1

if [ -n "$debian" ]; then
    . scripts/deps.sh
    # The build dependencies (the spec's BuildRequires, in Debian's names), rpm, rpmlint and
    # checkbashisms (devscripts), which rpmlint's BashismsCheck runs on the scriptlets (Fedora's
    # rpmlint requires it too).
    cplet_install_deps || exit 1
    cplet_install_deps rpm rpmlint devscripts || exit 1
fi

# One version, in meson.build and in the spec.
version="$(sed -n "s/^[[:space:]]*version[[:space:]]*:[[:space:]]*'\([^']*\)'.*/\1/p" meson.build | head -n1)"
spec_version="$(sed -n 's/^Version:[[:space:]]*//p' "$spec")"
if [ "$version" != "$spec_version" ]; then
    echo "build-rpm.sh: meson.build says version $version, $spec says $spec_version" >&2
    exit 1
fi

top="$outdir/rpmbuild"
rm -rf "$top" "$outdir/RPMS"
mkdir -p "$top"/{SOURCES,SPECS,BUILD,BUILDROOT,RPMS,SRPMS}
git archive --format=tar.gz --prefix="cplet-$version/" -o "$top/SOURCES/cplet-$version.tar.gz" HEAD
echo "== source: cplet-$version.tar.gz from $(git rev-parse --short HEAD)"

rpmbuild_args=(--define "_topdir $top")
if [ -n "$debian" ]; then
    rpmbuild_args+=(--load "$src/packaging/rpm/macros.debian" --nodeps)
fi
echo "== rpmbuild -bb ${nocheck:+$nocheck }$spec"
nice rpmbuild "${rpmbuild_args[@]}" -bb $nocheck "$spec" >"$outdir/rpmbuild.log" 2>&1 || {
    tail -n 60 "$outdir/rpmbuild.log"
    echo "build-rpm.sh: rpmbuild failed (log: $outdir/rpmbuild.log)" >&2
    exit 1
}
mv "$top/RPMS" "$outdir/RPMS"
mapfile -t rpms < <(find "$outdir/RPMS" -name '*.rpm' | sort)
printf '   %s\n' "${rpms[@]#$outdir/}"

echo "== rpmlint"
# rpmlint exits non-zero on errors (and on warnings past its badness threshold); the summary
# line says how many of each there were.
rc=0
rpmlint -c "$src/packaging/rpm/rpmlint.toml" "$spec" "${rpms[@]}" >"$outdir/rpmlint.txt" 2>&1 || rc=$?
cat "$outdir/rpmlint.txt"
if [ "$rc" -ne 0 ] || grep -q ': E: ' "$outdir/rpmlint.txt"; then
    echo "build-rpm.sh: rpmlint reported errors" >&2
    exit 1
fi

echo "== rpm --root $outdir/root -i --nodeps --noscripts"
# --noscripts: the scriptlets call systemctl and systemd-tmpfiles, which the empty root does
# not have. --nodeps: nor has it the libraries (a real system resolves them with dnf).
root="$outdir/root"
rm -rf "$root"
mkdir -p "$root"
rpm --root "$root" --dbpath /var/lib/rpm --initdb
rpm --root "$root" --dbpath /var/lib/rpm -i --nodeps --noscripts "${rpms[@]}"
mapfile -t names < <(rpm --root "$root" --dbpath /var/lib/rpm -qa --qf '%{NAME}\n' | sort)
rpm --root "$root" --dbpath /var/lib/rpm -qlv "${names[@]}" >"$outdir/files.txt"
cat "$outdir/files.txt"
echo "== installed: ${names[*]} (file list: $outdir/files.txt)"

if [ ${#debs[@]} -gt 0 ]; then
    echo "== tests/packaging/rpm-files.py: the RPMs' files against ${debs[*]##*/}"
    deb_args=()
    for d in "${debs[@]}"; do deb_args+=(--deb "$d"); done
    python3 tests/packaging/rpm-files.py --rpm-list "$outdir/files.txt" "${deb_args[@]}"
fi
