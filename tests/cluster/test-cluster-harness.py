#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""TAP: the 3-node simulated HA control plane (cluster_harness.py) that `cplet cluster` is
tested on does what the real pieces do: mirror pods as the kubelet makes them (hash, source,
owner, Ready from the component's probes), leader-election Leases held, renewed and taken
over, NodeRestriction on the kubelet's mirror pods, a target through one node's daemon
moving one component with the mirror pod following, and that node's listener closed exactly
while its kube-apiserver restarts. One cluster for all cases (its start is the slow part).
"""

import json
import os
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

from cluster_harness import Cluster, LEASE_COMPONENTS  # noqa: E402
import apiclient  # noqa: E402

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
MIRROR = "kubernetes.io/config.mirror"


class Case:
    def __init__(self, name):
        self.name = name
        self.failures = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return cond


def owner_ok(c, node, pod):
    nuid = c.node_object(node)["metadata"]["uid"]
    return pod["metadata"].get("ownerReferences") == [
        {"apiVersion": "v1", "kind": "Node", "name": node, "uid": nuid, "controller": True}]


def t_mirror_pods(t, c):
    pods = c.mirror_pods()
    want = sorted("%s-%s" % (comp, n) for comp in COMPONENTS for n in c.names)
    t.check(sorted(pods) == want, "mirror pods %s, want %s" % (sorted(pods), want))
    for name, p in sorted(pods.items()):
        comp, node = name.rsplit("-", 1)
        ann = p["metadata"].get("annotations") or {}
        t.check(ann.get(MIRROR) and ann.get(MIRROR) == ann.get("kubernetes.io/config.hash"),
                "%s: config.mirror %r != config.hash %r" % (name, ann.get(MIRROR),
                                                            ann.get("kubernetes.io/config.hash")))
        t.check(ann.get("kubernetes.io/config.source") == "file", "%s: source %r" % (
            name, ann.get("kubernetes.io/config.source")))
        # the manifest's own annotations are copied (kubeadm's endpoint one on the apiserver)
        if comp == "kube-apiserver":
            t.check(any(k.startswith("kubeadm.kubernetes.io/") for k in ann),
                    "%s: the manifest's annotations were not copied: %s" % (name, sorted(ann)))
        t.check(p["metadata"].get("labels", {}).get("component") == comp,
                "%s: labels %r" % (name, p["metadata"].get("labels")))
        t.check(p["spec"].get("nodeName") == node, "%s: nodeName %r" % (name, p["spec"].get("nodeName")))
        t.check(owner_ok(c, node, p), "%s: ownerReferences %r" % (name, p["metadata"].get("ownerReferences")))
        t.check(c.pod_ready(p), "%s not Ready: %s" % (name, json.dumps(p.get("status"))[:400]))
        cs = (p.get("status") or {}).get("containerStatuses") or [{}]
        t.check(cs[0].get("image") == "registry.k8s.io/%s:v1.34.2" % comp,
                "%s: status image %r" % (name, cs[0].get("image")))


def t_node_restriction(t, c):
    """The kubelet's identity may create only its own mirror pods (NodeRestriction)."""
    kc = c.api.client("system:node:cp1", ["system:nodes"], port=c.api.ports[c.lb])
    own = c.mirror_pod("cp1", "kube-scheduler")
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "x-cp2", "namespace": "kube-system",
                         "annotations": {MIRROR: "h"},
                         "ownerReferences": own["metadata"]["ownerReferences"]},
            "spec": {"nodeName": "cp2", "containers": [{"name": "x", "image": "x"}]}}
    r = kc.post("/api/v1/namespaces/kube-system/pods", body)
    t.check(r.status == 403 and "spec.nodeName set to itself" in r.json().get("message", ""),
            "a mirror pod for another node: %r" % r)
    body["spec"]["nodeName"] = "cp1"
    body["metadata"]["annotations"] = {}
    r = kc.post("/api/v1/namespaces/kube-system/pods", body)
    t.check(r.status == 403 and "can only create mirror pods" in r.json().get("message", ""),
            "a pod without the mirror annotation: %r" % r)
    kc.close()


def t_leases(t, c):
    first = {comp: c.lease(comp) for comp in LEASE_COMPONENTS}
    for comp, lease in first.items():
        if not t.check(lease is not None, "no Lease kube-system/%s" % comp):
            continue
        spec = lease["spec"]
        holder = spec.get("holderIdentity") or ""
        node, _, uid = holder.rpartition("_")
        t.check(node in c.names and len(uid) == 36, "%s: holderIdentity %r" % (comp, holder))
        t.check(spec.get("leaseDurationSeconds") == 4, "%s: leaseDurationSeconds %r"
                % (comp, spec.get("leaseDurationSeconds")))
    time.sleep(1.5)
    for comp in LEASE_COMPONENTS:
        now = c.lease(comp)
        if first[comp] is None or now is None:
            continue
        t.check(now["spec"]["renewTime"] > first[comp]["spec"]["renewTime"],
                "%s not renewed in 1.5 s: %s then %s" % (comp, first[comp]["spec"]["renewTime"],
                                                         now["spec"]["renewTime"]))
        t.check(now["spec"]["holderIdentity"] == first[comp]["spec"]["holderIdentity"],
                "%s changed hands without a reason" % comp)


def stop_leader(t, c, comp, within, at_least):
    """Stops the leader's `comp` (its manifest moved away: SIGTERM from the kubelet) and
    waits for another node to hold the lease; restores the manifest."""
    holder, ident, _ = c.lease_holder(comp)
    node = c.nodes[holder]
    saved = node.read_manifest(comp)
    os.rename(node.manifest_path(comp), os.path.join(os.path.dirname(node.manifest_dir),
                                                     comp + ".yaml.off"))
    stopped = time.time()
    try:
        ev = node.wait_event(lambda e: e["event"] in ("stop", "exit") and e["file"] == comp + ".yaml",
                             timeout=10, since=stopped)
        deadline = time.monotonic() + 20
        now = None
        while time.monotonic() < deadline:
            now = c.lease(comp)
            h = now["spec"].get("holderIdentity") or ""
            if h and h != ident:
                break
            time.sleep(0.05)
        took = time.time() - (ev["t"] if ev else stopped)
        t.check(now["spec"].get("holderIdentity") not in ("", ident), "nobody took the lease over in 20 s")
        new = (now["spec"].get("holderIdentity") or "").rsplit("_", 1)[0]
        t.check(new in c.names and new != holder, "new holder %r" % new)
        t.check(now["spec"].get("leaseTransitions", 0) >= 1, "leaseTransitions %r"
                % now["spec"].get("leaseTransitions"))
        t.check(at_least <= took <= within, "%s taken over %.1f s after the leader stopped, want "
                "%.1f..%.1f s" % (comp, took, at_least, within))
        # the stopped pod's mirror pod is deleted as an orphan
        deadline = time.monotonic() + 5
        while c.mirror_pod(holder, comp) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        t.check(c.mirror_pod(holder, comp) is None,
                "mirror pod %s-%s still there after its manifest went" % (comp, holder))
    finally:
        node.write_manifest(comp, saved)
    t.check(c.wait_mirror(holder, comp, c.pod_ready, 20) is not None,
            "%s-%s not back and Ready" % (comp, holder))


def t_takeover(t, c):
    """The controller-manager leader stopped: it renews no more (no release on exit);
    another takes over only when the lease (4 s) has not changed for its duration."""
    stop_leader(t, c, "kube-controller-manager", within=8.0, at_least=3.0)


def t_released(t, c):
    """The scheduler leader stopped: it releases the lease (ReleaseOnCancel), another takes
    over at once, well before the 4 s lease would have expired."""
    stop_leader(t, c, "kube-scheduler", within=2.5, at_least=0.0)


def t_target_moves_one_component(t, c):
    """A target with components [kube-apiserver] through cp2's daemon: only that component
    moves; its mirror pod is replaced (new hash) with the new revision, image and Ready; the
    listener of cp2 is closed while its kube-apiserver restarts and the daemon reports after."""
    before = {comp: c.mirror_pod("cp2", comp) for comp in COMPONENTS}
    others = {n: c.mirror_pod(n, "kube-apiserver")["metadata"]["uid"] for n in ("cp1", "cp3")}
    pids_before = c.nodes["cp2"].pids()
    target = {"id": "harness-1", "generation": 1, "binaryVersion": "v1.35.0",
              "emulatedVersion": "1.34", "components": ["kube-apiserver"],
              "stableFor": "1s", "stepTimeout": "60s"}
    t0 = time.time()
    c.set_target("cp2", target)
    st = c.wait_status("cp2", lambda s: s and s.get("id") == "harness-1" and s["phase"] in (
        "Succeeded", "Failed", "RolledBack", "Refused"), timeout=90)
    if not t.check(st and st["phase"] == "Succeeded", "status %s\n%s" % (
            json.dumps(st), c.daemon_log("cp2")[-3000:])):
        return
    rev = {x["name"]: x.get("revision") for x in st["components"]}["kube-apiserver"]
    p = c.wait_mirror("cp2", "kube-apiserver",
                      lambda p: c.pod_revision(p) == str(rev) and c.pod_ready(p), 20)
    t.check(p is not None, "mirror pod kube-apiserver-cp2 never showed revision %s and Ready: %s"
            % (rev, json.dumps(c.mirror_pod("cp2", "kube-apiserver"))[:1500]))
    if p is not None:
        t.check(p["metadata"]["uid"] != before["kube-apiserver"]["metadata"]["uid"],
                "the outdated mirror pod was not deleted and created again")
        t.check(p["metadata"]["annotations"][MIRROR] !=
                before["kube-apiserver"]["metadata"]["annotations"][MIRROR], "hash unchanged")
        t.check(c.pod_image(p) == "registry.k8s.io/kube-apiserver:v1.35.0", "image %r" % c.pod_image(p))
        cs = p["status"]["containerStatuses"][0]
        t.check(cs["image"] == "registry.k8s.io/kube-apiserver:v1.35.0", "status image %r" % cs["image"])
        argv = p["spec"]["containers"][0]["command"]
        t.check("--emulated-version=1.34" in argv, "flags of the mirror pod: %s" % argv)
    for comp in LEASE_COMPONENTS:
        now = c.mirror_pod("cp2", comp)
        t.check(now and now["metadata"]["uid"] == before[comp]["metadata"]["uid"],
                "mirror pod %s-cp2 replaced although %s did not move" % (comp, comp))
    pids_after = c.nodes["cp2"].pids()
    for f in ("kube-controller-manager.yaml", "kube-scheduler.yaml"):
        t.check(pids_after.get(f) == pids_before.get(f), "%s restarted on cp2" % f)
    for n, uid in others.items():
        t.check(c.mirror_pod(n, "kube-apiserver")["metadata"]["uid"] == uid, "%s touched" % n)
    # the listener followed cp2's API server: closed from its stop to its first 200
    outs = [o for o in c.outages("cp2") if o["t"] >= t0 - 1]
    stops = [e for e in c.events("cp2", file="kube-apiserver.yaml") if e["t"] >= t0
             and e["event"] in ("stop", "exit")]
    t.check(outs[:1] and outs[0]["event"] == "down" and any(o["event"] == "up" for o in outs),
            "outages of cp2's listener: %s" % outs)
    t.check(stops and outs and outs[0]["cause"] == stops[0]["t"] and
            outs[0]["t"] - stops[0]["t"] < 1.0,
            "listener closed at %s, API server stopped at %s" % (outs[:1], stops[:1]))
    t.check(not any(o["node"] != "cp2" for o in c.outages() if o["t"] >= t0),
            "other listeners closed: %s" % c.outages())
    if len(outs) >= 2:
        down, up = outs[0]["t"], [o for o in outs if o["event"] == "up"][0]["t"]
        audit = [a for a in c.api.audit() if a.get("listener") == c.listener["cp2"]]
        # a record is written when the request ends: it began "ms" earlier
        during = [a for a in audit if down + 0.2 < _ts(a) - a["ms"] / 1000.0 < up - 0.2]
        t.check(not during, "requests served by cp2's listener while it was down: %s" % during[:3])
    # /version of cp2's listener follows its new API server; the others keep theirs
    v = c.api.client("kubernetes-admin", ["system:masters"], port=c.api.ports[c.listener["cp2"]])
    r = v.get("/version")
    t.check(r.status == 200 and r.json()["gitVersion"] == "v1.35.0", "/version of cp2: %r" % r)
    v.close()
    # the daemon's final status went through once the listener was open again
    ups = [o["t"] for o in outs if o["event"] == "up"]
    t.check(ups and _parse_time(st["updated"]) >= int(ups[0]) - 1,
            "status updated %s, listener up at %s" % (st["updated"], ups))


def t_api_unreachable(t, c):
    """cp3's listener closed (no API server restart): its pods keep running, a manifest change
    restarts the pod all the same, and its mirror pod follows once the API is back."""
    node = c.nodes["cp3"]
    old = c.mirror_pod("cp3", "kube-scheduler")
    pid = node.pids().get("kube-scheduler.yaml")
    text = node.read_manifest("kube-scheduler")
    new_text = text.replace("  annotations: {}\n", "").replace(
        "  labels:\n", "  annotations:\n    harness.test/edit: \"1\"\n  labels:\n", 1)
    t.check(new_text != text, "could not edit the manifest")
    c.admin().knobs(outage=6, listener=c.listener["cp3"])
    t0 = time.time()
    node.write_manifest("kube-scheduler", new_text)
    started = node.wait_event(lambda e: e["event"] == "start" and e["file"] == "kube-scheduler.yaml",
                              timeout=5, since=t0)
    t.check(started is not None and started["pid"] != pid, "the pod did not restart without the API")
    mid = c.mirror_pod("cp3", "kube-scheduler")
    t.check(time.time() - t0 < 5.5 and mid["metadata"]["uid"] == old["metadata"]["uid"],
            "the mirror pod changed while cp3's API server was unreachable (or the check came late)")
    p = c.wait_mirror("cp3", "kube-scheduler", lambda p: p["metadata"]["annotations"].get(
        "harness.test/edit") == "1" and c.pod_ready(p), timeout=20)
    t.check(p is not None and p["metadata"]["uid"] != old["metadata"]["uid"],
            "mirror pod not replaced after the API came back: %s" % json.dumps(
                c.mirror_pod("cp3", "kube-scheduler"))[:800])
    with open(os.path.join(node.log_dir, "kubelet.log"), errors="replace") as f:
        log = f.read()
    t.check(log.count("API server unreachable") == 1 and "reachable again" in log,
            "the kubelet did not say once that it lost the API and got it back")


def t_leader_lost(t, c):
    """The controller-manager leader cut from its API server for longer than the renew
    deadline (3 s): it exits "leaderelection lost" (code 1), as the binary does, the kubelet
    restarts it, and another node's instance holds the lease."""
    holder, ident, _ = c.lease_holder("kube-controller-manager")
    node = c.nodes[holder]
    t0 = time.time()
    c.admin().knobs(outage=6, listener=c.listener[holder])
    e = node.wait_event(lambda e: e["event"] == "exit" and e["file"] ==
                        "kube-controller-manager.yaml", timeout=15, since=t0)
    t.check(e is not None and e["code"] == 1, "the leader did not exit 1: %s" % e)
    if e is not None:
        # the renew deadline (3 s) runs from the last renewal, up to one retry period
        # (0.5 s) before the cut
        t.check(2.4 <= e["t"] - t0 <= 6.0, "exited %.1f s after its API went away" % (e["t"] - t0))
    with open(os.path.join(node.log_dir, "kube-controller-manager.yaml.log"), errors="replace") as f:
        t.check("leaderelection lost" in f.read(), "no 'leaderelection lost' in its log")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        h = c.lease_holder("kube-controller-manager")
        if h[1] != ident:
            break
        time.sleep(0.1)
    t.check(h[1] != ident and h[0] != holder, "lease still %s" % (h,))
    t.check(c.wait_mirror(holder, "kube-controller-manager", c.pod_ready, 20) is not None,
            "kube-controller-manager-%s not Ready again" % holder)


def t_bad_lease_flags(t, c):
    """NewLeaderElector's checks: the binary exits 1 at start."""
    env = dict(os.environ, CPLET_SIM_IMAGE="registry.k8s.io/kube-scheduler:v1.34.2")
    env.pop("CPLET_SIM_NODE", None)
    import subprocess
    exe = os.path.join(os.path.dirname(HERE), "sim", "bin", "kube-scheduler")
    port = apiclient_free_port()
    for flags, msg in ((["--leader-elect-renew-deadline=20s"],
                        "leaseDuration must be greater than renewDeadline"),
                       (["--leader-elect-retry-period=9s"],
                        "renewDeadline must be greater than retryPeriod*JitterFactor"),
                       (["--leader-elect-lease-duration=15"],
                        "time: missing unit in duration")):
        p = subprocess.run([sys.executable, exe, "--secure-port=%d" % port,
                            "--bind-address=127.0.0.1"] + flags, env=env, timeout=20,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t.check(p.returncode == 1 and msg in p.stdout, "%s: exit %d, %s" % (flags, p.returncode,
                                                                           p.stdout[-500:]))


def apiclient_free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _ts(a):
    t = a.get("ts")
    return _parse_time(t) if isinstance(t, str) else float(t or 0)


def _parse_time(s):
    import calendar
    main, _, frac = s.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0)


def main():
    cases = [
        ("mirror pods of every static pod: hash, source, owner, spec, status image, Ready", t_mirror_pods),
        ("NodeRestriction: a kubelet creates mirror pods of its own node only", t_node_restriction),
        ("leases of kube-controller-manager and kube-scheduler held by <node>_<uuid> and renewed", t_leases),
        ("the controller-manager leader stopped: another takes the lease over after it expires", t_takeover),
        ("the scheduler leader stopped: it releases the lease, another takes it over at once", t_released),
        ("a target through cp2's daemon moves kube-apiserver only; the mirror pod follows; cp2's listener is closed while its API server restarts", t_target_moves_one_component),
        ("cp3's API server unreachable: pods keep running; the mirror pod follows once it is back", t_api_unreachable),
        ("the controller-manager leader cut from its API server: leaderelection lost, exit 1, another takes over", t_leader_lost),
        ("invalid leader-election flags: the component exits 1 at start", t_bad_lease_flags),
    ]
    print("1..%d" % len(cases), flush=True)
    if not os.environ.get("CPLET_BINARY") or not os.environ.get("CPLET_SIM_LAUNCHER"):
        for i, (name, _) in enumerate(cases, 1):
            print("not ok %d - %s\n# CPLET_BINARY and CPLET_SIM_LAUNCHER must be set (meson test)" % (i, name))
        return 1
    work = tempfile.mkdtemp(prefix="cplet-cluster-")
    failed = 0
    c = Cluster(work)
    try:
        t0 = time.monotonic()
        try:
            c.start()
            err = None
        except Exception:  # noqa: BLE001
            err = traceback.format_exc()
        print("# cluster up in %.1fs" % (time.monotonic() - t0), flush=True)
        for i, (name, fn) in enumerate(cases, 1):
            t = Case(name)
            start = time.monotonic()
            if err:
                t.failures.append("the cluster did not start:\n" + err)
            else:
                try:
                    fn(t, c)
                except Exception:  # noqa: BLE001
                    t.failures.append("exception:\n" + traceback.format_exc())
            if t.failures:
                failed += 1
                print("not ok %d - %s" % (i, name))
                for f in t.failures:
                    for line in str(f).splitlines():
                        print("# %s" % line)
            else:
                print("ok %d - %s" % (i, name))
            print("# %.1fs" % (time.monotonic() - start), flush=True)
    finally:
        c.stop()
        if failed and os.environ.get("CPLET_KEEP"):
            print("# kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
