#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of `cplet daemon` (issue 8) driven through the fake API server, printing TAP.

One fake API server (tests/apiserver/fake_apiserver.py) for every case, with a Node object per
simulated node (tests/sim): n1 (the main flow: an upgrade driven by `kubectl annotate`, idle,
re-sent targets, restarts, hostile targets, SIGHUP), n3 (a failing component, then a new
generation; targets sent during a rollout and the shared lock), n4 (the API server down during
the API-server step), n5 (SIGTERM and SIGKILL mid-rollout). n2 has no daemon of its own: node
n1's identity is pointed at it to get a 403, then n2's identity with a kubeconfig naming another
CA shows that TLS is verified unless --insecure-skip-tls-verify says otherwise. Each daemon runs in
the foreground with a NOTIFY_SOCKET bound here and the kubelet.conf of system:node:<name>;
the administrator writes targets with kubectl (where installed, else a merge patch) and
watches the status annotation through a second listener of the fake (which stays up during
an outage of the daemon's one).

Cases share state in order (the main node moves through them); CPLET_E2E_ONLY="1,2,5" runs a
subset, which works when the cases a case builds on are selected too.

Environment (set by tests/meson.build):
  CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR, CPLET_SIM_LAUNCHER
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from daemon_util import (  # noqa: E402
    KUBECTL, STATUS, TARGET, Cluster, Daemon, StatusLog, ctxt_switches, is_status_patch, is_watch,
)
import pki as pkimod  # noqa: E402  (tests/apiserver, on the path through daemon_util)
from e2e_util import (  # noqa: E402
    COMPONENTS, JOURNAL, SimNode, argv_of, cplet_cmd, flag_value, image_tag, journal, load_yaml, mpath,
    read_bytes, revision_numbers, tree_checksum, tree_diff,
)

OLD = "v1.34.2"
NEW = "v1.35.0"
PATCH = "v1.35.1"
APISERVER, KCM, SCHEDULER = COMPONENTS
ORDER = [APISERVER, KCM, SCHEDULER]
HANDLED = os.path.join("var", "lib", "cplet", "daemon.json")
TERMINAL = ("Succeeded", "Failed", "RolledBack", "Refused")
NODE_NAMES = ["n1", "n2", "n3", "n4", "n5"]
# stableFor: each step stays in view long enough for the status to be seen step by step.
GATE = {"stableFor": "500ms", "stepTimeout": "30s"}
FAST = {"stableFor": "0s", "stepTimeout": "20s"}


class Abort(Exception):
    """Ends a case whose later checks make no sense (its failure is recorded already)."""


class Case:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.notes = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)

    def eq(self, actual, expected, msg):
        return self.check(actual == expected, "%s: expected %r, got %r" % (msg, expected, actual))

    def contains(self, haystack, needle, msg):
        return self.check(needle in (haystack or ""), "%s: %r not in %r" % (msg, needle, haystack))

    def need(self, cond, msg):
        if not cond:
            self.failures.append(msg)
            raise Abort()
        return cond

    def note(self, msg):
        self.notes.append(msg)


# --------------------------------------------------------------------------------------
# The world the cases share


class World:
    def __init__(self):
        self.cluster = None
        self.sims = {}
        self.roots = []
        self.daemons = {}
        self.logs = {}
        self.old_daemons = []
        self.targets = {}

    def setup(self):
        self.cluster = Cluster(NODE_NAMES, git_version=OLD)

    def sim(self, name, version=OLD, knobs=None, backoff=0.1):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-daemon-%s-" % name))
        self.roots.append(root)
        n = SimNode(root, version, knobs=knobs or {}, backoff=backoff, backoff_max=1.0, grace=2.0)
        self.sims[name] = n
        n.up(timeout=30)
        return n

    def log(self, name):
        if name not in self.logs:
            self.logs[name] = StatusLog(self.cluster, name)
        return self.logs[name]

    def start_daemon(self, t, name, root=None, node_name=None, conf_of=None, ready=True):
        """Starts the daemon of simulated node `name` (root, identity and Node object of that
        name unless told otherwise); waits for READY=1 unless ready=False."""
        root = root or self.sims[name].root
        conf = self.cluster.kubelet_conf(conf_of or name)
        d = Daemon(root, conf, node_name=node_name or name)
        if name in self.daemons:
            self.old_daemons.append(self.daemons[name])
        self.daemons[name] = d
        if ready:
            r = d.wait_ready(30)
            t.need(r is not None, "no READY=1 from the daemon within 30 s: %s" % d.describe())
            t.note("READY=1 %.2f s after the daemon's start" % (r[0] - d.started))
        return d

    def daemon(self, t, name):
        d = self.daemons.get(name)
        t.need(d is not None and d.alive(), "the daemon of %s is not running (an earlier case failed): %s"
               % (name, d.describe() if d else "never started"))
        return d

    def teardown(self, t):
        for name, d in list(self.daemons.items()):
            if d.alive():
                rc, took = d.stop(signal.SIGTERM, 30)
                t.eq(rc, 0, "%s: exit status of the daemon on SIGTERM (stderr tail %r)" % (name, d.err[-500:]))
            t.check(d.close(), "%s: the daemon (pid %d) still runs" % (name, d.pid))
        for d in self.old_daemons:
            t.check(d.close(), "a daemon (pid %d) still runs" % d.pid)
        for log in self.logs.values():
            log.stop()
        for name, n in self.sims.items():
            left = n.down()
            t.eq(left, [], "%s: processes left after stopping the simulated node" % name)
        if self.cluster:
            t.eq(self.cluster.stop(), 0, "the fake API server's exit status")
        for r in self.roots:
            shutil.rmtree(r, ignore_errors=True)


W = World()


# --------------------------------------------------------------------------------------
# Helpers


def target_json(**fields):
    return json.dumps(fields, separators=(",", ":"))


def send_target(t, name, value, what="target"):
    """Writes the target annotation as the administrator; returns the wall time after it."""
    how, when = W.cluster.annotate(name, TARGET, value)
    if how != "kubectl":
        t.note("kubectl is not installed: %s written through apiclient (a merge patch)" % what)
    return when


def summary(values):
    """[(phase, step index, kind, component)] of status values, for messages."""
    out = []
    for _, _, s in values:
        if s is None:
            out.append("unparseable")
            continue
        st = s.get("step") or {}
        out.append("%s%s" % (s.get("phase"), " %s/%s %s %s" % (st.get("index"), st.get("total"), st.get("kind"),
                                                               st.get("component")) if st else ""))
    return out


def compress(xs):
    out = []
    for x in xs:
        if not out or out[-1] != x:
            out.append(x)
    return out


def wait_terminal(t, name, tid, gen, timeout, since_index=0):
    log = W.log(name)
    d = W.daemons.get(name)
    v = log.wait(lambda s: s.get("id") == tid and s.get("generation") == gen and s.get("phase") in TERMINAL,
                 timeout, since_index, d)
    t.need(v is not None, "no terminal status for %s/%d within %d s; statuses seen: %r; %s"
           % (tid, gen, timeout, summary(log.snapshot()[since_index:])[-30:], d.describe() if d else ""))
    return v


def status_components(s):
    return {c.get("name"): c for c in (s or {}).get("components") or []}


def check_components(t, s, binary, emulated, min_compat, what, healthy=True, revision=True):
    """healthy: True (each says healthy), "known-or-true" (true or null: not probed since the daemon
    started, never false), None (not checked). revision: each an integer (else null allowed)."""
    comps = status_components(s)
    t.eq(sorted(comps), sorted(COMPONENTS), "%s: components in the status" % what)
    for c in COMPONENTS:
        x = comps.get(c, {})
        t.eq((x.get("binaryVersion"), x.get("emulatedVersion"), x.get("minCompatibilityVersion")),
             (binary, emulated, min_compat), "%s: status of %s (binary, emulated, min-compatibility)" % (what, c))
        if healthy is True:
            t.eq(x.get("healthy"), True, "%s: status of %s: healthy" % (what, c))
        elif healthy == "known-or-true":
            t.check(x.get("healthy") in (True, None), "%s: status of %s: healthy %r" % (what, c, x.get("healthy")))
        rev = x.get("revision")
        t.check((isinstance(rev, int) and rev >= 1) or (not revision and rev is None),
                "%s: status of %s: revision %r" % (what, c, rev))


def check_status_shape(t, s, what):
    """The fields docs/protocol.md requires, with their types."""
    for k in ("phase", "updated", "agentVersion", "components"):
        t.check(k in s, "%s: status has no %r: %r" % (what, k, s))
    t.check(isinstance(s.get("agentVersion"), str) and s.get("agentVersion"), "%s: agentVersion %r"
            % (what, s.get("agentVersion")))
    try:
        up = datetime.datetime.fromisoformat(str(s.get("updated")).replace("Z", "+00:00"))
        t.check(up.tzinfo is not None and abs(up.timestamp() - time.time()) < 600,
                "%s: updated %r is not a recent RFC 3339 time" % (what, s.get("updated")))
    except ValueError:
        t.failures.append("%s: updated %r is not RFC 3339" % (what, s.get("updated")))
    msg = s.get("message")
    t.check(msg is None or (isinstance(msg, str) and len(msg.encode()) <= 1024),
            "%s: message longer than 1024 bytes" % what)


def running(node):
    """{component: kubelet start event of the process that runs now}."""
    cur = {}
    for e in node.events():
        if e["event"] == "start":
            cur[e["file"]] = e
        elif e["event"] in ("stop", "exit") and e["file"] in cur and cur[e["file"]]["pid"] == e["pid"]:
            del cur[e["file"]]
    return {f[:-5]: e for f, e in cur.items()}


def restarts_since(node, t0):
    return [(e["file"][:-5], image_tag(e["image"]), flag_value(e["argv"], "emulated-version"))
            for e in node.events("start") if e["t"] >= t0]


def upgrade_restarts(binary, emulations):
    return [(c, binary, emu) for emu in emulations for c in ORDER]


def check_node_at(t, node, binary, what, emulated_flag=None):
    for c in COMPONENTS:
        doc = load_yaml(read_bytes(mpath(node.root, c)))
        cont = (doc.get("spec") or {}).get("containers", [{}])[0]
        t.eq(image_tag(cont.get("image")), binary, "%s: image in the live %s manifest" % (what, c))
        t.eq(flag_value(argv_of(doc, c), "emulated-version"), emulated_flag,
             "%s: --emulated-version of the live %s manifest" % (what, c))
    r = running(node)
    for c in COMPONENTS:
        t.eq(image_tag((r.get(c) or {}).get("image")), binary, "%s: image of the running %s" % (what, c))


def handled_record(root):
    try:
        with open(os.path.join(root, HANDLED)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def journal_bytes(root):
    """The journal as (sha256, planId, phase): compared whole, printed short."""
    try:
        data = read_bytes(os.path.join(root, JOURNAL))
    except OSError:
        return None
    try:
        j = json.loads(data)
    except ValueError:
        j = {}
    return hashlib.sha256(data).hexdigest()[:16], j.get("planId"), j.get("phase")


def without_updated(s):
    d = dict(s or {})
    d.pop("updated", None)
    return d


def daemon_audit(name, since, until=None, user=None):
    return W.cluster.audit(user=user or "system:node:" + name, since=since, until=until)


def wait_journal_phase(root, phase, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = journal(root)
        if j and j.get("phase") == phase:
            return j
        time.sleep(0.05)
    return None


# --------------------------------------------------------------------------------------
# 1. start


def test_start(t):
    node = W.sim("n1")
    log = W.log("n1")
    mark = log.mark()
    t0 = time.time()
    d = W.start_daemon(t, "n1")
    t.check(d.wait_notify(lambda l: l.startswith("STATUS="), 5), "no STATUS= line from the daemon (notify: %r)"
            % d.notify_lines())
    v = log.wait(lambda s: s.get("phase") == "Idle", 20, mark, d)
    t.need(v is not None, "no Idle status on node n1 within 20 s (seen %r); %s"
           % (summary(log.snapshot()[mark:]), d.describe()))
    s = v[2]
    t.note("first status %.2f s after the daemon's start: %s" % (v[0] - t0, v[1]))
    check_status_shape(t, s, "Idle status")
    t.eq((s.get("id"), s.get("generation")), (None, None), "Idle status before any target: id, generation")
    # not adopted yet: no revision stored, so none to name
    check_components(t, s, OLD, "1.34", "1.33", "Idle status", healthy=None, revision=False)
    # plain lines on stderr (JOURNAL_STREAM unset): no journal fields, no syslog priority prefix
    for _, line in d.err_lines:
        t.check(not re.match(r"^(<\d>|CPLET_[A-Z_]+=)", line), "stderr line is not plain: %r" % line)
    # the daemon watches only its own Node, with the field selector and bookmarks
    deadline = time.monotonic() + 10
    while True:
        knobs = W.cluster.admin().get("/fake/knobs").json()
        watches = [w for w in knobs.get("watches", []) if "system:node:n1" in json.dumps(w)]
        if watches or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    t.check(watches, "no open watch of system:node:n1 within 10 s (open watches: %r)" % knobs.get("watches"))
    for w in watches:
        text = json.dumps(w)
        t.check(re.search(r"fieldSelector=metadata\.name(%3D|=)n1", text), "watch without the field selector: %s"
                % text)
        t.check("allowWatchBookmarks=true" in text, "watch without allowWatchBookmarks=true: %s" % text)
    t.note("the daemon's requests so far: %s" % ", ".join(
        "%s %s %d" % (r["method"], r["path"][:90], r["code"]) for r in daemon_audit("n1", t0 - 1)))


# --------------------------------------------------------------------------------------
# 2. the full gated upgrade, driven by kubectl annotate


def test_full_upgrade(t):
    node = W.sims.get("n1")
    d = W.daemon(t, "n1")
    log = W.log("n1")
    mark = log.mark()
    t0 = time.time()
    value = target_json(id="upgrade-1", generation=1, binaryVersion=NEW, **GATE)
    W.targets["n1"] = json.loads(value)
    written = send_target(t, "n1", value)
    t.note("kubectl annotate took %.2f s" % (written - t0))
    v = wait_terminal(t, "n1", "upgrade-1", 1, 120, mark)
    seen = [x for x in log.snapshot()[mark:] if x[2] and x[2].get("id") == "upgrade-1"]
    t.note("statuses: %s" % " -> ".join(compress(summary(seen))))
    s = v[2]
    t.eq(s.get("phase"), "Succeeded", "final phase (message %r)" % s.get("message"))
    check_status_shape(t, s, "Succeeded status")
    phases = compress([x[2].get("phase") for x in seen])
    t.eq(phases, ["Pending", "Progressing", "Succeeded"], "phases the status went through")
    steps = [x[2].get("step") or {} for x in seen if x[2].get("phase") == "Progressing"]
    for st in steps:
        for k in ("index", "total", "component", "kind", "waitingFor"):
            t.check(k in st, "a Progressing status's step has no %r: %r" % (k, st))
    idx = compress([st.get("index") for st in steps])
    t.eq(idx, [1, 2, 3, 4, 5, 6], "step indexes reported while Progressing")
    t.eq(sorted({st.get("total") for st in steps}), [6], "step totals reported")
    expect = {i + 1: (ORDER[i % 3], "binary" if i < 3 else "emulation") for i in range(6)}
    for st in steps:
        if st.get("index") in expect:
            t.eq((st.get("component"), st.get("kind")), expect[st["index"]], "step %s: component and kind"
                 % st.get("index"))
    t.check(any(st.get("waitingFor") for st in steps), "no Progressing status says what it waits for: %r" % steps)
    check_components(t, s, NEW, "1.35", "1.34", "Succeeded status")
    comps = status_components(s)
    for c in COMPONENTS:
        t.eq(comps.get(c, {}).get("revision"), max(revision_numbers(node.root, c) or [0]),
             "Succeeded status: revision of %s vs the newest stored" % c)

    # the node itself
    t.eq(restarts_since(node, t0), upgrade_restarts(NEW, ["1.34", None]), "restarts the kubelet saw")
    check_node_at(t, node, NEW, "after the upgrade")
    j = journal(node.root) or {}
    t.eq(j.get("phase"), "done", "journal phase")
    rec = handled_record(node.root)
    t.eq((rec.get("id"), rec.get("generation")), ("upgrade-1", 1), "handled record %s" % HANDLED)

    # events about the node, in namespace default
    time.sleep(0.5)
    evs = [e for e in W.cluster.events("n1") if e.get("metadata", {}).get("creationTimestamp", "") >= ""]
    reasons = [e.get("reason") for e in evs]
    t.note("events: %s" % ", ".join("%s (%s)" % (e.get("reason"), (e.get("message") or "")[:80]) for e in evs))
    t.check(evs, "no Event about node n1 in namespace default")
    for e in evs:
        io = e.get("involvedObject") or {}
        t.eq((io.get("kind"), io.get("name")), ("Node", "n1"), "event %s: involvedObject" % e.get("reason"))
        t.eq(e.get("metadata", {}).get("namespace"), "default", "event %s: namespace" % e.get("reason"))
    t.check(any(r and "Start" in r for r in reasons), "no event of the plan's start among %r" % reasons)
    t.check(any(r and "Succeeded" in r for r in reasons), "no Succeeded event among %r" % reasons)
    if KUBECTL:
        rc, out, err = W.cluster.kubectl("get", "events", "-n", "default")
        t.check(rc == 0 and "node/n1" in out and "Succeeded" in out, "kubectl get events: rc %d, %r %r"
                % (rc, out[-800:], err))
    # sd_notify STATUS= follows the phase
    t.check(d.wait_notify(lambda l: l.startswith("STATUS=") and "succeeded" in l.lower(), 5, t0),
            "no STATUS= line naming Succeeded (notify: %r)" % d.notify_lines("STATUS=")[-10:])


# --------------------------------------------------------------------------------------
# 3. idle


IDLE_SECONDS = 10


def test_idle(t):
    d = W.daemon(t, "n1")
    log = W.log("n1")
    time.sleep(1.0)
    mark = log.mark()
    a = time.time()
    cs0 = ctxt_switches(d.pid)
    time.sleep(IDLE_SECONDS)
    cs1 = ctxt_switches(d.pid)
    b = time.time()
    time.sleep(0.3)
    recs = daemon_audit("n1", a, b)
    other = [r for r in recs if not is_watch(r)]
    t.eq(["%s %s %d" % (r["method"], r["path"], r["code"]) for r in other], [],
         "requests other than the watch during %d s idle" % IDLE_SECONDS)
    t.check(len(recs) - len(other) <= 1, "%d watch requests ended during %d s idle: %r"
            % (len(recs) - len(other), IDLE_SECONDS, recs))
    t.eq(summary(log.snapshot()[mark:]), [], "status writes during idle")
    t.check(d.alive(), "the daemon ended: %s" % d.describe())
    if cs0 is not None and cs1 is not None:
        t.note("context switches during %d s idle: %d" % (IDLE_SECONDS, cs1 - cs0))
        t.check(cs1 - cs0 <= 5, "the daemon woke %d times in %d s idle (nothing happened)"
                % (cs1 - cs0, IDLE_SECONDS))


def test_heartbeat_on_watch_renewal(t):
    """The server ends the watch (its timeoutSeconds, here a clean end forced by the knob): the
    daemon opens the next one and writes its status once, with a newer `updated` and nothing else
    changed, so that a controller tells a quiet agent from a dead one."""
    W.daemon(t, "n1")
    log = W.log("n1")
    time.sleep(1.2)  # `updated` has a resolution of a second
    before = log.latest()[2] or {}
    mark = log.mark()
    W.cluster.knobs(drop_watches=True, drop_mode="end")
    seen = log.wait(lambda s: s.get("updated", "") > before.get("updated", ""), timeout=15, since_index=mark)
    if not t.check(seen, "no status written after the watch was renewed (last updated %r)" % before.get("updated")):
        return
    after = seen[2]
    for key in ("id", "generation", "phase", "message", "components"):
        t.eq(after.get(key), before.get(key), "%s unchanged by the heartbeat" % key)
    time.sleep(1.0)
    t.eq(len(log.snapshot()[mark:]), 1, "status writes for one watch renewal")


# --------------------------------------------------------------------------------------
# 4. the same (id, generation) never runs twice


def test_same_generation(t):
    node = W.sims.get("n1")
    d = W.daemon(t, "n1")
    log = W.log("n1")
    before = tree_checksum(node.root)
    jbefore = journal_bytes(node.root)
    raw0, s0 = log.latest()[1:]
    t.need(s0 and s0.get("phase") == "Succeeded", "the node is not at Succeeded: %r" % (s0,))
    nevents = len(W.cluster.events("n1"))
    tgt = W.targets["n1"]

    # an unrelated change of the Node, then the same target written differently
    W.cluster.annotate("n1", "example.com/poke", "1")
    send_target(t, "n1", json.dumps(tgt, indent=2, sort_keys=True))
    time.sleep(3)
    t.eq(tree_diff(before, tree_checksum(node.root)), "", "files changed after the same target was re-sent")
    t.eq(journal_bytes(node.root), jbefore, "journal after the same target was re-sent")
    raw1, s1 = log.latest()[1:]
    t.eq(without_updated(s1), without_updated(s0), "status after the same target was re-sent (but 'updated')")
    t.eq(len(W.cluster.events("n1")), nevents, "events after the same target was re-sent")

    # SIGTERM while idle: exit 0, STOPPING=1; the restarted daemon does not run it either
    t0 = time.time()
    rc, took = d.stop(signal.SIGTERM, 30)
    t.eq(rc, 0, "exit status on SIGTERM (stderr tail %r)" % d.err[-400:])
    t.check(took < 5, "SIGTERM while idle took %.1f s" % took)
    t.check(d.wait_notify(lambda l: l == "STOPPING=1", 1, t0), "no STOPPING=1 (notify: %r)" % d.notify_lines())
    mark = log.mark()
    d2 = W.start_daemon(t, "n1")
    time.sleep(3)
    t.check(d2.alive(), "the restarted daemon ended: %s" % d2.describe())
    t.eq(tree_diff(before, tree_checksum(node.root)), "", "files changed after a restart with the same target")
    after = log.snapshot()[mark:]
    t.check(not [x for x in after if x[2] and x[2].get("phase") in ("Pending", "Progressing")],
            "the restarted daemon ran the handled target again: %r" % summary(after))
    raw2, s2 = log.latest()[1:]
    t.eq(((s2 or {}).get("phase"), (s2 or {}).get("id"), (s2 or {}).get("generation")),
         ("Succeeded", "upgrade-1", 1), "status after the restart")
    t.note("statuses after the restart: %r" % summary(after))


def test_unreported_outcome_settled(t):
    """The agent killed after its rollout's journal ended but before its last status reached the
    API server: the status still says Progressing for the handled target, and no journal is
    unfinished. The next start settles it from the node: at the target, Succeeded (not run again,
    nothing written)."""
    node = W.sims.get("n1")
    d = W.daemon(t, "n1")
    log = W.log("n1")
    s0 = log.latest()[2] or {}
    t.need(s0.get("phase") == "Succeeded", "the node is not at Succeeded: %r" % (s0,))
    before = tree_checksum(node.root)
    rc, _ = d.stop(signal.SIGKILL, 30)
    stale = dict(s0, phase="Progressing", message=None,
                 step={"index": 6, "total": 6, "component": "kube-scheduler", "kind": "emulation",
                       "waitingFor": "health"})
    W.cluster.annotate("n1", STATUS, json.dumps(stale))
    mark = log.mark()
    d2 = W.start_daemon(t, "n1")
    seen = log.wait(lambda s: s.get("phase") != "Progressing", timeout=20, since_index=mark, daemon=d2)
    if not t.check(seen, "no status after the restart: %r" % summary(log.snapshot()[mark:])):
        return
    s1 = seen[2]
    t.eq((s1.get("phase"), s1.get("id"), s1.get("generation")), ("Succeeded", s0.get("id"), s0.get("generation")),
         "the unreported outcome settled")
    t.contains(s1.get("message"), "the node is at the target", "message of the settled status")
    t.eq(tree_diff(before, tree_checksum(node.root)), "", "files changed while settling")
    t.check(not [x for x in log.snapshot()[mark:] if x[2] and x[2].get("phase") == "Pending"],
            "the target ran again: %r" % summary(log.snapshot()[mark:]))


# --------------------------------------------------------------------------------------
# 5. hostile targets: Refused naming the field, the tree byte-identical


def base(**over):
    """A valid target that would change the node (a patch upgrade), with fields replaced."""
    d = dict(id="h-%d" % (len(HOSTILE) + 1), generation=1, binaryVersion=PATCH, **FAST)
    d.update(over)
    return {k: v for k, v in d.items() if v is not DROP}


DROP = object()
HOSTILE = []


def hostile(name, value, needles, icase=()):
    HOSTILE.append((name, value if isinstance(value, str) else json.dumps(value), needles, icase))


def send_raw(t, name, value, what):
    """A value kubectl cannot pass (a NUL character): a merge patch as the administrator."""
    W.cluster.patch_annotations(name, {TARGET: value})
    t.note("%s written with a merge patch (no NUL in a command line)" % what)


hostile("oversize (17 KiB)", base(padding="x" * (17 * 1024)), ["16384"])
hostile("unknown field (command)", base(command=["/bin/sh", "-c", "id"]), ["command"])
hostile("bad version grammar (binaryVersion \"1.35\")", base(binaryVersion="1.35"), ["binaryVersion"])
hostile("flag injection in binaryVersion", base(binaryVersion="v1.35.1 --authorization-mode=AlwaysAllow"),
        ["binaryVersion"])
hostile("flag injection in components", base(components=["kube-apiserver --foo"]), ["components"])
hostile("flag injection in emulatedVersion", base(emulatedVersion="1.35 --feature-gates=AllAlpha=true"),
        ["emulatedVersion"])
hostile("imageRepository not on the allow-list", base(imageRepository="evil.example.com"),
        ["imageRepository", "evil.example.com"])
hostile("unknown component", base(components=["etcd"]), ["components", "etcd"])
hostile("wrong type: generation \"1\"", base(generation="1"), ["generation"])
hostile("wrong type: components a string", base(components="kube-apiserver"), ["components"])
hostile("id with spaces and slashes", base(id="a b/../c"), ["id", "a b/../c"])
hostile("duration garbage (stableFor \"soon\")", base(stableFor="soon"), ["stableFor"])
hostile("stableFor not shorter than stepTimeout", base(stableFor="10m", stepTimeout="1m"), ["stableFor"])
hostile("duplicate components", base(components=[SCHEDULER, SCHEDULER]), ["components", SCHEDULER])
hostile("nested JSON in binaryVersion", base(binaryVersion={"version": PATCH}), ["binaryVersion"])
hostile("invalid JSON", "{id: h-16, generation: 1}", ["JSON"])
hostile("empty string", "", [])
hostile("JSON nested 3000 deep", "[" * 3000 + "]" * 3000, [])
hostile("emulatedVersion out of range (1.30)", base(emulatedVersion="1.30"), ["1.30"], ["emulat"])
hostile("emulatedVersion with a patch number", base(emulatedVersion="1.35.0"), ["emulatedVersion"])
hostile("a JSON array, not an object", json.dumps([base()]), ["object"])
hostile("duplicate key", '{"id":"h-22","id":"h-22b","generation":1,"binaryVersion":"%s"}' % PATCH, ["JSON"])
hostile("NUL byte in a string", base(id="h-23\u0000x"), [])
hostile("generation 0", base(generation=0), ["generation"])
hostile("onFailure not rollback|stop", base(onFailure="ignore"), ["onFailure"])
hostile("image digest in imageRepository", base(imageRepository="registry.k8s.io/x:v1@sha256:00"),
        ["imageRepository"])
hostile("minCompatibilityVersion above emulatedVersion", base(minCompatibilityVersion="1.36"), ["1.36"],
        ["min"])
hostile("missing binaryVersion", base(binaryVersion=DROP), ["binaryVersion"])
hostile("id longer than 63", base(id="h" * 200), ["id"])
# a valid target, a NUL character, then more: nothing may cut the text short at the NUL
hostile("a NUL character after a valid target", json.dumps(base()) + "\u0000" + json.dumps(base(id="h-30b")), ["JSON"])


def test_hostile(t, name, value, needles, icase):
    node = W.sims.get("n1")
    d = W.daemon(t, "n1")
    log = W.log("n1")
    before = tree_checksum(node.root)
    jbefore = journal_bytes(node.root)
    mark = log.mark()
    if "\0" in value:
        send_raw(t, "n1", value, "the hostile target")
    else:
        send_target(t, "n1", value, "the hostile target")

    v = log.wait(lambda s: s.get("phase") in TERMINAL, 20, mark, d)
    seen = log.snapshot()[mark:]
    t.check(v is not None, "no Refused status within 20 s; seen: %r; %s"
            % (["%s: %s" % ((x[2] or {}).get("phase"), (x[2] or {}).get("message")) for x in seen][-5:],
               d.describe()))
    if v:
        s = v[2]
        m = s.get("message") or ""
        t.eq(s.get("phase"), "Refused", "phase (message %r)" % m)
        for n in needles:
            t.contains(m, n, "the message names the field or value")
        for n in icase:
            t.contains(m.lower(), n.lower(), "the message names the field or value")
        t.note("message: %s; status id/generation: %r/%r" % (s.get("message"), s.get("id"), s.get("generation")))
        check_status_shape(t, s, "Refused status")
        t.check("x" * 100 not in (s.get("message") or ""), "the message quotes the oversize value")
        check_components(t, s, NEW, "1.35", "1.34", "Refused status (the node as it is)", healthy="known-or-true")
    t.check(not [x for x in seen if x[2] and x[2].get("phase") in ("Pending", "Progressing")],
            "the hostile target started a rollout: %r" % summary(seen))
    time.sleep(0.2)
    t.eq(tree_diff(before, tree_checksum(node.root)), "", "files under the node root changed")
    t.eq(journal_bytes(node.root), jbefore, "journal")
    t.check(d.alive(), "the daemon ended: %s" % d.describe())


# --------------------------------------------------------------------------------------
# 6. after a refusal: a new generation of the same id runs


def test_new_generation_after_refused(t):
    node = W.sims.get("n1")
    W.daemon(t, "n1")
    log = W.log("n1")
    mark = log.mark()
    t0 = time.time()
    send_target(t, "n1", target_json(id="h-2", generation=2, binaryVersion=PATCH, **FAST))
    v = wait_terminal(t, "n1", "h-2", 2, 90, mark)
    t.eq(v[2].get("phase"), "Succeeded", "phase of h-2 generation 2 (message %r)" % v[2].get("message"))
    check_components(t, v[2], PATCH, "1.35", "1.34", "Succeeded status")
    t.eq(restarts_since(node, t0), [(c, PATCH, None) for c in ORDER], "restarts the kubelet saw")
    rec = handled_record(node.root)
    t.eq((rec.get("id"), rec.get("generation")), ("h-2", 2), "handled record")


# --------------------------------------------------------------------------------------
# SIGHUP reloads the configuration (the image allow-list)


MIRROR = "mirror.example.com"


def test_sighup_reload(t):
    node = W.sims.get("n1")
    d = W.daemon(t, "n1")
    log = W.log("n1")
    cfg_dir = os.path.join(node.root, "etc", "cplet")
    os.makedirs(cfg_dir, mode=0o755, exist_ok=True)
    with open(os.path.join(cfg_dir, "config.yaml"), "w") as f:
        f.write("kind: CpletConfiguration\nimageRepositories: [registry.k8s.io, %s]\n" % MIRROR)
    # written but not reloaded yet: still refused
    mark = log.mark()
    send_target(t, "n1", target_json(id="mirror", generation=1, binaryVersion=PATCH, imageRepository=MIRROR, **FAST))
    v = wait_terminal(t, "n1", "mirror", 1, 20, mark)
    t.eq(v[2].get("phase"), "Refused", "before SIGHUP (message %r)" % v[2].get("message"))
    t0 = time.time()
    d.send_signal(signal.SIGHUP)
    t.check(d.wait_notify(lambda l: l == "RELOADING=1", 5, t0), "no RELOADING=1 after SIGHUP (notify %r)"
            % d.notify_lines()[-5:])
    t.check(d.wait_notify(lambda l: l == "READY=1", 5, t0), "no READY=1 after the reload (notify %r)"
            % d.notify_lines()[-5:])
    t.check(d.alive(), "the daemon ended on SIGHUP: %s" % d.describe())
    t.note("stderr after SIGHUP: %r" % [l for tt, l in d.err_lines if tt >= t0])
    mark = log.mark()
    t1 = time.time()
    send_target(t, "n1", target_json(id="mirror", generation=2, binaryVersion=PATCH, imageRepository=MIRROR, **FAST))
    v = wait_terminal(t, "n1", "mirror", 2, 60, mark)
    t.eq(v[2].get("phase"), "Succeeded", "after SIGHUP (message %r)" % v[2].get("message"))
    for c in COMPONENTS:
        doc = load_yaml(read_bytes(mpath(node.root, c)))
        image = ((doc.get("spec") or {}).get("containers") or [{}])[0].get("image")
        t.eq(image, "%s/%s:%s" % (MIRROR, c, PATCH), "image of the live %s manifest" % c)
    t.eq([c for c, _, _ in restarts_since(node, t1)], ORDER, "restarts the kubelet saw")


# --------------------------------------------------------------------------------------
# the watch cut, its resourceVersion compacted away (410): the daemon lists again


def daemon_watches(name):
    return [w for w in W.cluster.admin().get("/fake/knobs").json().get("watches", [])
            if w.startswith("system:node:%s " % name)]


def watch_rv(path):
    m = re.search(r"resourceVersion=([0-9]+)", path)
    return int(m.group(1)) if m else None


def test_watch_bookmarks(t):
    d = W.daemon(t, "n1")
    W.cluster.knobs(bookmark_interval=0.3)
    try:
        W.cluster.knobs(drop_watches=True, drop_mode="end")  # a clean end: the new watch gets the interval
        time.sleep(1.5)
        W.cluster.knobs(drop_mode="close")
        t.need(daemon_watches("n1"), "the daemon has no open watch: %s" % d.describe())
        # the store moves on elsewhere; bookmarks bring the daemon's resourceVersion along
        W.cluster.patch_annotations("n2", {"example.com/elsewhere": str(time.time())})
        time.sleep(1.5)
        W.cluster.knobs(compact=True)
        compacted = W.cluster.admin().get("/fake/knobs").json().get("compacted")
        t0 = time.time()
        W.cluster.knobs(drop_watches=True)
        time.sleep(3)
        recs = daemon_audit("n1", t0, time.time())
        now = daemon_watches("n1")
        t.note("compacted at %s; requests after the cut: %d; watch now: %r" % (compacted, len(recs), now))
        t.check(now and all((watch_rv(w) or 0) >= compacted for w in now),
                "the daemon did not resume from a bookmark's resourceVersion (>= %s): %r" % (compacted, now))
        t.eq(["%s %s %d" % (r["method"], r["path"][:70], r["code"]) for r in recs if not is_watch(r)], [],
             "requests other than watches after the cut (a re-list means the bookmarks were not used)")
    finally:
        W.cluster.knobs(bookmark_interval=60, drop_mode="close")
        # whatever happened, the Node changes: a stale resourceVersion is current again
        W.cluster.annotate("n1", "example.com/poke", str(time.time()))
        time.sleep(1)


def test_watch_gone(t):
    node = W.sims.get("n1")
    d = W.daemon(t, "n1")
    log = W.log("n1")
    before = daemon_watches("n1")
    t.need(before, "the daemon has no open watch: %s" % d.describe())
    # the store moves on elsewhere, then is compacted: the daemon's resourceVersion is too old
    W.cluster.patch_annotations("n2", {"example.com/elsewhere": str(time.time())})
    W.cluster.knobs(compact=True)
    t0 = time.time()
    W.cluster.knobs(drop_watches=True)
    time.sleep(5)
    t1 = time.time()
    time.sleep(0.3)
    recs = daemon_audit("n1", t0, t1)
    kinds = {}
    for r in recs:
        k = "%s %s %d" % (r["method"], "watch" if is_watch(r) else r["path"].split("?")[0], r["code"])
        kinds[k] = kinds.get(k, 0) + 1
    t.note("the daemon's requests in the 5 s after the cut: %d (%s); compacted at %s"
           % (len(recs), ", ".join("%d x %s" % (n, k) for k, n in sorted(kinds.items())),
              W.cluster.admin().get("/fake/knobs").json().get("compacted")))
    t.check(len(recs) <= 10, "%d requests in the 5 s after the cut and the 410: a hot loop (%r)" % (len(recs), kinds))
    t.check([r for r in recs if r["method"] == "GET" and not is_watch(r) and r["code"] == 200],
            "no GET/list of the Node after the 410: %r" % kinds)
    now = daemon_watches("n1")
    t.check(now and now != before, "no new watch open 5 s after the cut: %r (before: %r)" % (now, before))
    # and it still reacts
    mark = log.mark()
    t2 = time.time()
    send_target(t, "n1", target_json(id="after-410", generation=1, binaryVersion=PATCH, minCompatibilityVersion="1.35",
                                     **FAST))
    v = wait_terminal(t, "n1", "after-410", 1, 60, mark)
    t.eq(v[2].get("phase"), "Succeeded", "the target after the 410 (message %r)" % v[2].get("message"))
    t.note("Succeeded %.2f s after the target was written" % (v[0] - t2))
    check_components(t, v[2], PATCH, "1.35", "1.35", "Succeeded status")


# --------------------------------------------------------------------------------------
# 7./8. a failing component, then a new generation


FAIL_MSG = "simulated: the new controller-manager cannot start"


def test_failure_rolled_back(t):
    node = W.sim("n3", knobs={KCM: {"failVersions": [NEW], "exitMessage": FAIL_MSG}}, backoff=0.2)
    log = W.log("n3")
    d = W.start_daemon(t, "n3")
    mark = log.mark()
    t0 = time.time()
    send_target(t, "n3", target_json(id="fail-1", generation=1, binaryVersion=NEW, stableFor="0s",
                                     stepTimeout="10s"))
    v = wait_terminal(t, "n3", "fail-1", 1, 120, mark)
    s = v[2]
    seen = [x for x in log.snapshot()[mark:] if x[2] and x[2].get("id") == "fail-1"]
    t.note("statuses: %s" % " -> ".join(compress(summary(seen))))
    t.eq(s.get("phase"), "RolledBack", "final phase (message %r)" % s.get("message"))
    check_status_shape(t, s, "RolledBack status")
    msg = s.get("message") or ""
    t.contains(msg, KCM, "the message names the component")
    t.check(FAIL_MSG in msg or "exited" in msg, "the message does not give the reason (exit, its log): %r" % msg)
    check_components(t, s, OLD, "1.34", "1.33", "RolledBack status", healthy="known-or-true")
    t.eq(restarts_since(node, t0)[:2], [(APISERVER, NEW, "1.34"), (KCM, NEW, "1.34")], "first restarts")
    check_node_at(t, node, OLD, "after the rollback")
    t.eq((journal(node.root) or {}).get("phase"), "failed", "journal phase")
    time.sleep(0.5)
    reasons = [e.get("reason") for e in W.cluster.events("n3")]
    t.note("events: %r" % reasons)
    t.check(any(r and "Fail" in r for r in reasons), "no event of the failed step among %r" % reasons)
    t.check(any(r and "RolledBack" in r for r in reasons), "no RolledBack event among %r" % reasons)
    t.check(d.alive(), "the daemon ended: %s" % d.describe())


def test_new_generation_after_failure(t):
    node = W.sims.get("n3")
    W.daemon(t, "n3")
    log = W.log("n3")
    node.set_knobs({})
    # the same generation again: not run
    mark = log.mark()
    before = tree_checksum(node.root)
    send_target(t, "n3", target_json(id="fail-1", generation=1, binaryVersion=NEW, stableFor="0s",
                                     stepTimeout="20s"))
    time.sleep(2)
    t.eq(tree_diff(before, tree_checksum(node.root)), "", "files changed: the failed generation ran again")
    t.check(not [x for x in log.snapshot()[mark:] if x[2] and x[2].get("phase") == "Progressing"],
            "the failed generation ran again: %r" % summary(log.snapshot()[mark:]))
    # a new generation: runs
    mark = log.mark()
    t0 = time.time()
    send_target(t, "n3", target_json(id="fail-1", generation=2, binaryVersion=NEW, stableFor="0s",
                                     stepTimeout="20s"))
    v = wait_terminal(t, "n3", "fail-1", 2, 120, mark)
    t.eq(v[2].get("phase"), "Succeeded", "phase of generation 2 (message %r)" % v[2].get("message"))
    check_components(t, v[2], NEW, "1.35", "1.34", "Succeeded status")
    t.eq(restarts_since(node, t0), upgrade_restarts(NEW, ["1.34", None]), "restarts the kubelet saw")
    rec = handled_record(node.root)
    t.eq((rec.get("id"), rec.get("generation")), ("fail-1", 2), "handled record")


# --------------------------------------------------------------------------------------
# 9. while a rollout runs: the lock is the daemon's; targets wait, the newest one runs


def test_targets_wait_and_lock(t):
    node = W.sims.get("n3")
    d = W.daemon(t, "n3")
    log = W.log("n3")
    mark = log.mark()
    t_a = time.time()
    send_target(t, "n3", target_json(id="q-a", generation=1, binaryVersion=PATCH, stableFor="1s", stepTimeout="20s"))
    v = log.wait(lambda s: s.get("id") == "q-a" and s.get("phase") == "Progressing", 30, mark, d)
    t.need(v is not None, "no Progressing status for q-a: %r; %s" % (summary(log.snapshot()[mark:]), d.describe()))
    # a writing command by hand meanwhile: refused, naming the daemon
    p = subprocess.run(cplet_cmd(node.root, ["upgrade", "--binary-version", PATCH, "--stable-for", "0s",
                                             "--step-timeout", "10s"]),
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    t.check(p.returncode in (1, 2), "a manual upgrade during the daemon's rollout: exit %r (stderr %r)"
            % (p.returncode, p.stderr))
    t.contains(p.stderr, "daemon", "a manual upgrade during the daemon's rollout: stderr names the daemon")
    # two targets meanwhile: only the newest waits and runs after q-a
    send_target(t, "n3", target_json(id="q-b", generation=1, binaryVersion=PATCH, minCompatibilityVersion="1.35",
                                     **FAST))
    send_target(t, "n3", target_json(id="q-c", generation=1, binaryVersion=PATCH, minCompatibilityVersion="1.35",
                                     **FAST))
    # (q-a's own Succeeded may never be visible: the status waiting to be sent is replaced by a
    # newer one, here q-c's, as the reporter promises; its Event says it)
    vc = wait_terminal(t, "n3", "q-c", 1, 90, mark)
    t.eq(vc[2].get("phase"), "Succeeded", "q-c (message %r)" % vc[2].get("message"))
    seen = log.snapshot()[mark:]
    t.note("statuses: %s" % " -> ".join(compress(["%s %s" % ((x[2] or {}).get("id"), y) for x, y in
                                                   zip(seen, summary(seen))])))
    ids = compress([(x[2] or {}).get("id") for x in seen])
    t.eq(ids, ["q-a", "q-c"], "targets the status spoke of, in order (q-b was replaced while it waited)")
    check_components(t, vc[2], PATCH, "1.35", "1.35", "Succeeded status of q-c")
    rec = handled_record(node.root)
    t.eq((rec.get("id"), rec.get("generation")), ("q-c", 1), "handled record")
    time.sleep(0.5)
    evs = [e for e in W.cluster.events("n3") if e.get("reason") in ("PlanStarted", "Succeeded")]
    t.eq([e.get("reason") for e in evs][-4:], ["PlanStarted", "Succeeded"] * 2,
         "the last events: q-a started and succeeded, then q-c")
    t.eq(restarts_since(node, t_a), [(c, PATCH, None) for c in ORDER] * 2,
         "restarts the kubelet saw (q-a's binary steps, then q-c's min-compatibility steps)")

    # a writing command by hand while the daemon idles: works; the status shows the node as it is
    mark = log.mark()
    p = subprocess.run(cplet_cmd(node.root, ["flags", "set", SCHEDULER, "--profiling=false", "--stable-for", "0s",
                                             "--step-timeout", "10s"]),
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    t.eq(p.returncode, 0, "cplet flags set by hand while the daemon idles (stderr %r)" % p.stderr)
    live = max(revision_numbers(node.root, SCHEDULER) or [0])
    v = log.wait(lambda s: status_components(s).get(SCHEDULER, {}).get("revision") == live, 15, mark, d)
    t.check(v is not None, "the status does not show the scheduler's revision %d made by hand: %r"
            % (live, [status_components(x[2]).get(SCHEDULER) for x in log.snapshot()[mark:] if x[2]]))
    if v:
        # docs/protocol.md: components show the node as it is, the phase stays the last target's
        t.eq((v[2].get("phase"), v[2].get("id")), ("Succeeded", "q-c"), "phase once the node was changed by hand")
    time.sleep(1)
    t.check(not [x for x in log.snapshot()[mark:] if x[2] and x[2].get("phase") in ("Pending", "Progressing")],
            "a hand change made the daemon run something: %r" % summary(log.snapshot()[mark:]))


# --------------------------------------------------------------------------------------
# 10. the API server down during the API-server step


def test_apiserver_outage(t):
    node = W.sim("n4", knobs={APISERVER: {"startupDelay": 2.0}})
    log = W.log("n4")
    d = W.start_daemon(t, "n4")
    mark = log.mark()
    t0 = time.time()
    send_target(t, "n4", target_json(id="outage-1", generation=1, binaryVersion=NEW, stableFor="0s",
                                     stepTimeout="30s"))
    v = log.wait(lambda s: s.get("phase") == "Progressing" and (s.get("step") or {}).get("component") == APISERVER,
                 30, mark, d)
    t.need(v is not None, "no Progressing status for the API server's step: %r; %s"
           % (summary(log.snapshot()[mark:]), d.describe()))
    W.cluster.knobs(outage=None, listener=0)
    t_down = time.time()
    t.note("outage from %.2f s after the target (status said step %r)" % (t_down - t0, v[2].get("step")))
    j = wait_journal_phase(node.root, "done", 90)
    t_done = time.time()
    t.check(j is not None, "the rollout did not finish during the outage (journal %r)"
            % ((journal(node.root) or {}).get("phase")))
    t.check(d.wait_notify(lambda l: l.startswith("STATUS=") and "succeeded" in l.lower(), 5, t_down),
            "no STATUS= naming Succeeded during the outage (notify: %r)" % d.notify_lines("STATUS=")[-8:])
    time.sleep(1.0)
    during = [x for x in log.snapshot() if t_down < x[0]]
    t.eq(summary(during), [], "status values seen during the outage")
    t_up = time.time()
    W.cluster.knobs(outage_end=True, listener=0)
    v2 = wait_terminal(t, "n4", "outage-1", 1, 60, log.mark())
    t.note("rollout done %.1f s into the outage; Succeeded visible %.2f s after the API came back"
           % (t_done - t_down, v2[0] - t_up))
    t.eq(v2[2].get("phase"), "Succeeded", "phase after the outage (message %r)" % v2[2].get("message"))
    check_components(t, v2[2], NEW, "1.35", "1.34", "status after the outage")
    time.sleep(3)
    after = [x for x in log.snapshot() if x[0] > t_up]
    t.eq(compress([(x[2] or {}).get("phase") for x in after]), ["Succeeded"],
         "status values written after the outage (one, not a backlog)")
    recs = daemon_audit("n4", t_up)
    patches = [r for r in recs if is_status_patch(r, "n4")]
    t.eq(len(patches), 1, "status patches after the outage (%r)" % ["%s %s %d" % (r["method"], r["path"], r["code"])
                                                                    for r in recs])
    t.note("the daemon's requests after the outage: %s" % ", ".join(
        "%s %s %d" % (r["method"], r["path"][:60], r["code"]) for r in recs))
    t.eq(restarts_since(node, t0), upgrade_restarts(NEW, ["1.34", None]), "restarts the kubelet saw")
    t.check(d.alive(), "the daemon ended: %s" % d.describe())


# --------------------------------------------------------------------------------------
# 10./11. SIGTERM and SIGKILL mid-rollout, restart resumes


def settled_mark(log, name, timeout=5.0):
    """log.mark() once the log has seen the status the server holds now (and a little after, for
    a request a dead daemon had already sent)."""
    time.sleep(0.3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw, _ = W.cluster.status(name)
        snap = log.snapshot()
        if snap and snap[-1][1] == raw:
            break
        time.sleep(0.05)
    return log.mark()


def check_resumed_steps(t, values, first, what):
    """A resumed rollout is reported as the same plan: step indexes of the 6 go on from where
    it stopped (no step 1 again, no renumbering of the rest)."""
    steps = [x[2].get("step") for x in values if x[2] and x[2].get("phase") == "Progressing"]
    steps = [st for st in steps if st]  # a Progressing status before the first step names none
    idx = [st.get("index") for st in steps]
    t.check(idx and all(isinstance(i, int) for i in idx) and min(idx) >= first and idx == sorted(idx),
            "%s: step indexes %r (expected nondecreasing from %d on): %r" % (what, idx, first, compress(steps)))
    t.eq(sorted({repr(st.get("total")) for st in steps}), ["6"], "%s: step totals" % what)


def test_sigterm_mid_rollout(t):
    node = W.sim("n5", knobs={"default": {"startupDelay": 0.8}})
    log = W.log("n5")
    d = W.start_daemon(t, "n5")
    mark = log.mark()
    W.t5 = time.time()
    send_target(t, "n5", target_json(id="kill-1", generation=1, binaryVersion=NEW, stableFor="0s",
                                     stepTimeout="30s"))
    v = log.wait(lambda s: s.get("phase") == "Progressing" and (s.get("step") or {}).get("index") == 2, 60, mark, d)
    t.need(v is not None, "no Progressing status at step 2: %r; %s" % (summary(log.snapshot()[mark:]), d.describe()))
    t_term = time.time()
    rc, took = d.stop(signal.SIGTERM, 30)
    t.eq(rc, 0, "exit status on SIGTERM mid-rollout (stderr tail %r)" % d.err[-400:])
    t.check(took < 10, "SIGTERM mid-rollout took %.1f s" % took)
    t.check(d.wait_notify(lambda l: l == "STOPPING=1", 1, t_term), "no STOPPING=1 (notify: %r)"
            % d.notify_lines()[-8:])
    j = journal(node.root) or {}
    t.eq(j.get("phase"), "running", "journal phase after SIGTERM (resumable)")
    vi = log.wait(lambda s: s.get("phase") == "Interrupted", 5, mark)
    t.check(vi is not None, "no Interrupted status after SIGTERM mid-rollout; seen %r" % summary(log.snapshot()[mark:]))
    mark = log.mark()
    d2 = W.start_daemon(t, "n5")
    v = log.wait(lambda s: s.get("phase") == "Progressing" and (s.get("step") or {}).get("index", 0) >= 2, 30, mark, d2)
    t.check(v is not None, "the restarted daemon does not report the resumed rollout: %r; %s"
            % (summary(log.snapshot()[mark:]), d2.describe()))
    check_resumed_steps(t, log.snapshot()[mark:], 2, "after the restart")
    t.note("statuses after the restart: %s" % " -> ".join(compress(summary(log.snapshot()[mark:]))))


def test_sigkill_mid_rollout(t):
    node = W.sims.get("n5")
    d = W.daemon(t, "n5")
    log = W.log("n5")
    # killed while step 4 of 6 (the API server's emulation) waits, read from the journal: the
    # status's numbering is what is checked afterwards, it cannot also say when to kill
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and d.alive():
        steps = (journal(node.root) or {}).get("steps") or []
        if len(steps) >= 4 and steps[3].get("state") == "waiting":
            break
        time.sleep(0.02)
    else:
        t.need(False, "step 4 never waited (journal %r); %s" % (journal(node.root), d.describe()))
    rc, took = d.stop(signal.SIGKILL, 10)
    t.eq(rc, -signal.SIGKILL, "killed")
    j = journal(node.root) or {}
    t.eq(j.get("phase"), "running", "journal phase after SIGKILL")
    # What the killed daemon wrote (a patch it sent just before the kill included) reaches the
    # log through a watch, later: the mark is taken once the log shows the server's value, so
    # that only the restarted daemon's statuses are judged.
    mark = settled_mark(log, "n5")
    W.start_daemon(t, "n5")
    v = wait_terminal(t, "n5", "kill-1", 1, 120, mark)
    check_resumed_steps(t, log.snapshot()[mark:], 4, "after the restart")
    t.note("statuses after the restart: %s" % " -> ".join(compress(summary(log.snapshot()[mark:]))))
    t.eq(v[2].get("phase"), "Succeeded", "phase after the restart (message %r)" % v[2].get("message"))
    check_components(t, v[2], NEW, "1.35", "1.34", "Succeeded status", healthy="known-or-true")
    r = restarts_since(node, W.t5)
    t.eq(compress(r), upgrade_restarts(NEW, ["1.34", None]), "restarts the kubelet saw (repeats merged)")
    t.note("kubelet starts over the whole rollout: %d" % len(r))
    check_node_at(t, node, NEW, "after the resumed rollout")
    t.eq((journal(node.root) or {}).get("phase"), "done", "journal phase")


# --------------------------------------------------------------------------------------
# 12. 403: node n1's identity told to be n2


def test_forbidden(t):
    node = W.sims.get("n3")
    t.need(node is not None, "no simulated node n3 (an earlier case failed)")
    old = W.daemons.get("n3")
    if old and old.alive():
        rc, _ = old.stop(signal.SIGTERM, 30)
        t.eq(rc, 0, "exit status of n3's daemon on SIGTERM")
    n1_before = W.cluster.annotations("n1").get(STATUS)
    t0 = time.time()
    d = W.start_daemon(t, "n3", node_name="n2", conf_of="n1", ready=False)
    time.sleep(8)
    t1 = time.time()
    time.sleep(0.3)
    recs = daemon_audit("n1", t0, t1, user="system:node:n1")
    tried = [r for r in recs if "n2" in r["path"]]
    t.note("requests of system:node:n1 in 8 s: %s" % ", ".join("%s %s %d" % (r["method"], r["path"][:70], r["code"])
                                                             for r in recs))
    t.check(tried, "the daemon never asked for node n2")
    t.check(all(r["code"] == 403 for r in tried), "a request for n2 was not refused: %r" % tried)
    late = [r for r in tried if r["t"] > t0 + 4]
    t.check(len(tried) <= 8 and len(late) <= 2, "%d requests for n2 in 8 s, %d in the last 4 s: retried hot (at %s s)"
            % (len(tried), len(late), ", ".join("%.1f" % (r["t"] - t0) for r in tried)))
    t.note("requests for n2 at %s s" % ", ".join("%.1f" % (r["t"] - t0) for r in tried))
    t.check(not [r for r in recs if "n2" not in r["path"] and "/nodes" in r["path"]],
            "the daemon touched another node than n2: %r" % recs)
    lines = [l for _, l in d.err_lines if re.search(r"403|forbidden", l, re.I)]
    t.eq(len(lines), 1, "stderr lines naming the 403 (%r)" % lines)
    if lines:
        t.check("n2" in lines[0], "the 403 line does not name the node: %r" % lines[0])
    t.check(STATUS not in W.cluster.annotations("n2"), "a status was written on n2")
    t.eq(W.cluster.annotations("n1").get(STATUS), n1_before, "n1's status")
    if d.alive():
        rc, took = d.stop(signal.SIGTERM, 30)
        t.eq(rc, 0, "exit status on SIGTERM while refused")
        t.note("the daemon kept running (backing off) and exited %r on SIGTERM" % rc)
    else:
        t.note("the daemon exited by itself with %r" % d.p.returncode)
        t.check(d.p.returncode not in (0, None), "the daemon ended with status 0 on a 403")


# --------------------------------------------------------------------------------------
# 14. TLS is verified unless the command line says otherwise


def test_tls_verified(t):
    node = W.sims.get("n3")
    t.need(node is not None, "no simulated node n3 (an earlier case failed)")
    old = W.daemons.get("n3")
    if old and old.alive():
        old.stop(signal.SIGTERM, 30)
    # n2's own identity, but a kubeconfig whose CA did not sign the API server's certificate
    good = W.cluster.kubelet_conf("n2")
    with open(good) as f:
        conf = json.load(f)
    other = pkimod.PKI(os.path.join(W.cluster.dir, "other-ca"))
    conf["clusters"][0]["cluster"]["certificate-authority"] = other.ca_cert
    bad = os.path.join(W.cluster.dir, "kubelet-n2-wrong-ca.conf")
    with open(bad, "w") as f:
        json.dump(conf, f)
    os.chmod(bad, 0o600)
    t0 = time.time()
    d = Daemon(node.root, bad, node_name="n2")
    W.old_daemons.append(d)
    time.sleep(4)
    t.check(STATUS not in W.cluster.annotations("n2"), "a status was written through an unverified connection")
    t.eq([r for r in daemon_audit("n2", t0)], [], "requests that reached the API server with the wrong CA")
    t.check(re.search(r"certificate|TLS|SSL", d.err, re.I), "no log line about the certificate: %r" % d.err[-600:])
    if d.alive():
        rc, _ = d.stop(signal.SIGTERM, 30)
        t.eq(rc, 0, "exit status on SIGTERM")
    # the same with --insecure-skip-tls-verify: it connects
    d2 = Daemon(node.root, bad, node_name="n2", extra=["--insecure-skip-tls-verify"])
    W.old_daemons.append(d2)
    log = W.log("n2")
    v = log.wait(lambda s: s.get("phase") is not None, 20, 0, d2)
    t.check(v is not None, "no status on n2 with --insecure-skip-tls-verify: %s" % d2.describe())
    if d2.alive():
        rc, _ = d2.stop(signal.SIGTERM, 30)
        t.eq(rc, 0, "exit status on SIGTERM")


# --------------------------------------------------------------------------------------


def test_teardown(t):
    W.teardown(t)


def cases():
    out = [
        ("daemon start: READY=1, STATUS=, an Idle status showing the node, a watch of its own Node only", test_start),
        ("kubectl annotate drives the full gated upgrade: Pending -> Progressing (steps 1..6 of 6) -> Succeeded, "
         "with events", test_full_upgrade),
        ("idle after Succeeded: no request but the watch, no status write, no wakeups for %d s" % IDLE_SECONDS,
         test_idle),
        ("a watch the server ends cleanly is renewed with one status write (a newer `updated`, nothing else)",
         test_heartbeat_on_watch_renewal),
        ("killed before its last status was written: the next start settles it from the node (Succeeded, nothing run)",
         test_unreported_outcome_settled),
        ("the same (id, generation) re-sent, and after a restart (SIGTERM: exit 0, STOPPING=1), is not run again",
         test_same_generation),
    ]
    for name, value, needles, icase in HOSTILE:
        out.append(("hostile target, %s: Refused naming %s, tree byte-identical" % (name, needles + list(icase)
                                                                                     or "the error"),
                    lambda t, v=value, n=needles, i=icase, nm=name: test_hostile(t, nm, v, n, i)))
    out += [
        ("a new generation of a Refused target runs (patch upgrade to %s)" % PATCH, test_new_generation_after_refused),
        ("SIGHUP: RELOADING=1, READY=1, the new image allow-list applies to the next target", test_sighup_reload),
        ("watch bookmarks: cut after a compaction, the daemon resumes from the bookmark's resourceVersion "
         "(no 410, no re-list)", test_watch_bookmarks),
        ("the watch cut and its resourceVersion compacted away (410): the daemon lists again and runs the next "
         "target", test_watch_gone),
        ("a failing component: RolledBack with the reason in the message, events", test_failure_rolled_back),
        ("the failed generation is not re-run; a new generation runs and succeeds", test_new_generation_after_failure),
        ("while a rollout runs: a manual upgrade is refused naming the daemon, targets sent meanwhile wait and "
         "only the newest runs; by hand while idle: works, the status shows it", test_targets_wait_and_lock),
        ("the API server down during the API-server step: the rollout finishes, one status patch when it is back",
         test_apiserver_outage),
        ("SIGTERM mid-rollout: exit 0, STOPPING=1, Interrupted, journal resumable; the restart resumes",
         test_sigterm_mid_rollout),
        ("SIGKILL mid-rollout: the restart resumes from the journal and reports Succeeded", test_sigkill_mid_rollout),
        ("node n1's identity as --node-name n2: 403 reported once, not retried hot, nothing written",
         test_forbidden),
        ("TLS verified: a kubeconfig with another CA gets no request through; --insecure-skip-tls-verify does",
         test_tls_verified),
        ("teardown: every daemon exits 0 on SIGTERM, no process left", test_teardown),
    ]
    return out


def main():
    tests = cases()
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR") if not os.environ.get(v)]
    only = os.environ.get("CPLET_E2E_ONLY")
    print("1..%d" % len(tests), flush=True)
    if missing:
        for i, (name, _) in enumerate(tests, 1):
            print("not ok %d - %s\n# environment variable(s) not set: %s" % (i, name, ", ".join(missing)))
        return 1
    if not KUBECTL:
        print("# kubectl is not installed: targets are written with merge patches (apiclient)")
    failed = 0
    setup_error = None
    try:
        W.setup()
    except Exception:  # noqa: BLE001
        setup_error = "setting up the fake API server failed:\n" + traceback.format_exc()
    last = len(tests)
    for i, (name, fn) in enumerate(tests, 1):
        if only and str(i) not in only.split(",") and i != last:
            print("ok %d - %s # SKIP not selected" % (i, name))
            continue
        t = Case(name)
        start = time.monotonic()
        if setup_error and i != last:
            t.failures.append(setup_error)
        else:
            try:
                fn(t)
            except Abort:
                pass
            except Exception:  # noqa: BLE001
                t.failures.append("exception:\n" + traceback.format_exc())
        print("%s %d - %s" % ("not ok" if t.failures else "ok", i, name))
        failed += bool(t.failures)
        for f in t.failures:
            for line in str(f).splitlines():
                print("# %s" % line)
        for n in t.notes:
            for line in str(n).splitlines():
                print("#   %s" % line)
        print("# %.1fs" % (time.monotonic() - start), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
