#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CLI tests of the preflight (issue 11): plan and upgrade check every step's flags against what
the step's binary accepts (data/releases/), refuse with every finding listed, --drop-removed
removes them in each component's first step, --force turns them into warnings; status lists
what the next minor removes. Prints TAP.

Environment (set by tests/meson.build): CPLET_BINARY, CPLET_PLUGIN_BUILD_DIR, CPLET_EXAMPLES_DIR,
CPLET_FIXTURES_DIR (see test-cli.py).
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml

from cli_common import (COMPONENTS, CPLET, MANIFEST_DIR, PLUGINS, TIMEOUT, BaseCase, add_flags, mpath, read,
                        remove_roots, run_tap, set_version, shell_quote, tree_checksum, tree_diff)
from cli_common import copy_example  # noqa: E402

# kube-apiserver flags and gates that 1.33 binaries refuse (CHANGELOG-1.33 #130162;
# feature-gates.yaml: AdmissionWebhookMatchConditions known 1.30..1.32, removedIn 1.33).
APISERVER_FLAGS = [
    "--cloud-provider",
    "gce",
    "--cloud_config=/etc/kubernetes/gce.conf",
    "--feature-gates=AdmissionWebhookMatchConditions=true,ImageMaximumGCAge=true",
]
# kube-scheduler: a gate gone in 1.33 too, in the kube: form.
SCHEDULER_FLAGS = ["--feature-gates=kube:AggregatedDiscoveryEndpoint=true"]

EXPECTED_REFUSALS = [
    "kube-apiserver.yaml: drop --cloud-provider (removed in 1.33; run an external cloud controller manager "
    "(kubelet and kube-controller-manager with --cloud-provider=external))",
    "kube-apiserver.yaml: drop --cloud_config (removed in 1.33; the cloud configuration file belongs to the "
    "external cloud controller manager)",
    "kube-apiserver.yaml: drop feature gate AdmissionWebhookMatchConditions from --feature-gates (removed in 1.33)",
    "kube-scheduler.yaml: drop feature gate AggregatedDiscoveryEndpoint from --feature-gates (removed in 1.33)",
]
DROP_ALL = "cloud-provider,cloud-config,AdmissionWebhookMatchConditions,AggregatedDiscoveryEndpoint"


class Case(BaseCase):
    def new_root(self):
        root = os.path.realpath(tempfile.mkdtemp(prefix="cplet-pf-"))
        self.roots.append(root)
        copy_example(root)
        os.chmod(os.path.join(root, MANIFEST_DIR), 0o700)
        return root

    def cleanup(self):
        remove_roots(self.roots)

    def run(self, root, args, unchanged=True):
        """Runs cplet on root; unchanged: the whole tree must be the same afterwards."""
        cmd = [CPLET, "--plugin-dir", PLUGINS, "--root", root] + list(args)
        before = tree_checksum(root) if unchanged else None
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            rc, out, err = None, "", ""
            self.failures.append(f"timed out after {TIMEOUT}s: {shell_quote(cmd)}")
        if unchanged:
            after = tree_checksum(root)
            self.check(before == after, f"the root tree changed during: {shell_quote(cmd)}\n{tree_diff(before, after)}")
        return rc, out, err


def node_132(t):
    """The example node at v1.32.5 with flags and gates the 1.33 binaries refuse."""
    root = t.new_root()
    set_version(root, "v1.32.5")
    add_flags(root, "kube-apiserver", APISERVER_FLAGS)
    add_flags(root, "kube-scheduler", SCHEDULER_FLAGS)
    return root


def command_of(root, component):
    doc = yaml.safe_load(read(mpath(root, component + ".yaml")))
    return doc["spec"]["containers"][0]["command"]


def refusal_lines(err):
    return [line[2:] for line in err.splitlines() if line.startswith("  ")]


def test_plan_refused_lists_all(t):
    root = node_132(t)
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.33.1"])
    t.eq(rc, 2, "exit code")
    t.eq(out, "", "stdout")
    t.contains(err, "cplet: plan refused: the new binaries would refuse to start (4 findings):", "stderr")
    t.eq(sorted(refusal_lines(err)), sorted(EXPECTED_REFUSALS), "every refusal, one per line")
    t.contains(err, f"--drop-removed {DROP_ALL}", "the hint names what --drop-removed takes")
    # The same through upgrade: refused before anything is written (the tree is checked).
    rc, out, err = t.run(root, ["upgrade", "--binary-version", "v1.33.1", "--no-wait"])
    t.eq(rc, 2, "upgrade --no-wait: exit code")
    t.eq(sorted(refusal_lines(err)), sorted(EXPECTED_REFUSALS), "upgrade --no-wait: every refusal")
    rc, out, err = t.run(root, ["upgrade", "--binary-version", "v1.33.1"])
    t.eq(rc, 2, "gated upgrade: exit code")
    t.eq(len(refusal_lines(err)), 4, "gated upgrade: every refusal")
    # 1.32 -> 1.32.x: nothing removed, no refusal.
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.32.9"])
    t.eq(rc, 0, f"plan within 1.32: exit code ({err.strip()!r})")


def test_drop_removed(t):
    root = node_132(t)
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.33.1", "--drop-removed", "cloud-provider",
                                "--drop-removed", "--cloud-config,AdmissionWebhookMatchConditions",
                                "--drop-removed=AggregatedDiscoveryEndpoint"])
    t.eq(rc, 0, f"plan: exit code ({err.strip()!r})")
    t.not_contains(err, "refuse", "plan: stderr")
    first = out.split("  2. ")[0]
    for d in ("cloud-provider", "cloud-config", "AdmissionWebhookMatchConditions"):
        t.contains(first, f"drops: {d} (--drop-removed)", "step 1 (kube-apiserver binary)")
    t.contains(out, "drops: AggregatedDiscoveryEndpoint (--drop-removed)", "plan")
    rc, out, err = t.run(root, ["plan", "--json", "--binary-version", "v1.33.1", "--drop-removed", DROP_ALL])
    steps = json.loads(out).get("steps", []) if rc == 0 else []
    drops = [(s.get("component"), s.get("kind"), s.get("dropRemoved")) for s in steps if "dropRemoved" in s]
    t.eq(drops, [("kube-apiserver", "binary", ["cloud-provider", "cloud-config", "AdmissionWebhookMatchConditions"]),
                 ("kube-scheduler", "binary", ["AggregatedDiscoveryEndpoint"])], "json: dropRemoved of the steps")

    rc, out, err = t.run(root, ["upgrade", "--binary-version", "v1.33.1", "--no-wait", "--drop-removed", DROP_ALL],
                         unchanged=False)
    t.eq(rc, 0, f"upgrade --no-wait: exit code ({err.strip()!r})")
    api = command_of(root, "kube-apiserver")
    for gone in ("--cloud-provider", "gce", "--cloud_config=/etc/kubernetes/gce.conf"):
        t.not_contains(api, gone, "kube-apiserver command")
    t.contains(api, "--feature-gates=ImageMaximumGCAge=true", "the other gate stays, in its place")
    t.contains(api, "--secure-port=6443", "other flags stay")
    t.not_contains(command_of(root, "kube-scheduler"), SCHEDULER_FLAGS[0], "kube-scheduler command")
    t.not_contains(" ".join(command_of(root, "kube-scheduler")), "feature-gates", "kube-scheduler: empty flag gone")
    t.contains(read(mpath(root, "kube-apiserver.yaml")), "kube-apiserver:v1.33.1", "kube-apiserver image")
    # The node now plans 1.33 -> 1.33.x without findings.
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.33.2"])
    t.eq(rc, 0, f"plan after: exit code ({err.strip()!r})")


def test_drop_removed_unknown(t):
    root = node_132(t)
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.33.1", "--drop-removed", DROP_ALL + ",NoSuchThing"])
    t.eq(rc, 2, "exit code")
    t.contains(err, "--drop-removed NoSuchThing: no step of the plan has a flag, feature gate or admission plugin "
                    "of that name that its binary refuses", "stderr")
    # A flag that is on the node but refused nowhere is not droppable either.
    rc, out, err = t.run(root, ["upgrade", "--binary-version", "v1.33.1", "--no-wait", "--drop-removed",
                                DROP_ALL + ",secure-port"])
    t.eq(rc, 2, "a flag nothing refuses: exit code")
    t.contains(err, "--drop-removed secure-port:", "a flag nothing refuses: stderr")
    # Only for the component it is refused for: kube-controller-manager keeps its flag.
    root2 = t.new_root()
    set_version(root2, "v1.32.5")
    add_flags(root2, "kube-apiserver", ["--cloud-provider=gce"])
    add_flags(root2, "kube-controller-manager", ["--cloud-provider=external"])
    rc, out, err = t.run(root2, ["upgrade", "--binary-version", "v1.33.1", "--no-wait", "--drop-removed",
                                 "cloud-provider"], unchanged=False)
    t.eq(rc, 0, f"upgrade: exit code ({err.strip()!r})")
    t.not_contains(command_of(root2, "kube-apiserver"), "--cloud-provider=gce", "kube-apiserver")
    t.contains(command_of(root2, "kube-controller-manager"), "--cloud-provider=external", "kube-controller-manager")


def test_force(t):
    root = node_132(t)
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.33.1", "--force"])
    t.eq(rc, 0, f"plan --force: exit code ({err.strip()!r})")
    t.contains(out, "Plan: 6 steps", "plan --force: stdout")
    for line in EXPECTED_REFUSALS:
        t.contains(err, f"warning: {line} (the binary will refuse this; going ahead as --force says)",
                   "plan --force: stderr")
    rc, out, err = t.run(root, ["upgrade", "--binary-version", "v1.33.1", "--no-wait", "--force"], unchanged=False)
    t.eq(rc, 0, f"upgrade --force: exit code ({err.strip()!r})")
    t.eq(err.count("going ahead as --force says"), 4, "upgrade --force: each refusal warned once")
    t.contains(command_of(root, "kube-apiserver"), "--cloud-provider", "the flags stay")


def test_locked_gate_per_step(t):
    # ImageMaximumGCAge is locked to true from 1.35: a 1.35 binary emulating 1.34 takes =false,
    # the emulation step to 1.35 does not.
    root = t.new_root()
    add_flags(root, "kube-apiserver", ["--feature-gates=ImageMaximumGCAge=false"])
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.35.0", "--emulated-version", "1.34"])
    t.eq(rc, 0, f"binaries only (emulated 1.34): exit code ({err.strip()!r})")
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.35.0"])
    t.eq(rc, 2, "to emulated 1.35: exit code")
    t.eq(refusal_lines(err), ["kube-apiserver.yaml: drop feature gate ImageMaximumGCAge from --feature-gates (at "
                              "emulated version 1.35: \"cannot set feature gate ImageMaximumGCAge to false, feature "
                              "is locked to true\")"], "the refusal")


def test_warnings(t):
    root = t.new_root()
    add_flags(root, "kube-apiserver", ["--no-such-flag=1", "--enable-admission-plugins=NodeRestriction,FooPlugin"])
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.35.0"])
    t.eq(rc, 0, f"exit code ({err.strip()!r})")
    t.contains(err, "warning: kube-apiserver.yaml: --no-such-flag is not in cplet's list of 1.35 kube-apiserver "
                    "flags (the list may be incomplete)\n", "unknown flag")
    t.contains(err, "warning: kube-apiserver.yaml: admission plugin FooPlugin (--enable-admission-plugins) is not "
                    "in cplet's list of 1.35 admission plugins", "unknown plugin")
    t.eq(err.count("--no-such-flag"), 1, "said once for all steps")
    # A release outside the data: one warning per component, no checks (--cloud-provider would
    # be refused by any release from 1.33 on that cplet knows).
    root = t.new_root()
    set_version(root, "v1.36.1")
    add_flags(root, "kube-apiserver", ["--cloud-provider=gce", "--no-such-flag"])
    rc, out, err = t.run(root, ["plan", "--binary-version", "v1.37.0"])
    t.eq(rc, 0, f"1.36 -> 1.37: exit code ({err.strip()!r})")
    t.eq(err, "".join(f"warning: {c}.yaml: cplet has no release data for {c} 1.37 (it knows 1.30 to 1.36): its "
                      "flags are not checked\n" for c in COMPONENTS), "1.36 -> 1.37: stderr")


def test_status_next_minor(t):
    root = node_132(t)
    rc, out, err = t.run(root, ["status"])
    t.eq(rc, 0, "status: exit code")
    t.contains(out, "\nkube-apiserver: 1.33 removes these of its command line:\n", "status text")
    for line in EXPECTED_REFUSALS:
        t.contains(out, "  " + line + "\n", "status text")
    rc, out, err = t.run(root, ["status", "--json"])
    comps = {c["name"]: c for c in json.loads(out)["components"]} if rc == 0 else {}
    t.eq(sorted(comps.get("kube-apiserver", {}).get("removedInNextMinor") or []), sorted(EXPECTED_REFUSALS[:3]),
         "json: kube-apiserver")
    t.eq(comps.get("kube-scheduler", {}).get("removedInNextMinor"), EXPECTED_REFUSALS[3:], "json: kube-scheduler")
    t.eq(comps.get("kube-controller-manager", {}).get("removedInNextMinor"), [], "json: kube-controller-manager")
    # At 1.36 the next minor is outside the data: null.
    set_version(root, "v1.36.0")
    rc, out, err = t.run(root, ["status", "--json"])
    comps = {c["name"]: c for c in json.loads(out)["components"]} if rc == 0 else {}
    t.eq([comps.get(c, {}).get("removedInNextMinor", "missing") for c in COMPONENTS], [None] * 3, "json at 1.36")


TESTS = [
    ("plan v1.32 -> v1.33 over removed flags and gates: refused, every finding listed, nothing written",
     test_plan_refused_lists_all),
    ("--drop-removed: the plan shows the drops, upgrade --no-wait writes manifests without them", test_drop_removed),
    ("--drop-removed naming nothing refused is invalid input; drops only where refused", test_drop_removed_unknown),
    ("--force: the refusals become warnings", test_force),
    ("a locked gate is refused at the step whose emulated version locks it", test_locked_gate_per_step),
    ("warnings: unknown flag, unknown plugin, release outside the data", test_warnings),
    ("status: what the next minor removes", test_status_next_minor),
]

if __name__ == "__main__":
    sys.exit(run_tap(TESTS, Case))
