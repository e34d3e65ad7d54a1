# SPDX-License-Identifier: Apache-2.0
"""Starting the fake API server and talking to it from tests (Python standard library)."""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

import pki as pkimod  # noqa: E402

SERVER = os.path.join(HERE, "fake_apiserver.py")


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


class Client:
    """One identity: a client certificate (cert, key) or a bearer token, or nothing."""

    def __init__(self, port, ca, cert=None, key=None, token=None, timeout=10):
        self.port, self.token, self.timeout = port, token, timeout
        self._c = None
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.load_verify_locations(ca)
        if cert:
            self.ctx.load_cert_chain(cert, key)

    def conn(self, timeout=None):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout or self.timeout)

    def _headers(self, ctype=None, accept=None):
        h = {"Accept": accept or "application/json"}
        if ctype:
            h["Content-Type"] = ctype
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        return h

    def request(self, method, path, body=None, ctype="application/json", accept=None):
        """One request on a kept-alive connection. A reused connection the server has
        closed (an outage, a restart) is replaced once; a fresh one failing raises."""
        data = None if body is None else (body if isinstance(body, (bytes, str))
                                          else json.dumps(body))
        headers = self._headers(ctype if body is not None else None, accept)
        for attempt in (0, 1):
            reused = self._c is not None
            if not reused:
                self._c = self.conn()
            try:
                self._c.request(method, path, body=data, headers=headers)
                r = self._c.getresponse()
                resp = Response(r.status, dict(r.getheaders()), r.read())
                if r.will_close:
                    self.close()
                return resp
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine, ConnectionError, ssl.SSLError):
                self.close()
                if not reused or attempt:
                    raise
            except BaseException:
                self.close()
                raise

    def close(self):
        if self._c is not None:
            self._c.close()
            self._c = None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body):
        return self.request("POST", path, body)

    def put(self, path, body):
        return self.request("PUT", path, body)

    def patch(self, path, body, ctype="application/merge-patch+json"):
        return self.request("PATCH", path, body, ctype)

    def watch(self, path, timeout=10):
        """Opens a watch; returns (status, iterator of decoded events, stream with close()),
        or (status, Status object, None). The chunked stream is parsed here, not by http.client (which
        hides a cut stream as a clean end): a stream that ends without its final chunk
        raises ConnectionError from the iterator."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout)
        s = self.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        hdrs = "".join("%s: %s\r\n" % kv for kv in self._headers().items())
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, hdrs)).encode())
        f = s.makefile("rb")
        status = int(f.readline().split()[1])
        headers = {}
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        if status != 200:
            body = f.read(int(headers.get("content-length", "0")))
            s.close()
            return status, json.loads(body), None

        class Stream:
            """close() really closes: the socket's makefile() holds the descriptor too."""
            def close(self):
                f.close()
                s.close()

        def events():
            buf = b""
            try:
                while True:
                    size = f.readline()
                    if not size:
                        raise ConnectionError("watch stream cut (no final chunk)")
                    n = int(size.strip().split(b";")[0], 16)
                    if n == 0:
                        f.readline()
                        return
                    data = f.read(n)
                    f.read(2)
                    if len(data) < n:
                        raise ConnectionError("watch stream cut inside a chunk")
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
            finally:
                f.close()
                s.close()
        return 200, events(), Stream()

    def knobs(self, **kw):
        r = self.post("/fake/knobs", kw)
        if r.status != 200:
            raise RuntimeError("knobs: %r" % r)
        return r


class FakeServer:
    """A fake API server process on its own state directory."""

    def __init__(self, state_dir, args=(), pki_dir=None):
        self.state_dir = state_dir
        self.args = list(args)
        self.pki = pkimod.PKI(pki_dir or os.path.join(state_dir, "pki"))
        self.pki.server_cert()
        self.proc = None
        self.port = None
        self.ports = []

    def start(self, timeout=20):
        for f in ("port", "ports"):
            try:
                os.unlink(os.path.join(self.state_dir, f))
            except FileNotFoundError:
                pass
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--state-dir", self.state_dir, "--pki", self.pki.dir]
            + self.args, stdout=subprocess.PIPE, stderr=open(os.path.join(
                self.state_dir, "stderr"), "a"), text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError("fake API server did not start: %r; %s" % (
                line, open(os.path.join(self.state_dir, "stderr")).read()[-2000:]))
        self.port = int(line)
        with open(os.path.join(self.state_dir, "ports")) as f:
            self.ports = [int(x) for x in f.read().split()]
        return self

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode if self.proc else None

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def client(self, cn=None, groups=(), token=None, port=None):
        cert = key = None
        if cn:
            cert, key = self.pki.client_cert(cn, groups)
        return Client(port or self.port, self.pki.ca_cert, cert, key, token)

    def admin(self):
        return self.client("kubernetes-admin", ["system:masters"])

    def node(self, name):
        return self.client("system:node:" + name, ["system:nodes"])

    def kubeconfig(self, path, cn, groups=(), embed=False):
        return self.pki.kubeconfig(path, self.url, cn, groups, embed=embed)

    def audit(self):
        with open(os.path.join(self.state_dir, "audit.log")) as f:
            return [json.loads(line) for line in f if line.strip()]


def port_refuses(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()
