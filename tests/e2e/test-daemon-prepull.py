#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cplet daemon runs issue 11's checks before a target's first write, printing TAP: it pulls the
target's images, and it refuses a target the preflight refuses unless `dropRemoved` says what
to drop. A fake crictl (tests/sim/fake_crictl.py) is the daemon's only program in PATH and
a unix socket under the node root stands where containerd's would listen.

- the status says which image the node waits for while it is pulled ("pulling IMAGE (i/n)"),
  still Pending; the rollout then runs and succeeds, each image pulled once;
- an image that cannot be pulled: Failed (not RolledBack: nothing was written), the image named,
  the manifests byte-identical and no journal;
- SIGTERM during a pull: exit 0, no record that the target was handled, and the next start runs
  the same target from the beginning;
- a node whose kube-apiserver sets a gate 1.35 removed (AllowServiceLBStatusOnNonLB, locked to
  false since 1.32, gone in 1.35): the target to v1.35.0 is Refused naming it, nothing written;
  a new generation with dropRemoved runs, and the gate is gone from the manifest.

Environment (tests/meson.build): CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR,
CPLET_SIM_LAUNCHER, CPLET_APISERVER_DIR.
"""

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "sim"))
sys.path.insert(0, os.environ.get("CPLET_APISERVER_DIR") or os.path.join(TESTS, "apiserver"))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from daemon_util import Cluster, Daemon, StatusLog, TARGET  # noqa: E402
from e2e_util import crictl_env  # noqa: E402
from simnode import SimNode  # noqa: E402

NODES = ("p1", "p2", "p3", "p4")
OLD, NEW = "v1.34.2", "v1.35.0"
TERMINAL = ("Succeeded", "Failed", "RolledBack", "Refused")
MANIFESTS = os.path.join("etc", "kubernetes", "manifests")


class World:
    def __init__(self):
        self.cluster = Cluster(NODES, git_version=OLD)
        self.dirs, self.sims, self.daemons, self.logs, self.sockets = [], [], [], [], []

    def node(self, name, flags=None):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-dpull-%s-" % name))
        self.dirs.append(root)
        n = SimNode(root, OLD, backoff=0.1, backoff_max=1.0, grace=2.0, flags=flags)
        self.sims.append(n)
        n.up(timeout=30)
        sock = os.path.join(root, "run", "containerd", "containerd.sock")
        os.makedirs(os.path.dirname(sock), exist_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock)
        s.listen(64)
        self.sockets.append(s)
        return n

    def crictl_env(self, **knobs):
        return crictl_env(self.dirs, **knobs)

    def daemon(self, node, name, env):
        d = Daemon(node.root, self.cluster.kubelet_conf(name), node_name=name, env=env)
        self.daemons.append(d)
        if d.wait_ready(30) is None:
            raise RuntimeError("no READY=1 from the daemon: %s" % d.describe())
        return d

    def log(self, name):
        log = StatusLog(self.cluster, name)
        self.logs.append(log)
        return log

    def close(self):
        problems = []
        for d in self.daemons:
            if d.alive():
                d.stop(signal.SIGTERM, 30)
            if not d.close():
                problems.append("a daemon (pid %d) still runs" % d.pid)
        for log in self.logs:
            log.stop()
        for n in self.sims:
            left = n.down()
            if left:
                problems.append("processes left: %r" % left)
        for s in self.sockets:
            s.close()
        self.cluster.stop()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        return problems


def calls(env):
    path = env["CRICTL_FAKE_LOG"]
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if json.loads(line)["call"] == "start"]


def pulled_images(env):
    return sorted(c["argv"][-1] for c in calls(env))


def snapshot(root):
    d = os.path.join(root, MANIFESTS)
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


def target(id_, generation=1, **more):
    return json.dumps(dict({"id": id_, "generation": generation, "binaryVersion": NEW, "stableFor": "0s",
                            "stepTimeout": "60s"}, **more), separators=(",", ":"))


class Case:
    def __init__(self):
        self.failures = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return cond

    def need(self, cond, msg):
        if not cond:
            raise AssertionError(msg)


NEW_IMAGES = sorted("registry.k8s.io/%s:%s" % (c, NEW)
                    for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"))


def test_status_while_pulling(t, w):
    node = w.node("p1")
    env = w.crictl_env(delay=1.5)
    log = w.log("p1")
    d = w.daemon(node, "p1", env)
    mark = log.mark()
    w.cluster.annotate("p1", TARGET, target("pull-1"))
    v = log.wait(lambda s: s.get("phase") == "Pending" and "pulling registry.k8s.io/" in (s.get("message") or ""),
                 30, mark, d)
    t.check(v is not None, "no Pending status naming the image being pulled: %r"
            % [x[2] and (x[2].get("phase"), x[2].get("message")) for x in log.snapshot()[mark:]])
    if v:
        t.check("(1/3)" in v[2]["message"] or "(2/3)" in v[2]["message"] or "(3/3)" in v[2]["message"],
                "the message counts the images: %r" % v[2]["message"])
    end = log.wait(lambda s: s.get("phase") in TERMINAL, 120, mark, d)
    t.need(end is not None, "the target did not end: %s" % d.describe())
    t.check(end[2]["phase"] == "Succeeded", "phase %r (%r)" % (end[2]["phase"], end[2].get("message")))
    t.check(pulled_images(env) == NEW_IMAGES, "each new image pulled once: %r" % pulled_images(env))


def test_pull_fails(t, w):
    node = w.node("p2")
    missing = "registry.k8s.io/kube-scheduler:%s" % NEW
    env = w.crictl_env(missing=missing)
    log = w.log("p2")
    d = w.daemon(node, "p2", env)
    before = snapshot(node.root)
    mark = log.mark()
    w.cluster.annotate("p2", TARGET, target("pull-2"))
    end = log.wait(lambda s: s.get("phase") in TERMINAL, 60, mark, d)
    t.need(end is not None, "the target did not end: %s" % d.describe())
    t.check(end[2]["phase"] == "Failed", "a pull that fails is Failed (nothing to roll back), not %r: %r"
            % (end[2]["phase"], end[2].get("message")))
    t.check(missing in (end[2].get("message") or ""), "the message names the image: %r" % end[2].get("message"))
    t.check(snapshot(node.root) == before, "the manifests are byte-identical")
    t.check(not os.path.exists(os.path.join(node.root, "var", "lib", "cplet", "rollout.json")), "no journal")


def test_sigterm_during_pull(t, w):
    node = w.node("p3")
    slow = w.crictl_env(delay=20)
    log = w.log("p3")
    d = w.daemon(node, "p3", slow)
    mark = log.mark()
    w.cluster.annotate("p3", TARGET, target("pull-3"))
    t.need(log.wait(lambda s: "pulling" in (s.get("message") or ""), 30, mark, d) is not None,
           "no pulling status: %s" % d.describe())
    rc, took = d.stop(signal.SIGTERM, 30)
    t.check(rc == 0, "exit status on SIGTERM during a pull: %r (stderr %r)" % (rc, d.err[-300:]))
    t.check(took < 10, "SIGTERM during a pull took %.1f s" % took)
    handled = os.path.join(node.root, "var", "lib", "cplet", "daemon.json")
    t.check(not os.path.exists(handled), "daemon.json after a SIGTERM before the first write: %r"
            % (open(handled).read() if os.path.exists(handled) else None))
    t.check(not os.path.exists(os.path.join(node.root, "var", "lib", "cplet", "rollout.json")), "no journal")
    mark = log.mark()
    fast = w.crictl_env()
    d2 = w.daemon(node, "p3", fast)
    end = log.wait(lambda s: s.get("phase") in TERMINAL and s.get("id") == "pull-3", 120, mark, d2)
    t.need(end is not None, "the restarted daemon did not run the target again: %s" % d2.describe())
    t.check(end[2]["phase"] == "Succeeded", "phase %r (%r)" % (end[2]["phase"], end[2].get("message")))
    t.check(pulled_images(fast) == NEW_IMAGES, "the restart pulled every image: %r" % pulled_images(fast))


def test_preflight_refuses_target(t, w):
    gate = "AllowServiceLBStatusOnNonLB"
    node = w.node("p4", flags={"kube-apiserver": {"feature-gates": gate + "=false"}})
    env = w.crictl_env()
    log = w.log("p4")
    d = w.daemon(node, "p4", env)
    before = snapshot(node.root)
    mark = log.mark()
    w.cluster.annotate("p4", TARGET, target("pf-1"))
    end = log.wait(lambda s: s.get("phase") in TERMINAL, 60, mark, d)
    t.need(end is not None, "the target did not end: %s" % d.describe())
    msg = end[2].get("message") or ""
    t.check(end[2]["phase"] == "Refused", "phase %r, not Refused: %r" % (end[2]["phase"], msg))
    t.check(gate in msg and "1.35" in msg, "the refusal names the gate and the release: %r" % msg)
    t.check(snapshot(node.root) == before, "the manifests are byte-identical after the refusal")
    t.check(calls(env) == [], "nothing pulled for a refused target: %r" % calls(env))
    mark = log.mark()
    w.cluster.annotate("p4", TARGET, target("pf-1", generation=2, dropRemoved=[gate]))
    end = log.wait(lambda s: s.get("phase") in TERMINAL and s.get("generation") == 2, 120, mark, d)
    t.need(end is not None, "generation 2 did not end: %s" % d.describe())
    t.check(end[2]["phase"] == "Succeeded", "with dropRemoved: phase %r (%r)" % (end[2]["phase"], end[2].get("message")))
    live = open(os.path.join(node.root, MANIFESTS, "kube-apiserver.yaml")).read()
    t.check(gate not in live, "the gate is gone from kube-apiserver.yaml")
    t.check("v1.35.0" in live, "kube-apiserver.yaml runs v1.35.0")


CASES = [
    ("while a target's images are pulled the status is Pending and names the image (i/n); then Succeeded",
     test_status_while_pulling),
    ("an image that cannot be pulled: Failed naming it, nothing written, no journal", test_pull_fails),
    ("SIGTERM during the pull: exit 0, the target not recorded as handled; the next start runs it", test_sigterm_during_pull),
    ("a target the preflight refuses (a gate 1.35 removed) is Refused naming it, nothing written; with dropRemoved "
     "it runs and the gate is gone", test_preflight_refuses_target),
]


def main():
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR") if not os.environ.get(v)]
    print("1..%d" % (len(CASES) + 1), flush=True)
    if missing:
        for i, (name, _) in enumerate(CASES, 1):
            print("not ok %d - %s\n# environment variable(s) not set: %s" % (i, name, ", ".join(missing)))
        return 1
    w = World()
    failed = 0
    for i, (name, fn) in enumerate(CASES, 1):
        t = Case()
        try:
            fn(t, w)
        except Exception:
            t.failures.append(traceback.format_exc())
        if t.failures:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for f in t.failures:
                for line in str(f).splitlines():
                    print("# " + line)
        else:
            print("ok %d - %s" % (i, name))
        sys.stdout.flush()
    problems = w.close()
    if problems:
        failed += 1
        print("not ok %d - teardown" % (len(CASES) + 1))
        for p in problems:
            print("# " + p)
    else:
        print("ok %d - teardown: no daemon or simulated process left" % (len(CASES) + 1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
