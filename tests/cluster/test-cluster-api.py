#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`cplet cluster` against the fake API server (tests/apiserver), which enforces RBAC loaded
from exactly the shipped manifests (deploy/cplet-cluster-rbac.yaml): the controller runs with
a client certificate of a user in the group they bind (cplet:cluster-controllers) and nothing
more. No simulated nodes: Node objects carry the agents' status annotations, mirror pods and
Leases are written by the test as the kubelet, the daemons and the components would.

status and plan: read-only, every request allowed. upgrade: the test plays the node agents
(a thread that answers each cplet.io/target with a status, updates the mirror pod as the
kubelet does, and renews the leader Leases as kube-controller-manager and kube-scheduler do),
so the controller's protocol, verification, failure and Lease handling run for real.
The 3-node end to end on simulated nodes is tests/cluster/test-cluster.py.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "apiserver"))
sys.dont_write_bytecode = True

import apiclient  # noqa: E402

CPLET = os.environ.get("CPLET_BINARY", os.path.join(REPO, "build", "agent", "cplet"))
RBAC = os.path.join(REPO, "deploy", "cplet-cluster-rbac.yaml")
USER = "alice"
GROUP = "cplet:cluster-controllers"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def now_rfc3339(offset=0.0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def micro_time(offset=0.0):
    t = time.time() + offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def default_min(binary_minor, emulated_minor):
    floor = max(31, binary_minor - 3) if binary_minor >= 33 else 31
    return max(floor, emulated_minor - 1)


def status(comps, phase="Succeeded", id=None, generation=None, updated=None, message=None):
    """comps: {component: (binary, emulated, min, revision)} as the daemon writes them."""
    return {"id": id, "generation": generation, "phase": phase, "step": None, "message": message,
            "updated": updated or now_rfc3339(), "agentVersion": "0.1.0",
            "components": [{"name": c, "binaryVersion": b, "emulatedVersion": e,
                            "minCompatibilityVersion": m, "revision": r, "healthy": True}
                           for c, (b, e, m, r) in comps.items()]}


def mirror_pod(node, comp, binary, emulated, minc, revision, ready=True):
    bm = int(binary.split(".")[1])
    em = int(emulated.split(".")[1])
    cmd = [comp, "--v=2"]
    if em != bm:
        cmd.append("--emulated-version=%s" % emulated)
    if int(minc.split(".")[1]) != default_min(bm, em):
        cmd.append("--min-compatibility-version=%s" % minc)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "%s-%s" % (comp, node), "namespace": "kube-system",
                         "annotations": {"cplet.io/revision": str(revision),
                                         "kubernetes.io/config.mirror": "x",
                                         "kubernetes.io/config.source": "file"}},
            "spec": {"nodeName": node, "containers": [
                {"name": comp, "image": "registry.k8s.io/%s:%s" % (comp, binary), "command": cmd}]},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


OLD = ("v1.34.2", "1.34", "1.33")


class Cluster:
    def __init__(self, tmp, nodes=("n1", "n2", "n3")):
        self.tmp = tmp
        self.nodes = list(nodes)
        os.makedirs(os.path.join(tmp, "api"), exist_ok=True)
        args = ["--rbac", RBAC]
        for n in self.nodes:
            args += ["--node", n]
        self.server = apiclient.FakeServer(os.path.join(tmp, "api"), args).start()
        self.admin = self.server.admin()
        self.kubeconfig = os.path.join(tmp, "controller.conf")
        self.server.kubeconfig(self.kubeconfig, USER, [GROUP])
        # A worker: no control-plane label, never listed.
        r = self.admin.post("/api/v1/nodes", {"metadata": {"name": "w1", "labels": {}}})
        assert r.status == 201, r

    def stop(self):
        self.server.stop()

    def set_status(self, node, st):
        r = self.admin.patch("/api/v1/nodes/" + node, {"metadata": {"annotations": {
            "cplet.io/status": json.dumps(st) if not isinstance(st, str) else st}}})
        assert r.status == 200, r

    def put_pod(self, pod):
        path = "/api/v1/namespaces/kube-system/pods"
        name = pod["metadata"]["name"]
        cur = self.admin.get(path + "/" + name)
        if cur.status == 404:
            r = self.admin.post(path, pod)
            assert r.status == 201, r
        else:
            body = dict(pod)
            body["metadata"] = dict(pod["metadata"], resourceVersion=cur.json()["metadata"]["resourceVersion"])
            r = self.admin.put(path + "/" + name, body)
            assert r.status == 200, r
        r = self.admin.patch(path + "/" + name + "/status", {"status": pod["status"]})
        assert r.status == 200, r

    def seed(self, versions=None, revision=1):
        """Every node's agent reporting, mirror pods agreeing."""
        for n in self.nodes:
            comps = {c: (versions or OLD) + (revision,) for c in COMPONENTS}
            self.set_status(n, status(comps))
            for c, (b, e, m, r) in comps.items():
                self.put_pod(mirror_pod(n, c, b, e, m, r))

    def cplet(self, *args, env=None, timeout=60):
        e = dict(os.environ)
        e.pop("KUBECONFIG", None)
        e.update(env or {})
        argv = [CPLET, "cluster"] + list(args)
        if not any(a.startswith("--kubeconfig") for a in args) and "KUBECONFIG" not in (env or {}):
            argv += ["--kubeconfig", self.kubeconfig]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e)

    def denied(self):
        return [a for a in self.server.audit() if a.get("user") == USER and a.get("status") in (401, 403)]

    def requests_of(self, user=USER):
        return [a for a in self.server.audit() if a.get("user") == user]

    def node(self, name):
        return self.admin.get("/api/v1/nodes/" + name).json()

    def target(self, name):
        t = self.node(name)["metadata"].get("annotations", {}).get("cplet.io/target")
        return json.loads(t) if t else None


# ---- TAP ----

CASES = []


def case(f):
    CASES.append(f)
    return f


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_rc(p, rc):
    check(p.returncode == rc, "exit %d, want %d\nstdout: %s\nstderr: %s" % (p.returncode, rc, p.stdout[-3000:],
                                                                          p.stderr[-3000:]))


# ---- status and plan ----

@case
def status_json_three_nodes(tmp):
    cl = Cluster(tmp)
    try:
        cl.seed()
        p = cl.cplet("status", "--json")
        check_rc(p, 0)
        o = json.loads(p.stdout)
        check([n["name"] for n in o["nodes"]] == ["n1", "n2", "n3"], "nodes: %r" % o["nodes"])
        for n in o["nodes"]:
            check(n["agent"] == "ok" and n["phase"] == "Succeeded" and n["problems"] == [], "node %r" % n)
            for c, name in zip(n["components"], COMPONENTS):
                check(c["name"] == name and c["binaryVersion"] == "v1.34.2" and c["emulatedVersion"] == "1.34"
                      and c["minCompatibilityVersion"] == "1.33" and c["revision"] == 1, "component %r" % c)
                check(c["mirrorPod"]["agrees"] is True and c["mirrorPod"]["ready"] is True
                      and c["mirrorPod"]["name"] == "%s-%s" % (name, n["name"]), "mirror %r" % c)
        check(o["problem"] is None, "cluster problem %r" % o["problem"])
        check(cl.denied() == [], "denied: %r" % cl.denied())
        check(cl.requests_of(), "no request seen from %s" % USER)
    finally:
        cl.stop()


@case
def status_table_flags_problems(tmp):
    cl = Cluster(tmp)
    try:
        cl.seed()
        # n1: the controller-manager's mirror pod still shows revision 1 while the agent reports 2.
        comps = {c: OLD + (2 if c == "kube-controller-manager" else 1,) for c in COMPONENTS}
        cl.set_status("n1", status(comps))
        # n2: no agent at all.
        r = cl.admin.patch("/api/v1/nodes/n2", {"metadata": {"annotations": {"cplet.io/status": None}}})
        check(r.status == 200, r)
        # n3: an agent that stopped reporting an hour ago.
        cl.set_status("n3", status({c: OLD + (1,) for c in COMPONENTS}, updated=now_rfc3339(-3600)))
        p = cl.cplet("status")
        check_rc(p, 0)
        out = p.stdout
        check("w1" not in out, "a worker listed:\n" + out)
        check("n1: kube-controller-manager: mirror pod kube-system/kube-controller-manager-n1 shows revision 1, "
              "the agent reports 2" in out, out)
        check("n2: no agent" in out, out)
        check("n3: stale status (updated" in out, out)
        rows = [l.split()[0] for l in out.splitlines()[1:4]]
        check(rows == ["n1", "n2", "n3"], out)
        p = cl.cplet("status", "--json")
        o = json.loads(p.stdout)
        check([n["agent"] for n in o["nodes"]] == ["ok", "missing", "stale"], o)
        check(o["nodes"][0]["components"][1]["mirrorPod"]["agrees"] is False, o)
        check(cl.denied() == [], "denied: %r" % cl.denied())
    finally:
        cl.stop()


@case
def status_components_disagree(tmp):
    cl = Cluster(tmp, nodes=("n1", "n2"))
    try:
        cl.seed()
        # n2 runs a 1.35 controller-manager while the API servers run 1.34.
        comps = {c: OLD + (1,) for c in COMPONENTS}
        comps["kube-controller-manager"] = ("v1.35.0", "1.34", "1.33", 2)
        cl.set_status("n2", status(comps))
        cl.put_pod(mirror_pod("n2", "kube-controller-manager", "v1.35.0", "1.34", "1.33", 2))
        p = cl.cplet("status")
        check_rc(p, 0)
        check("n2: components disagree: node n2: kube-controller-manager binary 1.35 would be newer" in p.stdout,
              p.stdout)
        p = cl.cplet("plan", "--binary-version", "v1.35.0")
        check_rc(p, 2)
        check("breaks the rules" in p.stderr and "n2" in p.stderr, p.stderr)
    finally:
        cl.stop()


@case
def adopted_original_agrees(tmp):
    """A manifest cplet adopted (revision 1 of its history) but never wrote carries no
    cplet.io/revision, so neither does its mirror pod: that is agreement, not a disagreement
    that refuses every plan (found by test-cluster.py on the harness)."""
    cl = Cluster(tmp, nodes=("n1", "n2"))
    try:
        cl.seed()
        pod = mirror_pod("n2", "kube-scheduler", *OLD, 1)
        del pod["metadata"]["annotations"]["cplet.io/revision"]
        cl.admin.request("DELETE", "/api/v1/namespaces/kube-system/pods/kube-scheduler-n2")
        cl.put_pod(pod)
        p = cl.cplet("status", "--json")
        check_rc(p, 0)
        n2 = json.loads(p.stdout)["nodes"][1]
        check(n2["problems"] == [] and n2["components"][2]["mirrorPod"]["agrees"] is True, n2)
        p = cl.cplet("plan", "--binary-version", "v1.35.0")
        check_rc(p, 0)
        # Another image than the agent's binary is still a disagreement.
        pod = mirror_pod("n2", "kube-scheduler", "v1.33.1", "1.33", "1.32", 1)
        del pod["metadata"]["annotations"]["cplet.io/revision"]
        cl.put_pod(pod)
        p = cl.cplet("plan", "--binary-version", "v1.35.0")
        check_rc(p, 2)
        check("kube-scheduler-n2 runs image registry.k8s.io/kube-scheduler:v1.33.1" in p.stderr, p.stderr)
    finally:
        cl.stop()


@case
def plan_three_nodes(tmp):
    cl = Cluster(tmp)
    try:
        cl.seed()
        p = cl.cplet("plan", "--binary-version", "v1.35.0", "--json")
        check_rc(p, 0)
        steps = [(s["node"], s["component"], s["phase"], s["emulatedVersion"])
                 for s in json.loads(p.stdout)["steps"]]
        want = [(n, c, "binary", "1.34") for c in COMPONENTS for n in ("n1", "n2", "n3")]
        want += [(n, c, "emulation", "1.35") for c in COMPONENTS for n in ("n1", "n2", "n3")]
        check(steps == want, "steps %r" % steps)
        p = cl.cplet("plan", "--binary-version", "v1.35.0")
        check_rc(p, 0)
        check("Plan: 18 steps over 3 control-plane nodes" in p.stdout, p.stdout)
        check(cl.denied() == [], "denied: %r" % cl.denied())
        # Nothing was written by planning.
        check(all(a["method"] == "GET" for a in cl.requests_of()), "writes: %r" % cl.requests_of())
    finally:
        cl.stop()


@case
def plan_refusals(tmp):
    cl = Cluster(tmp)
    try:
        cl.seed()
        cl.set_status("n2", status({c: OLD + (1,) for c in COMPONENTS}, phase="Progressing", id="by-hand",
                                   generation=1))
        p = cl.cplet("plan", "--binary-version", "v1.35.0")
        check_rc(p, 2)
        check("node n2 is Progressing" in p.stderr and "by-hand" in p.stderr, p.stderr)
        cl.set_status("n2", status({c: OLD + (1,) for c in COMPONENTS}, updated=now_rfc3339(-3600)))
        p = cl.cplet("plan", "--binary-version", "v1.35.0")
        check_rc(p, 2)
        check("node n2" in p.stderr and "stale" in p.stderr, p.stderr)
        # A longer bound accepts it.
        p = cl.cplet("plan", "--binary-version", "v1.35.0", "--max-status-age", "2h")
        check_rc(p, 0)
        cl.set_status("n2", status({c: OLD + (1,) for c in COMPONENTS}))
        p = cl.cplet("plan", "--binary-version", "v1.35.0", "--emulated-version", "1.31")
        check_rc(p, 2)
        check("not valid for binary v1.35.0" in p.stderr, p.stderr)
        p = cl.cplet("plan", "--binary-version", "nonsense")
        check_rc(p, 2)
        check("--binary-version \"nonsense\"" in p.stderr, p.stderr)
    finally:
        cl.stop()


@case
def kubeconfig_resolution(tmp):
    cl = Cluster(tmp, nodes=("n1",))
    try:
        cl.seed()
        # KUBECONFIG's first file is used (the others are not merged).
        p = cl.cplet("status", env={"KUBECONFIG": cl.kubeconfig + ":/nonexistent"})
        check_rc(p, 0)
        home = os.path.join(tmp, "home")
        os.makedirs(os.path.join(home, ".kube"))
        with open(cl.kubeconfig) as f, open(os.path.join(home, ".kube", "config"), "w") as g:
            g.write(f.read())
        e = {"HOME": home}
        p = subprocess.run([CPLET, "cluster", "status"], capture_output=True, text=True, timeout=60,
                           env=dict({k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, **e))
        check_rc(p, 0)
        p = cl.cplet("status", "--kubeconfig", os.path.join(tmp, "missing.conf"))
        check_rc(p, 2)
        check("missing.conf" in p.stderr, p.stderr)
    finally:
        cl.stop()


@case
def identity_outside_the_group_is_refused(tmp):
    cl = Cluster(tmp, nodes=("n1",))
    try:
        cl.seed()
        other = os.path.join(tmp, "bob.conf")
        cl.server.kubeconfig(other, "bob", ["developers"])
        p = cl.cplet("status", "--kubeconfig", other)
        check_rc(p, 1)
        check("forbidden" in p.stderr and "bob" in p.stderr, p.stderr)
    finally:
        cl.stop()


@case
def rbac_is_least_privilege(tmp):
    """What the shipped identity may not do, asked directly: the RBAC is enforced, and narrow."""
    cl = Cluster(tmp, nodes=("n1",))
    try:
        c = cl.server.client(USER, [GROUP])
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
                 "spec": {"holderIdentity": "n1_abc", "leaseDurationSeconds": 15, "renewTime": micro_time()}}
        r = cl.admin.post("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", lease)
        check(r.status == 201, r)
        r = c.patch("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
                    {"spec": {"holderIdentity": "me"}})
        check(r.status == 403, "another component's Lease patched: %r" % r)
        r = c.get("/api/v1/namespaces/default/pods")
        check(r.status == 403, "pods outside kube-system read: %r" % r)
        r = c.request("DELETE", "/api/v1/nodes/n1")
        check(r.status == 403, "a node deleted: %r" % r)
        r = c.patch("/api/v1/nodes/n1", {"metadata": {"annotations": {"x": "y"}}})
        check(r.status == 200, "the node not patched: %r" % r)
    finally:
        cl.stop()


# ---- the Lease: one controller at a time ----

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


def put_controller_lease(cl, holder, renewed_offset, duration=30):
    r = cl.admin.post(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": {"name": "cplet-cluster", "namespace": "kube-system"},
                               "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                                        "renewTime": micro_time(renewed_offset),
                                        "acquireTime": micro_time(renewed_offset), "leaseTransitions": 0}})
    check(r.status == 201, r)


@case
def second_controller_refused(tmp):
    cl = Cluster(tmp)
    try:
        cl.seed()
        put_controller_lease(cl, "cplet-cluster@elsewhere/42", -2)
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0")
        check_rc(p, 2)
        check("cplet-cluster@elsewhere/42" in p.stderr and "kube-system/cplet-cluster" in p.stderr, p.stderr)
        check(all(cl.target(n) is None for n in cl.nodes), "a target written")
        check(not [a for a in cl.requests_of() if a["method"] == "PATCH"], "a write: %r" % cl.requests_of())
    finally:
        cl.stop()


@case
def dry_run_writes_nothing(tmp):
    cl = Cluster(tmp)
    try:
        cl.seed()
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0", "--dry-run", "--stable-for", "2s")
        check_rc(p, 0)
        lines = [l for l in p.stdout.splitlines() if "cplet.io/target=" in l]
        check(len(lines) == 18, p.stdout)
        t = json.loads(lines[0].split("cplet.io/target=", 1)[1])
        check(t["components"] == ["kube-apiserver"] and t["binaryVersion"] == "v1.35.0"
              and t["emulatedVersion"] == "1.34" and t["minCompatibilityVersion"] == "1.33"
              and t["stableFor"] == "2s" and t["id"].startswith("cluster-") and
              t["id"].endswith("-binary-kube-apiserver"), t)
        check(lines[0].startswith("1. node n1:") and lines[1].startswith("2. node n2:"), p.stdout)
        check(all(a["method"] == "GET" for a in cl.requests_of()), "writes: %r" % cl.requests_of())
    finally:
        cl.stop()


# ---- upgrade with the test playing the agents, kubelets and leaders ----

class Agents(threading.Thread):
    """Answers each node's cplet.io/target as a cplet daemon would (Pending, then Succeeded with
    the component moved and a new revision, or RolledBack where `fail` says), updates the mirror
    pod as the kubelet does, and renews the leader Leases as the components do."""

    def __init__(self, cl, fail=None, no_leader=False):
        super().__init__(daemon=True)
        self.cl, self.fail, self.no_leader = cl, fail or {}, no_leader
        self.admin = cl.server.admin()
        self.stop_flag = threading.Event()
        self.state = {n: {c: list(OLD) + [1] for c in COMPONENTS} for n in cl.nodes}
        self.handled = {}
        self.log = []
        self.error = None

    def renew_leases(self):
        for c in COMPONENTS[1:]:
            path = LEASES + "/" + c
            cur = self.admin.get(path)
            spec = {"holderIdentity": "n1_%s" % c, "leaseDurationSeconds": 4, "renewTime": micro_time()}
            if cur.status == 404:
                self.admin.post(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                         "metadata": {"name": c, "namespace": "kube-system"}, "spec": spec})
            elif not self.no_leader:
                self.admin.patch(path, {"spec": spec})

    def answer(self, node, t):
        comp = t["components"][0]
        key = (t["id"], t["generation"])
        if self.handled.get(node) == key:
            return
        self.handled[node] = key
        self.log.append((node, comp, t["id"], t["generation"]))
        comps = {c: tuple(v) for c, v in self.state[node].items()}
        self.cl.set_status(node, status(comps, "Pending", t["id"], t["generation"]))
        if self.fail.get((node, comp)):
            self.fail[(node, comp)] -= 1
            self.cl.set_status(node, status(comps, "RolledBack", t["id"], t["generation"],
                                             message="step 1/1 kube-controller-manager binary v1.35.0: not healthy "
                                                     "within 5m (GET https://127.0.0.1:10257/healthz: connection "
                                                     "refused); restored revision 1"))
            return
        b, e = t["binaryVersion"], t["emulatedVersion"]
        m = t.get("minCompatibilityVersion") or "1.%d" % default_min(int(b.split(".")[1]), int(e.split(".")[1]))
        rev = self.state[node][comp][3] + 1
        self.state[node][comp] = [b, e, m, rev]
        self.cl.put_pod(mirror_pod(node, comp, b, e, m, rev))
        comps = {c: tuple(v) for c, v in self.state[node].items()}
        self.cl.set_status(node, status(comps, "Succeeded", t["id"], t["generation"]))

    def run(self):
        try:
            last = 0
            while not self.stop_flag.is_set():
                if time.time() - last > 0.5:
                    self.renew_leases()
                    last = time.time()
                for n in self.cl.nodes:
                    a = self.admin.get("/api/v1/nodes/" + n).json()["metadata"].get("annotations", {})
                    if "cplet.io/target" in a:
                        self.answer(n, json.loads(a["cplet.io/target"]))
                time.sleep(0.05)
        except Exception:
            self.error = traceback.format_exc()

    def stop(self):
        self.stop_flag.set()
        if self.ident is not None:
            self.join(10)
        check(self.error is None, "the agents' thread failed: %s" % self.error)


@case
def upgrade_binaries_then_rerun(tmp):
    cl = Cluster(tmp, nodes=("n1", "n2"))
    agents = Agents(cl)
    try:
        cl.seed()
        agents.renew_leases()
        agents.start()
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0", "--emulated-version", "1.34",
                     "--node-timeout", "20s", timeout=120)
        check_rc(p, 0)
        order = [(n, c) for n, c, _, _ in agents.log]
        check(order == [(n, c) for c in COMPONENTS for n in ("n1", "n2")], "order %r" % order)
        check("Done: 6 steps" in p.stdout, p.stdout)
        check(cl.denied() == [], "denied: %r" % cl.denied())
        # The controller's Lease was released at the end (no holder).
        lease = cl.admin.get(LEASES + "/cplet-cluster").json()
        check(not lease["spec"].get("holderIdentity"), lease)
        # A re-run has nothing to do.
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0", "--emulated-version", "1.34", timeout=60)
        check_rc(p, 0)
        check("Nothing to do" in p.stdout, p.stdout)
    finally:
        agents.stop()
        cl.stop()


@case
def first_failure_stops_then_rerun_continues(tmp):
    cl = Cluster(tmp, nodes=("n1", "n2", "n3"))
    agents = Agents(cl, fail={("n2", "kube-controller-manager"): 1})
    try:
        cl.seed()
        agents.renew_leases()
        agents.start()
        # An expired Lease of a controller that died is taken over.
        put_controller_lease(cl, "cplet-cluster@dead/1", -3600)
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0", "--emulated-version", "1.34",
                     "--node-timeout", "20s", timeout=120)
        check_rc(p, 1)
        check("kube-controller-manager on node n2" in p.stderr and "RolledBack" in p.stderr
              and "not healthy within 5m" in p.stderr, p.stderr)
        order = [(n, c) for n, c, _, _ in agents.log]
        want = [(n, "kube-apiserver") for n in ("n1", "n2", "n3")] + [("n1", "kube-controller-manager"),
                                                                      ("n2", "kube-controller-manager")]
        check(order == want, "order %r" % order)
        check(cl.target("n3")["components"] == ["kube-apiserver"], "n3 touched: %r" % cl.target("n3"))
        first_gen = cl.target("n2")["generation"]
        # The re-run continues at n2's controller-manager with a higher generation of the same id.
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0", "--emulated-version", "1.34",
                     "--node-timeout", "20s", timeout=120)
        check_rc(p, 0)
        order = [(n, c) for n, c, _, _ in agents.log[len(want):]]
        check(order == [("n2", "kube-controller-manager"), ("n3", "kube-controller-manager")]
              + [(n, "kube-scheduler") for n in ("n1", "n2", "n3")], "re-run order %r" % order)
        check(agents.log[len(want)][3] == first_gen + 1, "generation %r" % (agents.log[len(want)],))
        check(agents.log[len(want)][2] == agents.log[len(want) - 1][2], "a new id on re-run")
        check(cl.denied() == [], "denied: %r" % cl.denied())
    finally:
        agents.stop()
        cl.stop()


@case
def no_leader_stops(tmp):
    cl = Cluster(tmp, nodes=("n1",))
    agents = Agents(cl, no_leader=True)
    try:
        cl.seed()
        agents.renew_leases()
        agents.start()
        p = cl.cplet("upgrade", "--binary-version", "v1.35.0", "--emulated-version", "1.34",
                     "--node-timeout", "20s", timeout=120)
        check_rc(p, 1)
        check("no leader: the Lease kube-system/kube-controller-manager was not renewed within its 4s" in p.stderr,
              p.stderr)
        check([c for _, c, _, _ in agents.log] == ["kube-apiserver", "kube-controller-manager"], agents.log)
    finally:
        agents.stop()
        cl.stop()


@case
def interrupted_then_rerun_attaches(tmp):
    """SIGTERM while the first node's agent works: the controller stops waiting, releases its
    Lease, and a re-run waits for the very same target (same id and generation) instead of
    writing another."""
    cl = Cluster(tmp, nodes=("n1", "n2"))
    agents = Agents(cl)
    try:
        cl.seed()
        agents.renew_leases()
        argv = [CPLET, "cluster", "upgrade", "--binary-version", "v1.35.0", "--emulated-version", "1.34",
                "--node-timeout", "30s", "--kubeconfig", cl.kubeconfig]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while cl.target("n1") is None and time.time() < deadline:
            time.sleep(0.1)
        first = cl.target("n1")
        check(first is not None, "no target written")
        # The agent took it and works on it.
        comps = {c: OLD + (1,) for c in COMPONENTS}
        cl.set_status("n1", status(comps, "Progressing", first["id"], first["generation"]))
        # While it waits, the controller renews its Lease (every 10 s of its 30 s).
        held = cl.admin.get(LEASES + "/cplet-cluster").json()["spec"]
        time.sleep(11.5)
        renewed = cl.admin.get(LEASES + "/cplet-cluster").json()["spec"]
        check(renewed["holderIdentity"] == held["holderIdentity"] and renewed["renewTime"] > held["renewTime"]
              and renewed["leaseDurationSeconds"] == 30, "not renewed: %r then %r" % (held, renewed))
        p.terminate()
        out, err = p.communicate(timeout=30)
        check(p.returncode == 1 and "interrupted" in err and "node n1" in err, "exit %d: %s" % (p.returncode, err))
        lease = cl.admin.get(LEASES + "/cplet-cluster").json()
        check(not lease["spec"].get("holderIdentity"), "the Lease was not released: %r" % lease)
        # The re-run attaches; then the agents answer the target that is there.
        errf = open(os.path.join(tmp, "rerun.err"), "w+")
        q = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, text=True)
        seen = []
        for line in q.stdout:
            seen.append(line)
            if "waiting again for target" in line:
                break
        check(seen and "waiting again for target" in seen[-1], "".join(seen) + open(errf.name).read())
        agents.start()
        out, _ = q.communicate(timeout=120)
        err = open(errf.name).read()
        check(q.returncode == 0, "re-run exit %d: %s%s%s" % (q.returncode, "".join(seen), out, err))
        check(agents.log[0][:4] == ("n1", "kube-apiserver", first["id"], first["generation"]), agents.log)
        check(len(agents.log) == 6, agents.log)
    finally:
        agents.stop()
        cl.stop()


def main():
    only = sys.argv[1:]
    cases = [c for c in CASES if not only or c.__name__ in only]
    print("1..%d" % len(cases))
    failed = 0
    for i, c in enumerate(cases, 1):
        tmp = tempfile.mkdtemp(prefix="cplet-cluster-")
        start = time.time()
        try:
            c(tmp)
            print("ok %d - %s (%.1fs)" % (i, c.__name__, time.time() - start))
        except Exception:
            failed += 1
            print("not ok %d - %s" % (i, c.__name__))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        sys.stdout.flush()
        subprocess.run(["rm", "-rf", tmp])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
