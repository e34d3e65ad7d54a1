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

UPGRADE_NO_WAIT = ["upgrade", "--binary-version", "v1.35.0", "--no-wait"]
DIGEST = "sha256:" + "0123456789abcdef" * 4
NEW_DIGEST = "sha256:" + "fedcba9876543210" * 4


class Case(BaseCase):
    def new_root(self):
        root = tempfile.mkdtemp(prefix="cplet-cli-node-")
        self.roots.append(root)
        shutil.copytree(os.path.join(EXAMPLES, "node"), root, dirs_exist_ok=True, symlinks=True)
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


TESTS = [
    ("--plugin-dir A --plugin-dir /nonexistent exits 2 (no double free)", test_plugin_dir_twice),
]


if __name__ == "__main__":
    sys.exit(run_tap(TESTS, Case))
