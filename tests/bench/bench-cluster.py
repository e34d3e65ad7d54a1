#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of `cplet cluster upgrade` on the 3-node simulated HA control plane, printing TAP
(meson test --benchmark bench-cluster). Not a timed test: the figures are printed, the only
failures are runs that did not complete.

Setup: tests/cluster/cluster_harness.py (one fake API server with a listener per node, three
SimNodes with their fake kubelet, fake components and `cplet daemon`), every fake component
taking CPLET_BENCH_STARTUP_DELAY seconds (default 0.5) from process start to healthy; then
`cplet cluster upgrade --binary-version v1.35.0` with the gate of test-cluster.py (--stable-for
1s --step-timeout 60s --node-timeout 180s): 9 binary steps (emulated version pinned at 1.34),
then 9 emulation steps, one (node, component) per target.

Per (node, component) step, from the records of the run:
  T  target written     the controller's PATCH of the Node (fake API server's audit.log,
                        user kubernetes-admin, time at the end of the request)
  M  manifest swapped   the node's manifest replaced (its inode polled every 5 ms here)
  S  old process gone   the fake kubelet's "stop" event (emitted once the old process exited)
  B  new process start  the fake kubelet's "start" event
  R  new one ready      max(its "Serving securely" log line, B + the startup delay): the
                        moment its health endpoint answers 200 (fake_component.py)
  G  Succeeded seen     the node's cplet.io/status with the step's id and phase Succeeded,
                        seen through a watch of the Node on the load balancer's listener
The components' own restart-to-ready time of a step is S -> R (the time no controller can
save); M -> S (the kubelet's reaction and the old process's termination) is shown apart.
wall = the command's start to its exit; overhead per step = (wall - sum(S -> R)) / steps.
G -> T' (the next target written, or the command's exit after the last step) holds the
controller's checks: the mirror pod's new revision and Ready, and for a controller-manager or a
scheduler the Lease renewed again; "leader" says whether the restarted process was the last to
renew its Lease before T (from the audit log: each node's controllers use their own node's
listener), in which case another one takes over only once the Lease expires (4 s here).

Not measured: anything of the real kubelet, container runtime or binaries (the fakes start in
about the same time whatever the version); the time an old process takes between SIGTERM and
its exit, apart from M -> S.

Environment: CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_SIM_LAUNCHER (tests/meson.build);
CPLET_BENCH_RUNS (default 1), CPLET_BENCH_STARTUP_DELAY (seconds, default 0.5).
"""

import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "cluster"))
sys.path.insert(0, os.path.join(TESTS, "e2e"))

from cluster_harness import Cluster, cplet_binary  # noqa: E402
from daemon_util import StatusLog  # noqa: E402

NEW = "v1.35.0"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
GATE = ["--stable-for", "1s", "--step-timeout", "60s", "--node-timeout", "180s"]
STEPS = 18
RUNS = int(os.environ.get("CPLET_BENCH_RUNS") or 1)
DELAY = float(os.environ.get("CPLET_BENCH_STARTUP_DELAY") or 0.5)
KLOG = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+\d+ [^\]]*\] (.*)$")


def audit_time(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def klog_time(mon, day, h, m, s, us):
    """A klog header's local time as seconds since the epoch (the year is this one's)."""
    year = time.localtime().tm_year
    return time.mktime((year, int(mon), int(day), int(h), int(m), int(s), 0, 0, -1)) + int(us) / 1e6


def serving_times(node, comp):
    """Times of the "Serving securely" lines of a node's component log."""
    out = []
    try:
        with open(os.path.join(node.log_dir, comp + ".yaml.log"), errors="replace") as f:
            for line in f:
                mt = KLOG.match(line)
                if mt and mt.group(7).startswith('"Serving securely'):
                    out.append(klog_time(*mt.groups()[:6]))
    except OSError:
        pass
    return out


class SwapWatch:
    """Polls the inode of every node's manifests every 5 ms: [(time seen, node, component)]."""

    def __init__(self, cluster):
        self.paths = {(n, c): cluster.nodes[n].manifest_path(c) for n in cluster.names for c in COMPONENTS}
        self.ino = {k: self._ino(p) for k, p in self.paths.items()}
        self.swaps = []
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @staticmethod
    def _ino(path):
        try:
            return os.stat(path).st_ino
        except OSError:
            return None

    def _run(self):
        while not self._stop.is_set():
            for k, p in self.paths.items():
                ino = self._ino(p)
                if ino is not None and ino != self.ino[k]:
                    self.ino[k] = ino
                    self.swaps.append((time.time(), k[0], k[1]))
            self._stop.wait(0.005)

    def stop(self):
        self._stop.set()
        self.t.join(2)


class Observer:
    """Adapter for daemon_util.StatusLog: the admin on the load balancer's listener."""

    def __init__(self, c):
        self.srv = c.api
        self.side_port = c.api.ports[c.lb]


def first_after(xs, t, until=None):
    for x in sorted(xs):
        if x >= t and (until is None or x < until):
            return x
    return None


def stats(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    if not xs:
        return None
    return min(xs), statistics.median(xs), max(xs), sum(xs)


def one_run(index):
    work = tempfile.mkdtemp(prefix="cplet-bench-cluster-")
    res = {"run": index, "problems": []}
    logs = {}
    try:
        c = Cluster(work, knobs={"default": {"startupDelay": DELAY}})
        c.start(timeout=120)
        try:
            for n in c.names:
                logs[n] = StatusLog(Observer(c), n)
            time.sleep(1.0)
            sw = SwapWatch(c)
            argv = [cplet_binary(), "cluster", "--kubeconfig", c.admin_kubeconfig, "upgrade",
                    "--binary-version", NEW] + GATE
            t0 = time.time()
            p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            t1 = time.time()
            time.sleep(0.5)
            sw.stop()
            res["wall"] = t1 - t0
            res["exit"] = p.returncode
            if p.returncode != 0:
                res["problems"].append("exit %d\n%s\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
                return res
            res["steps"] = analyse(c, t0, t1, sw, logs, res)
        finally:
            for lg in logs.values():
                lg.stop()
            c.stop()
    except Exception:  # noqa: BLE001
        res["problems"].append(traceback.format_exc())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


def analyse(c, t0, t1, sw, logs, res):
    audit = []
    for rec in c.api.audit():
        path = rec.get("path") or ""
        if (rec.get("user") == "kubernetes-admin" and rec.get("method") in ("PATCH", "PUT")
                and path.split("?")[0].startswith("/api/v1/nodes/") and rec.get("code") == 200):
            t = audit_time(rec["ts"])
            if t0 <= t <= t1:
                audit.append((t, path.split("?")[0].rsplit("/", 1)[1]))
    audit.sort()
    # who renewed each Lease, when: each node's controller-manager and scheduler reach the API
    # through their own node's listener, so the listener names the holder's node
    lease_writes = []
    for rec in c.api.audit():
        path = (rec.get("path") or "").split("?")[0]
        if (path.startswith("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/")
                and rec.get("method") in ("PUT", "PATCH", "POST") and rec.get("code") in (200, 201)
                and rec.get("listener") is not None and rec["listener"] < len(c.names)):
            lease_writes.append((audit_time(rec["ts"]), path.rsplit("/", 1)[1], c.names[rec["listener"]]))
    lease_writes.sort()
    starts = [e for e in c.events(event="start") if e["t"] >= t0
              and (e.get("file") or "").replace(".yaml", "") in COMPONENTS]
    stops = [e for e in c.events() if e["t"] >= t0 and e["event"] in ("stop", "exit")
             and (e.get("file") or "").replace(".yaml", "") in COMPONENTS]
    if len(starts) != STEPS:
        res["problems"].append("%d component starts, expected %d" % (len(starts), STEPS))
    if len(audit) != STEPS:
        res["problems"].append("%d target writes in the audit log, expected %d" % (len(audit), STEPS))
    steps = []
    for i, (tt, node) in enumerate(audit):
        nxt = audit[i + 1][0] if i + 1 < len(audit) else t1
        st = {"node": node, "T": tt, "next": nxt}
        # the step's component: the one this node starts next
        b = [e for e in starts if e["node"] == node and tt <= e["t"] < nxt]
        if not b:
            res["problems"].append("no start on %s after the target written at %.3f" % (node, tt))
            steps.append(st)
            continue
        comp = b[0]["file"].replace(".yaml", "")
        st.update({"component": comp, "B": b[0]["t"], "restarts": len(b)})
        s = [e["t"] for e in stops if e["node"] == node and e["file"] == comp + ".yaml" and tt <= e["t"] <= st["B"]]
        st["S"] = s[0] if s else None
        held = [w[2] for w in lease_writes if w[1] == comp and w[0] <= tt]
        st["leader"] = (held[-1] == node) if held else None
        m = [x[0] for x in sw.swaps if x[1] == node and x[2] == comp and tt <= x[0] <= st["B"]]
        st["M"] = m[0] if m else None
        serving = first_after(serving_times(c.nodes[node], comp), st["B"], nxt)
        st["R"] = max(serving, st["B"] + DELAY) if serving is not None else None
        g = [v[0] for v in logs[node].values if tt <= v[0] <= nxt + 0.5 and v[2]
             and v[2].get("phase") == "Succeeded"]
        st["G"] = g[0] if g else None
        st["id"] = ([v[2].get("id") for v in logs[node].values if v[2] and v[0] == st["G"]] or [None])[0]
        steps.append(st)
    res["firstTarget"] = audit[0][0] - t0 if audit else None
    res["lastGate"] = t1 - steps[-1]["G"] if steps and steps[-1].get("G") else None
    return steps


def d(st, a, b):
    x, y = st.get(a), st.get(b)
    return (y - x) if isinstance(x, (int, float)) and isinstance(y, (int, float)) else None


def report(res):
    steps = res.get("steps") or []
    own = [d(s, "S", "R") for s in steps]
    sum_own = sum(x for x in own if x is not None)
    n = len(steps)
    wall = res["wall"]
    print("# run %d: %d steps; per step (seconds):" % (res["run"], n))
    print("#   %-4s %-24s %6s %6s %6s %6s %6s %6s  %s" % ("node", "component", "T->M", "M->S", "S->R",
                                                       "R->G", "G->T'", "starts", "leader"))
    for s in steps:
        def f(a, b):
            x = d(s, a, b)
            return "%6.3f" % x if x is not None else "   n/a"
        lead = {True: "yes", False: "no"}.get(s.get("leader"), "-")
        print("#   %-4s %-24s %s %s %s %s %s %6s  %s" % (s["node"], s.get("component", "?"), f("T", "M"), f("M", "S"),
                                                         f("S", "R"), f("R", "G"), f("G", "next"), s.get("restarts", "?"),
                                                         lead))
    print("#")
    print("# settings: 3 nodes, %s -> %s, %s, fake components' startupDelay %.2fs, harness leader "
          "election 4s/3s/500ms" % ("v1.34.2", NEW, " ".join(GATE), DELAY))
    print("# %-58s %9s" % ("measure", "seconds"))
    print("# %-58s %9.2f" % ("wall time of `cplet cluster upgrade` (start to exit)", wall))
    print("# %-58s %9.2f" % ("sum of the components' own restart-to-ready (S->R)", sum_own))
    print("# %-58s %9.2f" % ("ratio wall / sum", wall / sum_own if sum_own else float("nan")))
    print("# %-58s %9.3f" % ("added time per step, (wall - sum) / %d" % n, (wall - sum_own) / n if n else float("nan")))
    print("#")
    print("# %-44s %7s %7s %7s %8s" % ("per step, attributed", "min", "median", "max", "sum"))
    rows = [("S->R  component's own restart to ready", "S", "R"),
            ("T->M  target written -> manifest swapped", "T", "M"),
            ("M->S  manifest swapped -> old process gone", "M", "S"),
            ("R->G  ready -> Succeeded seen (gate)", "R", "G"),
            ("G->T' Succeeded -> next target (checks)", "G", "next")]
    for label, a, b in rows:
        x = stats([d(s, a, b) for s in steps])
        if x:
            print("# %-44s %7.3f %7.3f %7.3f %8.2f" % ((label,) + x))
        else:
            print("# %-44s %7s" % (label, "n/a"))
    for label, want in (("G->T'  when the restarted one held the Lease", True),
                        ("G->T'  any other step", False)):
        x = stats([d(s, "G", "next") for s in steps[:-1] if bool(s.get("leader")) == want])
        if x:
            print("# %-44s %7.3f %7.3f %7.3f %8.2f" % ((label,) + x))
    print("# %-44s %7.3f" % ("start -> first target written", res.get("firstTarget") or float("nan")))
    print("# %-44s %7.3f" % ("last Succeeded seen -> exit", res.get("lastGate") or float("nan")))
    print("#   (G->T' of the last step is its Succeeded -> exit)")


def main():
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR") if not os.environ.get(v)]
    print("1..%d" % RUNS, flush=True)
    try:
        print("# load average before: %s (the figures are sensitive to other work on the machine)"
              % " ".join(open("/proc/loadavg").read().split()[:3]))
    except OSError:
        pass
    if missing:
        for i in range(1, RUNS + 1):
            print("not ok %d - run %d\n# environment variable(s) not set: %s" % (i, i, ", ".join(missing)))
        return 1
    failed = 0
    out = []
    for i in range(1, RUNS + 1):
        res = one_run(i)
        out.append(res)
        name = "run %d: `cplet cluster upgrade --binary-version %s` on 3 simulated nodes" % (i, NEW)
        if "steps" in res:
            report(res)
        if res["problems"]:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for p in res["problems"]:
                for line in str(p).splitlines():
                    print("#   problem: " + line)
        else:
            print("ok %d - %s (%.1fs)" % (i, name, res["wall"]))
        sys.stdout.flush()
    print(json.dumps({"benchmark": "bench-cluster", "startupDelay": DELAY, "gate": GATE, "runs": out},
                     sort_keys=True, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
