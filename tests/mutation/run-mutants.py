#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Mutation check: does the test suite notice when safety-critical code is broken?

Each mutation below is one small edit of cplet's code (a condition disabled, a bound moved,
a flag dropped), given as a file, the exact original text (a line or a unique substring) and
its replacement, so that the list keeps working while code moves around. For each mutation
the script applies it to a scratch copy of the tree (never the working tree), rebuilds that
copy (one plain build directory per copy, reused), runs the chosen test suites and records
whether some test failed (killed) or all passed (survived); then it restores the file.

A mutation whose original text is not found is reported as "stale" (update the list), one
whose text occurs more than once as "ambiguous"; neither is silently skipped. A mutation
that does not compile is reported as "broken" and not counted.

Usage:
  tests/mutation/run-mutants.py [--only N[,N...]] [--jobs J] [--suites unit,cli,sim,e2e]
                                [--tests test-recovery,test-durability,...]
                                [--list] [--keep] [--timeout-multiplier M]

Prints one line per mutation, then the kill ratio and every survivor. Exit status 0 when
every counted mutation was killed and none is stale, 1 otherwise, 2 when the baseline (the
unmutated copy) does not pass the chosen suites.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# --------------------------------------------------------------------------------------
# The mutations. Keep each one small and meaningful: "what would break if this line were
# wrong". `why` says what a surviving mutant would let through.

M = []


def mutant(file, original, replacement, why):
    M.append({"file": file, "original": original, "replacement": replacement, "why": why})


# Planner rules and skew (agent/lib/plan.c)
mutant("agent/lib/plan.c", "if (kminor_cmp(w[i].emulated, ref->emulated) > 0)", "if (false)",
       "skew: a controller-manager/scheduler may emulate above the API server")
mutant("agent/lib/plan.c", "if (kminor_cmp(w[i].emulated, ref->min_compat) < 0)", "if (false)",
       "skew: a controller-manager/scheduler may emulate below the API server's min-compatibility")
mutant("agent/lib/plan.c", "if (kminor_cmp(binary_minor(&w[i]), binary_minor(ref)) > 0)", "if (false)",
       "skew: a component may run a newer binary than the API server")
mutant("agent/lib/plan.c", "w->forward_compat = forward_compat_kept(w);", "w->forward_compat = false;",
       "--emulation-forward-compatible silently dropped by the planner")
mutant("agent/lib/plan.c", "w->forward_compat = forward_compat_kept(w);", "(void) forward_compat_kept(w);",
       "--emulation-forward-compatible kept when emulation reaches the binary (the binary refuses it)")
mutant("agent/lib/plan.c", "b->floor = t->force ? KMINOR(0, 0) : node_floor(b);", "b->floor = KMINOR(0, 0);",
       "high-water floor ignored by the planner")
mutant("agent/lib/plan.c", "kminor f = b->target->min_compat_floor;", "kminor f = KMINOR(0, 0);",
       "the store's high-water mark not counted in the planner's floor")
mutant("agent/lib/plan.c", "w->min_compat = max_minor(d, b->floor);", "w->min_compat = d;",
       "lowering emulation drags an implied min-compatibility below the floor")
mutant("agent/lib/plan.c", "if (kminor_cmp(target_emulated, b->w[k].min_compat) < 0) {", "if (false) {",
       "emulation lowered below the min-compatibility version in force")
mutant("agent/lib/plan.c", "for (kminor m = kminor_add(lowest, 1);", "for (kminor m = b->target_emulated;",
       "emulation raised in one jump instead of one minor at a time")
mutant("agent/lib/plan.c",
       "if (!w->frozen && !binary_at_target(b, w) && kversion_cmp(&w->binary, &b->target->binary) > 0) {",
       "if (false) {",
       "binary downgrades in rank order (API server first) instead of reverse")
# Gone: "a binary step to a binary older than the emulated version" and "a binary that implies
# other versions than planned" survived every suite because neither refusal could happen (the
# emulation is lowered to the target first, which is at most the target binary; the flags are
# written whenever the versions differ from the binary's defaults). Both are asserts now.
mutant("agent/lib/plan.c",
       "if (s.min_compat_set && !(w->in->min_compat_since.major && kminor_cmp(b, w->in->min_compat_since) >= 0))",
       "if (false)",
       "--min-compatibility-version written for a plugin whose binary lacks it")
# A target's components (issue 8): the others never move, and a step that needs them is refused.
mutant("agent/lib/plan.c", "                b->w[k].frozen = true;", "                b->w[k].frozen = false;",
       "components ignored: every component moves")
mutant("agent/lib/plan.c", "if (!w->frozen && !binary_at_target(b, w)) {", "if (!binary_at_target(b, w)) {",
       "a frozen component gets a binary step")
mutant("agent/lib/plan.c", "if (!b->w[k].frozen && kminor_cmp(b->w[k].emulated, m) < 0) {",
       "if (kminor_cmp(b->w[k].emulated, m) < 0) {",
       "a frozen component gets an emulation step")
mutant("agent/lib/plan.c", "if (!b->w[k].frozen && kminor_cmp(b->w[k].emulated, m) > 0) {",
       "if (kminor_cmp(b->w[k].emulated, m) > 0) {",
       "a frozen component gets an emulation step downwards")
mutant("agent/lib/plan.c", "if (!b->w[k].frozen && (lower ? c > 0 : c < 0)) {", "if (lower ? c > 0 : c < 0) {",
       "a frozen component gets a min-compatibility step")
mutant("agent/lib/plan.c", "if (breach != SKEW_OK && b->w[0].frozen != b->w[o].frozen)", "if (false)",
       "a refusal because of a frozen component does not name it nor say what it must do first")
mutant("agent/lib/op-plan.c", "pt.components = t->components;", "pt.components = NULL;",
       "cplet upgrade --components moves every component")
mutant("agent/lib/op-rollout.c", ".components = (const char *const *) t->components,", ".components = NULL,",
       "resume after an interrupted --components rollout moves every component")

# Version rules (agent/lib/version.c, FACTS.md)
mutant("agent/lib/version.c", "return kminor_max(KMINOR(1, 31), kminor_add(binary, -3));",
       "return kminor_max(KMINOR(1, 31), kminor_add(binary, -4));",
       "emulation window four minors wide")
mutant("agent/lib/version.c", "return kminor_max(compat_floor(binary), kminor_add(emulated, -1));",
       "return kminor_max(compat_floor(binary), kminor_add(emulated, 0));",
       "default min-compatibility = emulated instead of emulated - 1")
mutant("agent/lib/version.c",
       "if (kminor_cmp(min_compat, floor) < 0 || kminor_cmp(min_compat, emulated) > 0) {",
       "if (kminor_cmp(min_compat, floor) < 0) {",
       "min-compatibility above the emulated version accepted")
mutant("agent/lib/version.c", "if (kminor_cmp(emulated, floor) < 0 || kminor_cmp(emulated, s->binary) > 0) {",
       "if (kminor_cmp(emulated, s->binary) > 0) {",
       "emulated version below the binary's window accepted")
mutant("agent/lib/version.c", "if (s->forward_compat_set && kminor_eq(emulated, s->binary))", "if (false)",
       "--emulation-forward-compatible accepted when emulation == binary")

# Applying a step (agent/lib/component.c)
mutant("agent/lib/component.c", "if (!step->forward_compat)", "if (true)",
       "the forward-compatibility flags removed from the manifest although the step keeps them")

# Store: lock, retention, external edits, durability, permissions
mutant("agent/lib/store.c", "if (flock(fd, LOCK_EX | LOCK_NB) < 0) {", "if (false) {",
       "a second writer is not refused")
mutant("agent/lib/store.c", "if (n == live || n == newest_healthy)", "if (n == newest_healthy)",
       "retention prunes the live revision")
mutant("agent/lib/store.c", "if (n == live || n == newest_healthy)", "if (n == live)",
       "retention prunes the newest healthy revision")
mutant("agent/lib/store.c", "if (!s->defer_prune)", "if (true)",
       "retention during a rollout removes revisions an unwind may need")
mutant("agent/lib/store.c", "if (streq(l->items[i].sha256, sha))", "if (true)",
       "external edit not detected: any live manifest taken for the newest revision")
mutant("agent/lib/store.c", "if (n > 0 && streq(end, \".yaml\") && !revision_list_find(l, (unsigned) n))",
       "if (false)", "an interrupted write (N.yaml without N.json) is left behind")
mutant("agent/lib/fs-util.c", "if (fsync(dirfd) < 0)\n                return -errno;\n        return 0;",
       "if (false)\n                return -errno;\n        return 0;",
       "the directory fsync after a rename removed (the rename may not be durable)")
mutant("agent/lib/fs-util.c", "if (r >= 0 && fsync(fd) < 0)", "if (false)",
       "a file renamed into place before its data is durable")
mutant("agent/lib/fs-util.c", "if (st.st_mode & (S_IWGRP | S_IWOTH))", "if (false)",
       "a group/world-writable manifest or state directory accepted")
mutant("agent/lib/fs-util.c", "if (st.st_uid != geteuid())", "if (false)",
       "a manifest or state directory owned by someone else accepted")
mutant("agent/lib/fs-util.c", "fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);",
       "fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);",
       "a symbolic link followed when reading a manifest or state file")
mutant("agent/lib/fs-util.c", "O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC", "O_RDONLY | O_DIRECTORY | O_CLOEXEC",
       "a symbolic link followed on the way to a manifest or state directory")

# The min-compatibility high-water mark
mutant("agent/lib/store.c", "if (kminor_cmp(current, v) >= 0)", "if (true)",
       "the high-water mark never raised")
mutant("agent/lib/store.c",
       "if (!v || !json_is_object(j) || json_object_size(j) != 1 || kminor_parse(v, &m, NULL) < 0)",
       "if ((m = KMINOR(0, 0)).major)",
       "a corrupt high-water file silently taken as no mark")
mutant("agent/lib/store.c", "r = high_water_rebuild(s, &m, ret_error);", "r = 0, m = KMINOR(0, 0);",
       "a deleted high-water file silently taken as no mark")
mutant("agent/lib/store.c",
       "        r = store_high_water_raise(s, info->min_compat_version, ret_error);\n"
       "        return r < 0 ? r : store_list(s, component, ret, ret_error);",
       "        r = 0;\n        return r < 0 ? r : store_list(s, component, ret, ret_error);",
       "neither an adopted nor a new revision raises the mark (begin_revision)")
mutant("agent/lib/op-write.c", "if (r >= 0 && !force)\n                r = check_high_water(",
       "if (false)\n                r = check_high_water(",
       "high-water mark not enforced for rollback --to-revision and flags")
mutant("agent/lib/op-write.c", "if (kminor_cmp(next->min_compat, hw) >= 0)", "if (true)",
       "single write below the high-water mark accepted")
mutant("agent/lib/op-write.c", "if (co->versions_known && kminor_cmp(co->min_compat, hw) > 0)", "if (false)",
       "single write below the min-compatibility in force (above the recorded mark) accepted")
mutant("agent/lib/op-write.c",
       "if (next->emulated.major != co->emulated.major || diff > 1 || diff < -1)", "if (false)",
       "a single write moves emulation by more than one minor")
mutant("agent/lib/op-write.c", "if (kminor_cmp(next->emulated, co->min_compat) < 0)", "if (false)",
       "a single write emulates below the min-compatibility in force")

# Node reading (agent/lib/node.c)
mutant("agent/lib/node.c", "        if (other)\n", "        if (false)\n",
       "a component defined twice (a .bak the kubelet runs) accepted")

# Rollout: journal transitions, unwind, external edits on resume/abort (agent/lib/rollout.c)
mutant("agent/lib/rollout.c", "stop = st->kind == JOURNAL_KIND_MIN_COMPAT;", "stop = false;",
       "an unwind goes back past an explicit min-compatibility raise")
mutant("agent/lib/rollout.c", "k = below_high_water(r, i, st->from, &stop);", "k = 0;",
       "an unwind goes back below the high-water mark (an implied raise)")
mutant("agent/lib/rollout.c", "if (r->live[i] != want)", "if (false)",
       "resume/abort discard a hand edit made after the interruption")
mutant("agent/lib/rollout.c", ".not_before_ticks = not_before,", ".not_before_ticks = 0,",
       "the gate accepts a process started before the swap")
mutant("agent/lib/rollout.c", "return st->swap_ticks;", "return 0;",
       "resume's gate accepts a process started before the interrupted swap")
mutant("agent/lib/rollout.c", "st->state = JOURNAL_STEP_SWAPPING;", "st->state = JOURNAL_STEP_WRITING;",
       "the journal says 'writing' after the revision exists and the swap may happen")

# Gate decisions (agent/lib/gate.c) and process detection (agent/lib/probe.c)
mutant("agent/lib/gate.c", "if (status < 200 || status > 299) {", "if (status < 200 || status > 599) {",
       "an unhealthy (5xx) probe counted as healthy")
mutant("agent/lib/gate.c", "if (now - g->stable_since >= g->spec->stable_usec) {", "if (true) {",
       "--stable-for not held: the first 2xx passes the gate")
mutant("agent/lib/gate.c", "if (v->binary.major != b.major || v->binary.minor != b.minor) {", "if (false) {",
       "/version reporting another binary accepted")
mutant("agent/lib/gate.c", "if (kminor_cmp(b, KMINOR(1, 33)) < 0)\n                return VERSIONS_MATCH;",
       "if (true)\n                return VERSIONS_MATCH;",
       "/version's emulated and min-compatibility versions not checked")
mutant("agent/lib/probe.c",
       "if (r >= 0 && (state_is_dead(state) || start < q->not_before_ticks || start < min_start))",
       "if (r >= 0 && (state_is_dead(state) || start < min_start))",
       "a process started before the swap taken for the new one")
mutant("agent/lib/probe.c", "return cmdline_equal(q->cmdline, q->cmdline + size, q->argv, q->n);", "return 1;",
       "any process taken for the component, whatever its command line")
mutant("agent/lib/probe.c", "return r < 0 ? r : real == uid && effective == uid;", "return r < 0 ? r : 1;",
       "a process of another user with the component's command line taken for it")

# The operation layer's preflight (agent/lib/op-env.c)
mutant("agent/lib/op-env.c", "if (r == 0)\n                return 0;\n        return set_error(ret_error, -EINVAL,\n",
       "if (true)\n                return 0;\n        return set_error(ret_error, -EINVAL,\n",
       "an unfinished rollout's journal not refused: a write overtakes it")
mutant("agent/lib/op-env.c", "if (r >= 0 && !recovery)\n                r = refuse_if_unfinished(e->root, ret_error);",
       "if (false)\n                r = refuse_if_unfinished(e->root, ret_error);",
       "an unfinished journal refused only after the lock is taken (the refusal touches the disk)")
mutant("agent/lib/op-env.c", "if (store_lock_holder(root, &holder) <= 0)", "if (true)",
       "a held lock found only when taking it: the refusal does not say who holds it")

# Journal validation (agent/lib/journal.c)
mutant("agent/lib/journal.c", "if (st->undoes > i || ", "if (",
       "a step that undoes a later (or nonexistent) step accepted: out-of-range index")
mutant("agent/lib/journal.c", "(j->unwind_stopped_at > j->n_steps ||", "(false ||",
       "unwindStoppedAt past the last step accepted: out-of-range index")

# Compare-and-swap at the rename (agent/lib/store.c)
mutant("agent/lib/store.c", "if (rev->parent > 0) {\n                r = check_live_is(",
       "if (false) {\n                r = check_live_is(",
       "store_swap ignores a live file changed since the revision was prepared")

# --------------------------------------------------------------------------------------

SOURCE = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
print_lock = threading.Lock()


def say(*a):
    with print_lock:
        print(*a, flush=True)


def copy_tree(dst):
    """The working tree as it is (tracked and untracked, not ignored: no build dirs)."""
    files = subprocess.run(["git", "-C", SOURCE, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        rel = f.decode()
        src = os.path.join(SOURCE, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        out = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), out)
        else:
            shutil.copy2(src, out)
    # Directory modes matter to cplet's permission checks (examples/node).
    for dirpath, dirnames, _ in os.walk(SOURCE):
        rel = os.path.relpath(dirpath, SOURCE)
        if rel.startswith((".git", "build")) or "/build" in rel:
            dirnames[:] = []
            continue
        out = os.path.join(dst, rel)
        if os.path.isdir(out):
            shutil.copystat(dirpath, out)


class Scratch:
    def __init__(self, index, args):
        self.dir = tempfile.mkdtemp(prefix=f"cplet-mutants-{index}-")
        self.args = args
        copy_tree(self.dir)
        self.build = os.path.join(self.dir, "build")

    def run(self, cmd, timeout=None):
        try:
            p = subprocess.run(["nice"] + cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
            return p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired:
            return None, "timed out"

    def setup(self):
        rc, out = self.run(["meson", "setup", self.build])
        if rc != 0:
            raise RuntimeError(f"meson setup failed in {self.dir}:\n{out}")

    def compile(self):
        return self.run(["ninja", "-C", self.build])

    def test(self, maxfail=0):
        cmd = ["meson", "test", "-C", self.build, "--no-rebuild", "--print-errorlogs"]
        if maxfail:
            cmd += ["--maxfail", str(maxfail)]  # one failing test kills the mutant
        for s in self.args.suites:
            cmd += ["--suite", s]
        cmd += self.args.tests  # named tests on top of (or instead of) whole suites
        if self.args.timeout_multiplier:
            cmd += ["--timeout-multiplier", str(self.args.timeout_multiplier)]
        rc, out = self.run(cmd, timeout=self.args.mutant_timeout)
        failed = []
        try:
            with open(os.path.join(self.build, "meson-logs", "testlog.json")) as f:
                for line in f:
                    r = json.loads(line)
                    if r.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL"):
                        failed.append(r.get("name"))
        except (OSError, ValueError):
            pass
        return rc, failed

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def locate(root, m):
    path = os.path.join(root, m["file"])
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, 0
    return text, text.count(m["original"])


def run_one(scratch, index, m):
    path = os.path.join(scratch.dir, m["file"])
    text, count = locate(scratch.dir, m)
    if count == 0:
        return "stale", []
    if count > 1:
        return "ambiguous", []
    start = time.monotonic()
    try:
        with open(path, "w") as f:
            f.write(text.replace(m["original"], m["replacement"], 1))
        rc, out = scratch.compile()
        if rc != 0:
            return "broken", [out.strip().splitlines()[-1] if out.strip() else "build failed"]
        rc, failed = scratch.test(maxfail=1)
        if rc is None:
            return "killed", ["(timed out)"]
        return ("killed" if rc != 0 else "survived"), failed
    finally:
        with open(path, "w") as f:
            f.write(text)
        m["seconds"] = time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated mutation numbers (see --list)")
    ap.add_argument("--jobs", type=int, default=1, help="scratch copies built and tested in parallel")
    ap.add_argument("--suites", default="unit,cli", help="meson test suites (unit,cli,sim,e2e)")
    ap.add_argument("--tests", default="",
                    help="comma-separated test names run in addition to the suites (e.g. test-recovery, "
                         "test-durability: one test of a long suite); --suites '' runs only these")
    ap.add_argument("--timeout-multiplier", type=float, default=4,
                    help="meson test --timeout-multiplier (the machine may be loaded)")
    ap.add_argument("--mutant-timeout", type=float, default=3600, help="seconds per mutation's test run")
    ap.add_argument("--list", action="store_true", help="list the mutations and whether each still applies")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies")
    args = ap.parse_args()
    args.suites = [s for s in args.suites.split(",") if s]
    args.tests = [t for t in args.tests.split(",") if t]

    chosen = list(range(1, len(M) + 1))
    if args.only:
        chosen = [int(x) for x in args.only.split(",")]
        bad = [n for n in chosen if n < 1 or n > len(M)]
        if bad:
            ap.error(f"--only: no mutation {bad} (1..{len(M)})")

    if args.list:
        for n in chosen:
            m = M[n - 1]
            _, count = locate(SOURCE, m)
            state = "ok" if count == 1 else "stale" if count == 0 else "ambiguous"
            print(f"{n:3d} [{state}] {m['file']}: {m['why']}")
        return 0

    jobs = max(1, min(args.jobs, len(chosen)))
    say(f"mutation check: {len(chosen)} mutations, suites {','.join(args.suites)} tests {','.join(args.tests)}, {jobs} scratch cop"
        f"{'y' if jobs == 1 else 'ies'} of {SOURCE}")
    scratches = [Scratch(i, args) for i in range(jobs)]
    try:
        for s in scratches:
            s.setup()
            rc, out = s.compile()
            if rc != 0:
                say(f"baseline build failed in {s.dir}:\n{out}")
                return 2
        # The unmutated tree must pass, or every mutant would look killed.
        rc, failed = scratches[0].test()
        if rc != 0:
            say(f"baseline: the suites fail without any mutation ({', '.join(failed) or rc}); fix that first")
            return 2
        say("baseline: the chosen suites pass")

        queue = list(chosen)
        qlock = threading.Lock()
        results = {}

        def worker(s):
            while True:
                with qlock:
                    if not queue:
                        return
                    n = queue.pop(0)
                m = M[n - 1]
                state, detail = run_one(s, n, m)
                results[n] = (state, detail)
                extra = f" ({', '.join(detail)})" if detail else ""
                say(f"{n:3d} {state:9s} {m['file']}: {m['why']}{extra} [{m.get('seconds', 0):.0f}s]")

        with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
            for f in [ex.submit(worker, s) for s in scratches]:
                f.result()
    finally:
        if not args.keep:
            for s in scratches:
                s.remove()
        else:
            say("scratch copies kept: " + " ".join(s.dir for s in scratches))

    counted = [n for n in chosen if results.get(n, ("",))[0] in ("killed", "survived")]
    killed = [n for n in counted if results[n][0] == "killed"]
    survived = [n for n in counted if results[n][0] == "survived"]
    other = [n for n in chosen if n not in counted]
    say("")
    ratio = 100.0 * len(killed) / len(counted) if counted else 0.0
    say(f"kill ratio: {len(killed)}/{len(counted)} ({ratio:.0f}%), suites {','.join(args.suites)}"
        f" tests {','.join(args.tests)}")
    for n in survived:
        m = M[n - 1]
        say(f"  survivor {n}: {m['file']}: {m['original'].strip()!r} -> {m['replacement'].strip()!r}: {m['why']}")
    for n in other:
        m = M[n - 1]
        say(f"  {results.get(n, ('not run',))[0]} {n}: {m['file']}: {m['original'].strip()!r}")
    return 0 if not survived and not other else 1


if __name__ == "__main__":
    sys.exit(main())
