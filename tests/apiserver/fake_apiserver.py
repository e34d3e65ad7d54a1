#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A fake kube-apiserver, faithful where cplet depends on the real one (see README.md).

    python3 fake_apiserver.py --port 0 --state-dir DIR [--pki DIR] [--node NAME ...]

Prints the port when ready (and writes DIR/port); SIGTERM ends it. TLS with client
certificate identities (CN = user, O = groups) and static bearer tokens; system:masters is
admin, system:node:<name> in system:nodes goes through the node authorizer and
NodeRestriction, anyone else through RBAC objects loaded with --rbac. Nodes, Events, Pods,
Namespaces and coordination.k8s.io Leases; a global resourceVersion; watch streams with
bookmarks, timeouts and 410 Gone; fault knobs (POST /fake/knobs as system:masters).
"""

import argparse
import copy
import datetime
import json
import os
import queue
import random
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

MAX_BODY = 3 * 1024 * 1024           # kube-apiserver's request body limit
MAX_ANNOTATIONS = 256 * 1024         # TotalAnnotationSizeLimitB
NODE_LEASE_NS = "kube-node-lease"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------
# Resources served
# ------------------------------------------------------------------------------------------

class Kind:
    def __init__(self, group, version, resource, kind, namespaced, short=(), singular=None,
                 fields=("metadata.name",), subresources=()):
        self.group, self.version, self.resource, self.kind = group, version, resource, kind
        self.namespaced = namespaced
        self.short = list(short)
        self.singular = singular or kind.lower()
        self.fields = set(fields) | ({"metadata.namespace"} if namespaced else set())
        self.subresources = subresources

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def qualified(self):
        # schema.GroupResource.String(): "nodes", "leases.coordination.k8s.io"
        return self.resource + "." + self.group if self.group else self.resource


KINDS = [
    Kind("", "v1", "nodes", "Node", False, short=["no"], subresources=("status",)),
    Kind("", "v1", "namespaces", "Namespace", False, short=["ns"],
         fields=("metadata.name", "status.phase")),
    Kind("", "v1", "pods", "Pod", True, short=["po"], subresources=("status",),
         fields=("metadata.name", "spec.nodeName", "status.phase", "spec.restartPolicy",
                 "spec.schedulerName", "spec.serviceAccountName", "status.podIP",
                 "status.nominatedNodeName", "spec.hostNetwork")),
    Kind("", "v1", "events", "Event", True, short=["ev"],
         fields=("metadata.name", "involvedObject.kind", "involvedObject.namespace",
                 "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                 "reportingComponent", "source", "type")),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", True),
]
KIND_BY_PATH = {(k.group, k.version, k.resource): k for k in KINDS}
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def field_value(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, dict) and path == "source":     # events: source.component
        return cur.get("component", "")
    return str(cur)


# ------------------------------------------------------------------------------------------
# Errors as Status objects
# ------------------------------------------------------------------------------------------

class APIError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details, headers or {}

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


def _details(kind, name):
    d = {"kind": kind.resource}
    if name:
        d = {"name": name, "kind": kind.resource}
    if kind.group:
        d["group"] = kind.group
    return d


def err_not_found(kind, name):
    return APIError(404, "NotFound", '%s "%s" not found' % (kind.qualified, name),
                    _details(kind, name))


def err_conflict(kind, name):
    return APIError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                    % (kind.qualified, name), _details(kind, name))


def err_exists(kind, name):
    return APIError(409, "AlreadyExists", '%s "%s" already exists' % (kind.qualified, name),
                    _details(kind, name))


def err_bad_request(msg):
    return APIError(400, "BadRequest", msg)


def err_invalid(kind, name, field, detail):
    d = _details(kind, name)
    d["kind"] = kind.kind
    d["causes"] = [{"reason": "FieldValueInvalid", "message": detail, "field": field}]
    return APIError(422, "Invalid", '%s "%s" is invalid: %s: %s' % (kind.kind, name, field,
                                                                     detail), d)


def err_forbidden(attrs, reason):
    """apierrors.NewForbidden(gr, name, forbiddenMessage(attrs) [+ ": " + reason]), as
    the authorization filter writes it."""
    user = attrs.user.name
    if not attrs.resource_request:
        msg = 'User "%s" cannot %s path "%s"' % (user, attrs.verb, attrs.path)
        full = "forbidden: " + msg
        if reason:
            full += ": " + reason
        return APIError(403, "Forbidden", full, {})
    res = attrs.resource + ("/" + attrs.subresource if attrs.subresource else "")
    if attrs.namespace:
        msg = 'User "%s" cannot %s resource "%s" in API group "%s" in the namespace "%s"' % (
            user, attrs.verb, res, attrs.group, attrs.namespace)
    else:
        msg = 'User "%s" cannot %s resource "%s" in API group "%s" at the cluster scope' % (
            user, attrs.verb, res, attrs.group)
    if reason:
        msg += ": " + reason
    return _forbidden(attrs, msg)


def _forbidden(attrs, msg):
    qualified = attrs.resource + ("." + attrs.group if attrs.group else "")
    if attrs.name:
        text = '%s "%s" is forbidden: %s' % (qualified, attrs.name, msg)
        details = {"name": attrs.name, "kind": attrs.resource}
    else:
        text = "%s is forbidden: %s" % (qualified, msg)
        details = {"kind": attrs.resource}
    if attrs.group:
        details["group"] = attrs.group
    return APIError(403, "Forbidden", text, details)


def err_admission_forbidden(attrs, msg):
    """admission.NewForbidden: the same Status, the admission plugin's reason as message."""
    return _forbidden(attrs, msg)


def err_gone(requested, oldest):
    return APIError(410, "Expired", "too old resource version: %s (%s)" % (requested, oldest))


# ------------------------------------------------------------------------------------------
# Selectors (k8s.io/apimachinery labels and fields)
# ------------------------------------------------------------------------------------------

def _split_top(s):
    parts, depth, cur = [], 0, ""
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


LABEL_RE = re.compile(r"^(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")


def parse_label_selector(s):
    reqs = []
    for term in _split_top(s or ""):
        m = re.match(r"^(\S+?)\s+(in|notin)\s*\((.*)\)$", term)
        if m:
            vals = [v.strip() for v in m.group(3).split(",") if v.strip()]
            reqs.append((m.group(1), m.group(2), vals))
            continue
        m = re.match(r"^([^!=]+?)\s*(==|!=|=)\s*(.*)$", term)
        if m:
            op = {"==": "=", "=": "=", "!=": "!="}[m.group(2)]
            reqs.append((m.group(1).strip(), op, [m.group(3).strip()]))
        elif term.startswith("!"):
            reqs.append((term[1:].strip(), "!exists", []))
        else:
            reqs.append((term, "exists", []))
    for key, _, _ in reqs:
        if not LABEL_RE.match(key):
            raise err_bad_request("unable to parse requirement: invalid label key \"%s\"" % key)
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "=" and not (has and v == vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and not (has and v in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!exists" and has:
            return False
    return True


def parse_field_selector(s, kind):
    reqs = []
    for term in _split_top(s or ""):
        m = re.match(r"^([^!=]+?)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise err_bad_request("invalid selector: '%s'; can't understand '%s'" % (s, term))
        field, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field not in kind.fields:
            raise err_bad_request('field label not supported: %s' % field)
        reqs.append((field, "!=" if op == "!=" else "=", val))
    return reqs


def fields_match(reqs, obj):
    for field, op, val in reqs:
        have = field_value(obj, field)
        if (op == "=") != (have == val):
            return False
    return True


def exact_name(field_reqs):
    """fields.Selector.RequiresExactMatch("metadata.name")."""
    for field, op, val in field_reqs:
        if field == "metadata.name" and op == "=":
            return val
    return ""


# ------------------------------------------------------------------------------------------
# Patches
# ------------------------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# patchMergeKey of the lists cplet's peers touch (k8s.io/api struct tags); other lists
# are replaced, as for a field without a patch strategy.
SMP_MERGE_KEYS = {
    "conditions": "type", "containers": "name", "initContainers": "name",
    "containerStatuses": "name", "initContainerStatuses": "name", "volumes": "name",
    "env": "name", "ownerReferences": "uid", "addresses": "type", "ports": "containerPort",
    "volumeMounts": "mountPath", "images": None,
}


def strategic_merge_patch(target, patch, key=None):
    """Strategic merge patch, for maps (the same as a merge patch), lists with a known
    patchMergeKey, and the $patch: replace|delete directives on maps."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in copy.deepcopy(patch).items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list) and SMP_MERGE_KEYS.get(k) and isinstance(result.get(k), list):
            result[k] = _smp_list(result[k], v, SMP_MERGE_KEYS[k])
        else:
            merged = strategic_merge_patch(result.get(k), v, k)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
    return result


def _smp_list(cur, patch, mkey):
    out = copy.deepcopy(cur)
    for item in patch:
        if not isinstance(item, dict) or mkey not in item:
            out.append(copy.deepcopy(item))
            continue
        idx = next((i for i, e in enumerate(out)
                    if isinstance(e, dict) and e.get(mkey) == item[mkey]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append({k: v for k, v in copy.deepcopy(item).items() if k != "$patch"})
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise err_bad_request("json patch path must start with '/': %s" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch."""
    if not isinstance(ops, list):
        raise err_bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def parent(parts):
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def get(parts):
        cur = doc
        for p in parts:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def add(parts, value):
        par = parent(parts)
        last = parts[-1]
        if isinstance(par, list):
            par.insert(len(par) if last == "-" else int(last), value)
        else:
            par[last] = value

    def remove(parts):
        par = parent(parts)
        if isinstance(par, list):
            return par.pop(int(parts[-1]))
        return par.pop(parts[-1])

    for op in ops:
        try:
            kind, parts = op["op"], _pointer(op["path"])
            if kind == "add":
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(parts)
            elif kind == "replace":
                remove(parts)
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "move":
                add(parts, remove(_pointer(op["from"])))
            elif kind == "copy":
                add(parts, copy.deepcopy(get(_pointer(op["from"]))))
            elif kind == "test":
                if get(parts) != op["value"]:
                    raise APIError(422, "Invalid", "the server rejected our request due to "
                                   "an error in our request")
            else:
                raise err_bad_request("Unexpected kind: %s" % kind)
        except APIError:
            raise
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise APIError(422, "Invalid", "the server rejected our request due to an error in "
                           "our request: %s %r" % (type(e).__name__, e))
    return doc


# ------------------------------------------------------------------------------------------
# Authentication and authorization
# ------------------------------------------------------------------------------------------

class User:
    def __init__(self, name, groups):
        self.name, self.groups = name, list(groups)

    def node_name(self):
        """nodeidentifier.NodeIdentity: (name, is_node)."""
        if "system:nodes" not in self.groups or not self.name.startswith("system:node:"):
            return "", False
        return self.name[len("system:node:"):], True

    def __repr__(self):
        return "%s %s" % (self.name, self.groups)


class Attrs:
    """authorizer.Attributes of a request (k8s.io/apiserver request.RequestInfo)."""

    def __init__(self, user, verb, path, resource_request, group="", version="", resource="",
                 subresource="", namespace="", name="", field_reqs=()):
        self.user, self.verb, self.path = user, verb, path
        self.resource_request = resource_request
        self.group, self.version, self.resource = group, version, resource
        self.subresource, self.namespace, self.name = subresource, namespace, name
        self.field_reqs = list(field_reqs)


def load_tokens(path):
    """kube-apiserver --token-auth-file: token,user,uid,"group1,group2"."""
    tokens = {}
    if not path:
        return tokens
    import csv
    with open(path) as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError("%s: token line needs token,user,uid: %r" % (path, row))
            groups = [g.strip() for g in row[3].split(",")] if len(row) > 3 and row[3] else []
            tokens[row[0].strip()] = User(row[1].strip(), groups)
    return tokens


class RBAC:
    """Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1)
    evaluated as plugin/pkg/auth/authorizer/rbac does (no aggregation, no escalation
    checks: the objects are configuration, not API resources here)."""

    def __init__(self):
        self.roles, self.cluster_roles, self.bindings = {}, {}, []

    def load(self, path):
        import yaml
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            items = d.get("items", []) if d.get("kind", "").endswith("List") else [d]
            for o in items:
                self._add(path, o)

    def _add(self, path, o):
        kind, meta = o.get("kind"), o.get("metadata") or {}
        name = meta.get("name")
        if kind == "ClusterRole":
            self.cluster_roles[name] = o.get("rules") or []
        elif kind == "Role":
            self.roles[(meta.get("namespace", "default"), name)] = o.get("rules") or []
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            ns = meta.get("namespace", "default") if kind == "RoleBinding" else ""
            self.bindings.append((ns, o.get("roleRef") or {}, o.get("subjects") or []))
        else:
            raise ValueError("%s: unsupported kind %r in an RBAC file" % (path, kind))

    @staticmethod
    def _subject_matches(s, user):
        k, n = s.get("kind"), s.get("name")
        if k == "User":
            return n == user.name
        if k == "Group":
            return n in user.groups
        if k == "ServiceAccount":
            return user.name == "system:serviceaccount:%s:%s" % (s.get("namespace", ""), n)
        return False

    @staticmethod
    def rule_allows(rule, a):
        verbs = rule.get("verbs") or []
        if "*" not in verbs and a.verb not in verbs:
            return False
        if not a.resource_request:
            urls = rule.get("nonResourceURLs") or []
            return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1]))
                       for u in urls)
        groups = rule.get("apiGroups") or []
        if "*" not in groups and a.group not in groups:
            return False
        combined = a.resource + ("/" + a.subresource if a.subresource else "")
        resources = rule.get("resources") or []
        if not any(r == "*" or r == combined or
                   (a.subresource and r == "*/" + a.subresource) for r in resources):
            return False
        names = rule.get("resourceNames") or []
        return not names or a.name in names

    def allows(self, a):
        for ns, ref, subjects in self.bindings:
            if ns and ns != a.namespace:
                continue
            if not any(self._subject_matches(s, a.user) for s in subjects):
                continue
            if ref.get("kind") == "ClusterRole":
                rules = self.cluster_roles.get(ref.get("name"), [])
            else:
                rules = self.roles.get((ns, ref.get("name")), [])
            if any(self.rule_allows(r, a) for r in rules):
                return True
        return False


# bootstrappolicy.NodeRules(), the parts for resources the fake serves (nodes and pods
# are subdivided by the node authorizer before these apply).
NODE_RULES = [
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "update", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"],
     "verbs": ["create", "update", "patch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]

# system:public-info-viewer (bound to system:authenticated and system:unauthenticated) and
# system:discovery (system:authenticated only).
INFO_PATHS = ("/version", "/healthz", "/livez", "/readyz")
DISCOVERY_PATHS = ("/api", "/apis", "/openapi")


def _under(path, prefixes):
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def node_authorize(node, a, store):
    """plugin/pkg/auth/authorizer/node (AuthorizeNodeWithSelectors on, the 1.32+ default):
    returns (allowed, reason)."""
    if a.resource_request and a.group == "" and a.resource == "nodes":
        if a.subresource == "":
            if a.verb in ("create", "update", "patch"):
                return True, ""       # NodeRestriction limits these to its own Node
            if a.verb in ("get", "list", "watch"):
                if a.name == node:
                    return True, ""
                if a.name == "":
                    return False, "node '%s' cannot read all nodes, only its own Node object" \
                        % node
                return False, "node '%s' cannot read '%s', only its own Node object" % (
                    node, a.name)
        elif a.subresource == "status" and a.verb in ("update", "patch"):
            return True, ""
        return False, ""
    if a.resource_request and a.group == "" and a.resource == "pods":
        if a.subresource == "":
            if a.verb == "get":
                return _node_pod_related(node, a, store)
            if a.verb in ("list", "watch"):
                for f, op, v in a.field_reqs:
                    if f == "spec.nodeName" and op == "=" and v == node:
                        return True, ""
                if a.name:
                    return _node_pod_related(node, a, store)
                return False, "can only list/watch pods with spec.nodeName field selector"
            if a.verb in ("create", "delete"):
                return True, ""
        elif a.subresource == "status" and a.verb in ("update", "patch"):
            return True, ""
        return False, ""
    if a.resource_request and a.group == "coordination.k8s.io" and a.resource == "leases":
        if a.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if a.namespace != NODE_LEASE_NS:
            return False, 'can only access leases in the "%s" system namespace' % NODE_LEASE_NS
        if a.verb != "create" and a.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""
    if any(RBAC.rule_allows(r, a) for r in NODE_RULES):
        return True, ""
    return False, ""


def _node_pod_related(node, a, store):
    if not a.name:
        return False, "No Object name found"
    pod = store.peek(KIND_BY_PATH[("", "v1", "pods")], a.namespace, a.name)
    if pod is not None and pod.get("spec", {}).get("nodeName") == node:
        return True, ""
    return False, "no relationship found between node '%s' and this object" % node


# ------------------------------------------------------------------------------------------
# NodeRestriction admission
# ------------------------------------------------------------------------------------------

KUBELET_LABELS = {
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "kubernetes.io/os", "kubernetes.io/arch",
}
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _label_ns(key):
    return key.split("/", 1)[0] if "/" in key else ""


def _is_kubelet_label(key):
    if key in KUBELET_LABELS:
        return True
    ns = _label_ns(key)
    return any(ns == n or ns.endswith("." + n) for n in KUBELET_LABEL_NAMESPACES)


def _forbidden_labels(old, new):
    old, new = old or {}, new or {}
    modified = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    bad = set()
    for k in modified:
        ns = _label_ns(k)
        if ns == "node-restriction.kubernetes.io" or ns.endswith(".node-restriction.kubernetes.io"):
            bad.add(k)
        kube = ns in ("kubernetes.io", "k8s.io") or ns.endswith(".kubernetes.io") or \
            ns.endswith(".k8s.io")
        if kube and not _is_kubelet_label(k):
            bad.add(k)
    return sorted(bad)


def node_restriction(node, a, old, new, store):
    """plugin/pkg/admission/noderestriction for the resources served; raises APIError."""
    if a.resource == "nodes" and a.group == "":
        if a.name != node:
            raise err_admission_forbidden(a, 'node "%s" is not allowed to modify node "%s"'
                                          % (node, a.name))
        if a.verb == "create":
            bad = _forbidden_labels(None, new.get("metadata", {}).get("labels"))
            if bad:
                raise err_admission_forbidden(a, 'node "%s" is not allowed to set the '
                                              "following labels: %s" % (node, ", ".join(bad)))
        elif old is not None and new is not None:
            if (old.get("spec") or {}).get("taints") != (new.get("spec") or {}).get("taints"):
                raise err_admission_forbidden(a, 'node "%s" is not allowed to modify taints'
                                              % node)
            bad = _forbidden_labels(old.get("metadata", {}).get("labels"),
                                    new.get("metadata", {}).get("labels"))
            if bad:
                raise err_admission_forbidden(a, "is not allowed to modify labels: %s"
                                              % ", ".join(bad))
    elif a.resource == "pods" and a.group == "":
        if a.subresource == "status":
            if old is None or old.get("spec", {}).get("nodeName") != node:
                raise err_admission_forbidden(a, 'node "%s" can only update pod status for '
                                              "pods with spec.nodeName set to itself" % node)
            if old.get("metadata", {}).get("labels") != new.get("metadata", {}).get("labels"):
                raise err_admission_forbidden(a, 'node "%s" cannot update labels through pod '
                                              "status" % node)
        elif a.verb == "create":
            _admit_mirror_pod(node, a, new, store)
        elif a.verb == "delete":
            if old is not None and old.get("spec", {}).get("nodeName") != node:
                raise err_admission_forbidden(a, 'node "%s" can only delete pods with '
                                              "spec.nodeName set to itself" % node)
        else:
            raise err_admission_forbidden(a, 'unexpected operation "%s", node "%s" can only '
                                          "create and delete mirror pods"
                                          % (a.verb.upper() if a.verb != "patch" else "UPDATE",
                                             node))
    elif a.resource == "leases" and a.group == "coordination.k8s.io":
        if a.namespace != NODE_LEASE_NS:
            raise err_admission_forbidden(a, 'can only access leases in the "%s" system '
                                          "namespace" % NODE_LEASE_NS)
        name = new.get("metadata", {}).get("name") if a.verb == "create" else a.name
        if name != node:
            raise err_admission_forbidden(a, "can only access node lease with the same name "
                                          "as the requesting node")


def _admit_mirror_pod(node, a, pod, store):
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if "kubernetes.io/config.mirror" not in (meta.get("annotations") or {}):
        raise err_admission_forbidden(a, 'pod does not have "kubernetes.io/config.mirror" '
                                      'annotation, node "%s" can only create mirror pods' % node)
    if spec.get("nodeName") != node:
        raise err_admission_forbidden(a, 'node "%s" can only create pods with spec.nodeName '
                                      "set to itself" % node)
    owners = meta.get("ownerReferences") or []
    if len(owners) > 1:
        raise err_admission_forbidden(a, 'node "%s" can only create pods with a single owner '
                                      "reference set to itself" % node)
    if len(owners) == 0:
        raise err_admission_forbidden(a, 'node "%s" can only create pods with an owner '
                                      "reference set to itself" % node)
    o = owners[0]
    if o.get("apiVersion") != "v1" or o.get("kind") != "Node" or o.get("name") != node:
        raise err_admission_forbidden(a, 'node "%s" can only create pods with an owner '
                                      "reference set to itself" % node)
    if not o.get("controller"):
        raise err_admission_forbidden(a, 'node "%s" can only create pods with a controller '
                                      "owner reference set to itself" % node)
    if o.get("blockOwnerDeletion"):
        raise err_admission_forbidden(a, 'node "%s" must not set blockOwnerDeletion on an '
                                      "owner reference" % node)
    n = store.peek(KIND_BY_PATH[("", "v1", "nodes")], "", node)
    if n is None:
        raise err_not_found(KIND_BY_PATH[("", "v1", "nodes")], node)
    if o.get("uid") != n["metadata"]["uid"]:
        raise err_admission_forbidden(a, "node %s UID mismatch: expected %s got %s"
                                      % (node, o.get("uid"), n["metadata"]["uid"]))
    if spec.get("serviceAccountName"):
        raise err_admission_forbidden(a, 'node "%s" can not create pods that reference a '
                                      "service account" % node)
    # the pod may reference no other API object (podutil.VisitPodSecretNames and
    # VisitPodConfigmapNames over all containers, projected cluster trust bundles, claims)
    refs = _pod_references(spec)
    for what in ("secrets", "configmaps", "clustertrustbundles", "persistentvolumeclaims"):
        if what in refs:
            raise err_admission_forbidden(a, 'node "%s" can not create pods that reference %s'
                                          % (node, what))


def _pod_references(spec):
    refs = set()
    if spec.get("imagePullSecrets"):
        refs.add("secrets")
    containers = [c for k in ("initContainers", "containers", "ephemeralContainers")
                  for c in (spec.get(k) or []) if isinstance(c, dict)]
    for c in containers:
        for e in c.get("envFrom") or []:
            if (e or {}).get("secretRef"):
                refs.add("secrets")
            if (e or {}).get("configMapRef"):
                refs.add("configmaps")
        for e in c.get("env") or []:
            vf = (e or {}).get("valueFrom") or {}
            if vf.get("secretKeyRef"):
                refs.add("secrets")
            if vf.get("configMapKeyRef"):
                refs.add("configmaps")
    for v in spec.get("volumes") or []:
        v = v or {}
        if v.get("secret"):
            refs.add("secrets")
        if v.get("configMap"):
            refs.add("configmaps")
        if v.get("persistentVolumeClaim"):
            refs.add("persistentvolumeclaims")
        for src in ((v.get("projected") or {}).get("sources") or []):
            if (src or {}).get("secret"):
                refs.add("secrets")
            if (src or {}).get("configMap"):
                refs.add("configmaps")
            if (src or {}).get("clusterTrustBundle"):
                refs.add("clustertrustbundles")
        for key in ("azureFile", "cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO",
                    "storageos", "csi"):
            sv = v.get(key) or {}
            if sv.get("secretRef") or sv.get("secretName") or sv.get("nodePublishSecretRef") \
                    or sv.get("chapAuthDiscovery") and sv.get("secretRef"):
                refs.add("secrets")
    return refs


# ------------------------------------------------------------------------------------------
# The store: objects, one resourceVersion counter, a window of history for watches
# ------------------------------------------------------------------------------------------

class Watcher:
    def __init__(self, kind, namespace, label_reqs, field_reqs):
        self.kind, self.namespace = kind, namespace
        self.label_reqs, self.field_reqs = label_reqs, field_reqs
        self.q = queue.Queue()
        self.path = ""

    def matches(self, obj):
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return labels_match(self.label_reqs, meta.get("labels")) and \
            fields_match(self.field_reqs, obj)

    def translate(self, etype, old, new):
        """The event this watcher sees: an object leaving the selection is DELETED, one
        entering it is ADDED (the cacher's behaviour)."""
        was, now = self.matches(old), self.matches(new)
        if etype == "DELETED":
            return ("DELETED", old) if was else None
        if now and was:
            return ("MODIFIED", new)
        if now:
            return ("ADDED", new)
        if was:
            return ("DELETED", new)
        return None


class Store:
    def __init__(self, state_dir, max_history=5000):
        self.lock = threading.RLock()
        self.objects = {k.resource: {} for k in KINDS}     # resource -> {(ns, name): obj}
        self.rv = 1
        self.history = []            # (rv, kind, type, old, new)
        self.compacted = 0           # a watch from an RV below this gets 410
        self.max_history = max_history
        self.watchers = set()
        self.state_dir = state_dir
        self.state_path = os.path.join(state_dir, "state.json") if state_dir else None

    # -- persistence (the fake's "etcd": a restart of the process keeps the state)
    def load(self):
        if not self.state_path or not os.path.exists(self.state_path):
            return False
        with open(self.state_path) as f:
            st = json.load(f)
        self.rv = st["resourceVersion"]
        self.compacted = self.rv     # history does not survive a restart, as in the cacher
        for res, objs in st["objects"].items():
            for o in objs:
                m = o["metadata"]
                self.objects[res][(m.get("namespace", ""), m["name"])] = o
        return True

    def save_locked(self):
        if not self.state_path:
            return
        st = {"resourceVersion": self.rv,
              "objects": {r: list(v.values()) for r, v in self.objects.items()}}
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.rename(tmp, self.state_path)

    # -- reads
    def peek(self, kind, ns, name):
        with self.lock:
            o = self.objects[kind.resource].get((ns if kind.namespaced else "", name))
            return copy.deepcopy(o) if o is not None else None

    def get(self, kind, ns, name):
        o = self.peek(kind, ns, name)
        if o is None:
            raise err_not_found(kind, name)
        return o

    def list(self, kind, ns, label_reqs, field_reqs):
        with self.lock:
            w = Watcher(kind, ns, label_reqs, field_reqs)
            items = [copy.deepcopy(o) for _, o in sorted(self.objects[kind.resource].items())
                     if w.matches(o)]
            return items, str(self.rv)

    # -- writes
    def _bump_locked(self):
        self.rv += 1
        return self.rv

    def _record_locked(self, kind, etype, old, new):
        rv = self.rv
        self.history.append((rv, kind, etype, old, new))
        if len(self.history) > self.max_history:
            drop = self.history[:len(self.history) - self.max_history]
            self.history = self.history[len(drop):]
            self.compacted = max(self.compacted, drop[-1][0])
        for w in list(self.watchers):
            if w.kind is kind:
                ev = w.translate(etype, old, new)
                if ev:
                    w.q.put((ev[0], copy.deepcopy(ev[1])))
        self.save_locked()

    def create(self, kind, obj):
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
            name = meta.get("name")
            if not name:
                raise err_invalid(kind, "", "metadata.name", "Required value: name or "
                                  "generateName is required")
            ns = meta.get("namespace", "") if kind.namespaced else ""
            key = (ns, name)
            if key in self.objects[kind.resource]:
                raise err_exists(kind, name)
            if kind.namespaced and ("", ns) not in self.objects["namespaces"]:
                raise err_not_found(KIND_BY_PATH[("", "v1", "namespaces")], ns)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta.pop("resourceVersion", None)
            obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
            meta["resourceVersion"] = str(self._bump_locked())
            if kind.resource == "namespaces":
                obj.setdefault("status", {"phase": "Active"})
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            self.objects[kind.resource][key] = obj
            self._record_locked(kind, "ADDED", None, copy.deepcopy(obj))
            return copy.deepcopy(obj)

    def replace(self, kind, ns, name, mutate, check=None):
        """mutate(old) -> new object; a precondition resourceVersion in new that is not
        current is a 409; an unchanged object is not written (no new resourceVersion, no
        watch event), as the real registry does."""
        with self.lock:
            key = (ns if kind.namespaced else "", name)
            old = self.objects[kind.resource].get(key)
            if old is None:
                raise err_not_found(kind, name)
            new = mutate(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise err_bad_request("the result is not an object")
            meta = new.setdefault("metadata", {})
            want = meta.get("resourceVersion")
            if want not in (None, "") and want != old["metadata"]["resourceVersion"]:
                raise err_conflict(kind, name)
            if meta.get("name") != name:
                raise err_bad_request("the name of the object (%s) does not match the name "
                                      "on the URL (%s)" % (meta.get("name"), name))
            for f in ("uid", "creationTimestamp", "namespace"):
                if f in old["metadata"]:
                    meta[f] = old["metadata"][f]
            new["kind"], new["apiVersion"] = kind.kind, kind.api_version
            if check:       # admission (NodeRestriction) before validation, as the real one
                check(copy.deepcopy(old), copy.deepcopy(new))
            validate(kind, new)
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)
            meta["resourceVersion"] = str(self._bump_locked())
            self.objects[kind.resource][key] = new
            self._record_locked(kind, "MODIFIED", copy.deepcopy(old), copy.deepcopy(new))
            return copy.deepcopy(new)

    def delete(self, kind, ns, name, check=None):
        with self.lock:
            key = (ns if kind.namespaced else "", name)
            old = self.objects[kind.resource].get(key)
            if old is None:
                raise err_not_found(kind, name)
            if check:
                check(copy.deepcopy(old))
            del self.objects[kind.resource][key]
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._bump_locked())
            self._record_locked(kind, "DELETED", gone, None)
            return gone

    def compact(self, rv=None):
        with self.lock:
            self.compacted = self.rv if rv is None else int(rv)
            self.history = [h for h in self.history if h[0] > self.compacted]
            return self.compacted

    # -- watches
    def watch(self, kind, ns, label_reqs, field_reqs, since, initial=False):
        """Registers a watcher; returns it with its first events queued, or raises the
        410 for a resourceVersion older than the window. initial: sendInitialEvents=true
        (WatchList): ADDED for what exists, then a BOOKMARK annotated
        k8s.io/initial-events-end."""
        with self.lock:
            w = Watcher(kind, ns, label_reqs, field_reqs)
            if initial:
                for _, o in sorted(self.objects[kind.resource].items()):
                    if w.matches(o):
                        w.q.put(("ADDED", copy.deepcopy(o)))
                end = bookmark_object(kind, str(self.rv))
                end["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                w.q.put(("BOOKMARK", end))
            elif since in ("", "0"):
                # "Get State and Start at Most Recent" / "Start at Any": synthetic ADDED
                # events for what exists now.
                for _, o in sorted(self.objects[kind.resource].items()):
                    if w.matches(o):
                        w.q.put(("ADDED", copy.deepcopy(o)))
            else:
                try:
                    start = int(since)
                except ValueError:
                    raise err_bad_request('invalid resource version: "%s"' % since)
                if start < self.compacted:
                    raise err_gone(since, self.compacted)
                if start > self.rv:
                    # The cacher waits up to 3 s for a future resourceVersion, then this.
                    raise APIError(504, "Timeout", "Too large resource version: %d, current: %d"
                                   % (start, self.rv),
                                   {"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}],
                                    "retryAfterSeconds": 1})
                for rv, k, etype, old, new in self.history:
                    if rv > start and k is kind:
                        ev = w.translate(etype, old, new)
                        if ev:
                            w.q.put((ev[0], copy.deepcopy(ev[1])))
            self.watchers.add(w)
            return w

    def unwatch(self, w):
        with self.lock:
            self.watchers.discard(w)


NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
QUALIFIED_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")


def _qualified_key_ok(key):
    if "/" in key:
        prefix, name = key.split("/", 1)
        if not prefix or len(prefix) > 253 or not NAME_RE.match(prefix):
            return False
    else:
        name = key
    return 0 < len(name) <= 63 and bool(QUALIFIED_RE.match(name))


def validate(kind, obj):
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    ann = meta.get("annotations") or {}
    if not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values()):
        raise err_invalid(kind, name, "metadata.annotations", "Invalid value: annotation "
                          "values must be strings")
    for k in ann:
        if not _qualified_key_ok(k):
            raise err_invalid(kind, name, "metadata.annotations",
                              'Invalid value: "%s": name part must consist of alphanumeric '
                              "characters, '-', '_' or '.'" % k)
    total = sum(len(k) + len(v) for k, v in ann.items())
    if total > MAX_ANNOTATIONS:
        raise err_invalid(kind, name, "metadata.annotations",
                          "Too long: must have at most %d bytes" % MAX_ANNOTATIONS)
    labels = meta.get("labels") or {}
    for k, v in labels.items():
        if not _qualified_key_ok(k) or not isinstance(v, str) or len(v) > 63 or \
                (v and not QUALIFIED_RE.match(v)):
            raise err_invalid(kind, name, "metadata.labels", 'Invalid value: "%s"' % v)


# ------------------------------------------------------------------------------------------
# Knobs (faults)
# ------------------------------------------------------------------------------------------

class Knobs:
    def __init__(self):
        self.lock = threading.Lock()
        self.delay = 0.0                  # seconds before each API response
        self.fail = []                    # [{count, code, retry_after, match}]
        self.bookmark_interval = 60.0
        self.gone_mode = "event"          # "event" (ERROR event in a 200 stream) | "status"
        self.min_request_timeout = 1800
        self.ready = True
        self.watch_generation = 0         # bumped by drop_watches
        self.drop_mode = "close"          # "close" (connection reset) | "end" (clean end)

    def snapshot(self):
        with self.lock:
            return {"delay": self.delay, "fail": copy.deepcopy(self.fail),
                    "bookmark_interval": self.bookmark_interval, "gone_mode": self.gone_mode,
                    "min_request_timeout": self.min_request_timeout, "ready": self.ready,
                    "watch_generation": self.watch_generation, "drop_mode": self.drop_mode}

    def take_failure(self, line):
        with self.lock:
            for f in self.fail:
                if f.get("count", 0) > 0 and f.get("match", "") in line:
                    f["count"] -= 1
                    return dict(f)
            self.fail = [f for f in self.fail if f.get("count", 0) > 0]
        return None


FAIL_REASONS = {
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected by the fake API server"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
    504: ("Timeout", "The server was unable to return a response in the time allotted"),
}


# ------------------------------------------------------------------------------------------
# Listeners: each is one "API server" port over the shared store; outages close it
# ------------------------------------------------------------------------------------------

class Listener:
    def __init__(self, server, index, host, port, version):
        self.server, self.index, self.host = server, index, host
        self.version = version            # dict: git_version, emulated, min_compat
        self.sock = None
        self.port = port
        self.conns = set()
        self.lock = threading.Lock()
        self.down_until = 0.0             # outage end (monotonic); inf = until SIGUSR1
        self.wake_r, self.wake_w = os.pipe()
        self._bind()

    def _bind(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.set_inheritable(False)
        self.port = s.getsockname()[1]
        self.sock = s

    def _close_listener(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def outage(self, seconds):
        """Refuse connections (the port is closed) and cut open ones, for seconds (None:
        until end_outage())."""
        with self.lock:
            self.down_until = float("inf") if seconds is None else time.monotonic() + seconds
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        os.write(self.wake_w, b"x")

    def end_outage(self):
        with self.lock:
            self.down_until = 0.0
        os.write(self.wake_w, b"x")

    def serve(self):
        while not self.server.stopping.is_set():
            with self.lock:
                down = self.down_until > time.monotonic()
            if down:
                self._close_listener()
                r, _, _ = select.select([self.wake_r], [], [], 0.05)
                if r:
                    os.read(self.wake_r, 64)
                continue
            if self.sock is None:
                try:
                    self._bind()
                except OSError:
                    time.sleep(0.1)
                    continue
                self.server.log("listener %d back on port %d" % (self.index, self.port))
            r, _, _ = select.select([self.sock, self.wake_r], [], [], 0.5)
            if self.wake_r in r:
                os.read(self.wake_r, 64)
            if self.sock in r:
                try:
                    conn, addr = self.sock.accept()
                except OSError:
                    continue
                threading.Thread(target=self._connection, args=(conn, addr),
                                 daemon=True).start()
        self._close_listener()

    def _track(self, sock, add):
        with self.lock:
            if add:
                self.conns.add(sock)
            else:
                self.conns.discard(sock)
            return self.down_until > time.monotonic()

    def _connection(self, raw, addr):
        # wrap_socket detaches raw: from then on the TLS socket owns the descriptor, and
        # it is what an outage must shut down and what must be closed at the end.
        sock = raw
        self._track(sock, True)
        try:
            raw.settimeout(10)
            try:
                conn = self.server.tls.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                return
            self._track(raw, False)
            sock = conn
            if self._track(conn, True):
                return
            conn.settimeout(None)
            Handler(conn, addr, self)
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        except Exception:
            self.server.log("connection error:\n" + traceback.format_exc())
        finally:
            self._track(sock, False)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass


# ------------------------------------------------------------------------------------------
# HTTP handling
# ------------------------------------------------------------------------------------------

class DropWatch(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def __init__(self, conn, addr, listener):
        self.listener = listener
        self.api = listener.server
        super().__init__(conn, addr, listener)

    def log_message(self, fmt, *args):
        pass

    # BaseHTTPRequestHandler dispatch
    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- responses
    def send_json(self, code, obj, headers=None):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.code = code

    def send_text(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.code = code

    def send_error_status(self, e):
        self.send_json(e.code, e.status(), e.headers)

    # -- the request
    def _handle(self, method):
        self.code = 0
        self.user = None
        started = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        self.url_path = url.path
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        try:
            body = self._read_body()
            self.user = self._authenticate()
            if self.url_path.startswith("/fake/"):
                self._fake_endpoint(method, body)
                return
            self._faults(method)
            self._dispatch(method, body)
        except APIError as e:
            if not self.code:
                self.send_error_status(e)
        except DropWatch:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            self.api.log("handler error:\n" + traceback.format_exc())
            if not self.code:
                self.send_error_status(APIError(500, "InternalError",
                                                "Internal error occurred: fake API server bug"))
        finally:
            self.api.audit(self, method, started)

    def _read_body(self):
        too_large = APIError(413, "RequestEntityTooLarge", "Request entity too large: limit "
                             "is 3145728")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # Bodies of unknown length (kubectl -f -, libcurl reading a stream) are chunked.
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass     # trailers
                    return body
                if len(body) + size > MAX_BODY:
                    self.close_connection = True
                    raise too_large
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.close_connection = True
            raise too_large
        return self.rfile.read(n) if n else b""

    def _authenticate(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            u = self.api.tokens.get(auth[7:].strip())
            if u is None:
                raise APIError(401, "Unauthorized", "Unauthorized")
            return User(u.name, u.groups + ["system:authenticated"])
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            cn, orgs = "", []
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
                    elif k == "organizationName":
                        orgs.append(v)
            if cn:
                return User(cn, orgs + ["system:authenticated"])
        if self.api.anonymous:
            return User("system:anonymous", ["system:unauthenticated"])
        raise APIError(401, "Unauthorized", "Unauthorized")

    def _faults(self, method):
        delay = self.api.knobs.delay
        if delay > 0:
            time.sleep(delay)
        f = self.api.knobs.take_failure("%s %s" % (method, self.path))
        if f:
            code = int(f.get("code", 500))
            reason, msg = FAIL_REASONS.get(code, ("InternalError", "injected failure"))
            headers, details = {}, None
            if f.get("retry_after") is not None:
                headers["Retry-After"] = str(f["retry_after"])
                details = {"retryAfterSeconds": int(f["retry_after"])}
            raise APIError(code, reason, msg, details, headers)

    # -- non-resource and fake endpoints
    def _fake_endpoint(self, method, body):
        if "system:masters" not in self.user.groups:
            raise err_forbidden(Attrs(self.user, method.lower(), self.url_path, False), "")
        if self.url_path == "/fake/knobs" and method == "GET":
            snap = self.api.knobs.snapshot()
            snap["listeners"] = [{"port": l.port, "version": l.version} for l in self.api.listeners]
            snap["resourceVersion"] = self.api.store.rv
            snap["compacted"] = self.api.store.compacted
            with self.api.store.lock:
                snap["watches"] = sorted(w.path for w in self.api.store.watchers)
            return self.send_json(200, snap)
        if self.url_path == "/fake/knobs" and method == "POST":
            try:
                req = json.loads(body or b"{}")
            except ValueError as e:
                raise err_bad_request("knobs: %s" % e)
            after = self.api.apply_knobs(req)
            self.send_json(200, {"ok": True})
            self.wfile.flush()
            for act in after:
                act()
            return
        raise APIError(404, "NotFound", "the server could not find the requested resource")

    def _non_resource(self, method):
        p = self.url_path.rstrip("/") or "/"
        a = Attrs(self.user, method.lower(), p, False)
        self._authorize(a)
        if p in ("/healthz", "/livez", "/readyz") or p.startswith(("/healthz/", "/livez/",
                                                                  "/readyz/")):
            if p.startswith("/readyz") and not self.api.knobs.ready:
                return self.send_text(500, "[-]fake-not-ready failed: reason withheld\n"
                                      "readyz check failed\n")
            if "verbose" in self.query:
                return self.send_text(200, "[+]ping ok\n[+]etcd ok\n%s check passed\n"
                                      % p.strip("/").split("/")[0])
            return self.send_text(200, "ok")
        if p == "/version":
            return self.send_json(200, version_info(self.listener.version))
        if p == "/api":
            return self.send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1:%d"
                                                % self.listener.port}]})
        if p == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                        "groups": [api_group("coordination.k8s.io")]})
        if p == "/api/v1":
            return self.send_json(200, resource_list("", "v1"))
        if p == "/apis/coordination.k8s.io":
            g = api_group("coordination.k8s.io")
            g.update({"kind": "APIGroup", "apiVersion": "v1"})
            return self.send_json(200, g)
        if p == "/apis/coordination.k8s.io/v1":
            return self.send_json(200, resource_list("coordination.k8s.io", "v1"))
        raise APIError(404, "NotFound", "the server could not find the requested resource")

    # -- resource requests
    def _parse(self, method):
        """request.RequestInfoFactory: kind, namespace, name, subresource, verb."""
        parts = [p for p in self.url_path.split("/") if p]
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        resource = rest[0]
        name = rest[1] if len(rest) >= 2 else ""
        sub = rest[2] if len(rest) >= 3 else ""
        kind = KIND_BY_PATH.get((group, version, resource))
        if kind is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        verb = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}[method]
        w = self.query.get("watch", [None])[0]
        if verb == "get" and not name:
            verb = "watch" if w is not None and w.lower() not in ("false", "0") else "list"
        field_reqs = []
        if verb == "get" and name and not sub and w is not None and \
                w.lower() not in ("false", "0"):
            # A watch of one object: the handler turns the name into a field selector.
            verb = "watch"
            field_reqs = parse_field_selector(self._q("fieldSelector"), kind)
            if field_reqs and exact_name(field_reqs) != name:
                raise err_bad_request("fieldSelector metadata.name doesn't match requested name")
            field_reqs = field_reqs or [("metadata.name", "=", name)]
        elif verb in ("list", "watch"):
            field_reqs = parse_field_selector(self._q("fieldSelector"), kind)
        a = Attrs(self.user, verb, self.url_path, True, group, version, resource, sub, ns,
                  name, field_reqs)
        if verb in ("list", "watch") and not name:
            a.name = exact_name(field_reqs)     # requestinfo.go: fieldSelector metadata.name
        if kind.namespaced != bool(ns) and not (kind.namespaced and verb in ("list", "watch")):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if sub and sub not in kind.subresources:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return kind, a

    def _q(self, key, default=""):
        return self.query.get(key, [default])[0]

    def _authorize(self, a):
        u = self.user
        if "system:masters" in u.groups:
            return
        if not a.resource_request and a.verb == "get":
            if _under(a.path, INFO_PATHS) or (_under(a.path, DISCOVERY_PATHS) and
                                              "system:authenticated" in u.groups):
                return
        reasons = []
        node, is_node = u.node_name()
        if is_node:
            ok, reason = node_authorize(node, a, self.api.store)
            if ok:
                return
            if reason:
                reasons.append(reason)
        if self.api.rbac.allows(a):
            return
        raise err_forbidden(a, "\n".join(reasons))

    def _dispatch(self, method, body):
        parsed = self._parse(method)
        if parsed is None:
            if method != "GET":
                a = Attrs(self.user, method.lower(), self.url_path, False)
                self._authorize(a)
                raise APIError(405, "MethodNotAllowed", "the server does not allow this method "
                               "on the requested resource")
            return self._non_resource(method)
        kind, a = parsed
        self._authorize(a)
        node, is_node = self.user.node_name()
        handler = getattr(self, "_verb_" + a.verb)
        handler(kind, a, body, node if is_node else None)

    def _decode(self, body, kind):
        try:
            obj = json.loads(body or b"null")
        except ValueError as e:
            raise err_bad_request("the body of the request was in an unknown format - accepted "
                                  "media types include: application/json: %s" % e)
        if not isinstance(obj, dict):
            raise err_bad_request("the body of the request is not a %s object" % kind.kind)
        return obj

    def _verb_get(self, kind, a, body, node):
        obj = self.api.store.get(kind, a.namespace, a.name)
        self.send_object(kind, obj)

    def _verb_list(self, kind, a, body, node):
        label_reqs = parse_label_selector(self._q("labelSelector"))
        items, rv = self.api.store.list(kind, a.namespace, label_reqs, a.field_reqs)
        if self._wants_table():
            return self.send_json(200, make_table(kind, items, rv))
        for it in items:
            it.pop("kind", None)
            it.pop("apiVersion", None)
        self.send_json(200, {"kind": kind.kind + "List", "apiVersion": kind.api_version,
                             "metadata": {"resourceVersion": rv}, "items": items})

    def _verb_create(self, kind, a, body, node):
        obj = self._decode(body, kind)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != a.namespace:
                raise err_bad_request("the namespace of the provided object does not match the "
                                      "namespace sent on the request")
            meta["namespace"] = a.namespace
        if obj.get("kind") not in (None, kind.kind):
            raise err_bad_request("the object kind %s does not match %s" % (obj.get("kind"),
                                                                          kind.kind))
        if node is not None:
            # Admission sees the object's name on create; it runs before validation.
            a.name = meta.get("name") or ""
            node_restriction(node, a, None, obj, self.api.store)
        validate(kind, obj)
        if kind.resource == "events":
            obj.setdefault("firstTimestamp", None)
            obj.setdefault("lastTimestamp", None)
        created = self.api.store.create(kind, obj)
        self.send_object(kind, created, 201)

    def _verb_update(self, kind, a, body, node):
        obj = self._decode(body, kind)
        if kind.namespaced:
            obj.setdefault("metadata", {})["namespace"] = a.namespace

        def mutate(old):
            new = copy.deepcopy(obj)
            if a.subresource == "status":     # the status subresource changes only status
                keep = copy.deepcopy(old)
                keep["status"] = new.get("status", {})
                keep["metadata"]["resourceVersion"] = new.get("metadata", {}).get(
                    "resourceVersion")
                return keep
            if "status" in old:
                new["status"] = old["status"]
            return new
        out = self.api.store.replace(kind, a.namespace, a.name, mutate, self._admit(a, node))
        self.send_object(kind, out)

    def _verb_patch(self, kind, a, body, node):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            patch = json.loads(body or b"null")
        except ValueError as e:
            raise err_bad_request("error decoding patch: %s" % e)
        if ctype == "application/merge-patch+json":
            fn = merge_patch
        elif ctype == "application/strategic-merge-patch+json":
            fn = strategic_merge_patch
        elif ctype == "application/json-patch+json":
            fn = json_patch
        elif ctype == "application/apply-patch+yaml":
            raise APIError(415, "UnsupportedMediaType", "the fake API server does not "
                           "implement server-side apply")
        else:
            raise APIError(415, "UnsupportedMediaType", 'the body of the request was in an '
                           'unknown format - accepted media types include: '
                           'application/json-patch+json, application/merge-patch+json, '
                           'application/apply-patch+yaml')
        if fn is not json_patch and not isinstance(patch, dict):
            raise err_bad_request("patch must be a JSON object")

        def mutate(old):
            new = fn(old, patch)
            if isinstance(new, dict) and a.subresource == "status":
                keep = copy.deepcopy(old)
                keep["status"] = new.get("status", {})
                keep["metadata"]["resourceVersion"] = new.get("metadata", {}).get(
                    "resourceVersion")
                return keep
            if isinstance(new, dict) and a.subresource == "" and "status" in old and \
                    kind.resource in ("nodes", "pods"):
                new["status"] = old["status"]     # the main resource ignores status
            return new
        out = self.api.store.replace(kind, a.namespace, a.name, mutate, self._admit(a, node))
        self.send_object(kind, out)

    def _verb_delete(self, kind, a, body, node):
        pre = {}
        if body:
            opts = self._decode(body, kind)
            pre = opts.get("preconditions") or {}

        def check(old):
            if node is not None:
                node_restriction(node, a, old, None, self.api.store)
            # DeleteOptions.preconditions, checked against the stored object (storage's
            # Preconditions.Check): the kubelet deletes an outdated mirror pod by its UID
            m = old.get("metadata") or {}
            for field, mine in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                if pre.get(field) and pre[field] != m.get(field):
                    raise APIError(409, "Conflict",
                                   "Precondition failed: %s in precondition: %s, %s in object "
                                   "meta: %s" % (mine, pre[field], mine, m.get(field)),
                                   _details(kind, a.name))
        gone = self.api.store.delete(kind, a.namespace, a.name, check)
        self.send_object(kind, gone)

    def _admit(self, a, node):
        if node is None:
            return None

        def check(old, new):
            node_restriction(node, a, old, new, self.api.store)
        return check

    def _wants_table(self):
        return "as=Table" in (self.headers.get("Accept") or "")

    def send_object(self, kind, obj, code=200):
        if self._wants_table():
            return self.send_json(code, make_table(kind, [obj], obj["metadata"].get(
                "resourceVersion", "")))
        self.send_json(code, obj)

    # -- watch
    def _verb_watch(self, kind, a, body, node):
        store, knobs = self.api.store, self.api.knobs
        label_reqs = parse_label_selector(self._q("labelSelector"))
        since = self._q("resourceVersion")
        bookmarks = self._q("allowWatchBookmarks").lower() in ("true", "1")
        ts = self._q("timeoutSeconds")
        if ts:
            try:
                timeout = float(int(ts))
            except ValueError:
                raise err_bad_request('timeoutSeconds: invalid value "%s"' % ts)
        else:
            timeout = knobs.min_request_timeout * (random.random() + 1.0)
        try:
            initial = self._q("sendInitialEvents").lower() == "true"
            if initial and (self._q("resourceVersionMatch") != "NotOlderThan" or
                            not bookmarks):
                raise err_invalid(kind, "", "sendInitialEvents", "Forbidden: "
                                  "sendInitialEvents requires setting resourceVersionMatch "
                                  "to NotOlderThan and allowWatchBookmarks")
            w = store.watch(kind, a.namespace, label_reqs, a.field_reqs, since, initial)
        except APIError as e:
            if e.code != 410 or knobs.gone_mode == "status":
                raise
            # The watch cache's form: 200, then one ERROR event carrying the 410 Status.
            self._start_stream()
            self._chunk({"type": "ERROR", "object": e.status()})
            self._end_stream()
            return
        w.path = "%s %s" % (self.user.name, self.path)
        try:
            self._stream(kind, w, bookmarks, timeout)
        finally:
            store.unwatch(w)

    def _start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.code = 200

    def _chunk(self, ev):
        data = (json.dumps(ev) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_gone(self):
        """A client that closed its end of a quiet watch: noticed now rather than at the
        next write (which may be an hour away without bookmarks)."""
        sock = self.connection
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            finally:
                sock.setblocking(True)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except (OSError, ValueError):
            return True

    def _stream(self, kind, w, bookmarks, timeout):
        knobs = self.api.knobs
        gen = knobs.watch_generation
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        self._start_stream()
        while True:
            now = time.monotonic()
            if now >= deadline or self.api.stopping.is_set():
                break
            if knobs.watch_generation != gen:
                if knobs.drop_mode == "end":
                    break
                raise DropWatch()
            if self._client_gone():
                raise DropWatch()
            wait = min(deadline - now, 0.2)
            if bookmarks:
                wait = min(wait, max(0.0, last_bookmark + knobs.bookmark_interval - now))
            try:
                etype, obj = w.q.get(timeout=wait)
                self._chunk({"type": etype, "object": obj})
                continue
            except queue.Empty:
                pass
            if bookmarks and time.monotonic() - last_bookmark >= knobs.bookmark_interval:
                last_bookmark = time.monotonic()
                self._chunk({"type": "BOOKMARK", "object": bookmark_object(
                    kind, str(self.api.store.rv))})
        self._end_stream()


def bookmark_object(kind, rv):
    """What the cacher sends: an empty object of the watched kind with only
    metadata.resourceVersion set (zero-valued fields serialised as the types do)."""
    obj = {"kind": kind.kind, "apiVersion": kind.api_version,
           "metadata": {"resourceVersion": rv, "creationTimestamp": None}}
    if kind.resource in ("nodes", "pods", "namespaces"):
        obj["spec"], obj["status"] = {}, {}
    elif kind.resource == "leases":
        obj["spec"] = {}
    return obj


# ------------------------------------------------------------------------------------------
# Discovery, version, tables
# ------------------------------------------------------------------------------------------

def api_group(name):
    return {"name": name, "versions": [{"groupVersion": name + "/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": name + "/v1", "version": "v1"}}


def resource_list(group, version):
    res = []
    for k in KINDS:
        if (k.group, k.version) != (group, version):
            continue
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        res.append({"name": k.resource, "singularName": k.singular, "namespaced": k.namespaced,
                    "kind": k.kind, "verbs": verbs, "shortNames": k.short})
        for sub in k.subresources:
            res.append({"name": k.resource + "/" + sub, "singularName": "", "namespaced":
                        k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]})
    gv = group + "/" + version if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": res}


def _minor(v):
    m = re.match(r"^v?(\d+)\.(\d+)", v or "")
    return (m.group(1), m.group(2)) if m else (None, None)


def version_info(v):
    """/version as kube-apiserver writes it (FACTS.md): the binary's major/minor/gitVersion;
    emulation and min-compatibility fields from 1.33 on."""
    major, minor = _minor(v["git_version"])
    out = {"major": major, "minor": minor}
    if int(minor) >= 33:
        em = _minor(v.get("emulated") or v["git_version"])
        floor = max(31, int(minor) - 3)
        mc = _minor(v.get("min_compat") or "%s.%d" % (em[0], max(int(em[1]) - 1, floor)))
        out.update({"emulationMajor": em[0], "emulationMinor": em[1],
                    "minCompatibilityMajor": mc[0], "minCompatibilityMinor": mc[1]})
    out.update({"gitVersion": v["git_version"], "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64"})
    return out


def _age(ts):
    if not ts:
        return "<unknown>"
    try:
        t = datetime.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return "<unknown>"
    s = int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
    if s < 120:
        return "%ds" % max(s, 0)
    if s < 7200:
        return "%dm" % (s // 60)
    return "%dh" % (s // 3600)


def _row(kind, o):
    meta = o.get("metadata", {})
    if kind.resource == "nodes":
        conds = {c.get("type"): c.get("status") for c in o.get("status", {}).get("conditions",
                                                                              [])}
        status = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready"), "Unknown")
        roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {})
                       if k.startswith("node-role.kubernetes.io/"))
        return [meta.get("name"), status, ",".join(roles) or "<none>",
                _age(meta.get("creationTimestamp")),
                o.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")]
    if kind.resource == "pods":
        st = o.get("status", {})
        cs = st.get("containerStatuses", [])
        ready = "%d/%d" % (sum(1 for c in cs if c.get("ready")),
                           len(o.get("spec", {}).get("containers", [])))
        return [meta.get("name"), ready, st.get("phase", "Unknown"),
                sum(c.get("restartCount", 0) for c in cs), _age(meta.get("creationTimestamp"))]
    if kind.resource == "events":
        io = o.get("involvedObject", {})
        return [_age(o.get("lastTimestamp") or o.get("eventTime") or
                     meta.get("creationTimestamp")), o.get("type", ""), o.get("reason", ""),
                "%s/%s" % (io.get("kind", "").lower(), io.get("name", "")), o.get("message", "")]
    if kind.resource == "leases":
        return [meta.get("name"), o.get("spec", {}).get("holderIdentity", ""),
                _age(meta.get("creationTimestamp"))]
    return [meta.get("name"), (o.get("status") or {}).get("phase", ""),
            _age(meta.get("creationTimestamp"))]


TABLE_COLUMNS = {
    "nodes": ["Name", "Status", "Roles", "Age", "Version"],
    "pods": ["Name", "Ready", "Status", "Restarts", "Age"],
    "events": ["Last Seen", "Type", "Reason", "Object", "Message"],
    "leases": ["Name", "Holder", "Age"],
    "namespaces": ["Name", "Status", "Age"],
}


def make_table(kind, items, rv):
    """meta.k8s.io/v1 Table, what kubectl asks for to print (server-side printing)."""
    cols = [{"name": c, "type": "integer" if c == "Restarts" else "string", "format":
             "name" if c == "Name" else "", "description": c, "priority": 0}
            for c in TABLE_COLUMNS[kind.resource]]
    rows = []
    for o in items:
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": o.get("metadata", {})}
        rows.append({"cells": _row(kind, o), "object": partial})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv}, "columnDefinitions": cols, "rows": rows}


# ------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------

class FakeAPIServer:
    def __init__(self, args):
        self.args = args
        self.stopping = threading.Event()
        self.knobs = Knobs()
        self.knobs.bookmark_interval = args.bookmark_interval
        self.knobs.gone_mode = args.gone_mode
        self.knobs.min_request_timeout = args.min_request_timeout
        self.knobs.delay = args.delay
        self.anonymous = args.anonymous_auth
        self.tokens = load_tokens(args.token_auth_file)
        self.rbac = RBAC()
        for f in args.rbac or []:
            self.rbac.load(f)
        os.makedirs(args.state_dir, exist_ok=True)
        self.store = Store(args.state_dir, args.max_history)
        self.audit_lock = threading.Lock()
        self.audit_file = open(os.path.join(args.state_dir, "audit.log"), "a", buffering=1)
        self.log_file = open(os.path.join(args.state_dir, "server.log"), "a", buffering=1)
        self.tls = self._tls()
        if not self.store.load():
            self._seed()
        version = {"git_version": args.git_version, "emulated": args.emulated_version,
                   "min_compat": args.min_compatibility_version}
        ports = [args.port] + [0] * args.extra_listeners
        self.listeners = [Listener(self, i, args.host, p, dict(version))
                          for i, p in enumerate(ports)]

    def _tls(self):
        import pki
        a = self.args
        p = pki.PKI(a.pki or os.path.join(a.state_dir, "pki"), a.client_ca, a.client_ca_key)
        crt, key = (a.tls_cert, a.tls_key) if a.tls_cert else p.server_cert()
        self.pki = p
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(crt, key)
        ctx.load_verify_locations(p.ca_cert)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def _seed(self):
        ns_kind = KIND_BY_PATH[("", "v1", "namespaces")]
        for ns in DEFAULT_NAMESPACES:
            self.store.create(ns_kind, {"metadata": {"name": ns}})
        node_kind = KIND_BY_PATH[("", "v1", "nodes")]
        for n in self.args.node or []:
            self.store.create(node_kind, new_node(n, self.args.git_version))
        for f in self.args.objects or []:
            for o in load_objects(f):
                kind = kind_of(o)
                if kind.resource == "namespaces" and self.store.peek(
                        kind, "", o["metadata"]["name"]):
                    continue
                self.store.create(kind, o)

    # -- knobs
    def apply_knobs(self, req):
        """Applies a knob request; returns actions to run after the reply is sent."""
        k, after = self.knobs, []
        with k.lock:
            if "delay" in req:
                k.delay = float(req["delay"])
            if "bookmark_interval" in req:
                k.bookmark_interval = float(req["bookmark_interval"])
            if "gone_mode" in req:
                if req["gone_mode"] not in ("event", "status"):
                    raise err_bad_request("gone_mode must be event or status")
                k.gone_mode = req["gone_mode"]
            if "min_request_timeout" in req:
                k.min_request_timeout = float(req["min_request_timeout"])
            if "ready" in req:
                k.ready = bool(req["ready"])
            if "drop_mode" in req:
                k.drop_mode = req["drop_mode"]
            if "fail" in req:
                f = req["fail"]
                k.fail = [] if f is None else k.fail + (f if isinstance(f, list) else [f])
        if req.get("drop_watches"):
            with k.lock:
                k.watch_generation += 1
        if "compact" in req:
            self.store.compact(None if req["compact"] is True else req["compact"])
        for key, field in (("git_version", "git_version"), ("emulated_version", "emulated"),
                           ("min_compatibility_version", "min_compat")):
            if key in req:
                for l in self._targets(req):
                    l.version[field] = req[key]
        if "outage" in req:
            secs = req["outage"]
            for l in self._targets(req):
                after.append(lambda l=l: l.outage(None if secs is None else float(secs)))
        if req.get("outage_end"):
            for l in self._targets(req):
                l.end_outage()
        return after

    def _targets(self, req):
        i = req.get("listener")
        return self.listeners if i is None else [self.listeners[int(i)]]

    # -- logs
    def log(self, msg):
        self.log_file.write("%s %s\n" % (now_micro(), msg))

    def audit(self, h, method, started):
        rec = {"ts": now_micro(), "listener": h.listener.index, "user": h.user.name if h.user
               else None, "method": method, "path": h.path, "code": h.code,
               "ms": int((time.monotonic() - started) * 1000)}
        with self.audit_lock:
            self.audit_file.write(json.dumps(rec) + "\n")

    # -- life
    def run(self):
        threads = [threading.Thread(target=l.serve, daemon=True) for l in self.listeners]
        for t in threads:
            t.start()
        ports = [l.port for l in self.listeners]
        for name, text in (("ports", "\n".join(map(str, ports)) + "\n"),
                           ("port", "%d\n" % ports[0])):
            path = os.path.join(self.args.state_dir, name)
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.rename(path + ".tmp", path)
        self.log("listening on %s" % ports)
        print(ports[0], flush=True)
        self.stopping.wait()
        for l in self.listeners:
            os.write(l.wake_w, b"x")
        for t in threads:
            t.join(5)

    def stop(self):
        self.stopping.set()


def new_node(name, version, labels=None):
    lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
           "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}
    lab.update(labels or {})
    return {"metadata": {"name": name, "labels": lab, "annotations": {}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason":
                                       "KubeletReady", "message": "kubelet is posting ready "
                                       "status"}],
                       "nodeInfo": {"kubeletVersion": version, "operatingSystem": "linux",
                                    "architecture": "amd64"},
                       "addresses": [{"type": "Hostname", "address": name}]}}


def load_objects(path):
    import yaml
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = []
    for d in docs:
        out.extend(d.get("items", []) if d.get("kind", "").endswith("List") else [d])
    return out


def kind_of(o):
    av, k = o.get("apiVersion", "v1"), o.get("kind")
    for kind in KINDS:
        if kind.api_version == av and kind.kind == k:
            return kind
    raise ValueError("unsupported object %s %s" % (av, k))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--extra-listeners", type=int, default=0,
                    help="more ports over the same objects (one per simulated API server)")
    ap.add_argument("--state-dir", required=True,
                    help="port, ports, state.json (kept across restarts), audit.log, pki/")
    ap.add_argument("--pki", help="directory of ca.crt/ca.key/server.crt (default STATE/pki)")
    ap.add_argument("--client-ca", help="CA certificate (default: generated)")
    ap.add_argument("--client-ca-key")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--token-auth-file", help='token,user,uid,"group1,group2" lines')
    ap.add_argument("--anonymous-auth", action="store_true",
                    help="unauthenticated requests are system:anonymous (default: 401)")
    ap.add_argument("--rbac", action="append", help="YAML of Roles/ClusterRoles/bindings")
    ap.add_argument("--node", action="append", help="create a control-plane Node")
    ap.add_argument("--objects", action="append", help="YAML/JSON objects created at start")
    ap.add_argument("--git-version", default="v1.34.0")
    ap.add_argument("--emulated-version")
    ap.add_argument("--min-compatibility-version")
    ap.add_argument("--bookmark-interval", type=float, default=60.0)
    ap.add_argument("--gone-mode", choices=("event", "status"), default="event")
    ap.add_argument("--min-request-timeout", type=float, default=1800.0)
    ap.add_argument("--max-history", type=int, default=5000,
                    help="watch window in events; older resourceVersions get 410")
    ap.add_argument("--delay", type=float, default=0.0)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    srv = FakeAPIServer(args)
    signal.signal(signal.SIGTERM, lambda *_: srv.stop())
    signal.signal(signal.SIGINT, lambda *_: srv.stop())
    # SIGUSR2: an outage of every listener until SIGUSR1.
    signal.signal(signal.SIGUSR2, lambda *_: [l.outage(None) for l in srv.listeners])
    signal.signal(signal.SIGUSR1, lambda *_: [l.end_outage() for l in srv.listeners])
    srv.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
