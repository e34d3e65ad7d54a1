#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cplet daemon reads the new kube-apiserver's /version with the kubeconfig's client certificate
(issue 8: "/version of the local API server is read with these credentials too (anonymous
access may be disabled)"), printing TAP.

The simulated node is a cluster that does not let anonymous requests read /version, as the
real kube-apiserver does with
    --client-ca-file=<the cluster CA>
    --authentication-config=<anonymous enabled only for /livez, /readyz, /healthz>
The daemon runs with the kubelet's identity (a client certificate of that CA, from the fake
API server's PKI, tests/apiserver/pki.py); a target moves the node from v1.34.2 to v1.35.0.
Every kube-apiserver step must be verified by its versions: the daemon's "healthy" log line
carries no gate warning (anonymous would get 401 and the gate would say "the reported
versions are not verified"). Then `cplet upgrade` on the same node, anonymous by design, passes
with that warning, from a real 401.

Environment (tests/meson.build): CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR,
CPLET_SIM_LAUNCHER, CPLET_APISERVER_DIR.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "sim"))
sys.path.insert(0, os.environ.get("CPLET_APISERVER_DIR") or os.path.join(TESTS, "apiserver"))
sys.dont_write_bytecode = True

from apiclient import FakeServer  # noqa: E402
from simnode import SimNode  # noqa: E402

CPLET = os.environ.get("CPLET_BINARY", "")
PLUGINS = os.environ.get("CPLET_PLUGIN_BUILD_DIR", "")
NODE = "n1"
OLD, NEW, NEWER = "v1.34.2", "v1.35.0", "v1.35.1"
APISERVER = "kube-apiserver"
TERMINAL = ("Succeeded", "Failed", "RolledBack", "Refused")
# The gate's words when /version answers 401 (agent/lib/gate.c, versions_refused()).
UNVERIFIED = "the reported versions are not verified"
AUTHN_HEALTH_ONLY = """apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
"""

_results = []


def check(name, cond, diag=""):
    _results.append((bool(cond), name, diag))
    return bool(cond)


def emit_tap():
    print("1..%d" % len(_results))
    for i, (ok, name, diag) in enumerate(_results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        if not ok and diag:
            for line in str(diag).splitlines()[-30:]:
                print("#   " + line)
    sys.stdout.flush()
    return all(ok for ok, _, _ in _results)


def status_of(admin):
    r = admin.get("/api/v1/nodes/" + NODE)
    if r.status != 200:
        return None
    raw = r.json()["metadata"].get("annotations", {}).get("cplet.io/status")
    return json.loads(raw) if raw else None


def wait_terminal(admin, target_id, generation, timeout, seen):
    """The first terminal status of (id, generation); every distinct status goes into seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status_of(admin)
        if st and (not seen or seen[-1] != st):
            seen.append(st)
        if st and st.get("id") == target_id and st.get("generation") == generation \
                and st.get("phase") in TERMINAL:
            return st
        time.sleep(0.3)
    return None


def step_lines(log, component):
    """[(step, kind, revision, rest)] of the daemon's "Step N: COMPONENT KIND healthy at
    revision R[ (warning)]" lines."""
    return re.findall(r"Step (\d+): %s (\S+) healthy at revision (\d+)(.*)$" % re.escape(component),
                      log, re.M)


def cert_get(port, path, cert=None, key=None):
    import http.client
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


def run(tmp):
    api_dir = os.path.join(tmp, "api")
    os.makedirs(api_dir)
    srv = FakeServer(api_dir, ["--port", "0", "--node", NODE]).start()
    daemon = None
    node = None
    try:
        kubeconfig = srv.pki.kubeconfig(os.path.join(tmp, "kubelet.conf"), srv.url,
                                        "system:node:" + NODE, ["system:nodes"])
        cert, key = srv.pki.client_cert("system:node:" + NODE, ["system:nodes"])
        authn = os.path.join(tmp, "authentication-config.yaml")
        with open(authn, "w") as f:
            f.write(AUTHN_HEALTH_ONLY)
        node = SimNode(os.path.join(tmp, "node"), OLD, flags={
            APISERVER: {"client-ca-file": srv.pki.ca_cert, "authentication-config": authn}})
        node.up(timeout=60)
        port = node.ports[APISERVER]
        anon, body = cert_get(port, "/version")
        withcert, _ = cert_get(port, "/version", cert, key)
        live, _ = cert_get(port, "/livez")
        check("the node's kube-apiserver refuses anonymous /version (401), serves it to the node's "
              "certificate and /livez to anyone", anon == 401 and withcert == 200 and live == 200,
              (anon, body, withcert, live))

        log_path = os.path.join(tmp, "daemon.log")
        logf = open(log_path, "wb")
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
        daemon = subprocess.Popen([CPLET, "--root", node.root, "--plugin-dir", PLUGINS, "daemon",
                                   "--kubeconfig", kubeconfig], stdin=subprocess.DEVNULL,
                                  stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        admin = srv.admin()
        target = {"id": "auth", "generation": 1, "binaryVersion": NEW, "stableFor": "1s",
                  "stepTimeout": "60s"}
        r = admin.patch("/api/v1/nodes/" + NODE,
                        {"metadata": {"annotations": {"cplet.io/target": json.dumps(target)}}})
        check("the administrator writes the target (200)", r.status == 200, r)
        seen = []
        st = wait_terminal(admin, "auth", 1, 300, seen)
        with open(log_path, errors="replace") as f:
            log = f.read()
        check("the daemon's rollout to %s succeeded" % NEW, st is not None and st.get("phase") == "Succeeded",
              "status %s\nlog:\n%s" % (json.dumps(st), log[-3000:]))
        steps = step_lines(log, APISERVER)
        check("the daemon logged the kube-apiserver steps healthy (at least the binary and the "
              "emulated version)", len(steps) >= 2, log[-3000:])
        warned = [s for s in steps if s[3].strip()]
        check("every kube-apiserver step was verified by its /version (no gate warning on the "
              "'healthy' line)", steps and not warned, "\n".join(str(s) for s in warned) or log[-3000:])
        check("no 401 and no 'versions not verified' anywhere in the daemon's log or its statuses",
              UNVERIFIED not in log and "answered 401" not in log
              and not any(UNVERIFIED in json.dumps(s) for s in seen),
              [l for l in log.splitlines() if "401" in l or UNVERIFIED in l][:5])
        code, body = cert_get(port, "/version", cert, key)
        v = json.loads(body) if code == 200 else {}
        anon, _ = cert_get(port, "/version")
        check("afterwards the node's kube-apiserver runs %s and still refuses anonymous /version" % NEW,
              v.get("gitVersion") == NEW and anon == 401, (code, body, anon))

        # The command line stays anonymous: the same node, the gate on health alone, with the
        # warning the 401 causes.
        p = subprocess.run([CPLET, "--root", node.root, "--plugin-dir", PLUGINS, "upgrade",
                            "--binary-version", NEWER, "--stable-for", "0s", "--step-timeout", "30s",
                            "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=180, env=env)
        events = []
        for line in p.stdout.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        done = [e for e in events if e.get("event") == "done" and e.get("component") == APISERVER]
        check("cplet upgrade --binary-version %s (anonymous) on that node: exit 0" % NEWER, p.returncode == 0,
              "exit %s\nstderr %s\nstdout %s" % (p.returncode, p.stderr[-1500:], p.stdout[-1500:]))
        check("cplet upgrade: the kube-apiserver step passed on health alone, saying /version "
              "answered 401 and the versions are not verified",
              done and all("answered 401 (anonymous requests are not authenticated)" in (e.get("detail") or "")
                           and UNVERIFIED in (e.get("detail") or "") for e in done),
              json.dumps(done) or p.stdout[-1500:])
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                rc = daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                rc = daemon.wait()
            check("the daemon stops on SIGTERM with exit 0", rc == 0, rc)
        if node is not None:
            node.down()
        srv.stop()


def main():
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR") if not os.environ.get(v)]
    if missing:
        print("1..0 # SKIP %s not set (run through meson test)" % ", ".join(missing))
        return 0
    tmp = tempfile.mkdtemp(prefix="cplet-daemon-auth-")
    t = time.monotonic()
    try:
        run(tmp)
    except Exception:  # noqa: BLE001
        check("the test ran without an exception", False, traceback.format_exc())
    ok = emit_tap()
    print("# total %.1f s" % (time.monotonic() - t))
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("# work files kept in %s" % tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
