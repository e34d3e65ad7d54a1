#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fake kubelet for cplet's simulated control-plane node.

Watches ROOT/etc/kubernetes/manifests like the kubelet's file source (FACTS.md, "How the
kubelet treats the manifest directory"):

  * every file whose name does not begin with "." is a static pod (YAML or JSON);
  * inotify on the directory (falls back to polling every 5 ms) plus a periodic re-scan;
  * a file whose decoded pod changed (a comment or a touch is no change, like the real
    kubelet's pod hash) -> stop the old pod (SIGTERM to its process group, SIGKILL after
    --grace seconds, wait for exit so the port is free), then start the new one;
  * a deleted file -> stop; an unparseable file -> log and ignore (keep what ran);
  * restart policy Always with a crash back-off (--backoff, doubling, --backoff-max).

Each container runs `command` + `args` with $(VAR) expanded from its `env` as the kubelet does;
argv[0] is resolved by basename in --bin-dir (the "image"). The process carries exactly that
argv: it is the compiled --launcher, which runs the Python fake as its child (launcher.c). It
runs as securityContext.runAsUser (container, else pod) when set, else as the kubelet's user.
A kube-* binary that is not there counts as a crash; others (etcd) are skipped.
Environment of a container: CPLET_SIM_IMAGE (its image), CPLET_SIM_KNOBS,
CPLET_SIM_CERT_DIR, CPLET_SIM_NODE (marker for clean-up), plus its manifest `env` values.
With --kubeconfig K (identity system:node:<--node-name>) it keeps a mirror pod of every static
pod in that API server, as the real kubelet does (mirror.py: names, annotations, owner,
outdated ones replaced, status with Ready from the startup/readiness probes); the API server
unreachable, the pods keep running and it retries. Without --kubeconfig there is no API.
Output goes to LOG_DIR/<file>.log. Events are JSON lines in --events:
  {"t", "event": start|stop|exit|skip|invalid, "file", "container", "pid", "image",
   "argv", "code"}
"""

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time

try:
    import yaml
    try:
        _Loader = yaml.CSafeLoader
    except AttributeError:  # pragma: no cover
        _Loader = yaml.SafeLoader
except ImportError:  # pragma: no cover
    yaml = None

HERE = os.path.dirname(os.path.realpath(__file__))

# --------------------------------------------------------------------------------------
# logging and events
# --------------------------------------------------------------------------------------

_log_lock = threading.Lock()


def log(msg, level="I"):
    now = time.time()
    lt = time.localtime(now)
    with _log_lock:
        sys.stderr.write("%s%02d%02d %02d:%02d:%02d.%06d %7d fake_kubelet] %s\n" % (
            level, lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec,
            int((now % 1) * 1e6), os.getpid(), msg))
        sys.stderr.flush()


class EventLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8") if path else None

    def emit(self, event, t=None, **fields):
        rec = {"t": t if t is not None else time.time(), "event": event}
        rec.update(fields)
        if self.f is None:
            return
        with self.lock:
            self.f.write(json.dumps(rec, sort_keys=False) + "\n")
            self.f.flush()


# --------------------------------------------------------------------------------------
# inotify through ctypes
# --------------------------------------------------------------------------------------

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
              | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)


class Inotify:
    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.wd = -1

    def watch(self, path):
        self.wd = self._add(self.fd, os.fsencode(path), WATCH_MASK)
        if self.wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch %s failed" % path)

    def drain(self):
        """Reads all pending events; returns True when the watch itself went away."""
        lost = False
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return lost
            off = 0
            while off + 16 <= len(buf):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buf, off)
                off += 16 + length
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    lost = True


# --------------------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------------------

class InvalidManifest(Exception):
    pass


def expand(text, env):
    """The kubelet's $(VAR) expansion (kubernetes third_party/forked/golang/expansion):
    "$$" -> "$", "$(NAME)" -> its value, an unknown NAME stays "$(NAME)", any other "$" stays."""
    out = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(" and ")" in text[cursor + 2:]:
                close = text.index(")", cursor + 2)
                name = text[cursor + 2:close]
                out.append(env[name] if name in env else "$(" + name + ")")
                advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def meta_of(doc):
    return doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}


FIELD_REFS = {"spec.nodeName": "sim-node", "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
              "spec.serviceAccountName": "", "status.podIPs": "127.0.0.1", "status.hostIPs": "127.0.0.1"}


def container_env(c, doc, meta):
    """The container's environment as the kubelet builds it (makeEnvironmentVariables): the
    `env` entries in order, a literal value expanded with the entries before it, valueFrom
    fieldRefs resolved for a hostNetwork pod on this node."""
    env = {}
    for e in c.get("env") or []:
        if not isinstance(e, dict) or "name" not in e:
            continue
        name = str(e["name"])
        value = e.get("value")
        if value not in (None, ""):
            env[name] = expand(str(value), env)
        elif isinstance(e.get("valueFrom"), dict):
            ref = (e["valueFrom"].get("fieldRef") or {}).get("fieldPath", "")
            env[name] = {"metadata.name": str(meta.get("name") or ""),
                         "metadata.namespace": str(meta.get("namespace") or "default")}.get(
                             ref, FIELD_REFS.get(ref, ""))
        else:
            env[name] = ""
    return env


def run_as_user(c, spec):
    """securityContext.runAsUser of the container, else of the pod, else None (the image's user)."""
    for sc in (c.get("securityContext"), spec.get("securityContext")):
        if isinstance(sc, dict) and sc.get("runAsUser") is not None:
            uid = sc["runAsUser"]
            if not isinstance(uid, int) or isinstance(uid, bool) or not 0 <= uid <= 2147483647:
                raise InvalidManifest("runAsUser %r is not a user id" % (uid,))
            return uid
    return None


def decode_pod(data):
    text = data.decode("utf-8")
    stripped = text.lstrip()
    try:
        if stripped.startswith("{"):
            doc = json.loads(text)
        else:
            if yaml is None:
                raise InvalidManifest("python3-yaml is not installed")
            doc = yaml.load(text, Loader=_Loader)
    except (ValueError, yaml.YAMLError if yaml else ValueError) as e:
        raise InvalidManifest("decode: %s" % str(e).replace("\n", " "))
    if not isinstance(doc, dict):
        raise InvalidManifest("not an object")
    if doc.get("kind") != "Pod":
        raise InvalidManifest("kind is %r, want Pod" % doc.get("kind"))
    if doc.get("apiVersion") not in ("v1", None):
        raise InvalidManifest("apiVersion is %r, want v1" % doc.get("apiVersion"))
    spec = doc.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list) or not spec["containers"]:
        raise InvalidManifest("spec.containers is missing or empty")
    containers = []
    for c in spec["containers"]:
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            raise InvalidManifest("a container lacks name or image")
        cmd = c.get("command") or []
        args = c.get("args") or []
        if not isinstance(cmd, list) or not isinstance(args, list):
            raise InvalidManifest("command/args of %s are not lists" % c.get("name"))
        if not cmd:
            raise InvalidManifest("container %s has no command (the image entrypoint is "
                                  "unknown to the simulator)" % c["name"])
        env = container_env(c, doc, meta_of(doc))
        argv = [expand(str(x), env) for x in cmd + args]
        containers.append({"name": str(c["name"]), "image": str(c["image"]),
                           "argv": argv, "env": env, "uid": run_as_user(c, spec)})
    # the real kubelet derives the static pod's UID from the decoded object: formatting
    # and comments do not restart a pod, any other change does
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    meta = meta_of(doc)
    name = meta.get("name")
    namespace = meta.get("namespace") or "default"
    return {"hash": digest, "name": name, "namespace": str(namespace), "containers": containers,
            "doc": doc}


# --------------------------------------------------------------------------------------
# pods
# --------------------------------------------------------------------------------------

class Container:
    def __init__(self, spec):
        self.spec = spec
        self.proc = None
        self.exited = False  # set by the reaper
        self.code = None
        self.started_at = 0.0
        self.stopping = False
        self.skipped = False
        self.next_start = 0.0  # monotonic time of the next (re)start
        self.backoff = None
        self.pending_exit = False  # exited on its own, not yet handled


def copy_log(pipe, stream, plain_path, cri_path):
    """Copies a container's output line by line into the simulator's plain log and into a
    CRI-format log ("TIME STREAM F MESSAGE"), as the container runtime does."""
    with open(plain_path, "a", encoding="utf-8") as plain, open(cri_path, "a", encoding="utf-8") as cri:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            plain.write(line + "\n")
            plain.flush()
            now = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%09dZ" % int((now % 1) * 1e9)
            cri.write("%s %s F %s\n" % (stamp, stream, line))
            cri.flush()
    pipe.close()


class PodWorker(threading.Thread):
    """One per manifest file: owns that pod's processes."""

    def __init__(self, kubelet, fname):
        super().__init__(name="pod-" + fname, daemon=True)
        self.k = kubelet
        self.fname = fname
        self.cond = threading.Condition()
        self.desired = None  # pod dict or None
        self.desired_seq = 0
        self.shutdown = False
        self.running = None  # pod dict currently running
        self.containers = []
        self.deleted = False  # the file went away since the worker last looked

    # called from the main thread
    def set_desired(self, pod):
        with self.cond:
            self.desired = pod
            self.desired_seq += 1
            if pod is None:
                self.deleted = True
            self.cond.notify_all()

    def stop_worker(self):
        with self.cond:
            self.shutdown = True
            self.desired = None
            self.desired_seq += 1
            self.cond.notify_all()

    def run(self):
        seen_seq = -1
        while True:
            with self.cond:
                while True:
                    if self.desired_seq != seen_seq:
                        break
                    now = time.monotonic()
                    if any(c.pending_exit for c in self.containers):
                        break
                    due = [c.next_start for c in self.containers
                           if not c.skipped and c.proc is None and not c.stopping]
                    if due and min(due) <= now:
                        break
                    self.cond.wait(timeout=(min(due) - now) if due else None)
                desired, seq, shutdown = self.desired, self.desired_seq, self.shutdown
                deleted, self.deleted = self.deleted, False
            if seq != seen_seq:
                seen_seq = seq
                cur = self.running["hash"] if self.running else None
                new = desired["hash"] if desired else None
                if cur != new or deleted:
                    self.stop_all()
                    self.running = desired
                    self.containers = [Container(s) for s in desired["containers"]] if desired else []
                    now = time.monotonic()
                    for c in self.containers:
                        c.next_start = now
                if shutdown:
                    self.stop_all()
                    return
            self.handle_exits()
            self.start_due()

    def handle_exits(self):
        for c in self.containers:
            if not c.pending_exit:
                continue
            c.pending_exit = False
            ran = time.monotonic() - c.started_at
            self.k.events.emit("exit", file=self.fname, container=c.spec["name"], pid=c.proc.pid,
                               image=c.spec["image"], argv=c.spec["argv"], code=c.code)
            log("container %s of %s (pid %d) exited with code %s after %.2fs"
                % (c.spec["name"], self.fname, c.proc.pid, c.code, ran))
            self.schedule_restart(c, ran)

    def schedule_restart(self, c, ran):
        if c.backoff is None or ran >= self.k.args.backoff_reset:
            c.backoff = self.k.args.backoff
        else:
            c.backoff = min(c.backoff * 2, self.k.args.backoff_max)
        c.proc = None
        c.next_start = time.monotonic() + c.backoff
        log("back-off %.2fs restarting failed container %s of %s"
            % (c.backoff, c.spec["name"], self.fname))

    def start_due(self):
        now = time.monotonic()
        for c in self.containers:
            if c.skipped or c.proc is not None or c.stopping or c.next_start > now:
                continue
            self.start_container(c)

    def cri_log(self, c):
        """Where the real kubelet keeps a container's output:
        ROOT/var/log/pods/<namespace>_<pod>-<node>_<uid>/<container>/<restart>.log."""
        pod = self.running or self.desired or {}
        name = "%s-%s" % (pod.get("name") or self.fname, "sim")
        d = os.path.join(self.k.args.root, "var/log/pods",
                         "%s_%s_%s" % (pod.get("namespace") or "default", name, (pod.get("hash") or "0")[:32]),
                         c.spec["name"])
        os.makedirs(d, exist_ok=True)
        c.restarts = getattr(c, "restarts", -1) + 1
        return os.path.join(d, "%d.log" % c.restarts)

    def start_container(self, c):
        spec = c.spec
        exe = os.path.basename(spec["argv"][0])
        path = os.path.join(self.k.args.bin_dir, exe)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            if exe.startswith("kube-"):
                # a control-plane binary the image should have: a crash (CrashLoopBackOff)
                if c.backoff is None:
                    log("image binary not found: %s (container %s of %s)" % (exe, spec["name"], self.fname), "E")
                self.k.events.emit("exit", file=self.fname, container=spec["name"], pid=None,
                                   image=spec["image"], argv=spec["argv"], code=127,
                                   reason="image binary not found")
                c.proc = None
                c.started_at = time.monotonic()
                c.backoff = self.k.args.backoff if c.backoff is None else min(c.backoff * 2, self.k.args.backoff_max)
                c.next_start = time.monotonic() + c.backoff
                return
            log("image binary not found: %s (container %s of %s): not simulated, skipped"
                % (exe, spec["name"], self.fname), "W")
            self.k.events.emit("skip", file=self.fname, container=spec["name"], pid=None,
                               image=spec["image"], argv=spec["argv"], code=None,
                               reason="image binary not found")
            c.skipped = True
            return
        env = dict(os.environ)
        env.update(spec["env"])
        env.update({
            "CPLET_SIM_IMAGE": spec["image"],
            "CPLET_SIM_KNOBS": self.k.args.knobs or "",
            "CPLET_SIM_CERT_DIR": self.k.args.cert_dir,
            "CPLET_SIM_NODE": self.k.node_id,
            "CPLET_SIM_NODE_NAME": self.k.args.node_name,
            "CPLET_SIM_EXIT_WITH_PARENT": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        logf = self.k.pod_log(self.fname)
        cri = self.cri_log(c)
        try:
            logf.write("==> %s start container %s image %s\n"
                       % (time.strftime("%Y-%m-%dT%H:%M:%S"), spec["name"], spec["image"]))
            logf.flush()
            uid = spec["uid"]
            if uid is not None and uid != os.geteuid() and os.geteuid() != 0:
                raise OSError("cannot run as runAsUser %d: the simulated kubelet runs as uid %d, "
                              "not root" % (uid, os.geteuid()))
            # The runtime executes command[0] with argv exactly as the manifest says: the
            # launcher carries that argv and runs the Python fake ($CPLET_SIM_CHILD) as its child.
            env["CPLET_SIM_CHILD"] = path
            proc = subprocess.Popen(spec["argv"], executable=self.k.args.launcher, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, close_fds=True, start_new_session=True,
                                    cwd="/", user=uid if uid is not None and uid != os.geteuid() else None)
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                threading.Thread(target=copy_log, args=(pipe, stream, logf.name, cri), daemon=True,
                                 name="log-%d-%s" % (proc.pid, stream)).start()
        except OSError as e:
            log("failed to start %s of %s: %s" % (spec["name"], self.fname, e), "E")
            self.k.events.emit("exit", file=self.fname, container=spec["name"], pid=None,
                               image=spec["image"], argv=spec["argv"], code=126, reason=str(e))
            c.started_at = time.monotonic()
            c.backoff = self.k.args.backoff if c.backoff is None else min(c.backoff * 2, self.k.args.backoff_max)
            c.next_start = time.monotonic() + c.backoff
            return
        finally:
            logf.close()
        t_start = time.time()
        c.proc = proc
        c.exited = False
        c.code = None
        c.started_at = time.monotonic()
        self.k.events.emit("start", t=t_start, file=self.fname, container=spec["name"], pid=proc.pid,
                           image=spec["image"], argv=spec["argv"], code=None)
        log("started container %s of %s: pid %d image %s" % (spec["name"], self.fname, proc.pid, spec["image"]))
        threading.Thread(target=self.reap, args=(c, proc), daemon=True,
                         name="reap-%d" % proc.pid).start()

    def reap(self, c, proc):
        code = proc.wait()
        with self.cond:
            if c.proc is proc:
                c.exited = True
                c.code = code
                if not c.stopping:
                    c.pending_exit = True
            self.cond.notify_all()

    def stop_all(self):
        live = [c for c in self.containers if c.proc is not None]
        for c in live:
            with self.cond:
                c.stopping = True
            if c.pending_exit or c.exited:
                continue
            try:
                os.killpg(c.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.k.args.grace
        for c in live:
            with self.cond:
                while not c.exited and time.monotonic() < deadline:
                    self.cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            if not c.exited:
                log("container %s of %s (pid %d) ignored SIGTERM for %.1fs: SIGKILL"
                    % (c.spec["name"], self.fname, c.proc.pid, self.k.args.grace), "W")
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                with self.cond:
                    while not c.exited:
                        self.cond.wait(timeout=0.1)
            # whatever else is left in the process group goes too
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if c.pending_exit:
                # it had died on its own before we came to stop it
                c.pending_exit = False
                self.k.events.emit("exit", file=self.fname, container=c.spec["name"], pid=c.proc.pid,
                                   image=c.spec["image"], argv=c.spec["argv"], code=c.code)
            else:
                self.k.events.emit("stop", file=self.fname, container=c.spec["name"], pid=c.proc.pid,
                                   image=c.spec["image"], argv=c.spec["argv"], code=c.code)
                log("stopped container %s of %s (pid %d, code %s)"
                    % (c.spec["name"], self.fname, c.proc.pid, c.code))
            c.proc = None
        self.containers = []
        self.running = None


# --------------------------------------------------------------------------------------
# the kubelet
# --------------------------------------------------------------------------------------

class Kubelet:
    def __init__(self, args):
        self.args = args
        self.mdir = args.manifest_dir
        self.node_id = args.node_id
        self.events = EventLog(args.events)
        self.workers = {}
        self.files = {}  # fname -> (stat key, content sha, pod hash or None)
        self.stop_flag = False
        self.mirror = None
        os.makedirs(args.log_dir, exist_ok=True)

    def pod_log(self, fname):
        return open(os.path.join(self.args.log_dir, fname + ".log"), "a", encoding="utf-8")

    def scan(self):
        try:
            entries = list(os.scandir(self.mdir))
        except FileNotFoundError:
            entries = []
        present = set()
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                st = e.stat()  # follows symlinks, like the kubelet
            except OSError:
                continue
            if not (st.st_mode & 0o170000) == 0o100000:
                continue
            present.add(e.name)
            key = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)
            old = self.files.get(e.name)
            if old and old[0] == key:
                continue
            try:
                with open(e.path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            sha = hashlib.sha256(data).hexdigest()
            if old and old[1] == sha:
                self.files[e.name] = (key, sha, old[2])
                continue
            try:
                pod = decode_pod(data)
            except (InvalidManifest, UnicodeDecodeError) as err:
                log("Could not process manifest file %s: %s (ignored; keeping what runs)"
                    % (e.path, err), "E")
                self.events.emit("invalid", file=e.name, container=None, pid=None, image=None,
                                 argv=None, code=None, reason=str(err))
                self.files[e.name] = (key, sha, old[2] if old else None)
                continue
            self.files[e.name] = (key, sha, pod["hash"])
            if old and old[2] == pod["hash"]:
                continue  # same pod, different bytes
            log("manifest %s: %s pod %s" % (e.name, "changed" if old else "new", pod["name"]))
            self.worker(e.name).set_desired(pod)
            if self.mirror:
                self.mirror.kick()
        for name in list(self.files):
            if name not in present:
                del self.files[name]
                log("manifest %s removed: stopping its pod" % name)
                w = self.workers.get(name)
                if w:
                    w.set_desired(None)
                if self.mirror:
                    self.mirror.kick()

    def worker(self, fname):
        w = self.workers.get(fname)
        if w is None:
            w = PodWorker(self, fname)
            self.workers[fname] = w
            w.start()
        return w

    def run(self):
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)

        def on_signal(signum, frame):
            self.stop_flag = True
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_signal)

        if self.args.kubeconfig:
            from mirror import MirrorPods
            self.mirror = MirrorPods(self, self.args.kubeconfig, self.args.node_name,
                                     period=self.args.mirror_period, log=log)
            self.mirror.start()
        ino = None
        try:
            ino = Inotify()
        except (OSError, AttributeError) as e:
            log("inotify unavailable (%s): polling every %.0f ms" % (e, self.args.poll * 1000), "W")
        watching = False
        last_scan = 0.0
        log("watching %s (bin-dir %s, backoff %.2fs..%.2fs)"
            % (self.mdir, self.args.bin_dir, self.args.backoff, self.args.backoff_max))
        while not self.stop_flag:
            if ino is not None and not watching:
                try:
                    ino.watch(self.mdir)
                    watching = True
                    self.scan()
                    last_scan = time.monotonic()
                except OSError:
                    pass  # directory not there yet: poll for it
            if ino is not None and watching:
                timeout = self.args.resync
            else:
                timeout = self.args.poll
            if self.args.parent_pid:
                if os.getppid() != self.args.parent_pid:
                    log("parent %d went away" % self.args.parent_pid, "W")
                    break
                timeout = min(timeout, 0.25)
            try:
                fds = [rfd] + ([ino.fd] if ino is not None and watching else [])
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                ready = []
            if rfd in ready:
                try:
                    os.read(rfd, 512)
                except BlockingIOError:
                    pass
            if self.stop_flag:
                break
            if ino is not None and watching and ino.fd in ready:
                if ino.drain():
                    watching = False
                self.scan()
                last_scan = time.monotonic()
            elif time.monotonic() - last_scan >= (self.args.resync if watching else self.args.poll):
                self.scan()
                last_scan = time.monotonic()
        log("shutting down: stopping all pods")
        if self.mirror:
            self.mirror.stop()
        for w in self.workers.values():
            w.stop_worker()
        for w in self.workers.values():
            w.join(timeout=self.args.grace + 5)
        log("stopped")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="node root; manifests in ROOT/etc/kubernetes/manifests")
    p.add_argument("--manifest-dir", help="manifest directory (overrides --root)")
    p.add_argument("--bin-dir", default=os.path.join(HERE, "bin"))
    p.add_argument("--launcher", default=os.environ.get("CPLET_SIM_LAUNCHER"),
                   help="the compiled launcher (tests/sim/launcher.c) every container runs as "
                        "(default $CPLET_SIM_LAUNCHER)")
    p.add_argument("--log-dir", help="per-pod logs (default ROOT/sim/logs)")
    p.add_argument("--events", help="JSON-lines event log")
    p.add_argument("--knobs", help="knobs JSON file for the fake components")
    p.add_argument("--cert-dir", help="directory with tls.crt/tls.key (default ROOT/sim/certs)")
    p.add_argument("--pidfile")
    p.add_argument("--node-id", help="marker put in CPLET_SIM_NODE (default: the root)")
    p.add_argument("--backoff", type=float, default=1.0, help="first crash back-off, seconds")
    p.add_argument("--backoff-max", type=float, default=10.0)
    p.add_argument("--backoff-reset", type=float, default=None,
                   help="a container that ran this long restarts with the first back-off "
                        "again (default 2 x backoff-max)")
    p.add_argument("--grace", type=float, default=2.0, help="SIGTERM to SIGKILL, seconds")
    p.add_argument("--poll", type=float, default=0.005, help="poll interval without inotify")
    p.add_argument("--resync", type=float, default=1.0, help="periodic full re-scan, seconds")
    p.add_argument("--parent-pid", type=int, default=0,
                   help="shut down (stopping all pods) when this process is no longer our parent")
    p.add_argument("--kubeconfig", help="the kubelet's kubeconfig (identity system:node:NAME): "
                   "mirror pods are kept in that API server; without it, none")
    p.add_argument("--node-name", help="this node's name (default sim-node)")
    p.add_argument("--mirror-period", type=float, default=0.5,
                   help="seconds between two mirror pod syncs (and readiness probes)")
    args = p.parse_args(argv)
    if args.node_name:
        FIELD_REFS["spec.nodeName"] = args.node_name
    else:
        args.node_name = FIELD_REFS["spec.nodeName"]
    if args.kubeconfig:
        args.kubeconfig = os.path.abspath(args.kubeconfig)
    if not args.manifest_dir:
        if not args.root:
            p.error("--root or --manifest-dir is required")
        args.manifest_dir = os.path.join(args.root, "etc", "kubernetes", "manifests")
    base = args.root or os.path.dirname(os.path.abspath(args.manifest_dir))
    args.log_dir = args.log_dir or os.path.join(base, "sim", "logs")
    args.cert_dir = os.path.abspath(args.cert_dir or os.path.join(base, "sim", "certs"))
    args.bin_dir = os.path.abspath(args.bin_dir)
    if not args.launcher or not os.access(args.launcher, os.X_OK):
        p.error("--launcher (or $CPLET_SIM_LAUNCHER) must name the built launcher, "
                "build/tests/sim/cplet-sim-launcher: %r" % args.launcher)
    args.launcher = os.path.abspath(args.launcher)
    if args.knobs:
        args.knobs = os.path.abspath(args.knobs)
    if args.backoff_reset is None:
        args.backoff_reset = 2 * args.backoff_max
    args.node_id = os.path.realpath(args.node_id or base)
    os.environ["CPLET_SIM_NODE"] = args.node_id

    sys.path.insert(0, HERE)
    sys.dont_write_bytecode = True
    from fake_component import ensure_cert
    ensure_cert(args.cert_dir)

    if args.pidfile:
        tmp = args.pidfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(tmp, args.pidfile)
    try:
        Kubelet(args).run()
    finally:
        if args.pidfile:
            try:
                with open(args.pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(args.pidfile)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
