# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by cplet's end-to-end tests (tests/e2e/test-rollout.py) and the benchmark
(tests/bench/bench-upgrade.py): running cplet against a simulated node (tests/sim), reading
its --json progress, the fake kubelet's events, manifests, revisions and the journal.

Environment (set by tests/meson.build):
  CPLET_BINARY            absolute path of the cplet binary
  CPLET_PLUGIN_BUILD_DIR  directory of the built-in plugins
  CPLET_EXAMPLES_DIR      the repository's examples/ (templates of the simulated node)
"""

import hashlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback

import yaml

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "sim"))
sys.dont_write_bytecode = True

import simnode  # noqa: E402
from simnode import SimNode, https_get  # noqa: E402,F401

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

CPLET = os.environ.get("CPLET_BINARY", "")
PLUGINS = os.environ.get("CPLET_PLUGIN_BUILD_DIR", "")

COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
MANIFEST_DIR = os.path.join("etc", "kubernetes", "manifests")
STATE_DIR = os.path.join("var", "lib", "cplet")
REVISIONS_DIR = os.path.join(STATE_DIR, "revisions")
JOURNAL = os.path.join(STATE_DIR, "rollout.json")
ANNOTATION = "cplet.io/revision"
# Every component answers /healthz (the controller-manager only that one).
HEALTHZ = "/healthz"


def crictl_env(dirs, with_crictl=True, **knobs):
    """The environment for cplet with the fake crictl (tests/sim/fake_crictl.py) as the only
    program in PATH (with_crictl=False: no crictl at all, whatever the host has), its call log
    (CRICTL_FAKE_LOG) and knobs (CRICTL_FAKE_<NAME>). The temporary directory is appended to
    `dirs` for the caller to remove."""
    import tempfile
    d = os.path.realpath(tempfile.mkdtemp(prefix="cplet-crictl-"))
    dirs.append(d)
    bindir = os.path.join(d, "bin")
    os.mkdir(bindir)
    if with_crictl:
        # This Python by its path: PATH holds nothing else.
        with open(os.path.join(os.path.dirname(HERE), "sim", "fake_crictl.py")) as f:
            text = f.read().split("\n", 1)[1]
        with open(os.path.join(bindir, "crictl"), "w") as f:
            f.write("#!%s\n%s" % (os.path.realpath(sys.executable), text))
        os.chmod(os.path.join(bindir, "crictl"), 0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONTAINER_RUNTIME_ENDPOINT", "IMAGE_SERVICE_ENDPOINT", "CRI_CONFIG_FILE")}
    env["PATH"] = bindir
    env["CRICTL_FAKE_LOG"] = os.path.join(d, "calls.jsonl")
    for k, v in knobs.items():
        env["CRICTL_FAKE_" + k.upper()] = str(v)
    return env


def shell_quote(cmd):
    return " ".join(shlex.quote(str(c)) for c in cmd)


def cplet_cmd(root, args):
    return [CPLET, "--root", root, "--plugin-dir", PLUGINS] + list(args)


def parse_json_lines(text):
    """JSON objects of cplet's --json progress output (one a line); others are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "unparseable", "line": line})
    return out


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def mpath(root, component):
    return os.path.join(root, MANIFEST_DIR, component + ".yaml")


def rdir(root, component):
    return os.path.join(root, REVISIONS_DIR, component)


def live_manifests(root):
    return {c: read_bytes(mpath(root, c)) for c in COMPONENTS}


def load_yaml(data):
    return yaml.load(data, Loader=_Loader)


def strip_annotation(doc):
    """A deep copy without metadata.annotations[cplet.io/revision] (an annotations map left
    empty counts as absent)."""
    d = json.loads(json.dumps(doc))
    md = d.get("metadata") or {}
    ann = dict(md.get("annotations") or {})
    ann.pop(ANNOTATION, None)
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)
    return d


def annotation(doc):
    return (((doc or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)


def container(doc, name):
    for c in ((doc or {}).get("spec") or {}).get("containers") or []:
        if c.get("name") == name:
            return c
    return {}


def argv_of(doc, component):
    c = container(doc, component)
    return [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]


def flag_value(argv, name):
    """Value of --name in an argv (--name=v or --name v), last one wins; None if absent."""
    val = None
    for i, a in enumerate(argv):
        if a == "--" + name:
            val = argv[i + 1] if i + 1 < len(argv) else ""
        elif a.startswith("--" + name + "="):
            val = a.split("=", 1)[1]
    return val


def image_tag(image):
    return (image or "").rsplit(":", 1)[-1]


def revision_numbers(root, component):
    d = rdir(root, component)
    if not os.path.isdir(d):
        return []
    return sorted(int(m.group(1)) for f in os.listdir(d) if (m := re.fullmatch(r"([1-9][0-9]*)\.json", f)))


def revision_meta(root, component, n):
    with open(os.path.join(rdir(root, component), "%d.json" % n)) as f:
        return json.load(f)


def journal(root):
    try:
        with open(os.path.join(root, JOURNAL)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def tree_checksum(root, include=(MANIFEST_DIR, STATE_DIR, os.path.join("run", "cplet"))):
    """{relative path: (mode, sha256)} of everything under the given subtrees of root."""
    result = {}
    for sub in include:
        top = os.path.join(root, sub)
        if not os.path.exists(top):
            result[sub] = None
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in [""] + sorted(dirnames + filenames):
                if name == "" and dirpath != top:
                    continue
                path = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(path)
                what = ""
                if stat.S_ISREG(st.st_mode):
                    what = hashlib.sha256(read_bytes(path)).hexdigest()
                elif stat.S_ISLNK(st.st_mode):
                    what = "link:" + os.readlink(path)
                result[os.path.relpath(path, root)] = (st.st_mode, what)
    return result


def tree_diff(a, b):
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append("%s: %s -> %s" % (k, a.get(k), b.get(k)))
    return "\n".join(lines[:20])


def pid_alive(pid):
    return simnode.pid_alive(pid)


def proc_status(pid):
    """{key: value-in-kB} of the memory lines of /proc/PID/status, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "State"):
            parts = v.split()
            out[k] = int(parts[0]) if parts and parts[0].isdigit() else v.strip()
    return out


class CpletRun:
    """cplet started with Popen, its stdout read line by line (JSON progress) in a thread so
    that the caller can wait for an event, then signal it."""

    def __init__(self, root, args, env=None):
        self.cmd = cplet_cmd(root, args)
        self.started = time.monotonic()
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL, env=env)
        self.pid = self.p.pid
        self.lines = []
        self.events = []
        self.cond = threading.Condition()
        self.err = ""
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out.start()
        self._t_err.start()
        self.rc = None
        self.elapsed = None

    def _read_out(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line)
                if line.strip().startswith("{"):
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        self.events.append({"event": "unparseable", "line": line})
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        self.err = self.p.stderr.read()

    def wait_event(self, pred, timeout=30.0):
        """The first event e with pred(e, events_so_far), or None (cplet ended or timeout)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                while seen < len(self.events):
                    e = self.events[seen]
                    seen += 1
                    if pred(e, self.events[:seen]):
                        return e
                if not self._t_out.is_alive() or time.monotonic() > deadline:
                    return None
                self.cond.wait(timeout=0.05)

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=60.0):
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.rc = self.p.wait()
            self.rc = ("timeout", self.rc)
        self._t_out.join(5)
        self._t_err.join(5)
        self.elapsed = time.monotonic() - self.started
        return self.rc

    @property
    def out(self):
        return "".join(self.lines)

    def kill_if_running(self):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def run_tap(tests, case_cls, required=(), only_var="CPLET_E2E_ONLY", elapsed="# %.1fs"):
    """Runs the (name, fn) cases, printing TAP: fn(case_cls(name)), then the case's cleanup()
    if it has one; a case fails on an exception or on the failures it recorded. `required`:
    environment variables without which every case fails. `only_var`: the environment
    variable that lists the case numbers to run ("3,4"), while debugging. Returns the exit
    code."""
    missing = [v for v in required if not os.environ.get(v)]
    only = os.environ.get(only_var)
    print("1..%d" % len(tests), flush=True)
    if missing:
        for i, (name, _) in enumerate(tests, 1):
            print("not ok %d - %s\n# environment variable(s) not set: %s" % (i, name, ", ".join(missing)))
        return 1
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        if only and str(i) not in only.split(","):
            print("ok %d - %s # SKIP not selected" % (i, name))
            continue
        t = case_cls(name)
        start = time.monotonic()
        try:
            fn(t)
        except Exception:  # noqa: BLE001
            t.failures.append("exception:\n" + traceback.format_exc())
        finally:
            if hasattr(t, "cleanup"):
                try:
                    t.cleanup()
                except Exception:  # noqa: BLE001
                    t.failures.append("cleanup failed:\n" + traceback.format_exc())
        if t.failures:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for f in t.failures:
                for line in str(f).splitlines():
                    print("# %s" % line)
        else:
            print("ok %d - %s" % (i, name))
        print(elapsed % (time.monotonic() - start), flush=True)
    return 1 if failed else 0
