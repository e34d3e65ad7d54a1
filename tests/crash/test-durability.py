#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Durability of cplet's writes, observed from outside through the durable-operation shim
(tests/crash/durable-shim.c), printing TAP:

  * the recorded order of every atomic write: file fsync -> rename -> directory fsync, and
    every new directory followed by an fsync of its parent;
  * an injected failure of a durability step (directory fsync) fails the write;
  * a write that fails (read-only manifest dir, full state dir) leaves no revision that never
    went live, and adopts every component or none.

Each case works on a copy of examples/node (no processes are needed: the failures happen
before any gate would wait).

Environment (set by tests/meson.build): CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR,
CPLET_EXAMPLES_DIR, CPLET_FIXTURES_DIR, CPLET_DURABLE_SHIM.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cli"))

import shim  # noqa: E402
from cli_common import (  # noqa: E402
    CPLET, COMPONENTS, EXAMPLES, MANIFEST_DIR, PLUGINS, TIMEOUT, BaseCase, run_tap, shell_quote,
)
from cli_common import copy_example  # noqa: E402

REVISIONS = os.path.join("var", "lib", "cplet", "revisions")
NEW = "v1.35.0"


class Case(BaseCase):
    def __init__(self, name):
        super().__init__(name)
        self.logs = []

    def new_root(self):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-dur-"))
        self.roots.append(root)
        os.chmod(root, 0o755)
        copy_example(root)
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o700 if dirpath != root else 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o600)
        return root

    def cleanup(self):
        for r in self.roots:
            shutil.rmtree(r, ignore_errors=True)
        for p in self.logs:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def cplet(self, root, args, **shim_args):
        """Runs cplet under the shim: (rc, stdout, stderr, [Op])."""
        log = shim.new_log()
        self.logs.append(log)
        cmd = [CPLET, "--root", root, "--plugin-dir", PLUGINS] + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                           env=shim.env(root, log=log, **shim_args))
        return p.returncode, p.stdout, p.stderr, shim.read_log(log)

    def plain(self, root, args):
        p = subprocess.run([CPLET, "--root", root, "--plugin-dir", PLUGINS] + list(args), capture_output=True,
                           text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr


def live(root):
    out = {}
    for c in COMPONENTS:
        with open(os.path.join(root, MANIFEST_DIR, c + ".yaml"), "rb") as f:
            out[c] = f.read()
    return out


def revision_files(root, component):
    d = os.path.join(root, REVISIONS, component)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def stored(root, component):
    """{number: bytes} of the revisions that exist (their .json is there)."""
    d = os.path.join(root, REVISIONS, component)
    out = {}
    for f in revision_files(root, component):
        m = re.fullmatch(r"([1-9][0-9]*)\.json", f)
        if m:
            with open(os.path.join(d, m.group(1) + ".yaml"), "rb") as y:
                out[int(m.group(1))] = y.read()
    return out


def check_store_clean(t, root, before_live, what, expect_revisions):
    """Live manifests unchanged, no temporary anywhere, and the store holds exactly
    expect_revisions[c] for each component, every one of them byte-equal to the live manifest
    (nothing that never went live); history agrees."""
    now = live(root)
    for c in COMPONENTS:
        t.check(now[c] == before_live[c], "%s: the live manifest of %s changed" % (what, c))
    mdir = os.path.join(root, MANIFEST_DIR)
    t.eq(sorted(os.listdir(mdir)), sorted(os.listdir(os.path.join(EXAMPLES, "node", MANIFEST_DIR))),
         "%s: files in the manifest dir" % what)
    for c in COMPONENTS:
        revs = stored(root, c)
        t.eq(sorted(revs), expect_revisions[c], "%s: stored revisions of %s" % (what, c))
        for n, data in revs.items():
            t.check(data == before_live[c], "%s: %s revision %d never went live" % (what, c, n))
        t.eq([f for f in revision_files(root, c) if not re.fullmatch(r"[1-9][0-9]*\.json", f)
              and not re.fullmatch(r"[1-9][0-9]*\.yaml", f)], [], "%s: stray files among %s's revisions" % (what, c))
        t.eq(sorted(f[:-5] for f in revision_files(root, c) if f.endswith(".yaml")),
             sorted(str(n) for n in revs), "%s: %s revision .yaml files without metadata" % (what, c))
    rc, out, err = t.plain(root, ["history", "--json"])
    if t.eq(rc, 0, "%s: history --json (stderr %r)" % (what, err)):
        doc = json.loads(out)
        got = {c.get("name"): sorted(r.get("revision") for r in c.get("revisions", [])) for c in doc.get("components", [])}
        for c in COMPONENTS:
            t.eq(got.get(c, []), expect_revisions[c], "%s: history of %s" % (what, c))


# --------------------------------------------------------------------------------------


def test_atomic_write_order(t):
    """Issue 12: the directory fsync after a rename must be observable."""
    root = t.new_root()
    for args in (["flags", "set", "kube-scheduler", "--v=4", "--no-wait"],
                 ["upgrade", "--binary-version", NEW, "--no-wait"],
                 ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait", "--force"]):
        rc, out, err, ops = t.cplet(root, args)
        what = "cplet " + shell_quote(args)
        if not t.eq(rc, 0, "%s: exit code (stderr %r)" % (what, err)):
            continue
        renames = [o for o in ops if o.op == "rename"]
        t.check(any(o.path2 and o.path2.startswith(MANIFEST_DIR + "/") for o in renames),
                "%s: no rename into the manifest dir was recorded: %r" % (what, ops))
        t.check(any(o.path2 and o.path2.startswith(REVISIONS + "/") for o in renames),
                "%s: no rename into the revisions dir was recorded: %r" % (what, ops))
        bad = [b for b in shim.atomic_write_violations(ops) if "new directory" not in b]
        for b in bad[:10]:
            t.failures.append("%s: %s" % (what, b))


def test_new_directories_synced(t):
    """Issue 7 defect 15: mkdirat is followed by an fsync of the parent; that fsync failing
    fails the command and records nothing."""
    root = t.new_root()
    before = live(root)
    args = ["flags", "set", "kube-scheduler", "--v=4", "--no-wait"]
    probe = t.new_root()
    rc, out, err, ops = t.cplet(probe, args)
    t.eq(rc, 0, "recording run: exit code (stderr %r)" % err)
    mkdirs = [i for i, o in enumerate(ops) if o.op == "mkdir" and o.ok]
    t.check(any(ops[i].path == os.path.join(REVISIONS, "kube-scheduler") for i in mkdirs),
            "the revisions dir of kube-scheduler was not created: %r" % ops)
    bad = [b for b in shim.atomic_write_violations(ops) if "new directory" in b]
    for b in bad[:10]:
        t.failures.append(b)
    # fail the fsync that makes the component's revision directory durable
    target = [ops[i + 1].n for i in mkdirs if ops[i].path == os.path.join(REVISIONS, "kube-scheduler")
              and i + 1 < len(ops) and ops[i + 1].op == "fsync"]
    if not t.check(target, "no fsync after creating %s/kube-scheduler" % REVISIONS):
        return
    rc, out, err, ops = t.cplet(root, args, fail_at=target[0], errno="EIO")
    t.check([o for o in ops if o.result.startswith("inject")], "the injected failure did not happen: %r" % ops)
    t.eq(rc, 1, "exit code when the new directory cannot be made durable (stderr %r)" % err)
    t.contains(err, "Input/output error", "stderr")
    check_store_clean(t, root, before, "after the failed directory fsync", {c: [] for c in COMPONENTS})


def first_op(t, root, args, pred, what):
    """The number of the first recorded operation matching pred in a run of args on root."""
    rc, out, err, ops = t.cplet(root, args)
    t.eq(rc, 0, "recording run of %s: exit code (stderr %r)" % (what, err))
    found = [o.n for o in ops if pred(o)]
    t.check(found, "recording run: no %s among %r" % (what, ops))
    return found[0] if found else None


def test_dir_fsync_failure_fails_write(t):
    """Issue 7 defect 15: a failed fsync of the manifest directory after the swap is a failed
    write (exit 1, said), not a success; the file that is in place is a stored revision."""
    args = ["flags", "set", "kube-scheduler", "--v=4", "--no-wait"]
    n = first_op(t, t.new_root(), args, lambda o: o.op == "fsync" and o.path == MANIFEST_DIR,
                 "fsync of the manifest dir")
    if n is None:
        return
    root = t.new_root()
    rc, out, err, ops = t.cplet(root, args, fail_at=n, errno="EIO")
    injected = [o for o in ops if o.result.startswith("inject")]
    t.check(injected and injected[0].op == "fsync" and injected[0].path == MANIFEST_DIR,
            "the injected failure did not hit the manifest dir: %r" % injected)
    t.eq(rc, 1, "exit code (stdout %r, stderr %r)" % (out, err))
    t.contains(err, "Input/output error", "stderr")
    t.contains(err, MANIFEST_DIR, "stderr names the directory")
    # the rename happened: the live manifest is the new revision, which therefore stays
    data = live(root)["kube-scheduler"]
    revs = stored(root, "kube-scheduler")
    t.check(data in revs.values(), "the live scheduler manifest is no stored revision (%r)" % sorted(revs))

    # the same in the revisions dir: the write fails before anything goes live
    rdir = REVISIONS + "/kube-scheduler"
    n = first_op(t, t.new_root(), args, lambda o: o.op == "fsync" and o.path == rdir,
                 "fsync of the scheduler's revisions dir")
    if n is None:
        return
    root = t.new_root()
    before = live(root)
    rc, out, err, ops = t.cplet(root, args, fail_at=n, errno="EIO")
    injected = [o for o in ops if o.result.startswith("inject")]
    t.check(injected and injected[0].op == "fsync" and injected[0].path == rdir,
            "the injected failure did not hit the revisions dir: %r" % injected)
    t.eq(rc, 1, "exit code when the revisions dir fsync fails (stderr %r)" % err)
    t.contains(err, "Input/output error", "stderr")
    check_store_clean(t, root, before, "after the failed fsync of the revisions dir", {c: [] for c in COMPONENTS})


def test_readonly_manifest_dir_no_wait(t):
    """Issue 7 defect 20: the swap fails (read-only manifest dir): no never-live revision."""
    root = t.new_root()
    before = live(root)
    rc, out, err, ops = t.cplet(root, ["upgrade", "--binary-version", NEW, "--no-wait"],
                                ops="write", path=MANIFEST_DIR, fail_at=1, fail_count=0, errno="EROFS")
    t.check([o for o in ops if o.result.startswith("inject")], "the injected failure did not happen: %r" % ops)
    t.eq(rc, 1, "exit code (stderr %r)" % err)
    t.contains(err, "Read-only file system", "stderr")
    check_store_clean(t, root, before, "upgrade --no-wait on a read-only manifest dir",
                      {c: [1] for c in COMPONENTS})


def test_full_state_dir_adoption(t, gated):
    """Issue 7 defect 20: the state dir fills up after the first component was adopted: every
    component adopted or none."""
    args = ["upgrade", "--binary-version", NEW] + (["--stable-for", "0s", "--step-timeout", "1s"] if gated
                                                     else ["--no-wait"])
    shim_args = dict(ops="write,mkdir", path="var/lib/cplet")
    probe = t.new_root()
    rc, out, err, ops = t.cplet(probe, args, **shim_args)
    second = [o.n for o in ops if o.path.startswith(REVISIONS + "/kube-controller-manager")]
    if not t.check(second, "recording run: the controller-manager was never adopted: %r" % ops):
        return
    root = t.new_root()
    before = live(root)
    rc, out, err, ops = t.cplet(root, args, fail_at=second[0], fail_count=0, errno="ENOSPC", **shim_args)
    t.check(any(o.path.startswith(REVISIONS + "/kube-apiserver") and o.ok for o in ops),
            "the API server was not adopted before the disk filled up: %r" % ops)
    t.eq(rc, 1, "exit code (stderr %r)" % err)
    t.contains(err, "No space left on device", "stderr")
    check_store_clean(t, root, before, "state dir full while adopting", {c: [] for c in COMPONENTS})
    rc, out, err = t.plain(root, ["status", "--json"])
    t.eq(rc, 0, "status afterwards (stderr %r)" % err)
    t.check("interruptedRollout" not in json.loads(out or "{}"), "status reports an interrupted rollout: %r" % out)


def test_full_manifest_dir_gated(t):
    """Issue 7 defect 20, gated: the first swap fails (no space in the manifest dir): the
    step's revision never went live and is gone; the journal says the rollout failed."""
    root = t.new_root()
    before = live(root)
    rc, out, err, ops = t.cplet(root, ["upgrade", "--binary-version", NEW, "--stable-for", "0s"],
                                ops="write", path=MANIFEST_DIR, fail_at=1, fail_count=0, errno="ENOSPC")
    t.check([o for o in ops if o.result.startswith("inject")], "the injected failure did not happen: %r" % ops)
    t.eq(rc, 1, "exit code (stderr %r)" % err)
    t.contains(err, "No space left on device", "stderr")
    check_store_clean(t, root, before, "gated upgrade, manifest dir full", {c: [1] for c in COMPONENTS})
    rc, out, err = t.plain(root, ["status", "--json"])
    t.eq(rc, 0, "status afterwards (stderr %r)" % err)
    # the journal does not claim a swap the disk does not show
    with open(os.path.join(root, "var", "lib", "cplet", "rollout.json")) as f:
        j = json.load(f)
    steps = j.get("steps") or [{}]
    t.eq((steps[-1].get("component"), steps[-1].get("state")), ("kube-apiserver", "abandoned"),
         "the journal's step whose swap failed")


TESTS = [
    ("recorded atomic writes: file fsync, rename, directory fsync (no-wait flags, upgrade, rollback)",
     test_atomic_write_order),
    ("a new directory is followed by an fsync of its parent; its failure fails the write, nothing recorded",
     test_new_directories_synced),
    ("a failed directory fsync fails the write (exit 1), manifest dir and revisions dir",
     test_dir_fsync_failure_fails_write),
    ("upgrade --no-wait on a read-only manifest dir: exit 1, no revision that never went live",
     test_readonly_manifest_dir_no_wait),
    ("upgrade --no-wait, state dir full after the first adoption: no component adopted",
     lambda t: test_full_state_dir_adoption(t, False)),
    ("gated upgrade, state dir full after the first adoption: no component adopted, no journal left running",
     lambda t: test_full_state_dir_adoption(t, True)),
    ("gated upgrade, manifest dir full at the first swap: exit 1, the step's revision removed",
     test_full_manifest_dir_gated),
]


if __name__ == "__main__":
    if not shim.SHIM or not os.path.exists(shim.SHIM):
        print("1..1\nnot ok 1 - the durable-operation shim\n# CPLET_DURABLE_SHIM not set or missing: %r" % shim.SHIM)
        sys.exit(1)
    sys.exit(run_tap(TESTS, Case))
