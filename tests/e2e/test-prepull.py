#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cplet upgrade pulls the plan's images through the node's container runtime before the first
write (issue 11, "Image pre-pull"), on a simulated node (tests/sim/simnode.py) with the fake
crictl (tests/sim/fake_crictl.py) installed as `crictl` in a temporary PATH directory and a
unix socket listening where containerd's would be under the node root. Printing TAP.

Each case checks what the fake crictl recorded (argv, wall-clock start and end of each call)
against the files cplet wrote (their mtimes) and the fake kubelet's events.

Environment (set by tests/meson.build):
  CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR, CPLET_SIM_LAUNCHER
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from e2e_util import (  # noqa: E402
    COMPONENTS, MANIFEST_DIR, STATE_DIR, SimNode, cplet_cmd, image_tag, journal, load_yaml, mpath,
    parse_json_lines, pid_alive, read_bytes, run_tap, shell_quote, tree_checksum, tree_diff, container,
    crictl_env,
)

HERE = os.path.dirname(os.path.realpath(__file__))
OLD = "v1.34.2"
NEW = "v1.35.0"
TIMEOUT = 90
UPGRADE = ["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", "20s"]
NEW_IMAGES = ["registry.k8s.io/%s:%s" % (c, NEW) for c in COMPONENTS]
CONTAINERD_SOCK = os.path.join("run", "containerd", "containerd.sock")
NO_CLIENT = "no container runtime client (crictl) found: images are pulled by the kubelet at each step"


class Case:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.nodes = []
        self.dirs = []
        self.sockets = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)

    def eq(self, actual, expected, msg):
        return self.check(actual == expected, "%s: expected %r, got %r" % (msg, expected, actual))

    def contains(self, haystack, needle, msg):
        return self.check(needle in (haystack or ""), "%s: %r not in %r" % (msg, needle, haystack))

    def node(self):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-pull-"))
        self.dirs.append(root)
        n = SimNode(root, OLD, backoff=0.1, backoff_max=1.0, grace=2.0)
        self.nodes.append(n)
        n.up(timeout=20)
        return n

    def runtime_socket(self, node, rel=CONTAINERD_SOCK, listen=True):
        """A unix socket under the node root where a runtime listens (listen=False: the file
        of a runtime that is gone)."""
        path = os.path.join(node.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        if listen:
            s.listen(128)
            self.sockets.append(s)
        else:
            s.close()
        return path

    def crictl_env(self, with_crictl=True, **knobs):
        """The environment of cplet: a PATH whose first directory holds the fake crictl (or
        none of it), its call log, knobs (e2e_util.crictl_env)."""
        return crictl_env(self.dirs, with_crictl, **knobs)

    def calls(self, env):
        """The fake crictl's records: [(start record, end record or None)] in start order."""
        path = env["CRICTL_FAKE_LOG"]
        if not os.path.exists(path):
            return []
        starts, ends = [], {}
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r["call"] == "start":
                    starts.append(r)
                else:
                    ends[r["pid"]] = r
        return [(s, ends.get(s["pid"])) for s in starts]

    def run(self, node, args, env, timeout=TIMEOUT):
        cmd = cplet_cmd(node.root, args)
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                               env=env)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = None, str(e.stdout or ""), str(e.stderr or "")
            self.failures.append("timed out after %ss: %s" % (timeout, shell_quote(cmd)))
        return rc, out, err, time.monotonic() - start

    def cleanup(self):
        for s in self.sockets:
            s.close()
        for n in self.nodes:
            left = n.down()
            if left:
                self.failures.append("processes left after stopping the node %s: %s" % (n.root, left))
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def mtimes(root):
    """{relative path: mtime} of the manifests and everything cplet keeps."""
    out = {}
    for sub in (MANIFEST_DIR, STATE_DIR, os.path.join("run", "cplet")):
        top = os.path.join(root, sub)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in filenames:
                p = os.path.join(dirpath, name)
                out[os.path.relpath(p, root)] = os.lstat(p).st_mtime
    return out


def live_images(node):
    return [container(load_yaml(read_bytes(mpath(node.root, c))), c).get("image") for c in COMPONENTS]


def check_untouched(t, node, before, err, msg):
    after = tree_checksum(node.root)
    t.check(before == after, "%s: files changed:\n%s" % (msg, tree_diff(before, after)))
    t.eq(journal(node.root), None, "%s: no rollout journal" % msg)
    t.eq(node.events("stop"), [], "%s: the kubelet stopped no component" % msg)
    t.eq([image_tag(i) for i in live_images(node)], [OLD] * 3, "%s: manifests still at %s" % (msg, OLD))


# --------------------------------------------------------------------------------------
# Cases


def test_pulls_before_first_write(t):
    """Each new image pulled exactly once, in plan order, every pull finished before cplet
    changed its first file; the progress says so."""
    node = t.node()
    sock = t.runtime_socket(node)
    env = t.crictl_env()
    before = mtimes(node.root)
    rc, out, err, _ = t.run(node, UPGRADE, env)
    t.eq(rc, 0, "exit code (stderr %r)" % err)
    calls = t.calls(env)
    t.eq([s["argv"] for s, _ in calls],
         [["--runtime-endpoint", "unix://" + sock, "pull", image] for image in NEW_IMAGES],
         "crictl calls: one pull per new image, through the node's containerd socket")
    t.eq([e and e["rc"] for _, e in calls], [0, 0, 0], "every pull succeeded")
    after = mtimes(node.root)
    changed = {p: m for p, m in after.items() if before.get(p) != m}
    t.check(changed, "the upgrade changed no file")
    if calls and changed and all(e for _, e in calls):
        last_pull = max(e["time"] for _, e in calls)
        first_write = min(changed.values())
        t.check(last_pull < first_write,
                "a file was written (%s at %.3f) before the last pull ended (%.3f)"
                % (min(changed, key=changed.get), first_write, last_pull))
    lines = out.splitlines()
    for i, image in enumerate(NEW_IMAGES, 1):
        t.contains(out, "pulling %s (%d/3)\n" % (image, i), "progress")
        t.check(any(l.startswith("pulled %s (%d/3) in " % (image, i)) and l.endswith("s") for l in lines),
                "no 'pulled %s (%d/3) in ...s' line in %r" % (image, i, out))
    first_step = next((i for i, l in enumerate(lines) if l.startswith("[1/")), None)
    last_pulled = max((i for i, l in enumerate(lines) if l.startswith("pulled ")), default=None)
    t.check(first_step is not None and last_pulled is not None and last_pulled < first_step,
            "the pulls are reported before the first step: %r" % out)
    t.eq(live_images(node), NEW_IMAGES, "manifests at the new images")
    t.check(NO_CLIENT not in err, "no warning about a missing crictl: %r" % err)


def test_crictl_config(t):
    """ROOT/etc/crictl.yaml names the endpoint: cplet passes --config and crictl finds the
    runtime there (not at a default socket); --json has one pull and one pulled event per
    image before the first step."""
    node = t.node()
    sock = t.runtime_socket(node, os.path.join("run", "k3s", "containerd", "containerd.sock"))
    config = os.path.join(node.root, "etc", "crictl.yaml")
    with open(config, "w") as f:
        f.write("runtime-endpoint: unix://%s\ntimeout: 2\n" % sock)
    env = t.crictl_env()
    rc, out, err, _ = t.run(node, UPGRADE + ["--json"], env)
    t.eq(rc, 0, "exit code (stderr %r)" % err)
    calls = t.calls(env)
    t.eq([s["argv"] for s, _ in calls], [["--config", config, "pull", image] for image in NEW_IMAGES],
         "crictl calls")
    t.eq([e and e["rc"] for _, e in calls], [0, 0, 0], "every pull succeeded")
    events = parse_json_lines(out)
    kinds = [(e.get("event"), e.get("detail")) for e in events if e.get("event") in ("pull", "pulled")]
    t.eq(kinds, [(ev, image) for image in NEW_IMAGES for ev in ("pull", "pulled")], "pull events")
    names = [e.get("event") for e in events]
    if "step" in names and "pulled" in names:
        t.check(len(names) - 1 - names[::-1].index("pulled") < names.index("step"),
                "a pull event after the first step: %r" % names)


def test_missing_image(t):
    """The registry does not have the scheduler's image: exit 1 naming it with crictl's
    reason, no later pull, nothing written, no component restarted."""
    node = t.node()
    t.runtime_socket(node)
    env = t.crictl_env(missing=NEW_IMAGES[2])
    before = tree_checksum(node.root)
    rc, out, err, _ = t.run(node, UPGRADE, env)
    t.eq(rc, 1, "exit code (stderr %r)" % err)
    t.contains(err, "cannot pull image %s: pulling image: rpc error: code = NotFound" % NEW_IMAGES[2], "stderr")
    t.contains(err, "%s: not found" % NEW_IMAGES[2], "stderr: crictl's reason")
    t.contains(err, "nothing was written", "stderr")
    t.eq([s["argv"][-1] for s, _ in t.calls(env)], NEW_IMAGES, "pulls tried")
    check_untouched(t, node, before, err, "failed pull")


def test_unreachable_runtime(t):
    """A socket file nobody listens on (the runtime is down): crictl's connection error."""
    node = t.node()
    sock = t.runtime_socket(node, listen=False)
    env = t.crictl_env()
    before = tree_checksum(node.root)
    rc, out, err, _ = t.run(node, UPGRADE, env)
    t.eq(rc, 1, "exit code (stderr %r)" % err)
    t.contains(err, "cannot pull image %s: validate service connection: validate CRI v1 image API for endpoint "
                    "\"unix://%s\"" % (NEW_IMAGES[0], sock), "stderr")
    t.contains(err, "dial unix %s: connect: connection refused" % sock, "stderr")
    t.eq(len(t.calls(env)), 1, "one pull tried")
    check_untouched(t, node, before, err, "unreachable runtime")
    # crictl.yaml naming a socket that is not there (the runtime configured elsewhere).
    missing = os.path.join(node.root, "run", "crio", "crio.sock")
    with open(os.path.join(node.root, "etc", "crictl.yaml"), "w") as f:
        f.write("runtime-endpoint: unix://%s\n" % missing)
    before = tree_checksum(node.root)
    rc, out, err, _ = t.run(node, UPGRADE, env)
    t.eq(rc, 1, "crictl.yaml naming a missing socket: exit code (stderr %r)" % err)
    t.contains(err, "dial unix %s: connect: no such file or directory" % missing, "crictl.yaml: stderr")
    check_untouched(t, node, before, err, "crictl.yaml naming a missing socket")


def test_pull_timeout(t):
    """A pull slower than --pull-timeout: crictl killed, exit 1 naming the image, nothing
    written."""
    node = t.node()
    t.runtime_socket(node)
    env = t.crictl_env(delay=60)
    before = tree_checksum(node.root)
    rc, out, err, elapsed = t.run(node, UPGRADE + ["--pull-timeout", "2s"], env)
    t.eq(rc, 1, "exit code (stderr %r)" % err)
    t.contains(err, "pulling image %s did not finish within 2s (--pull-timeout)" % NEW_IMAGES[0], "stderr")
    t.check(elapsed < 20, "cplet took %.1fs for a 2s pull timeout" % elapsed)
    calls = t.calls(env)
    t.eq(len(calls), 1, "one pull started")
    for s, e in calls:
        t.eq(e, None, "the slow pull did not end on its own")
        t.check(not pid_alive(s["pid"]), "crictl (pid %d) still runs after cplet returned" % s["pid"])
    check_untouched(t, node, before, err, "pull timeout")


def test_interrupted_pull(t):
    """SIGINT while an image is being pulled: crictl killed, exit 1 saying nothing was written
    (no journal to resume), nothing written."""
    node = t.node()
    t.runtime_socket(node)
    env = t.crictl_env(delay=60)
    before = tree_checksum(node.root)
    p = subprocess.Popen(cplet_cmd(node.root, UPGRADE), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, env=env)
    try:
        line = p.stdout.readline()
        t.eq(line, "pulling %s (1/3)\n" % NEW_IMAGES[0], "first progress line")
        deadline = time.monotonic() + 10
        while not t.calls(env) and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    t.eq(p.returncode, 1, "exit code (stderr %r)" % err)
    t.contains(err, "interrupted while pulling image %s; nothing was written" % NEW_IMAGES[0], "stderr")
    t.check("resume" not in err, "no journal to resume: %r" % err)
    calls = t.calls(env)
    t.eq(len(calls), 1, "one pull started")
    for s, e in calls:
        t.check(not pid_alive(s["pid"]), "crictl (pid %d) still runs after cplet returned" % s["pid"])
    check_untouched(t, node, before, err, "interrupted pull")


def test_no_crictl(t):
    """No crictl: a warning, and the upgrade proceeds (the kubelet pulls each image)."""
    node = t.node()
    t.runtime_socket(node)
    env = t.crictl_env(with_crictl=False)
    rc, out, err, _ = t.run(node, UPGRADE, env)
    t.eq(rc, 0, "exit code (stderr %r)" % err)
    t.contains(err, "warning: " + NO_CLIENT, "stderr")
    t.eq(err.count(NO_CLIENT), 1, "warned once")
    t.check("pulling" not in out, "no pull progress: %r" % out)
    t.eq(live_images(node), NEW_IMAGES, "manifests at the new images")


def test_no_endpoint(t):
    """crictl but no runtime socket and no crictl.yaml under the node root: a warning, no
    call, the upgrade proceeds."""
    node = t.node()
    env = t.crictl_env()
    rc, out, err, _ = t.run(node, UPGRADE, env)
    t.eq(rc, 0, "exit code (stderr %r)" % err)
    t.contains(err, "warning: no container runtime endpoint found", "stderr")
    t.contains(err, "images are pulled by the kubelet at each step", "stderr")
    t.eq(t.calls(env), [], "crictl calls")
    t.eq(live_images(node), NEW_IMAGES, "manifests at the new images")


def test_skip_pull_dry_run_no_wait(t):
    """--skip-pull, --dry-run and --no-wait run no crictl (and --skip-pull is not a
    warning)."""
    node = t.node()
    t.runtime_socket(node)
    env = t.crictl_env()
    rc, out, err, _ = t.run(node, UPGRADE + ["--dry-run"], env)
    t.eq(rc, 0, "--dry-run: exit code (stderr %r)" % err)
    t.eq(t.calls(env), [], "--dry-run: crictl calls")
    rc, out, err, _ = t.run(node, UPGRADE + ["--skip-pull"], env)
    t.eq(rc, 0, "--skip-pull: exit code (stderr %r)" % err)
    t.eq(t.calls(env), [], "--skip-pull: crictl calls")
    t.check("pull" not in out and "pull" not in err, "--skip-pull: nothing said about pulls: %r %r" % (out, err))
    t.eq(live_images(node), NEW_IMAGES, "--skip-pull: manifests at the new images")
    rc, out, err, _ = t.run(node, ["upgrade", "--binary-version", "v1.35.1", "--no-wait"], env)
    t.eq(rc, 0, "--no-wait: exit code (stderr %r)" % err)
    t.eq(t.calls(env), [], "--no-wait: crictl calls")


def test_option_refusals(t):
    """--pull-timeout must be a duration; the pull options belong to upgrade only."""
    node = t.node()
    env = t.crictl_env()
    before = tree_checksum(node.root)
    for args, needle in ((UPGRADE + ["--pull-timeout", "soon"], '--pull-timeout "soon": expected a duration'),
                         (UPGRADE + ["--pull-timeout", "0s"], '--pull-timeout "0s": expected a duration'),
                         (["plan", "--binary-version", NEW, "--skip-pull"], "option --skip-pull does not apply"),
                         (["rollback", "--emulated-version", "1.33", "--pull-timeout", "1m"],
                          "option --pull-timeout does not apply")):
        rc, out, err, _ = t.run(node, args, env)
        t.eq(rc, 2, "%s: exit code (stderr %r)" % (shell_quote(args), err))
        t.contains(err, needle, "%s: stderr" % shell_quote(args))
    t.eq(t.calls(env), [], "crictl calls")
    after = tree_checksum(node.root)
    t.check(before == after, "files changed:\n%s" % tree_diff(before, after))


TESTS = [
    ("upgrade pulls each new image once, in plan order, before its first write; progress", test_pulls_before_first_write),
    ("ROOT/etc/crictl.yaml: --config, the runtime it names; --json pull events", test_crictl_config),
    ("an image the registry lacks: exit 1 naming it, nothing written", test_missing_image),
    ("a runtime socket nobody listens on, or missing: crictl's connection error, nothing written",
     test_unreachable_runtime),
    ("a pull slower than --pull-timeout: crictl killed, exit 1, nothing written", test_pull_timeout),
    ("SIGINT during a pull: crictl killed, exit 1, nothing written", test_interrupted_pull),
    ("no crictl: a warning, the upgrade proceeds", test_no_crictl),
    ("no runtime endpoint: a warning, no call, the upgrade proceeds", test_no_endpoint),
    ("--dry-run, --skip-pull, --no-wait: no pull", test_skip_pull_dry_run_no_wait),
    ("--pull-timeout and --skip-pull refusals", test_option_refusals),
]


def main():
    return run_tap(TESTS, Case, required=("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR"),
                   only_var="CPLET_PULL_ONLY")


if __name__ == "__main__":
    sys.exit(main())
