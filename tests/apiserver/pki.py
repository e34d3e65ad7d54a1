#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Certificates and kubeconfigs for the fake API server, made with the openssl command
(installed by scripts/deps.sh).

    pki = PKI(dir)                      # creates dir/ca.crt, ca.key on first use
    pki.server_cert()                   # dir/server.crt, server.key for 127.0.0.1/localhost
    crt, key = pki.client_cert("system:node:n1", ["system:nodes"])
    pki.kubeconfig(path, server_url, "system:node:n1", ["system:nodes"], embed=True)

The identity the API server sees is the client certificate's CN (user name) and its O
entries (groups), as kube-apiserver's x509 authenticator reads them.

Command line:
    pki.py DIR init
    pki.py DIR kubeconfig OUT --server URL --user CN [--group O ...] [--embed] [--token T]
"""

import argparse
import base64
import os
import re
import subprocess
import sys
import tempfile

DAYS = "3650"


def _run(argv, cwd=None):
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv[:3]), p.returncode,
                                                   p.stderr.strip()))
    return p.stdout


def _subject(cn, orgs):
    # openssl -subj syntax: '/' separates RDNs, so escape it inside values.
    def esc(v):
        return v.replace("\\", "\\\\").replace("/", "\\/")
    return "".join("/O=" + esc(o) for o in orgs) + "/CN=" + esc(cn)


def _safe_name(cn):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", cn) or "_"


class PKI:
    def __init__(self, directory, ca_cert=None, ca_key=None):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca_cert = ca_cert or os.path.join(self.dir, "ca.crt")
        self.ca_key = ca_key or os.path.join(self.dir, "ca.key")
        if not os.path.exists(self.ca_cert):
            if ca_cert:
                raise FileNotFoundError(ca_cert)
            self._make_ca()

    def _make_ca(self):
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-days", DAYS, "-subj", "/CN=fake-kubernetes-ca",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
              "-keyout", self.ca_key, "-out", self.ca_cert])
        os.chmod(self.ca_key, 0o600)

    def _issue(self, base, subject, extensions):
        key, csr, crt = base + ".key", base + ".csr", base + ".crt"
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-subj", subject, "-keyout", key, "-out", csr])
        os.chmod(key, 0o600)
        with tempfile.NamedTemporaryFile("w", suffix=".ext", delete=False) as f:
            f.write(extensions)
            ext = f.name
        try:
            _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey",
                  self.ca_key, "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", ext,
                  "-out", crt])
        finally:
            os.unlink(ext)
            os.unlink(csr)
        return crt, key

    def server_cert(self, dns=("localhost",), ips=("127.0.0.1", "::1")):
        base = os.path.join(self.dir, "server")
        if os.path.exists(base + ".crt") and os.path.exists(base + ".key"):
            return base + ".crt", base + ".key"
        san = ",".join(["DNS:" + d for d in dns] + ["IP:" + i for i in ips])
        return self._issue(base, "/CN=kube-apiserver",
                           "basicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=serverAuth\n"
                           "subjectAltName=%s\n" % san)

    def client_cert(self, cn, orgs=(), name=None):
        """A client certificate and key for user cn in groups orgs; reused when present."""
        base = os.path.join(self.dir, "client-" + (name or _safe_name(cn)))
        if os.path.exists(base + ".crt") and os.path.exists(base + ".key"):
            return base + ".crt", base + ".key"
        return self._issue(base, _subject(cn, list(orgs)),
                           "basicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=clientAuth\n")

    def kubeconfig(self, path, server, cn=None, orgs=(), embed=False, token=None,
                   context="fake", cert=None, key=None):
        """Writes a kubeconfig for identity cn/orgs (client certificate) or token.
        embed: certificate-authority-data/client-certificate-data/client-key-data
        (base64) instead of file paths."""
        user = {}
        if token is not None:
            user["token"] = token
        else:
            if cert is None:
                cert, key = self.client_cert(cn, orgs)
            if embed:
                user["client-certificate-data"] = _b64file(cert)
                user["client-key-data"] = _b64file(key)
            else:
                user["client-certificate"] = cert
                user["client-key"] = key
        cluster = {"server": server}
        if embed:
            cluster["certificate-authority-data"] = _b64file(self.ca_cert)
        else:
            cluster["certificate-authority"] = self.ca_cert
        uname = cn or "token-user"
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": uname, "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": uname}}],
            "current-context": context,
        }
        import json
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            # JSON is YAML: every kubeconfig reader takes it.
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
        return path


def _b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Certificates and kubeconfigs for the fake "
                                 "API server")
    ap.add_argument("dir")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("init")
    k = sub.add_parser("kubeconfig")
    k.add_argument("out")
    k.add_argument("--server", required=True)
    k.add_argument("--user")
    k.add_argument("--group", action="append", default=[])
    k.add_argument("--embed", action="store_true")
    k.add_argument("--token")
    a = ap.parse_args(argv)
    pki = PKI(a.dir)
    if a.cmd == "init":
        pki.server_cert()
        print(pki.ca_cert)
    else:
        if not a.user and a.token is None:
            ap.error("--user or --token is required")
        print(pki.kubeconfig(a.out, a.server, a.user, a.group, embed=a.embed, token=a.token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
