#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CLI tests of how cplet reads a node: which files it accepts as components, which it
refuses (and that a refusal touches nothing), plugin options, and what a step may change in
a manifest. Prints TAP. Environment as in test-cli.py (set by tests/meson.build)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from cli_common import (COMPONENTS, CPLET, EXAMPLE_VERSION, EXAMPLES, MANIFEST_DIR, PLUGINS, TIMEOUT, BaseCase,
                        mpath, read, run_tap, shell_quote, tree_checksum, tree_diff, write)
from cli_common import copy_example  # noqa: E402

UPGRADE_NO_WAIT = ["upgrade", "--binary-version", "v1.35.0", "--no-wait"]
DIGEST = "sha256:" + "0123456789abcdef" * 4
NEW_DIGEST = "sha256:" + "fedcba9876543210" * 4


class Case(BaseCase):
    def new_root(self):
        root = tempfile.mkdtemp(prefix="cplet-cli-node-")
        self.roots.append(root)
        copy_example(root)
        return root

    def cleanup(self):
        for r in self.roots:
            shutil.rmtree(r, ignore_errors=True)

    def run(self, root, args, unchanged=True, plugin_dir=True):
        """Runs cplet on root; with unchanged, checks the whole tree (paths, modes, contents)
        did not change. Returns (rc, stdout, stderr)."""
        cmd = [CPLET] + (["--plugin-dir", PLUGINS] if plugin_dir else []) + ["--root", root] + list(args)
        before = tree_checksum(root)
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
            rc = p.returncode
            out = p.stdout.decode(errors="replace")
            err = p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.failures.append(f"timed out after {TIMEOUT}s: {shell_quote(cmd)}")
            return None, "", ""
        if unchanged:
            after = tree_checksum(root)
            self.check(before == after, f"the root tree changed during: {shell_quote(cmd)}\n{tree_diff(before, after)}")
        return rc, out, err

    def refused(self, root, args, needles, msg):
        rc, out, err = self.run(root, args)
        self.eq(rc, 2, f"{msg}: exit code of {shell_quote(args)} (stderr {err.strip()!r})")
        for n in needles:
            self.contains(err, n, f"{msg}: stderr")
        return rc, out, err


def test_plugin_dir_twice(t):
    """The second --plugin-dir failing must not free the first one twice."""
    root = t.new_root()
    rc, out, err = t.run(root, ["--plugin-dir", "/nonexistent-cplet-plugins", "status"])
    t.eq(rc, 2, f"exit code (stderr {err.strip()!r})")
    t.contains(err, "/nonexistent-cplet-plugins", "stderr names the directory")
    t.not_contains(err, "double free", "stderr")


UNUSABLE_APISERVER = {
    "containers: []": ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n"
                       "spec:\n  containers: []\n", "spec.containers"),
    "containers as a mapping": ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
                                "    kube-apiserver:\n      image: registry.k8s.io/kube-apiserver:v1.34.2\n",
                                "spec.containers"),
    "kind: Deployment": None,  # the example's pod with kind: Deployment (built below)
}

WRITES = [
    UPGRADE_NO_WAIT,
    ["upgrade", "--binary-version", "v1.35.0", "--dry-run"],
    ["upgrade", "--emulated-version", "1.35", "--binary-version", "v1.35.0", "--no-wait"],
    ["plan", "--binary-version", "v1.35.0"],
    ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"],
]


def test_unusable_pod(t):
    """An API server manifest the kubelet would not run as a pod: status shows an error row
    and exits 2; every plan and write is refused (exit 2) naming the file; nothing changes."""
    for what, spec in UNUSABLE_APISERVER.items():
        root = t.new_root()
        path = mpath(root, "kube-apiserver.yaml")
        if spec is None:
            text = read(path).replace("kind: Pod", "kind: Deployment", 1)
            reason = "kind"
        else:
            text, reason = spec
        write(path, text)
        real = os.path.realpath(path)

        rc, out, err = t.run(root, ["status"])
        t.eq(rc, 2, f"{what}: status exit code (stderr {err.strip()!r})")
        row = next((l for l in out.splitlines() if l.split()[:1] == ["kube-apiserver"]), "")
        t.contains(row, "kube-apiserver.yaml", f"{what}: status shows an API server row")
        t.contains(out, reason, f"{what}: status says what is wrong")
        for c in ("kube-controller-manager", "kube-scheduler"):
            t.contains(out, c, f"{what}: status still shows the readable components")
        t.contains(err, real, f"{what}: status stderr names the file")

        rc, out, err = t.run(root, ["status", "--json"])
        t.eq(rc, 2, f"{what}: status --json exit code")
        try:
            comps = {c.get("name"): c for c in json.loads(out)["components"]}
        except (ValueError, KeyError, TypeError) as e:
            t.failures.append(f"{what}: status --json output {e}: {out!r}")
            comps = {}
        a = comps.get("kube-apiserver", {})
        t.eq(a.get("manifest"), real, f"{what}: JSON row of the API server")
        t.contains(str(a.get("problem")), reason, f"{what}: JSON problem")
        t.eq(a.get("binaryVersion", "absent"), None, f"{what}: JSON binaryVersion")

        for args in WRITES:
            t.refused(root, args, [real, reason], f"{what}: {' '.join(args)}")


def test_other_unusable_file(t):
    """Any file the kubelet would load must be a pod, not only the components'."""
    root = t.new_root()
    notes = mpath(root, "notes.yaml")
    write(notes, "todo: upgrade the control plane\n")
    rc, out, err = t.run(root, ["status"])
    t.eq(rc, 2, "status exit code")
    t.contains(out, "notes.yaml", "status shows the file")
    t.contains(err, os.path.realpath(notes), "status stderr names the file")
    t.refused(root, UPGRADE_NO_WAIT, [os.path.realpath(notes), "kind"], "upgrade --no-wait")


def test_non_utf8_name(t):
    """A manifest name that is not UTF-8: refused up front, named escaped, nothing created."""
    root = t.new_root()
    mdir = os.path.join(root, MANIFEST_DIR).encode()
    os.rename(os.path.join(mdir, b"kube-scheduler.yaml"), os.path.join(mdir, b"kube\xff.yaml"))
    for args in (["status"], ["status", "--json"], ["plan", "--binary-version", "v1.35.0"], UPGRADE_NO_WAIT,
                 ["upgrade", "--binary-version", "v1.35.0", "--dry-run"]):
        rc, out, err = t.refused(root, args, ["kube\\xff.yaml", "UTF-8"], " ".join(args))
        t.eq(out, "", f"{' '.join(args)}: stdout")
    t.check(not os.path.exists(os.path.join(root, "var", "lib", "cplet")), "no state directory was created")


def test_special_file(t):
    """A FIFO (or socket) in the manifest directory: exit 2 naming it, without blocking."""
    import socket

    for kind in ("FIFO", "socket"):
        root = t.new_root()
        path = mpath(root, "extra.yaml")
        if kind == "FIFO":
            os.mkfifo(path, 0o600)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()
        for args in (["status"], ["plan", "--binary-version", "v1.35.0"], UPGRADE_NO_WAIT):
            t.refused(root, args, [os.path.realpath(path), kind], f"{kind}: {' '.join(args)}")


def image_line(root, component):
    return next((l.strip() for l in read(mpath(root, component + ".yaml")).splitlines()
                 if l.strip().startswith("image:")), None)


def pin_images(root):
    """kube-apiserver pinned by digest, kube-scheduler tagged without "v"."""
    p = mpath(root, "kube-apiserver.yaml")
    write(p, read(p).replace(f"kube-apiserver:{EXAMPLE_VERSION}", f"kube-apiserver:{EXAMPLE_VERSION}@{DIGEST}"))
    p = mpath(root, "kube-scheduler.yaml")
    write(p, read(p).replace(f"kube-scheduler:{EXAMPLE_VERSION}", "kube-scheduler:1.34.2"))


def test_emulation_step_keeps_image(t):
    """Emulation-only steps leave `image` byte for byte: the digest pin and the tag's spelling."""
    root = t.new_root()
    pin_images(root)
    before = {c: image_line(root, c) for c in COMPONENTS}
    t.eq(before["kube-apiserver"], f"image: registry.k8s.io/kube-apiserver:{EXAMPLE_VERSION}@{DIGEST}", "setup")
    # Forced: emulating 1.33 implies min-compatibility 1.32, below the 1.33 the node ran with.
    rc, out, err = t.run(root, ["upgrade", "--binary-version", EXAMPLE_VERSION, "--emulated-version", "1.33",
                                "--no-wait", "--force"], unchanged=False)
    t.eq(rc, 0, f"emulation downgrade: exit code (stderr {err.strip()!r})")
    for c in COMPONENTS:
        t.eq(image_line(root, c), before[c], f"{c}: image after the emulation steps")
        t.contains(read(mpath(root, c + ".yaml")), "--emulated-version=1.33", f"{c}: the step did happen")


def test_binary_step_on_pinned_image(t):
    """A binary step on a digest-pinned image needs --image with the new digest."""
    root = t.new_root()
    pin_images(root)
    t.refused(root, ["plan", "--binary-version", "v1.35.0"], ["kube-apiserver", "digest", "--image kube-apiserver="],
              "plan without --image")
    t.refused(root, UPGRADE_NO_WAIT, ["--image kube-apiserver="], "upgrade without --image")
    good = f"registry.k8s.io/kube-apiserver:v1.35.0@{NEW_DIGEST}"
    for bad, needle in ((f"evil.example.com/kube-apiserver:v1.35.0@{NEW_DIGEST}", "registry.k8s.io/kube-apiserver"),
                        (f"registry.k8s.io/kube-apiserver:v1.35.1@{NEW_DIGEST}", "v1.35.0"),
                        ("registry.k8s.io/kube-apiserver:v1.35.0@sha256:zz", "digest")):
        t.refused(root, UPGRADE_NO_WAIT + ["--image", f"kube-apiserver={bad}"], [bad, needle], f"--image {bad}")
    t.refused(root, UPGRADE_NO_WAIT + ["--image", "kube-apiserver"], ["COMPONENT=IMAGE"], "--image without =")
    t.refused(root, UPGRADE_NO_WAIT + ["--image", f"kube-proxy={good}"], ["kube-proxy"], "--image unknown component")
    t.refused(root, ["status", "--image", f"kube-apiserver={good}"], ["--image"], "status --image")

    rc, out, err = t.run(root, ["plan", "--json", "--binary-version", "v1.35.0", "--image", f"kube-apiserver={good}"])
    t.eq(rc, 0, f"plan with --image: exit code (stderr {err.strip()!r})")
    rc, out, err = t.run(root, UPGRADE_NO_WAIT + ["--image", f"kube-apiserver={good}"], unchanged=False)
    t.eq(rc, 0, f"upgrade with --image: exit code (stderr {err.strip()!r})")
    t.eq(image_line(root, "kube-apiserver"), f"image: {good}", "kube-apiserver image")
    t.eq(image_line(root, "kube-scheduler"), "image: registry.k8s.io/kube-scheduler:v1.35.0", "kube-scheduler image")


TESTS = [
    ("--plugin-dir A --plugin-dir /nonexistent exits 2 (no double free)", test_plugin_dir_twice),
    ("an API server manifest that is not a usable pod: error row, every write refused", test_unusable_pod),
    ("any other file that is not a pod refuses too", test_other_unusable_file),
    ("a manifest name that is not UTF-8 is refused up front, escaped", test_non_utf8_name),
    ("a FIFO or socket in the manifest dir exits 2 without blocking", test_special_file),
    ("emulation steps leave a pinned image byte for byte", test_emulation_step_keeps_image),
    ("a binary step on a digest-pinned image needs --image", test_binary_step_on_pinned_image),
]


if __name__ == "__main__":
    sys.exit(run_tap(TESTS, Case))
