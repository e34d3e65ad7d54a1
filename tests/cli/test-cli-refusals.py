#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CLI tests: a refused write touches nothing, not even the lock file; an unreadable journal
refuses every write; option pairs that cannot work are refused. Prints TAP.

Every case builds its own node root (a copy of examples/node) and compares a checksum of the
whole tree (paths, modes, owners, contents, link targets) before and after each refused
command. Cases that need a mount (a read-only or a full filesystem) mount a small tmpfs inside
the root and skip, saying why, where mounting is not allowed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from cli_common import (COMPONENTS, CPLET, EXAMPLES, MANIFEST_DIR, PLUGINS, TIMEOUT, BaseCase, mpath, read,
                        remove_roots, run_tap, tree_checksum, tree_diff, write)
from cli_common import copy_example  # noqa: E402

STATE = os.path.join("var", "lib", "cplet")
UPGRADE = ["upgrade", "--binary-version", "v1.35.0"]


def owners(root):
    """Adds owners to tree_checksum's view: a refusal must not chown anything either."""
    out = {}
    for rel, v in tree_checksum(root).items():
        st = os.lstat(os.path.join(root, rel))
        out[rel] = v + (st.st_uid, st.st_gid)
    return out


class Case(BaseCase):
    def __init__(self, name):
        super().__init__(name)
        self.mounts = []
        self.procs = []

    def new_root(self):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-refuse-"))
        self.roots.append(root)
        copy_example(root)
        os.chmod(os.path.join(root, MANIFEST_DIR), 0o700)
        return root

    def mount_tmpfs(self, path, options):
        os.makedirs(path, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True, text=True)
        if p.returncode != 0:
            return False
        self.mounts.append(path)
        return True

    def cleanup(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", m], capture_output=True)
        remove_roots(self.roots)

    def cplet(self, root, args, timeout=TIMEOUT):
        cmd = [CPLET, "--plugin-dir", PLUGINS, "--root", root] + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def refused(self, root, args, needle, rc=2):
        """Runs a command that must be refused with exit `rc`, naming `needle`, and change nothing."""
        before = owners(root)
        code, out, err = self.cplet(root, args)
        after = owners(root)
        what = " ".join(args)
        self.eq(code, rc, f"{what}: exit code (stderr {err.strip()!r})")
        self.contains(err, needle, f"{what}: the message names it")
        self.check(before == after, f"{what}: the tree changed:\n{tree_diff(before, after)}")

    def first_write(self, root):
        code, _, err = self.cplet(root, UPGRADE + ["--no-wait"])
        self.eq(code, 0, f"first upgrade --no-wait (stderr {err.strip()!r})")


def interrupted_rollout(t, root):
    """A gated upgrade on a node where nothing runs the manifests, ended by SIGTERM while it
    waits for the new process: the journal is left running, as after a crash."""
    cmd = [CPLET, "--plugin-dir", PLUGINS, "--root", root] + UPGRADE + ["--stable-for", "0s", "--step-timeout",
                                                                        "60s"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = os.path.join(root, STATE, "rollout.json")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with open(journal) as f:
                steps = json.load(f).get("steps", [])
            if steps and steps[-1].get("state") == "waiting":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=15)
    t.eq(p.returncode, 1, f"interrupted upgrade: exit code (stderr {err.strip()!r})")
    with open(journal) as f:
        t.eq(json.load(f).get("phase"), "running", "the journal is left running")


def test_stable_for_not_shorter(t):
    root = t.new_root()
    t.refused(root, UPGRADE + ["--stable-for", "5m", "--step-timeout", "1m"], "--stable-for")
    t.refused(root, UPGRADE + ["--stable-for", "30s", "--step-timeout", "30s"], "--step-timeout")
    t.refused(root, ["resume", "--stable-for", "6m"], "--stable-for")


def test_no_wait_and_dry_run(t):
    root = t.new_root()
    t.refused(root, UPGRADE + ["--no-wait", "--dry-run"], "--dry-run")
    t.refused(root, ["flags", "set", "kube-apiserver", "--v=3", "--no-wait", "--dry-run"], "--dry-run")


def test_flag_without_value(t):
    root = t.new_root()
    t.refused(root, ["flags", "set", "kube-apiserver", "--v", "--no-wait"], "--v")
    t.refused(root, ["flags", "set", "kube-scheduler", "--profiling", "--no-wait"], "--profiling")
    code, _, err = t.cplet(root, ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"])
    t.eq(code, 0, f"--v=3 is accepted (stderr {err.strip()!r})")
    # cplet's own --force after the component, like --no-wait: no component has a --force flag.
    code, _, err = t.cplet(root, ["flags", "set", "kube-scheduler", "--v=4", "--no-wait", "--force"])
    t.eq(code, 0, f"--force after the component is cplet's (stderr {err.strip()!r})")


def test_world_writable_state_dir(t):
    root = t.new_root()
    t.first_write(root)
    shutil.rmtree(os.path.join(root, "run"))
    os.chmod(os.path.join(root, STATE), 0o777)
    t.refused(root, UPGRADE + ["--binary-version", "v1.35.1", "--no-wait"], STATE)
    t.check(not os.path.exists(os.path.join(root, "run")), "no run/ directory was created")


def test_symlinked_state_dir(t):
    root = t.new_root()
    elsewhere = tempfile.mkdtemp(prefix="cplet-elsewhere-")
    t.roots.append(elsewhere)
    os.makedirs(os.path.join(root, "var", "lib"), exist_ok=True)
    os.symlink(elsewhere, os.path.join(root, STATE))
    t.refused(root, UPGRADE + ["--no-wait"], "cplet")
    t.eq(os.listdir(elsewhere), [], "nothing written through the link")


def test_world_writable_manifest_dir(t):
    root = t.new_root()
    os.chmod(os.path.join(root, MANIFEST_DIR), 0o777)
    t.refused(root, UPGRADE + ["--no-wait"], "manifests")


def test_symlinked_revisions_dir(t):
    root = t.new_root()
    t.first_write(root)
    shutil.rmtree(os.path.join(root, "run"))
    rev = os.path.join(root, STATE, "revisions")
    os.rename(rev, rev + "-real")
    os.symlink(rev + "-real", rev)
    t.refused(root, ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"], "revisions")


def test_corrupt_revision_metadata(t):
    root = t.new_root()
    t.first_write(root)
    shutil.rmtree(os.path.join(root, "run"))
    meta = os.path.join(root, STATE, "revisions", "kube-scheduler", "2.json")
    write(meta, "{ not json")
    t.refused(root, ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"], "2.json")
    t.refused(root, ["flags", "set", "kube-scheduler", "--v=3"], "2.json")


def test_corrupt_journal_refuses_writes(t):
    root = t.new_root()
    t.first_write(root)
    shutil.rmtree(os.path.join(root, "run"))
    write(os.path.join(root, STATE, "rollout.json"), '{"planId": "plan-1", "phase": "running", "steps": [')
    for args in (UPGRADE + ["--binary-version", "v1.35.1", "--no-wait"],
                 UPGRADE + ["--binary-version", "v1.35.1"],
                 ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"],
                 ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait", "--force"],
                 ["resume"], ["abort"]):
        t.refused(root, args, "rollout.json")
    before = owners(root)
    code, out, err = t.cplet(root, ["status"])
    t.eq(code, 0, f"status: exit code (stderr {err.strip()!r})")
    t.contains(out, "journal cannot be read", "status says the journal cannot be read")
    code, out, _ = t.cplet(root, ["status", "--json"])
    doc = json.loads(out) if code == 0 else {}
    t.contains(doc.get("journalError", ""), "rollout.json", "status --json: journalError")
    t.check(before == owners(root), "status changed the tree")


def hold_lock(t, root):
    """Another cplet at work: a process holding the lock exclusively, its pid and command in
    the file, as store_lock leaves them. Killed when the case ends."""
    lock = os.path.join(root, "run", "cplet", "lock")
    os.makedirs(os.path.dirname(lock), mode=0o700, exist_ok=True)
    code = ("import fcntl,os,sys,time\n"
            "fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT,0o600)\n"
            "fcntl.flock(fd,fcntl.LOCK_EX)\n"
            "os.ftruncate(fd,0)\n"
            "os.write(fd,(str(os.getpid())+' cplet upgrade --binary-version v1.35.0\\n').encode())\n"
            "print('held',flush=True)\ntime.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, lock], stdout=subprocess.PIPE)
    t.procs.append(p)
    p.stdout.readline()
    return p


WRITES = [UPGRADE + ["--binary-version", "v1.35.1", "--no-wait"],
          UPGRADE + ["--binary-version", "v1.35.1"],
          ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"],
          ["flags", "set", "kube-scheduler", "--v=3"],
          ["rollback", "--component", "kube-scheduler", "--to-revision", "1", "--no-wait", "--force"]]


def test_unfinished_rollout_refuses_writes(t):
    """An interrupted rollout refuses every other write before the lock is taken (the lock
    file keeps the interrupted command's pid); while a cplet holds the lock the refusal says a
    cplet is at work, not that a rollout needs resuming."""
    root = t.new_root()
    interrupted_rollout(t, root)
    for args in WRITES:
        t.refused(root, args, "did not finish")
    holder = hold_lock(t, root)
    for args in WRITES:
        t.refused(root, args, f"pid {holder.pid}")


def test_resume_refusing_hand_edit(t):
    root = t.new_root()
    interrupted_rollout(t, root)
    p = mpath(root, "kube-apiserver.yaml")
    write(p, read(p).replace("- --v=2", "- --v=4") if "- --v=2" in read(p) else read(p) + "\n# edited\n")
    for args in (["resume"], ["abort"]):
        t.refused(root, args, "kube-apiserver")


def state_on_tmpfs(t, root, size):
    """After a first write, moves the state directory onto a small tmpfs of its own; False
    (and the case skipped) where mounting is not allowed."""
    t.first_write(root)
    shutil.rmtree(os.path.join(root, "run"))
    state = os.path.join(root, STATE)
    copy = tempfile.mkdtemp(prefix="cplet-state-")
    t.roots.append(copy)
    shutil.copytree(state, copy, dirs_exist_ok=True)
    if not t.mount_tmpfs(state, f"mode=0700,size={size}"):
        t.skip_reason = "cannot mount a tmpfs here (not root, or no mount namespace)"
        return False
    shutil.copytree(copy, state, dirs_exist_ok=True)
    os.chmod(state, 0o700)
    return True


def test_read_only_state_dir(t):
    root = t.new_root()
    if not state_on_tmpfs(t, root, "4m"):
        return
    subprocess.run(["mount", "-o", "remount,ro", os.path.join(root, STATE)], check=True)
    t.refused(root, ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"], "Read-only file system", rc=1)
    t.refused(root, ["flags", "set", "kube-scheduler", "--v=3"], "Read-only file system", rc=1)


def test_full_state_dir(t):
    root = t.new_root()
    if not state_on_tmpfs(t, root, "512k"):
        return
    # Fill it up to the last block (a dot-file: the store ignores it).
    try:
        with open(os.path.join(root, STATE, ".filler"), "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    t.refused(root, ["flags", "set", "kube-scheduler", "--v=3", "--no-wait"], "No space left on device", rc=1)
    t.refused(root, UPGRADE + ["--binary-version", "v1.35.1", "--no-wait"], "No space left on device", rc=1)


TESTS = [
    ("--stable-for not shorter than --step-timeout is refused", test_stable_for_not_shorter),
    ("--no-wait with --dry-run is refused", test_no_wait_and_dry_run),
    ("flags set --NAME without a value is refused", test_flag_without_value),
    ("a world-writable state dir is refused before the lock", test_world_writable_state_dir),
    ("a symlinked state dir is refused before the lock", test_symlinked_state_dir),
    ("a world-writable manifest dir is refused before the lock", test_world_writable_manifest_dir),
    ("a symlinked revisions dir is refused before the lock", test_symlinked_revisions_dir),
    ("a corrupt revision .json is refused before the lock", test_corrupt_revision_metadata),
    ("a corrupt journal refuses every write, status says so", test_corrupt_journal_refuses_writes),
    ("an unfinished rollout refuses writes before the lock; a held lock is named",
     test_unfinished_rollout_refuses_writes),
    ("resume/abort refuse a hand edit since the interruption before the lock", test_resume_refusing_hand_edit),
    ("a read-only state dir is refused before the lock", test_read_only_state_dir),
    ("a full state dir is refused before the lock", test_full_state_dir),
]

if __name__ == "__main__":
    raise SystemExit(run_tap(TESTS, Case))
