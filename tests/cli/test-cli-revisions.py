#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CLI tests of cplet's revision commands (upgrade, rollback, flags, history, diff), printing TAP.

Environment (set by tests/meson.build):
  CPLET_BINARY            absolute path of the cplet binary
  CPLET_PLUGIN_BUILD_DIR  directory of the built-in plugins
  CPLET_EXAMPLES_DIR      the repository's examples/ (node root: examples/node)
  CPLET_FIXTURES_DIR      real-world manifests (unused here, checked for symmetry)

Every case builds its own node root in a temporary directory (a copy of examples/node with
the manifest directory chmod 0700) and runs cplet on it. Commands that must not change
anything are run with a checksum of the whole root tree (paths, modes, contents) around them.

Layout under ROOT checked here:
  etc/kubernetes/manifests/*.yaml                      live manifests
  var/lib/cplet/revisions/<component>/<N>.yaml, .json  revisions and their metadata
  run/cplet/lock                                       "PID COMMAND" of the lock holder
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import yaml

from cli_common import (COMPONENTS, CPLET, EXAMPLE_VERSION, EXAMPLES, MANIFEST_DIR, PLUGINS,
                        TIMEOUT, BaseCase, add_flags, mpath, read, remove_roots, run_tap, set_version, shell_quote,
                        tree_checksum, tree_diff, write)
from cli_common import copy_example  # noqa: E402


STATE_DIR = os.path.join("var", "lib", "cplet")
REVISIONS_DIR = os.path.join(STATE_DIR, "revisions")
LOCK_DIR = os.path.join("run", "cplet")
TARGET = "v1.35.0"
ANNOTATION = "cplet.io/revision"
META_KEYS = ["revision", "component", "manifest", "time", "sha256", "binaryVersion", "emulatedVersion",
             "minCompatibilityVersion", "reason", "planId", "parent", "healthy"]
UPGRADE = ["upgrade", "--binary-version", TARGET, "--no-wait"]


# --------------------------------------------------------------------------------------
# Test machinery


class Case(BaseCase):
    """One TAP test case: collects failed checks and diagnostics."""

    def __init__(self, name):
        super().__init__(name)
        self.procs = []


    # ---- node roots

    def new_root(self, example=True):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-rev-"))
        self.roots.append(root)
        mdir = os.path.join(root, MANIFEST_DIR)
        if example:
            copy_example(root)
        else:
            os.makedirs(mdir)
        os.chmod(mdir, 0o700)
        return root

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        remove_roots(self.roots)

    # ---- running cplet

    def run(self, root, args, unchanged=True, plugin_dir=True, exclude=(), label=None):
        """Runs cplet with --plugin-dir and --root before args. unchanged: the whole root tree
        (minus `exclude` prefixes) must be the same afterwards. Returns (rc, stdout, stderr)."""
        cmd = [CPLET]
        if plugin_dir:
            cmd += ["--plugin-dir", PLUGINS]
        cmd += ["--root", root] + list(args)
        return self.run_raw(cmd, root if unchanged else None, exclude=exclude)

    def run_raw(self, cmd, root=None, exclude=()):
        before = tree_checksum(root, exclude) if root else None
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc = None
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            self.failures.append(f"timed out after {TIMEOUT}s: {shell_quote(cmd)}")
        self.elapsed = time.monotonic() - start
        if root:
            after = tree_checksum(root, exclude)
            self.check(before == after, f"the root tree changed during: {shell_quote(cmd)}\n{tree_diff(before, after)}")
        self.last = (cmd, rc, out, err)
        return rc, out, err

    def expect_ok(self, root, args, msg, unchanged=False, **kw):
        rc, out, err = self.run(root, args, unchanged=unchanged, **kw)
        self.eq(rc, 0, f"{msg}: exit code of {shell_quote(args)} (stderr: {err.strip()!r})")
        return out, err

    def expect_ok_json(self, root, args, msg, unchanged=False, **kw):
        out, err = self.expect_ok(root, args, msg, unchanged=unchanged, **kw)
        try:
            return json.loads(out)
        except ValueError as e:
            self.failures.append(f"{msg}: stdout is not JSON ({e}): {out!r}")
            return None

    def expect_refused(self, root, args, msg, needles=(), code=2, exclude=()):
        """Exit `code`, nothing on stdout, a reason on stderr, the root tree unchanged."""
        rc, out, err = self.run(root, args, unchanged=True, exclude=exclude)
        self.eq(rc, code, f"{msg}: exit code of {shell_quote(args)} (stderr: {err.strip()!r})")
        self.eq(out, "", f"{msg}: stdout")
        self.check(err.strip() != "", f"{msg}: stderr is empty (no reason given)")
        for n in needles:
            self.contains(err, n, f"{msg}: stderr")
        return rc, out, err


def rdir(root, component):
    return os.path.join(root, REVISIONS_DIR, component)


def rpath(root, component, n, ext="yaml"):
    return os.path.join(rdir(root, component), f"{n}.{ext}")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def revision_numbers(root, component):
    """Numbers N with an N.json in the component's revision directory, ascending."""
    d = rdir(root, component)
    if not os.path.isdir(d):
        return []
    return sorted(int(m.group(1)) for f in os.listdir(d) if (m := re.fullmatch(r"([1-9][0-9]*)\.json", f)))


def meta(t, root, component, n):
    p = rpath(root, component, n, "json")
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        t.failures.append(f"{p}: cannot read revision metadata: {e}")
        return {}


def load_yaml(t, data, what):
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        t.failures.append(f"{what}: not YAML: {e}")
        return None
    if not isinstance(doc, dict):
        t.failures.append(f"{what}: not a mapping: {doc!r}")
        return None
    return doc


def container(doc, name):
    for c in (doc or {}).get("spec", {}).get("containers", []) or []:
        if c.get("name") == name:
            return c
    return {}


def strip_changeable(doc, component):
    """The document minus the component container's image and command and the revision
    annotation (an annotations map left empty counts as absent)."""
    d = json.loads(json.dumps(doc))  # deep copy
    md = d.get("metadata") or {}
    ann = dict(md.get("annotations") or {})
    ann.pop(ANNOTATION, None)
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)
    c = container(d, component)
    c.pop("image", None)
    c.pop("command", None)
    return d


def annotation(doc):
    return ((doc or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION)


def check_revision_meta(t, root, component, n, parent, reason=None, what=""):
    """Checks N.json: keys, number, component, manifest, sha256 of N.yaml, parent."""
    m = meta(t, root, component, n)
    w = f"{what}{component} revision {n}"
    t.eq(sorted(m.keys()), sorted(META_KEYS), f"{w}: metadata keys")
    t.eq(m.get("revision"), n, f"{w}: revision")
    t.eq(m.get("component"), component, f"{w}: component")
    t.eq(m.get("manifest"), component + ".yaml", f"{w}: manifest")
    t.eq(m.get("parent"), parent, f"{w}: parent")
    t.check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", str(m.get("time"))), f"{w}: time {m.get('time')!r}")
    try:
        t.eq(m.get("sha256"), sha256(read_bytes(rpath(root, component, n))), f"{w}: sha256 of {n}.yaml")
    except OSError as e:
        t.failures.append(f"{w}: {e}")
    if reason is not None:
        t.eq(m.get("reason"), reason, f"{w}: reason")
    return m


def no_temporaries(t, root, what):
    """No dot-file (interrupted temporary) in the manifest directory nor in the revision dirs."""
    for d in [os.path.join(root, MANIFEST_DIR)] + [rdir(root, c) for c in COMPONENTS]:
        if os.path.isdir(d):
            dots = [f for f in os.listdir(d) if f.startswith(".")]
            t.eq(dots, [], f"{what}: dot-files left in {d}")


def history_json(t, root, args=(), msg="history --json"):
    doc = t.expect_ok_json(root, ["history", "--json"] + list(args), msg, unchanged=True)
    if not isinstance(doc, dict) or not isinstance(doc.get("components"), list):
        t.failures.append(f"{msg}: no components list in {doc!r}")
        return {}
    return {c.get("name"): c for c in doc["components"]}


def status_json(t, root, msg="status --json"):
    doc = t.expect_ok_json(root, ["status", "--json"], msg, unchanged=True)
    if not isinstance(doc, dict) or not isinstance(doc.get("components"), list):
        t.failures.append(f"{msg}: no components list in {doc!r}")
        return {}
    return {c.get("name"): c for c in doc["components"]}


def originals(root):
    return {c: read_bytes(mpath(root, c + ".yaml")) for c in COMPONENTS + ["etcd"]}


def upgraded_root(t):
    """A root after a successful `upgrade --binary-version v1.35.0 --no-wait`."""
    root = t.new_root()
    t.expect_ok(root, UPGRADE, "setup upgrade")
    return root


def spawn_lock_holder(t, root, seconds):
    """Runs `flock ROOT/run/cplet/lock sleep SECONDS` and waits until the lock is held."""
    lock = os.path.join(root, LOCK_DIR, "lock")
    p = subprocess.Popen(["flock", lock, "sleep", str(seconds)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t.procs.append(p)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return p
        finally:
            os.close(fd)
        time.sleep(0.05)
    t.failures.append("the background flock never took the lock")
    return p


def release_lock_holder(t, p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        t.failures.append("the background flock did not exit")


# --------------------------------------------------------------------------------------
# Cases


def test_upgrade_writes_revisions(t):
    root = t.new_root()
    orig = originals(root)
    etcd_st = os.stat(mpath(root, "etcd.yaml"))
    rc, out, err = t.run(root, UPGRADE, unchanged=False)
    t.eq(rc, 0, f"upgrade: exit code (stderr {err.strip()!r})")
    t.eq(len(re.findall(r"^step \d+/6:", out, re.M)), 6, f"upgrade prints 6 steps: {out!r}")

    plan_ids = set()
    for c in COMPONENTS:
        t.eq(revision_numbers(root, c), [1, 2, 3], f"{c}: revisions")
        t.eq(listdir(rdir(root, c)), sorted(f"{n}.{e}" for n in (1, 2, 3) for e in ("yaml", "json")),
             f"{c}: files in the revision directory")
        try:
            r1, r2, r3 = (read_bytes(rpath(root, c, n)) for n in (1, 2, 3))
            live = read_bytes(mpath(root, c + ".yaml"))
        except OSError as e:
            t.failures.append(f"{c}: {e}")
            continue
        t.check(r1 == orig[c], f"{c}: revision 1 is not byte-equal to the original manifest")
        t.check(live == r3, f"{c}: the live manifest is not byte-equal to revision 3")

        m1 = check_revision_meta(t, root, c, 1, 0, "adopted")
        m2 = check_revision_meta(t, root, c, 2, 1)
        m3 = check_revision_meta(t, root, c, 3, 2)
        t.eq(m1.get("planId"), None, f"{c} revision 1: planId of an adoption")
        t.eq((m1.get("binaryVersion"), m1.get("emulatedVersion"), m1.get("minCompatibilityVersion")),
             (EXAMPLE_VERSION, "1.34", "1.33"), f"{c} revision 1: versions")
        t.eq((m2.get("binaryVersion"), m2.get("emulatedVersion"), m2.get("minCompatibilityVersion")),
             (TARGET, "1.34", "1.33"), f"{c} revision 2: versions")
        t.eq((m3.get("binaryVersion"), m3.get("emulatedVersion"), m3.get("minCompatibilityVersion")),
             (TARGET, "1.35", "1.34"), f"{c} revision 3: versions")
        t.contains(str(m2.get("reason")), "binary", f"{c} revision 2: reason")
        t.contains(str(m3.get("reason")), "emulation", f"{c} revision 3: reason")
        for m in (m2, m3):
            t.check(isinstance(m.get("planId"), str) and m.get("planId"), f"{c}: step without planId: {m!r}")
            plan_ids.add(m.get("planId"))

        d1, d2, d3 = (load_yaml(t, b, f"{c} revision {n}") for n, b in ((1, r1), (2, r2), (3, r3)))
        if not (d1 and d2 and d3):
            continue
        c1, c2, c3 = container(d1, c), container(d2, c), container(d3, c)
        t.eq(annotation(d1), None, f"{c} revision 1 (the original): revision annotation")
        t.eq(annotation(d2), "2", f"{c} revision 2: annotation {ANNOTATION}")
        t.eq(annotation(d3), "3", f"{c} revision 3: annotation {ANNOTATION}")
        t.eq(c2.get("image"), f"registry.k8s.io/{c}:{TARGET}", f"{c} revision 2: image")
        t.eq(c3.get("image"), f"registry.k8s.io/{c}:{TARGET}", f"{c} revision 3: image")
        cmd1, cmd2, cmd3 = c1.get("command") or [], c2.get("command") or [], c3.get("command") or []
        t.eq([f for f in cmd2 if f.startswith("--emulated-version")], ["--emulated-version=1.34"],
             f"{c} revision 2: --emulated-version in the command")
        t.eq([f for f in cmd2 if f != "--emulated-version=1.34"], cmd1,
             f"{c} revision 2: command apart from --emulated-version")
        t.eq([f for f in cmd3 if "emulat" in f or "min-compatibility" in f], [],
             f"{c} revision 3: compatibility flags in the command")
        t.eq(cmd3, cmd1, f"{c} revision 3: command (back to the original)")
        for n, d in ((2, d2), (3, d3)):
            t.eq(strip_changeable(d, c), strip_changeable(d1, c),
                 f"{c} revision {n}: document apart from image, command and the revision annotation")
        # Other annotations stay (the API server's kubeadm endpoint annotation).
        if c == "kube-apiserver":
            ann = (d3.get("metadata") or {}).get("annotations") or {}
            t.contains(ann, "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint",
                       "kube-apiserver revision 3 keeps the kubeadm annotation")

    t.eq(len(plan_ids), 1, f"all steps of one run share one planId: {plan_ids}")

    # Modes: files 0600, directories 0700.
    for c in COMPONENTS:
        t.eq(stat.S_IMODE(os.stat(mpath(root, c + ".yaml")).st_mode), 0o600, f"mode of live {c}.yaml")
        for f in listdir(rdir(root, c)):
            t.eq(stat.S_IMODE(os.stat(os.path.join(rdir(root, c), f)).st_mode), 0o600, f"mode of {c}/{f}")
    for d in [STATE_DIR, REVISIONS_DIR, LOCK_DIR] + [os.path.join(REVISIONS_DIR, c) for c in COMPONENTS]:
        p = os.path.join(root, d)
        t.check(os.path.isdir(p), f"{d} is not a directory")
        if os.path.isdir(p):
            t.eq(stat.S_IMODE(os.stat(p).st_mode), 0o700, f"mode of {d}")
    lock = os.path.join(root, LOCK_DIR, "lock")
    if os.path.exists(lock):
        t.eq(stat.S_IMODE(os.stat(lock).st_mode), 0o600, "mode of run/cplet/lock")

    # etcd untouched, nothing else in the manifest directory.
    t.check(read_bytes(mpath(root, "etcd.yaml")) == orig["etcd"], "etcd.yaml changed")
    st = os.stat(mpath(root, "etcd.yaml"))
    t.eq((st.st_mode, st.st_ino, st.st_mtime_ns), (etcd_st.st_mode, etcd_st.st_ino, etcd_st.st_mtime_ns),
         "etcd.yaml mode/inode/mtime")
    t.eq(sorted(os.listdir(os.path.join(root, MANIFEST_DIR))), sorted(c + ".yaml" for c in COMPONENTS + ["etcd"]),
         "manifest directory listing")
    no_temporaries(t, root, "after upgrade")

    comps = status_json(t, root, "status --json after the upgrade")
    for c in COMPONENTS:
        s = comps.get(c, {})
        t.eq((s.get("binaryVersion"), s.get("emulatedVersion"), s.get("emulatedVersionExplicit"),
              s.get("minCompatibilityVersion"), s.get("minCompatibilityVersionExplicit")),
             (TARGET, "1.35", False, "1.34", False), f"status of {c} after the upgrade")
        t.eq(s.get("image"), f"registry.k8s.io/{c}:{TARGET}", f"status image of {c}")

    # A second run has nothing to do and writes nothing.
    rc, out, err = t.run(root, UPGRADE, unchanged=True, exclude=("run",))
    t.eq(rc, 0, f"second upgrade: exit code (stderr {err.strip()!r})")
    t.contains(out, "Nothing to do", "second upgrade")


def test_upgrade_json(t):
    root = t.new_root()
    doc = t.expect_ok_json(root, UPGRADE + ["--json"], "upgrade --json")
    if not isinstance(doc, dict):
        return
    t.check(isinstance(doc.get("planId"), str) and doc.get("planId"), f"planId: {doc.get('planId')!r}")
    t.eq(doc.get("complete"), True, "complete")
    steps = doc.get("steps")
    if not t.check(isinstance(steps, list), f"steps: {steps!r}"):
        return
    got = [(s.get("step"), s.get("component"), s.get("kind"), s.get("revision")) for s in steps]
    expected = ([(i + 1, c, "binary", 2) for i, c in enumerate(COMPONENTS)]
                + [(i + 4, c, "emulation", 3) for i, c in enumerate(COMPONENTS)])
    t.eq(got, expected, "steps (step, component, kind, revision)")
    for s in steps:
        c = s.get("component")
        t.eq(s.get("image"), f"registry.k8s.io/{c}:{TARGET}", f"image of step {s.get('step')}")
        t.eq(s.get("binaryVersion"), TARGET, f"binaryVersion of step {s.get('step')}")
        t.eq(s.get("manifest"), f"{c}.yaml", f"manifest of step {s.get('step')}")
        if c in COMPONENTS and isinstance(s.get("revision"), int):
            m = meta(t, root, c, s["revision"])
            t.eq(m.get("planId"), doc.get("planId"), f"planId in {c}/{s['revision']}.json")
    t.eq([s.get("emulatedVersion") for s in steps], ["1.34"] * 3 + ["1.35"] * 3, "emulatedVersion of the steps")

    # Nothing to do: still JSON.
    doc2 = t.expect_ok_json(root, UPGRADE + ["--json"], "second upgrade --json", unchanged=True, exclude=("run",))
    if isinstance(doc2, dict):
        t.eq(doc2.get("steps"), [], "second upgrade --json: steps")


def test_gated_upgrade_on_a_dead_node(t):
    # Without --no-wait every step is gated. On this node no kubelet runs anything, so the
    # first step never sees its process: it times out, is restored (which cannot come back
    # healthy either), and cplet says so with exit 1 - it never reports success falsely.
    root = t.new_root()
    original = read_bytes(os.path.join(root, "etc/kubernetes/manifests/kube-apiserver.yaml"))
    rc, out, err = t.run(root, ["upgrade", "--binary-version", TARGET, "--step-timeout", "300ms",
                                "--stable-for", "0s"], unchanged=False)
    t.eq(rc, 1, f"gated upgrade on a dead node: exit code (stderr {err.strip()!r})")
    t.check("timed out" in err and "process" in err, f"the failure names the timeout and the process: {err!r}")
    t.check("needs attention" in err, f"a failed restore says the node needs attention: {err!r}")
    live = read_bytes(os.path.join(root, "etc/kubernetes/manifests/kube-apiserver.yaml"))
    t.check(b"registry.k8s.io/kube-apiserver:" + EXAMPLE_VERSION.encode() in live,
            "the failed step was restored to the original image")
    t.check(read_bytes(os.path.join(root, "var/lib/cplet/revisions/kube-apiserver/1.yaml")) == original,
            "revision 1 is the original manifest")
    for c in COMPONENTS[1:]:
        t.check(not os.path.exists(os.path.join(root, f"var/lib/cplet/revisions/{c}/2.yaml")),
                f"no step after the failed one was written ({c})")
    t.expect_refused(root, ["upgrade", "--no-wait"], "upgrade without --binary-version", ["--binary-version"])
    t.expect_refused(root, ["upgrade", "--binary-version", TARGET, "--step-timeout", "5"],
                     "a duration without unit", ["--step-timeout"])
    t.expect_refused(root, ["upgrade", "--binary-version", TARGET, "--on-failure", "maybe"],
                     "an unknown --on-failure", ["--on-failure"])


def test_entrypoint_only_not_gated(t):
    # A container without command runs its image's entrypoint: cplet cannot recognise its
    # process, so a gated write is refused up front (exit 2, nothing written); --no-wait works.
    root = t.new_root()
    path = os.path.join(root, "etc/kubernetes/manifests/kube-scheduler.yaml")
    doc = yaml.safe_load(read_bytes(path))
    cont = doc["spec"]["containers"][0]
    cont["args"] = cont.pop("command")[1:]
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    t.expect_refused(root, ["upgrade", "--binary-version", TARGET], "gated upgrade with an entrypoint-only scheduler",
                     ["no command", "--no-wait"])
    t.expect_refused(root, ["flags", "set", "kube-scheduler", "--v=3"], "gated flags on an entrypoint-only scheduler",
                     ["no command"])
    rc, out, err = t.run(root, ["upgrade", "--binary-version", TARGET, "--no-wait"], unchanged=False)
    t.eq(rc, 0, f"--no-wait upgrade with an entrypoint-only scheduler (stderr {err.strip()!r})")


def test_upgrade_dry_run(t):
    root = t.new_root()
    before = tree_checksum(root)
    rc, out, err = t.run(root, ["upgrade", "--binary-version", TARGET, "--dry-run"])
    t.eq(rc, 0, f"dry-run: exit code (stderr {err.strip()!r})")
    t.check(re.search(r"^--- ", out, re.M), f"dry-run: no '---' header: {out[:500]!r}")
    t.check(re.search(r"^\+\+\+ ", out, re.M), f"dry-run: no '+++' header: {out[:500]!r}")
    t.check(re.search(r"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@", out, re.M), f"dry-run: no hunk header: {out[:500]!r}")
    t.eq(len(re.findall(r"^\+\+\+ ", out, re.M)), 6, "dry-run: one diff per step")
    t.check(re.search(r'^\+\s+cplet\.io/revision: "2"$', out, re.M), "dry-run: no added revision \"2\" annotation")
    t.check(re.search(r'^\+\s+cplet\.io/revision: "3"$', out, re.M), "dry-run: no added revision \"3\" annotation")
    for c in COMPONENTS:
        t.check(re.search(rf"^\+\s+image: registry\.k8s\.io/{c}:{re.escape(TARGET)}$", out, re.M),
                f"dry-run: no new image line for {c}")
        t.check(re.search(rf"^-\s+image: registry\.k8s\.io/{c}:{re.escape(EXAMPLE_VERSION)}$", out, re.M),
                f"dry-run: no removed image line for {c}")
    t.check(re.search(r"^\+\s+- --emulated-version=1\.34$", out, re.M), "dry-run: binary step adds --emulated-version=1.34")
    t.check(re.search(r"^-\s+- --emulated-version=1\.34$", out, re.M), "dry-run: emulation step removes --emulated-version")
    t.eq(tree_checksum(root), before, "root tree after --dry-run")
    t.check(not os.path.exists(os.path.join(root, STATE_DIR)), "var/lib/cplet created by --dry-run")
    t.check(not os.path.exists(os.path.join(root, LOCK_DIR)), "run/cplet created by --dry-run")

    # Dry-run after a real upgrade to a newer patch: numbers continue from the store.
    t.expect_ok(root, UPGRADE, "real upgrade")
    rc, out, err = t.run(root, ["upgrade", "--binary-version", "v1.35.1", "--dry-run"], exclude=())
    t.eq(rc, 0, f"dry-run to v1.35.1: exit code (stderr {err.strip()!r})")
    t.check(re.search(r'^\+\s+cplet\.io/revision: "4"$', out, re.M), f"dry-run to v1.35.1: annotation \"4\": {out[:800]!r}")
    t.check(re.search(r'^-\s+cplet\.io/revision: "3"$', out, re.M), "dry-run to v1.35.1: annotation \"3\" removed")


def test_refused_plan_writes_nothing(t):
    root = t.new_root()
    set_version(root, "v1.31.4")
    t.expect_refused(root, UPGRADE, "1.31 -> 1.35", ["cannot emulate 1.31"])
    t.expect_refused(root, UPGRADE + ["--dry-run"], "1.31 -> 1.35 --dry-run")
    t.expect_refused(root, UPGRADE + ["--json"], "1.31 -> 1.35 --json")
    t.check(not os.path.exists(os.path.join(root, "var")), "state directory created by a refused plan")
    t.check(not os.path.exists(os.path.join(root, "run")), "lock directory created by a refused plan")
    root2 = t.new_root()
    t.expect_refused(root2, ["upgrade", "--binary-version", TARGET, "--emulated-version", "1.36", "--no-wait"],
                     "emulated above binary", ["1.36"])
    t.check(not os.path.exists(os.path.join(root2, "var")), "state directory created by an invalid target")


def test_history(t):
    root = t.new_root()
    rc, out, err = t.run(root, ["history"])
    t.eq(rc, 0, f"history before any write: exit code (stderr {err.strip()!r})")
    for c in COMPONENTS:
        t.contains(out, c, "history before any write")
    t.contains(out, "no revisions yet", "history before any write")
    h = history_json(t, root, msg="history --json before any write")
    for c in COMPONENTS:
        t.eq((h.get(c, {}).get("revisions"), h.get(c, {}).get("live")), ([], None), f"{c} before any write")
    t.check(not os.path.exists(os.path.join(root, "var")), "history created the state directory")

    t.expect_ok(root, UPGRADE, "upgrade")
    h = history_json(t, root)
    t.eq(sorted(h), sorted(COMPONENTS), "components in history --json")
    for c in COMPONENTS:
        e = h.get(c, {})
        t.eq(e.get("manifest"), c + ".yaml", f"{c}: manifest")
        t.eq(e.get("live"), 3, f"{c}: live revision")
        revs = e.get("revisions") or []
        t.eq([r.get("revision") for r in revs], [3, 2, 1], f"{c}: revisions newest first")
        t.eq([r.get("live") for r in revs], [True, False, False], f"{c}: live flags")
        t.eq([r.get("parent") for r in revs], [2, 1, 0], f"{c}: parents")
        t.eq([r.get("reason") for r in revs][2:], ["adopted"], f"{c}: reason of revision 1")
        t.eq([r.get("emulatedVersion") for r in revs], ["1.35", "1.34", "1.34"], f"{c}: emulated versions")
        t.eq([r.get("binaryVersion") for r in revs], [TARGET, TARGET, EXAMPLE_VERSION], f"{c}: binary versions")
        for r in revs:
            t.eq(r.get("planId") is not None, r.get("revision") != 1, f"{c} {r.get('revision')}: planId presence")

    rc, out, err = t.run(root, ["history"])
    t.eq(rc, 0, "history: exit code")
    for c in COMPONENTS:
        t.contains(out, c, "history text")
    rows = [l.split() for l in out.splitlines() if re.match(r"^\s+(live\s+)?\d+\s", l)]
    t.eq([r[1] if r[0] == "live" else r[0] for r in rows], ["3", "2", "1"] * 3, "history text: revision column")
    t.eq([r[0] == "live" for r in rows], [True, False, False] * 3, "history text: live marker")
    t.contains(out, "adopted", "history text")

    h = history_json(t, root, ["--component", "kube-scheduler"], "history --component kube-scheduler --json")
    t.eq(list(h), ["kube-scheduler"], "history --component filters")
    rc, out, err = t.run(root, ["history", "--component", "kube-scheduler"])
    t.eq(rc, 0, "history --component (text): exit code")
    t.contains(out, "kube-scheduler", "history --component (text)")
    t.not_contains(out, "kube-apiserver", "history --component (text)")
    t.not_contains(out, "kube-controller-manager", "history --component (text)")

    t.expect_refused(root, ["history", "--component", "kube-nope"], "unknown component", ["kube-nope"])
    t.expect_refused(root, ["history", "--component", "etcd"], "unmanaged pod as component", ["etcd"])
    t.expect_refused(root, ["history", "--to-revision", "1"], "history --to-revision", ["--to-revision"])

    # A live manifest edited by hand matches no revision: no live marker.
    add_flags(root, "kube-scheduler", ["--v=3"])
    h = history_json(t, root, msg="history --json after a hand edit")
    t.eq(h.get("kube-scheduler", {}).get("live"), None, "live after a hand edit")
    t.eq([r.get("live") for r in h.get("kube-scheduler", {}).get("revisions") or []], [False] * 3,
         "live flags after a hand edit")
    t.eq(h.get("kube-apiserver", {}).get("live"), 3, "live of the API server after the scheduler's hand edit")
    rc, out, err = t.run(root, ["history", "--component", "kube-scheduler"])
    t.contains(out, "edited by hand", "history text after a hand edit")


def diff_body(text):
    """The lines after the two header lines of a unified diff."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and not lines[i].startswith("--- "):
        i += 1
    return lines[i + 2:] if i + 1 < len(lines) and lines[i + 1].startswith("+++ ") else None


def system_diff(a, b):
    p = subprocess.run(["diff", "-u", a, b], capture_output=True, text=True, timeout=TIMEOUT)
    return diff_body(p.stdout)


def test_diff(t):
    root = upgraded_root(t)
    c = "kube-apiserver"
    rc, out, err = t.run(root, ["diff", c, "1"])
    t.eq(rc, 0, f"diff {c} 1: exit code (stderr {err.strip()!r})")
    t.check(re.search(r"^--- .*revision 1", out, re.M), f"diff {c} 1: '---' names revision 1: {out[:300]!r}")
    t.check(re.search(r"^\+\+\+ .*live", out, re.M), f"diff {c} 1: '+++' names the live manifest: {out[:300]!r}")
    t.check(re.search(rf"^-\s+image: registry\.k8s\.io/{c}:{re.escape(EXAMPLE_VERSION)}$", out, re.M),
            f"diff {c} 1: old image")
    t.check(re.search(rf"^\+\s+image: registry\.k8s\.io/{c}:{re.escape(TARGET)}$", out, re.M), f"diff {c} 1: new image")
    t.eq(diff_body(out), system_diff(rpath(root, c, 1), mpath(root, c + ".yaml")), f"diff {c} 1 vs diff -u: hunks")

    rc, out, err = t.run(root, ["diff", c, "1", "2"])
    t.eq(rc, 0, f"diff {c} 1 2: exit code (stderr {err.strip()!r})")
    t.check(re.search(r"^--- .*revision 1", out, re.M), f"diff {c} 1 2: '---' header")
    t.check(re.search(r"^\+\+\+ .*revision 2", out, re.M), f"diff {c} 1 2: '+++' header")
    t.check(re.search(rf"^\+\s+image: registry\.k8s\.io/{c}:{re.escape(TARGET)}$", out, re.M), f"diff {c} 1 2: new image")
    t.check(re.search(r"^\+\s+- --emulated-version=1\.34$", out, re.M), f"diff {c} 1 2: --emulated-version added")
    t.eq(diff_body(out), system_diff(rpath(root, c, 1), rpath(root, c, 2)), f"diff {c} 1 2 vs diff -u: hunks")

    for a, b in (("2", "3"), ("3", "1")):
        rc, out, err = t.run(root, ["diff", "kube-scheduler", a, b])
        t.eq(rc, 0, f"diff kube-scheduler {a} {b}: exit code")
        t.eq(diff_body(out), system_diff(rpath(root, "kube-scheduler", a), rpath(root, "kube-scheduler", b)),
             f"diff kube-scheduler {a} {b} vs diff -u: hunks")

    # Identical: no hunks.
    rc, out, err = t.run(root, ["diff", c, "3"])
    t.eq(rc, 0, f"diff {c} 3 (live): exit code")
    t.check("@@" not in out, f"diff of the live revision against live has hunks: {out!r}")

    rc, out, err = t.run(root, ["diff", c, "99"])
    t.check(rc in (1, 2), f"diff {c} 99: exit code {rc}")
    t.eq(out, "", f"diff {c} 99: stdout")
    t.check("99" in err and ("revision" in err or "99.yaml" in err), f"diff {c} 99: stderr names it: {err!r}")
    rc, out, err = t.run(root, ["diff", c, "1", "42"])
    t.check(rc in (1, 2), f"diff {c} 1 42: exit code {rc}")
    t.contains(err, "42", f"diff {c} 1 42: stderr")
    for bad in ("abc", "0", "-1", "1x", ""):
        t.expect_refused(root, ["diff", c, bad], f"diff {c} {bad!r}")
    t.expect_refused(root, ["diff", c, "1", "two"], f"diff {c} 1 two", ["two"])
    t.expect_refused(root, ["diff", "kube-nope", "1"], "diff of an unknown component", ["kube-nope"])
    t.expect_refused(root, ["diff", c], "diff without a revision")
    t.expect_refused(root, ["diff", c, "1", "2", "3"], "diff with too many arguments")

    fresh = t.new_root()
    rc, out, err = t.run(fresh, ["diff", c, "1"])
    t.check(rc in (1, 2), f"diff on a node without revisions: exit code {rc}")
    t.check(err.strip() != "", "diff on a node without revisions: no message")


def test_rollback(t):
    root = upgraded_root(t)
    c = "kube-scheduler"
    # Revision 2 emulates 1.34 with the implied min-compatibility 1.33; the node has run with
    # 1.34 (revision 3): below the high-water mark, so only with --force.
    t.expect_refused(root, ["rollback", "--component", c, "--to-revision", "2", "--no-wait"],
                     "rollback below the high-water mark without --force",
                     ["kube-scheduler would run with min-compatibility version 1.33, below 1.34, the highest this "
                      "node has run with", "--force"])
    rc, out, err = t.run(root, ["rollback", "--component", c, "--to-revision", "2", "--no-wait", "--force"],
                         unchanged=False)
    t.eq(rc, 0, f"rollback {c} to 2: exit code (stderr {err.strip()!r})")
    t.eq(revision_numbers(root, c), [1, 2, 3, 4], f"{c}: revisions after the rollback")
    try:
        r2 = read(rpath(root, c, 2))
        r4 = read(rpath(root, c, 4))
        live = read(mpath(root, c + ".yaml"))
        t.eq(r4, r2.replace(f'{ANNOTATION}: "2"', f'{ANNOTATION}: "4"'), f"{c}: revision 4 = revision 2 but the annotation")
        t.check(live == r4, f"{c}: the live manifest is not revision 4")
    except OSError as e:
        t.failures.append(f"{c}: {e}")
    m = check_revision_meta(t, root, c, 4, 3)
    t.check(re.search(r"\brevision 2\b", str(m.get("reason"))), f"{c} revision 4: reason {m.get('reason')!r}")
    t.eq((m.get("binaryVersion"), m.get("emulatedVersion"), m.get("minCompatibilityVersion")), (TARGET, "1.34", "1.33"),
         f"{c} revision 4: versions")
    comps = status_json(t, root, "status after the rollback")
    t.eq((comps.get(c, {}).get("emulatedVersion"), comps.get(c, {}).get("emulatedVersionExplicit")), ("1.34", True),
         f"{c}: emulated version after the rollback")
    for other in ("kube-apiserver", "kube-controller-manager"):
        t.eq(revision_numbers(root, other), [1, 2, 3], f"{other} untouched by the scheduler's rollback")
    h = history_json(t, root, ["--component", c])
    t.eq(h.get(c, {}).get("live"), 4, "history: live after the rollback")
    no_temporaries(t, root, "after rollback")

    # The API server back to v1.34 under a controller-manager emulating 1.35: refused.
    t.expect_refused(root, ["rollback", "--component", "kube-apiserver", "--to-revision", "1", "--no-wait"],
                     "API server rollback below the others", ["refused"])
    t.expect_refused(root, ["rollback", "--component", c, "--to-revision", "99", "--no-wait"], "revision 99", ["99"])
    t.expect_refused(root, ["rollback", "--to-revision", "2", "--no-wait"], "missing --component", ["--component"])
    t.expect_refused(root, ["rollback", "--component", c, "--no-wait"], "missing --to-revision", ["--to-revision"])
    # Without --no-wait the write is gated: on this node nothing runs, so it times out, is
    # restored (which cannot come back either) and fails loudly.
    rc, out, err = t.run(root, ["rollback", "--component", c, "--to-revision", "2", "--step-timeout", "200ms",
                                "--stable-for", "0s", "--force"], unchanged=False)
    t.eq(rc, 1, f"gated rollback on a dead node: exit code (stderr {err.strip()!r})")
    t.check("timed out" in err, f"gated rollback on a dead node says it timed out: {err!r}")
    for bad in ("0", "-2", "two", "2x"):
        t.expect_refused(root, ["rollback", "--component", c, "--to-revision", bad, "--no-wait"], f"--to-revision {bad}")
    t.expect_refused(root, ["rollback", "--component", "kube-nope", "--to-revision", "1", "--no-wait"],
                     "unknown component", ["kube-nope"])

    # Dry-run shows the change and writes nothing.
    rc, out, err = t.run(root, ["rollback", "--component", c, "--to-revision", "3", "--dry-run"])
    t.eq(rc, 0, f"rollback --dry-run: exit code (stderr {err.strip()!r})")
    t.check(re.search(r"^-\s+- --emulated-version=1\.34$", out, re.M), f"rollback --dry-run diff: {out!r}")


HIGH_WATER = os.path.join(STATE_DIR, "min-compatibility.json")


def high_water(root):
    try:
        with open(os.path.join(root, HIGH_WATER)) as f:
            return json.load(f).get("minCompatibilityVersion")
    except (OSError, ValueError) as e:
        return repr(e)


def test_high_water_recorded(t):
    """The mark records what ran, explicit or implied, whoever wrote it: adoption counts, and
    an emulation step's implied raise counts."""
    root = t.new_root()
    c = "kube-scheduler"
    t.expect_ok(root, ["flags", "set", c, "--v=4", "--no-wait"], "flags set (adopts every live manifest)")
    t.eq(high_water(root), "1.33", "mark after adopting a v1.34.2 node (implied 1.33)")
    t.expect_ok(root, UPGRADE, "upgrade to 1.35")
    t.eq(high_water(root), "1.34", "mark after emulating 1.35 (implied 1.34)")

    # An emulation rollback keeps min-compatibility 1.34 as a flag; a second one is refused.
    t.expect_ok(root, ["rollback", "--emulated-version", "1.34", "--no-wait"], "rollback --emulated-version 1.34")
    for comp in COMPONENTS:
        argv = container(load_yaml(t, read(mpath(root, comp + ".yaml")), comp), comp).get("command") or []
        t.check("--min-compatibility-version=1.34" in argv, f"{comp}: min-compatibility 1.34 kept as a flag: {argv}")
    t.expect_refused(root, ["rollback", "--emulated-version", "1.33", "--no-wait"], "second emulation rollback",
                     ["cannot lower the emulated version to 1.33", "min-compatibility version 1.34"])
    # The binary 1.34 cannot keep 1.34: a binary rollback is refused for that reason.
    t.expect_refused(root, ["rollback", "--binary-version", "v1.34.2", "--no-wait"], "binary rollback",
                     ["binary v1.34.2 cannot keep min-compatibility version 1.34, the highest min-compatibility "
                      "version this node has run with", "--force"])


def test_high_water_adopted_explicit(t):
    """The defect of issue 12: a node at 1.35 emulating 1.34 with an explicit
    --min-compatibility-version=1.34 (set by hand, never by cplet) got a 6-step plan to
    v1.34.2 that first lowered min-compatibility to 1.33."""
    root = t.new_root()
    set_version(root, TARGET)
    for comp in COMPONENTS:
        add_flags(root, comp, ["--emulated-version=1.34", "--min-compatibility-version=1.34"])
    t.expect_refused(root, ["plan", "--binary-version", "v1.34.2"], "plan to v1.34.2",
                     ["binary v1.34.2 cannot keep min-compatibility version 1.34"])
    t.expect_refused(root, ["upgrade", "--binary-version", "v1.34.2", "--no-wait"], "upgrade to v1.34.2",
                     ["binary v1.34.2 cannot keep min-compatibility version 1.34", "--force"])
    out, err = t.expect_ok(root, ["upgrade", "--binary-version", "v1.34.2", "--no-wait", "--force"],
                           "upgrade to v1.34.2 --force")
    t.eq(high_water(root), "1.34", "mark after a forced rollback (adopted explicit 1.34)")


def test_high_water_flags(t):
    """A single write (flags) keeps the node at the mark: after a forced lowering, even a flag
    change needs --force."""
    root = t.new_root()
    c = "kube-scheduler"
    os.makedirs(os.path.join(root, STATE_DIR), mode=0o700, exist_ok=True)
    write(os.path.join(root, HIGH_WATER), '{"minCompatibilityVersion": "1.34"}\n')
    os.chmod(os.path.join(root, HIGH_WATER), 0o600)
    t.expect_refused(root, ["flags", "set", c, "--v=4", "--no-wait"], "flags set below the mark",
                     ["kube-scheduler would run with min-compatibility version 1.33, below 1.34", "--force"])
    # (Options go before `flags set C`: what follows are the flags to set.)
    t.expect_ok(root, ["--force", "--no-wait", "flags", "set", c, "--v=4"], "flags set --force")
    t.eq(high_water(root), "1.34", "the mark is never lowered")


def test_high_water_external_edit(t):
    """A hand edit that ran with a higher min-compatibility counts when cplet records it, even
    when the write that follows (forced) goes below it."""
    root = t.new_root()
    c = "kube-scheduler"
    t.expect_ok(root, ["--no-wait", "flags", "set", c, "--v=4"], "flags set (adopts)")
    t.eq(high_water(root), "1.33", "mark after adoption")
    set_version(root, TARGET, [c])  # by hand: binary 1.35, implied min-compatibility 1.34
    t.expect_refused(root, ["rollback", "--component", c, "--to-revision", "2", "--no-wait"],
                     "rollback below the hand edit's min-compatibility", ["below 1.34", "--force"])
    t.expect_ok(root, ["rollback", "--component", c, "--to-revision", "2", "--no-wait", "--force"],
                "forced rollback")
    t.eq(high_water(root), "1.34", "mark after recording the hand edit (external edit) before the forced write")


def replace_flag(root, component, old, new):
    p = mpath(root, component + ".yaml")
    text = read(p)
    assert f"    - {old}\n" in text, f"no {old} in {p}"
    write(p, text.replace(f"    - {old}\n", f"    - {new}\n", 1))


def test_single_write_moves_one_minor(t):
    """A single write (rollback --to-revision) moves the emulated version like a plan step: one
    minor at a time, never below the min-compatibility version in force, even with --force
    (which only lifts the high-water mark)."""
    root = t.new_root()
    c = "kube-scheduler"
    set_version(root, TARGET)
    add_flags(root, "kube-apiserver", ["--min-compatibility-version=1.33"])
    t.expect_ok(root, ["--no-wait", "flags", "set", c, "--v=4"], "flags set (adopts: revision 1 emulates 1.35)")
    add_flags(root, c, ["--emulated-version=1.33"])  # by hand: two minors down
    t.expect_refused(root, ["rollback", "--component", c, "--to-revision", "1", "--no-wait", "--force"],
                     "rollback from emulating 1.33 straight to 1.35",
                     ["kube-scheduler would move from emulating 1.33 to 1.35", "one minor at a time"])

    root = t.new_root()
    set_version(root, TARGET)
    add_flags(root, c, ["--emulated-version=1.34"])
    t.expect_ok(root, ["--no-wait", "flags", "set", c, "--v=4"], "flags set (adopts: revision 1 emulates 1.34)")
    # By hand: emulating 1.35 with min-compatibility 1.35; storage may already need 1.35.
    replace_flag(root, c, "--emulated-version=1.34", "--min-compatibility-version=1.35")
    t.expect_refused(root, ["rollback", "--component", c, "--to-revision", "1", "--no-wait", "--force"],
                     "rollback to emulating 1.34 below min-compatibility 1.35 in force",
                     ["kube-scheduler would emulate 1.34, below the min-compatibility version 1.35 in force"])


def test_high_water_corrupt(t):
    """Defect 17: a corrupt mark refuses (exit 2, naming the file), it never passes."""
    for text in ("{not json", '{"minCompatibilityVersion": 135}', '{"minCompatibilityVersion": "one"}', "[]", ""):
        root = upgraded_root(t)
        path = os.path.join(root, HIGH_WATER)
        write(path, text)
        os.chmod(path, 0o600)
        what = f"mark {text!r}"
        needles = [os.path.join(root, HIGH_WATER), "not a min-compatibility high-water mark"]
        t.expect_refused(root, ["plan", "--binary-version", TARGET, "--emulated-version", "1.34"], f"{what}: plan",
                         needles)
        t.expect_refused(root, ["rollback", "--emulated-version", "1.34", "--no-wait"], f"{what}: rollback",
                         needles)
        t.expect_refused(root, ["rollback", "--component", "kube-scheduler", "--to-revision", "3", "--no-wait"],
                         f"{what}: rollback --to-revision", needles)
        t.expect_refused(root, ["flags", "set", "kube-scheduler", "--v=4", "--no-wait"], f"{what}: flags set",
                         needles)
    # A symbolic link is never followed in the state directory.
    root = upgraded_root(t)
    path = os.path.join(root, HIGH_WATER)
    os.unlink(path)
    os.symlink("/dev/null", path)
    t.expect_refused(root, ["rollback", "--emulated-version", "1.34", "--no-wait"], "mark is a symlink",
                     [os.path.join(root, HIGH_WATER), "symbolic link"])


def test_high_water_deleted(t):
    """Defect 17: a deleted mark is rebuilt from the revisions' metadata, never taken as none."""
    root = upgraded_root(t)
    # Forced back to emulating 1.34 with the implied 1.33: the mark (1.34) is all that still
    # says the node has run with 1.34.
    t.expect_ok(root, ["upgrade", "--binary-version", TARGET, "--emulated-version", "1.34", "--no-wait", "--force"],
                "forced emulation rollback")
    t.eq(high_water(root), "1.34", "mark after the forced rollback")
    os.unlink(os.path.join(root, HIGH_WATER))
    rc, out, err = t.expect_refused(root, ["rollback", "--emulated-version", "1.33", "--no-wait"],
                                    "rollback to emulating 1.33 with the mark deleted",
                                    ["cannot lower the emulated version to 1.33",
                                     "this node has run with min-compatibility version 1.34"])
    t.contains(err, "rebuilt from the revisions' metadata: 1.34", "the rebuild is reported")
    t.expect_refused(root, ["rollback", "--component", "kube-scheduler", "--to-revision", "2", "--no-wait"],
                     "rollback --to-revision with the mark deleted", ["below 1.34"])
    t.expect_ok(root, ["--force", "--no-wait", "flags", "set", "kube-scheduler", "--v=4"], "a write")
    t.eq(high_water(root), "1.34", "the write saved the rebuilt mark")


def test_flags(t):
    root = t.new_root()
    c = "kube-scheduler"
    orig_doc = load_yaml(t, read(mpath(root, c + ".yaml")), "original")
    orig_cmd = container(orig_doc, c).get("command") or []

    rc, out, err = t.run(root, ["flags", "set", c, "--v=4", "--profiling=false", "--no-wait"], unchanged=False)
    t.eq(rc, 0, f"flags set: exit code (stderr {err.strip()!r})")
    t.eq(revision_numbers(root, c), [1, 2], f"{c}: revisions after flags set")
    # It wrote a revision: it must not say there was nothing to do.
    t.not_contains(out, "Nothing to do", "flags set --no-wait does not claim 'Nothing to do'")
    d2 = load_yaml(t, read(mpath(root, c + ".yaml")), "after flags set")
    t.eq(read_bytes(mpath(root, c + ".yaml")), read_bytes(rpath(root, c, 2)) if os.path.exists(rpath(root, c, 2)) else None,
         "live = revision 2")
    t.eq(container(d2, c).get("command"), orig_cmd + ["--v=4", "--profiling=false"], "command after flags set")
    t.eq(annotation(d2), "2", "annotation after flags set")
    if d2 and orig_doc:
        t.eq(strip_changeable(d2, c), strip_changeable(orig_doc, c), "document apart from the command")
        t.eq(container(d2, c).get("image"), container(orig_doc, c).get("image"), "image after flags set")
    m = check_revision_meta(t, root, c, 2, 1)
    t.contains(str(m.get("reason")), "--v=4", "reason of flags set")
    t.eq(revision_numbers(root, "kube-apiserver"), [], "flags set on the scheduler adopts no other component")

    # Replace in place: existing flags keep their position.
    rc, out, err = t.run(root, ["flags", "set", c, "--profiling=true", "--bind-address=0.0.0.0", "--no-wait"],
                         unchanged=False)
    t.eq(rc, 0, f"flags set (replace): exit code (stderr {err.strip()!r})")
    d3 = load_yaml(t, read(mpath(root, c + ".yaml")), "after replace")
    want = [("--bind-address=0.0.0.0" if f == "--bind-address=127.0.0.1" else f) for f in orig_cmd]
    t.eq(container(d3, c).get("command"), want + ["--v=4", "--profiling=true"], "command after replacing in place")
    check_revision_meta(t, root, c, 3, 2)

    rc, out, err = t.run(root, ["flags", "unset", c, "v", "--no-wait"], unchanged=False)
    t.eq(rc, 0, f"flags unset v: exit code (stderr {err.strip()!r})")
    d4 = load_yaml(t, read(mpath(root, c + ".yaml")), "after unset")
    t.eq(container(d4, c).get("command"), want + ["--profiling=true"], "command after flags unset v")
    t.eq(annotation(d4), "4", "annotation after unset")
    check_revision_meta(t, root, c, 4, 3)

    refusals = [
        (["flags", "set", c, "--emulated-version=1.33", "--no-wait"], ["compatibility flag"]),
        (["flags", "set", c, "--min-compatibility-version=1.33", "--no-wait"], ["compatibility flag"]),
        (["flags", "set", c, "--emulation-forward-compatible=true", "--no-wait"], ["compatibility flag"]),
        (["flags", "unset", c, "emulated-version", "--no-wait"], ["compatibility flag"]),
        (["flags", "set", c, "--v=4 --x=1", "--no-wait"], ["white space"]),
        (["flags", "set", c, "--v=4\n--x=1", "--no-wait"], []),
        (["flags", "set", c, "--v=4\t", "--no-wait"], []),
        (["flags", "set", c, "v=4", "--no-wait"], []),
        (["flags", "set", c, "--=4", "--no-wait"], []),
        (["flags", "unset", c, "not-there", "--no-wait"], ["not-there"]),
        (["flags", "unset", c, "v=4", "--no-wait"], []),
        (["flags", "set", "kube-nope", "--v=4", "--no-wait"], ["kube-nope"]),
        (["flags", "set", "etcd", "--v=4", "--no-wait"], ["etcd"]),
        (["flags", "bogus", c, "--v=4", "--no-wait"], ["bogus"]),
        (["flags", "set", c, "--no-wait"], []),
        (["flags", "set", c, "--v=5", "--step-timeout", "5"], ["--step-timeout"]),
        (["flags", "set", c, "--v=5", "--on-failure=never", "--no-wait"], ["--on-failure"]),
    ]
    for args, needles in refusals:
        t.expect_refused(root, args, shell_quote(args), needles)
    t.eq(revision_numbers(root, c), [1, 2, 3, 4], f"{c}: no revision from the refusals")

    # cplet's own options with values before "flags"; --config after the component is its flag.
    rc, out, err = t.run_raw([CPLET, "--plugin-dir", PLUGINS, "--root", root, "flags", "set", c, "--config=/etc/x.yaml",
                              "--no-wait"])
    t.eq(rc, 0, f"flags set --config=/etc/x.yaml: exit code (stderr {err.strip()!r})")
    d5 = load_yaml(t, read(mpath(root, c + ".yaml")), "after --config")
    t.eq(container(d5, c).get("command"), want + ["--profiling=true", "--config=/etc/x.yaml"],
         "command after flags set --config=/etc/x.yaml")
    t.eq(revision_numbers(root, c), [1, 2, 3, 4, 5], f"{c}: revisions after --config")

    # --dry-run shows the diff and writes nothing.
    rc, out, err = t.run(root, ["flags", "set", c, "--v=7", "--dry-run"])
    t.eq(rc, 0, f"flags set --dry-run: exit code (stderr {err.strip()!r})")
    t.check(re.search(r"^\+\s+- --v=7$", out, re.M), f"flags --dry-run diff: {out!r}")
    no_temporaries(t, root, "after flags")

    # The binaries normalise "_" to "-" in flag names (component-base cli.Run sets
    # cliflag.WordSepNormalizeFunc), so --emulated_version IS --emulated-version to
    # kube-scheduler: it must be refused like the dashed spelling. Fresh root, so that a
    # wrongly accepted write does not disturb the checks above.
    root2 = t.new_root()
    for args in (["flags", "set", c, "--emulated_version=1.33", "--no-wait"],
                 ["flags", "set", c, "--min_compatibility_version=1.33", "--no-wait"],
                 ["flags", "set", "kube-apiserver", "--emulation_forward_compatible=true", "--no-wait"]):
        t.expect_refused(root2, args, shell_quote(args), ["compatibility flag"])
    t.check(not os.path.exists(os.path.join(root2, "var")), "a compatibility flag spelt with '_' was written")


def test_external_edit(t):
    root = upgraded_root(t)
    c = "kube-scheduler"
    add_flags(root, c, ["--log-flush-frequency=7s"])
    edited = read_bytes(mpath(root, c + ".yaml"))
    rc, out, err = t.run(root, ["flags", "set", c, "--v=2", "--no-wait"], unchanged=False)
    t.eq(rc, 0, f"flags set after a hand edit: exit code (stderr {err.strip()!r})")
    t.eq(revision_numbers(root, c), [1, 2, 3, 4, 5], f"{c}: revisions")
    if os.path.exists(rpath(root, c, 4)):
        t.check(read_bytes(rpath(root, c, 4)) == edited, "revision 4 is not byte-equal to the hand-edited file")
    m4 = check_revision_meta(t, root, c, 4, 3, "external edit")
    t.eq(m4.get("planId"), None, "planId of an external edit")
    m5 = check_revision_meta(t, root, c, 5, 4)
    t.contains(str(m5.get("reason")), "--v=2", "reason of revision 5")
    live = read_bytes(mpath(root, c + ".yaml"))
    if os.path.exists(rpath(root, c, 5)):
        t.check(live == read_bytes(rpath(root, c, 5)), "live is not revision 5")
    cmd = container(load_yaml(t, live, "live"), c).get("command") or []
    t.contains(cmd, "--log-flush-frequency=7s", "the hand edit's flag in the new live file")
    t.contains(cmd, "--v=2", "the new flag in the new live file")
    t.eq(annotation(load_yaml(t, live, "live")), "5", "annotation of the live file")
    h = history_json(t, root, ["--component", c])
    revs = h.get(c, {}).get("revisions") or []
    t.eq([(r.get("revision"), r.get("reason")) for r in revs][1:2], [(4, "external edit")], "history shows the edit")

    # A hand edit before an upgrade is recorded too.
    root2 = t.new_root()
    t.expect_ok(root2, ["flags", "set", c, "--v=1", "--no-wait"], "first write")
    add_flags(root2, c, ["--log-flush-frequency=9s"])
    edited2 = read_bytes(mpath(root2, c + ".yaml"))
    t.expect_ok(root2, UPGRADE, "upgrade after a hand edit")
    t.eq(revision_numbers(root2, c), [1, 2, 3, 4, 5], f"{c}: revisions after the upgrade")
    if os.path.exists(rpath(root2, c, 3)):
        t.check(read_bytes(rpath(root2, c, 3)) == edited2, "revision 3 is not the hand-edited file")
    check_revision_meta(t, root2, c, 3, 2, "external edit")
    check_revision_meta(t, root2, c, 4, 3)
    check_revision_meta(t, root2, c, 5, 4)
    cmd = container(load_yaml(t, read_bytes(mpath(root2, c + ".yaml")), "live"), c).get("command") or []
    t.contains(cmd, "--log-flush-frequency=9s", "the hand edit survives the upgrade")


def test_lock(t):
    root = t.new_root()
    t.expect_ok(root, ["flags", "set", "kube-scheduler", "--v=1", "--no-wait"], "setup")
    lockdir = os.path.join(root, LOCK_DIR)
    os.makedirs(lockdir, mode=0o700, exist_ok=True)
    lock = os.path.join(lockdir, "lock")
    holder = "4242 cplet upgrade --x\n"
    write(lock, holder)
    p = spawn_lock_holder(t, root, 30)
    try:
        mutating = [
            UPGRADE,
            ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"],
            ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait"],
        ]
        for args in mutating:
            rc, out, err = t.run(root, args, unchanged=True, exclude=("run",))
            what = shell_quote(args)
            t.eq(rc, 2, f"{what} under a held lock: exit code (stderr {err.strip()!r})")
            t.check(t.elapsed < 2, f"{what} under a held lock took {t.elapsed:.2f}s")
            t.contains(err, "4242", f"{what}: stderr names the holder's pid")
            t.contains(err, "cplet upgrade --x", f"{what}: stderr names the holder's command")
            t.eq(read(lock), holder, f"{what}: the lock file content")
        for args in (["status"], ["status", "--json"], ["plan", "--binary-version", TARGET], ["history"],
                     ["history", "--json"], ["diff", "kube-scheduler", "1"],
                     ["upgrade", "--binary-version", TARGET, "--dry-run"]):
            rc, out, err = t.run(root, args, unchanged=True)
            t.eq(rc, 0, f"{shell_quote(args)} while the lock is held: exit code (stderr {err.strip()!r})")
        t.check(p.poll() is None, "the lock holder ended before the checks were done (too slow?)")
    finally:
        release_lock_holder(t, p)
    # Once released, the mutating command works and records itself as the holder.
    rc, out, err = t.run(root, ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"], unchanged=False)
    t.eq(rc, 0, f"flags set after the lock is released: exit code (stderr {err.strip()!r})")
    content = read(lock)
    t.check(re.fullmatch(r"\d+ cplet .*flags set kube-scheduler --v=3.*\n?", content), f"lock file content: {content!r}")
    t.check(not content.startswith("4242 "), f"lock file still names 4242: {content!r}")


def test_permissions(t):
    root = t.new_root()
    mdir = os.path.join(root, MANIFEST_DIR)
    os.chmod(mdir, 0o777)
    rc, out, err = t.run(root, UPGRADE, unchanged=True, exclude=("run",))
    t.eq(rc, 2, f"upgrade with a world-writable manifest dir: exit code (stderr {err.strip()!r})")
    t.contains(err, mdir, "world-writable manifest dir: stderr names it")
    t.contains(err, "writable", "world-writable manifest dir: stderr")
    t.check(not os.path.exists(os.path.join(root, "var")), "state directory created despite the refusal")
    for args in (["flags", "set", "kube-scheduler", "--v=2", "--no-wait"],):
        rc, out, err = t.run(root, args, unchanged=True, exclude=("run",))
        t.eq(rc, 2, f"{shell_quote(args)} with a world-writable manifest dir: exit code")
        t.contains(err, "writable", f"{shell_quote(args)}: stderr")
    os.chmod(mdir, 0o775)
    rc, out, err = t.run(root, UPGRADE, unchanged=True, exclude=("run",))
    t.eq(rc, 2, f"upgrade with a group-writable manifest dir: exit code (stderr {err.strip()!r})")
    os.chmod(mdir, 0o755)
    t.expect_ok(root, UPGRADE, "upgrade with a 0755 manifest dir")

    state = os.path.join(root, STATE_DIR)
    os.chmod(state, 0o777)
    for args in (["flags", "set", "kube-scheduler", "--v=2", "--no-wait"],
                 ["upgrade", "--binary-version", "v1.35.1", "--no-wait"],
                 ["rollback", "--component", "kube-scheduler", "--to-revision", "2", "--no-wait"]):
        rc, out, err = t.run(root, args, unchanged=True, exclude=("run",))
        what = shell_quote(args)
        t.eq(rc, 2, f"{what} with a world-writable {STATE_DIR}: exit code (stderr {err.strip()!r})")
        t.contains(err, state, f"{what}: stderr names {STATE_DIR}")
        t.contains(err, "writable", f"{what}: stderr")
    os.chmod(state, 0o700)
    revs = os.path.join(root, REVISIONS_DIR)
    os.chmod(revs, 0o777)
    rc, out, err = t.run(root, ["flags", "set", "kube-scheduler", "--v=2", "--no-wait"], unchanged=True, exclude=("run",))
    t.eq(rc, 2, f"world-writable revisions dir: exit code (stderr {err.strip()!r})")
    t.contains(err, revs, "world-writable revisions dir: stderr names it")
    os.chmod(revs, 0o700)
    cdir = rdir(root, "kube-scheduler")
    os.chmod(cdir, 0o777)
    rc, out, err = t.run(root, ["flags", "set", "kube-scheduler", "--v=2", "--no-wait"], unchanged=True, exclude=("run",))
    t.eq(rc, 2, f"world-writable revisions/kube-scheduler: exit code (stderr {err.strip()!r})")
    t.contains(err, "writable", "world-writable revisions/kube-scheduler: stderr")
    os.chmod(cdir, 0o700)

    # A symbolic link as the live manifest: refused, nothing written, the target untouched.
    root2 = t.new_root()
    elsewhere = os.path.join(root2, "elsewhere")
    os.makedirs(elsewhere)
    target = os.path.join(elsewhere, "kube-scheduler.yaml")
    shutil.move(mpath(root2, "kube-scheduler.yaml"), target)
    os.symlink(target, mpath(root2, "kube-scheduler.yaml"))
    for args in (UPGRADE, ["flags", "set", "kube-scheduler", "--v=2", "--no-wait"],
                 ["flags", "set", "kube-apiserver", "--v=2", "--no-wait"]):
        t.expect_refused(root2, args, f"symlinked live manifest: {shell_quote(args)}", ["kube-scheduler.yaml"])
    t.check(os.path.islink(mpath(root2, "kube-scheduler.yaml")), "the symlink was replaced")
    t.check(not os.path.exists(os.path.join(root2, "var")), "state directory created despite a symlink")

    # A symbolic link as a state directory: refused.
    root3 = t.new_root()
    other = os.path.join(root3, "other-state")
    os.makedirs(other, mode=0o700)
    os.makedirs(os.path.join(root3, "var", "lib"), mode=0o700)
    os.symlink(other, os.path.join(root3, STATE_DIR))
    rc, out, err = t.run(root3, UPGRADE, unchanged=True, exclude=("run",))
    t.eq(rc, 2, f"symlinked var/lib/cplet: exit code (stderr {err.strip()!r})")
    t.eq(listdir(other), [], "nothing written through the symlinked state directory")


def test_retention(t):
    root = t.new_root()
    write(os.path.join(root, "etc", "cplet", "config.yaml"),
          "apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\n"
          f"pluginDir: {os.path.realpath(PLUGINS)}\nrevisionsToKeep: 3\n")
    c = "kube-scheduler"
    for n in range(1, 7):
        rc, out, err = t.run(root, ["flags", "set", c, f"--v={n}", "--no-wait"], unchanged=False, plugin_dir=False)
        t.eq(rc, 0, f"flags set --v={n}: exit code (stderr {err.strip()!r})")
    nums = revision_numbers(root, c)
    t.eq(nums, [5, 6, 7], f"{c}: revisions kept")
    t.eq(listdir(rdir(root, c)), sorted(f"{n}.{e}" for n in (5, 6, 7) for e in ("yaml", "json")),
         f"{c}: files in the revision directory")
    live = read_bytes(mpath(root, c + ".yaml"))
    kept = [n for n in nums if os.path.exists(rpath(root, c, n)) and read_bytes(rpath(root, c, n)) == live]
    t.eq(kept, [7], "the live manifest is the newest kept revision")
    cmd = container(load_yaml(t, live, "live"), c).get("command") or []
    t.eq([f for f in cmd if f.startswith("--v=")], ["--v=6"], "live --v")
    rc, out, err = t.run(root, ["history", "--json", "--component", c], plugin_dir=False)
    t.eq(rc, 0, f"history after pruning: exit code (stderr {err.strip()!r})")
    try:
        doc = json.loads(out)
        comp = doc["components"][0]
        t.eq([r["revision"] for r in comp["revisions"]], [7, 6, 5], "history after pruning")
        t.eq(comp["live"], 7, "history: live after pruning")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        t.failures.append(f"history after pruning: {e}: {out!r}")
    # Rolling back to a pruned revision is an error; to a kept one works.
    rc, out, err = t.run(root, ["rollback", "--component", c, "--to-revision", "2", "--no-wait"], unchanged=True,
                         plugin_dir=False)
    t.check(rc in (1, 2), f"rollback to a pruned revision: exit code {rc}")
    rc, out, err = t.run(root, ["rollback", "--component", c, "--to-revision", "5", "--no-wait"], unchanged=False,
                         plugin_dir=False)
    t.eq(rc, 0, f"rollback to revision 5: exit code (stderr {err.strip()!r})")
    t.eq(revision_numbers(root, c), [6, 7, 8], f"{c}: revisions after the rollback")

    # A bad revisionsToKeep is refused.
    for bad in ("1", "0", "-3", "abc"):
        write(os.path.join(root, "etc", "cplet", "config.yaml"),
              "apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\n"
              f"pluginDir: {os.path.realpath(PLUGINS)}\nrevisionsToKeep: {bad}\n")
        t.expect_refused(root, ["flags", "set", c, "--v=9", "--no-wait"], f"revisionsToKeep: {bad}", ["revisionsToKeep"])


TESTS = [
    ("upgrade --no-wait writes revisions 1..3 per component", test_upgrade_writes_revisions),
    ("upgrade --json output", test_upgrade_json),
    ("gated upgrade on a dead node fails, restores and says so", test_gated_upgrade_on_a_dead_node),
    ("an entrypoint-only container cannot be gated: refused up front", test_entrypoint_only_not_gated),
    ("upgrade --dry-run prints diffs and writes nothing", test_upgrade_dry_run),
    ("a refused plan writes nothing", test_refused_plan_writes_nothing),
    ("history text and --json", test_history),
    ("diff between revisions and the live manifest", test_diff),
    ("rollback writes an earlier revision as a new one", test_rollback),
    ("high-water mark: recorded at adoption and by implied raises; two emulation rollbacks refused",
     test_high_water_recorded),
    ("high-water mark: an adopted explicit min-compatibility blocks the binary rollback", test_high_water_adopted_explicit),
    ("high-water mark: single writes (flags) refused below it without --force", test_high_water_flags),
    ("high-water mark: a recorded hand edit counts", test_high_water_external_edit),
    ("a single write moves emulation one minor, never below the min-compatibility in force",
     test_single_write_moves_one_minor),
    ("high-water mark: a corrupt file refuses every write and plan", test_high_water_corrupt),
    ("high-water mark: a deleted file is rebuilt from the revisions", test_high_water_deleted),
    ("flags set / unset and their refusals", test_flags),
    ("an external edit is recorded before the next write", test_external_edit),
    ("the lock refuses a second writer", test_lock),
    ("permissions and symbolic links", test_permissions),
    ("retention: revisionsToKeep", test_retention),
]


if __name__ == "__main__":
    sys.exit(run_tap(TESTS, Case))
