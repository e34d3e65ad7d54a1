# SPDX-License-Identifier: Apache-2.0
"""A minimal Kubernetes API client for the simulated node's fakes (the kubelet's mirror pods,
the controller-manager's and scheduler's leader election): a kubeconfig (JSON or YAML; CA,
client certificate and key as files, relative to the kubeconfig's directory, or as -data;
or a token), verified TLS, JSON in and out. Standard library (+ python3-yaml for a YAML
kubeconfig); imported only when a fake is given a kubeconfig.
"""

import base64
import http.client
import json
import os
import socket
import ssl
import tempfile
import urllib.parse


class APIError(Exception):
    """The server answered with an error Status (code, reason, message)."""

    def __init__(self, code, reason, message):
        super().__init__("%d %s: %s" % (code, reason, message))
        self.code, self.reason, self.message = code, reason, message


class Unreachable(Exception):
    """No answer: connection refused or cut, TLS failure, timeout."""


def _load(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    import yaml
    return yaml.safe_load(text)


def _named(items, name):
    for it in items or []:
        if it.get("name") == name:
            return it
    raise ValueError("kubeconfig names %r but does not define it" % name)


class Client:
    def __init__(self, kubeconfig, timeout=5.0):
        self.path = os.path.abspath(kubeconfig)
        cfg = _load(self.path)
        base = os.path.dirname(self.path)
        ctx_name = cfg.get("current-context")
        ctx = _named(cfg.get("contexts"), ctx_name)["context"]
        cluster = _named(cfg.get("clusters"), ctx["cluster"])["cluster"]
        user = _named(cfg.get("users"), ctx["user"])["user"] or {}
        url = urllib.parse.urlsplit(cluster["server"])
        self.host, self.port = url.hostname, url.port or 443
        self.timeout = timeout
        self._tmp = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = True
        ca = self._file(cluster, "certificate-authority", base)
        if ca:
            self.ctx.load_verify_locations(ca)
        else:
            self.ctx.load_default_certs()
        cert = self._file(user, "client-certificate", base)
        key = self._file(user, "client-key", base)
        if cert:
            self.ctx.load_cert_chain(cert, key)
        self.token = user.get("token")
        self.server_name = cluster.get("tls-server-name") or self.host

    def _file(self, obj, key, base):
        if obj.get(key + "-data"):
            fd, path = tempfile.mkstemp(prefix="kubeclient-")
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(obj[key + "-data"]))
            self._tmp.append(path)
            return path
        if obj.get(key):
            return obj[key] if os.path.isabs(obj[key]) else os.path.join(base, obj[key])
        return None

    def close(self):
        for p in self._tmp:
            try:
                os.unlink(p)
            except OSError:
                pass
        self._tmp = []

    def request(self, method, path, body=None, ctype="application/json", timeout=None):
        """Returns the decoded JSON of a 2xx answer; raises APIError for an error Status and
        Unreachable when the server does not answer."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=timeout or self.timeout)
        headers = {"Accept": "application/json", "User-Agent": "cplet-sim"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
        except (OSError, socket.timeout, http.client.HTTPException, ssl.SSLError) as e:
            raise Unreachable("%s %s: %s" % (method, path, e)) from None
        finally:
            conn.close()
        try:
            obj = json.loads(raw) if raw else {}
        except ValueError:
            obj = {"message": raw.decode(errors="replace")[:200]}
        if 200 <= r.status < 300:
            return obj
        raise APIError(r.status, obj.get("reason", "") if isinstance(obj, dict) else "",
                       obj.get("message", "") if isinstance(obj, dict) else str(obj))
