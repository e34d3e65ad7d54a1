#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Crash-point sweep: cplet killed (SIGKILL) at every durable operation of a rollout on a
simulated node, then recovered with `resume` and, from the same state, with `abort`. Prints
TAP, one case per scenario:

  1. a gated 6-step upgrade v1.34.2 -> v1.35.0;
  2. a failing step with its restore: the new API server exits at start (failVersions), so
     step 1 fails and is restored;
  3. an unwind: an upgrade interrupted after its 3rd step, then `abort`, killed at each of
     the abort's durable operations.

The durable operations are counted by the shim (tests/crash/durable-shim.c) in a recording
run; then, for each point N, the node is reset to its state before the scenario, the
scenario runs again with CPLET_SHIM_KILL_AT=N, and after the kill:

  * every live manifest is byte-equal to a stored revision (or to the original, before its
    adoption), and the manifest dir holds no other file the kubelet would load (a dot-file
    is allowed: the kubelet ignores it);
  * `resume` converges: the live manifests equal the target or the state before the plan
    (as the journal at the kill says), the components run them and are healthy, the
    journal is closed, and no temporary is left in the manifest dir;
  * the files at the kill are put back (the fake kubelet runs them again), and `abort`
    converges the same way, to the state before the plan.

CPLET_CRASH_SWEEP selects the points: "distinct" (default): every point whose files differ
from the point before it; a kill right after an fsync, or after a call that failed and
changed nothing (unlink of a missing temporary), finds exactly the files of the previous
point, so it is the same point again. "all": those too. "every:K": every K-th point (for a
quick look); "points:N,M": those. CPLET_CRASH_SWEEP_NODES (default 2) simulated nodes share the points. The
number of points swept is printed as a TAP diagnostic.

Environment (set by tests/meson.build): CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR,
CPLET_EXAMPLES_DIR, CPLET_FIXTURES_DIR, CPLET_DURABLE_SHIM.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import shim  # noqa: E402
from e2e_util import (  # noqa: E402
    ANNOTATION, COMPONENTS, MANIFEST_DIR, STATE_DIR, SimNode, annotation, argv_of, container, cplet_cmd,
    image_tag, journal, load_yaml, read_bytes, rdir, revision_numbers, run_tap, shell_quote, strip_annotation,
)
from simnode import atomic_write  # noqa: E402

OLD = "v1.34.2"
NEW = "v1.35.0"
TIMEOUT = 120  # one cplet command
GATE = ["--stable-for", "0s", "--step-timeout", "30s"]
UPGRADE = ["upgrade", "--binary-version", NEW] + GATE
APISERVER = COMPONENTS[0]
FAIL_API = {APISERVER: {"versions": {"v1.35": {"failVersions": ["v1.35"],
                                               "exitMessage": "simulated: this binary cannot start"}}}}
HEALTHZ = "/healthz"


class Failure(Exception):
    pass


def doc_of(data):
    try:
        return load_yaml(data)
    except Exception:  # noqa: BLE001
        return None


def semantic(manifests):
    """{component: the pod without the revision annotation}."""
    return {c: strip_annotation(doc_of(b) or {}) for c, b in manifests.items()}


class Sweep:
    """One scenario's node, its reference states and the checks of one point."""

    def __init__(self, name, knobs):
        self.name = name
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-sweep-"))
        self.node = SimNode(self.root, OLD, knobs=knobs, backoff=0.1, backoff_max=0.5, grace=2.0)
        self.node.up(timeout=60)
        self.mdir = os.path.join(self.root, MANIFEST_DIR)
        self.originals = self.files()
        self.problems = []
        self.logs = []

    def close(self):
        left = self.node.down()
        shutil.rmtree(self.root, ignore_errors=True)
        for p in self.logs:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        return left

    # ---- the node's files

    def files(self):
        """{name: bytes} of everything in the manifest dir (dot-files included)."""
        return {n: read_bytes(os.path.join(self.mdir, n)) for n in sorted(os.listdir(self.mdir))}

    def live(self):
        return {c: read_bytes(os.path.join(self.mdir, c + ".yaml")) for c in COMPONENTS}

    def snapshot(self):
        """The files cplet owns: manifest dir, state dir, lock dir."""
        snap = tempfile.mkdtemp(prefix="cplet-sweep-snap-")
        for sub in (STATE_DIR, "run"):
            src = os.path.join(self.root, sub)
            if os.path.exists(src):
                shutil.copytree(src, os.path.join(snap, sub), symlinks=True)
        return snap, self.files()

    def put_back(self, manifests, snap, healthy=False):
        """Makes the node's files what they were (manifests, state), then waits until the
        kubelet has started every changed manifest (and, when `healthy`, until every component
        runs its manifest healthy: a snapshot may hold a manifest that never gets healthy)."""
        changed = [c for c in COMPONENTS if doc_of(manifests.get(c + ".yaml", b"")) != doc_of(self.live()[c])]
        t0 = time.time()
        for sub in ("var/lib", "run"):
            shutil.rmtree(os.path.join(self.root, sub), ignore_errors=True)
        if snap:
            for sub in (STATE_DIR, "run"):
                src = os.path.join(snap, sub)
                if os.path.exists(src):
                    os.makedirs(os.path.dirname(os.path.join(self.root, sub)), mode=0o755, exist_ok=True)
                    shutil.copytree(src, os.path.join(self.root, sub), symlinks=True)
        for n in os.listdir(self.mdir):
            if n not in manifests:
                os.unlink(os.path.join(self.mdir, n))
        for n, data in manifests.items():
            p = os.path.join(self.mdir, n)
            if not os.path.exists(p) or read_bytes(p) != data:
                if n.startswith("."):
                    with open(p, "wb") as f:
                        f.write(data)
                    os.chmod(p, 0o600)
                else:
                    atomic_write(p, data)
        if healthy:
            self.wait_running(changed, t0, "putting the files back")
            return
        deadline = time.monotonic() + 60
        while True:
            started = {e["file"] for e in self.node.events("start") if e["t"] >= t0}
            todo = [c for c in changed if c + ".yaml" not in started]
            if not todo:
                return
            if time.monotonic() > deadline:
                raise Failure("putting the files back: the kubelet started no process for %s in 60s" % todo)
            time.sleep(0.05)

    def wait_running(self, changed, t0, what, timeout=60):
        """Every component runs its live manifest (a process started after t0 for the changed
        ones) and answers healthy."""
        deadline = time.monotonic() + timeout
        while True:
            bad = self.not_running(changed, t0)
            if not bad:
                return
            if time.monotonic() > deadline:
                raise Failure("%s: the kubelet did not converge in %ds: %s" % (what, timeout, bad))
            time.sleep(0.05)

    def not_running(self, changed=(), t0=0.0):
        running = {}
        for e in self.node.events():
            if e["event"] == "start":
                running[e["file"]] = e
            elif e["event"] in ("stop", "exit") and running.get(e["file"], {}).get("pid") == e["pid"]:
                del running[e["file"]]
        bad = []
        live = self.live()
        for c in COMPONENTS:
            doc = doc_of(live[c])
            e = running.get(c + ".yaml")
            if not e or not os.path.exists("/proc/%d" % e["pid"]):
                bad.append("%s: no process" % c)
            elif e["argv"] != argv_of(doc, c) or e["image"] != container(doc, c).get("image"):
                bad.append("%s: runs %s %s, the manifest says %s" % (c, image_tag(e["image"]), e["argv"][1:3],
                                                                  image_tag(container(doc, c).get("image"))))
            elif c in changed and e["t"] < t0:
                bad.append("%s: still the process from before" % c)
            else:
                code, _ = self.node.get(c, HEALTHZ, 2.0)
                if code != 200:
                    bad.append("%s: %s answered %r" % (c, HEALTHZ, code))
        return bad

    # ---- cplet

    def cplet(self, args, **shim_args):
        log = shim.new_log()
        self.logs.append(log)
        cmd = cplet_cmd(self.root, args)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                               env=shim.env(self.root, log=log, **shim_args))
        except subprocess.TimeoutExpired:
            raise Failure("timed out after %ds: %s" % (TIMEOUT, shell_quote(args)))
        ops = shim.read_log(log)
        os.unlink(log)
        self.logs.remove(log)
        return p.returncode, p.stdout, p.stderr, ops

    def reset(self):
        self.put_back(self.originals, None, healthy=True)

    # ---- invariants

    def check_invariants(self, what):
        """Invariants 1 and 2 of the design at this instant."""
        out = []
        names = os.listdir(self.mdir)
        loadable = sorted(n for n in names if not n.startswith("."))
        if loadable != sorted(c + ".yaml" for c in COMPONENTS):
            out.append("%s: files the kubelet would load: %s" % (what, loadable))
        for c in COMPONENTS:
            live = read_bytes(os.path.join(self.mdir, c + ".yaml"))
            revs = [n for n in revision_numbers(self.root, c)
                    if os.path.exists(os.path.join(rdir(self.root, c), "%d.yaml" % n))
                    and read_bytes(os.path.join(rdir(self.root, c), "%d.yaml" % n)) == live]
            if not revs and live != self.originals[c + ".yaml"]:
                out.append("%s: the live %s is neither a stored revision nor the original" % (what, c))
            doc = doc_of(live)
            if revs and live != self.originals[c + ".yaml"] and annotation(doc) != str(revs[-1]):
                out.append("%s: %s carries %s %r, it is revision %d" % (what, c, ANNOTATION, annotation(doc),
                                                                        revs[-1]))
        return out

    @staticmethod
    def unwind_stopped_at_floor(j):
        stop = (j or {}).get("unwindStoppedAt") or 0
        steps = (j or {}).get("steps") or []
        plan_kinds = ("binary", "emulation", "min-compatibility")
        return (stop > 0 and (j or {}).get("phase") == "aborted"
                and all(st.get("state") in ("unwound", "abandoned", "failed")
                        for st in steps[stop:] if st.get("kind") in plan_kinds))

    def check_converged(self, what, expect, target):
        """After a recovery: the live manifests equal one of the states in `expect` ("target",
        "before"), the kubelet runs them healthy, the journal is closed, no temporary is left
        in the manifest dir, and the invariants hold."""
        out = self.check_invariants(what)
        live = semantic(self.live())
        states = {"before": semantic({c: self.originals[c + ".yaml"] for c in COMPONENTS}), "target": target}
        got = [s for s in ("before", "target") if states[s] == live]
        j = journal(self.root)
        if "before" in expect and "before" not in got and self.unwind_stopped_at_floor(j):
            # Issue 12: the unwind never goes below the highest min-compatibility version the
            # node has run with (a raise, explicit or implied, recorded before the step could
            # run): it stops there by design, every later step undone, the journal closed.
            got.append("before")
        if not any(s in expect for s in got):
            imgs = {c: image_tag(container(live[c], c).get("image")) for c in COMPONENTS}
            out.append("%s: the live manifests are %s (images %s), expected %s"
                       % (what, got[0] if got else "neither the target nor the state before the plan", imgs,
                          " or ".join(expect)))
        dots = [n for n in os.listdir(self.mdir) if n.startswith(".")]
        if dots:
            out.append("%s: temporaries left in the manifest dir: %s" % (what, dots))
        if j and j.get("phase") in ("running", "unwinding"):
            out.append("%s: the journal is still %s" % (what, j.get("phase")))
        try:
            self.wait_running((), 0, what, timeout=30)
        except Failure as e:
            out.append(str(e))
        return out


def expected_after(j_at_kill, scenario_target_reachable, resume):
    """What a recovery must reach, from the journal at the kill."""
    phase = (j_at_kill or {}).get("phase")
    if phase is None:
        return ("before",)  # nothing began
    if phase == "done":
        return ("target",)
    if phase in ("failed", "aborted"):
        return ("before",)
    if resume and phase == "running" and scenario_target_reachable:
        return ("target",)
    return ("before",)


# An operation after which a kill finds the same files as a kill right before it: an fsync
# (a kill is no power loss) or a call that failed (unlink of a missing temporary).
def changes_nothing_visible(o):
    return o.op == "fsync" or not o.ok


def selected(ops):
    """The points to sweep: "all" of them, or ("distinct", the default) every point whose
    files differ from the point before it, or "every:K" for a quick look."""
    mode = os.environ.get("CPLET_CRASH_SWEEP", "distinct")
    n_points = len(ops)
    if mode.startswith("every:"):
        k = max(1, int(mode.split(":", 1)[1]))
        return sorted(set(list(range(1, n_points + 1, k)) + [n_points]))
    if mode == "all":
        return list(range(1, n_points + 1))
    if mode.startswith("points:"):  # to look at some points again: "points:90,93"
        return [int(x) for x in mode.split(":", 1)[1].split(",") if 0 < int(x) <= n_points]
    return [n for n in range(1, n_points + 1) if n == 1 or not changes_nothing_visible(ops[n - 2])]


class Scenario:
    """args: the command killed at each point. prefix: None, or the args of a rollout that is
    interrupted first (killed where it starts writing `prefix_mark`). target_reachable:
    resuming a running rollout reaches the target (the end of the prefix rollout if any,
    else of the recording run)."""

    def __init__(self, name, knobs, args, target_reachable, prefix=None, prefix_mark=None):
        self.name = name
        self.knobs = knobs
        self.args = args
        self.target_reachable = target_reachable
        self.prefix = prefix
        self.prefix_mark = prefix_mark


LOCK = threading.Lock()


def say(text):
    with LOCK:
        print(text, flush=True)


def setup(t, scen, s):
    """Records the scenario on node s: returns (ops, prefix as (args, kill point) or None,
    target) or None after a failure."""
    target = None
    prefix = None
    if scen.prefix:
        rc, out, err, ops = s.cplet(scen.prefix)
        at = [o.n for o in ops if o.path.startswith(scen.prefix_mark)]
        if not t.check(rc == 0 and at, "%s: recording %s: exit %r, no write of %s (stderr %r)"
                       % (scen.name, shell_quote(scen.prefix), rc, scen.prefix_mark, err)):
            return None
        s.wait_running((), 0, "after recording the prefix")
        target = semantic(s.live())
        s.reset()
        prefix = (scen.prefix, at[0])
    run_prefix(s, prefix)
    rc, out, err, ops = s.cplet(scen.args)
    if not t.check(ops, "%s: the recording run counted no operation (exit %r, stderr %r)" % (scen.name, rc, err)):
        return None
    t.check(all(o.n == i + 1 for i, o in enumerate(ops)), "%s: the recording is not numbered 1..%d"
            % (scen.name, len(ops)))
    s.wait_running((), 0, "after the recording run")
    if target is None and scen.target_reachable:
        target = semantic(s.live())
    if scen.target_reachable and not t.check(target != semantic({c: s.originals[c + ".yaml"] for c in COMPONENTS}),
                                             "%s: the recording run changed nothing (exit %r, stderr %r)"
                                             % (scen.name, rc, err)):
        return None
    return ops, prefix, target


def worker(t, scen, index, n_workers, counts):
    """One node sweeping every n_workers-th selected point, from the index-th."""
    s = Sweep(scen.name, scen.knobs)
    try:
        rec = setup(t, scen, s)
        if not rec:
            return
        ops, prefix, target = rec
        counts.setdefault("ops", set()).add(len(ops))
        points = selected(ops)
        if index == 0:
            say("# %s: %d durable operations recorded (%s), sweeping %d of them on %d node(s)" % (
                scen.name, len(ops), ", ".join("%s %d" % (k, sum(o.op == k for o in ops))
                                               for k in ("write", "fsync", "rename", "mkdir", "unlink", "truncate")),
                len(points), n_workers))
        for n in points[index::n_workers]:
            at = ops[n - 1]
            what = "%s, kill at op %d/%d (%s %s%s)" % (scen.name, n, len(ops), at.op, at.path,
                                                      " -> " + at.path2 if at.path2 else "")
            try:
                problems = sweep_point(s, scen.args, prefix, n, what, target, scen.target_reachable)
            except Failure as e:
                problems = [str(e)]
            except Exception:  # noqa: BLE001
                problems = ["%s: exception:\n%s" % (what, traceback.format_exc())]
            counts["swept"] = counts.get("swept", 0) + 1
            if problems:
                t.failures.extend(problems)
                try:
                    s.wait_running((), 0, "after a failed point", timeout=10)
                except Failure:
                    pass
            if len(t.failures) > 40:
                t.failures.append("%s: stopped: too many failures" % scen.name)
                break
    except Failure as e:
        t.failures.append("%s: %s" % (scen.name, e))
    except Exception:  # noqa: BLE001
        t.failures.append("%s: exception:\n%s" % (scen.name, traceback.format_exc()))
    finally:
        left = s.close()
        if left:
            t.failures.append("%s: processes left after stopping the node: %s" % (scen.name, left))


def sweep(t, scen):
    """Sweeps a scenario on CPLET_CRASH_SWEEP_NODES simulated nodes at once (default 2: most
    of a point is waiting for processes). Returns the number of points swept."""
    n_workers = max(1, int(os.environ.get("CPLET_CRASH_SWEEP_NODES", "2")))
    counts = {}
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t, scen, i, n_workers, counts)) for i in range(n_workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t.check(len(counts.get("ops", ())) <= 1, "%s: the nodes counted different numbers of operations: %s"
            % (scen.name, sorted(counts.get("ops", ()))))
    say("# %s: %d points swept in %.0fs" % (scen.name, counts.get("swept", 0), time.monotonic() - start))
    return counts.get("swept", 0)


def run_prefix(s, prefix):
    """The interrupted rollout a scenario starts from (killed at a recorded point)."""
    if not prefix:
        return
    pargs, kill_at = prefix
    rc, out, err, ops = s.cplet(pargs, kill_at=kill_at)
    if rc != -signal.SIGKILL:
        raise Failure("the prefix %s was not killed at op %d (exit %r, stderr %r)" % (shell_quote(pargs), kill_at,
                                                                                     rc, err[-300:]))


TIMES = {}


def timed(key, t0):
    TIMES[key] = TIMES.get(key, 0.0) + time.monotonic() - t0
    return time.monotonic()


def sweep_point(s, args, prefix, n, what, target, target_reachable):
    problems = []
    t0 = time.monotonic()
    s.reset()
    t0 = timed("reset", t0)
    run_prefix(s, prefix)
    rc, out, err, ops = s.cplet(args, kill_at=n)
    t0 = timed("to the kill", t0)
    if rc != -signal.SIGKILL:
        return ["%s: cplet was not killed there (exit %r after %d operations; stderr %r)" % (what, rc, len(ops),
                                                                                           err[-300:])]
    problems += s.check_invariants(what + ", at the kill")
    j_at_kill = journal(s.root)
    snap, manifests = s.snapshot()
    try:
        for action in ("resume", "abort"):
            if action == "abort":
                s.put_back(manifests, snap)
                t0 = timed("put back", t0)
            expect = expected_after(j_at_kill, target_reachable, action == "resume")
            rc, out, err, _ = s.cplet([action] + GATE)
            t0 = timed(action, t0)
            want_rc = 0
            if action == "resume" and not target_reachable and (j_at_kill or {}).get("phase") in ("running",
                                                                                                "unwinding"):
                want_rc = 1  # resume ends the way the rollout did: the step failed (again), restored
            where = "%s, then %s (journal at the kill: %s)" % (what, action, describe(j_at_kill))
            if rc != want_rc:
                problems.append("%s: exit %r, expected %d; stderr %r" % (where, rc, want_rc, err.strip()[-400:]))
            problems += s.check_converged(where, expect, target)
            t0 = timed("checks", t0)
    finally:
        shutil.rmtree(snap, ignore_errors=True)
    return problems


def describe(j):
    if not j:
        return "none"
    steps = ["%s:%s:%s" % (st.get("component", "?").replace("kube-", ""), st.get("kind"), st.get("state"))
             for st in j.get("steps", [])]
    return "%s [%s]" % (j.get("phase"), ", ".join(steps))


# --------------------------------------------------------------------------------------

TOTAL = {"points": 0}
SCENARIOS = [
    Scenario("gated upgrade v1.34.2 -> v1.35.0", {}, UPGRADE, True),
    Scenario("failing step and its restore", FAIL_API, UPGRADE, False),
    # The upgrade is interrupted where its 4th step starts writing the API server's revision
    # 3 (3 steps done); then abort unwinds. Killed before it journals the unwind, the upgrade
    # is still running: resume goes on to the target.
    Scenario("unwind (abort after an interrupted upgrade)", {}, ["abort"] + GATE, True, prefix=UPGRADE,
             prefix_mark=os.path.join(STATE_DIR, "revisions", APISERVER, ".cplet-3.yaml")),
]


def test_scenario(i):
    def run(t):
        TOTAL["points"] += sweep(t, SCENARIOS[i])
    return run


TESTS = [
    ("SIGKILL at every durable operation of a gated 6-step upgrade: invariants, resume and abort converge",
     test_scenario(0)),
    ("SIGKILL at every durable operation of a failing step and its restore: resume and abort converge",
     test_scenario(1)),
    ("SIGKILL at every durable operation of an unwind (abort): resume and abort converge", test_scenario(2)),
]


def main():
    start = time.monotonic()
    failed = run_tap(TESTS, Case,
                     required=("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR", "CPLET_DURABLE_SHIM"),
                     only_var="CPLET_CRASH_SWEEP_ONLY", elapsed="# %.0fs")
    print("# crash points swept: %d in %.0fs (%s)" % (TOTAL["points"], time.monotonic() - start, ", ".join(
        "%s %.0fs" % kv for kv in sorted(TIMES.items()))), flush=True)
    return failed


class Case:
    def __init__(self, name):
        self.name = name
        self.failures = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)


if __name__ == "__main__":
    sys.exit(main())
