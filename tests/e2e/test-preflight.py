#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End to end: cplet's preflight (issue 11) against the simulated node, printing TAP.

For each release pair N -> N+1 (1.30 -> 1.31 ... 1.35 -> 1.36), a simulated node at vN whose
manifests carry what N+1 removes (data/releases/removed-flags.yaml: the flags and admission
plugins; feature-gates.yaml: the gates N knows and N+1 does not), the gates N+1 locks to the
value the manifest does not set, and one gate both know (kept), all taken from the data, and
started healthy by the vN fakes (which read the same data: tests/sim/fake_component.py):

  * `cplet plan --binary-version vN+1` is refused (exit 2), names every one of them, and changes
    nothing on disk;
  * `cplet upgrade ... --drop-removed X...` (each of them) completes, gated: the vN+1 fakes
    would have refused to start otherwise; the manifests no longer carry them and still carry
    the rest (the kept gate, NodeRestriction);
  * control: `cplet upgrade ... --force` without the drops fails at the gate because the vN+1
    fake exits 1 with the real binary's text (exit 1, rolled back to vN, healthy): the fakes
    reject what the preflight refuses.

Environment (set by tests/meson.build): CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR.
CPLET_E2E_ONLY=3,4 runs only those cases.
"""

import os
import re
import shutil
import sys
import tempfile
import time

import yaml

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from e2e_util import (  # noqa: E402
    COMPONENTS, REPO, SimNode, argv_of, cplet_cmd, image_tag, live_manifests, load_yaml, pid_alive,
    run_tap, shell_quote, tree_checksum, tree_diff,
)

import subprocess  # noqa: E402

DATA = os.environ.get("CPLET_RELEASE_DATA") or os.path.join(REPO, "data", "releases")
# The simulated node's version of each minor (a patch release, as nodes run) and the target.
TAGS = {30: "v1.30.14", 31: "v1.31.4", 32: "v1.32.3", 33: "v1.33.1", 34: "v1.34.2", 35: "v1.35.0",
        36: "v1.36.0"}
PAIRS = [(n, n + 1) for n in range(30, 36)]
GATE = ["--stable-for", "0s", "--step-timeout", "20s"]
TIMEOUT = 180
APISERVER, KCM, SCHEDULER = COMPONENTS
# Values for the removed flags (any value the old binary takes; the fakes check none).
FLAG_VALUES = {
    "cloud-provider": "external",
    "cloud-config": "/etc/kubernetes/cloud.conf",
    "cloud-provider-gce-lb-src-cidrs": "130.211.0.0/22,35.191.0.0/16",
    "cloud-provider-gce-l7lb-src-cidrs": "130.211.0.0/22,35.191.0.0/16",
    "horizontal-pod-autoscaler-upscale-delay": "3m0s",
    "horizontal-pod-autoscaler-downscale-delay": "5m0s",
    "volume-host-cidr-denylist": "169.254.169.254/32",
    "volume-host-allow-local-loopback": "false",
}
MAX_LOCKED = 2  # gates N+1 locks, per pair (some releases lock a dozen)


# --------------------------------------------------------------------------------------
# The release data, read as the fakes and cplet read it


def _minor(v):
    major, minor = str(v).split(".")[:2]
    return int(major), int(minor)


def load_data():
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(os.path.join(DATA, "removed-flags.yaml")) as f:
        removed = yaml.load(f, Loader=loader) or []
    with open(os.path.join(DATA, "feature-gates.yaml")) as f:
        gates = (yaml.load(f, Loader=loader) or {}).get("gates") or []
    return removed, gates


def spec_at(gate, minor):
    """The spec in force at emulated version 1.minor (the last one not newer), or None."""
    cur = None
    for s in sorted(gate.get("specs") or [], key=lambda s: _minor(s["version"])):
        if _minor(s["version"]) <= (1, minor):
            cur = s
    return cur


def usable_at(gate, n):
    """A value the vN binary (emulating N) takes for this gate, or None when it takes none (a
    gate not yet available at N). vN at N: the default of the spec in force."""
    if "1.%d" % n not in (gate.get("knownIn") or []):
        return None
    s = spec_at(gate, n)
    if s is None:
        if gate.get("specs") and not gate.get("specsPartial") and n >= 31:
            return None  # PreAlpha at N
        return True  # no versioned spec (1.30-only gates): any value
    return bool(s.get("default"))


def go_bool(v):
    return "true" if v else "false"


class Scenario:
    """What a node at N carries for the pair N -> N+1, and what cplet must name."""

    def __init__(self, n, removed, gates):
        self.n, self.m = n, n + 1
        self.flags = {c: [] for c in COMPONENTS}      # removed flags: [(name, value)]
        self.plugins = []                              # removed admission plugins (apiserver)
        self.gates = {c: [] for c in COMPONENTS}      # [(gate, bool, kind)] kind: removed/locked/kept
        for e in removed:
            if _minor(e["removedIn"]) != (1, self.m):
                continue
            if e.get("flag"):
                self.flags[e["component"]].append((e["flag"], FLAG_VALUES.get(e["flag"], "x")))
            elif e.get("admissionPlugin"):
                self.plugins.append(e["admissionPlugin"])
        removed_gates, locked, kept = [], [], []
        for g in sorted(gates, key=lambda g: g["name"]):
            if g["name"] in ("AllAlpha", "AllBeta"):
                continue
            v = usable_at(g, self.n)
            if v is None:
                continue
            known_next = "1.%d" % self.m in (g.get("knownIn") or [])
            if not known_next:
                removed_gates.append((g["name"], v, "removed"))
                continue
            now, nxt = spec_at(g, self.n), spec_at(g, self.m)
            if g.get("specsPartial") or now is None or nxt is None or now.get("lockToDefault"):
                continue
            if nxt.get("lockToDefault"):
                # N leaves it settable: set it to the value N+1 no longer takes
                locked.append((g["name"], not bool(nxt.get("default")), "locked"))
            elif not nxt.get("lockToDefault") and not kept and bool(nxt.get("default")) == v:
                kept.append((g["name"], v, "kept"))
        # spread over the three components; the kept gate goes with the API server's
        for i, g in enumerate(removed_gates + locked[:MAX_LOCKED]):
            self.gates[COMPONENTS[i % 3]].append(g)
        self.gates[APISERVER] += kept
        self.locked = locked[:MAX_LOCKED]
        self.removed_gates = removed_gates
        self.kept = kept

    def node_flags(self):
        """SimNode(flags=...) for the node at N."""
        out = {c: {} for c in COMPONENTS}
        for c in COMPONENTS:
            for name, value in self.flags[c]:
                out[c][name] = value
            if self.gates[c]:
                out[c]["feature-gates"] = ",".join("%s=%s" % (g, go_bool(v)) for g, v, _ in self.gates[c])
        if self.plugins:
            out[APISERVER]["enable-admission-plugins"] = ",".join(["NodeRestriction"] + self.plugins)
        return out

    def findings(self):
        """[(component, what, name)]: every refusal the plan must name."""
        out = []
        for c in COMPONENTS:
            out += [(c, "flag", name) for name, _ in self.flags[c]]
            out += [(c, kind, g) for g, _, kind in self.gates[c] if kind != "kept"]
        out += [(APISERVER, "admission plugin", p) for p in self.plugins]
        return out

    def drops(self):
        names = []
        for _, _, name in self.findings():
            if name not in names:
                names.append(name)
        return names

    def refusal_texts(self, component):
        """Lines the vN+1 fake of this component may exit with (the first error it meets)."""
        t = ["unknown flag: --%s" % name for name, _ in self.flags[component]]
        for g, v, kind in self.gates[component]:
            if kind == "removed":
                t.append("unrecognized feature gate: %s" % g)
            elif kind == "locked":
                t.append("cannot set feature gate %s to %s, feature is locked to %s" % (g, go_bool(v), go_bool(not v)))
        if component == APISERVER:
            t += ['enable-admission-plugins plugin \\"%s\\" is unknown' % p for p in self.plugins]
        return t

    def describe(self):
        parts = []
        for c in COMPONENTS:
            items = ["--" + f for f, _ in self.flags[c]] + ["%s=%s(%s)" % (g, go_bool(v), k) for g, v, k in self.gates[c]]
            if c == APISERVER:
                items += ["plugin " + p for p in self.plugins]
            parts.append("%s: %s" % (c, ", ".join(items) or "-"))
        return "; ".join(parts)


# --------------------------------------------------------------------------------------
# Test machinery


class Case:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.nodes = []
        self.roots = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)

    def eq(self, actual, expected, msg):
        return self.check(actual == expected, "%s: expected %r, got %r" % (msg, expected, actual))

    def node(self, version, flags):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-preflight-"))
        self.roots.append(root)
        n = SimNode(root, version, backoff=0.2, backoff_max=1.0, grace=2.0, flags=flags)
        self.nodes.append(n)
        n.up(timeout=40)
        return n

    def run(self, node, args, timeout=TIMEOUT):
        cmd = cplet_cmd(node.root, args)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            self.failures.append("timed out after %ss: %s" % (timeout, shell_quote(cmd)))
            return None, str(e.stdout or ""), str(e.stderr or "")

    def cleanup(self):
        for n in self.nodes:
            left = n.down()
            if left:
                self.failures.append("processes left after stopping the node %s: %s" % (n.root, left))
        if not self.failures:
            for r in self.roots:
                shutil.rmtree(r, ignore_errors=True)
        elif self.roots:
            self.failures.append("node roots kept: %s" % " ".join(self.roots))


def manifest_argvs(root):
    return {c: argv_of(load_yaml(data), c) for c, data in live_manifests(root).items()}


def flag_values(argv, name):
    """Every value of --name (pflag forms: --name=v, --name v; _ is -)."""
    out = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if not a.startswith("--"):
            continue
        body = a[2:]
        key, eq, val = body.partition("=")
        if key.replace("_", "-") != name:
            continue
        if not eq and i < len(argv):
            val = argv[i]
            i += 1
        out.append(val)
    return out


def has_flag(argv, name):
    return any(a.startswith("--") and a[2:].split("=", 1)[0].replace("_", "-") == name for a in argv)


def gate_names(argv):
    names = []
    for v in flag_values(argv, "feature-gates"):
        for pair in v.split(","):
            if pair:
                names.append(pair.split("=", 1)[0].split(":", 1)[-1].strip())
    return names


def plugin_names(argv):
    return [p for v in flag_values(argv, "enable-admission-plugins") + flag_values(argv, "disable-admission-plugins")
            for p in v.split(",") if p]


def running(node):
    """{component: its start event} for the processes the kubelet runs now."""
    cur = {}
    for e in node.events():
        if e["event"] == "start":
            cur[e["file"]] = e
        elif e["event"] in ("stop", "exit") and e["file"] in cur and cur[e["file"]]["pid"] == e["pid"]:
            del cur[e["file"]]
    return {f[:-5]: e for f, e in cur.items() if pid_alive(e["pid"])}


def check_node_at(t, node, tag, msg):
    if not t.check(node.wait_healthy(20), "%s: not healthy: %s" % (msg, node.health())):
        return
    r = running(node)
    for c in COMPONENTS:
        e = r.get(c)
        if t.check(e is not None, "%s: nothing runs for %s" % (msg, c)):
            t.eq(image_tag(e["image"]), tag, "%s: image of the running %s" % (msg, c))


def cri_logs(root, component):
    """The container's logs under ROOT/var/log/pods, as the fake kubelet writes them."""
    out = ""
    pods = os.path.join(root, "var", "log", "pods")
    for d in sorted(os.listdir(pods)) if os.path.isdir(pods) else []:
        cdir = os.path.join(pods, d, component)
        if d.startswith("kube-system_%s-" % component) and os.path.isdir(cdir):
            for n in sorted(os.listdir(cdir), key=lambda x: int(x.split(".")[0]) if x[0].isdigit() else -1):
                with open(os.path.join(cdir, n)) as f:
                    out += f.read()
    return out


# --------------------------------------------------------------------------------------
# The cases


def scenario_for(n):
    removed, gates = load_data()
    return Scenario(n, removed, gates)


def started_node(t, s):
    node = t.node(TAGS[s.n], s.node_flags())
    argvs = manifest_argvs(node.root)
    # the node carries them, and the vN fakes took them (the node came up healthy)
    for c, what, name in s.findings():
        argv = argvs[c]
        carried = (has_flag(argv, name) if what == "flag" else
                   name in plugin_names(argv) if what == "admission plugin" else name in gate_names(argv))
        t.check(carried, "the v%d node's %s manifest does not carry %s %s" % (s.n, c, what, name))
    check_node_at(t, node, TAGS[s.n], "the v1.%d node with what 1.%d removes" % (s.n, s.m))
    return node


def test_refused_then_dropped(t, n):
    s = scenario_for(n)
    t.check(s.findings(), "the data names nothing that 1.%d removes or locks: %s" % (s.m, s.describe()))
    node = started_node(t, s)
    target = TAGS[s.m]

    before = tree_checksum(node.root)
    rc, out, err = t.run(node, ["plan", "--binary-version", target])
    after = tree_checksum(node.root)
    t.eq(rc, 2, "plan --binary-version %s exit code (stdout %r, stderr %r)" % (target, out[-800:], err[-800:]))
    # one line per finding: "  <file>: drop ... <name> ... (removed in 1.M ...)" or, for a lock,
    # "(at emulated version 1.M: ...)"; exactly as many as expected
    findings = s.findings()
    t.check("(%d findings)" % len(findings) in err, "plan does not count %d findings: %r" % (len(findings), err[-3000:]))
    lines = [line for line in err.splitlines() if line.startswith("  ") and ".yaml: " in line]
    t.eq(len(lines), len(findings), "finding lines of the refused plan (%r)" % err[-3000:])
    for c, what, name in findings:
        word = re.compile(r"(?<![\w-])%s(?![\w-])" % re.escape(("--" if what == "flag" else "") + name))
        why = ("at emulated version 1.%d:" if what == "locked" else "removed in 1.%d") % s.m
        hit = [line for line in lines if line.startswith("  %s.yaml: " % c) and word.search(line) and why in line]
        t.check(len(hit) == 1, "plan does not name %s %s of %s (%r) once:\n%s" % (what, name, c, why, err[-3000:]))
    t.check(before == after, "files changed by the refused plan:\n%s" % tree_diff(before, after))

    # the same upgrade, dropping exactly those: gated, it completes on the vN+1 fakes
    drops = []
    for name in s.drops():
        drops += ["--drop-removed", name]
    originals = manifest_argvs(node.root)
    rc, out, err = t.run(node, ["upgrade", "--binary-version", target] + GATE + drops)
    if not t.eq(rc, 0, "upgrade --drop-removed exit code (stdout %r, stderr %r)" % (out[-1500:], err[-1500:])):
        return
    check_node_at(t, node, target, "after upgrade --drop-removed")
    argvs = manifest_argvs(node.root)
    for c, what, name in s.findings():
        argv = argvs[c]
        if what == "flag":
            t.check(not has_flag(argv, name), "%s still has --%s: %r" % (c, name, argv))
        elif what == "admission plugin":
            t.check(name not in plugin_names(argv), "%s still enables plugin %s: %r" % (c, name, argv))
        else:
            t.check(name not in gate_names(argv), "%s still sets gate %s: %r" % (c, name, argv))
    # and nothing else went: the kept gate, NodeRestriction, every other flag
    for c in COMPONENTS:
        gone = {name for cc, _, name in s.findings() if cc == c}
        for a in originals[c]:
            if not a.startswith("--"):
                continue
            key = a[2:].split("=", 1)[0]
            if key in gone or key in ("feature-gates", "enable-admission-plugins", "emulated-version",
                                      "min-compatibility-version"):
                continue
            t.check(a in argvs[c], "%s lost %s in the upgrade: %r" % (c, a, argvs[c]))
    for g, v, _ in s.kept:
        t.check(g in gate_names(argvs[APISERVER]), "the kept gate %s was dropped: %r" % (g, argvs[APISERVER]))
    t.check("NodeRestriction" in plugin_names(argvs[APISERVER]),
            "NodeRestriction was dropped: %r" % argvs[APISERVER])


def test_forced_fails_at_gate(t, n):
    s = scenario_for(n)
    node = started_node(t, s)
    target = TAGS[s.m]
    originals = manifest_argvs(node.root)
    t0 = time.time()
    rc, out, err = t.run(node, ["upgrade", "--binary-version", target] + GATE + ["--force"])
    t.eq(rc, 1, "upgrade --force without --drop-removed exit code (stdout %r, stderr %r)" % (out[-1500:], err[-1500:]))
    # which fake refused, and with the real binary's text, in its /var/log/pods log
    exits = [e for e in node.events("exit") if e["t"] >= t0 and image_tag(e["image"]) == target]
    if t.check(exits, "no vN+1 process exited at the gate (events since the upgrade: %r)"
               % [e for e in node.events() if e["t"] >= t0][:10]):
        e = exits[0]
        c = e["file"][:-5]
        t.eq(e["code"], 1, "exit code of the refusing %s %s" % (c, target))
        logs = cri_logs(node.root, c)
        texts = s.refusal_texts(c)
        t.check(any(x in logs for x in texts), "the %s %s log has none of %r:\n%s" % (c, target, texts, logs[-1500:]))
        t.check(any(x.replace('\\"', '"') in err or x in err for x in texts),
                "cplet's error does not quote the fake's refusal %r: %r" % (texts, err[-1500:]))
    check_node_at(t, node, TAGS[s.n], "after the failed upgrade (rolled back)")
    t.eq(manifest_argvs(node.root), originals, "manifests after the rollback")


def tests():
    out = []
    for n, m in PAIRS:
        out.append(("1.%d -> 1.%d: plan refused naming every removed/locked flag, gate and plugin, nothing "
                    "written; upgrade --drop-removed completes on the 1.%d fakes" % (n, m, m),
                    lambda t, n=n: test_refused_then_dropped(t, n)))
        out.append(("1.%d -> 1.%d control: upgrade --force without the drops fails at the gate (the 1.%d fake "
                    "exits 1 with the real text), rolled back" % (n, m, m),
                    lambda t, n=n: test_forced_fails_at_gate(t, n)))
    return out


def main():
    removed, gates = load_data()
    for n, m in PAIRS:
        print("# 1.%d -> 1.%d: %s" % (n, m, Scenario(n, removed, gates).describe()))
    return run_tap(tests(), Case, required=("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR"))


if __name__ == "__main__":
    sys.exit(main())
