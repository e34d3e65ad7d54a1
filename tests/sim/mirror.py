# SPDX-License-Identifier: Apache-2.0
"""Mirror pods of the fake kubelet (tests/sim/fake_kubelet.py --kubeconfig K --node-name N),
made the way the real kubelet makes them (pkg/kubelet/pod/mirror_client.go, kubelet.go
syncPod, config/common.go applyDefaults, status/status_manager.go):

  * one mirror pod per static pod: `<metadata.name>-<node>` in the manifest's namespace
    (default "default"), with the manifest's labels and annotations, plus
    kubernetes.io/config.hash (the static pod's hash), config.seen, config.source "file" and
    kubernetes.io/config.mirror (= the hash); spec from the manifest with nodeName and the
    static pods' NoExecute toleration; one controller ownerReference to the Node (its UID),
    which NodeRestriction requires;
  * a manifest whose pod changed (another hash): "Deleting mirror pod because it is
    outdated" (DELETE with a UID precondition), then created again; a manifest removed:
    its mirror pod is deleted (an orphan);
  * status through pods/<name>/status: phase, the conditions (Ready and ContainersReady follow
    the containers: started once the startupProbe passed, ready while the readinessProbe
    passes; without probes, ready while running), containerStatuses with the image and the
    restart count;
  * the API server unreachable: the pods keep running, the kubelet retries at every sync and
    says so once in its log.

Identity: the kubeconfig's (system:node:<name> in system:nodes), so the fake API server's node
authorizer and NodeRestriction judge every request as they would the real kubelet's.
"""

import hashlib
import http.client
import json
import ssl
import threading
import time

import kubeclient

MIRROR = "kubernetes.io/config.mirror"
HASH = "kubernetes.io/config.hash"
SEEN = "kubernetes.io/config.seen"
SOURCE = "kubernetes.io/config.source"


def rfc3339(t=None, nano=False):
    t = time.time() if t is None else t
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return s + (".%09dZ" % int((t % 1) * 1e9) if nano else "Z")


def probe_ok(probe):
    """One httpGet probe as the kubelet's prober runs it (no certificate verification):
    True for 200..399."""
    hg = (probe or {}).get("httpGet") or {}
    port = hg.get("port")
    if not isinstance(port, int):
        return False
    host = hg.get("host") or "127.0.0.1"
    timeout = float(probe.get("timeoutSeconds") or 1)
    if (hg.get("scheme") or "HTTP").upper() == "HTTPS":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", hg.get("path") or "/")
        r = conn.getresponse()
        r.read()
        return 200 <= r.status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class MirrorPods(threading.Thread):
    def __init__(self, kubelet, kubeconfig, node_name, period=0.5, resync=10.0, log=None):
        super().__init__(name="mirror-pods", daemon=True)
        self.k = kubelet
        self.kubeconfig = kubeconfig
        self.node = node_name.lower()
        self.period = period
        self.resync = resync
        self.log = log or (lambda msg, level="I": None)
        self.wake = threading.Event()
        self.stopping = False
        self.node_uid = None
        self.mirrors = None          # {(ns, name): mirror pod as last seen}, None: list again
        self.last_list = 0.0
        self.sent = {}               # (ns, name) -> status signature last written
        self.seen = {}               # pod hash -> config.seen
        self.started = {}            # (fname, container, pid) -> startup probe passed
        self.ready_cache = {}        # (fname, container, pid) -> (when, readiness result)
        self.down = None             # text of the outage being reported, None when up
        self.last_error = None

    def kick(self):
        self.wake.set()

    def stop(self):
        self.stopping = True
        self.wake.set()

    # ---- what runs on this node
    def snapshot(self):
        out = {}
        for fname, w in list(self.k.workers.items()):
            with w.cond:
                pod = w.running
                if pod is None or "doc" not in pod:
                    continue
                cs = [{"spec": c.spec, "pid": c.proc.pid if c.proc is not None else None,
                       "restarts": max(0, getattr(c, "restarts", 0)),
                       "since": c.started_at, "wall": time.time() - (time.monotonic() - c.started_at)}
                      for c in w.containers]
            out[fname] = (pod, cs)
        return out

    def pod_hash(self, pod):
        # the file source's hash: of the decoded pod and the host it runs on
        h = hashlib.md5()
        h.update(json.dumps(pod["doc"], sort_keys=True, default=str).encode())
        h.update(("host:%s" % self.node).encode())
        return h.hexdigest()

    def container_state(self, fname, doc_c, c):
        """(running, started, ready) of one container, probing it as the kubelet does."""
        if c["pid"] is None:
            return False, False, False
        key = (fname, doc_c.get("name"), c["pid"])
        started = self.started.get(key, False)
        if not started:
            sp = doc_c.get("startupProbe")
            started = probe_ok(sp) if sp else True
            if started:
                self.started = {k: v for k, v in self.started.items() if k[:2] != key[:2]}
                self.started[key] = True
        rp = doc_c.get("readinessProbe")
        ready = started and (self.probe_every(key, rp) if rp else True)
        return True, started, ready

    def probe_every(self, key, probe):
        """The readiness probe's last result, probed again once its periodSeconds passed."""
        now = time.monotonic()
        last = self.ready_cache.get(key)
        if last is None or now - last[0] >= float(probe.get("periodSeconds") or 10):
            self.ready_cache = {k: v for k, v in self.ready_cache.items() if k[:2] != key[:2]}
            last = (now, probe_ok(probe))
            self.ready_cache[key] = last
        return last[1]

    # ---- the objects
    def mirror_object(self, pod, h):
        doc = pod["doc"]
        meta = doc.get("metadata") or {}
        ann = dict(meta.get("annotations") or {})
        ann[HASH] = h
        ann[SEEN] = self.seen.setdefault(h, rfc3339(nano=True))
        ann[SOURCE] = "file"
        ann[MIRROR] = h
        spec = json.loads(json.dumps(doc.get("spec") or {}, default=str))
        spec["nodeName"] = self.node
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec["tolerations"] = list(spec.get("tolerations") or []) + [
            {"operator": "Exists", "effect": "NoExecute"}]
        m = {"name": "%s-%s" % (meta.get("name"), self.node),
             "namespace": pod["namespace"], "annotations": ann,
             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node,
                                  "uid": self.node_uid, "controller": True}]}
        if meta.get("labels"):
            m["labels"] = dict(meta["labels"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec}

    def status_of(self, fname, pod, cs, old):
        doc_cs = {c.get("name"): c for c in (pod["doc"].get("spec") or {}).get("containers") or []}
        statuses, all_ready, any_running, sig = [], True, False, []
        for c in cs:
            name = c["spec"]["name"]
            running, started, ready = self.container_state(fname, doc_cs.get(name) or {}, c)
            any_running |= running
            all_ready &= ready
            st = {"name": name, "image": c["spec"]["image"], "imageID": c["spec"]["image"],
                  "ready": ready, "started": started, "restartCount": c["restarts"]}
            if running:
                st["containerID"] = "containerd://%064x" % c["pid"]
                st["state"] = {"running": {"startedAt": rfc3339(c["wall"])}}
            else:
                st["state"] = {"waiting": {"reason": "CrashLoopBackOff" if c["restarts"] else
                                           "ContainerCreating"}}
            statuses.append(st)
            sig.append((name, st["image"], ready, started, c["restarts"], c["pid"]))
        ready = "True" if statuses and all_ready else "False"
        prev = {x.get("type"): x for x in ((old or {}).get("status") or {}).get("conditions") or []}

        def cond(t, s):
            p = prev.get(t)
            ltt = p["lastTransitionTime"] if p and p.get("status") == s and \
                p.get("lastTransitionTime") else rfc3339()
            return {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": ltt}
        status = {
            "phase": "Running" if any_running else "Pending",
            "conditions": [cond("PodReadyToStartContainers", "True"), cond("Initialized", "True"),
                           cond("Ready", ready), cond("ContainersReady", ready),
                           cond("PodScheduled", "True")],
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": ((old or {}).get("status") or {}).get("startTime") or rfc3339(),
            "qosClass": "Burstable",
            "containerStatuses": statuses,
        }
        return status, tuple(sig)

    # ---- the loop
    def run(self):
        try:
            client = kubeclient.Client(self.kubeconfig)
        except (OSError, ValueError, KeyError, ssl.SSLError) as e:
            self.log("mirror pods off: kubeconfig %s unusable: %s" % (self.kubeconfig, e), "E")
            return
        self.log("mirror pods: node %s through %s:%d" % (self.node, client.host, client.port))
        while not self.stopping:
            try:
                self.sync(client)
                if self.down:
                    self.log("API server reachable again: mirror pods in sync")
                self.down = None
            except kubeclient.Unreachable as e:
                if not self.down:
                    self.log("API server unreachable (pods keep running; retrying): %s" % e, "W")
                self.down = str(e)
                self.mirrors = None
            except kubeclient.APIError as e:
                if str(e) != self.last_error:
                    self.log("mirror pods: %s" % e, "E")
                self.last_error = str(e)
                self.mirrors = None
            self.wake.wait(self.period)
            self.wake.clear()
        client.close()

    def sync(self, client):
        now = time.monotonic()
        if self.node_uid is None or self.mirrors is None or now - self.last_list >= self.resync:
            try:
                node = client.request("GET", "/api/v1/nodes/%s" % self.node)
            except kubeclient.APIError as e:
                if e.code == 404:
                    if str(e) != self.last_error:
                        self.log("no mirror pods: node %s is not registered" % self.node, "W")
                    self.last_error = str(e)
                    return
                raise
            self.node_uid = node["metadata"]["uid"]
            lst = client.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s" % self.node)
            self.mirrors = {(p["metadata"]["namespace"], p["metadata"]["name"]): p
                            for p in lst.get("items") or []
                            if MIRROR in (p["metadata"].get("annotations") or {})}
            self.last_list = now
            self.sent = {}
        wanted = set()
        for fname, (pod, cs) in sorted(self.snapshot().items()):
            h = self.pod_hash(pod)
            want = self.mirror_object(pod, h)
            key = (pod["namespace"], want["metadata"]["name"])
            wanted.add(key)
            m = self.mirrors.get(key)
            if m is not None and (m["metadata"].get("annotations") or {}).get(MIRROR) != h:
                self.log("Deleting mirror pod because it is outdated: %s/%s" % key)
                self.delete(client, key, m)
                m = None
            if m is None:
                m = self.create(client, key, want)
                if m is None:
                    continue
            status, sig = self.status_of(fname, pod, cs, m)
            if self.sent.get(key) != sig:
                m = client.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % key,
                                   {"metadata": {"uid": m["metadata"]["uid"]}, "status": status},
                                   "application/merge-patch+json")
                self.mirrors[key] = m
                self.sent[key] = sig
        for key in [k for k in self.mirrors if k not in wanted]:
            self.log("Deleting orphaned mirror pod %s/%s" % key)
            self.delete(client, key, self.mirrors[key])

    def create(self, client, key, want):
        try:
            m = client.request("POST", "/api/v1/namespaces/%s/pods" % key[0], want)
            self.log("Created mirror pod %s/%s (hash %s)" % (key[0], key[1],
                                                              want["metadata"]["annotations"][MIRROR]))
        except kubeclient.APIError as e:
            if e.code != 409:
                raise
            m = client.request("GET", "/api/v1/namespaces/%s/pods/%s" % key)
            if (m["metadata"].get("annotations") or {}).get(MIRROR) != \
                    want["metadata"]["annotations"][MIRROR]:
                self.mirrors = None  # another one is there: look again at the next sync
                return None
        self.mirrors[key] = m
        self.sent.pop(key, None)
        return m

    def delete(self, client, key, m):
        try:
            client.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % key,
                           {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                            "preconditions": {"uid": m["metadata"]["uid"]}})
        except kubeclient.APIError as e:
            if e.code not in (404, 409):
                raise
        self.mirrors.pop(key, None)
        self.sent.pop(key, None)
