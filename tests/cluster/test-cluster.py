#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""TAP: `cplet cluster` end to end on the 3-node simulated HA control plane
(cluster_harness.py: a fake kubelet, fake components and `cplet daemon` per node, each
daemon reaching the API through its own node's API server): upgrade 1.34 -> 1.35 in the
order the skew policy requires, read back from the nodes' event logs (every API server on
its new binary before any controller-manager restarts, every binary before any emulation
change, one node at a time), the cluster at the target, then `rollback --emulated-version
1.34` in reverse order. One cluster for all cases (its start is the slow part)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

from cluster_harness import Cluster, cplet_binary  # noqa: E402

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
GATE = ["--stable-for", "1s", "--step-timeout", "60s", "--node-timeout", "180s"]


def cluster_cmd(c, *args, timeout=900):
    return subprocess.run([cplet_binary(), "cluster", "--kubeconfig", c.admin_kubeconfig] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def emulated_of(argv, tag):
    for a in argv or []:
        if a.startswith("--emulated-version="):
            return a.split("=", 1)[1].replace("kube=", "")
    return ".".join(tag.lstrip("v").split(".")[:2])


def starts_since(c, t0):
    """(node, component, binary tag, emulated) of each component start after t0, by time."""
    out = []
    for e in c.events(event="start"):
        comp = (e.get("file") or "").replace(".yaml", "")
        if e["t"] < t0 or comp not in COMPONENTS:
            continue
        tag = (e.get("image") or "").rsplit(":", 1)[-1]
        out.append((e["node"], comp, tag, emulated_of(e.get("argv"), tag)))
    return out


def first_of_each(starts):
    """The order in which (node, component, state) first appears (a crash restart repeats one)."""
    seen, order = set(), []
    for s in starts:
        if s not in seen:
            seen.add(s)
            order.append(s)
    return order


def check_order(t, order, want):
    t.check(order == want, "order of starts:\n  %s\nwant:\n  %s" % (
        "\n  ".join(map(str, order)), "\n  ".join(map(str, want))))


class Case:
    def __init__(self, name):
        self.name, self.failures = name, []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return cond


def t_status_before(t, c):
    p = cluster_cmd(c, "status", "--json")
    t.check(p.returncode == 0, "status: %s" % p.stderr)
    o = json.loads(p.stdout)
    t.check([n["name"] for n in o["nodes"]] == ["cp1", "cp2", "cp3"], o)
    for n in o["nodes"]:
        t.check(n["agent"] == "ok" and n["problems"] == [], "node %s: %s" % (n["name"], n["problems"]))
        for comp in n["components"]:
            t.check(comp["binaryVersion"] == "v1.34.2" and comp["mirrorPod"]["agrees"] is True,
                    "%s %s" % (n["name"], comp))


def poll_status(c, node, pred, timeout):
    """The node's cplet.io/status once pred holds, read on a connection of its own (the harness's
    admin client is shared); None on timeout."""
    client = c.api.client("kubernetes-admin", ["system:masters"], port=c.api.ports[c.lb])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                r = client.get("/api/v1/nodes/" + node)
                raw = (r.json()["metadata"].get("annotations") or {}).get("cplet.io/status")
                s = json.loads(raw) if raw else None
                if pred(s):
                    return s
            except Exception:  # noqa: BLE001 - a slow answer under load: ask again
                client.close()
            time.sleep(0.1)
        return None
    finally:
        client.close()


def t_upgrade_fault_then_rerun(t, c):
    """kube-controller-manager v1.35.0 never gets ready from the moment cp1's has succeeded:
    cp2's step fails, cp2's agent restores it, cp3 is not touched, exit 1 with the reason;
    without the fault the same command finishes."""
    t0 = time.time()
    argv = [cplet_binary(), "cluster", "--kubeconfig", c.admin_kubeconfig, "upgrade", "--binary-version",
            "v1.35.0", "--stable-for", "1s", "--step-timeout", "15s", "--node-timeout", "180s"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        s = poll_status(c, "cp1", lambda s: s and s.get("phase") == "Succeeded"
                        and (s.get("id") or "").endswith("-binary-kube-controller-manager"), timeout=300)
        t.check(s is not None, "cp1's controller-manager never succeeded")
        c.set_knobs({"kube-controller-manager": {"versions": {"v1.35.0": {"neverReady": True}}}})
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(30)
    t.check(p.returncode == 1, "exit %d\n%s\n%s" % (p.returncode, out[-3000:], err[-3000:]))
    t.check("kube-controller-manager on node cp2" in err and "RolledBack" in err, "stderr: %s" % err)
    tgt = json.loads(c.annotation("cp3", "cplet.io/target"))
    t.check(tgt["components"] == ["kube-apiserver"], "cp3 touched: %r" % tgt)
    order = first_of_each(starts_since(c, t0))
    want = [(n, "kube-apiserver", "v1.35.0", "1.34") for n in c.names]
    want += [("cp1", "kube-controller-manager", "v1.35.0", "1.34"), ("cp2", "kube-controller-manager", "v1.35.0", "1.34"),
             ("cp2", "kube-controller-manager", "v1.34.2", "1.34")]
    check_order(t, order, want)
    st = json.loads(cluster_cmd(c, "status", "--json").stdout)
    cp2 = [n for n in st["nodes"] if n["name"] == "cp2"][0]
    t.check(cp2["phase"] == "RolledBack" and cp2["components"][1]["binaryVersion"] == "v1.34.2", cp2)

    c.set_knobs({})
    t1 = time.time()
    p = cluster_cmd(c, "upgrade", "--binary-version", "v1.35.0", *GATE)
    t.check(p.returncode == 0, "re-run exit %d\n%s\n%s" % (p.returncode, p.stdout[-4000:], p.stderr[-3000:]))
    order = first_of_each(starts_since(c, t1))
    want = [(n, "kube-controller-manager", "v1.35.0", "1.34") for n in ("cp2", "cp3")]
    want += [(n, "kube-scheduler", "v1.35.0", "1.34") for n in c.names]
    want += [(n, comp, "v1.35.0", "1.35") for comp in COMPONENTS for n in c.names]
    check_order(t, order, want)
    check_upgraded(t, c, t0)


def check_upgraded(t, c, t0):
    # Every API server on its new binary before any controller-manager restarts; every binary
    # before any emulation change.
    starts = starts_since(c, t0)
    last_api = max(i for i, s in enumerate(starts) if s[1] == "kube-apiserver" and s[3] == "1.34")
    first_kcm = min(i for i, s in enumerate(starts) if s[1] == "kube-controller-manager")
    t.check(last_api < first_kcm, "a controller-manager restarted before every API server ran v1.35.0")
    last_bin = max(i for i, s in enumerate(starts) if s[3] == "1.34")
    first_emu = min(i for i, s in enumerate(starts) if s[3] == "1.35")
    t.check(last_bin < first_emu, "an emulation change before every binary was new")
    p = cluster_cmd(c, "status", "--json")
    for n in json.loads(p.stdout)["nodes"]:
        for comp in n["components"]:
            t.check((comp["binaryVersion"], comp["emulatedVersion"], comp["minCompatibilityVersion"])
                    == ("v1.35.0", "1.35", "1.34") and comp["mirrorPod"]["agrees"] is True,
                    "%s %s" % (n["name"], comp))
    p = cluster_cmd(c, "upgrade", "--binary-version", "v1.35.0", *GATE)
    t.check(p.returncode == 0 and "Nothing to do" in p.stdout, "re-run: %s %s" % (p.stdout, p.stderr))


def t_rollback(t, c):
    t0 = time.time()
    p = cluster_cmd(c, "rollback", "--emulated-version", "1.34", *GATE)
    t.check(p.returncode == 0, "rollback exit %d\n%s\n%s" % (p.returncode, p.stdout[-4000:], p.stderr[-3000:]))
    order = first_of_each(starts_since(c, t0))
    want = [(n, comp, "v1.35.0", "1.34") for comp in reversed(COMPONENTS) for n in reversed(c.names)]
    check_order(t, order, want)


CASES = [("status before", t_status_before),
         ("upgrade 1.34 -> 1.35: a fault on the second node stops it, the re-run finishes", t_upgrade_fault_then_rerun),
         ("rollback --emulated-version 1.34", t_rollback)]


def main():
    print("1..%d" % len(CASES))
    work = tempfile.mkdtemp(prefix="cplet-cluster-e2e-")
    failed = 0
    try:
        with Cluster(work) as c:
            for i, (name, fn) in enumerate(CASES, 1):
                t = Case(name)
                start = time.time()
                try:
                    fn(t, c)
                except Exception:
                    t.failures.append(traceback.format_exc())
                if t.failures:
                    failed += 1
                    print("not ok %d - %s" % (i, name))
                    for f in t.failures:
                        for line in str(f).splitlines():
                            print("# " + line)
                else:
                    print("ok %d - %s (%.0fs)" % (i, name, time.time() - start))
                sys.stdout.flush()
    except Exception:
        print("# the cluster did not start:")
        for line in traceback.format_exc().splitlines():
            print("# " + line)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
