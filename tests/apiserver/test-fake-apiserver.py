#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Self-test of the fake kube-apiserver, printing TAP. Run:
python3 tests/apiserver/test-fake-apiserver.py
"""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from apiclient import FakeServer, port_refuses  # noqa: E402

TMP = tempfile.mkdtemp(prefix="cplet-apiserver-test-")
KUBECTL = shutil.which("kubectl")
_results = []
_notes = []


def check(name, cond, diag=""):
    _results.append((bool(cond), name, diag, None))
    return bool(cond)


def skip(name, reason):
    _results.append((True, name, "", reason))


def emit_tap():
    print("1..%d" % len(_results))
    for i, (ok, name, diag, skipped) in enumerate(_results, 1):
        if skipped:
            print("ok %d - %s # SKIP %s" % (i, name, skipped))
            continue
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        if not ok and diag:
            for line in str(diag).splitlines()[-25:]:
                print("#   " + line)
    sys.stdout.flush()
    return all(ok for ok, _, _, _ in _results)


RBAC_YAML = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cplet-cluster}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cplet-cluster}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cplet-cluster}
subjects:
- {kind: User, name: cplet-controller}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cplet-cluster, namespace: kube-system}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [update]
  resourceNames: [cplet-cluster]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cplet-cluster, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cplet-cluster}
subjects:
- {kind: User, name: cplet-controller}
"""

NODE = "/api/v1/nodes"


def rv_of(r):
    return r.json()["metadata"]["resourceVersion"]


def collect(events, n=None, until=None, limit=10.0):
    """Reads events until n were read, until(ev) is true, or the stream ends."""
    out = []
    t0 = time.monotonic()
    try:
        for ev in events:
            out.append(ev)
            if (n is not None and len(out) >= n) or (until and until(ev)):
                break
            if time.monotonic() - t0 > limit:
                break
    except (OSError, http.client.HTTPException) as e:
        out.append({"type": "_error", "error": repr(e)})
    return out


def test_authn(srv):
    anon = srv.client()
    r = anon.get(NODE + "/n1")
    check("401 without credentials, as a Status object",
          r.status == 401 and r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                           "status": "Failure", "message": "Unauthorized",
                                           "reason": "Unauthorized", "code": 401}, r)
    r = srv.client(token="wrong").get(NODE + "/n1")
    check("401 for an unknown bearer token", r.status == 401, r)
    r = srv.client(token="admintoken").get(NODE + "/n1")
    check("a static token in system:masters reads a node", r.status == 200, r)
    r = srv.client("system:node:n1", ["system:nodes"]).get("/version")
    v = r.json()
    check("/version with node credentials: binary and emulation fields (FACTS.md)",
          r.status == 200 and v["gitVersion"] == "v1.34.0" and v["minor"] == "34" and
          v["emulationMinor"] == "33" and v["minCompatibilityMinor"] == "32", r)
    # A certificate from another CA is no identity.
    from pki import PKI
    other = PKI(os.path.join(TMP, "other-ca"))
    crt, key = other.client_cert("kubernetes-admin", ["system:masters"])
    from apiclient import Client
    c = Client(srv.port, srv.pki.ca_cert, crt, key)
    # kube-apiserver answers 401 (it verifies in the x509 authenticator); Python's ssl
    # can only fail the handshake. Either way: no identity.
    try:
        r = c.get(NODE + "/n1")
        check("a client certificate from another CA is no identity", r.status == 401, r)
    except (OSError, ssl.SSLError) as e:
        check("a client certificate from another CA is no identity", "certificate" in
              str(e).lower() or isinstance(e, (ssl.SSLError, ConnectionResetError)), e)


def test_node_authorizer(srv):
    n1, admin = srv.node("n1"), srv.admin()
    r = n1.get(NODE + "/n1")
    check("node n1 GETs its own Node", r.status == 200 and r.json()["metadata"]["name"] == "n1",
          r)
    r = n1.get(NODE + "/n2")
    want = ('nodes "n2" is forbidden: User "system:node:n1" cannot get resource "nodes" in API '
            'group "" at the cluster scope: node \'n1\' cannot read \'n2\', only its own Node '
            'object')
    check("node n1 GET of n2: 403 worded as the real one",
          r.status == 403 and r.json()["message"] == want and
          r.json()["reason"] == "Forbidden" and
          r.json()["details"] == {"name": "n2", "kind": "nodes"}, r)
    r = n1.get(NODE)
    check("node LIST without fieldSelector: 403",
          r.status == 403 and "cannot list resource \"nodes\"" in r.json()["message"] and
          "cannot read all nodes" in r.json()["message"], r)
    r = n1.get(NODE + "?fieldSelector=metadata.name%3Dn1")
    check("node LIST with fieldSelector metadata.name=<itself>: its Node only",
          r.status == 200 and [i["metadata"]["name"] for i in r.json()["items"]] == ["n1"] and
          r.json()["metadata"]["resourceVersion"], r)
    r = n1.get(NODE + "?fieldSelector=metadata.name%3Dn2")
    check("node LIST with another node's name: 403", r.status == 403, r)
    st, body, _ = n1.watch(NODE + "?watch=1")
    check("node WATCH without fieldSelector: 403", st == 403, body)

    r = n1.patch(NODE + "/n1", {"metadata": {"annotations": {"cplet.io/status": '{"a":1}'}}})
    check("node PATCHes its own annotation (merge patch)",
          r.status == 200 and r.json()["metadata"]["annotations"]["cplet.io/status"] ==
          '{"a":1}', r)
    r = n1.patch(NODE + "/n2", {"metadata": {"annotations": {"cplet.io/status": "x"}}})
    check("node PATCH of another node: 403 from NodeRestriction",
          r.status == 403 and r.json()["message"] ==
          'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"', r)
    r = n1.patch(NODE + "/n1", {"metadata": {"labels": {
        "node-role.kubernetes.io/worker": ""}}})
    check("node may not set a kubernetes.io label on itself (NodeRestriction)",
          r.status == 403 and "is not allowed to modify labels: node-role.kubernetes.io/worker"
          in r.json()["message"], r)
    n3 = srv.node("n3")
    r1 = n3.post(NODE, {"metadata": {"name": "n9"}})
    r2 = n3.post(NODE, {"metadata": {"name": "n3", "labels": {
        "node-restriction.kubernetes.io/x": "y"}}})
    r3 = n3.post(NODE, {"metadata": {"name": "n3", "labels": {"kubernetes.io/os": "linux"}}})
    check("a node registers its own Node, not another, not with restricted labels",
          r1.status == 403 and r1.json()["message"] == 'nodes "n9" is forbidden: node "n3" is '
          'not allowed to modify node "n9"' and r2.status == 403 and
          "is not allowed to set the following labels: node-restriction.kubernetes.io/x" in
          r2.json()["message"] and r3.status == 201, (r1, r2, r3))
    r = n1.patch(NODE + "/n2", {"metadata": {"annotations": {"bad key!": "x"}}})
    check("admission before validation: another node's invalid patch is 403, not 422",
          r.status == 403, r)
    r = n1.put(NODE + "/n1", admin.get(NODE + "/n1").json())
    check("node PUT of itself is allowed (update)", r.status == 200, r)
    r = n1.get("/api/v1/namespaces/kube-system/pods")
    check("node LIST of pods without spec.nodeName selector: 403",
          r.status == 403 and "can only list/watch pods with spec.nodeName field selector" in
          r.json()["message"], r)
    r = n1.get("/api/v1/namespaces/default/events")
    check("node may not list events", r.status == 403, r)
    r = n1.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x")
    check("node GET of a lease outside kube-node-lease: 403",
          r.status == 403 and 'can only access leases in the "kube-node-lease" system namespace'
          in r.json()["message"], r)
    r = n1.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})
    r2 = n1.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
    r3 = n1.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                 {"metadata": {"name": "n2"}, "spec": {}})
    check("node creates and reads its own node lease, not another's",
          r.status == 201 and r2.status == 200 and r3.status == 403, (r, r2, r3))


def test_patches_and_conflicts(srv):
    admin = srv.admin()
    cur = admin.get(NODE + "/n2")
    rv = rv_of(cur)
    r = admin.patch(NODE + "/n2", {"metadata": {"annotations": {"a": "1"}}})
    rv2 = rv_of(r)
    check("a write bumps the resourceVersion", int(rv2) > int(rv), (rv, rv2))
    r = admin.patch(NODE + "/n2", {"metadata": {"annotations": {"a": "1"}}})
    check("a no-op patch writes nothing (same resourceVersion)", rv_of(r) == rv2, r)
    r = admin.patch(NODE + "/n2", {"metadata": {"resourceVersion": rv,
                                                "annotations": {"a": "2"}}})
    check("409 Conflict on a stale metadata.resourceVersion in a patch",
          r.status == 409 and r.json()["reason"] == "Conflict" and r.json()["message"] ==
          'Operation cannot be fulfilled on nodes "n2": the object has been modified; please '
          'apply your changes to the latest version and try again', r)
    r = admin.patch(NODE + "/n2", {"metadata": {"resourceVersion": rv2,
                                                "annotations": {"a": "2"}}})
    check("a patch with the current resourceVersion applies", r.status == 200, r)
    r = admin.patch(NODE + "/n2", {"metadata": {"annotations": {"a": None, "b": "x"}}},
                    "application/strategic-merge-patch+json")
    ann = r.json()["metadata"]["annotations"]
    check("strategic merge patch: null deletes a key, others are merged",
          r.status == 200 and "a" not in ann and ann["b"] == "x", r)
    r = admin.patch(NODE + "/n2", [{"op": "add", "path": "/metadata/annotations/c~1d",
                                    "value": "y"}], "application/json-patch+json")
    check("JSON patch (RFC 6902) with an escaped path",
          r.status == 200 and r.json()["metadata"]["annotations"]["c/d"] == "y", r)
    r = admin.patch(NODE + "/n2", {"metadata": {"annotations": {"big": "x" * (256 * 1024)}}})
    check("annotations over 256 KiB: 422 Invalid", r.status == 422 and
          r.json()["reason"] == "Invalid", r)
    r = admin.patch(NODE + "/n2", {"metadata": {"annotations": {"a": "1"}}}, "text/plain")
    check("unknown patch type: 415", r.status == 415, r)
    # A body of unknown length comes chunked (Go's client with a stream, libcurl too).
    c = admin.conn()
    c.putrequest("PATCH", NODE + "/n2")
    c.putheader("Content-Type", "application/merge-patch+json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    part1, part2 = b'{"metadata":{"annotations":', b'{"chunked":"yes"}}}'
    for part in (part1, part2):
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
    c.send(b"0\r\n\r\n")
    resp = c.getresponse()
    body = json.loads(resp.read())
    c.close()
    check("a chunked request body is read",
          resp.status == 200 and body["metadata"]["annotations"].get("chunked") == "yes", body)
    r = admin.get(NODE + "/nope")
    check("404 NotFound Status", r.status == 404 and r.json()["message"] ==
          'nodes "nope" not found' and r.json()["details"] == {"name": "nope", "kind": "nodes"},
          r)
    r = admin.get(NODE + "?labelSelector=node-role.kubernetes.io%2Fcontrol-plane")
    check("LIST with a labelSelector", r.status == 200 and len(r.json()["items"]) == 2, r)
    r = admin.get(NODE + "?labelSelector=kubernetes.io%2Fhostname+in+(n1,x)")
    check("LIST with a set-based labelSelector",
          [i["metadata"]["name"] for i in r.json()["items"]] == ["n1"], r)
    r = admin.get(NODE + "?fieldSelector=spec.foo%3Dx")
    check("LIST with an unsupported field selector: 400", r.status == 400, r)


def test_events_leases_pods(srv):
    admin, n1 = srv.admin(), srv.node("n1")
    ev = {"metadata": {"generateName": "n1."}, "involvedObject": {"kind": "Node", "name": "n1",
                                                                   "apiVersion": "v1"},
          "reason": "CpletPlanStarted", "message": "plan p1 started", "type": "Normal",
          "source": {"component": "cplet"}}
    r = n1.post("/api/v1/namespaces/default/events", ev)
    check("a node creates an Event in default (generateName)",
          r.status == 201 and r.json()["metadata"]["name"].startswith("n1."), r)
    r = n1.post("/api/v1/namespaces/nope/events", ev)
    check("an Event in a namespace that does not exist: 404", r.status == 404, r)
    r = admin.get("/api/v1/events?fieldSelector=involvedObject.name%3Dn1")
    check("admin lists events across namespaces with a field selector",
          r.status == 200 and [e["reason"] for e in r.json()["items"]] == ["CpletPlanStarted"], r)

    L = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    r = admin.post(L, {"metadata": {"name": "kcm"}, "spec": {"holderIdentity": "a",
                                                             "leaseDurationSeconds": 15}})
    check("lease created", r.status == 201, r)
    lease = r.json()
    r = admin.post(L, {"metadata": {"name": "kcm"}, "spec": {}})
    check("creating it again: 409 AlreadyExists",
          r.status == 409 and r.json()["reason"] == "AlreadyExists" and r.json()["message"] ==
          'leases.coordination.k8s.io "kcm" already exists', r)
    lease["spec"]["holderIdentity"] = "b"
    r = admin.put(L + "/kcm", lease)
    check("lease updated with its resourceVersion", r.status == 200, r)
    r = admin.put(L + "/kcm", lease)
    check("lease update with a stale resourceVersion: 409", r.status == 409 and
          r.json()["details"] == {"name": "kcm", "kind": "leases",
                                  "group": "coordination.k8s.io"}, r)
    r = admin.get(L)
    check("leases listed", r.status == 200 and r.json()["kind"] == "LeaseList", r)

    P = "/api/v1/namespaces/kube-system/pods"
    for name, node in (("kube-apiserver-n1", "n1"), ("kube-apiserver-n2", "n2")):
        admin.post(P, {"metadata": {"name": name, "annotations": {
            "kubernetes.io/config.mirror": "h"}}, "spec": {"nodeName": node, "containers": [
                {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.34.0"}]},
            "status": {"phase": "Running"}})
    r1, r2 = n1.get(P + "/kube-apiserver-n1"), n1.get(P + "/kube-apiserver-n2")
    check("node GETs a pod bound to it, not one on another node",
          r1.status == 200 and r2.status == 403 and "no relationship found between node 'n1'"
          in r2.json()["message"], (r1, r2))
    r = n1.get(P + "?fieldSelector=spec.nodeName%3Dn1")
    check("node LISTs pods with spec.nodeName=<itself>",
          r.status == 200 and [p["metadata"]["name"] for p in r.json()["items"]] ==
          ["kube-apiserver-n1"], r)
    node_uid = admin.get(NODE + "/n1").json()["metadata"]["uid"]
    mirror = {"metadata": {"name": "kube-scheduler-n1", "annotations": {
        "kubernetes.io/config.mirror": "h"}, "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": node_uid,
             "controller": True}]}, "spec": {"nodeName": "n1", "containers": []}}
    r = n1.post(P, mirror)
    bad = json.loads(json.dumps(mirror))
    bad["metadata"]["annotations"] = {}
    bad["metadata"]["name"] = "x"
    r2 = n1.post(P, bad)
    check("node creates a mirror pod; without the mirror annotation: 403",
          r.status == 201 and r2.status == 403 and "can only create mirror pods" in
          r2.json()["message"], (r, r2))
    r = n1.patch(P + "/kube-scheduler-n1/status", {"status": {"phase": "Running"}},
                 "application/strategic-merge-patch+json")
    check("node patches the status of its mirror pod", r.status == 200 and
          r.json()["status"]["phase"] == "Running", r)
    uid = admin.get(P + "/kube-scheduler-n1").json()["metadata"]["uid"]
    opts = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
            "preconditions": {"uid": "0000-not-it"}}
    r = n1.request("DELETE", P + "/kube-scheduler-n1", opts)
    check("DELETE with another UID in its preconditions: 409, nothing deleted (the kubelet "
          "deletes an outdated mirror pod by UID)",
          r.status == 409 and r.json()["message"] == "Precondition failed: UID in precondition: "
          "0000-not-it, UID in object meta: %s" % uid and
          admin.get(P + "/kube-scheduler-n1").status == 200, r)
    for what, vol in (("secrets", {"name": "s", "secret": {"secretName": "s"}}),
                      ("configmaps", {"name": "c", "configMap": {"name": "c"}}),
                      ("persistentvolumeclaims", {"name": "p", "persistentVolumeClaim":
                                                  {"claimName": "p"}})):
        other = json.loads(json.dumps(mirror))
        other["metadata"]["name"] = "kube-x-n1"
        other["spec"]["volumes"] = [vol]
        r = n1.post(P, other)
        check("node may not create a mirror pod that references %s (NodeRestriction)" % what,
              r.status == 403 and r.json()["message"].endswith(
                  'node "n1" can not create pods that reference %s' % what), r)
    opts["preconditions"]["uid"] = uid
    r1 = n1.request("DELETE", P + "/kube-apiserver-n2")
    r2 = n1.request("DELETE", P + "/kube-scheduler-n1", opts)
    r3 = admin.get(P + "/kube-scheduler-n1")
    check("node deletes its own mirror pod, not another node's (NodeRestriction)",
          r1.status == 403 and 'node "n1" can only delete pods with spec.nodeName set to '
          "itself" in r1.json()["message"] and r2.status == 200 and r3.status == 404,
          (r1, r2, r3))
    r = n1.patch(P + "/kube-apiserver-n1", {"metadata": {"labels": {"x": "y"}}})
    check("node may not patch a pod itself (only pods/status)", r.status == 403, r)


def test_rbac(srv):
    ctl = srv.client("cplet-controller", [])
    nobody = srv.client("someone", ["some-group"])
    r = ctl.get(NODE)
    check("RBAC: the controller role lists nodes", r.status == 200, r)
    r = ctl.patch(NODE + "/n1", {"metadata": {"annotations": {"cplet.io/target": "{}"}}})
    check("RBAC: the controller role patches a node", r.status == 200, r)
    r = ctl.get("/api/v1/namespaces/kube-system/pods")
    r2 = ctl.get("/api/v1/namespaces/default/pods")
    check("RBAC: a Role binds only in its namespace",
          r.status == 200 and r2.status == 403 and r2.json()["message"] ==
          'pods is forbidden: User "cplet-controller" cannot list resource "pods" in API group '
          '"" in the namespace "default"', (r, r2))
    L = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    r = ctl.post(L, {"metadata": {"name": "cplet-cluster"}, "spec": {"holderIdentity": "c"}})
    lease = r.json()
    lease["spec"]["holderIdentity"] = "c2"
    r2 = ctl.put(L + "/cplet-cluster", lease)
    other = ctl.get(L + "/kcm").json()
    r3 = ctl.put(L + "/kcm", other)
    check("RBAC: resourceNames limit update to the controller's own Lease",
          r.status == 201 and r2.status == 200 and r3.status == 403, (r, r2, r3))
    r = ctl.request("DELETE", NODE + "/n1")
    check("RBAC: a verb outside the rules (delete): 403", r.status == 403, r)
    r = nobody.get(NODE + "/n1")
    r2 = nobody.get("/version")
    r3 = nobody.get("/api")
    check("RBAC: a user without rules gets 403, but discovery and /version",
          r.status == 403 and r2.status == 200 and r3.status == 200, (r, r2, r3))
    r = nobody.post("/fake/knobs", {"delay": 5})
    check("the knob endpoint is for system:masters only", r.status == 403, r)


def test_watch(srv):
    admin, n1 = srv.admin(), srv.node("n1")
    W = NODE + "?watch=1&fieldSelector=metadata.name%3Dn1&allowWatchBookmarks=true"
    t0 = time.monotonic()
    st, events, _ = n1.watch(W + "&timeoutSeconds=3")
    first = next(events)
    check("watch without resourceVersion starts with ADDED for the current object",
          st == 200 and first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "n1",
          first)
    admin.patch(NODE + "/n2", {"metadata": {"annotations": {"other": "x"}}})
    r = admin.patch(NODE + "/n1", {"metadata": {"annotations": {"w": "1"}}})
    rest = collect(events, limit=8)
    elapsed = time.monotonic() - t0
    mods = [e for e in rest if e["type"] == "MODIFIED"]
    bms = [e for e in rest if e["type"] == "BOOKMARK"]
    check("the watch sees its node's change, not the other node's",
          len(mods) == 1 and mods[0]["object"]["metadata"]["annotations"]["w"] == "1" and
          mods[0]["object"]["metadata"]["resourceVersion"] == rv_of(r), rest)
    check("BOOKMARK events carry only metadata.resourceVersion",
          len(bms) >= 2 and all(b["object"]["kind"] == "Node" and
                                set(b["object"]["metadata"]) <= {"resourceVersion",
                                                                 "creationTimestamp"} and
                                "annotations" not in b["object"]["metadata"] for b in bms) and
          int(bms[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv_of(r)), rest)
    check("timeoutSeconds ends the stream", 2.5 < elapsed < 6 and
          not any(e["type"] == "_error" for e in rest), elapsed)

    rv = rv_of(admin.get(NODE + "/n1"))
    admin.patch(NODE + "/n1", {"metadata": {"annotations": {"w": "2"}}})
    admin.patch(NODE + "/n1", {"metadata": {"annotations": {"w": "3"}}})
    st, events, _ = n1.watch(W + "&timeoutSeconds=2&resourceVersion=" + rv)
    evs = collect(events, n=2)
    check("watch from a resourceVersion replays exactly the changes after it",
          [e["type"] for e in evs] == ["MODIFIED", "MODIFIED"] and
          [e["object"]["metadata"]["annotations"]["w"] for e in evs] == ["2", "3"], evs)

    # An object leaving the selection is DELETED for the watcher.
    st, events, _ = admin.watch(NODE + "?watch=1&timeoutSeconds=3&labelSelector=sel%3Dyes"
                                "&resourceVersion=" + rv_of(admin.get(NODE + "/n2")))
    admin.patch(NODE + "/n2", {"metadata": {"labels": {"sel": "yes"}}})
    admin.patch(NODE + "/n2", {"metadata": {"labels": {"sel": None}}})
    evs = collect(events, n=2)
    check("label selector watch: entering is ADDED, leaving is DELETED",
          [e["type"] for e in evs] == ["ADDED", "DELETED"], evs)

    st, events, _ = n1.watch(NODE + "/n1?watch=true&timeoutSeconds=1")
    evs = collect(events)
    st2, body, _ = n1.watch(NODE + "/n2?watch=true&timeoutSeconds=1")
    check("watch of a named object (GET nodes/NAME?watch=true) streams, and is authorized",
          st == 200 and [e["type"] for e in evs] == ["ADDED"] and st2 == 403, (evs, body))

    st, events, _ = admin.watch(NODE + "?watch=1&sendInitialEvents=true&allowWatchBookmarks="
                                "true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
    nodes = len(admin.get(NODE).json()["items"])
    evs = collect(events, n=nodes + 1)
    check("sendInitialEvents: ADDED for each node, then the initial-events-end BOOKMARK",
          [e["type"] for e in evs] == ["ADDED"] * nodes + ["BOOKMARK"] and
          evs[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end":
                                                             "true"}, evs)

    # A client that goes away from a quiet watch frees its server thread (no bookmarks, no
    # events, no timeout to wait for).
    probe = NODE + "?watch=1&labelSelector=probe%3Dgone&resourceVersion=" + \
        rv_of(admin.get(NODE + "/n1"))

    def open_probes():
        return [p for p in admin.get("/fake/knobs").json()["watches"] if "probe%3Dgone" in p]
    st, events, sock = admin.watch(probe)
    time.sleep(0.3)
    was_open = open_probes()
    sock.close()
    for _ in range(20):
        time.sleep(0.2)
        if not open_probes():
            break
    check("a watch whose client closed the connection is ended by the server",
          len(was_open) == 1 and not open_probes(), (was_open, open_probes()))

    big = str(int(rv_of(admin.get(NODE + "/n1"))) + 1000)
    st, body, _ = n1.watch(W + "&resourceVersion=" + big)
    check("watch from a future resourceVersion: 504 ResourceVersionTooLarge",
          st == 504 and body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge",
          body)


def test_gone(srv):
    admin, n1 = srv.admin(), srv.node("n1")
    old = rv_of(admin.get(NODE + "/n1"))
    admin.patch(NODE + "/n1", {"metadata": {"annotations": {"g": "1"}}})
    admin.knobs(compact=True)
    W = NODE + "?watch=1&fieldSelector=metadata.name%3Dn1&resourceVersion=" + old
    st, events, _ = n1.watch(W)
    evs = collect(events)
    check("410 as an ERROR event (Status Expired) in a 200 stream that then ends",
          st == 200 and len(evs) == 1 and evs[0]["type"] == "ERROR" and
          evs[0]["object"]["code"] == 410 and evs[0]["object"]["reason"] == "Expired" and
          evs[0]["object"]["message"] == "too old resource version: %s (%d)" % (
              old, srv.admin().get("/fake/knobs").json()["compacted"]), evs)
    admin.knobs(gone_mode="status")
    st, body, _ = n1.watch(W)
    check("410 as the HTTP status of the watch request (knob)",
          st == 410 and body["reason"] == "Expired" and body["code"] == 410, body)
    admin.knobs(gone_mode="event")
    cur = rv_of(admin.get(NODE + "/n1"))
    st, events, _ = n1.watch(W.replace("resourceVersion=" + old, "resourceVersion=" + cur)
                             + "&timeoutSeconds=1")
    evs = collect(events) if st == 200 else events
    check("a watch from the current resourceVersion after compaction works",
          st == 200 and not any(e["type"] in ("ERROR", "_error") for e in evs), evs)


def get_when_back(client, path):
    """GET path once the server accepts connections again (20 tries, 0.2 s apart); None if it
    never does."""
    for _ in range(20):
        try:
            return client.get(path)
        except OSError:
            time.sleep(0.2)
    return None


def test_knobs(srv):
    admin, n1 = srv.admin(), srv.node("n1")
    admin.knobs(fail={"count": 2, "code": 503, "match": "/api/v1/nodes/n1"})
    codes = [n1.get(NODE + "/n1").status for _ in range(3)]
    check("fail the next N requests with 503", codes == [503, 503, 200], codes)
    admin.knobs(fail={"count": 1, "code": 429, "retry_after": 2})
    r = n1.get(NODE + "/n1")
    check("429 with Retry-After and retryAfterSeconds",
          r.status == 429 and r.headers.get("Retry-After") == "2" and
          r.json()["reason"] == "TooManyRequests" and
          r.json()["details"]["retryAfterSeconds"] == 2, r)
    admin.knobs(fail={"count": 1, "code": 500, "match": "PATCH"})
    r1 = n1.patch(NODE + "/n1", {"metadata": {"annotations": {"k": "1"}}})
    r2 = n1.patch(NODE + "/n1", {"metadata": {"annotations": {"k": "1"}}})
    check("a failure matched to PATCH only", r1.status == 500 and r2.status == 200, (r1, r2))
    admin.knobs(delay=0.6)
    t0 = time.monotonic()
    n1.get(NODE + "/n1")
    slow = time.monotonic() - t0
    admin.knobs(delay=0)
    check("slow responses (delay knob)", slow >= 0.6, slow)

    # Drop all watches now: the open stream breaks without a clean end.
    st, events, _ = n1.watch(NODE + "?watch=1&fieldSelector=metadata.name%3Dn1")
    next(events)
    res = {}

    def reader():
        res["evs"] = collect(events, limit=5)
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.3)
    admin.knobs(drop_watches=True)
    t.join(5)
    evs = res.get("evs", [])
    check("drop_watches breaks open watch streams (no clean end of the stream)",
          not t.is_alive() and evs and evs[-1]["type"] == "_error", evs)

    # Outage: the port refuses connections, open streams are cut, then the same state.
    before = admin.get(NODE + "/n1").json()
    st, events, _ = n1.watch(NODE + "?watch=1&fieldSelector=metadata.name%3Dn1")
    next(events)
    admin.knobs(outage=1.5)
    time.sleep(0.3)
    refused = port_refuses(srv.port)
    evs = collect(events, limit=3)
    time.sleep(1.6)
    back = get_when_back(admin, NODE + "/n1")
    check("outage: connections refused, open watches cut",
          refused and evs and evs[-1]["type"] == "_error", (refused, evs))
    check("after the outage the server is back with the same state",
          back is not None and back.status == 200 and back.json() == before, back)

    # Per-listener outage: the other API server keeps serving.
    a1 = srv.client("kubernetes-admin", ["system:masters"], port=srv.ports[1])
    admin.knobs(outage=1.0, listener=1)
    time.sleep(0.3)
    check("an outage of one listener leaves the others serving",
          port_refuses(srv.ports[1]) and admin.get(NODE + "/n1").status == 200, srv.ports)
    time.sleep(1.2)
    back1 = get_when_back(a1, NODE + "/n1")
    ok = back1 is not None and back1.status == 200
    check("the listener comes back", ok)
    admin.knobs(outage=None, listener=1)
    time.sleep(0.3)
    down = port_refuses(srv.ports[1])
    admin.knobs(outage_end=True, listener=1)
    back1 = get_when_back(a1, NODE + "/n1")
    ok = back1 is not None and back1.status == 200
    check("an indefinite outage of one listener, ended through another", down and ok)
    admin.knobs(git_version="v1.32.3", listener=1)
    v1 = a1.get("/version").json()
    v0 = admin.get("/version").json()
    check("per-listener /version; 1.32 reports no emulation fields",
          v1["gitVersion"] == "v1.32.3" and "emulationMinor" not in v1 and
          v0["gitVersion"] == "v1.34.0", (v0, v1))
    admin.knobs(ready=False)
    r = srv.client(token="admintoken").get("/readyz")
    admin.knobs(ready=True)
    check("/readyz fails while the ready knob is off", r.status == 500, r)
    r = admin.get("/livez")
    check("/livez says ok", r.status == 200 and r.body == b"ok", r)


def kubectl(kc, *args, input=None):
    cache = os.path.join(TMP, "kubectl-cache")
    p = subprocess.run([KUBECTL, "--kubeconfig", kc, "--cache-dir", cache,
                        "--request-timeout", "10s"] + list(args), input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_kubectl(srv):
    names = ["kubectl get node -o json", "kubectl annotate node --overwrite",
             "kubectl get events -A", "kubectl get pods -n kube-system",
             "kubectl as a node: its own node, 403 for another",
             "kubectl with -data (base64) kubeconfig",
             "knobs set with kubectl create --raw (a chunked body from stdin)"]
    if not KUBECTL:
        for n in names:
            skip(n, "kubectl not installed")
        return
    kc = srv.kubeconfig(os.path.join(TMP, "admin.kubeconfig"), "kubernetes-admin",
                        ["system:masters"])
    rc, out, err = kubectl(kc, "get", "node", "n1", "-o", "json")
    ok = rc == 0 and json.loads(out)["metadata"]["name"] == "n1"
    check(names[0], ok, err)
    target = '{"id":"t1","generation":1,"binaryVersion":"1.35.0"}'
    rc, out, err = kubectl(kc, "annotate", "node", "n1", "cplet.io/target=" + target,
                           "--overwrite")
    got = srv.admin().get(NODE + "/n1").json()["metadata"]["annotations"].get("cplet.io/target")
    check(names[1], rc == 0 and got == target, (rc, out, err, got))
    rc, out, err = kubectl(kc, "get", "events", "-A")
    check(names[2], rc == 0 and "CpletPlanStarted" in out and "node/n1" in out, out + err)
    rc, out, err = kubectl(kc, "get", "pods", "-n", "kube-system")
    check(names[3], rc == 0 and "kube-apiserver-n1" in out and "Running" in out, out + err)
    nkc = srv.kubeconfig(os.path.join(TMP, "n1.kubeconfig"), "system:node:n1",
                         ["system:nodes"])
    rc1, out1, err1 = kubectl(nkc, "get", "node", "n1", "-o", "jsonpath={.metadata.name}")
    rc2, out2, err2 = kubectl(nkc, "get", "node", "n2")
    check(names[4], rc1 == 0 and out1 == "n1" and rc2 != 0 and
          'nodes "n2" is forbidden' in err2, (out1, err1, err2))
    rc, out, err = kubectl(kc, "create", "--raw", "/fake/knobs", "-f", "-",
                           input='{"bookmark_interval": 0.7}')
    got = srv.admin().get("/fake/knobs").json()["bookmark_interval"]
    srv.admin().knobs(bookmark_interval=0.8)
    check(names[6], rc == 0 and got == 0.7, (rc, out, err, got))
    ekc = srv.kubeconfig(os.path.join(TMP, "embed.kubeconfig"), "kubernetes-admin",
                         ["system:masters"], embed=True)
    rc, out, err = kubectl(ekc, "get", "nodes")
    check(names[5], rc == 0 and "n1" in out and "n2" in out, out + err)


def test_restart(srv):
    """The state survives a restart of the process (the fake's etcd); the watch window
    does not, so an older resourceVersion is 410, as after a real restart."""
    admin = srv.admin()
    before = admin.get(NODE + "/n1").json()
    code = srv.stop()
    check("SIGTERM ends the server with status 0", code == 0, code)
    srv.start()
    admin = srv.admin()
    after = admin.get(NODE + "/n1").json()
    check("a restarted server keeps objects and resourceVersions", after == before,
          (before, after))
    st, events, _ = srv.node("n1").watch(
        NODE + "?watch=1&fieldSelector=metadata.name%3Dn1&resourceVersion=2")
    evs = collect(events)
    check("after a restart an old resourceVersion is 410", evs and evs[0]["type"] == "ERROR"
          and evs[0]["object"]["code"] == 410, evs)
    r = admin.patch(NODE + "/n1", {"metadata": {"annotations": {"after": "restart"}}})
    check("writes after a restart continue the resourceVersion sequence",
          int(rv_of(r)) > int(before["metadata"]["resourceVersion"]), r)


OBJECTS_YAML = """
apiVersion: v1
kind: Node
metadata: {name: cp1, labels: {node-role.kubernetes.io/control-plane: ""}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: kube-controller-manager, namespace: kube-system}
spec: {holderIdentity: cp1_abc, leaseDurationSeconds: 15}
"""


def test_second_server(_srv):
    """Start-time options: --objects, --anonymous-auth, --gone-mode status; a rotated
    client certificate (same CN, new key) is the same identity."""
    state = os.path.join(TMP, "state2")
    os.makedirs(state)
    objs = os.path.join(TMP, "objects.yaml")
    with open(objs, "w") as f:
        f.write(OBJECTS_YAML)
    srv = FakeServer(state, ["--objects", objs, "--anonymous-auth", "--gone-mode", "status",
                             "--git-version", "v1.35.1"])
    try:
        srv.start()
        admin = srv.admin()
        r = admin.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                      "kube-controller-manager")
        r2 = admin.get(NODE + "/cp1")
        check("--objects creates the objects at start", r.status == 200 and
              r.json()["spec"]["holderIdentity"] == "cp1_abc" and r2.status == 200, (r, r2))
        anon = srv.client()
        r1, r2, r3 = anon.get("/healthz"), anon.get("/version"), anon.get(NODE + "/cp1")
        check("--anonymous-auth: health and /version readable, nodes 403 for "
              "system:anonymous",
              r1.status == 200 and r2.status == 200 and r2.json()["minor"] == "35" and
              r3.status == 403 and 'User "system:anonymous"' in r3.json()["message"],
              (r1, r2, r3))
        old = rv_of(r2 := admin.get(NODE + "/cp1"))
        admin.patch(NODE + "/cp1", {"metadata": {"annotations": {"x": "1"}}})
        admin.knobs(compact=True)
        st, body, _ = admin.watch(NODE + "?watch=1&resourceVersion=" + old)
        check("--gone-mode status: an expired watch is HTTP 410", st == 410 and
              body["reason"] == "Expired", body)
        crt, key = srv.pki.client_cert("system:node:cp1", ["system:nodes"], name="cp1-rotated")
        crt0, _ = srv.pki.client_cert("system:node:cp1", ["system:nodes"])
        from apiclient import Client
        r = Client(srv.port, srv.pki.ca_cert, crt, key).get(NODE + "/cp1")
        check("a rotated client certificate for the same CN is the same node",
              crt != crt0 and r.status == 200, r)
    finally:
        code = srv.stop()
    check("second server stopped with status 0", code == 0, code)


def main():
    t0 = time.monotonic()
    state = os.path.join(TMP, "state")
    os.makedirs(state)
    tokens = os.path.join(TMP, "tokens.csv")
    with open(tokens, "w") as f:
        f.write('admintoken,token-admin,uid1,"system:masters"\n')
    rbac = os.path.join(TMP, "rbac.yaml")
    with open(rbac, "w") as f:
        f.write(RBAC_YAML)
    srv = FakeServer(state, ["--port", "0", "--node", "n1", "--node", "n2",
                             "--bookmark-interval", "0.8", "--token-auth-file", tokens,
                             "--rbac", rbac, "--extra-listeners", "1",
                             "--git-version", "v1.34.0", "--emulated-version", "1.33"])
    try:
        srv.start()
        for t in (test_authn, test_node_authorizer, test_patches_and_conflicts,
                  test_events_leases_pods, test_rbac, test_watch, test_gone, test_knobs,
                  test_kubectl, test_restart, test_second_server):
            t1 = time.monotonic()
            try:
                t(srv)
                _notes.append("%s: %.1f s" % (t.__name__, time.monotonic() - t1))
            except Exception:
                check(t.__name__ + " ran to the end", False, traceback.format_exc())
    finally:
        srv.stop()
    _notes.append("total: %.1f s" % (time.monotonic() - t0))
    ok = emit_tap()
    for n in _notes:
        print("# " + n)
    if ok:
        shutil.rmtree(TMP, ignore_errors=True)
    else:
        print("# state kept in " + TMP)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
