# SPDX-License-Identifier: Apache-2.0
"""Harness of `cplet daemon` end to end (tests/e2e/test-daemon.py) and of its benchmark
(tests/bench/bench-daemon.py): the fake API server (tests/apiserver) with a Node object per
simulated node (tests/sim), kubeconfigs made with pki.py, the daemon run in the foreground
with a NOTIFY_SOCKET this process binds, a watcher that records every value of the status
annotation the daemon writes, and kubectl (where installed) as the administrator.

Environment: as tests/e2e/e2e_util.py (CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR,
CPLET_EXAMPLES_DIR, CPLET_SIM_LAUNCHER).
"""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "apiserver"))
sys.dont_write_bytecode = True

import apiclient  # noqa: E402
from e2e_util import cplet_cmd, pid_alive  # noqa: E402

TARGET = "cplet.io/target"
STATUS = "cplet.io/status"
NODES = "/api/v1/nodes"
KUBECTL = shutil.which("kubectl")


def audit_time(ts):
    """The fake's audit timestamp (UTC, microseconds) as seconds since the epoch."""
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class Cluster:
    """One fake API server for every case: listener 0 is the API server the daemons' kubeconfigs
    name (the one that has outages), listener 1 the administrator's side door (observers and
    knobs keep working during an outage of listener 0)."""

    def __init__(self, nodes, git_version="v1.34.2"):
        self.dir = tempfile.mkdtemp(prefix="cplet-daemon-api-")
        args = ["--port", "0", "--extra-listeners", "1", "--git-version", git_version]
        for n in nodes:
            args += ["--node", n]
        self.srv = apiclient.FakeServer(self.dir, args)
        self.srv.start()
        self.port, self.side_port = self.srv.ports[0], self.srv.ports[1]
        self.admin_conf = self.srv.kubeconfig(os.path.join(self.dir, "admin.conf"), "kubernetes-admin",
                                              ["system:masters"])
        self.kubectl_cache = os.path.join(self.dir, "kubectl-cache")
        self._admin = None

    def admin(self):
        """The administrator on the side listener (never down)."""
        if self._admin is None:
            self._admin = self.srv.client("kubernetes-admin", ["system:masters"], port=self.side_port)
        return self._admin

    def kubelet_conf(self, name):
        """kubelet.conf of system:node:NAME (group system:nodes), naming listener 0."""
        return self.srv.kubeconfig(os.path.join(self.dir, "kubelet-%s.conf" % name), "system:node:" + name,
                                   ["system:nodes"])

    def knobs(self, **kw):
        return self.admin().knobs(**kw)

    def node(self, name):
        r = self.admin().get(NODES + "/" + name)
        if r.status != 200:
            raise RuntimeError("GET node %s: %r" % (name, r))
        return r.json()

    def annotations(self, name):
        return self.node(name)["metadata"].get("annotations") or {}

    def status(self, name):
        """(raw string, parsed or None) of the node's status annotation."""
        raw = self.annotations(name).get(STATUS)
        try:
            return raw, json.loads(raw) if raw is not None else None
        except ValueError:
            return raw, None

    def patch_annotations(self, name, ann):
        r = self.admin().patch(NODES + "/" + name, {"metadata": {"annotations": ann}})
        if r.status != 200:
            raise RuntimeError("PATCH node %s: %r" % (name, r))
        return r.json()

    def kubectl(self, *args, timeout=60):
        p = subprocess.run([KUBECTL, "--kubeconfig", self.admin_conf, "--cache-dir", self.kubectl_cache,
                            "--request-timeout", "20s"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def annotate(self, name, key, value):
        """Writes an annotation as an administrator would: `kubectl annotate --overwrite` where
        kubectl is installed, else a merge patch. Returns (how, wall time after the write)."""
        if KUBECTL:
            rc, out, err = self.kubectl("annotate", "node", name, "%s=%s" % (key, value), "--overwrite")
            if rc != 0:
                raise RuntimeError("kubectl annotate node %s %s: exit %d: %s" % (name, key, rc, err.strip()))
            return "kubectl", time.time()
        self.patch_annotations(name, {key: value})
        return "apiclient", time.time()

    def events(self, name=None):
        """core/v1 Events in namespace default (about Node `name`), oldest first."""
        r = self.admin().get("/api/v1/namespaces/default/events")
        items = r.json().get("items", []) if r.status == 200 else []
        if name:
            items = [e for e in items if (e.get("involvedObject") or {}).get("name") == name]
        # in the order they were written (one resourceVersion counter, as the fake's etcd)
        return sorted(items, key=lambda e: int((e.get("metadata") or {}).get("resourceVersion") or 0))

    def audit(self, user=None, since=None, until=None):
        out = []
        for rec in self.srv.audit():
            if user is not None and rec.get("user") != user:
                continue
            t = audit_time(rec["ts"])
            if since is not None and t < since:
                continue
            if until is not None and t > until:
                continue
            rec["t"] = t
            out.append(rec)
        return out

    def stop(self):
        if self._admin:
            self._admin.close()
        rc = self.srv.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


def is_watch(rec):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(rec["path"]).query)
    return q.get("watch", [""])[0] in ("true", "1")


def is_status_patch(rec, node):
    return rec["method"] == "PATCH" and urllib.parse.urlsplit(rec["path"]).path == NODES + "/" + node


class StatusLog:
    """Every value the node's status (and target) annotation takes, as the administrator sees it
    through a watch on the side listener: [(wall time seen, raw, parsed)]."""

    def __init__(self, cluster, node):
        self.cluster, self.node = cluster, node
        self.cond = threading.Condition()
        self.values = []
        self.targets = []
        self.errors = []
        self._stop = False
        self._last = self._last_target = object()
        self.client = cluster.srv.client("kubernetes-admin", ["system:masters"], port=cluster.side_port)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _see(self, obj):
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        raw, tgt = ann.get(STATUS), ann.get(TARGET)
        now = time.time()
        with self.cond:
            if raw != self._last:
                self._last = raw
                try:
                    parsed = json.loads(raw) if raw is not None else None
                except ValueError:
                    parsed = None
                self.values.append((now, raw, parsed))
            if tgt != self._last_target:
                self._last_target = tgt
                self.targets.append((now, tgt))
            self.cond.notify_all()

    def _run(self):
        rv = None
        while not self._stop:
            try:
                if rv is None:
                    r = self.client.get(NODES + "?fieldSelector=metadata.name%3D" + self.node)
                    lst = r.json()
                    rv = lst["metadata"]["resourceVersion"]
                    for o in lst.get("items", []):
                        self._see(o)
                status, evs, stream = self.client.watch(
                    NODES + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=2&resourceVersion=%s"
                    "&fieldSelector=metadata.name%%3D%s" % (rv, self.node), timeout=30)
                if status != 200:
                    rv = None
                    time.sleep(0.1)
                    continue
                for e in evs:
                    o = e.get("object") or {}
                    if e.get("type") == "ERROR":
                        rv = None
                        break
                    rv = (o.get("metadata") or {}).get("resourceVersion") or rv
                    if e.get("type") in ("ADDED", "MODIFIED"):
                        self._see(o)
                    if self._stop:
                        break
                stream.close()
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
                time.sleep(0.2)

    def stop(self):
        self._stop = True
        self.thread.join(10)
        self.client.close()

    def snapshot(self):
        with self.cond:
            return list(self.values)

    def latest(self):
        with self.cond:
            return self.values[-1] if self.values else (None, None, None)

    def wait(self, pred, timeout=30.0, since_index=0, daemon=None):
        """The first (t, raw, parsed) from index since_index on with pred(parsed), else None (at
        the timeout, or 2 s after `daemon` ended)."""
        deadline = time.monotonic() + timeout
        i = since_index
        with self.cond:
            while True:
                while i < len(self.values):
                    v = self.values[i]
                    i += 1
                    if v[2] is not None and pred(v[2]):
                        return v
                if daemon is not None and not daemon.alive():
                    deadline = min(deadline, time.monotonic() + 2)
                    daemon = None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def mark(self):
        with self.cond:
            return len(self.values)


def phase_is(*phases):
    return lambda s: s.get("phase") in phases


class Daemon:
    """`cplet daemon` in the foreground: stderr lines and sd_notify messages recorded with their
    wall time."""

    def __init__(self, root, kubeconfig, node_name=None, extra=(), env=None):
        self.root = root
        self.ndir = tempfile.mkdtemp(prefix="cplet-nfy-")
        self.notify_path = os.path.join(self.ndir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.notify_path)
        self.sock.settimeout(0.2)
        args = ["daemon", "--kubeconfig", kubeconfig]
        if node_name:
            args += ["--node-name", node_name]
        self.cmd = cplet_cmd(root, args + list(extra))
        e = dict(env if env is not None else os.environ)
        e.pop("JOURNAL_STREAM", None)
        e.pop("WATCHDOG_USEC", None)
        e.pop("WATCHDOG_PID", None)
        e["NOTIFY_SOCKET"] = self.notify_path
        self.cond = threading.Condition()
        self.err_lines = []
        self.notes = []
        self._stop = False
        self.started = time.time()
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL, env=e)
        self.pid = self.p.pid
        self.rc = None
        self.out = ""
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_ntf = threading.Thread(target=self._read_notify, daemon=True)
        for t in (self._t_err, self._t_out, self._t_ntf):
            t.start()

    def _read_err(self):
        for line in self.p.stderr:
            with self.cond:
                self.err_lines.append((time.time(), line.rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_out(self):
        self.out = self.p.stdout.read()

    def _read_notify(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            now = time.time()
            with self.cond:
                for line in data.decode(errors="replace").split("\n"):
                    if line:
                        self.notes.append((now, line))
                self.cond.notify_all()

    @property
    def err(self):
        with self.cond:
            return "\n".join(l for _, l in self.err_lines)

    def alive(self):
        return self.p.poll() is None

    def wait_notify(self, pred, timeout=20.0, since=0.0):
        """The first (t, line) of sd_notify with t >= since and pred(line); None on timeout or
        when the daemon ended without it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.notes:
                    if t >= since and pred(line):
                        return t, line
                if time.monotonic() > deadline:
                    return None
                if self.p.poll() is not None:
                    # a last datagram may still be in the socket
                    self.cond.wait(0.3)
                    for t, line in self.notes:
                        if t >= since and pred(line):
                            return t, line
                    return None
                self.cond.wait(0.05)

    def wait_ready(self, timeout=20.0):
        return self.wait_notify(lambda l: l == "READY=1", timeout)

    def notify_lines(self, prefix=None):
        with self.cond:
            return [(t, l) for t, l in self.notes if prefix is None or l.startswith(prefix)]

    def describe(self):
        """For failure messages: exit status and the tail of stderr."""
        rc = self.p.poll()
        tail = "\n".join(l for _, l in self.err_lines[-15:])
        return "daemon %s (pid %d, %s): stderr tail:\n%s" % (
            " ".join(self.cmd[-6:]), self.pid, "running" if rc is None else "exited %s" % rc, tail or "(empty)")

    def send_signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=30.0):
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.p.wait()
            self.rc = ("timeout", self.p.returncode)
        self._t_err.join(5)
        self._t_out.join(5)
        return self.rc

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Signals and waits: (exit status, seconds it took)."""
        t0 = time.monotonic()
        self.send_signal(sig)
        rc = self.wait(timeout)
        return rc, time.monotonic() - t0

    def close(self):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()
        self._stop = True
        self._t_ntf.join(2)
        self.sock.close()
        shutil.rmtree(self.ndir, ignore_errors=True)
        return not pid_alive(self.pid)


def ctxt_switches(pid):
    """Voluntary + involuntary context switches of every thread of pid (/proc), or None."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def private_memory_kib(pid):
    """{Rss, Pss, Private_Clean, Private_Dirty, Private} in KiB from /proc/PID/smaps_rollup."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                parts = v.split()
                if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous") and parts:
                    out[k] = int(parts[0])
    except OSError:
        return None
    out["Private"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out
