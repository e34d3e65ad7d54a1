#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The bad-input table of docs/bad-input.md, one TAP case per row (named after the row).

Each row builds a node root (a copy of examples/node, sometimes with a history of revisions
written by cplet itself), spoils it in one way, runs one cplet command, and checks:
  - the exit code (2 invalid input or a refused plan, 1 a failed operation);
  - that stderr names the offending file, field or value;
  - that the whole tree under the root is unchanged: every path's type, mode, owner, size,
    content (sha256), symlink target, and a file's inode and mtime — so no file or directory
    was created, removed or rewritten (even with the same bytes), the lock file included.

Run with --markdown to print the table (with the messages cplet gives today) for the doc.
Rows that need mounts (tmpfs for ENOSPC, a read-only bind mount) are skipped with a reason
when mount(2) is not permitted (not root, or no CAP_SYS_ADMIN); so is the foreign-owner row
when chown(2) is not.
"""
import ctypes
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback

from cli_common import CPLET, EXAMPLES, MANIFEST_DIR, PLUGINS, shell_quote
from cli_common import copy_example  # noqa: E402

TEST_PLUGINS = os.environ.get("CPLET_TEST_PLUGIN_DIR", "")
STATE = os.path.join("var", "lib", "cplet")
REVS = os.path.join(STATE, "revisions")
TARGET = "v1.35.0"
UPGRADE = ["upgrade", "--binary-version", TARGET, "--no-wait"]
PLAN = ["plan", "--binary-version", TARGET]
# A write on a node with history (where UPGRADE would be an empty plan).
WRITE = ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"]
TIMEOUT = 30


class Skip(Exception):
    pass


# --------------------------------------------------------------------------------------
# The whole tree, as precisely as a refusal must leave it


def snapshot(root):
    """path -> (type+mode, uid, gid, size, sha256 or link target, inode, mtime_ns)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root.encode(), followlinks=False):
        for name in [b""] + dirnames + filenames:
            if name == b"" and dirpath != root.encode():
                continue
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root.encode()).decode(errors="backslashreplace")
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path).decode(errors="backslashreplace")
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()[:16]
            else:
                what = ""
            # Files: inode and mtime too, so a rewrite with the same bytes shows. Directories: not
            # their mtime, which a temporary file created and removed again also moves.
            kept = not stat.S_ISDIR(st.st_mode)
            result[rel] = (oct(st.st_mode), st.st_uid, st.st_gid, st.st_size if stat.S_ISREG(st.st_mode) else 0,
                           what, st.st_ino if kept else 0, st.st_mtime_ns if kept else 0)
    return result


def snapshot_diff(a, b):
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            lines.append(f"removed: {k}")
        elif k not in a:
            lines.append(f"created: {k}")
        elif a[k] != b[k]:
            fields = ("mode", "uid", "gid", "size", "content", "inode", "mtime")
            changed = [f"{f} {x}->{y}" for f, x, y in zip(fields, a[k], b[k]) if x != y]
            lines.append(f"changed: {k}: {', '.join(changed)}")
    return lines[:30]


# --------------------------------------------------------------------------------------
# mount(2) without tools


_libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096


def mount(source, target, fstype, flags, data):
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        raise Skip(f"mount {target}: {os.strerror(e)} (needs root with CAP_SYS_ADMIN)")


def umount(target):
    _libc.umount2(target.encode(), 2)  # MNT_DETACH


# --------------------------------------------------------------------------------------
# One row


class Ctx:
    """A node root for one row, and what to undo afterwards."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="cplet-bad-")
        os.chmod(self.root, 0o755)
        copy_example(self.root)
        self.mounts = []
        self.procs = []
        self.plugin_dir = PLUGINS
        self.config = None

    def p(self, *parts):
        return os.path.join(self.root, *parts)

    def m(self, name):
        return self.p(MANIFEST_DIR, name)

    def cplet(self, args, check=True):
        cmd = [CPLET, "--plugin-dir", self.plugin_dir, "--root", self.root] + list(args)
        p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
        if check and p.returncode != 0:
            raise RuntimeError(f"setup command failed ({p.returncode}): {shell_quote(cmd)}\n"
                               f"{p.stderr.decode(errors='replace')}")
        return p

    def history(self):
        """Revisions written by cplet itself: 1 adopted, 2..3 the steps of an upgrade to v1.35.0."""
        self.cplet(UPGRADE)
        # The lock file a real node keeps is part of what a refusal must not touch; a row that
        # wants it absent says so (fresh()).
        shutil.rmtree(self.p("run"), ignore_errors=True)

    def edit(self, name, old, new):
        path = self.m(name)
        with open(path) as f:
            text = f.read()
        assert old in text, f"{old!r} not in {path}"
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))

    def write(self, rel, data, mode=0o600):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(path, mode)

    def own_plugins(self, extra=()):
        """A plugin directory inside the root (so the tree check covers it)."""
        d = self.p("usr", "lib", "cplet", "plugins")
        os.makedirs(d)
        for f in os.listdir(PLUGINS):
            if f.endswith(".so"):
                shutil.copy(os.path.join(PLUGINS, f), d)
        for f in extra:
            shutil.copy(f, d)
        self.plugin_dir = d
        return d

    def hold_lock(self):
        lock = self.p("run", "cplet", "lock")
        os.makedirs(os.path.dirname(lock), mode=0o700)
        code = ("import fcntl,os,sys,time\n"
                "fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT,0o600)\n"
                "fcntl.flock(fd,fcntl.LOCK_EX)\n"
                "os.write(fd,(str(os.getpid())+' cplet upgrade --binary-version v1.35.0\\n').encode())\n"
                "print('held',flush=True)\ntime.sleep(60)\n")
        p = subprocess.Popen([sys.executable, "-c", code, lock], stdout=subprocess.PIPE)
        self.procs.append(p)
        p.stdout.readline()
        return p.pid

    def tmpfs(self, rel, size):
        path = self.p(rel)
        os.makedirs(path, exist_ok=True)
        mount("tmpfs", path, "tmpfs", 0, f"size={size},mode=0700")
        self.mounts.append(path)
        return path

    def read_only(self, rel):
        path = self.p(rel)
        mount(path, path, None, MS_BIND, None)
        self.mounts.append(path)
        mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)

    def cleanup(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for m in reversed(self.mounts):
            umount(m)
        shutil.rmtree(self.root, ignore_errors=True)


class Row:
    def __init__(self, rid, kind, title, setup, args, code, needles):
        self.id, self.kind, self.title = rid, kind, title
        self.setup, self.args, self.code, self.needles = setup, args, code, needles


ROWS = []


def row(rid, kind, title, args, code, needles):
    def deco(fn):
        ROWS.append(Row(rid, kind, title, fn, args, code, needles))
        return fn
    return deco


def nothing(ctx):
    pass


def add_row(rid, kind, title, setup, args, code, needles):
    ROWS.append(Row(rid, kind, title, setup, args, code, needles))


# --------------------------------------------------------------------------------------
# The rows. Keep docs/bad-input.md in step (the last case checks it lists every row).

API = "kube-apiserver.yaml"
# A kubeconfig that loads (the server is never reached: the rows using it are refused first).
KUBECONFIG_TOKEN = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"""
SCHED = "kube-scheduler.yaml"

# ---- manifest files: syntax, structure, size, encoding


@row("manifest-yaml-syntax", "manifest file", "a manifest that is not valid YAML", UPGRADE, 2,
     [API + ":"])
def _(ctx):
    ctx.edit(API, "  containers:\n", "  containers:\n   - : [\n")


@row("manifest-json-syntax", "manifest file", "a JSON manifest with a syntax error", UPGRADE, 2, ["etcd.yaml"])
def _(ctx):
    ctx.write(os.path.join(MANIFEST_DIR, "etcd.yaml"), '{"apiVersion": "v1", "kind": "Pod",', 0o644)


@row("manifest-not-mapping", "manifest file", "a manifest whose document is a list, not a mapping", UPGRADE, 2,
     ["etcd.yaml"])
def _(ctx):
    ctx.write(os.path.join(MANIFEST_DIR, "etcd.yaml"), "- apiVersion: v1\n- kind: Pod\n", 0o644)


@row("manifest-empty", "manifest file", "an empty manifest file", UPGRADE, 2, ["etcd.yaml"])
def _(ctx):
    ctx.write(os.path.join(MANIFEST_DIR, "etcd.yaml"), "", 0o644)


@row("manifest-two-documents", "manifest file", "a manifest with two YAML documents", UPGRADE, 2, [API])
def _(ctx):
    with open(ctx.m(API), "a") as f:
        f.write("---\napiVersion: v1\nkind: Pod\n")


@row("manifest-alias", "manifest file", "YAML anchors and aliases in a manifest", UPGRADE, 2, [API])
def _(ctx):
    ctx.edit(API, "kind: Pod\n", "kind: Pod\nx-anchor: &a {k: v}\nx-alias: *a\n")


@row("manifest-duplicate-key", "manifest file", "a duplicate mapping key in a manifest", UPGRADE, 2,
     [API, "duplicate key"])
def _(ctx):
    ctx.edit(API, "kind: Pod\n", "kind: Pod\nkind: Pod\n")


@row("manifest-too-deep", "manifest file", "nesting deeper than 64 levels", UPGRADE, 2, ["etcd.yaml"])
def _(ctx):
    ctx.write(os.path.join(MANIFEST_DIR, "etcd.yaml"), "a: " + "[" * 100 + "]" * 100 + "\n", 0o644)


@row("manifest-too-large", "size", "a manifest larger than 1 MiB", UPGRADE, 2, [API])
def _(ctx):
    with open(ctx.m(API), "a") as f:
        f.write("# padding\n" * 110000)


@row("manifest-not-utf8", "encoding", "a manifest whose content is not valid UTF-8", UPGRADE, 2, [API])
def _(ctx):
    with open(ctx.m(API), "rb") as f:
        data = f.read()
    with open(ctx.m(API), "wb") as f:
        f.write(data.replace(b"kind: Pod", b"kind: P\xff\xfeod", 1))


@row("manifest-utf16", "encoding", "a manifest in UTF-16 with a byte-order mark", UPGRADE, 2, [API])
def _(ctx):
    with open(ctx.m(API), "rb") as f:
        data = f.read()
    with open(ctx.m(API), "wb") as f:
        f.write(data.decode().replace("kind: Pod", "kind: Pod\nx: \ud800", 1).encode("utf-16", "surrogatepass"))


@row("manifest-name-not-utf8", "encoding", "a manifest file name that is not valid UTF-8", UPGRADE, 2,
     ["kube-scheduler-"])
def _(ctx):
    os.rename(ctx.m(SCHED).encode(), ctx.m("kube-scheduler-").encode() + b"\xff.yaml")


@row("manifest-backup-copy", "manifest file", "a backup copy (kube-apiserver.yaml.bak) runs a second API server",
     UPGRADE, 2, [API])
def _(ctx):
    shutil.copy2(ctx.m(API), ctx.m(API + ".bak"))


@row("manifest-containers-empty", "manifest content", "a component's manifest with spec.containers: []",
     UPGRADE, 2, [API])
def _(ctx):
    with open(ctx.m(API)) as f:
        lines = f.read().split("\n")
    i = lines.index("  containers:")
    j = next(k for k in range(i + 1, len(lines)) if lines[k] and not lines[k].startswith(("  -", "    ")))
    lines[i:j] = ["  containers: []"]
    with open(ctx.m(API), "w") as f:
        f.write("\n".join(lines))


@row("manifest-kind-deployment", "manifest content", "a component's manifest of kind: Deployment", UPGRADE, 2,
     [SCHED])
def _(ctx):
    ctx.edit(SCHED, "kind: Pod", "kind: Deployment")


@row("manifest-shell-script", "manifest content", "a component run by a shell script (/bin/sh -c)", PLAN, 2,
     [API, "shell script"])
def _(ctx):
    ctx.edit(API, "  - command:\n    - kube-apiserver\n",
             "  - command:\n    - /bin/sh\n    - -c\n    - exec kube-apiserver \"$@\"\n    - kube-apiserver\n")


@row("manifest-digest-only", "manifest content", "an image pinned by digest only (binary version unknown)", PLAN,
     2, ["kube-apiserver"])
def _(ctx):
    ctx.edit(API, "kube-apiserver:v1.34.2", "kube-apiserver@sha256:" + "a" * 64)


@row("manifest-flag-out-of-range", "manifest content", "a live flag the binary refuses (--emulated-version=1.20)",
     PLAN, 2, ["1.20"])
def _(ctx):
    ctx.edit(API, "    - kube-apiserver\n", "    - kube-apiserver\n    - --emulated-version=1.20\n")


@row("manifest-image-not-a-version", "manifest content", "an image tag that is not a Kubernetes version", PLAN, 2,
     ["latest"])
def _(ctx):
    ctx.edit(API, "kube-apiserver:v1.34.2", "kube-apiserver:latest")


# ---- special files and symbolic links


@row("manifest-symlink", "symlink", "a live manifest that is a symbolic link", UPGRADE, 2, [SCHED])
def _(ctx):
    target = ctx.p("srv-kube-scheduler.yaml")
    os.rename(ctx.m(SCHED), target)
    os.symlink(target, ctx.m(SCHED))


@row("manifest-dir-symlink", "symlink", "the manifest directory is a symbolic link", UPGRADE, 2,
     ["manifests"])
def _(ctx):
    real = ctx.p("etc", "kubernetes", "manifests.real")
    os.rename(ctx.p(MANIFEST_DIR), real)
    os.symlink("manifests.real", ctx.p(MANIFEST_DIR))


@row("state-dir-symlink", "symlink", "var/lib/cplet is a symbolic link", WRITE, 2, ["var/lib/cplet"])
def _(ctx):
    ctx.history()
    os.rename(ctx.p(STATE), ctx.p("var", "lib", "cplet.real"))
    os.symlink("cplet.real", ctx.p(STATE))


@row("revisions-dir-symlink", "symlink", "the revisions directory is a symbolic link", WRITE, 2,
     ["revisions"])
def _(ctx):
    ctx.history()
    os.rename(ctx.p(REVS), ctx.p(STATE, "revisions.real"))
    os.symlink("revisions.real", ctx.p(REVS))


@row("manifest-fifo", "special file", "a FIFO in the manifest directory", UPGRADE, 2, ["extra.yaml"])
def _(ctx):
    os.mkfifo(ctx.m("extra.yaml"), 0o600)


# ---- permissions and ownership


@row("manifest-dir-world-writable", "permissions", "a world-writable manifest directory", UPGRADE, 2,
     ["manifests"])
def _(ctx):
    os.chmod(ctx.p(MANIFEST_DIR), 0o777)


@row("manifest-dir-group-writable", "permissions", "a group-writable manifest directory", UPGRADE, 2,
     ["manifests"])
def _(ctx):
    os.chmod(ctx.p(MANIFEST_DIR), 0o775)


@row("manifest-dir-foreign-owner", "permissions", "a manifest directory owned by another user", UPGRADE, 2,
     ["manifests"])
def _(ctx):
    try:
        os.chown(ctx.p(MANIFEST_DIR), 1000, 1000)
    except PermissionError as e:
        raise Skip(f"chown: {e.strerror} (needs root)")


@row("state-dir-world-writable", "permissions", "a world-writable var/lib/cplet", WRITE, 2, ["var/lib/cplet"])
def _(ctx):
    ctx.history()
    os.chmod(ctx.p(STATE), 0o777)


@row("revisions-dir-world-writable", "permissions", "a world-writable revisions/<component> directory", WRITE,
     2, ["kube-scheduler"])
def _(ctx):
    ctx.history()
    os.chmod(ctx.p(REVS, "kube-scheduler"), 0o777)


# ---- full and read-only filesystems


@row("state-enospc", "ENOSPC", "no space left on the filesystem of var/lib/cplet", WRITE, 1,
     ["No space left on device"])
def _(ctx):
    ctx.history()
    ctx.cplet(["history"])  # the node is readable before
    saved = ctx.p("saved-state")
    shutil.copytree(ctx.p(STATE), saved, symlinks=True)
    shutil.rmtree(ctx.p(STATE))
    ctx.tmpfs(STATE, "1m")
    shutil.copytree(saved, ctx.p(STATE), dirs_exist_ok=True, symlinks=True)
    shutil.rmtree(saved)
    fd = os.open(ctx.p(STATE, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    ctx.edit(SCHED, "    - kube-scheduler\n", "    - kube-scheduler\n    - --v=2\n")  # an external edit to record


@row("state-read-only", "read-only filesystem", "var/lib/cplet on a read-only filesystem", WRITE, 1,
     ["Read-only file system"])
def _(ctx):
    ctx.history()
    ctx.edit(SCHED, "    - kube-scheduler\n", "    - kube-scheduler\n    - --v=2\n")
    ctx.read_only(STATE)


@row("manifest-dir-read-only", "read-only filesystem", "the manifest directory on a read-only filesystem", WRITE,
     1, ["Read-only file system"])
def _(ctx):
    ctx.history()
    ctx.read_only(MANIFEST_DIR)


# ---- concurrency


@row("lock-held", "lock", "another cplet holds the lock", WRITE, 2, ["another cplet", "pid"])
def _(ctx):
    ctx.history()
    ctx.hold_lock()


# ---- command-line options

add_row("option-unknown", "option", "an unknown option", nothing, ["status", "--frobnicate"], 2, ["--frobnicate"])
add_row("option-missing-value", "option", "an option without its value", nothing, ["plan", "--binary-version"], 2,
        ["--binary-version"])
add_row("option-misplaced", "option", "an option the command does not take", nothing,
        ["history", "--to-revision", "1"], 2, ["--to-revision"])
add_row("command-unknown", "option", "an unknown command", nothing, ["upgrayedd"], 2, ["upgrayedd"])
add_row("command-extra-argument", "option", "an unexpected positional argument", nothing, ["status", "extra"], 2,
        ["extra"])
add_row("root-missing", "option", "--root naming a directory that does not exist", nothing,
        lambda ctx: ["--root", ctx.p("nonexistent"), "status"], 2, ["nonexistent"])
add_row("plugin-dir-missing", "option", "--plugin-dir naming a directory that does not exist", nothing,
        lambda ctx: ["--plugin-dir", ctx.p("no-plugins"), "status"], 2, ["no-plugins"])
add_row("plugin-dir-twice-missing", "option", "--plugin-dir given twice, the second missing", nothing,
        lambda ctx: ["--plugin-dir", PLUGINS, "--plugin-dir", ctx.p("no-plugins"), "status"], 2, ["no-plugins"])
add_row("duration-invalid", "option", "a duration that is not one (--stable-for 5 minutes)", nothing,
        UPGRADE + ["--stable-for", "5minutes"], 2, ["5minutes"])
add_row("duration-too-long", "option", "a duration beyond a week (--step-timeout 9999h)", nothing,
        UPGRADE + ["--step-timeout", "9999h"], 2, ["9999h"])
add_row("on-failure-invalid", "option", "--on-failure with an unknown policy", nothing,
        UPGRADE + ["--on-failure", "pray"], 2, ["pray"])
add_row("stable-for-not-shorter", "option", "--stable-for not shorter than --step-timeout", nothing,
        UPGRADE + ["--stable-for", "5m", "--step-timeout", "5m"], 2, ["--stable-for"])
add_row("no-wait-with-dry-run", "option", "--no-wait and --dry-run together", nothing,
        UPGRADE + ["--dry-run"], 2, ["--no-wait", "--dry-run"])
add_row("upgrade-without-target", "option", "upgrade without --binary-version", nothing,
        ["upgrade", "--no-wait"], 2, ["--binary-version"])

# ---- versions

add_row("version-garbage", "version", "a binary version that is not one", nothing,
        ["plan", "--binary-version", "latest"], 2, ["latest"])
add_row("version-leading-zero", "version", "a version with a leading zero (v1.035.0)", nothing,
        ["plan", "--binary-version", "v1.035.0"], 2, ["v1.035.0"])
add_row("version-overflow", "version", "a version number too large for 32 bits", nothing,
        ["plan", "--binary-version", "v1.99999999999.0"], 2, ["v1.99999999999.0"])
add_row("version-suffix-invalid", "version", "a version suffix with invalid characters (v1.35.0-rc/1)", nothing,
        ["plan", "--binary-version", "v1.35.0-rc/1"], 2, ["rc/1"])
add_row("emulated-with-patch", "version", "--emulated-version with a patch number", nothing,
        PLAN + ["--emulated-version", "1.35.1"], 2, ["patch version not allowed", "1.35.1"])
add_row("emulated-kube-twice", "version", "--emulated-version naming kube twice", nothing,
        PLAN + ["--emulated-version", "kube=1.34,kube=1.35"], 2, ["kube is given twice"])
add_row("emulated-out-of-range", "version", "an emulated version the binary does not accept", nothing,
        PLAN + ["--emulated-version", "1.31"], 2, ["1.31"])
add_row("min-compat-above-emulated", "version", "a min-compatibility version above the emulated version",
        nothing, PLAN + ["--emulated-version", "1.34", "--min-compatibility-version", "1.35"], 2, ["1.35"])
add_row("major-version-2", "version", "a Kubernetes 2.x binary version", nothing,
        ["plan", "--binary-version", "v2.0.0"], 2, ["2.0"])
add_row("image-repository-hostile", "version", "an image repository with white space and a tag", nothing,
        PLAN + ["--image-repository", "evil.io/x y:latest"], 2, ["evil.io/x y:latest"])

# ---- a target's components (--components, issue 8)

add_row("components-unknown", "components", "--components naming a component the node does not run", nothing,
        PLAN + ["--components", "kube-proxy"], 2, ["\"kube-proxy\"", "kube-scheduler"])
add_row("components-empty-item", "components", "--components with an empty item", nothing,
        UPGRADE + ["--components", "kube-apiserver,"], 2, ["--components", "kube-apiserver,"])
add_row("components-twice", "components", "--components naming a component twice", nothing,
        UPGRADE + ["--components", "kube-apiserver", "--components", "kube-apiserver"], 2,
        ["kube-apiserver named twice"])
add_row("components-frozen-must-move", "components", "--components leaving out a component that must move first",
        nothing, UPGRADE + ["--emulated-version", "1.34", "--components", "kube-controller-manager"], 2,
        ["kube-apiserver would have to move first", "upgrade kube-apiserver's binary to v1.35.0 first"])
add_row("components-image-frozen", "components", "--image for a component --components leaves as it is", nothing,
        UPGRADE + ["--components", "kube-apiserver", "--image",
                   "kube-scheduler=registry.k8s.io/kube-scheduler:v1.35.0@sha256:" + "0" * 64], 2,
        ["kube-scheduler is not among the components to move"])
add_row("components-on-rollback", "components", "--components with rollback (always every component)", nothing,
        ["rollback", "--emulated-version", "1.33", "--components", "kube-apiserver"], 2, ["--components"])

# ---- the preflight (issue 11): flags the new binaries refuse, --drop-removed

# AllowServiceLBStatusOnNonLB: locked to false in 1.32..1.34, gone from the 1.35 binaries
# (data/releases/feature-gates.yaml).
def removed_gate(ctx):
    ctx.edit(API, "    - --secure-port=6443\n",
             "    - --secure-port=6443\n    - --feature-gates=AllowServiceLBStatusOnNonLB=false\n")


add_row("preflight-removed-gate", "preflight", "a feature gate the target's binaries no longer know", removed_gate,
        UPGRADE, 2, ["kube-apiserver.yaml: drop feature gate AllowServiceLBStatusOnNonLB from --feature-gates "
                     "(removed in 1.35)", "--drop-removed AllowServiceLBStatusOnNonLB"])
add_row("drop-removed-unknown", "preflight", "--drop-removed naming something nothing refuses", removed_gate,
        UPGRADE + ["--drop-removed", "AllowServiceLBStatusOnNonLB,NoSuchGate"], 2,
        ["--drop-removed NoSuchGate", "AllowServiceLBStatusOnNonLB"])
add_row("drop-removed-nothing-refused", "preflight", "--drop-removed where the plan refuses nothing", nothing,
        PLAN + ["--drop-removed", "secure-port"], 2, ["--drop-removed secure-port", "refuse nothing"])
add_row("drop-removed-empty-item", "preflight", "--drop-removed with an empty item", nothing,
        UPGRADE + ["--drop-removed", "cloud-provider,,cloud-config"], 2, ["--drop-removed", "cloud-provider,,cloud-config"])

# ---- hostile flag values (cplet flags set)

add_row("flags-newline", "flag value", "a flag value with a newline", nothing,
        ["flags", "set", "kube-scheduler", "--v=3\n--profiling=true", "--no-wait"], 2, ["--v"])
add_row("flags-compat-flag", "flag value", "a compatibility flag through flags set", nothing,
        ["flags", "set", "kube-scheduler", "--emulated-version=1.33", "--no-wait"], 2, ["emulated-version"])
add_row("flags-compat-underscore", "flag value", "a compatibility flag spelt with _ (pflag reads it as -)",
        nothing, ["flags", "set", "kube-scheduler", "--emulated_version=1.33", "--no-wait"], 2,
        ["--emulated-version"])
add_row("flags-not-a-flag", "flag value", "a flag set argument that is not --NAME=VALUE", nothing,
        ["flags", "set", "kube-scheduler", "v=3", "--no-wait"], 2, ["v=3"])
add_row("flags-no-value", "flag value", "flags set C --v with no value", nothing,
        ["flags", "set", "kube-scheduler", "--v", "--no-wait"], 2, ["--v"])
add_row("flags-unknown-component", "flag value", "flags set on a component that is not on the node", nothing,
        ["flags", "set", "kube-nope", "--v=3", "--no-wait"], 2, ["kube-nope"])
add_row("flags-unknown-action", "flag value", "flags with an action other than set/unset", nothing,
        ["flags", "toggle", "kube-scheduler", "--v=3"], 2, ["toggle"])
add_row("to-revision-invalid", "option", "--to-revision that is not a number", nothing,
        ["rollback", "--component", "kube-scheduler", "--to-revision", "1x", "--no-wait"], 2, ["1x"])


# ---- corrupt revisions (var/lib/cplet/revisions/<component>/<N>.json and .yaml)


def corrupt_meta(number, data):
    def setup(ctx):
        ctx.history()
        ctx.write(os.path.join(REVS, "kube-scheduler", f"{number}.json"), data)
    return setup


add_row("revision-meta-not-json", "corrupt revision", "a revision's metadata that is not JSON",
        corrupt_meta(2, "{\"revision\": 2,"), WRITE, 2, ["kube-scheduler/2.json"])
add_row("revision-meta-history", "corrupt revision", "history with a revision's metadata that is not JSON",
        corrupt_meta(2, "{\"revision\": 2,"), ["history"], 2, ["kube-scheduler/2.json"])
add_row("revision-meta-missing-fields", "corrupt revision", "a revision's metadata without sha256",
        corrupt_meta(2, '{"revision": 2, "component": "kube-scheduler", "reason": "x"}'),
        ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait"], 2,
        ["kube-scheduler/2.json"])
add_row("revision-meta-wrong-number", "corrupt revision", "a revision's metadata that says it is another revision",
        corrupt_meta(2, json.dumps({"revision": 7, "component": "kube-scheduler", "reason": "x", "parent": 1,
                                    "sha256": "0" * 64})), ["history"], 2, ["kube-scheduler/2.json", "7"])
add_row("revision-meta-too-large", "size", "a revision's metadata larger than 64 KiB",
        corrupt_meta(2, '{"revision": 2, "pad": "' + "x" * 70000 + '"}'), ["history"], 2,
        ["kube-scheduler/2.json", "larger than"])


@row("revision-yaml-missing", "corrupt revision", "rollback to a revision whose manifest was deleted",
     ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait"], 2, ["1.yaml"])
def _(ctx):
    ctx.history()
    os.unlink(ctx.p(REVS, "kube-scheduler", "1.yaml"))


@row("rollback-revision-missing", "corrupt revision", "rollback to a revision that does not exist",
     ["rollback", "--component", "kube-scheduler", "--to-revision", "99", "--no-wait"], 2, ["99"])
def _(ctx):
    ctx.history()


# ---- the journal and the min-compatibility high-water mark


@row("journal-corrupt-write", "corrupt state", "flags set while rollout.json is corrupt", WRITE, 2,
     ["rollout.json"])
def _(ctx):
    ctx.history()
    ctx.write(os.path.join(STATE, "rollout.json"), '{"phase": "running", "steps": [')


@row("journal-corrupt-resume", "corrupt state", "resume while rollout.json is corrupt", ["resume"], 2,
     ["rollout.json"])
def _(ctx):
    ctx.history()
    ctx.write(os.path.join(STATE, "rollout.json"), '{"phase": "running", "steps": [')


@row("journal-too-large", "size", "a rollout.json larger than 4 MiB", ["resume"], 2, ["rollout.json", "larger than 4 MiB"])
def _(ctx):
    ctx.history()
    ctx.write(os.path.join(STATE, "rollout.json"), '{"pad": "' + "x" * (5 * 1024 * 1024) + '"}')


@row("high-water-corrupt", "corrupt state", "a corrupt min-compatibility.json", 
     ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait"], 2,
     ["min-compatibility.json"])
def _(ctx):
    ctx.history()
    ctx.write(os.path.join(STATE, "min-compatibility.json"), "{\"minCompatibilityVersion\": 1.35")


# ---- configuration (etc/cplet/config.yaml, --config)


def config(text):
    def setup(ctx):
        ctx.write(os.path.join("etc", "cplet", "config.yaml"), text, 0o644)
    return setup


add_row("config-unknown-field", "corrupt config", "an unknown field in the configuration",
        config("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\nrevisionToKeep: 5\n"), ["status"], 2,
        ["config.yaml", "revisionToKeep"])
add_row("config-wrong-kind", "corrupt config", "a configuration of another kind",
        config("apiVersion: cplet.io/v1alpha1\nkind: KubeletConfiguration\n"), ["status"], 2,
        ["config.yaml", "kind"])
add_row("config-keep-out-of-range", "corrupt config", "revisionsToKeep out of range (1)",
        config("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\nrevisionsToKeep: 1\n"), UPGRADE, 2,
        ["config.yaml", "revisionsToKeep"])
add_row("config-plugin-dir-relative", "corrupt config", "a relative pluginDir",
        config("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\npluginDir: plugins\n"), ["status"], 2,
        ["config.yaml", "pluginDir"])
add_row("config-not-yaml", "corrupt config", "a configuration that is not YAML",
        config("kind: CpletConfiguration\n  pluginDir: [\n"), ["status"], 2, ["config.yaml"])
add_row("config-image-repositories-not-list", "corrupt config", "imageRepositories that is not a list",
        config("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\nimageRepositories: registry.k8s.io\n"),
        ["status"], 2, ["config.yaml", "imageRepositories"])
add_row("config-image-repository-url", "corrupt config", "an imageRepositories entry with a scheme",
        config("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\n"
               "imageRepositories: [\"https://evil.example.com\"]\n"),
        ["status"], 2, ["config.yaml", "imageRepositories[0]"])
add_row("config-kubeconfig-relative", "corrupt config", "a relative kubeconfig path",
        config("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\nkubeconfig: kubelet.conf\n"),
        ["status"], 2, ["config.yaml", "kubeconfig"])
add_row("daemon-kubeconfig-missing", "daemon", "cplet daemon with a kubeconfig that does not exist", nothing,
        lambda ctx: ["daemon", "--kubeconfig", ctx.p("etc", "kubernetes", "missing.conf")], 2, ["missing.conf"])
add_row("daemon-kubeconfig-not-yaml", "daemon", "cplet daemon with a kubeconfig that is not YAML",
        lambda ctx: ctx.write(os.path.join("etc", "kubernetes", "kubelet.conf"), "clusters: [\n", 0o600),
        ["daemon"], 2, ["kubelet.conf"])
add_row("daemon-node-name-invalid", "daemon", "cplet daemon --node-name that is not a Node name",
        lambda ctx: ctx.write(os.path.join("etc", "kubernetes", "kubelet.conf"), KUBECONFIG_TOKEN, 0o600),
        ["daemon", "--node-name", "../n1"], 2, ["--node-name", "../n1"])
add_row("config-explicit-missing", "corrupt config", "--config naming a file that does not exist", nothing,
        lambda ctx: ["--config", ctx.p("etc", "cplet", "missing.yaml"), "status"], 2, ["missing.yaml"])

# ---- plugins


@row("plugin-dir-world-writable", "plugin", "a world-writable plugin directory", ["status"], 2, ["plugins"])
def _(ctx):
    os.chmod(ctx.own_plugins(), 0o777)


@row("plugin-module-world-writable", "plugin", "a world-writable plugin module", ["status"], 2,
     ["kube-scheduler.so"])
def _(ctx):
    os.chmod(os.path.join(ctx.own_plugins(), "kube-scheduler.so"), 0o666)


@row("plugin-not-elf", "plugin", "a plugin module that is not a shared object", ["status"], 2, ["broken.so"])
def _(ctx):
    d = ctx.own_plugins()
    with open(os.path.join(d, "broken.so"), "w") as f:
        f.write("not an ELF file\n")


@row("plugin-abi-major", "plugin", "a plugin built for another ABI major version", ["status"], 2,
     ["abi-major-99.so", "ABI"])
def _(ctx):
    ctx.own_plugins([os.path.join(TEST_PLUGINS, "abi-major-99.so")])


@row("plugin-no-entry", "plugin", "a plugin module without the entry symbol", ["status"], 2,
     ["no-entry-symbol.so"])
def _(ctx):
    ctx.own_plugins([os.path.join(TEST_PLUGINS, "no-entry-symbol.so")])


@row("plugin-duplicate-component", "plugin", "two plugins claiming the same component", ["status"], 2,
     ["kube-scheduler"])
def _(ctx):
    ctx.own_plugins([os.path.join(TEST_PLUGINS, "duplicate-scheduler.so")])


@row("plugin-dir-empty", "plugin", "a plugin directory with no plugins", ["status"], 2, ["no plugins"])
def _(ctx):
    d = ctx.own_plugins()
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))


@row("plugin-symlink", "plugin", "a plugin module that is a symbolic link", ["status"], 2, ["kube-scheduler.so"])
def _(ctx):
    d = ctx.own_plugins()
    os.rename(os.path.join(d, "kube-scheduler.so"), os.path.join(d, "real-scheduler.module"))
    os.symlink("real-scheduler.module", os.path.join(d, "kube-scheduler.so"))


# --------------------------------------------------------------------------------------
# Running the table

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "bad-input.md")


def run_row(r):
    """Returns (failures, skip reason, (rc, stderr, command))."""
    failures = []
    ctx = Ctx()
    try:
        r.setup(ctx)
        args = r.args(ctx) if callable(r.args) else r.args
        plugins = [] if "--plugin-dir" in args else ["--plugin-dir", ctx.plugin_dir]
        cmd = [CPLET] + plugins + ["--root", ctx.root] + list(args)
        before = snapshot(ctx.root)
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
            rc, err = p.returncode, p.stderr.decode(errors="backslashreplace")
        except subprocess.TimeoutExpired:
            rc, err = None, ""
            failures.append(f"timed out after {TIMEOUT}s")
        after = snapshot(ctx.root)
        if rc is not None and rc != r.code:
            failures.append(f"exit code: expected {r.code}, got {rc}")
        if rc is not None and rc < 0:
            failures.append(f"killed by signal {-rc}")
        if not err.strip():
            failures.append("stderr is empty: no reason given")
        for n in r.needles:
            if n not in err:
                failures.append(f"stderr does not name {n!r}")
        if before != after:
            failures.append("the tree under the root changed:\n" + "\n".join(snapshot_diff(before, after)))
        if failures:
            failures.append(f"command: {shell_quote(args)}")
            failures.append(f"stderr: {err.strip()}")
        return failures, None, (rc, err, args)
    except Skip as e:
        return [], str(e), (None, "", [])
    finally:
        ctx.cleanup()


def doc_case():
    try:
        with open(DOC) as f:
            text = f.read()
    except OSError as e:
        return [f"{DOC}: {e}"]
    return [f"docs/bad-input.md has no row `{r.id}`" for r in ROWS if f"`{r.id}`" not in text]


def markdown():
    print("| # | class | bad input | command | exit | message | test case |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(ROWS, 1):
        failures, skip, (rc, err, args) = run_row(r)
        # The message, not the warnings that may come before it (a plan's preflight warnings).
        lines = [x for x in err.strip().splitlines() if not x.startswith("warning: ")]
        line = lines[0] if lines else ""
        # A list's heading ("plan refused: ... (1 finding):") says little without its first item.
        if line.endswith(":") and len(lines) > 1:
            line += " " + lines[1].strip()
        line = line.replace("|", "\\|").replace(os.sep.join(["", "tmp", ""]), "/tmp/")
        shown = " ".join(a if a.isprintable() else repr(a) for a in ["cplet"] + [str(a) for a in args])
        print(f"| {i} | {r.kind} | {r.title} | `{shown}` | {r.code} | {line} | `{r.id}` |")


def main():
    if "--markdown" in sys.argv:
        markdown()
        return 0
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR", "CPLET_TEST_PLUGIN_DIR")
               if not os.environ.get(v)]
    print(f"1..{len(ROWS) + 1}", flush=True)
    failed = 0
    for i, r in enumerate(ROWS, 1):
        name = f"{r.id}: {r.title}"
        if missing:
            failures, skip = [f"environment variable(s) not set: {', '.join(missing)}"], None
        else:
            try:
                failures, skip, _ = run_row(r)
            except Exception:
                failures, skip = ["exception:\n" + traceback.format_exc()], None
        if skip:
            print(f"ok {i} - {name} # SKIP {skip}")
        elif failures:
            failed += 1
            print(f"not ok {i} - {name}")
            for f in failures:
                for line in str(f).splitlines():
                    print(f"# {line}")
        else:
            print(f"ok {i} - {name}")
        sys.stdout.flush()
    failures = doc_case()
    n = len(ROWS) + 1
    if failures:
        failed += 1
        print(f"not ok {n} - docs/bad-input.md lists every row")
        for f in failures:
            print(f"# {f}")
    else:
        print(f"ok {n} - docs/bad-input.md lists every row")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
