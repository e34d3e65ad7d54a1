#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A simulated highly available control plane of three nodes, for `cplet cluster` (issue 9):
its end-to-end test, its benchmark and its demo.

  * one fake API server (tests/apiserver/fake_apiserver.py) with one listener per node, each
    standing for that node's kube-apiserver, plus one more (the last) standing for the
    load balancer an administrator (and `cplet cluster`) goes through, never closed;
  * the listener of node i is closed while node i's simulated kube-apiserver is down (from
    its stop or exit in the node's event log until its /readyz answers 200 again), and its
    /version follows that node's kube-apiserver: each node's daemon, kubelet,
    controller-manager and scheduler talk to their own node's listener (as kubeadm sets
    them up), so they lose the API exactly while their own API server restarts;
  * three SimNodes (tests/sim/simnode.py), each with its own root, fake kubelet (mirror pods
    with identity system:node:<name>), fake components (the controller-manager and the
    scheduler hold their leader-election Leases with identities system:kube-controller-manager
    and system:kube-scheduler, RBAC from bootstrap-rbac.yaml; lease timings shortened
    through their own flags) and `cplet daemon` (kubeconfig -> its own listener);
  * Node objects labelled node-role.kubernetes.io/control-plane; an admin kubeconfig
    (kubernetes-admin in system:masters) through the load balancer's listener.

    from cluster_harness import Cluster
    with Cluster(workdir) as c:                  # start(); stop() on exit
        c.admin_kubeconfig                       # for `cplet cluster --kubeconfig`, kubectl
        c.nodes["cp1"]                           # the SimNode (ports, events(), manifests)
        c.status("cp1")                          # cplet.io/status, decoded (None: none yet)
        c.set_target("cp1", {...})               # cplet.io/target as an administrator writes it
        c.wait_status("cp1", lambda s: s["phase"] == "Succeeded", timeout=60)
        c.mirror_pod("cp1", "kube-apiserver")    # kube-system/kube-apiserver-cp1
        c.lease("kube-scheduler")                # kube-system/kube-scheduler
        c.events()                               # every node's sim events, "node" added, by time
        c.outages()                              # listener closings and openings, by time

Command line (the demo): `cluster_harness.py up --dir D [--version v1.34.2]` starts it and
prints a JSON line (admin kubeconfig, nodes, ports) when ready, runs until SIGTERM/SIGINT.

Environment (meson's test_env sets them): CPLET_BINARY (the cplet binary; else
build/agent/cplet), CPLET_PLUGIN_BUILD_DIR (else build/plugins), CPLET_SIM_LAUNCHER.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.realpath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
sys.path.insert(0, os.path.join(TESTS, "apiserver"))
sys.path.insert(0, os.path.join(TESTS, "sim"))

import apiclient  # noqa: E402
from simnode import SimNode, atomic_write  # noqa: E402

RBAC = os.path.join(HERE, "bootstrap-rbac.yaml")
NODE_NAMES = ("cp1", "cp2", "cp3")
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
TARGET = "cplet.io/target"
STATUS = "cplet.io/status"
REVISION = "cplet.io/revision"
LEASE_COMPONENTS = ("kube-controller-manager", "kube-scheduler")
# leader election shortened for tests (real defaults 15s/10s/2s): a stopped leader is
# replaced within 4 s, and an API server restart shorter than 3 s keeps the leader
FAST_LEASES = {"leader-elect-lease-duration": "4s", "leader-elect-renew-deadline": "3s",
               "leader-elect-retry-period": "500ms"}


def cplet_binary():
    return os.environ.get("CPLET_BINARY") or os.path.join(REPO, "build", "agent", "cplet")


def plugin_dir():
    return os.environ.get("CPLET_PLUGIN_BUILD_DIR") or os.path.join(REPO, "build", "plugins")


def set_flags(text, flags):
    """Sets --name=value in the manifest's command (kubeadm's sorted position for a new one)."""
    lines = text.splitlines(keepends=True)
    for name, value in sorted(flags.items()):
        idx = [i for i, l in enumerate(lines) if re.match(r"^\s*- --[^=\s]+", l)]
        found = [i for i in idx if re.match(r"^\s*- --%s(=|$)" % re.escape(name), lines[i])]
        indent = re.match(r"^(\s*)-", lines[idx[0]]).group(1)
        new = "%s- --%s=%s\n" % (indent, name, value)
        if found:
            lines[found[0]] = new
            continue
        pos = idx[-1] + 1
        for i in idx:
            if re.match(r"^\s*- --([^=\s]+)", lines[i]).group(1) > name:
                pos = i
                break
        lines.insert(pos, new)
    return "".join(lines)


class Cluster:
    def __init__(self, workdir, names=NODE_NAMES, version="v1.34.2", knobs=None,
                 lease_flags=FAST_LEASES, daemons=True, backoff=0.2, extra_flags=None,
                 daemon_args=(), rbac=()):
        """version: every component's image tag (or {component: tag}); knobs: the fake
        components' knobs (dict, the same file for every node; set_knobs() changes it);
        lease_flags: leader-election flags put into the controller-manager's and the
        scheduler's manifests (None: the binaries' defaults); extra_flags: {component:
        {flag: value}} for every node's manifests; daemons: start `cplet daemon` on each;
        rbac: more RBAC YAML files for the fake API server (e.g. cplet cluster's own Role)."""
        self.dir = os.path.abspath(workdir)
        self.names = tuple(names)
        self.version = version
        self.knobs = knobs or {}
        self.lease_flags = dict(lease_flags or {})
        self.extra_flags = extra_flags or {}
        self.want_daemons = daemons
        self.daemon_args = list(daemon_args)
        self.backoff = backoff
        self.rbac = [os.path.abspath(f) for f in rbac]
        self.api = None
        self.nodes = {}
        self.daemons = {}
        self.listener = {n: i for i, n in enumerate(self.names)}
        self.lb = len(self.names)               # index of the load balancer's listener
        self._admin = None
        self._knob_client = None     # the follower thread's own (a Client is not thread-safe)
        self._follow = None
        self._stop = threading.Event()
        self._outages = []
        self._olock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout=60.0):
        os.makedirs(self.dir, exist_ok=True)
        api_dir = os.path.join(self.dir, "apiserver")
        os.makedirs(api_dir, exist_ok=True)
        tag = self.version if isinstance(self.version, str) else self.version["kube-apiserver"]
        # --node: a registered Node labelled node-role.kubernetes.io/control-plane
        args = ["--port", "0", "--extra-listeners", str(len(self.names)), "--rbac", RBAC,
                "--git-version", tag]
        for n in self.names:
            args += ["--node", n]
        for f in self.rbac:
            args += ["--rbac", f]
        self.api = apiclient.FakeServer(api_dir, args)
        self.api.start()
        pki = self.api.pki
        self.admin_kubeconfig = os.path.join(self.dir, "admin.conf")
        pki.kubeconfig(self.admin_kubeconfig, self.url(self.lb), "kubernetes-admin",
                       ["system:masters"])
        self._admin = self.api.client("kubernetes-admin", ["system:masters"],
                                      port=self.api.ports[self.lb])
        self._knob_client = self.api.client("kubernetes-admin", ["system:masters"],
                                            port=self.api.ports[self.lb])
        try:
            for n in self.names:
                self._start_node(n)
            for n in self.names:
                if not self.nodes[n].wait_healthy(timeout):
                    raise RuntimeError("node %s did not become healthy: %s\n%s" % (
                        n, self.nodes[n].health(), self.nodes[n]._tails()))
            # steady before anyone looks: every mirror pod there and Ready, both leases held
            # (the kubelets write status after their probes, a little after /readyz is 200)
            if not self.wait_steady(timeout):
                raise RuntimeError("the cluster did not settle in %.0fs: mirror pods %s, "
                                   "leases %s" % (timeout, {k: self.pod_ready(p) for k, p in
                                                            self.mirror_pods().items()},
                                                  [self.lease_holder(c) for c in
                                                   LEASE_COMPONENTS]))
            self._follow = threading.Thread(target=self._follow_apiservers, daemon=True,
                                            name="follow-apiservers")
            self._follow.start()
            if self.want_daemons:
                for n in self.names:
                    self.start_daemon(n)
                for n in self.names:
                    if self.wait_status(n, lambda s: s is not None, timeout) is None:
                        raise RuntimeError("the daemon of %s wrote no status in %.0fs:\n%s"
                                           % (n, timeout, self.daemon_log(n)[-3000:]))
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, listener):
        return "https://127.0.0.1:%d" % self.api.ports[listener]

    def _start_node(self, name):
        root = os.path.join(self.dir, name)
        kdir = os.path.join(root, "etc", "kubernetes")
        os.makedirs(kdir, exist_ok=True)
        pki, url = self.api.pki, self.url(self.listener[name])
        # kubeadm's files, each pointing at the node's own API server
        pki.kubeconfig(os.path.join(kdir, "kubelet.conf"), url, "system:node:" + name,
                       ["system:nodes"])
        pki.kubeconfig(os.path.join(kdir, "controller-manager.conf"), url,
                       "system:kube-controller-manager")
        pki.kubeconfig(os.path.join(kdir, "scheduler.conf"), url, "system:kube-scheduler")
        flags = {c: dict(self.extra_flags.get(c) or {}) for c in
                 ("kube-apiserver",) + LEASE_COMPONENTS}
        for c in LEASE_COMPONENTS:
            flags[c].update(self.lease_flags)

        def manifest_filter(component, text):
            return set_flags(text, flags[component]) if flags.get(component) else text
        node = SimNode(root, self.version, knobs=os.path.join(self.dir, "knobs.json"),
                       backoff=self.backoff, backoff_max=2.0, kubeconfig=os.path.join(
                           kdir, "kubelet.conf"), node_name=name, manifest_filter=manifest_filter)
        self.set_knobs(self.knobs)
        node.up(wait=False)
        self.nodes[name] = node

    def kubeconfig(self, path, user, groups=(), listener=None):
        """A kubeconfig for any identity (client certificate CN=user, O=groups), through the
        load balancer's listener unless another is named: e.g. `cplet cluster`'s own
        least-privilege identity."""
        return self.api.pki.kubeconfig(path, self.url(self.lb if listener is None else listener),
                                       user, list(groups))

    def set_knobs(self, knobs):
        """The fake components' knobs on every node (read at each component start)."""
        self.knobs = knobs
        atomic_write(os.path.join(self.dir, "knobs.json"), json.dumps(knobs, indent=2) + "\n",
                     0o644)

    def start_daemon(self, name, extra=()):
        node = self.nodes[name]
        log = open(os.path.join(node.log_dir, "cplet-daemon.log"), "ab")
        cmd = [cplet_binary(), "--root", node.root, "--plugin-dir", plugin_dir(), "daemon",
               "--kubeconfig", os.path.join(node.root, "etc", "kubernetes", "kubelet.conf")]
        cmd += self.daemon_args + list(extra)
        self.daemons[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT)
        log.close()
        return self.daemons[name]

    def stop_daemon(self, name, sig=signal.SIGTERM, timeout=15.0):
        p = self.daemons.pop(name, None)
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def daemon_log(self, name):
        try:
            with open(os.path.join(self.nodes[name].log_dir, "cplet-daemon.log"),
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        self._stop.set()
        for n in list(self.daemons):
            self.stop_daemon(n)
        for node in self.nodes.values():
            node.down()
        if self._follow is not None:
            self._follow.join(5)
        for cl in (self._admin, self._knob_client):
            if cl is not None:
                cl.close()
        if self.api is not None:
            self.api.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---------------------------------------------------------------- API server outages
    def _follow_apiservers(self):
        """Closes node i's listener from its kube-apiserver's stop/exit until that API
        server's /readyz answers 200 again; then its /version follows the new process."""
        offset = {n: 0 for n in self.names}
        down = {n: False for n in self.names}
        while not self._stop.is_set():
            for n in self.names:
                node = self.nodes[n]
                try:
                    with open(node.events_path, "rb") as f:
                        f.seek(offset[n])
                        data = f.read()
                except OSError:
                    data = b""
                cut = data.rfind(b"\n") + 1
                offset[n] += cut
                for line in data[:cut].splitlines():
                    e = json.loads(line)
                    if e.get("file") != "kube-apiserver.yaml":
                        continue
                    if e["event"] in ("stop", "exit") and not down[n]:
                        down[n] = True
                        self._outage(n, "down", e["t"])
                    elif e["event"] == "start" and down[n]:
                        pass  # open again once it serves
                if down[n] and node.get("kube-apiserver", "/readyz", 1.0)[0] == 200:
                    down[n] = False
                    self._outage(n, "up", time.time())
            self._stop.wait(0.05)

    def _outage(self, name, what, t):
        i = self.listener[name]
        try:
            if what == "down":
                self._knob_client.knobs(outage=None, listener=i)
            else:
                knobs = {"outage_end": True, "listener": i}
                v = self.nodes[name].version()
                if v:
                    knobs["git_version"] = v["gitVersion"]
                    if "emulationMinor" in v:
                        knobs["emulated_version"] = "%s.%s" % (v["emulationMajor"],
                                                               v["emulationMinor"])
                        knobs["min_compatibility_version"] = "%s.%s" % (
                            v["minCompatibilityMajor"], v["minCompatibilityMinor"])
                self._knob_client.knobs(**knobs)
        except Exception as e:  # noqa: BLE001 - the harness must keep following
            sys.stderr.write("cluster_harness: knob for %s %s failed: %s\n" % (name, what, e))
        with self._olock:
            # t: when the listener changed; cause: the node's event (stop/exit) or the
            # /readyz 200 that made it change
            self._outages.append({"t": time.time(), "cause": t, "node": name, "listener": i,
                                  "event": what})
            with open(os.path.join(self.dir, "outages.jsonl"), "a") as f:
                f.write(json.dumps(self._outages[-1]) + "\n")

    def outages(self, node=None):
        with self._olock:
            return [o for o in self._outages if node is None or o["node"] == node]

    # ---------------------------------------------------------------- reading the API
    def admin(self):
        """An apiclient.Client as kubernetes-admin through the load balancer's listener
        (one connection: use it from one thread)."""
        return self._admin

    def _get(self, path):
        r = self._admin.get(path)
        if r.status == 404:
            return None
        if r.status != 200:
            raise RuntimeError("GET %s: %r" % (path, r))
        return r.json()

    def node_object(self, name):
        return self._get("/api/v1/nodes/" + name)

    def annotation(self, name, key):
        n = self.node_object(name)
        return ((n or {}).get("metadata", {}).get("annotations") or {}).get(key)

    def status(self, name):
        raw = self.annotation(name, STATUS)
        return json.loads(raw) if raw else None

    def set_target(self, name, target):
        """Writes cplet.io/target (a dict, or a raw string) with a merge patch, as
        `kubectl annotate` does."""
        raw = target if isinstance(target, str) else json.dumps(target, separators=(",", ":"))
        r = self._admin.patch("/api/v1/nodes/" + name,
                              {"metadata": {"annotations": {TARGET: raw}}})
        if r.status != 200:
            raise RuntimeError("patch target of %s: %r" % (name, r))

    def wait_status(self, name, pred, timeout=60.0):
        """The first status s with pred(s) true (s may be None), or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status(name)
            if pred(s):
                return s if s is not None else {}
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def mirror_pods(self, name=None):
        """Mirror pods in kube-system (of one node, or all), by name."""
        lst = self._get("/api/v1/namespaces/kube-system/pods") or {"items": []}
        return {p["metadata"]["name"]: p for p in lst["items"]
                if "kubernetes.io/config.mirror" in (p["metadata"].get("annotations") or {})
                and (name is None or p["spec"].get("nodeName") == name)}

    def mirror_pod(self, name, component):
        return self._get("/api/v1/namespaces/kube-system/pods/%s-%s" % (component, name))

    @staticmethod
    def pod_ready(pod):
        for c in ((pod or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return c.get("status") == "True"
        return False

    @staticmethod
    def pod_revision(pod):
        return ((pod or {}).get("metadata", {}).get("annotations") or {}).get(REVISION)

    @staticmethod
    def pod_image(pod):
        cs = ((pod or {}).get("spec") or {}).get("containers") or [{}]
        return cs[0].get("image")

    def wait_mirror(self, name, component, pred, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            p = self.mirror_pod(name, component)
            if p is not None and pred(p):
                return p
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def wait_steady(self, timeout=30.0):
        """Every node's mirror pods present and Ready, and both Leases held; True when so
        within timeout."""
        want = {"%s-%s" % (comp, n) for n in self.names for comp in
                ("kube-apiserver",) + LEASE_COMPONENTS}
        deadline = time.monotonic() + timeout
        while True:
            pods = self.mirror_pods()
            ok = want <= set(pods) and all(self.pod_ready(pods[k]) for k in want)
            if ok:
                ok = all(self.lease_holder(c) for c in LEASE_COMPONENTS)
            if ok:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def lease(self, component):
        return self._get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                         + component)

    def lease_holder(self, component):
        """(holder node name, holderIdentity, renewTime) or None."""
        lease = self.lease(component)
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        ident = spec.get("holderIdentity") or ""
        return ident.rsplit("_", 1)[0], ident, spec.get("renewTime")

    # ---------------------------------------------------------------- sim event logs
    def events(self, node=None, file=None, event=None):
        """Every node's sim events (start/stop/exit/...) with "node" added, ordered by time."""
        out = []
        for n in ([node] if node else self.names):
            for e in self.nodes[n].events(event=event, file=file):
                e["node"] = n
                out.append(e)
        return sorted(out, key=lambda e: e["t"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the 3-node cluster; runs until SIGTERM/SIGINT")
    up.add_argument("--dir", required=True)
    up.add_argument("--version", default="v1.34.2")
    up.add_argument("--no-daemons", action="store_true")
    up.add_argument("--real-lease-timings", action="store_true",
                    help="leave the leader-election flags at the binaries' defaults")
    a = p.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    c = Cluster(a.dir, version=a.version, daemons=not a.no_daemons,
                lease_flags=None if a.real_lease_timings else FAST_LEASES)
    try:
        c.start()
    except RuntimeError as e:
        sys.stderr.write("cluster_harness: %s\n" % e)
        return 1
    print(json.dumps({"admin_kubeconfig": c.admin_kubeconfig, "dir": c.dir,
                      "listeners": dict(zip(list(c.names) + ["load-balancer"], c.api.ports)),
                      "nodes": {n: c.nodes[n].info() for n in c.names}}), flush=True)
    try:
        while not stop.is_set():
            stop.wait(1)
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
