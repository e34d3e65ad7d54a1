#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Inside the install test's booted container: the administrator's side and the cluster's.

  node.py api-up                 start the fake API server (a transient unit) with Node cp1 and
                                 write /etc/kubernetes/kubelet.conf (system:node:cp1) and
                                 /root/admin.conf (system:masters)
  node.py annotate JSON          write cplet.io/target on Node cp1 as the administrator
  node.py status                 print cplet.io/status of Node cp1 (JSON, {} when absent)
  node.py wait-status EXPR SECS  wait until EXPR (Python, over `s`, the status) holds; prints it

The simulated node itself is tests/sim/simnode.py with --root /, so the manifests, the pod logs
and /proc look to the packaged cplet exactly as on a real node.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "apiserver"))

import apiclient  # noqa: E402
import pki  # noqa: E402

STATE = "/var/lib/cplet-test-api"
NODE = "cp1"


def admin():
    ca = pki.PKI(os.path.join(STATE, "pki"))
    cert, key = ca.client_cert("kubernetes-admin", ["system:masters"])
    with open(os.path.join(STATE, "port")) as f:
        port = int(f.read())
    return apiclient.Client(port, ca.ca_cert, cert, key)


def api_up():
    os.makedirs(STATE, exist_ok=True)
    subprocess.run(["systemd-run", "--unit=cplet-test-api", "--quiet", sys.executable,
                    os.path.join(TESTS, "apiserver", "fake_apiserver.py"), "--port", "0",
                    "--state-dir", STATE, "--node", NODE], check=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(STATE, "port")):
        if time.monotonic() > deadline:
            sys.exit("the fake API server did not start: see journalctl -u cplet-test-api")
        time.sleep(0.1)
    with open(os.path.join(STATE, "port")) as f:
        port = int(f.read())
    server = "https://127.0.0.1:%d" % port
    pki_dir = os.path.join(STATE, "pki")
    for path, user, group in (("/etc/kubernetes/kubelet.conf", "system:node:" + NODE, "system:nodes"),
                              ("/root/admin.conf", "kubernetes-admin", "system:masters")):
        subprocess.run([sys.executable, os.path.join(TESTS, "apiserver", "pki.py"), pki_dir, "kubeconfig",
                        path, "--server", server, "--user", user, "--group", group], check=True)
        os.chmod(path, 0o600)
    print(server)


def status():
    node = admin().get("/api/v1/nodes/" + NODE).json()
    return json.loads(node["metadata"].get("annotations", {}).get("cplet.io/status", "{}"))


def main(argv):
    if argv[0] == "api-up":
        api_up()
    elif argv[0] == "annotate":
        r = admin().patch("/api/v1/nodes/" + NODE, {"metadata": {"annotations": {"cplet.io/target": argv[1]}}})
        if r.status != 200:
            sys.exit("annotate: %r" % r)
    elif argv[0] == "status":
        print(json.dumps(status(), sort_keys=True))
    elif argv[0] == "wait-status":
        deadline = time.monotonic() + float(argv[2])
        s = {}
        while time.monotonic() < deadline:
            s = status()
            if eval(argv[1], {}, {"s": s}):
                print(json.dumps(s, sort_keys=True))
                return 0
            time.sleep(0.2)
        print(json.dumps(s, sort_keys=True))
        return 1
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
