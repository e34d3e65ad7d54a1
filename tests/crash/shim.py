# SPDX-License-Identifier: Apache-2.0
"""Running cplet under the durable-operation shim (tests/crash/durable-shim.c) and reading its
log. CPLET_DURABLE_SHIM (set by tests/meson.build) is the path of the shared module."""

import os
import tempfile

SHIM = os.environ.get("CPLET_DURABLE_SHIM", "")


class Op:
    """One line of the shim's log: n, op (write fsync rename mkdir unlink truncate), path,
    path2 (None), result ("0", "-ENOENT", "kill", "inject:-EIO")."""

    __slots__ = ("n", "op", "path", "path2", "result")

    def __init__(self, line):
        n, op, path, path2, result = line.rstrip("\n").split("\t")
        self.n = int(n)
        self.op = op
        self.path = path
        self.path2 = None if path2 == "-" else path2
        self.result = result

    @property
    def ok(self):
        return self.result == "0"

    def __repr__(self):
        return "%d %s %s%s %s" % (self.n, self.op, self.path, " -> " + self.path2 if self.path2 else "", self.result)


def env(root, log=None, kill_at=None, fail_at=None, errno=None, fail_count=None, ops=None, path=None, base=None):
    """The environment for a cplet run under the shim, watching `root` (made canonical)."""
    e = dict(os.environ if base is None else base)
    e["LD_PRELOAD"] = SHIM
    e["CPLET_SHIM_ROOT"] = os.path.realpath(root)
    # A sanitizer build wants its runtime first in the list; the shim only passes calls on.
    e["ASAN_OPTIONS"] = ":".join(x for x in (e.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)
    for k in ("CPLET_SHIM_LOG", "CPLET_SHIM_KILL_AT", "CPLET_SHIM_FAIL_AT", "CPLET_SHIM_ERRNO",
              "CPLET_SHIM_FAIL_COUNT", "CPLET_SHIM_OPS", "CPLET_SHIM_PATH"):
        e.pop(k, None)
    for k, v in (("CPLET_SHIM_LOG", log), ("CPLET_SHIM_KILL_AT", kill_at), ("CPLET_SHIM_FAIL_AT", fail_at),
                 ("CPLET_SHIM_ERRNO", errno), ("CPLET_SHIM_FAIL_COUNT", fail_count), ("CPLET_SHIM_OPS", ops),
                 ("CPLET_SHIM_PATH", path)):
        if v is not None:
            e[k] = str(v)
    return e


def new_log():
    fd, path = tempfile.mkstemp(prefix="cplet-shim-", suffix=".log")
    os.close(fd)
    return path


def read_log(path):
    try:
        with open(path) as f:
            return [Op(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def parent(path):
    d = os.path.dirname(path)
    return d if d else "."


def atomic_write_violations(ops):
    """Checks every rename in a log for the order of an atomic write: the renamed file was
    fsync'd after its last write and before the rename, and the very next operation is an
    fsync of the target's directory. Also: each directory created is followed at once by an
    fsync of its parent. Returns a list of sentences (empty: all in order)."""
    bad = []
    for i, o in enumerate(ops):
        if o.op == "rename" and o.ok:
            last_write = max((j for j in range(i) if ops[j].op == "write" and ops[j].path == o.path), default=None)
            synced = [j for j in range(i) if ops[j].op == "fsync" and ops[j].path == o.path and ops[j].ok
                      and (last_write is None or j > last_write)]
            if last_write is None:
                bad.append("%r: nothing was written to %s before it was renamed" % (o, o.path))
            elif not synced:
                bad.append("%r: %s was not fsync'd between its last write (op %d) and the rename"
                           % (o, o.path, ops[last_write].n))
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if not (nxt and nxt.op == "fsync" and nxt.path == parent(o.path2)):
                bad.append("%r: not followed by an fsync of %s (next: %r)" % (o, parent(o.path2), nxt))
        if o.op == "mkdir" and o.ok:
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if not (nxt and nxt.op == "fsync" and nxt.path == parent(o.path)):
                bad.append("%r: the new directory is not followed by an fsync of %s (next: %r)"
                           % (o, parent(o.path), nxt))
    return bad
