#!/usr/bin/env python3
"""Compare the files of cplet's RPM with those of its .deb, across the distributions' layouts.

    tests/packaging/rpm-files.py RPM-SIDE... -- DEB-SIDE...
    tests/packaging/rpm-files.py --rpm-list build-rpm/files.txt --deb cplet_0.1.0-1_amd64.deb

Each side is the union of what it is given:
  --rpm-list FILE   `rpm -qlv` output (packaging/rpm/build-rpm.sh writes it to OUTDIR/files.txt)
  --rpm PKG.rpm     an RPM package (read with `rpm -qplv`)
  --deb-list FILE   `dpkg-deb -c` output
  --deb PKG.deb     a Debian package (read with `dpkg-deb -c`)
  --deb-tree DIR    a DESTDIR install in the Debian layout (`meson install` of a
                    --prefix=/usr --libdir=lib/<multiarch> build), a stand-in for the .deb
  --ignore-docs     leave /usr/share/doc and /usr/share/licenses out (a DESTDIR install has
                    neither)

Files, symbolic links and their permissions are compared, directories are not (a .deb lists
every parent directory, an RPM only those it owns). Before the comparison each path is mapped
to one layout:
  /usr/lib64 (RPM) and /usr/lib/<multiarch> (Debian)          -> /usr/LIBDIR
  /lib, /bin, /sbin (Debian 12's unit directory /lib/systemd)  -> /usr/lib, /usr/bin, /usr/sbin
  man pages and documentation, compressed or not                -> without .gz/.xz/.bz2/.zst
  /usr/share/licenses/PKG/* (RPM), /usr/share/doc/PKG/copyright
  (Debian)                                                      -> "[license]"
  the -devel (RPM) and -dev (Debian) packages' doc directories  -> the main package's
shared objects' execute bits are not compared (0755 on Fedora, 0644 on Debian, each policy's),
and these are left out, being one distribution's metadata rather than the software:
  /usr/lib/.build-id/ (Fedora ships build-id links in the package, Debian in -dbgsym),
  /usr/share/doc/PKG/changelog.Debian* and, for a native package, changelog (an RPM's
  changelog is in its header),
  /usr/share/lintian/.
Exit status: 0 when both sides hold the same files with the same permissions, 1 otherwise
(each difference listed), 2 on a usage or input error.
"""
import argparse
import os
import re
import stat
import subprocess
import sys

MULTIARCH = re.compile(r'^/usr/lib/[a-z0-9_]+-linux-[a-z0-9_]+(?=/|$)')
COMPRESSED = re.compile(r'\.(gz|xz|bz2|zst)$')
DOC = re.compile(r'^/usr/share/doc/(?P<pkg>[^/]+)(?:/(?P<rest>.*))?$')
LICENSE = re.compile(r'^/usr/share/licenses/(?P<pkg>[^/]+)(?:/(?P<rest>.*))?$')
DROPPED = (re.compile(r'^/usr/lib/\.build-id(/|$)'),
           re.compile(r'^/usr/share/lintian(/|$)'),
           re.compile(r'^/usr/lib/debug(/|$)'))


def base_package(pkg):
    """cplet-devel (RPM), cplet-dev (Debian) -> cplet; cplet-0.1.0 (an old rpm's docdir) too."""
    pkg = re.sub(r'-\d[\w.]*$', '', pkg)
    return re.sub(r'-(devel|dev)$', '', pkg)


def canonical(path, ignore_docs):
    """The path in the common layout, or None when it is left out of the comparison."""
    if path.startswith('./'):
        path = path[1:]
    if len(path) > 1:
        path = path.rstrip('/')
    for top in ('/lib', '/lib64', '/bin', '/sbin'):
        if path == top or path.startswith(top + '/'):
            path = '/usr' + path
            break
    if any(r.match(path) for r in DROPPED):
        return None
    if path == '/usr/lib64' or path.startswith('/usr/lib64/'):
        path = '/usr/LIBDIR' + path[len('/usr/lib64'):]
    path = MULTIARCH.sub('/usr/LIBDIR', path)
    if path.startswith('/usr/share/man/'):
        path = COMPRESSED.sub('', path)
    m = LICENSE.match(path)
    if m:
        if ignore_docs:
            return None
        return '[license of %s]' % base_package(m['pkg']) if m['rest'] else None
    m = DOC.match(path)
    if m:
        if ignore_docs:
            return None
        rest = m['rest']
        if rest is None:
            return None                       # the directory itself, or a symlink to another's
        if rest.startswith('changelog.Debian') or COMPRESSED.sub('', rest) == 'changelog':
            return None                       # Debian's changelog (a native package's has no suffix)
        if rest == 'copyright':
            return '[license of %s]' % base_package(m['pkg'])
        return '/usr/share/doc/%s/%s' % (base_package(m['pkg']), COMPRESSED.sub('', rest))
    return path


def parse_listing(text, origin):
    """Entries (path, mode string) of `rpm -qlv`, `dpkg-deb -c` or a plain list of paths."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith('#'):
            continue
        if tokens[0].startswith(('/', './')):             # a plain path
            entries.append((tokens[0], 'd' if tokens[0].endswith('/') else '?'))
            continue
        mode = tokens[0]
        if not re.fullmatch(r'[-dlcbps][-rwxsStT]{9}\.?', mode):
            if line.startswith('(contains no files)'):
                continue
            raise ValueError('%s:%d: not a file listing line: %s' % (origin, n, line))
        path = next((t for t in tokens[1:] if t.startswith(('/', './'))), None)
        if path is None:
            raise ValueError('%s:%d: no path in: %s' % (origin, n, line))
        entries.append((path, mode[:10]))
    return entries


def run(cmd):
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise ValueError('%s is not installed' % cmd[0])
    except subprocess.CalledProcessError as e:
        raise ValueError('%s failed: %s' % (' '.join(cmd), e.stderr.strip()))


def walk_tree(root):
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = '/' + os.path.relpath(full, root)
            entries.append((rel, stat.filemode(os.lstat(full).st_mode)))
    if not entries:
        raise ValueError('%s: empty or not a directory' % root)
    return entries


def collect(entries, ignore_docs):
    """{canonical path: mode string} of the files and links; what was left out, separately."""
    files = {}
    left_out = set()
    for path, mode in entries:
        if mode.startswith('d'):
            continue
        c = canonical(path, ignore_docs)
        if c is None:
            left_out.add(path)
            continue
        # Licenses: one per package side, whatever the files are called.
        if c.startswith('[license'):
            mode = 'license'
        elif c.endswith('.so') and mode.startswith('-'):
            # Shared objects: Fedora's policy makes them executable, Debian's (dh_fixperms) not;
            # the other bits must agree.
            mode = mode.replace('x', '-')
        files[c] = mode
    return files, left_out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rpm-list', action='append', default=[])
    ap.add_argument('--rpm', action='append', default=[])
    ap.add_argument('--deb-list', action='append', default=[])
    ap.add_argument('--deb', action='append', default=[])
    ap.add_argument('--deb-tree', action='append', default=[])
    ap.add_argument('--ignore-docs', action='store_true')
    args = ap.parse_args()
    if not (args.rpm_list or args.rpm) or not (args.deb_list or args.deb or args.deb_tree):
        ap.error('give at least one RPM side (--rpm-list, --rpm) and one Debian side '
                 '(--deb-list, --deb, --deb-tree)')
    try:
        rpm_entries, deb_entries = [], []
        for f in args.rpm_list:
            with open(f) as fh:
                rpm_entries += parse_listing(fh.read(), f)
        for f in args.rpm:
            rpm_entries += parse_listing(run(['rpm', '-qplv', f]), f)
        for f in args.deb_list:
            with open(f) as fh:
                deb_entries += parse_listing(fh.read(), f)
        for f in args.deb:
            deb_entries += parse_listing(run(['dpkg-deb', '-c', f]), f)
        for d in args.deb_tree:
            deb_entries += walk_tree(d)
    except (OSError, ValueError) as e:
        print('rpm-files.py: %s' % e, file=sys.stderr)
        return 2

    rpm_files, rpm_out = collect(rpm_entries, args.ignore_docs)
    deb_files, deb_out = collect(deb_entries, args.ignore_docs)
    if not rpm_files or not deb_files:
        print('rpm-files.py: no files on the %s side' % ('RPM' if not rpm_files else 'Debian'),
              file=sys.stderr)
        return 2

    only_rpm = sorted(set(rpm_files) - set(deb_files))
    only_deb = sorted(set(deb_files) - set(rpm_files))
    modes = sorted(p for p in set(rpm_files) & set(deb_files)
                   if rpm_files[p] != deb_files[p]
                   and not (rpm_files[p].startswith('l') and deb_files[p].startswith('l')))
    for p in sorted(rpm_out):
        print('left out (RPM):    %s' % p)
    for p in sorted(deb_out):
        print('left out (Debian): %s' % p)
    for p in sorted(set(rpm_files) & set(deb_files)):
        if p not in modes:
            print('same: %s %s' % (rpm_files[p], p))
    for p in only_rpm:
        print('DIFFERENT: only in the RPM:    %s %s' % (rpm_files[p], p))
    for p in only_deb:
        print('DIFFERENT: only in the Debian: %s %s' % (deb_files[p], p))
    for p in modes:
        print('DIFFERENT: permissions: RPM %s, Debian %s: %s' % (rpm_files[p], deb_files[p], p))
    n = len(only_rpm) + len(only_deb) + len(modes)
    if n:
        print('rpm-files.py: %d difference(s) between the RPM and the Debian file lists' % n)
        return 1
    print('rpm-files.py: the same %d files on both sides' % len(rpm_files))
    return 0


if __name__ == '__main__':
    sys.exit(main())
