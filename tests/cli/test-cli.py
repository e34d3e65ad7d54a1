#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CLI tests of cplet (status, plan, options), printing TAP.

Environment (set by tests/meson.build):
  CPLET_BINARY            absolute path of the cplet binary
  CPLET_PLUGIN_BUILD_DIR  directory of the built-in plugins
  CPLET_EXAMPLES_DIR      the repository's examples/ (node root: examples/node)
  CPLET_FIXTURES_DIR      real-world manifests (see SOURCES.md there)

Every test builds its own node root in a temporary directory, runs cplet on it and checks
exit code, stdout and stderr. Around every command the whole root tree (paths, modes,
contents) is checksummed: status and plan must never write anything.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from cli_common import (COMPONENTS, CPLET, EXAMPLE_VERSION, EXAMPLES, FIXTURES, MANIFEST_DIR, PLUGINS,
                        TIMEOUT, BaseCase, add_flags, mpath, read, run_tap, set_version, shell_quote,
                        tree_checksum, tree_diff, write)
from cli_common import copy_example  # noqa: E402


STATUS_KEYS = [
    "name",
    "manifest",
    "image",
    "binaryVersion",
    "emulatedVersion",
    "emulatedVersionExplicit",
    "minCompatibilityVersion",
    "minCompatibilityVersionExplicit",
    "removedInNextMinor",
]
# The example node is kubeadm's: its kube-scheduler has --kubeconfig, which the scheduler's
# reference page lists as deprecated (data/releases/flags-1.3x.yaml): every plan says so.
SCHEDULER_WARNING = ("warning: kube-scheduler.yaml: --kubeconfig is deprecated in {}: ... This parameter is "
                     "ignored if a config file is specified in --config.\n")
STEP_KEYS = [
    "component",
    "manifest",
    "kind",
    "image",
    "binaryVersion",
    "emulatedVersion",
    "minCompatibilityVersion",
]


# --------------------------------------------------------------------------------------
# Test machinery


class Case(BaseCase):
    """One TAP test case: collects failed checks and diagnostics."""


    # ---- node roots

    def new_root(self, example=True):
        root = tempfile.mkdtemp(prefix="cplet-cli-")
        self.roots.append(root)
        mdir = os.path.join(root, MANIFEST_DIR)
        if example:
            copy_example(root)
        else:
            os.makedirs(mdir)
        return root

    def cleanup(self):
        for r in self.roots:
            shutil.rmtree(r, ignore_errors=True)

    # ---- running cplet

    def run(self, root, args, plugin_dir=True, root_opt=True, label=None):
        """Runs cplet; checks that the root tree did not change. Returns (rc, stdout, stderr)."""
        cmd = [CPLET]
        if plugin_dir:
            cmd += ["--plugin-dir", PLUGINS]
        if root_opt and root is not None:
            cmd += ["--root", root]
        cmd += list(args)
        return self.run_raw(cmd, root, label)

    def run_raw(self, cmd, root, label=None):
        before = tree_checksum(root) if root else None
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc = None
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            self.failures.append(f"timed out after {TIMEOUT}s: {shell_quote(cmd)}")
        if root:
            after = tree_checksum(root)
            self.check(before == after, f"the root tree changed during: {shell_quote(cmd)}\n{tree_diff(before, after)}")
        self.last = (cmd, rc, out, err)
        return rc, out, err

    def expect_ok_json(self, root, args, msg):
        rc, out, err = self.run(root, args)
        self.eq(rc, 0, f"{msg}: exit code of {shell_quote(args)} (stderr: {err.strip()!r})")
        try:
            return json.loads(out)
        except ValueError as e:
            self.failures.append(f"{msg}: stdout is not JSON ({e}): {out!r}")
            return None

    def expect_refused(self, root, args, msg, needles=()):
        rc, out, err = self.run(root, args)
        self.eq(rc, 2, f"{msg}: exit code of {shell_quote(args)}")
        self.eq(out, "", f"{msg}: stdout")
        self.check(err.strip() != "", f"{msg}: stderr is empty (no reason given)")
        for n in needles:
            self.contains(err, n, f"{msg}: stderr")
        return rc, out, err


def status_json(case, root, msg):
    doc = case.expect_ok_json(root, ["status", "--json"], msg)
    if not isinstance(doc, dict) or not isinstance(doc.get("components"), list):
        case.failures.append(f"{msg}: no components list in {doc!r}")
        return {}
    return {c.get("name"): c for c in doc["components"]}


def plan_steps(case, root, args, msg):
    doc = case.expect_ok_json(root, ["plan", "--json"] + list(args), msg)
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        case.failures.append(f"{msg}: no steps list in {doc!r}")
        return []
    for s in doc["steps"]:
        case.eq(sorted(s.keys()), sorted(STEP_KEYS), f"{msg}: keys of a step")
    return doc["steps"]


def summary(steps):
    return [(s.get("component"), s.get("kind"), s.get("emulatedVersion"), s.get("minCompatibilityVersion")) for s in steps]


def status_rows(out):
    """Parses the status table: {component: [columns]} plus the order of components."""
    rows, order = {}, []
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] in COMPONENTS + ["etcd"]:
            rows[cols[0]] = cols
            order.append(cols[0])
    return rows, order


# --------------------------------------------------------------------------------------
# Cases


def test_status_example(t):
    root = t.new_root()
    rc, out, err = t.run(root, ["status"])
    t.eq(rc, 0, "exit code")
    t.eq(err, "", "stderr")
    rows, order = status_rows(out)
    t.eq(order, COMPONENTS, "rows in rank order")
    t.check(out.splitlines() and out.splitlines()[0].split()[0] == "COMPONENT", f"header line missing: {out!r}")
    for c in COMPONENTS:
        line = next((l for l in out.splitlines() if l.split()[:1] == [c]), "")
        t.contains(line, f"{c}.yaml", f"{c} row: manifest")
        t.contains(line, f"registry.k8s.io/{c}:{EXAMPLE_VERSION}", f"{c} row: image")
        t.check(re.search(r"\sv1\.34\.2\s", line), f"{c} row: binary v1.34.2 missing: {line!r}")
        t.check(re.search(r"\s1\.34 \(implied\)\s+1\.33 \(implied\)\s*$", line),
                f"{c} row: want emulated '1.34 (implied)' then min-compat '1.33 (implied)': {line!r}")
    t.not_contains(out, "etcd", "status lists etcd")


def test_status_json(t):
    root = t.new_root()
    real = os.path.realpath(root)
    expected = {
        "components": [
            {
                "name": c,
                "manifest": os.path.join(real, MANIFEST_DIR, c + ".yaml"),
                "image": f"registry.k8s.io/{c}:{EXAMPLE_VERSION}",
                "binaryVersion": EXAMPLE_VERSION,
                "emulatedVersion": "1.34",
                "emulatedVersionExplicit": False,
                "minCompatibilityVersion": "1.33",
                "minCompatibilityVersionExplicit": False,
                "removedInNextMinor": [],
            }
            for c in COMPONENTS
        ]
    }
    rc1, out1, err1 = t.run(root, ["status", "--json"])
    t.eq(rc1, 0, "status --json: exit code")
    t.eq(err1, "", "status --json: stderr")
    try:
        doc = json.loads(out1)
    except ValueError as e:
        t.failures.append(f"stdout is not JSON: {e}: {out1!r}")
        return
    t.eq(doc, expected, "status --json document")
    for comp in doc.get("components", []):
        t.eq(list(comp.keys()), STATUS_KEYS, "keys (and their order) of a component")

    rc2, out2, err2 = t.run(root, ["--json", "status"])
    t.eq(rc2, 0, "--json status: exit code")
    t.eq(out2, out1, "cplet --json status vs cplet status --json")

    rc3, out3, err3 = t.run_raw([CPLET, "status", "--json", "--root", root, "--plugin-dir", PLUGINS], root)
    t.eq(rc3, 0, "status --json --root R (options after the command): exit code")
    t.eq(out3, out1, "options after the command give the same output")


def test_explicit_flags(t):
    variants = [
        # (flags, emulated, emulated explicit, min-compat, min-compat explicit)
        (["--emulated-version=1.33"], "1.33", True, "1.32", False),
        (["--emulated-version=1.33", "--min-compatibility-version=1.32"], "1.33", True, "1.32", True),
        (["--emulated-version=kube=1.33"], "1.33", True, "1.32", False),
        (["--emulated-version=1.32", "--emulated-version=1.33"], "1.33", True, "1.32", False),
        # Default min-compat = emulated - 1 = 1.31, raised to the floor max(1.31, 1.35 - 3) = 1.32.
        (["--emulated-version=1.32"], "1.32", True, "1.32", False),
        (["--emulated-version=v1.34"], "1.34", True, "1.33", False),
    ]
    for flags, e, ex, m, mx in variants:
        root = t.new_root()
        set_version(root, "v1.35.0", ["kube-apiserver"])
        add_flags(root, "kube-apiserver", flags)
        what = " ".join(flags)
        comps = status_json(t, root, what)
        a = comps.get("kube-apiserver", {})
        t.eq(a.get("binaryVersion"), "v1.35.0", f"{what}: binaryVersion")
        t.eq(a.get("emulatedVersion"), e, f"{what}: emulatedVersion")
        t.eq(a.get("emulatedVersionExplicit"), ex, f"{what}: emulatedVersionExplicit")
        t.eq(a.get("minCompatibilityVersion"), m, f"{what}: minCompatibilityVersion")
        t.eq(a.get("minCompatibilityVersionExplicit"), mx, f"{what}: minCompatibilityVersionExplicit")
        # The other components are untouched.
        s = comps.get("kube-scheduler", {})
        t.eq((s.get("emulatedVersion"), s.get("emulatedVersionExplicit")), ("1.34", False), f"{what}: scheduler")

        rc, out, err = t.run(root, ["status"])
        t.eq(rc, 0, f"{what}: text status exit code")
        line = next((l for l in out.splitlines() if l.split()[:1] == ["kube-apiserver"]), "")
        want = rf"\s{re.escape(e)} \({'explicit' if ex else 'implied'}\)\s+{re.escape(m)} \({'explicit' if mx else 'implied'}\)\s*$"
        t.check(re.search(want, line), f"{what}: text row {line!r} does not match {want!r}")


def test_plan_upgrade(t):
    root = t.new_root()
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.35.0"])
    t.eq(rc, 0, "text plan: exit code")
    t.eq(err, SCHEDULER_WARNING.format("1.35"), "text plan: stderr")
    t.contains(out, "6 steps", "text plan")
    steps = plan_steps(t, root, ["--binary-version", "v1.35.0"], "json plan")
    expected = [(c, "binary", "1.34", "1.33") for c in COMPONENTS] + [(c, "emulation", "1.35", "1.34") for c in COMPONENTS]
    t.eq(summary(steps), expected, "steps (component, kind, emulated, min-compat)")
    for s in steps:
        c = s.get("component")
        t.eq(s.get("image"), f"registry.k8s.io/{c}:v1.35.0", f"image of step {c} {s.get('kind')}")
        t.eq(s.get("binaryVersion"), "v1.35.0", f"binaryVersion of step {c} {s.get('kind')}")
        t.eq(s.get("manifest"), f"{c}.yaml", f"manifest of step {c} {s.get('kind')}")
    # Text order matches JSON order.
    names = re.findall(r"^\s*\d+\.\s+(\S+)\s+(\S+)", out, re.M)
    t.eq(names, [(s.get("component"), s.get("kind")) for s in steps], "text plan step order")


def test_plan_empty(t):
    root = t.new_root()
    doc = t.expect_ok_json(root, ["plan", "--binary-version", EXAMPLE_VERSION, "--json"], "json")
    t.eq((doc or {}).get("steps"), [], "steps")
    rc, out, err = t.run(root, ["plan", "--binary-version", EXAMPLE_VERSION])
    t.eq(rc, 0, "text: exit code")
    t.eq(err, "", "text: stderr")
    t.contains(out, "Nothing to do", "text")


def test_plan_skip_minor(t):
    root = t.new_root()
    set_version(root, "v1.33.5")
    comps = status_json(t, root, "status at 1.33")
    t.eq([comps.get(c, {}).get("emulatedVersion") for c in COMPONENTS], ["1.33"] * 3, "emulated at 1.33")
    steps = plan_steps(t, root, ["--binary-version", "v1.35.0"], "plan 1.33 -> 1.35")
    got = [(s.get("component"), s.get("kind"), s.get("emulatedVersion")) for s in steps]
    expected = ([(c, "binary", "1.33") for c in COMPONENTS] + [(c, "emulation", "1.34") for c in COMPONENTS]
                + [(c, "emulation", "1.35") for c in COMPONENTS])
    t.eq(got, expected, "9 steps: binaries pinned at 1.33, then 1.34, then 1.35")
    t.eq([s.get("minCompatibilityVersion") for s in steps[-3:]], ["1.34"] * 3, "final min-compat")
    t.eq({s.get("binaryVersion") for s in steps}, {"v1.35.0"}, "binary version of every step")


def test_plan_130_to_131(t):
    root = t.new_root()
    set_version(root, "v1.30.14")
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.31.0"])
    t.eq(rc, 0, f"text: exit code (stderr {err.strip()!r})")
    t.not_contains(out + err, "refused", "output")
    steps = plan_steps(t, root, ["--binary-version", "v1.31.0"], "json")
    t.eq([(s.get("component"), s.get("kind")) for s in steps], [(c, "binary") for c in COMPONENTS], "3 binary steps")
    t.eq([s.get("emulatedVersion") for s in steps], ["1.31"] * 3, "emulated after the binary step")
    t.eq([s.get("image") for s in steps], [f"registry.k8s.io/{c}:v1.31.0" for c in COMPONENTS], "images")


def test_refusals(t):
    root131 = t.new_root()
    set_version(root131, "v1.31.4")
    t.expect_refused(root131, ["plan", "--binary-version", "v1.35.0"], "1.31 -> 1.35",
                     ["cannot emulate 1.31", "at most v1.34"])
    t.expect_refused(root131, ["plan", "--binary-version", "v1.35.0", "--json"], "1.31 -> 1.35 --json")

    root = t.new_root()
    t.expect_refused(root, ["plan", "--binary-version", "v1.35.0", "--emulated-version", "1.36"], "emulated above binary",
                     ["1.36"])
    t.expect_refused(root, ["plan", "--binary-version", "v1.35.0", "--emulated-version", "kube=1.34.1"], "patch in emulated",
                     ["patch version not allowed"])
    for bad in ["1.x", "", "1.34 --foo"]:
        t.expect_refused(root, ["plan", "--binary-version", bad], f"--binary-version {bad!r}", ["--binary-version"])
    t.expect_refused(root, ["plan", "--binary-version", "v1.34.0", "--min-compatibility-version", "1.34"],
                     "min-compat before 1.35", ["--min-compatibility-version"])

    root135 = t.new_root()
    set_version(root135, "v1.35.0")
    t.expect_refused(root135, ["plan", "--binary-version", "v1.35.0", "--emulated-version", "1.33"],
                     "emulation rollback below min-compat", ["1.34"])


def test_emulation_downgrade(t):
    root = t.new_root()
    set_version(root, "v1.35.0")
    steps = plan_steps(t, root, ["--binary-version", "v1.35.0", "--emulated-version", "1.34"], "1.35 -> emulated 1.34")
    t.eq([(s.get("component"), s.get("kind"), s.get("emulatedVersion")) for s in steps],
         [(c, "emulation", "1.34") for c in reversed(COMPONENTS)], "3 emulation steps in reverse rank order")
    t.eq({s.get("binaryVersion") for s in steps}, {"v1.35.0"}, "binaries unchanged")


def test_min_compat_greenfield(t):
    root = t.new_root()
    set_version(root, "v1.35.0")
    steps = plan_steps(t, root, ["--binary-version", "v1.35.0", "--min-compatibility-version", "1.35"], "min-compat 1.35")
    t.eq(summary(steps), [(c, "min-compatibility", "1.35", "1.35") for c in COMPONENTS],
         "3 min-compatibility steps in rank order")


GO_RUNNER = """\
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.35.0
    command:
    - /go-runner
    args:
    - --log-file=/var/log/kube-apiserver.log
    - --also-stdout
    - /usr/local/bin/kube-apiserver
    - --emulated-version=1.34
    - --secure-port=6443
    - --etcd-servers=https://127.0.0.1:2379
"""


def test_identify_by_content(t):
    root = t.new_root()
    os.unlink(mpath(root, "kube-apiserver.yaml"))
    shutil.copy(os.path.join(FIXTURES, "kubeadm-v1.23.3-kube-apiserver-renamed-pod.yaml"), mpath(root, "weird-name.manifest"))
    comps = status_json(t, root, "renamed pod")
    a = comps.get("kube-apiserver", {})
    t.check(str(a.get("manifest", "")).endswith("/weird-name.manifest"), f"apiserver manifest: {a!r}")
    t.eq(a.get("binaryVersion"), "v1.23.3", "apiserver binary")
    t.eq(sorted(comps), sorted(COMPONENTS), "components found")
    rc, out, err = t.run(root, ["status"])
    t.eq(rc, 0, "text status exit code")
    line = next((l for l in out.splitlines() if l.split()[:1] == ["kube-apiserver"]), "")
    t.contains(line, "weird-name.manifest", "text row of kube-apiserver")

    root2 = t.new_root(example=False)
    write(mpath(root2, "apiserver.yaml"), GO_RUNNER)
    comps = status_json(t, root2, "go-runner")
    a = comps.get("kube-apiserver", {})
    t.eq(a.get("binaryVersion"), "v1.35.0", "go-runner binary")
    t.eq((a.get("emulatedVersion"), a.get("emulatedVersionExplicit")), ("1.34", True), "go-runner emulated")
    t.eq((a.get("minCompatibilityVersion"), a.get("minCompatibilityVersionExplicit")), ("1.33", False),
         "go-runner min-compat")
    t.check("problem" not in a, f"go-runner has a problem: {a.get('problem')!r}")


def test_backup_in_manifest_dir(t):
    root = t.new_root()
    src = mpath(root, "kube-apiserver.yaml")
    shutil.copy(src, src + ".bak")
    for args in (["status"], ["status", "--json"], ["plan", "--binary-version", "v1.35.0"]):
        rc, out, err = t.run(root, args)
        what = " ".join(args)
        t.eq(rc, 2, f"{what}: exit code")
        t.eq(out, "", f"{what}: stdout")
        t.contains(err, "kube-apiserver.yaml.bak", f"{what}: stderr names the backup")
        t.check(re.search(r"kube-apiserver\.yaml(?!\.bak)", err), f"{what}: stderr does not name kube-apiserver.yaml: {err!r}")
        t.contains(err, "kubelet runs", f"{what}: stderr explains the kubelet runs both")

    root2 = t.new_root()
    src = mpath(root2, "kube-apiserver.yaml")
    shutil.copy(src, os.path.join(os.path.dirname(src), ".kube-apiserver.yaml.bak"))
    rc, out, err = t.run(root2, ["status"])
    t.eq(rc, 0, f"dot-file backup is ignored: exit code (stderr {err.strip()!r})")
    t.not_contains(out, ".bak", "status with a dot-file backup")


def test_broken_yaml(t):
    root = t.new_root()
    name = "kubeadm-v1.29.2-kube-apiserver-BROKEN-indent.yaml"
    os.unlink(mpath(root, "kube-apiserver.yaml"))
    shutil.copy(os.path.join(FIXTURES, name), mpath(root, name))
    for args in (["status"], ["plan", "--binary-version", "v1.35.0"]):
        what = " ".join(args)
        rc, out, err = t.run(root, args)
        t.eq(rc, 2, f"{what}: exit code")
        if args == ["status"]:
            # status shows the node as it is, the unreadable file as an error row.
            t.check(re.search(r"^-\s+" + re.escape(name) + r"\s+\(unusable\)", out, re.M), f"{what}: error row: {out!r}")
        else:
            t.eq(out, "", f"{what}: stdout")
        t.check(re.search(re.escape(name) + r":\d+:\d+:", err), f"{what}: stderr lacks FILE:LINE:COL: {err!r}")
        t.contains(err, os.path.realpath(mpath(root, name)), f"{what}: stderr has the full path")
        m = re.search(re.escape(name) + r":(\d+):(\d+):", err)
        if m:
            t.check(int(m.group(1)) >= 1 and int(m.group(2)) >= 1, f"{what}: line/column are 1-based: {m.group(0)}")


SHELL_APISERVER = """\
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.34.2
    command: ["/bin/bash", "-ec"]
    args:
    - |
      exec kube-apiserver --secure-port=6443 --etcd-servers=https://127.0.0.1:2379
"""


def test_shell_script(t):
    root = t.new_root()
    write(mpath(root, "kube-apiserver.yaml"), SHELL_APISERVER)
    rc, out, err = t.run(root, ["status"])
    t.eq(rc, 0, f"status exit code (stderr {err.strip()!r})")
    t.contains(out, "shell script", "text status")
    comps = status_json(t, root, "status --json")
    a = comps.get("kube-apiserver", {})
    t.check("shell script" in str(a.get("problem", "")), f"JSON problem field: {a!r}")
    t.check("problem" not in comps.get("kube-scheduler", {}), "scheduler has no problem")
    t.expect_refused(root, ["plan", "--binary-version", "v1.35.0"], "plan",
                     [os.path.realpath(mpath(root, "kube-apiserver.yaml")), "shell script"])


def test_digest_only(t):
    root = t.new_root()
    digest = "sha256:" + "0123456789abcdef" * 4
    p = mpath(root, "kube-apiserver.yaml")
    text = read(p)
    write(p, text.replace(f"registry.k8s.io/kube-apiserver:{EXAMPLE_VERSION}", f"registry.k8s.io/kube-apiserver@{digest}"))
    comps = status_json(t, root, "status --json")
    a = comps.get("kube-apiserver", {})
    t.check("binaryVersion" in a and a.get("binaryVersion") is None, f"binaryVersion is null: {a!r}")
    t.eq(a.get("image"), f"registry.k8s.io/kube-apiserver@{digest}", "image")
    t.contains(str(a.get("problem", "")), "digest", "problem explains why")
    rc, out, err = t.run(root, ["status"])
    t.eq(rc, 0, "text status exit code")
    line = next((l for l in out.splitlines() if l.split()[:1] == ["kube-apiserver"]), "")
    t.contains(line, "unknown", "text row shows the binary as unknown")
    t.contains(out, "digest", "text status explains why")
    t.expect_refused(root, ["plan", "--binary-version", "v1.35.0"], "plan", ["digest"])


def test_options(t):
    root = t.new_root()
    rc, out, err = t.run(root, ["--help"])
    t.eq(rc, 0, "--help: exit code")
    for c in ("status", "plan"):
        t.check(re.search(rf"^\s+{c}\s", out, re.M), f"--help lists {c}: {out!r}")
    rc, out, err = t.run(root, ["status", "--help"])
    t.eq(rc, 0, "status --help: exit code")
    t.contains(out, "cplet status", "status --help")
    t.contains(out, "emulated", "status --help")
    rc, out, err = t.run(root, ["plan", "--help"])
    t.eq(rc, 0, "plan --help: exit code")
    t.contains(out, "cplet plan", "plan --help")
    t.contains(out, "--binary-version", "plan --help")

    rc, out, err = t.run(root, ["--version"])
    t.eq(rc, 0, "--version: exit code")
    t.check(re.fullmatch(r"cplet \S+\n", out), f"--version output: {out!r}")

    rc, out, err = t.run(root, ["frobnicate"])
    t.eq(rc, 2, "unknown command: exit code")
    t.contains(err, "frobnicate", "unknown command: stderr")
    rc, out, err = t.run(root, ["status", "--frobnicate"])
    t.eq(rc, 2, "unknown option: exit code")
    t.contains(err, "--frobnicate", "unknown option: stderr")
    rc, out, err = t.run(root, ["status", "--binary-version", "v1.35.0"])
    t.eq(rc, 2, "status --binary-version: exit code")
    t.contains(err, "--binary-version", "status --binary-version: stderr")
    t.eq(out, "", "status --binary-version: stdout")
    rc, out, err = t.run(root, ["plan"])
    t.eq(rc, 2, "plan without --binary-version: exit code")
    t.contains(err, "--binary-version", "plan without --binary-version: stderr")
    rc, out, err = t.run(root, [])
    t.eq(rc, 2, "no command: exit code")

    rc, out, err = t.run_raw([CPLET, "--plugin-dir", PLUGINS, "--root", "/nonexistent-cplet-root", "status"], root)
    t.eq(rc, 2, "--root /nonexistent: exit code")
    t.contains(err, "/nonexistent-cplet-root", "--root /nonexistent: stderr")
    rc, out, err = t.run_raw([CPLET, "--plugin-dir", "/nonexistent-cplet-plugins", "--root", root, "status"], root)
    t.eq(rc, 2, "--plugin-dir /nonexistent: exit code")
    t.contains(err, "/nonexistent-cplet-plugins", "--plugin-dir /nonexistent: stderr")

    cfgdir = tempfile.mkdtemp(prefix="cplet-cli-cfg-")
    t.roots.append(cfgdir)
    bad = os.path.join(cfgdir, "bad.yaml")
    write(bad, "apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\nfrobnicate: 1\n")
    rc, out, err = t.run(root, ["--config", bad, "status"])
    t.eq(rc, 2, "config with an unknown field: exit code")
    t.contains(err, "frobnicate", "config with an unknown field: stderr")

    good = os.path.join(cfgdir, "good.yaml")
    write(good, f"apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\npluginDir: {os.path.realpath(PLUGINS)}\n")
    rc, out, err = t.run(root, ["--config", good, "status", "--json"], plugin_dir=False)
    t.eq(rc, 0, f"valid config without --plugin-dir: exit code (stderr {err.strip()!r})")
    try:
        t.eq([c["name"] for c in json.loads(out)["components"]], COMPONENTS, "valid config: components")
    except (ValueError, KeyError, TypeError) as e:
        t.failures.append(f"valid config: bad output {e}: {out!r}")


def test_unmanaged_untouched(t):
    root = t.new_root()
    etcd = mpath(root, "etcd.yaml")
    before = read(etcd)
    st_before = os.stat(etcd)
    tree_before = tree_checksum(root)
    commands = [
        ["status"],
        ["status", "--json"],
        ["plan", "--binary-version", "v1.35.0"],
        ["plan", "--binary-version", "v1.35.0", "--json"],
        ["plan", "--binary-version", "v1.34.3"],
    ]
    for args in commands:
        rc, out, err = t.run(root, args)
        what = " ".join(args)
        t.eq(rc, 0, f"{what}: exit code (stderr {err.strip()!r})")
        t.not_contains(out + err, "etcd", f"{what}: output mentions etcd")
        for c in COMPONENTS:
            t.contains(out, c, f"{what}: output")
    steps = plan_steps(t, root, ["--binary-version", "v1.35.0"], "json plan")
    t.eq(sorted({s.get("component") for s in steps}), COMPONENTS, "components with steps")
    t.check(all(s.get("manifest") != "etcd.yaml" for s in steps), "a step targets etcd.yaml")
    t.eq(read(etcd), before, "etcd.yaml content")
    st_after = os.stat(etcd)
    t.eq((st_after.st_mode, st_after.st_mtime_ns, st_after.st_ino),
         (st_before.st_mode, st_before.st_mtime_ns, st_before.st_ino), "etcd.yaml mode/mtime/inode")
    t.eq(tree_checksum(root), tree_before, "root tree after all commands")
    t.eq(sorted(os.listdir(os.path.join(root, MANIFEST_DIR))), sorted(c + ".yaml" for c in COMPONENTS + ["etcd"]),
         "manifest directory listing")


def test_image_repository(t):
    root = t.new_root()
    steps = plan_steps(t, root, ["--binary-version", "v1.35.0", "--image-repository", "example.org/mirror"],
                       "--image-repository example.org/mirror")
    binary = [s for s in steps if s.get("kind") == "binary"]
    t.eq([s.get("component") for s in binary], COMPONENTS, "binary steps")
    images = [s.get("image") for s in binary]
    t.eq(len(set(images)), len(images), f"each component keeps its own image (got {images})")
    t.eq(images, [f"example.org/mirror/{c}:v1.35.0" for c in COMPONENTS], "images from the mirror")
    # The manifests' own registry: nothing to change.
    steps = plan_steps(t, root, ["--binary-version", EXAMPLE_VERSION, "--image-repository", "registry.k8s.io"],
                       "--image-repository registry.k8s.io")
    t.eq([s.get("image") for s in steps], [], "steps when the repository is already in use")
    t.expect_refused(root, ["plan", "--binary-version", "v1.35.0", "--image-repository", "example.org/mirror:v1"],
                     "--image-repository with a tag", ["--image-repository"])


def test_plan_components(t):
    root = t.new_root()
    pin = ["--binary-version", "v1.35.0", "--emulated-version", "1.34"]
    api, kcm, sched = COMPONENTS
    doc = t.expect_ok_json(root, ["plan", "--json", "--components", api] + pin, "--components kube-apiserver")
    doc = doc or {}
    t.eq(summary(doc.get("steps") or []), [(api, "binary", "1.34", "1.33")], "steps of --components kube-apiserver")
    t.eq((doc.get("target") or {}).get("components"), [api], "target.components in plan --json")
    # a comma-separated list, in any order: the planner's order (rank) decides
    steps = plan_steps(t, root, ["--components", f"{sched},{api}"] + pin, "--components scheduler,apiserver")
    t.eq(summary(steps), [(api, "binary", "1.34", "1.33"), (sched, "binary", "1.34", "1.33")],
         "steps of --components kube-scheduler,kube-apiserver")
    # every component named: the full plan
    t.eq(plan_steps(t, root, ["--components", ",".join(COMPONENTS), "--binary-version", "v1.35.0"], "all named"),
         plan_steps(t, root, ["--binary-version", "v1.35.0"], "none named"), "all components named = the full plan")
    rc, out, err = t.run(root, ["plan", "--components", api] + pin)
    t.eq(rc, 0, "text plan with --components: exit code")
    t.contains(out, "Plan: 1 step to binary v1.35.0, emulated 1.34, min-compatibility 1.33, moving kube-apiserver",
               "text plan with --components")
    rc, out, err = t.run(root, ["plan", "--components", kcm, "--binary-version", EXAMPLE_VERSION])
    t.contains(out, f"Nothing to do: {kcm} already runs binary {EXAMPLE_VERSION}", "empty plan with --components")
    # the controller-manager cannot go first: refused naming the API server
    t.expect_refused(root, ["plan", "--components", kcm] + pin, "--components kube-controller-manager first",
                     ["kube-apiserver would have to move first"])


TESTS = [
    ("status on the example node", test_status_example),
    ("status --json schema and option placement", test_status_json),
    ("explicit --emulated-version / --min-compatibility-version in a manifest", test_explicit_flags),
    ("plan --binary-version v1.35.0 on the example node", test_plan_upgrade),
    ("empty plan", test_plan_empty),
    ("skip-minor plan 1.33 -> 1.35", test_plan_skip_minor),
    ("plan 1.30 -> 1.31", test_plan_130_to_131),
    ("refused plans and invalid targets exit 2", test_refusals),
    ("emulation downgrade in reverse order", test_emulation_downgrade),
    ("greenfield min-compatibility 1.35", test_min_compat_greenfield),
    ("components identified by content (renamed pod, go-runner)", test_identify_by_content),
    ("backup inside the manifest directory", test_backup_in_manifest_dir),
    ("broken YAML names file:line:column", test_broken_yaml),
    ("shell-script container", test_shell_script),
    ("digest-only image", test_digest_only),
    ("command-line options", test_options),
    ("unmanaged pods and the root tree stay untouched", test_unmanaged_untouched),
    ("plan --image-repository keeps each component's image name", test_image_repository),
    ("plan --components: only the named components move", test_plan_components),
]


if __name__ == "__main__":
    sys.exit(run_tap(TESTS, Case))
