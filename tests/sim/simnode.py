#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Simulated control-plane node for cplet's end-to-end tests and demos.

A node root DIR gets:
  DIR/etc/kubernetes/manifests/    kubeadm-style static pods (0700 dir, 0600 files) for
                                   kube-apiserver, kube-controller-manager, kube-scheduler
  DIR/sim/kubelet.pid              the fake kubelet (tests/sim/fake_kubelet.py)
  DIR/sim/events.jsonl             its start/stop/exit events
  DIR/sim/logs/<file>.log          component output; DIR/sim/logs/kubelet.log
  DIR/sim/certs/tls.{crt,key}      the node's self-signed serving cert
  DIR/sim/knobs.json               knobs of the fake components (read at each start)
  DIR/sim/node.json                what `up` printed (ports, pids, paths)

CLI:
  simnode.py up --root DIR [--version v1.34.2] [--knobs FILE] [--base-port N] [--backoff S]
                [--kubeconfig K --node-name N]   (mirror pods in the API server of K)
  simnode.py status --root DIR
  simnode.py wait --root DIR [--timeout S]
  simnode.py down --root DIR

Library:
  from simnode import SimNode
  with SimNode(root, "v1.34.2", knobs={...}) as node:   # up() ... down()
      node.ports["kube-apiserver"], node.events(), node.wait_healthy(10), node.get(...)

Ports: three consecutive ports below the kernel's ephemeral range, reserved by an
abstract unix socket "@cplet-sim-ports-<base>" that the kubelet holds while it lives, so
parallel tests never collide.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.path.join(HERE, "bin")
KUBELET = os.path.join(HERE, "fake_kubelet.py")
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
HEALTH_PATH = {"kube-apiserver": "/readyz", "kube-controller-manager": "/healthz",
               "kube-scheduler": "/readyz"}
MANIFEST_SUBDIR = os.path.join("etc", "kubernetes", "manifests")


def find_launcher():
    """The compiled launcher every simulated container runs as (tests/sim/launcher.c): meson
    sets $CPLET_SIM_LAUNCHER for the tests; scripts/demo builds into build/."""
    path = os.environ.get("CPLET_SIM_LAUNCHER") or os.path.join(REPO, "build", "tests", "sim",
                                                                 "cplet-sim-launcher")
    if not os.access(path, os.X_OK):
        raise RuntimeError("the simulated node's launcher %s is not built: run `meson setup build "
                           "&& ninja -C build` (or set CPLET_SIM_LAUNCHER)" % path)
    return os.path.realpath(path)


def template_dir():
    ex = os.environ.get("CPLET_EXAMPLES_DIR") or os.path.join(REPO, "examples")
    return os.path.join(ex, "node", MANIFEST_SUBDIR)


# --------------------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------------------

def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _claim(base):
    """An abstract-namespace unix socket named after the port block: exclusive on the host
    (network namespace), released by the kernel when the last holder exits. Returns its fd
    or None when another node holds it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind("\0cplet-sim-ports-%d" % base)
    except OSError:
        s.close()
        return None
    return s.detach()


def reserve_ports(count=3, base=None):
    """Returns (ports, claim_fd). Keep claim_fd open (or hand it to a child) while in use."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph_lo = 32768
    hi = eph_lo if eph_lo > 21000 else 32768
    lo = 20000 if hi > 21000 else 10000
    rng = random.Random(os.getpid() ^ int(time.time() * 1e6))
    step = 4 if count <= 4 else count
    for attempt in range(400):
        if base is not None:
            b = base
        else:
            b = lo + step * rng.randrange(0, (hi - lo - count) // step)
        fd = _claim(b)
        if fd is None:
            if base is not None:
                raise RuntimeError("ports %d..%d are reserved by another simulated node"
                                   % (b, b + count - 1))
            continue
        ports = list(range(b, b + count))
        if all(_port_free(p) for p in ports):
            return ports, fd
        os.close(fd)
        if base is not None:
            raise RuntimeError("ports %d..%d are not all free" % (b, b + count - 1))
    raise RuntimeError("no free port block found")


# --------------------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------------------

def _flag_name(line):
    m = re.match(r"^\s*- --([^=\s]+)", line)
    return m.group(1) if m else None


# Flags the simulated node sets in the kubeadm templates (value None: the flag is dropped).
# The template's --client-ca-file=/etc/kubernetes/pki/ca.crt is a path no test machine has, and
# the fake kube-apiserver, like the real one, exits when it cannot read it: a node has a client CA
# only when a test gives one (SimNode(flags={"kube-apiserver": {"client-ca-file": PATH}})).
DEFAULT_FLAGS = {"kube-apiserver": {"client-ca-file": None}}


def render_manifest(component, template, version, port, flags=None):
    """kubeadm template text -> simulated manifest text (kubeadm formatting kept).
    flags: {name: value or None} set (in kubeadm's sorted position) or dropped, over
    DEFAULT_FLAGS."""
    lines = template.splitlines(keepends=True)
    out = []
    for line in lines:
        if re.match(r"^\s*initialDelaySeconds:", line):
            continue  # kubeadm omits zero values
        line = re.sub(r"^(\s*image: )(\S+?):[^:/\s]+$",
                      lambda m: "%s%s:%s" % (m.group(1), m.group(2), version), line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*- --advertise-address=).*$", r"\g<1>127.0.0.1", line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*- --bind-address=).*$", r"\g<1>127.0.0.1", line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*- --secure-port=).*$", r"\g<1>%d" % port, line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*kubeadm\.kubernetes\.io/kube-apiserver\.advertise-address\.endpoint: ).*$",
                      r"\g<1>127.0.0.1:%d" % port, line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*host: ).*$", r"\g<1>127.0.0.1", line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*port: )\d+$", r"\g<1>%d" % port, line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*periodSeconds: )\d+$", r"\g<1>1", line.rstrip("\n")) + "\n"
        line = re.sub(r"^(\s*timeoutSeconds: )\d+$", r"\g<1>5", line.rstrip("\n")) + "\n"
        out.append(line)
    # add --bind-address / --secure-port where the template lacks them, in kubeadm's
    # (sorted) position among the command's flags
    for flag, value in (("bind-address", "127.0.0.1"), ("secure-port", str(port))):
        idx = [i for i, l in enumerate(out) if _flag_name(l)]
        if any(_flag_name(out[i]) == flag for i in idx):
            continue
        _insert_flag(out, idx, flag, value)
    wanted = dict(DEFAULT_FLAGS.get(component, {}))
    wanted.update(flags or {})
    for flag, value in sorted(wanted.items()):
        idx = [i for i, l in enumerate(out) if _flag_name(l)]
        have = [i for i in idx if _flag_name(out[i]) == flag]
        for i in reversed(have):
            del out[i]
        if value is not None:
            _insert_flag(out, [i for i, l in enumerate(out) if _flag_name(l)], flag, value)
    text = "".join(out)
    _check_rendered(component, text, version, port)
    return text


def _insert_flag(out, idx, flag, value):
    indent = re.match(r"^(\s*)-", out[idx[0]]).group(1)
    pos = idx[-1] + 1
    for i in idx:
        if _flag_name(out[i]) > flag:
            pos = i
            break
    out.insert(pos, "%s- --%s=%s\n" % (indent, flag, value))


def _check_rendered(component, text, version, port):
    import yaml
    doc = yaml.safe_load(text)
    c = doc["spec"]["containers"][0]
    assert c["image"].endswith(":" + version), c["image"]
    argv = c.get("command", []) + c.get("args", [])
    assert os.path.basename(argv[0]) == component, argv[0]
    assert "--secure-port=%d" % port in argv, argv
    assert "--bind-address=127.0.0.1" in argv, argv
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            assert c[probe]["httpGet"]["port"] == port
            assert c[probe]["httpGet"]["host"] == "127.0.0.1"


def atomic_write(path, data, mode=0o600):
    """Dot-file in the same directory, fsync, rename over, fsync the directory."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, ".%s.tmp-%d" % (base, os.getpid()))
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------

def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def node_processes(root):
    """[(pid, argv)] of live processes carrying CPLET_SIM_NODE=<root> in their environment."""
    marker = b"\0CPLET_SIM_NODE=" + os.fsencode(os.path.realpath(root)) + b"\0"
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = b"\0" + f.read()
            if marker not in env and not env.endswith(marker[:-1]):
                continue
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
        except OSError:
            continue
        if pid_alive(int(name)):
            found.append((int(name), argv))
    return found


def https_get(port, path, timeout=2.0, host="127.0.0.1"):
    """(status, body) or (None, error text). Certificates are not verified (like probes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# the node
# --------------------------------------------------------------------------------------

class SimNode:
    def __init__(self, root, version=None, knobs=None, base_port=None, backoff=0.5,
                 backoff_max=10.0, grace=2.0, bin_dir=None, components=COMPONENTS,
                 tie_to_parent=True, flags=None, kubeconfig=None, node_name=None, manifest_filter=None):
        """version: a tag for all three, or {component: tag}. knobs: dict or a file path.
        tie_to_parent: the kubelet stops everything when this process goes away.
        flags: {component: {flag: value or None}} set in (or dropped from) the first manifests,
        e.g. {"kube-apiserver": {"client-ca-file": CA, "authentication-config": FILE}}.
        kubeconfig: the kubelet's (identity system:node:<node_name>): it keeps the mirror pods
        of its static pods in that API server; None: no API server (every test before issue 9).
        node_name: the node's name (the kubelet's --node-name; default sim-node).
        manifest_filter: f(component, text) -> text, applied to each rendered manifest."""
        self.root = os.path.realpath(root)
        self.info_path = os.path.join(self.root, "sim", "node.json")
        saved = {}
        if os.path.exists(self.info_path):
            try:
                with open(self.info_path) as f:
                    saved = json.load(f)
            except (OSError, ValueError):
                saved = {}
        if version is None:
            version = saved.get("versions") or "v1.34.2"
        self.versions = dict(version) if isinstance(version, dict) else {c: version for c in components}
        self.knobs = knobs
        self.base_port = base_port
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.grace = grace
        self.bin_dir = os.path.realpath(bin_dir or BIN_DIR)
        self.components = tuple(components)
        self.tie_to_parent = tie_to_parent
        self.flags = {c: dict(f) for c, f in (flags or {}).items()}
        self.kubeconfig = os.path.abspath(kubeconfig) if kubeconfig else saved.get("kubeconfig")
        self.node_name = node_name or saved.get("node_name")
        self.manifest_filter = manifest_filter
        self.manifest_dir = os.path.join(self.root, MANIFEST_SUBDIR)
        self.sim_dir = os.path.join(self.root, "sim")
        self.log_dir = os.path.join(self.sim_dir, "logs")
        self.cert_dir = os.path.join(self.sim_dir, "certs")
        self.events_path = os.path.join(self.sim_dir, "events.jsonl")
        self.pidfile = os.path.join(self.sim_dir, "kubelet.pid")
        self.knobs_path = (os.path.abspath(knobs) if isinstance(knobs, str)
                           else os.path.join(self.sim_dir, "knobs.json"))
        self.ports = dict(saved.get("ports") or {})
        self._popen = None

    # ---- paths and files
    def manifest_path(self, component):
        return os.path.join(self.manifest_dir, component + ".yaml")

    def read_manifest(self, component):
        with open(self.manifest_path(component)) as f:
            return f.read()

    def write_manifest(self, component, text):
        atomic_write(self.manifest_path(component), text)

    def set_knobs(self, knobs):
        """Rewrites the knobs file; the fakes read it at their next start."""
        atomic_write(self.knobs_path, json.dumps(knobs, indent=2) + "\n", 0o644)

    # ---- lifecycle
    def kubelet_pid(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def up(self, timeout=20.0, wait=True):
        if self.kubelet_pid():
            raise RuntimeError("a simulated kubelet already runs for %s (pid %d)"
                               % (self.root, self.kubelet_pid()))
        for d in (self.manifest_dir, self.sim_dir):
            if os.path.isdir(d):
                shutil.rmtree(d)
        os.makedirs(os.path.join(self.root, "etc", "kubernetes"), mode=0o755, exist_ok=True)
        os.mkdir(self.manifest_dir, 0o700)
        os.chmod(self.manifest_dir, 0o700)
        os.makedirs(self.log_dir, mode=0o755)
        if not isinstance(self.knobs, str):
            self.set_knobs(self.knobs or {})
        ports, lock_fd = reserve_ports(len(COMPONENTS), self.base_port)
        try:
            self.ports = dict(zip(COMPONENTS, ports))
            for comp in self.components:
                with open(os.path.join(template_dir(), comp + ".yaml")) as f:
                    tmpl = f.read()
                text = render_manifest(comp, tmpl, self.versions[comp], self.ports[comp],
                                       self.flags.get(comp))
                if self.manifest_filter:
                    text = self.manifest_filter(comp, text)
                atomic_write(self.manifest_path(comp), text)
            sys.path.insert(0, HERE)
            from fake_component import ensure_cert
            ensure_cert(self.cert_dir)
            cmd = [sys.executable, KUBELET, "--root", self.root, "--bin-dir", self.bin_dir,
                   "--launcher", find_launcher(),
                   "--events", self.events_path, "--knobs", self.knobs_path,
                   "--cert-dir", self.cert_dir, "--log-dir", self.log_dir,
                   "--pidfile", self.pidfile, "--backoff", str(self.backoff),
                   "--backoff-max", str(self.backoff_max), "--grace", str(self.grace)]
            if self.tie_to_parent:
                cmd += ["--parent-pid", str(os.getpid())]
            if self.node_name:
                cmd += ["--node-name", self.node_name]
            if self.kubeconfig:
                cmd += ["--kubeconfig", self.kubeconfig]
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", CPLET_SIM_NODE=self.root)
            with open(os.path.join(self.log_dir, "kubelet.log"), "ab") as logf:
                os.set_inheritable(lock_fd, True)
                self._popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                               stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True, pass_fds=(lock_fd,))
        finally:
            os.close(lock_fd)  # the kubelet holds the reservation from now on
        deadline = time.monotonic() + 5
        while not os.path.exists(self.pidfile):
            if self._popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake kubelet did not start:\n" + self._tail("kubelet.log"))
            time.sleep(0.005)
        self._write_info()
        if wait and not self.wait_healthy(timeout):
            msg = "simulated node did not become healthy in %.0fs: %s\n%s" % (
                timeout, json.dumps(self.health()), self._tails())
            self.down()
            raise RuntimeError(msg)
        return self

    def _write_info(self):
        info = self.info()
        atomic_write(self.info_path, json.dumps(info, indent=2) + "\n", 0o644)

    def info(self):
        return {"root": self.root, "versions": self.versions, "ports": self.ports,
                "kubelet_pid": self.kubelet_pid(), "manifests": self.manifest_dir,
                "events": self.events_path, "logs": self.log_dir, "certs": self.cert_dir,
                "ca": os.path.join(self.cert_dir, "tls.crt"), "knobs": self.knobs_path,
                "bin_dir": self.bin_dir, "kubeconfig": self.kubeconfig,
                "node_name": self.node_name}

    def down(self, timeout=10.0):
        """Stops the kubelet (which stops its pods), then kills whatever of this node is left.
        Returns the list of processes that could not be removed (empty on success)."""
        pid = self.kubelet_pid() or (self._popen.pid if self._popen and self._popen.poll() is None else None)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._popen is not None and self._popen.pid == pid:
                    if self._popen.poll() is not None:
                        break
                elif not pid_alive(pid):
                    break
                time.sleep(0.01)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._popen is not None:
            try:
                self._popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            self._popen = None
        left = node_processes(self.root)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not left:
                break
            for p, _ in left:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 2
            while left and time.monotonic() < deadline:
                time.sleep(0.02)
                left = node_processes(self.root)
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        return left

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
        return False

    # ---- observation
    def get(self, component, path, timeout=2.0):
        return https_get(self.ports[component], path, timeout)

    def version(self):
        code, body = self.get("kube-apiserver", "/version")
        return json.loads(body) if code == 200 else None

    def health(self):
        return {c: self.get(c, HEALTH_PATH[c], 1.0)[0] for c in self.components}

    def wait_healthy(self, timeout=20.0, components=None):
        deadline = time.monotonic() + timeout
        todo = list(components or self.components)
        while True:
            todo = [c for c in todo if self.get(c, HEALTH_PATH[c], 1.0)[0] != 200]
            if not todo:
                return True
            if time.monotonic() > deadline or (self._popen is not None and self._popen.poll() is not None):
                return False
            time.sleep(0.02)

    def events(self, event=None, file=None):
        out = []
        # A read racing the fake kubelet's append can see the new length before the bytes
        # (zeros, or half a line ending where a chunk did): read again shortly after.
        for attempt in range(5):
            out = []
            try:
                with open(self.events_path) as f:
                    for line in f:
                        if line.endswith("\n"):
                            out.append(json.loads(line))
                break
            except FileNotFoundError:
                break
            except ValueError:
                if attempt == 4:
                    raise
                time.sleep(0.05)
        if event is not None:
            out = [e for e in out if e["event"] == event]
        if file is not None:
            out = [e for e in out if e["file"] == file]
        return out

    def wait_event(self, pred, timeout=10.0, since=0.0):
        """First event e with e["t"] >= since and pred(e), or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events():
                if e["t"] >= since and pred(e):
                    return e
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)

    def pids(self):
        """{manifest file: pid} of the processes the kubelet runs now (from its events)."""
        cur = {}
        for e in self.events():
            if e["event"] == "start":
                cur[e["file"]] = e["pid"]
            elif e["event"] in ("stop", "exit") and cur.get(e["file"]) == e["pid"]:
                del cur[e["file"]]
        return {f: p for f, p in cur.items() if pid_alive(p)}

    def processes(self):
        return node_processes(self.root)

    def status(self):
        st = self.info()
        st["kubelet_alive"] = st["kubelet_pid"] is not None
        pids = self.pids() if st["kubelet_alive"] else {}
        comps = {}
        for c in self.components:
            code = self.get(c, HEALTH_PATH[c], 1.0)[0] if c in self.ports and st["kubelet_alive"] else None
            comps[c] = {"port": self.ports.get(c), "pid": pids.get(c + ".yaml"),
                        "health": code}
        st["components"] = comps
        st["apiserverVersion"] = self.version() if st["kubelet_alive"] and "kube-apiserver" in self.ports else None
        return st

    def _tail(self, name, n=15):
        try:
            with open(os.path.join(self.log_dir, name), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _tails(self):
        return "\n".join("--- %s\n%s" % (n, self._tail(n)) for n in sorted(os.listdir(self.log_dir))) \
            if os.path.isdir(self.log_dir) else ""


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create a fresh node root and start it")
    up.add_argument("--root", required=True)
    up.add_argument("--version", default="v1.34.2")
    up.add_argument("--knobs", help="knobs JSON file (default: ROOT/sim/knobs.json, empty)")
    up.add_argument("--base-port", type=int)
    up.add_argument("--backoff", type=float, default=0.5)
    up.add_argument("--backoff-max", type=float, default=10.0)
    up.add_argument("--timeout", type=float, default=20.0)
    up.add_argument("--no-wait", action="store_true")
    up.add_argument("--kubeconfig", help="the kubelet's kubeconfig: mirror pods in that API server")
    up.add_argument("--node-name", help="the node's name (default sim-node)")
    for name in ("down", "status", "wait"):
        sp = sub.add_parser(name)
        sp.add_argument("--root", required=True)
        if name == "wait":
            sp.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args(argv)
    if a.cmd == "up":
        knobs = a.knobs
        node = SimNode(a.root, a.version or "v1.34.2", knobs=knobs, base_port=a.base_port, backoff=a.backoff,
                       backoff_max=a.backoff_max, tie_to_parent=False, kubeconfig=a.kubeconfig,
                       node_name=a.node_name)
        try:
            node.up(timeout=a.timeout, wait=not a.no_wait)
        except RuntimeError as e:
            sys.stderr.write("simnode: %s\n" % e)
            return 1
        print(json.dumps(node.info(), sort_keys=True))
        return 0
    node = SimNode(a.root)
    if a.cmd == "down":
        left = node.down()
        if left:
            sys.stderr.write("simnode: processes left: %s\n" % left)
            return 1
        return 0
    if a.cmd == "wait":
        ok = node.wait_healthy(a.timeout)
        print(json.dumps(node.health(), sort_keys=True))
        return 0 if ok else 1
    st = node.status()
    print(json.dumps(st, indent=2, sort_keys=True))
    return 0 if st["kubelet_alive"] else 3


if __name__ == "__main__":
    sys.exit(main())
