#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of cplet's gated rollouts on a simulated control-plane node, printing TAP.

Each case starts its own simulated node (tests/sim/simnode.py: a fake kubelet running fake
kube-apiserver / kube-controller-manager / kube-scheduler processes from static-pod
manifests under a temporary root), runs cplet against it and checks what the kubelet saw
(events.jsonl: start/stop/exit with wall-clock times, argv and image), what the components
report (/version, /healthz over HTTPS), the manifests, revisions and the rollout journal.
Every case stops its node and checks that none of its processes (nor a cplet it started) is
left.

Environment (set by tests/meson.build):
  CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR, CPLET_FIXTURES_DIR
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "crash"))

import shim  # noqa: E402
from e2e_util import (  # noqa: E402
    ANNOTATION, COMPONENTS, HEALTHZ, MANIFEST_DIR, CpletRun, SimNode,
    annotation, argv_of, container, cplet_cmd, flag_value, image_tag, journal, live_manifests, load_yaml, mpath,
    parse_json_lines, pid_alive, read_bytes, rdir, revision_meta, revision_numbers, shell_quote,
    run_tap, strip_annotation, tree_checksum, tree_diff,
)

OLD = "v1.34.2"
NEW = "v1.35.0"
TIMEOUT = 60  # any single cplet command
GATE = ["--stable-for", "0s", "--step-timeout", "10s"]
UPGRADE = ["upgrade", "--binary-version", NEW] + GATE + ["--json"]
APISERVER, KCM, SCHEDULER = COMPONENTS
ORDER = [APISERVER, KCM, SCHEDULER]


# --------------------------------------------------------------------------------------
# Test machinery


class Case:
    """One TAP test case: collects failed checks; owns its nodes, temporary roots and cplets."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.nodes = []
        self.roots = []
        self.runs = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)

    def eq(self, actual, expected, msg):
        return self.check(actual == expected, "%s: expected %r, got %r" % (msg, expected, actual))

    def contains(self, haystack, needle, msg):
        return self.check(needle in (haystack or ""), "%s: %r not in %r" % (msg, needle, haystack))

    # ---- nodes

    def node(self, version=OLD, knobs=None, backoff=0.1):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-e2e-"))
        self.roots.append(root)
        n = SimNode(root, version, knobs=knobs or {}, backoff=backoff, backoff_max=1.0, grace=2.0)
        self.nodes.append(n)
        n.up(timeout=20)
        return n

    def cleanup(self):
        for r in self.runs:
            r.kill_if_running()
            if pid_alive(r.pid):
                self.failures.append("cplet pid %d still runs after the case" % r.pid)
        for n in self.nodes:
            left = n.down()
            if left:
                self.failures.append("processes left after stopping the node %s: %s" % (n.root, left))
            else:
                # down() kills stragglers; the case must not have needed it
                pass
            still = n.processes()
            if still:
                self.failures.append("node %s still has processes: %s" % (n.root, still))
        for r in self.roots:
            shutil.rmtree(r, ignore_errors=True)

    # ---- cplet

    def run(self, node, args, timeout=TIMEOUT):
        """Runs cplet to completion: (rc, stdout, stderr, elapsed seconds)."""
        cmd = cplet_cmd(node.root, args)
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc = None
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            self.failures.append("timed out after %ss: %s" % (timeout, shell_quote(cmd)))
        return rc, out, err, time.monotonic() - start

    def expect(self, node, args, code, msg, timeout=TIMEOUT):
        rc, out, err, el = self.run(node, args, timeout)
        self.eq(rc, code, "%s: exit code of cplet %s (stderr: %r; stdout tail: %r)"
                % (msg, shell_quote(args), err.strip(), out[-600:]))
        return out, err

    def expect_refused(self, node, args, msg, needles=(), code=2):
        """Exit `code`, a reason on stderr, manifests/state/lock exactly as before."""
        before = tree_checksum(node.root)
        rc, out, err, el = self.run(node, args)
        after = tree_checksum(node.root)
        self.eq(rc, code, "%s: exit code of cplet %s (stderr: %r)" % (msg, shell_quote(args), err.strip()))
        self.check(err.strip() != "", "%s: no reason on stderr" % msg)
        for n in needles:
            self.contains(err, n, "%s: stderr" % msg)
        self.check(before == after, "%s: files changed by a refused command:\n%s" % (msg, tree_diff(before, after)))
        return err

    def start(self, node, args):
        r = CpletRun(node.root, args)
        self.runs.append(r)
        return r

    def status_json(self, node, msg="status --json"):
        out, err = self.expect(node, ["status", "--json"], 0, msg)
        try:
            doc = json.loads(out)
        except ValueError as e:
            self.failures.append("%s: not JSON (%s): %r" % (msg, e, out))
            return {}
        return doc

    def history(self, node):
        out, err = self.expect(node, ["history", "--json"], 0, "history --json")
        try:
            doc = json.loads(out)
        except ValueError:
            self.failures.append("history --json: not JSON: %r" % out)
            return {}
        return {c.get("name"): c for c in doc.get("components", [])}

    # ---- node state checks

    def check_healthy(self, node, msg):
        for c in COMPONENTS:
            code, body = node.get(c, HEALTHZ, 3.0)
            if code != 200:
                # a component may still be settling after cplet returned: that would be a bug,
                # but say what it answers a moment later too
                time.sleep(0.5)
                code2, body2 = node.get(c, HEALTHZ, 3.0)
                self.failures.append("%s: %s %s answered %r (%r); 0.5 s later %r"
                                     % (msg, c, HEALTHZ, code, body[:200], code2))

    def check_versions(self, node, binary, emulated, min_compat, msg):
        """/version of the fake API server."""
        v = node.version() or {}
        self.eq(v.get("gitVersion"), binary, "%s: /version gitVersion" % msg)
        self.eq("%s.%s" % (v.get("emulationMajor"), v.get("emulationMinor")), emulated,
                "%s: /version emulation" % msg)
        if min_compat:
            self.eq("%s.%s" % (v.get("minCompatibilityMajor"), v.get("minCompatibilityMinor")), min_compat,
                    "%s: /version min-compatibility" % msg)

    def check_running(self, node, binary, msg, emulated_flag="any"):
        """The process the kubelet runs now for each manifest: its image and --emulated-version."""
        running = running_starts(node)
        for c in COMPONENTS:
            e = running.get(c)
            if not self.check(e is not None, "%s: no running process for %s (kubelet events)" % (msg, c)):
                continue
            self.eq(image_tag(e["image"]), binary, "%s: image of the running %s" % (msg, c))
            if emulated_flag != "any":
                self.eq(flag_value(e["argv"], "emulated-version"), emulated_flag,
                        "%s: --emulated-version of the running %s" % (msg, c))

    def check_status(self, node, binary, emulated, min_compat, msg, emulated_explicit=None,
                     min_compat_explicit=None, interrupted=False):
        doc = self.status_json(node, msg + ": status --json")
        comps = {c.get("name"): c for c in doc.get("components", [])}
        self.eq(sorted(comps), sorted(COMPONENTS), "%s: components in status" % msg)
        for c in COMPONENTS:
            s = comps.get(c, {})
            self.eq(s.get("binaryVersion"), binary, "%s: status %s binaryVersion" % (msg, c))
            self.eq(s.get("emulatedVersion"), emulated, "%s: status %s emulatedVersion" % (msg, c))
            self.eq(s.get("minCompatibilityVersion"), min_compat, "%s: status %s minCompatibilityVersion" % (msg, c))
            if emulated_explicit is not None:
                self.eq(s.get("emulatedVersionExplicit"), emulated_explicit,
                        "%s: status %s emulatedVersionExplicit" % (msg, c))
            if min_compat_explicit is not None:
                self.eq(s.get("minCompatibilityVersionExplicit"), min_compat_explicit,
                        "%s: status %s minCompatibilityVersionExplicit" % (msg, c))
            self.check("problem" not in s, "%s: status %s has a problem: %r" % (msg, c, s.get("problem")))
        self.eq("interruptedRollout" in doc, interrupted, "%s: interruptedRollout in status --json" % msg)
        return doc

    def check_journal(self, node, phase, msg):
        j = journal(node.root)
        if self.check(j is not None, "%s: no readable journal %s" % (msg, "var/lib/cplet/rollout.json")):
            self.eq(j.get("phase"), phase, "%s: journal phase (message %r)" % (msg, j.get("message")))
        return j or {}

    def check_equal_to_originals(self, node, originals, msg):
        """Every live manifest equals the original apart from the revision annotation."""
        for c in COMPONENTS:
            live = load_yaml(read_bytes(mpath(node.root, c)))
            orig = load_yaml(originals[c])
            if strip_annotation(live) != strip_annotation(orig):
                self.failures.append("%s: %s differs from the original beyond %s:\n%s"
                                     % (msg, c, ANNOTATION, doc_diff(orig, live)))

    def check_live_is_revision(self, node, msg):
        """Invariant 1: every live manifest is byte-equal to a stored revision."""
        for c in COMPONENTS:
            live = read_bytes(mpath(node.root, c))
            revs = {n: read_bytes(os.path.join(rdir(node.root, c), "%d.yaml" % n))
                    for n in revision_numbers(node.root, c)}
            match = [n for n, b in revs.items() if b == live]
            doc = load_yaml(live)
            if self.check(match, "%s: live %s equals no stored revision (%s)" % (msg, c, sorted(revs))):
                # an adopted revision is the original, byte for byte: no annotation in it
                if revision_meta(node.root, c, match[-1]).get("reason") != "adopted":
                    self.eq(annotation(doc), str(match[-1]), "%s: %s revision annotation" % (msg, c))

    def check_no_dotfiles(self, node, msg):
        """Invariant 2, and a clean store: no temporary left in the manifest directory nor in
        the revision directories, no revision .yaml without its .json (or the reverse)."""
        d = os.path.join(node.root, MANIFEST_DIR)
        names = sorted(os.listdir(d))
        self.eq(names, sorted(c + ".yaml" for c in COMPONENTS), "%s: files in the manifest dir" % msg)
        for c in COMPONENTS:
            rd = rdir(node.root, c)
            if not os.path.isdir(rd):
                continue
            files = sorted(os.listdir(rd))
            self.eq([f for f in files if f.startswith(".")], [], "%s: dot-files in %s" % (msg, rd))
            yamls = {f[:-5] for f in files if f.endswith(".yaml") and not f.startswith(".")}
            jsons = {f[:-5] for f in files if f.endswith(".json") and not f.startswith(".")}
            self.eq(sorted(yamls ^ jsons), [], "%s: revisions of %s without their pair" % (msg, c))


def doc_diff(a, b):
    import difflib
    sa = json.dumps(strip_annotation(a), indent=1, sort_keys=True).splitlines()
    sb = json.dumps(strip_annotation(b), indent=1, sort_keys=True).splitlines()
    return "\n".join(list(difflib.unified_diff(sa, sb, "original", "live", lineterm=""))[:30])


def comp_of(fname):
    return fname[:-5] if fname.endswith(".yaml") else fname


def starts_since(node, t0):
    """Kubelet "start" events after wall-clock time t0, in order."""
    return [e for e in node.events("start") if e["t"] >= t0]


def running_starts(node):
    """{component: the start event of the process the kubelet runs now}."""
    cur = {}
    for e in node.events():
        if e["event"] == "start":
            cur[e["file"]] = e
        elif e["event"] in ("stop", "exit") and e["file"] in cur and cur[e["file"]]["pid"] == e["pid"]:
            del cur[e["file"]]
    return {comp_of(f): e for f, e in cur.items() if pid_alive(e["pid"])}


def restart_signature(starts):
    """[(component, image tag, --emulated-version value or None, --min-compatibility-version)]"""
    return [(comp_of(e["file"]), image_tag(e["image"]), flag_value(e["argv"], "emulated-version"),
             flag_value(e["argv"], "min-compatibility-version")) for e in starts]


def wall():
    return time.time()


def check_finished(t, out, result, msg):
    evs = parse_json_lines(out)
    fin = [e for e in evs if e.get("event") == "finished"]
    if t.check(fin, "%s: no finished event in cplet --json output: %r" % (msg, out[-500:])):
        t.eq(fin[-1].get("result"), result, "%s: finished result" % msg)
        t.check(evs[-1].get("event") == "finished", "%s: the finished event is not the last line" % msg)
    for e in evs:
        if e.get("event") != "finished":
            t.check(isinstance(e.get("time"), float) and abs(e["time"] - time.time()) < 600,
                    "%s: event without a wall-clock time: %r" % (msg, e))
            t.check(e.get("event") in ("step", "written", "waiting", "done", "failed", "restore", "unwind"),
                    "%s: unexpected event kind %r" % (msg, e.get("event")))
    return evs


def done_steps(evs):
    """[(component, kind)] of the done events of plan steps (in order)."""
    return [(e.get("component"), e.get("kind")) for e in evs if e.get("event") == "done"]


def check_upgrade_order(t, sig, phases, msg):
    """sig: restart_signature of the starts during an upgrade. phases: list of
    (tag, emulated flag value or None) per phase, each applying to apiserver, kcm, scheduler."""
    expected = []
    for tag, emu in phases:
        for c in ORDER:
            expected.append((c, tag, emu))
    got = [(c, tag, emu) for c, tag, emu, _mc in sig]
    t.eq(got, expected, "%s: restarts seen by the kubelet (component, image tag, --emulated-version)" % msg)


# --------------------------------------------------------------------------------------
# 1. full upgrade


def test_full_upgrade(t):
    node = t.node(OLD)
    t0 = wall()
    out, err = t.expect(node, UPGRADE, 0, "upgrade 1.34 -> 1.35")
    evs = check_finished(t, out, "done", "upgrade")
    t.eq(done_steps(evs), [(c, "binary") for c in ORDER] + [(c, "emulation") for c in ORDER],
         "done events of cplet --json")

    starts = starts_since(node, t0)
    sig = restart_signature(starts)
    check_upgrade_order(t, sig, [(NEW, "1.34"), (NEW, None)], "1.34 -> 1.35")
    # the same, said as the properties asked for
    binary = [e for e in starts if image_tag(e["image"]) == NEW and flag_value(e["argv"], "emulated-version") == "1.34"]
    emul = [e for e in starts if flag_value(e["argv"], "emulated-version") is None]
    t.eq(len(binary), 3, "binary restarts (v1.35.0 with --emulated-version=1.34)")
    t.eq(len(emul), 3, "emulation restarts (no --emulated-version)")
    if binary and emul:
        t.check(max(e["t"] for e in binary) < min(e["t"] for e in emul),
                "a binary restart came after an emulation change: %r" % sig)
        t.eq(comp_of(binary[0]["file"]), APISERVER, "first binary restart")
        t.eq(comp_of(emul[0]["file"]), APISERVER, "first emulation restart")
    t.eq([e for e in node.events("exit") if e["t"] >= t0], [], "no process exited on its own")
    # each new process started only after the old one stopped (the kubelet's way), and each
    # step's process started after the previous step was reported done
    dones = [e for e in evs if e.get("event") == "done"]
    for i, s in enumerate(starts[1:], 1):
        if i < len(dones):
            t.check(s["t"] > dones[i - 1]["time"] - 0.005,
                    "restart %d (%s) began before step %d was done" % (i + 1, s["file"], i))

    t.check_status(node, NEW, "1.35", "1.34", "after the upgrade", emulated_explicit=False,
                   min_compat_explicit=False)
    t.check_versions(node, NEW, "1.35", "1.34", "after the upgrade")
    t.check_healthy(node, "after the upgrade")
    t.check_running(node, NEW, "after the upgrade", emulated_flag=None)
    t.check_journal(node, "done", "after the upgrade")
    t.check_live_is_revision(node, "after the upgrade")
    t.check_no_dotfiles(node, "after the upgrade")


# --------------------------------------------------------------------------------------
# 2. skip-minor
    # every revision whose gate passed is marked healthy (retention keeps the newest such)
    for c in COMPONENTS:
        meta = json.loads(read_bytes(os.path.join(node.root, "var/lib/cplet/revisions", c, "3.json")))
        t.eq(meta.get("healthy"), True, "%s revision 3 marked healthy" % c)
        meta = json.loads(read_bytes(os.path.join(node.root, "var/lib/cplet/revisions", c, "1.json")))
        t.eq(meta.get("healthy"), False, "%s adopted revision 1 not claimed healthy" % c)


def test_skip_minor(t):
    node = t.node("v1.33.5")
    t0 = wall()
    out, err = t.expect(node, UPGRADE, 0, "upgrade 1.33 -> 1.35")
    evs = check_finished(t, out, "done", "upgrade")
    t.eq(len(done_steps(evs)), 9, "steps done")
    t.eq(done_steps(evs), [(c, "binary") for c in ORDER] + [(c, "emulation") for c in ORDER] * 2,
         "done events of cplet --json")
    sig = restart_signature(starts_since(node, t0))
    check_upgrade_order(t, sig, [(NEW, "1.33"), (NEW, "1.34"), (NEW, None)], "1.33 -> 1.35")
    t.eq([e for e in node.events("exit") if e["t"] >= t0], [], "no process exited on its own")
    t.check_status(node, NEW, "1.35", "1.34", "after the upgrade")
    t.check_versions(node, NEW, "1.35", "1.34", "after the upgrade")
    t.check_healthy(node, "after the upgrade")
    t.check_journal(node, "done", "after the upgrade")
    t.check_live_is_revision(node, "after the upgrade")


# --------------------------------------------------------------------------------------
# 3./4. a new binary that never becomes ready


NEVER_READY_KCM = {KCM: {"versions": {"v1.35": {"neverReady": True}}}}


def test_never_ready_rollback(t):
    node = t.node(OLD, knobs=NEVER_READY_KCM)
    originals = live_manifests(node.root)
    t0 = wall()
    out, err = t.expect(node, ["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", "5s",
                               "--json"], 1, "upgrade with a never-ready controller-manager")
    evs = check_finished(t, out, "failed", "upgrade")
    t.contains(err, KCM, "stderr names the component")
    t.contains(err, "timed out", "stderr")
    t.contains(err, "last probe", "stderr")
    t.check(re.search(r"GET https://127\.0\.0\.1:%d/healthz: 500" % node.ports[KCM], err),
            "stderr does not quote the last probe of the controller-manager (GET .../healthz: 500): %r" % err)
    failed = [e for e in evs if e.get("event") == "failed"]
    t.check(failed and failed[0].get("component") == KCM and failed[0].get("step") == 2,
            "first failed event is not step 2 (controller-manager): %r" % failed[:1])
    t.check([e for e in evs if e.get("event") == "restore" and e.get("component") == KCM],
            "no restore event for the controller-manager")
    t.check([e for e in evs if e.get("event") == "unwind" and e.get("component") == APISERVER],
            "no unwind event for the API server")
    t.check(not [e for e in evs if e.get("event") in ("restore", "unwind") and e.get("component") == SCHEDULER],
            "the scheduler (never touched) was restored or unwound")

    # kubelet: apiserver 1.35, kcm 1.35 (never ready), kcm back to 1.34, apiserver back to 1.34
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, tag, emu) for c, tag, emu, _ in sig],
         [(APISERVER, NEW, "1.34"), (KCM, NEW, "1.34"), (KCM, OLD, None), (APISERVER, OLD, None)],
         "restarts seen by the kubelet")

    t.check_equal_to_originals(node, originals, "after the rollback")
    t.check_healthy(node, "after the rollback")
    t.check_running(node, OLD, "after the rollback", emulated_flag=None)
    t.check_versions(node, OLD, "1.34", None, "after the rollback")
    t.check_status(node, OLD, "1.34", "1.33", "after the rollback")
    t.check_journal(node, "failed", "after the rollback")
    t.check_live_is_revision(node, "after the rollback")
    t.check_no_dotfiles(node, "after the rollback")
    h = t.history(node)
    kcm_reasons = [r.get("reason") or "" for r in h.get(KCM, {}).get("revisions", [])]
    api_reasons = [r.get("reason") or "" for r in h.get(APISERVER, {}).get("revisions", [])]
    t.check(any("restore" in r for r in kcm_reasons), "no restore revision in the controller-manager's history: %r"
            % kcm_reasons)
    t.check(any("unwind" in r for r in api_reasons), "no unwind revision in the API server's history: %r"
            % api_reasons)
    t.eq(h.get(SCHEDULER, {}).get("live"), 1, "the scheduler's live revision (adopted, never changed)")


def test_never_ready_stop(t):
    node = t.node(OLD, knobs=NEVER_READY_KCM)
    originals = live_manifests(node.root)
    t0 = wall()
    out, err = t.expect(node, ["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", "5s",
                               "--on-failure", "stop", "--json"], 1, "upgrade --on-failure stop")
    evs = check_finished(t, out, "failed", "upgrade")
    t.contains(err, KCM, "stderr names the component")
    t.contains(err, "timed out", "stderr")
    t.check(not [e for e in evs if e.get("event") == "unwind"], "an unwind happened with --on-failure stop")
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, tag, emu) for c, tag, emu, _ in sig],
         [(APISERVER, NEW, "1.34"), (KCM, NEW, "1.34"), (KCM, OLD, None)], "restarts seen by the kubelet")
    # the controller-manager is back, the API server keeps its completed step
    kcm_live = load_yaml(read_bytes(mpath(node.root, KCM)))
    t.eq(strip_annotation(kcm_live), strip_annotation(load_yaml(originals[KCM])),
         "controller-manager manifest vs the original (minus the annotation)")
    api = load_yaml(read_bytes(mpath(node.root, APISERVER)))
    t.eq(image_tag(container(api, APISERVER).get("image")), NEW, "API server image after stop")
    t.eq(flag_value(argv_of(api, APISERVER), "emulated-version"), "1.34", "API server --emulated-version")
    t.eq(read_bytes(mpath(node.root, SCHEDULER)), originals[SCHEDULER], "scheduler manifest (untouched)")
    t.check_versions(node, NEW, "1.34", None, "after stop")
    t.check_healthy(node, "after stop")
    running = running_starts(node)
    t.eq(image_tag((running.get(APISERVER) or {}).get("image")), NEW, "running API server image")
    t.eq(image_tag((running.get(KCM) or {}).get("image")), OLD, "running controller-manager image")
    t.check_journal(node, "failed", "after stop")
    t.check_live_is_revision(node, "after stop")
    api_reasons = [r.get("reason") or "" for r in t.history(node).get(APISERVER, {}).get("revisions", [])]
    t.check(not any("unwind" in r for r in api_reasons), "API server history has an unwind: %r" % api_reasons)


# --------------------------------------------------------------------------------------
# 5. a binary that exits at start


def test_crash_at_start(t):
    msg = "flag provided but not defined: -simulated"
    node = t.node(OLD, knobs={APISERVER: {"failVersions": [NEW], "exitMessage": msg}}, backoff=0.2)
    originals = live_manifests(node.root)
    t0 = wall()
    out, err = t.expect(node, ["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", "5s",
                               "--json"], 1, "upgrade with an apiserver that exits at start")
    check_finished(t, out, "failed", "upgrade")
    t.contains(err, APISERVER, "stderr names the component")
    t.contains(err, "exited", "stderr (detected as an exit)")
    t.contains(err, msg, "stderr quotes the component's last log line")
    t.check(not re.search(r"timed out", err), "the failure was a timeout, not a detected exit: %r" % err)
    t.check([e for e in node.events("exit") if e["t"] >= t0 and e["file"] == APISERVER + ".yaml"],
            "the kubelet saw no exit of the new API server")
    t.check_equal_to_originals(node, originals, "after the rollback")
    t.check_healthy(node, "after the rollback")
    t.check_running(node, OLD, "after the rollback", emulated_flag=None)
    t.check_versions(node, OLD, "1.34", None, "after the rollback")
    t.check_journal(node, "failed", "after the rollback")
    t.check_live_is_revision(node, "after the rollback")
    sig = restart_signature(starts_since(node, t0))
    t.check(all(c == APISERVER for c, *_ in sig), "a component other than the API server restarted: %r" % sig)


# --------------------------------------------------------------------------------------
# 6. interruptions


SLOW = {"default": {"startupDelay": 0.3}}


def after_written(n):
    return lambda e, evs: e.get("event") == "written" and sum(x.get("event") == "written" for x in evs) == n


def after_done(n):
    return lambda e, evs: e.get("event") == "done" and sum(x.get("event") == "done" for x in evs) == n


def waiting_on(step, detail=None):
    return lambda e, evs: (e.get("event") == "waiting" and e.get("step") == step
                           and (detail is None or e.get("detail") == detail))


def interrupt(t, node, pred, sig, what, args=UPGRADE):
    """Starts a gated upgrade, sends `sig` when pred matches a --json event. Returns the run."""
    r = t.start(node, args)
    ev = r.wait_event(pred, timeout=30)
    if not t.check(ev is not None, "%s: the awaited event never came (events: %r, stderr %r)"
                   % (what, [(e.get("event"), e.get("step")) for e in r.events], r.err)):
        r.wait(30)
        return r
    r.signal(sig)
    r.wait(30)
    return r


def check_interrupted_state(t, node, what, nothing_half_written=True):
    out, err = t.expect(node, ["status"], 0, "%s: status" % what)
    t.contains(out, "did not finish", "%s: status text" % what)
    doc = t.status_json(node, "%s: status --json" % what)
    ir = doc.get("interruptedRollout")
    if t.check(isinstance(ir, dict), "%s: no interruptedRollout in status --json" % what):
        t.eq(ir.get("command"), "upgrade", "%s: interruptedRollout.command" % what)
        t.eq(ir.get("phase"), "running", "%s: interruptedRollout.phase" % what)
    j = t.check_journal(node, "running", "%s: journal" % what)
    err = t.expect_refused(node, UPGRADE, "%s: a new upgrade" % what, needles=["resume", "abort"])
    # invariants 1 and 2 at the instant of the crash (a kill during a wait: nothing half-written)
    if nothing_half_written:
        t.check_no_dotfiles(node, what)
    t.check_live_is_revision(node, what)
    return j


def check_resumed(t, node, what):
    out, err = t.expect(node, ["resume", "--json"], 0, "%s: resume" % what)
    check_finished(t, out, "done", "%s: resume" % what)
    t.check_status(node, NEW, "1.35", "1.34", "%s: after resume" % what)
    t.check_versions(node, NEW, "1.35", "1.34", "%s: after resume" % what)
    t.check_healthy(node, "%s: after resume" % what)
    t.check_running(node, NEW, "%s: after resume" % what, emulated_flag=None)
    t.check_journal(node, "done", "%s: after resume" % what)
    t.check_live_is_revision(node, "%s: after resume" % what)
    t.check_no_dotfiles(node, "%s: after resume" % what)
    # and it is really over: a new upgrade has nothing to do
    out, err = t.expect(node, UPGRADE, 0, "%s: upgrade after resume" % what)
    t.contains(out, "nothing to do", "%s: upgrade after resume" % what)


def kill_points(t):
    """Durable operations of a gated upgrade where a SIGKILL tests something: recorded once
    through the shim (tests/crash), then named by what they do. [(description, op number)]."""
    node = t.node(OLD)
    log = shim.new_log()
    try:
        p = subprocess.run(cplet_cmd(node.root, UPGRADE), capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL, env=shim.env(node.root, log=log))
        ops = shim.read_log(log)
    finally:
        os.unlink(log)
    t.eq(p.returncode, 0, "recording run of the upgrade (stderr %r)" % p.stderr)
    t.nodes.remove(node)
    t.eq(node.down(), [], "recording run: processes left")

    def first(pred, what):
        found = [o.n for o in ops if pred(o)]
        t.check(found, "the recorded upgrade has no %s: %r" % (what, ops[:80]))
        return found[0] if found else None

    api = os.path.join(MANIFEST_DIR, APISERVER + ".yaml")
    swap1 = first(lambda o: o.op == "rename" and o.path2 == api, "swap of the API server's manifest")
    swap4 = first(lambda o: o.op == "rename" and o.path2 == api and o.n > (swap1 or 0) + 1,
                  "second swap of the API server's manifest")
    json3 = first(lambda o: o.path.startswith("var/lib/cplet/revisions/%s/.cplet-2.json" % SCHEDULER),
                  "metadata of the scheduler's revision 2")
    return [(what, n) for what, n in [
        ("SIGKILL before the rename of step 1's swap (its temporary is in the manifest dir)", swap1),
        ("SIGKILL between the rename of step 1's swap and the directory fsync", swap1 and swap1 + 1),
        ("SIGKILL between the .yaml and the .json of step 3's revision", json3),
        ("SIGKILL before the rename of step 4's swap", swap4),
    ] if n]


def check_state_at_kill(t, node, what):
    """What the design promises at any instant, a kill included: the kubelet would load only
    the live manifests (a dot-file temporary is allowed: it ignores it), each live manifest is
    a stored revision, a revision .yaml without its .json (not a revision yet) only as the
    newest number."""
    d = os.path.join(node.root, MANIFEST_DIR)
    names = sorted(os.listdir(d))
    t.eq([n for n in names if not n.startswith(".")], sorted(c + ".yaml" for c in COMPONENTS),
         "%s: files the kubelet would load" % what)
    for n in names:
        if n.startswith("."):
            t.check(re.fullmatch(r"\.cplet-.*\.tmp", n), "%s: a dot-file that is no cplet temporary: %s" % (what, n))
    t.check_live_is_revision(node, what)
    for c in COMPONENTS:
        files = os.listdir(rdir(node.root, c)) if os.path.isdir(rdir(node.root, c)) else []
        jsons = {int(f[:-5]) for f in files if re.fullmatch(r"[1-9][0-9]*\.json", f)}
        yamls = {int(f[:-5]) for f in files if re.fullmatch(r"[1-9][0-9]*\.yaml", f)}
        t.eq(sorted(jsons - yamls), [], "%s: %s revision metadata without its manifest" % (what, c))
        orphans = sorted(yamls - jsons)
        t.check(not orphans or (len(orphans) == 1 and orphans[0] > max(jsons or {0})),
                "%s: %s revision manifests without metadata that are not the newest: %r" % (what, c, orphans))


def test_kill_and_resume(t):
    # Killed at defined durable operations (counted by the shim), not after a delay: a kill
    # after a delay lands anywhere, so it cannot say what it tests.
    for what, n in kill_points(t):
        node = t.node(OLD, knobs=SLOW)
        r = CpletRun(node.root, UPGRADE, env=shim.env(node.root, kill_at=n))
        t.runs.append(r)
        r.wait(TIMEOUT)
        t.eq(r.rc, -signal.SIGKILL, "%s: cplet's end (stderr %r)" % (what, r.err))
        check_state_at_kill(t, node, what)
        check_interrupted_state(t, node, what, nothing_half_written=False)
        check_resumed(t, node, what)
        t.nodes.remove(node)
        left = node.down()
        t.eq(left, [], "%s: processes left" % what)


def test_kill_and_abort(t):
    what = "SIGKILL while waiting on step 3, then abort"
    node = t.node(OLD, knobs=SLOW)
    originals = live_manifests(node.root)
    r = interrupt(t, node, waiting_on(3, "health"), signal.SIGKILL, what)
    t.eq(r.rc, -signal.SIGKILL, "%s: cplet's end" % what)
    check_interrupted_state(t, node, what)
    t0 = wall()
    out, err = t.expect(node, ["abort", "--json"], 0, "abort")
    check_finished(t, out, "done", "abort")
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, tag, emu) for c, tag, emu, _ in sig],
         [(SCHEDULER, OLD, None), (KCM, OLD, None), (APISERVER, OLD, None)],
         "abort: restarts in reverse order")
    t.check_equal_to_originals(node, originals, "after abort")
    t.check_healthy(node, "after abort")
    t.check_running(node, OLD, "after abort", emulated_flag=None)
    t.check_versions(node, OLD, "1.34", None, "after abort")
    t.check_status(node, OLD, "1.34", "1.33", "after abort")
    t.check_journal(node, "aborted", "after abort")
    t.check_live_is_revision(node, "after abort")
    t.check_no_dotfiles(node, "after abort")

    # Step 4 raises the API server's emulated version to 1.35, and with it the implied
    # min-compatibility to 1.34 (the high-water mark, recorded before the swap): the unwind
    # stops there, as at an explicit min-compatibility raise.
    what = "SIGKILL while waiting on step 4, then abort"
    node = t.node(OLD, knobs=SLOW)
    r = interrupt(t, node, waiting_on(4, "health"), signal.SIGKILL, what)
    check_interrupted_state(t, node, what)
    out, err = t.expect(node, ["abort", "--json"], 0, "abort at step 4")
    evs = check_finished(t, out, "done", "abort at step 4")
    stops = [e for e in evs if e.get("event") == "unwind" and "stopped" in (e.get("detail") or "")]
    t.check(stops and stops[0].get("component") == APISERVER and stops[0].get("step") == 4,
            "abort at step 4: no 'stopped' unwind event at the API server's step 4: %r" % evs)
    api = {c.get("name"): c for c in t.status_json(node).get("components", [])}.get(APISERVER, {})
    t.eq((api.get("binaryVersion"), api.get("emulatedVersion"), api.get("minCompatibilityVersion")),
         (NEW, "1.35", "1.34"), "after abort at step 4: the API server still emulates 1.35")
    t.check_journal(node, "aborted", "after abort at step 4")
    t.check_live_is_revision(node, "after abort at step 4")

    what = "SIGKILL after the 2nd done event, then abort"
    node = t.node(OLD, knobs=SLOW)
    originals = live_manifests(node.root)
    r = interrupt(t, node, after_done(2), signal.SIGKILL, what)
    check_interrupted_state(t, node, what)
    out, err = t.expect(node, ["abort", "--json"], 0, "abort (2)")
    t.check_equal_to_originals(node, originals, "after abort (2)")
    t.check_healthy(node, "after abort (2)")
    t.check_running(node, OLD, "after abort (2)", emulated_flag=None)
    t.check_journal(node, "aborted", "after abort (2)")


def test_sigterm_and_resume(t):
    what = "SIGTERM while waiting on step 2"
    node = t.node(OLD, knobs=SLOW)
    r = interrupt(t, node, waiting_on(2, "health"), signal.SIGTERM, what)
    t.eq(r.rc, 1, "%s: exit code (stderr %r)" % (what, r.err))
    t.contains(r.err, "resume", "%s: stderr tells how to resume" % what)
    t.check(r.elapsed is not None and r.elapsed < 10, "%s: cplet took %.1fs" % (what, r.elapsed or -1))
    t.check(not [e for e in r.events if e.get("event") in ("restore", "unwind")],
            "%s: a signal made cplet restore or unwind" % what)
    check_interrupted_state(t, node, what)
    check_resumed(t, node, what)


def test_kill_between_failure_and_restore(t):
    """A crash right after a step is journaled "failed" and before its restore is journaled
    (the --json "failed" event comes exactly then): the failed revision is still live, so
    abort and resume must restore it, not leave it running."""
    for action in ("abort", "resume"):
        what = "SIGKILL at the failed event, then %s" % action
        node = t.node(OLD, knobs=NEVER_READY_KCM)
        originals = live_manifests(node.root)
        r = interrupt(t, node, lambda e, evs: e.get("event") == "failed", signal.SIGKILL, what,
                      args=["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", "4s", "--json"])
        j = journal(node.root) or {}
        state = [(s.get("component"), s.get("kind"), s.get("state")) for s in j.get("steps", [])]
        rc, out, err, el = t.run(node, [action, "--stable-for", "0s", "--step-timeout", "5s"])
        diag = "(journal at the kill: %s %r; %s exit %r, stderr %r)" % (j.get("phase"), state, action, rc, err.strip())
        # rollback policy: the failed step restored, the API server's step unwound
        t.eq(rc, 0 if action == "abort" else 1, "%s: exit code %s" % (what, diag))
        for c in COMPONENTS:
            live = load_yaml(read_bytes(mpath(node.root, c)))
            if strip_annotation(live) != strip_annotation(load_yaml(originals[c])):
                t.failures.append("%s: %s is not back to the original: image %s %s"
                                  % (what, c, container(live, c).get("image"), diag))
        bad = {c: code for c, code in node.health().items() if code != 200}
        t.eq(bad, {}, "%s: components not healthy afterwards %s" % (what, diag))
        running = running_starts(node)
        t.eq({c: image_tag(e["image"]) for c, e in running.items()}, {c: OLD for c in COMPONENTS},
             "%s: images running afterwards" % what)
        t.check_journal(node, "aborted" if action == "abort" else "failed", what)
        t.check_live_is_revision(node, what)


# --------------------------------------------------------------------------------------
# 7. a second writer


def test_second_writer(t):
    node = t.node(OLD, knobs=SLOW)
    r = t.start(node, UPGRADE)
    ev = r.wait_event(after_written(1), timeout=20)
    t.check(ev is not None, "the gated upgrade never wrote its first step: %r" % r.err)
    holder = str(r.pid)
    for args in (["flags", "set", SCHEDULER, "--v=3", "--no-wait"], UPGRADE):
        rc, out, err, el = t.run(node, args, timeout=20)
        what = "second cplet %s" % shell_quote(args)
        t.eq(rc, 2, "%s: exit code (stderr %r)" % (what, err.strip()))
        t.check(el < 1.0, "%s: took %.2fs (must fail at once)" % (what, el))
        t.contains(err, holder, "%s: stderr names the holder's pid" % what)
        t.contains(err, "upgrade --binary-version " + NEW, "%s: stderr names the holder's command line" % what)
    rc, out, err, el = t.run(node, ["status"])
    t.eq(rc, 0, "status while the upgrade runs (stderr %r)" % err)
    t.check(el < 1.0, "status took %.2fs" % el)
    t.contains(out, APISERVER, "status output")
    t.check(r.p.poll() is None, "the gated upgrade ended before the second writers were tried "
                                "(make it slower): %r" % r.events[-1:])
    r.wait(60)
    t.eq(r.rc, 0, "the gated upgrade (stderr %r)" % r.err)
    t.check("--v=3" not in read_bytes(mpath(node.root, SCHEDULER)).decode(),
            "the refused flags set changed the scheduler")
    t.check_status(node, NEW, "1.35", "1.34", "after the upgrade")


# --------------------------------------------------------------------------------------
# 8./9. rollbacks


def upgraded_node(t, **kw):
    node = t.node(OLD, **kw)
    t.expect(node, UPGRADE, 0, "setup: upgrade to 1.35")
    return node


def test_emulation_rollback(t):
    node = upgraded_node(t)
    t.expect_refused(node, ["rollback", "--emulated-version", "1.33"] + GATE,
                     "rollback --emulated-version 1.33 (min-compatibility 1.34 in force)",
                     needles=["1.34", "min-compatibility"])
    t.expect_refused(node, ["rollback", "--emulated-version", "1.35"] + GATE,
                     "rollback --emulated-version 1.35 at 1.35", needles=["1.35"])
    t0 = wall()
    out, err = t.expect(node, ["rollback", "--emulated-version", "1.34", "--stable-for", "0s", "--json"], 0,
                        "rollback --emulated-version 1.34")
    evs = check_finished(t, out, "done", "rollback")
    t.eq(done_steps(evs), [(c, "emulation") for c in reversed(ORDER)], "rollback: done events")
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, tag, emu) for c, tag, emu, _ in sig], [(c, NEW, "1.34") for c in reversed(ORDER)],
         "rollback: restarts seen by the kubelet")
    for c in COMPONENTS:
        argv = argv_of(load_yaml(read_bytes(mpath(node.root, c))), c)
        t.check("--emulated-version=1.34" in argv, "%s manifest lacks --emulated-version=1.34: %r"
                % (c, [a for a in argv if "version" in a]))
    t.check_versions(node, NEW, "1.34", None, "after the emulation rollback")
    t.check_healthy(node, "after the emulation rollback")
    t.check_journal(node, "done", "after the emulation rollback")
    t.check_live_is_revision(node, "after the emulation rollback")
    st = {c.get("name"): c for c in t.status_json(node).get("components", [])}
    for c in COMPONENTS:
        t.eq(st.get(c, {}).get("emulatedVersion"), "1.34", "status %s emulatedVersion" % c)
        t.eq(st.get(c, {}).get("emulatedVersionExplicit"), True, "status %s emulatedVersionExplicit" % c)
    # still at 1.34: not lower
    t.expect_refused(node, ["rollback", "--emulated-version", "1.34"] + GATE,
                     "rollback --emulated-version 1.34 at 1.34", needles=["1.34"])


def test_binary_rollback(t):
    node = upgraded_node(t)
    t.expect_refused(node, ["rollback", "--binary-version", OLD] + GATE,
                     "rollback --binary-version v1.34.2 while emulating 1.35", needles=["1.35"])
    rc, out, err, el = t.run(node, ["rollback", "--binary-version", OLD] + GATE)
    t.check(re.search(r"cannot (emulate|run)|not between", err) and "emulat" in err and "1.34" in err,
            "refusal does not say the old binary cannot run emulated 1.35: %r" % err)
    t.check(re.search(r"roll(ing)? (the )?emulat\w* (version )?back|rollback --emulated-version", err),
            "refusal does not say to roll emulation back first: %r" % err)

    t.expect(node, ["rollback", "--emulated-version", "1.34", "--stable-for", "0s"], 0,
             "setup: rollback --emulated-version 1.34")
    # The node has run with min-compatibility 1.34 (implied at emulated 1.35, kept as a flag
    # by the emulation rollback); binary 1.34 cannot keep it.
    t.expect_refused(node, ["rollback", "--binary-version", OLD] + GATE,
                     "rollback --binary-version v1.34.2 below the high-water mark",
                     needles=["binary v1.34.2 cannot keep min-compatibility version 1.34", "--force"])
    t0 = wall()
    out, err = t.expect(node, ["rollback", "--binary-version", OLD, "--stable-for", "0s", "--force", "--json"], 0,
                        "rollback --binary-version v1.34.2 --force")
    evs = check_finished(t, out, "done", "binary rollback")
    # Forced: min-compatibility back to 1.33 first (binary 1.34 implies it), then the binaries.
    t.eq(done_steps(evs), [(c, "min-compatibility") for c in reversed(ORDER)] + [(c, "binary") for c in reversed(ORDER)],
         "binary rollback: done events")
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, tag) for c, tag, emu, mc in sig], [(c, NEW) for c in reversed(ORDER)] + [(c, OLD) for c in reversed(ORDER)],
         "binary rollback: restarts seen by the kubelet")
    t.check_healthy(node, "after the binary rollback")
    t.check_running(node, OLD, "after the binary rollback")
    t.check_versions(node, OLD, "1.34", None, "after the binary rollback")
    st = {c.get("name"): c for c in t.status_json(node).get("components", [])}
    for c in COMPONENTS:
        t.eq(st.get(c, {}).get("binaryVersion"), OLD, "status %s binaryVersion" % c)
        t.eq(st.get(c, {}).get("emulatedVersion"), "1.34", "status %s emulatedVersion" % c)
    t.check_journal(node, "done", "after the binary rollback")
    t.check_live_is_revision(node, "after the binary rollback")


# --------------------------------------------------------------------------------------
# 10. min-compatibility high-water mark


def test_min_compat_high_water(t):
    node = t.node(NEW)
    t0 = wall()
    out, err = t.expect(node, ["upgrade", "--binary-version", NEW, "--min-compatibility-version", "1.35",
                               "--stable-for", "0s", "--json"], 0, "raise min-compatibility to 1.35")
    evs = check_finished(t, out, "done", "raise")
    t.eq(done_steps(evs), [(c, "min-compatibility") for c in ORDER], "raise: done events")
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, mc) for c, tag, emu, mc in sig], [(c, "1.35") for c in ORDER], "raise: restarts (--min-compat...)")
    t.check_versions(node, NEW, "1.35", "1.35", "after the raise")
    t.check_status(node, NEW, "1.35", "1.35", "after the raise", min_compat_explicit=True)
    t.expect_refused(node, ["rollback", "--emulated-version", "1.34"] + GATE,
                     "rollback --emulated-version 1.34 below min-compatibility 1.35",
                     needles=["1.35", "min-compatibility"])
    lower = ["upgrade", "--binary-version", NEW, "--min-compatibility-version", "1.34", "--stable-for", "0s"]
    t.expect_refused(node, lower, "lowering min-compatibility below the high-water mark", needles=["--force"])
    out, err = t.expect(node, lower + ["--force", "--json"], 0, "lowering with --force")
    check_finished(t, out, "done", "lowering with --force")
    t.check_versions(node, NEW, "1.35", "1.34", "after the forced lowering")
    t.check_status(node, NEW, "1.35", "1.34", "after the forced lowering")
    t.check_healthy(node, "after the forced lowering")


# --------------------------------------------------------------------------------------
# A target's components (issue 8): the cluster controller moves one component on every node
# before the next, with the emulated version pinned in the binary phase.

PIN = ["--binary-version", NEW, "--emulated-version", "1.34"]


def check_only_moved(t, node, before, moved, t0, msg):
    """Components not in `moved` keep their manifests byte for byte and were not restarted."""
    for c in COMPONENTS:
        if c in moved:
            continue
        t.check(read_bytes(mpath(node.root, c)) == before[c], "%s: the %s manifest changed" % (msg, c))
        t.eq([e["file"] for e in starts_since(node, t0) if comp_of(e["file"]) == c], [],
             "%s: %s restarts seen by the kubelet" % (msg, c))


def check_binaries(t, node, expected, msg):
    st = {c.get("name"): c for c in t.status_json(node, msg + ": status --json").get("components", [])}
    t.eq({c: st.get(c, {}).get("binaryVersion") for c in COMPONENTS}, expected, "%s: binaries in status" % msg)


def test_components_subset(t):
    node = t.node(OLD)
    before = live_manifests(node.root)
    what = "upgrade --components kube-apiserver"
    t0 = wall()
    out, err = t.expect(node, ["upgrade"] + PIN + ["--components", APISERVER] + GATE + ["--json"], 0, what)
    evs = check_finished(t, out, "done", what)
    t.eq(done_steps(evs), [(APISERVER, "binary")], "%s: done events" % what)
    t.eq([(c, tag, emu) for c, tag, emu, _ in restart_signature(starts_since(node, t0))],
         [(APISERVER, NEW, "1.34")], "%s: restarts seen by the kubelet" % what)
    check_only_moved(t, node, before, [APISERVER], t0, what)
    # its gate passed: the new API server reports the step's versions and is healthy
    t.check_versions(node, NEW, "1.34", "1.33", what)
    t.check_healthy(node, what)
    j = t.check_journal(node, "done", what)
    t.eq(j.get("target", {}).get("components"), [APISERVER], "%s: the journal's target.components" % what)
    t.check_live_is_revision(node, what)
    check_binaries(t, node, {APISERVER: NEW, KCM: OLD, SCHEDULER: OLD}, what)

    # The controller-manager's emulation may not go above the API server's: refused, naming
    # the API server, before anything is written.
    t.expect_refused(node, ["upgrade", "--binary-version", NEW, "--components", KCM] + GATE,
                     "upgrade --components kube-controller-manager to emulated 1.35",
                     needles=["kube-apiserver would have to move first",
                              "raise kube-apiserver's emulated version to 1.35 first"])

    # The next component of the binary phase: one step; the API server stays as it is.
    what = "upgrade --components kube-controller-manager"
    before = live_manifests(node.root)
    t0 = wall()
    out, err = t.expect(node, ["upgrade"] + PIN + ["--components", KCM] + GATE + ["--json"], 0, what)
    evs = check_finished(t, out, "done", what)
    t.eq(done_steps(evs), [(KCM, "binary")], "%s: done events" % what)
    check_only_moved(t, node, before, [KCM], t0, what)
    t.check_healthy(node, what)
    check_binaries(t, node, {APISERVER: NEW, KCM: NEW, SCHEDULER: OLD}, what)


def test_components_resume(t):
    """resume continues to the same components: it moves no other."""
    what = "SIGTERM during upgrade --components kube-apiserver, then resume"
    node = t.node(OLD, knobs=SLOW)
    before = live_manifests(node.root)
    t0 = wall()
    r = interrupt(t, node, waiting_on(1, "health"), signal.SIGTERM, what,
                  args=["upgrade"] + PIN + ["--components", APISERVER] + GATE + ["--json"])
    t.eq(r.rc, 1, "%s: exit code (stderr %r)" % (what, r.err))
    j = t.check_journal(node, "running", what)
    t.eq(j.get("target", {}).get("components"), [APISERVER], "%s: the journal's target.components" % what)
    out, err = t.expect(node, ["resume", "--json"], 0, "%s: resume" % what)
    check_finished(t, out, "done", "%s: resume" % what)
    check_only_moved(t, node, before, [APISERVER], t0, what)
    t.check_versions(node, NEW, "1.34", "1.33", what)
    t.check_healthy(node, what)
    t.check_journal(node, "done", what)
    check_binaries(t, node, {APISERVER: NEW, KCM: OLD, SCHEDULER: OLD}, what)


# --------------------------------------------------------------------------------------
# 11. invariants while a rollout runs


def test_gated_flags_and_revision_rollback(t):
    # Single writes are gated like upgrade steps: a flag change the component survives goes
    # through; one that leaves it unreachable where its probes look (another secure port) is
    # restored; a rollback to a revision is gated too.
    node = t.node(NEW)
    originals = live_manifests(node.root)
    out, err = t.expect(node, ["flags", "set", SCHEDULER, "--v=4", "--stable-for", "0s", "--json"], 0,
                        "flags set --v=4 (gated)")
    check_finished(t, out, "done", "flags")
    argv = argv_of(load_yaml(read_bytes(mpath(node.root, SCHEDULER))), SCHEDULER)
    t.check("--v=4" in argv, "scheduler manifest lacks --v=4: %r" % argv)
    t.check_healthy(node, "after flags set --v=4")

    before = read_bytes(mpath(node.root, SCHEDULER))
    out, err = t.expect(node, ["--stable-for", "0s", "--step-timeout", "6s", "flags", "set", SCHEDULER,
                               "--secure-port=1", "--json"], 1, "flags set --secure-port=1 (breaks the probes)")
    check_finished(t, out, "failed", "flags")
    t.contains(err, "timed out", "stderr of the failed flag change")
    t.contains(err, "restored", "stderr of the failed flag change")
    after = load_yaml(read_bytes(mpath(node.root, SCHEDULER)))
    t.eq(strip_annotation(after), strip_annotation(load_yaml(before)), "scheduler manifest restored (minus annotation)")
    t.check_healthy(node, "after the failed flag change was restored")
    t.check_journal(node, "failed", "after the failed flag change")

    out, err = t.expect(node, ["rollback", "--component", SCHEDULER, "--to-revision", "1", "--stable-for", "0s",
                               "--json"], 0, "rollback --to-revision 1 (gated)")
    check_finished(t, out, "done", "rollback")
    t.eq(strip_annotation(load_yaml(read_bytes(mpath(node.root, SCHEDULER)))),
         strip_annotation(load_yaml(originals[SCHEDULER])), "scheduler manifest back to revision 1")
    t.check_healthy(node, "after the gated revision rollback")
    t.check_live_is_revision(node, "after the gated writes")


def test_patch_upgrade_same_argv(t):
    # A patch upgrade changes only the image tag: the new process has the same command line as
    # the old one, which (like a real kubelet's graceful termination) keeps running for a while
    # after the manifest changed. The gate must wait for the process started after the swap,
    # not pass on the old one (which then exits under it).
    node = t.node("v1.35.0", knobs={"default": {"termDelay": 1.0}})
    before = {c: argv_of(load_yaml(read_bytes(mpath(node.root, c))), c) for c in COMPONENTS}
    old_pids = dict(node.pids())
    t0 = wall()
    out, err = t.expect(node, ["upgrade", "--binary-version", "v1.35.1"] + GATE + ["--json"], 0,
                        "upgrade --binary-version v1.35.1 (patch: same argv)")
    evs = check_finished(t, out, "done", "patch upgrade")
    t.eq([c for c, k in done_steps(evs)], ORDER, "patch upgrade: done events")
    for c in COMPONENTS:
        t.eq(argv_of(load_yaml(read_bytes(mpath(node.root, c))), c), before[c], "%s argv unchanged" % c)
    sig = restart_signature(starts_since(node, t0))
    t.eq([(c, tag) for c, tag, emu, mc in sig], [(c, "v1.35.1") for c in ORDER],
         "patch upgrade: one restart per component, on the new image")
    now = node.pids()
    t.check(all(now.get(c + ".yaml") not in (None, old_pids.get(c + ".yaml")) for c in COMPONENTS),
            "new processes run: %r (before %r)" % (now, old_pids))
    t.check_healthy(node, "after the patch upgrade")
    t.check_running(node, "v1.35.1", "after the patch upgrade")
    t.check_live_is_revision(node, "after the patch upgrade")


def test_expanded_command_line(t):
    # The kubelet expands $(VAR) in command/args from the container's env: cplet's gate must
    # look for the expanded command line, or it never finds the process.
    node = t.node(NEW)
    doc = load_yaml(read_bytes(mpath(node.root, SCHEDULER)))
    c = doc["spec"]["containers"][0]
    port = node.ports[SCHEDULER]
    c["env"] = [{"name": "PORT", "value": str(port)}, {"name": "LEVEL", "value": "2"}]
    c["command"] = [a if not a.startswith("--secure-port=") else "--secure-port=$(PORT)" for a in c["command"]]
    c["command"].append("--v=$(LEVEL)")
    t0 = wall()
    node.write_manifest(SCHEDULER, yaml.safe_dump(doc, sort_keys=False))
    ev = node.wait_event(lambda e: e["event"] == "start" and e["file"] == SCHEDULER + ".yaml", 10, since=t0)
    t.check(ev is not None and "--secure-port=%d" % port in ev["argv"] and "--v=2" in ev["argv"],
            "the kubelet ran the expanded command line: %r" % (ev,))
    t.check(node.wait_healthy(10, [SCHEDULER]), "scheduler healthy on the expanded port")
    out, err = t.expect(node, ["flags", "set", SCHEDULER, "--profiling=false", "--stable-for", "0s",
                               "--step-timeout", "10s", "--json"], 0, "flags set on a manifest using $(VAR)")
    check_finished(t, out, "done", "flags")
    t.check_healthy(node, "after the flag change")


def test_retention_keeps_what_an_unwind_needs(t):
    # revisionsToKeep: 2 and a failure at the last step: the unwind needs every component's
    # first revision back, so retention must not have pruned it while the rollout ran.
    node = t.node(OLD, knobs={SCHEDULER: {"failEmulated": ["1.35"]}})
    originals = live_manifests(node.root)
    cfg = os.path.join(node.root, "etc/cplet/config.yaml")
    os.makedirs(os.path.dirname(cfg), exist_ok=True)
    with open(cfg, "w") as f:
        f.write("apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\nrevisionsToKeep: 2\n")
    # --force: the unwind may go back past the API server's emulation raise (implied
    # min-compatibility 1.34, the high-water mark), down to every first revision.
    out, err = t.expect(node, ["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", "5s",
                               "--force", "--json"], 1, "upgrade failing at the last step with revisionsToKeep 2")
    check_finished(t, out, "failed", "upgrade")
    t.check("no such revision" not in err, "the unwind found every revision it needed: %r" % err)
    for c in COMPONENTS:
        t.eq(strip_annotation(load_yaml(read_bytes(mpath(node.root, c)))), strip_annotation(load_yaml(originals[c])),
             "%s back to its original manifest" % c)
        revs = sorted(int(f[:-5]) for f in os.listdir(os.path.join(node.root, "var/lib/cplet/revisions", c))
                      if f.endswith(".json"))
        t.check(len(revs) <= 3, "%s: retention applied once the rollout finished: %r" % (c, revs))
    t.check_healthy(node, "after the unwind")


def test_invariants_during_rollout(t):
    node = t.node(OLD)
    mdir = os.path.join(node.root, MANIFEST_DIR)
    live_names = sorted(c + ".yaml" for c in COMPONENTS)
    originals = live_manifests(node.root)
    known = {c: {originals[c]} for c in COMPONENTS}
    seen_revs = {c: set() for c in COMPONENTS}
    seen_contents = {c: set() for c in COMPONENTS}
    stats = {"polls": 0, "reads": 0, "rereads": 0}
    violations = []

    def refresh(c):
        d = rdir(node.root, c)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        for f in names:
            m = re.fullmatch(r"([1-9][0-9]*)\.yaml", f)
            if m and int(m.group(1)) not in seen_revs[c]:
                try:
                    data = read_bytes(os.path.join(d, f))
                except FileNotFoundError:
                    continue
                # a revision exists once its .json does; until then its .yaml may be incomplete
                if os.path.exists(os.path.join(d, m.group(1) + ".json")):
                    seen_revs[c].add(int(m.group(1)))
                known[c].add(data)

    def stored(c, data):
        if data in known[c]:
            return True
        refresh(c)
        return data in known[c]

    cmd = cplet_cmd(node.root, UPGRADE)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        while True:
            done = p.poll() is not None
            stats["polls"] += 1
            names = sorted(os.listdir(mdir))
            extra = [n for n in names if not n.startswith(".") and n not in live_names]
            if extra:
                violations.append("a file the kubelet would load appeared: %r" % extra)
            for n in names:
                if n.startswith(".") or n not in live_names:
                    continue
                c = n[:-5]
                data = None
                for attempt in range(2):
                    try:
                        data = read_bytes(os.path.join(mdir, n))
                    except FileNotFoundError:
                        data = None
                    stats["reads"] += 1
                    if data is not None and stored(c, data):
                        break
                    stats["rereads"] += 1
                    data = (data, "not stored")
                if data is None:
                    violations.append("%s vanished (read twice)" % n)
                elif isinstance(data, tuple):
                    violations.append("%s is not byte-equal to a stored revision (%d bytes)" % (n, len(data[0] or b"")))
                else:
                    seen_contents[c].add(data)
                    try:
                        doc = load_yaml(data)
                        assert isinstance(doc, dict) and container(doc, c)
                    except Exception as e:  # noqa: BLE001
                        violations.append("%s does not parse: %s" % (n, e))
            if len(violations) > 20 or done:
                break
            time.sleep(0.002)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    t.eq(p.returncode, 0, "upgrade under observation (stderr %r)" % err.decode(errors="replace"))
    for v in violations[:20]:
        t.failures.append("invariant violated: " + v)
    for c in COMPONENTS:
        t.check(len(seen_contents[c]) >= 2, "the poller saw only %d version(s) of %s (%r): too slow to observe"
                % (len(seen_contents[c]), c, stats))
    t.check(stats["polls"] > 50, "only %d polls during the rollout" % stats["polls"])
    # afterwards too: the original was adopted as revision 1, byte for byte
    for c in COMPONENTS:
        try:
            t.eq(read_bytes(os.path.join(rdir(node.root, c), "1.yaml")), originals[c],
                 "%s revision 1 vs the original manifest" % c)
            t.eq(revision_meta(node.root, c, 1).get("reason"), "adopted", "%s revision 1 reason" % c)
        except OSError as e:
            t.failures.append("%s: %s" % (c, e))
    t.check_live_is_revision(node, "after the rollout")
    t.check_no_dotfiles(node, "after the rollout")
    print("# invariants: %d polls, %d reads, %d re-reads" % (stats["polls"], stats["reads"], stats["rereads"]))


TESTS = [
    ("full upgrade 1.34 -> 1.35: binaries first, then emulation, API server first", test_full_upgrade),
    ("skip-minor upgrade 1.33 -> 1.35: 9 steps, emulation one minor at a time", test_skip_minor),
    ("never-ready controller-manager: timed out, restored, API server unwound", test_never_ready_rollback),
    ("never-ready controller-manager with --on-failure stop: earlier step kept", test_never_ready_stop),
    ("API server exiting at start: detected as an exit, last log line, rolled back", test_crash_at_start),
    ("SIGKILL at four durable operations of a rollout (shim): state at the kill, status, refusal, resume",
     test_kill_and_resume),
    ("SIGKILL mid-rollout then abort: back to the pre-plan state", test_kill_and_abort),
    ("SIGTERM while waiting: exit 1, resume completes", test_sigterm_and_resume),
    ("SIGKILL between a failed step and its restore: abort / resume restore it", test_kill_between_failure_and_restore),
    ("a second writer fails at once naming the holder; status works", test_second_writer),
    ("emulation rollback 1.35 -> 1.34 in reverse order, and its refusals", test_emulation_rollback),
    ("binary rollback v1.35.0 -> v1.34.2, and the refusal while emulating 1.35", test_binary_rollback),
    ("min-compatibility high-water mark and --force", test_min_compat_high_water),
    ("gated flags and revision rollback: a breaking flag change is restored", test_gated_flags_and_revision_rollback),
    ("retention keeps what an unwind needs (revisionsToKeep 2)", test_retention_keeps_what_an_unwind_needs),
    ("patch upgrade v1.35.0 -> v1.35.1 (same argv): the gate waits for the new process", test_patch_upgrade_same_argv),
    ("$(VAR) in the command line: the gate finds the expanded process", test_expanded_command_line),
    ("invariants hold at every instant of a rollout", test_invariants_during_rollout),
    ("upgrade --components: only the named component moves, gated; a step that needs another is refused",
     test_components_subset),
    ("resume after an interrupted upgrade --components moves no other component", test_components_resume),
]


def main():
    return run_tap(TESTS, Case,
                   required=("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR", "CPLET_FIXTURES_DIR"))


if __name__ == "__main__":
    sys.exit(main())
