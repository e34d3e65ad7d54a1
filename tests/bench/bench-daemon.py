#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of `cplet daemon`, printing TAP (meson test --benchmark bench-daemon). Not a timed
test: the figures are printed, the only failures are runs that did not complete.

Setup: the fake API server (tests/apiserver) with one Node object per run, a fresh simulated
node per run (tests/sim) whose fake components take 500 ms from process start to healthy, the
daemon on it with that node's kubelet.conf; the target (1.34 -> 1.35, 6 steps, stableFor 0s)
is written with a merge patch by the administrator (not kubectl: its own start would count).

Measured per run:
  reaction    target written (the PATCH's response received here) -> the first manifest swap
              (the live kube-apiserver.yaml replaced: its inode changes; polled every 1 ms, and
              the new file's ctime, which the rename sets, as a cross-check)
  report      last step healthy (the new kube-scheduler's /proc start tick + 500 ms, turned
              into wall-clock time) -> Succeeded visible through the API (the administrator's
              watch of the Node delivers the status annotation)
  memory      the daemon's private memory after the rollout: Private_Clean + Private_Dirty of
              /proc/PID/smaps_rollup (Private_Clean counts the library pages no other process
              maps at that moment, so it varies with what else runs; Private_Dirty is the
              daemon's own), and its VmHWM
Then, with the last run's daemon idle after Succeeded (CPLET_BENCH_IDLE seconds, default 60):
  wakeups     context switches of all its threads (/proc/PID/task/*/status, voluntary and
              involuntary) per minute, and its requests to the API server in that time (audit.log)

Results: `# ` lines and a table, then one JSON line ({"benchmark": "bench-daemon", ...}).
Environment: CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR, CPLET_SIM_LAUNCHER
(tests/meson.build); CPLET_BENCH_RUNS (default 3), CPLET_BENCH_IDLE (seconds, default 60).
"""

import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

from daemon_util import (  # noqa: E402
    TARGET, Cluster, Daemon, StatusLog, ctxt_switches, is_watch, private_memory_kib,
)
from e2e_util import SimNode, mpath, proc_status  # noqa: E402

OLD = "v1.34.2"
NEW = "v1.35.0"
DELAY = 0.5
STEPS = 6
RUNS = int(os.environ.get("CPLET_BENCH_RUNS") or 3)
IDLE = float(os.environ.get("CPLET_BENCH_IDLE") or 60)


def start_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def boot_to_wall():
    """wall - CLOCK_BOOTTIME, sampled tightly (the smallest gap between the two reads wins)."""
    best = None
    for _ in range(50):
        a = time.time()
        b = time.clock_gettime(time.CLOCK_BOOTTIME)
        c = time.time()
        if best is None or c - a < best[0]:
            best = (c - a, (a + c) / 2 - b)
    return best[1]


class SwapWatch:
    """Polls a manifest's inode every 1 ms from now on: the wall time the first swap was seen and
    the new file's ctime."""

    def __init__(self, path):
        self.path = path
        self.ino = os.stat(path).st_ino
        self.seen = self.ctime = None
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop:
            try:
                st = os.stat(self.path)
            except OSError:
                st = None
            if st is not None and st.st_ino != self.ino:
                self.seen = time.time()
                self.ctime = st.st_ctime_ns / 1e9
                return
            time.sleep(0.001)

    def stop(self):
        self._stop = True
        self.t.join(2)


def one_run(cluster, index, keep):
    name = "b%d" % index
    root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-bench-daemon-"))
    node = SimNode(root, OLD, knobs={"default": {"startupDelay": DELAY}}, backoff=0.2)
    log = d = None
    res = {"run": index, "problems": []}
    try:
        node.up(timeout=30)
        log = StatusLog(cluster, name)
        d = Daemon(root, cluster.kubelet_conf(name), node_name=name)
        if d.wait_ready(30) is None:
            raise RuntimeError("no READY=1: %s" % d.describe())
        if log.wait(lambda s: s.get("phase") == "Idle", 20, 0, d) is None:
            raise RuntimeError("no Idle status: %s" % d.describe())
        time.sleep(0.5)
        mark = log.mark()
        sw = SwapWatch(mpath(root, "kube-apiserver"))
        value = json.dumps({"id": "bench-%d" % index, "generation": 1, "binaryVersion": NEW, "stableFor": "0s",
                            "stepTimeout": "30s"})
        sent = time.time()
        cluster.patch_annotations(name, {TARGET: value})
        acked = time.time()
        v = log.wait(lambda s: s.get("id") == "bench-%d" % index and s.get("phase") in
                     ("Succeeded", "Failed", "RolledBack", "Refused"), 120, mark, d)
        sw.stop()
        if v is None or v[2].get("phase") != "Succeeded":
            raise RuntimeError("no Succeeded: %r; %s" % (v and v[2], d.describe()))
        offset = boot_to_wall()
        starts = [e for e in node.events("start") if e["t"] >= sent and e["file"] == "kube-scheduler.yaml"]
        ticks = start_ticks(starts[-1]["pid"]) if starts else None
        if ticks is None:
            res["problems"].append("the last kube-scheduler start was not read")
            healthy = None
        else:
            healthy = ticks / os.sysconf("SC_CLK_TCK") + DELAY + offset
        res.update({
            "sendMs": (acked - sent) * 1000,
            "reactionMs": (sw.seen - acked) * 1000 if sw.seen else None,
            "reactionCtimeMs": (sw.ctime - acked) * 1000 if sw.ctime else None,
            "reportMs": (v[0] - healthy) * 1000 if healthy else None,
            "rolloutSeconds": v[0] - acked,
            "starts": len([e for e in node.events("start") if e["t"] >= sent]),
        })
        mem = private_memory_kib(d.pid) or {}
        st = proc_status(d.pid) or {}
        res.update({"privateKiB": mem.get("Private"), "privateDirtyKiB": mem.get("Private_Dirty"),
                    "rssKiB": mem.get("Rss"), "pssKiB": mem.get("Pss"), "vmHWMKiB": st.get("VmHWM")})
        if res["starts"] != STEPS:
            res["problems"].append("%d restarts, expected %d" % (res["starts"], STEPS))
        if keep:
            return res, (node, d, log, root, name)
        return res, None
    except Exception:  # noqa: BLE001
        res["problems"].append(traceback.format_exc())
        return res, None
    finally:
        if not (keep and not res["problems"]):
            if d:
                d.stop(signal.SIGTERM, 30)
                d.close()
            if log:
                log.stop()
            node.down()
            shutil.rmtree(root, ignore_errors=True)


def idle(cluster, kept):
    node, d, log, root, name = kept
    try:
        time.sleep(2)
        mark = log.mark()
        a = time.time()
        c0 = ctxt_switches(d.pid)
        time.sleep(IDLE)
        c1 = ctxt_switches(d.pid)
        b = time.time()
        time.sleep(0.3)
        recs = cluster.audit(user="system:node:" + name, since=a, until=b)
        mem = private_memory_kib(d.pid) or {}
        return {
            "seconds": b - a,
            "wakeupsPerMinute": (c1 - c0) * 60.0 / (b - a) if c0 is not None and c1 is not None else None,
            "requestsPerMinute": len(recs) * 60.0 / (b - a),
            "nonWatchRequests": ["%s %s %d" % (r["method"], r["path"], r["code"]) for r in recs if not is_watch(r)],
            "statusWrites": len(log.snapshot()[mark:]),
            "privateKiB": mem.get("Private"),
            "privateDirtyKiB": mem.get("Private_Dirty"),
            "alive": d.alive(),
        }
    finally:
        d.stop(signal.SIGTERM, 30)
        d.close()
        log.stop()
        node.down()
        shutil.rmtree(root, ignore_errors=True)


def fmt(x, unit=""):
    return "%.1f%s" % (x, unit) if isinstance(x, (int, float)) else "n/a"


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def mx(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return max(xs) if xs else None


def main():
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR") if not os.environ.get(v)]
    names = ["%d daemon-driven upgrades 1.34 -> 1.35 completed on fresh nodes" % RUNS,
             "the daemon idle for %.0f s after Succeeded: measured" % IDLE]
    print("1..%d" % len(names), flush=True)
    try:
        print("# load average before: %s (the figures are sensitive to other work on the machine)"
              % " ".join(open("/proc/loadavg").read().split()[:3]))
    except OSError:
        pass
    if missing:
        for i, n in enumerate(names, 1):
            print("not ok %d - %s\n# environment variable(s) not set: %s" % (i, n, ", ".join(missing)))
        return 1
    cluster = Cluster(["b%d" % i for i in range(1, RUNS + 1)], git_version=OLD)
    runs, kept = [], None
    try:
        for i in range(1, RUNS + 1):
            r, k = one_run(cluster, i, keep=(i == RUNS))
            kept = k or kept
            runs.append(r)
            print("# run %d: reaction %s ms (ctime %s ms), report %s ms, rollout %s s, private %s KiB, VmHWM %s KiB%s"
                  % (i, fmt(r.get("reactionMs")), fmt(r.get("reactionCtimeMs")), fmt(r.get("reportMs")),
                     fmt(r.get("rolloutSeconds")), r.get("privateKiB"), r.get("vmHWMKiB"),
                     "".join("\n#   problem: " + line for p in r["problems"] for line in p.splitlines())),
                  flush=True)
        idle_res = idle(cluster, kept) if kept else None
    finally:
        cluster.stop()

    ok_runs = len(runs) == RUNS and all(not r["problems"] for r in runs)
    print("%s 1 - %s" % ("ok" if ok_runs else "not ok", names[0]))
    ok_idle = idle_res is not None and idle_res["alive"] and idle_res["wakeupsPerMinute"] is not None
    print("%s 2 - %s" % ("ok" if ok_idle else "not ok", names[1]))
    rows = [
        ("target written -> first manifest swap", "ms", [r.get("reactionMs") for r in runs]),
        ("  (same, from the new manifest's ctime)", "ms", [r.get("reactionCtimeMs") for r in runs]),
        ("last step healthy -> Succeeded via the API", "ms", [r.get("reportMs") for r in runs]),
        ("whole rollout (6 steps x 0.5 s startup)", "s", [r.get("rolloutSeconds") for r in runs]),
        ("private memory after the rollout", "KiB", [r.get("privateKiB") for r in runs]),
        ("  of which Private_Dirty", "KiB", [r.get("privateDirtyKiB") for r in runs]),
        ("VmHWM", "KiB", [r.get("vmHWMKiB") for r in runs]),
    ]
    print("# %-44s %10s %10s  %s" % ("metric", "median", "max", "runs"))
    for label, unit, xs in rows:
        print("# %-44s %10s %10s  %s" % (label, fmt(med(xs)), fmt(mx(xs)), " ".join(fmt(x) for x in xs) + " " + unit))
    if idle_res:
        print("# %-44s %10s" % ("idle wakeups per minute (all threads)", fmt(idle_res["wakeupsPerMinute"])))
        print("# %-44s %10s" % ("idle API requests per minute", fmt(idle_res["requestsPerMinute"])))
        print("# %-44s %10s" % ("idle status writes", idle_res["statusWrites"]))
        print("# %-44s %10s KiB (Private_Dirty %s KiB)" % ("private memory after %.0f s idle" % idle_res["seconds"],
                                                              idle_res["privateKiB"], idle_res["privateDirtyKiB"]))
        for r in idle_res["nonWatchRequests"]:
            print("#   idle request other than the watch: %s" % r)
    print(json.dumps({"benchmark": "bench-daemon", "steps": STEPS, "startupDelay": DELAY, "stableFor": 0,
                      "runs": runs, "idle": idle_res}, sort_keys=True, default=str))
    return 0 if ok_runs and ok_idle else 1


if __name__ == "__main__":
    sys.exit(main())
