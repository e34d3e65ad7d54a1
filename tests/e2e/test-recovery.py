#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of cplet's recovery on a simulated control-plane node, printing TAP:
resume and abort after an interruption when the node changed meanwhile (a manifest moved
out, a hand edit), a hand edit made during a rollout, a restore that cannot happen, an
interrupted unwind, and journals that are not what cplet wrote.

Uses the machinery of test-rollout.py (the Case class and its helpers) and the same
environment (set by tests/meson.build).
"""

import importlib.util
import json
import os
import signal
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

_spec = importlib.util.spec_from_file_location("test_rollout", os.path.join(HERE, "test-rollout.py"))
tr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tr)

from e2e_util import (  # noqa: E402
    COMPONENTS, JOURNAL, MANIFEST_DIR, STATE_DIR, container, image_tag, journal, live_manifests, load_yaml,
    mpath, rdir, read_bytes, revision_meta, revision_numbers, run_tap, shell_quote, tree_checksum, tree_diff,
)
import yaml  # noqa: E402

OLD, NEW = tr.OLD, tr.NEW
GATE = tr.GATE
UPGRADE = tr.UPGRADE
APISERVER, KCM, SCHEDULER = COMPONENTS
SLOW = tr.SLOW
NEVER_READY_KCM = tr.NEVER_READY_KCM
check_finished = tr.check_finished
interrupt = tr.interrupt
waiting_on = tr.waiting_on
after_done = tr.after_done
wall = tr.wall
starts_since = tr.starts_since
running_starts = tr.running_starts

# Long enough for a healthy step on a loaded machine (and under sanitizers); a never-ready
# component fails after it whatever it is.
STEP_TIMEOUT = "6s"

# What a refusal may not change: the manifests and cplet's state. (The lock file under
# run/cplet is rewritten by every writing command today; that is not what these cases test.)
SETTLED = (MANIFEST_DIR, STATE_DIR)


def expect_refused(t, node, args, msg, needles=(), code=2):
    before = tree_checksum(node.root, SETTLED)
    rc, out, err, el = t.run(node, args)
    after = tree_checksum(node.root, SETTLED)
    t.eq(rc, code, "%s: exit code of cplet %s (stderr: %r; stdout: %r)" % (msg, shell_quote(args), err.strip(),
                                                                          out[-300:]))
    t.check(err.strip() != "", "%s: no reason on stderr" % msg)
    for n in needles:
        t.contains(err, n, "%s: stderr" % msg)
    t.check(before == after, "%s: files changed by a refused command:\n%s" % (msg, tree_diff(before, after)))
    return err


def hand_edit(node, component, flag="--v=2"):
    """What an administrator does: one more flag, the file rewritten by an editor (atomically,
    as editors and kubeadm do). Returns the new bytes."""
    doc = load_yaml(read_bytes(mpath(node.root, component)))
    c = container(doc, component)
    c["command"] = list(c.get("command") or []) + [flag]
    data = yaml.safe_dump(doc, default_flow_style=False).encode()
    node.write_manifest(component, data.decode())
    return data


def drop_temporaries(node):
    """A SIGKILL may land inside an atomic write and leave its dot-file (the design allows it;
    the next writing command removes it): gone before a case compares trees."""
    for sub in (MANIFEST_DIR, STATE_DIR):
        d = os.path.join(node.root, sub)
        for f in os.listdir(d):
            if f.startswith(".cplet-") and f.endswith(".tmp"):
                os.unlink(os.path.join(d, f))


def live_is_stored(t, node, component, msg):
    """Invariant 1 for a live manifest that may be a hand edit (no revision annotation)."""
    live = read_bytes(mpath(node.root, component))
    revs = [n for n in revision_numbers(node.root, component)
            if read_bytes(os.path.join(rdir(node.root, component), "%d.yaml" % n)) == live]
    t.check(revs, "%s: the live %s equals no stored revision" % (msg, component))
    return revs[-1] if revs else None


def history_reasons(t, node, component):
    return [(r.get("revision") or r.get("number"), r.get("reason") or "")
            for r in t.history(node).get(component, {}).get("revisions", [])]


def wait_running(node, component, tag, since, timeout=20.0):
    """Until the kubelet runs a process of `component` with image `tag`, started after `since`."""
    return node.wait_event(lambda e: e["event"] == "start" and e["file"] == component + ".yaml"
                           and image_tag(e["image"]) == tag, timeout=timeout, since=since)


def check_converged_to(t, node, originals, what, rc_out_err, code, phase):
    rc, out, err, el = rc_out_err
    t.eq(rc, code, "%s: exit code (stderr %r)" % (what, err.strip()))
    t.check_equal_to_originals(node, originals, what)
    t.check_healthy(node, what)
    t.check_running(node, OLD, what, emulated_flag=None)
    t.check_journal(node, phase, what)
    t.check_live_is_revision(node, what)
    t.check_no_dotfiles(node, what)


# --------------------------------------------------------------------------------------
# issue 7, defects 1 and 19: the in-flight component's manifest moved out


def test_manifest_moved_out(t):
    for action in ("resume", "abort"):
        what = "%s with the in-flight scheduler's manifest moved out" % action
        node = t.node(tr.OLD, knobs=SLOW)
        originals = live_manifests(node.root)
        r = interrupt(t, node, waiting_on(3, "health"), signal.SIGKILL, what)
        t.eq(r.rc, -signal.SIGKILL, "%s: cplet's end" % what)
        drop_temporaries(node)
        j_before = read_bytes(os.path.join(node.root, JOURNAL))
        # The usual way to stop a static pod: move its manifest out of the directory.
        moved = os.path.join(node.root, "kube-scheduler.yaml.moved-out")
        os.rename(mpath(node.root, SCHEDULER), moved)
        err = expect_refused(t, node, [action] + GATE, what,
                             needles=[SCHEDULER, "kube-scheduler.yaml", os.path.join(node.root, MANIFEST_DIR),
                                      "put"])
        t.check("complete" not in err, "%s: reported as complete: %r" % (what, err))
        t.eq(read_bytes(os.path.join(node.root, JOURNAL)), j_before, "%s: the journal" % what)
        # put back what the message asks for: then it converges
        os.rename(moved, mpath(node.root, SCHEDULER))
        if action == "abort":
            check_converged_to(t, node, originals, "%s, then put back and abort" % what,
                               t.run(node, ["abort"] + GATE), 0, "aborted")
        else:
            rc, out, err, el = t.run(node, ["resume"] + GATE)
            t.eq(rc, 0, "%s, then put back and resume: exit code (stderr %r)" % (what, err.strip()))
            t.check_status(node, NEW, "1.35", "1.34", "%s: after resume" % what)
            t.check_healthy(node, "%s: after resume" % what)
            t.check_journal(node, "done", "%s: after resume" % what)


def test_unknown_component_in_journal(t):
    what = "a journal step naming a component this node does not have"
    node = t.node(tr.OLD, knobs=SLOW)
    r = interrupt(t, node, waiting_on(2, "health"), signal.SIGKILL, what)
    path = os.path.join(node.root, JOURNAL)
    j = json.loads(read_bytes(path))
    j["steps"][-1]["component"] = "kube-proxy"
    with open(path, "w") as f:
        json.dump(j, f, indent=2)
    for action in ("resume", "abort"):
        expect_refused(t, node, [action] + GATE, "%s: %s" % (what, action), needles=["kube-proxy", "rollout.json"])


# --------------------------------------------------------------------------------------
# defect 2: a hand edit after the interruption, then the step of that component fails


def test_edit_after_interruption(t):
    what = "scheduler edited by hand while the rollout was interrupted, then its step fails"
    knobs = dict(SLOW)
    knobs[SCHEDULER] = {"versions": {"v1.35": {"neverReady": True}}}
    node = t.node(tr.OLD, knobs=knobs)
    r = interrupt(t, node, waiting_on(2, "health"), signal.SIGKILL, what)
    edited = hand_edit(node, SCHEDULER)
    rc, out, err, el = t.run(node, ["resume", "--stable-for", "0s", "--step-timeout", STEP_TIMEOUT])
    t.eq(rc, 1, "%s: resume exit code (stderr %r)" % (what, err.strip()))
    t.check("revision 0" not in err, "%s: a restore to revision 0: %r" % (what, err))
    # restored as a new revision: the hand edit's content, with cplet's revision annotation
    t.eq(tr.strip_annotation(load_yaml(read_bytes(mpath(node.root, SCHEDULER)))), load_yaml(edited),
         "%s: the scheduler is back to the hand edit" % what)
    reasons = history_reasons(t, node, SCHEDULER)
    t.check(any(reason == "external edit" for n, reason in reasons),
            "%s: the hand edit is not in the scheduler's history: %r" % (what, reasons))
    t.check_healthy(node, what)
    running = running_starts(node)
    t.eq({c: image_tag(e["image"]) for c, e in running.items()}, {c: OLD for c in COMPONENTS},
         "%s: images running afterwards" % what)
    t.check_journal(node, "failed", what)
    t.check_live_is_revision(node, what)


# --------------------------------------------------------------------------------------
# defect 4: a hand edit (or a kubeadm run) during a rollout


def test_edit_during_rollout(t):
    what = "scheduler edited by hand while the upgrade works on the API server"
    node = t.node(tr.OLD, knobs=SLOW)
    r = t.start(node, UPGRADE)
    ev = r.wait_event(tr.after_written(1), timeout=30)
    t.check(ev is not None, "%s: no written event (stderr %r)" % (what, r.err))
    edited = hand_edit(node, SCHEDULER)
    r.wait(60)
    t.eq(r.rc, 1, "%s: upgrade exit code (stderr %r)" % (what, r.err.strip()))
    t.contains(r.err, SCHEDULER, "%s: stderr names the component" % what)
    t.contains(r.err, "changed outside cplet", "%s: stderr says why it stopped" % what)
    t.contains(r.err, "external edit", "%s: stderr says how the edit was kept" % what)
    t.eq(read_bytes(mpath(node.root, SCHEDULER)), edited, "%s: the hand edit is still live" % what)
    reasons = history_reasons(t, node, SCHEDULER)
    t.check(reasons and reasons[0][1] == "external edit",
            "%s: newest scheduler revision is not the external edit: %r" % (what, reasons))
    live_n = revision_numbers(node.root, SCHEDULER)[-1]
    t.eq(read_bytes(os.path.join(rdir(node.root, SCHEDULER), "%d.yaml" % live_n)), edited,
         "%s: the newest scheduler revision's content" % what)
    t.check(not [e for e in r.events if e.get("component") == SCHEDULER and e.get("event") == "written"],
            "%s: cplet wrote the scheduler" % what)
    t.check_journal(node, "failed", what)
    for c in COMPONENTS:
        live_is_stored(t, node, c, what)
    t.check_no_dotfiles(node, what)
    # it stopped cleanly: nothing left to resume, and a new upgrade takes the edit as its start
    doc = t.status_json(node)
    t.check("interruptedRollout" not in doc, "%s: status shows an interrupted rollout" % what)


# --------------------------------------------------------------------------------------
# defect 3: a restore that cannot happen leaves the journal resumable


def test_restore_impossible_stays_resumable(t):
    what = "the failed step's previous revision is unreadable when it must be restored"
    node = t.node(tr.OLD, knobs=dict(NEVER_READY_KCM, **SLOW))
    originals = live_manifests(node.root)
    r = t.start(node, ["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", STEP_TIMEOUT,
                       "--json"])
    ev = r.wait_event(waiting_on(2), timeout=30)
    t.check(ev is not None, "%s: never waited on step 2 (stderr %r)" % (what, r.err))
    j = journal(node.root) or {}
    frm = (j.get("steps") or [{}])[-1].get("from")
    saved = os.path.join(node.root, "kcm-revision.yaml.saved")
    rev = os.path.join(rdir(node.root, KCM), "%s.yaml" % frm)
    os.rename(rev, saved)
    r.wait(60)
    t.eq(r.rc, 1, "%s: upgrade exit code (stderr %r)" % (what, r.err.strip()))
    t.contains(r.err, "resume", "%s: stderr says how to go on" % what)
    t.check_journal(node, "running", "%s: the journal stays open" % what)
    doc = t.status_json(node)
    t.check("interruptedRollout" in doc, "%s: status does not show the unfinished rollout" % what)
    expect_refused(t, node, UPGRADE, "%s: a new upgrade" % what, needles=["resume"])
    # put the revision back: resume restores the failed step and unwinds the plan
    os.rename(saved, rev)
    check_converged_to(t, node, originals, "%s, then put back and resume" % what,
                       t.run(node, ["resume", "--stable-for", "0s", "--step-timeout", STEP_TIMEOUT]), 1, "failed")


# --------------------------------------------------------------------------------------
# defect 5: an interrupted unwind step is restored once


def test_interrupted_unwind_restored_once(t):
    for action in ("resume", "abort"):
        what = "SIGKILL while the API server's unwind step waits, then %s" % action
        node = t.node(tr.OLD, knobs=dict(NEVER_READY_KCM, **SLOW))
        originals = live_manifests(node.root)
        t_kill = wall()
        r = interrupt(t, node, lambda e, evs: e.get("event") == "written" and e.get("kind") == "unwind",
                      signal.SIGKILL, what,
                      args=["upgrade", "--binary-version", NEW, "--stable-for", "0s", "--step-timeout", STEP_TIMEOUT,
                            "--json"])
        t.eq(r.rc, -signal.SIGKILL, "%s: cplet's end" % what)
        # the unwind's revision is live: wait until the kubelet runs it
        t.check(wait_running(node, APISERVER, OLD, t_kill) is not None,
                "%s: the kubelet never started the unwound API server" % what)
        node.wait_healthy(20)
        t0 = wall()
        res = t.run(node, [action, "--stable-for", "0s", "--step-timeout", STEP_TIMEOUT])
        starts = [e for e in starts_since(node, t0) if e["file"] == APISERVER + ".yaml"]
        t.eq(len(starts), 0, "%s: API server restarts during %s (it was already unwound): %r"
             % (what, action, [(e["image"], e["t"]) for e in starts]))
        check_converged_to(t, node, originals, what, res, 1 if action == "resume" else 0,
                           "failed" if action == "resume" else "aborted")


# --------------------------------------------------------------------------------------
# defect 6: a journal that is not what cplet wrote is refused, never overwritten


def _mutations():
    def phase(j):
        j["phase"] = "runing"

    def state(j):
        j["steps"][-1]["state"] = "wating"

    def kind(j):
        j["steps"][0]["kind"] = "binaries"

    def stopped(j):
        j["unwindStoppedAt"] = 99

    def revision(j):
        j["steps"][0]["to"] = 77

    def steps(j):
        j["steps"] = {"0": j["steps"][0]}

    def name(j):
        j["steps"][0]["component"] = "../kube-apiserver"

    def unknown(j):
        j["stepz"] = []

    return [
        ("an unknown phase", phase, ["phase", "runing"]),
        ("an unknown step state", state, ["state", "wating"]),
        ("an unknown step kind", kind, ["kind", "binaries"]),
        ("unwindStoppedAt out of range", stopped, ["unwindStoppedAt", "99"]),
        ("a revision the store does not have", revision, ["77", APISERVER]),
        ("steps not a list", steps, ["steps"]),
        ("a component name with a slash", name, ["../kube-apiserver"]),
        ("an unknown field", unknown, ["stepz"]),
    ]


def test_invalid_journal_refused(t):
    node = t.node(tr.OLD, knobs=SLOW)
    interrupt(t, node, after_done(1), signal.SIGKILL, "setup: SIGKILL after step 1")
    drop_temporaries(node)
    path = os.path.join(node.root, JOURNAL)
    good = read_bytes(path)
    cases = [(what, lambda j, m=m: m(j), needles) for what, m, needles in _mutations()]
    for what, mutate, needles in cases:
        j = json.loads(good)
        mutate(j)
        with open(path, "w") as f:
            json.dump(j, f, indent=2)
        for args in (["resume"] + GATE, ["abort"] + GATE, UPGRADE):
            expect_refused(t, node, args, "journal with %s: %s" % (what, args[0]),
                           needles=[os.path.join(node.root, JOURNAL)] + needles)
    # too large to be a journal cplet wrote: say so
    with open(path, "wb") as f:
        f.write(good[:-2] + b" " * (5 * 1024 * 1024) + b"}\n")
    for args in (["resume"] + GATE, UPGRADE):
        err = expect_refused(t, node, args, "an oversized journal: %s" % args[0], needles=[JOURNAL])
        t.check("Argument list too long" not in err, "oversized journal: %r" % err)
        t.contains(err, "larger than", "oversized journal: stderr says it is too large")
    # the real one still resumes
    with open(path, "wb") as f:
        f.write(good)
    rc, out, err, el = t.run(node, ["resume"] + GATE)
    t.eq(rc, 0, "resume of the untouched journal (stderr %r)" % err.strip())


TESTS = [
    ("resume/abort refuse while the in-flight component's manifest is moved out, then converge",
     test_manifest_moved_out),
    ("resume/abort refuse a journal naming a component the node does not have", test_unknown_component_in_journal),
    ("a hand edit made while interrupted is adopted: a failing step restores the edit", test_edit_after_interruption),
    ("a hand edit made during a rollout is kept as a revision and stops the rollout", test_edit_during_rollout),
    ("a restore that cannot happen leaves the journal open; resume finishes it", test_restore_impossible_stays_resumable),
    ("an interrupted unwind step is not restored a second time", test_interrupted_unwind_restored_once),
    ("an invalid or oversized journal is refused by resume, abort and upgrade", test_invalid_journal_refused),
]


def main():
    return run_tap(TESTS, tr.Case)


if __name__ == "__main__":
    sys.exit(main())
