#!/usr/bin/env python3
"""Build and check data/releases/feature-gates.yaml from the extracts in tools/extracts/.

  gates.py build    write ../feature-gates.yaml and print the snapshot check
  gates.py check    rebuild in memory, compare with ../feature-gates.yaml, print the snapshot check;
                    exit 1 if the file differs or a snapshot disagrees in a way not explained below

Extracts (hand-copied from files read through the search tools, see GATES-SOURCES.md):
  newest-specs.txt  versioned specs of every gate in the newest snapshot (1.37-dev)
  history.txt       removed gates, client-go and special gates, corrections (added/removed/flag name)
  snapshots.txt     gate names of one snapshot per minor, to check knownIn against
Only the standard library and PyYAML are used.
"""
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRACTS = os.path.join(HERE, "extracts")
OUT = os.path.normpath(os.path.join(HERE, "..", "feature-gates.yaml"))
MINORS = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36"]
STAGES = {"A": "Alpha", "B": "Beta", "GA": "GA", "D": "Deprecated"}

SOURCES = {
    "1.30": "derived: no 1.30 snapshot was readable; gates known in 1.31 plus those removed in 1.31, minus those added in 1.31; removals in 1.30 from gardener/gardener@fe7dc2c5: pkg/utils/validation/features/featuregates.go",
    "1.31": "kubernetes/kubernetes@128e189fcd0efd369059593dae55dc317a89a4b8: test/featuregates_linter/test_data/unversioned_feature_list.yaml (1.31-era; the versioned half of that release was not read)",
    "1.32": "kubernetes/kubernetes@0021731de5897e81f1d576a134db15c7c301eeff: test/featuregates_linter/test_data/versioned_feature_list.yaml (1.32 development; entries A..N read)",
    "1.33": "hdgittest/K8s@0f1ffd7a264c5ac6a954b82a709d548d4ee8ab7f: test/compatibility_lifecycle/reference/versioned_feature_list.yaml (early 1.34 development, stands for 1.33)",
    "1.34": "DataDog/kubernetes@19707945e4db661941e189af279bc7db8aa2c17a: test/compatibility_lifecycle/reference/versioned_feature_list.yaml (late 1.34)",
    "1.35": "KevinTMtz/kubernetes@16b9b5f066317d6f937e6a5bb28bb667796363a4: test/compatibility_lifecycle/reference/versioned_feature_list.yaml (1.35 development)",
    "1.36": "kubernetes/kubernetes@006235395113e2b868584c9cdb361e838f6d9c7c: test/compatibility_lifecycle/reference/feature_list.md (1.36 development); specs from openshift/kubernetes@0b0e324c800b9839e0e00c0b75c3e70674b355da: test/compatibility_lifecycle/reference/versioned_feature_list.yaml (1.37 development)",
}
TAGS = {
    "O": "openshift/kubernetes@0b0e324c:test/compatibility_lifecycle/reference/versioned_feature_list.yaml",
    "F36": "kubernetes/kubernetes@00623539:test/compatibility_lifecycle/reference/feature_list.md",
    "K35": "KevinTMtz/kubernetes@16b9b5f0:test/compatibility_lifecycle/reference/versioned_feature_list.yaml",
    "D34": "DataDog/kubernetes@19707945:test/compatibility_lifecycle/reference/versioned_feature_list.yaml",
    "U34": "kubernetes/kubernetes@002acc1a:test/compatibility_lifecycle/reference/versioned_feature_list.yaml",
    "H33": "hdgittest/K8s@0f1ffd7a:test/compatibility_lifecycle/reference/versioned_feature_list.yaml",
    "V32": "kubernetes/kubernetes@0021731d:test/featuregates_linter/test_data/versioned_feature_list.yaml",
    "U31": "kubernetes/kubernetes@128e189f:test/featuregates_linter/test_data/unversioned_feature_list.yaml",
    "B36": "BenTheElder/kubernetes@8d570438:test/compatibility_lifecycle/reference/versioned_feature_list.yaml",
    "G": "gardener/gardener@fe7dc2c5:pkg/utils/validation/features/featuregates.go",
    "R": "/work/shared/removals.md",
    "DOC": "secondary upgrade notes found by find_string (no repository given)",
    "FG": "kubernetes/kubernetes@00c2fffd:staging/src/k8s.io/component-base/featuregate/feature_gate.go",
}


def vkey(v):
    a, b = v.split(".")
    return (int(a), int(b))


def parse_specs(text):
    specs = []
    for tok in text.split():
        parts = tok.split(":")
        spec = {"version": parts[0], "default": parts[1] == "t", "preRelease": STAGES[parts[2]]}
        if len(parts) > 3 and parts[3] == "L":
            spec["lockToDefault"] = True
        specs.append(spec)
    return specs


def load():
    gates = {}
    with open(os.path.join(EXTRACTS, "newest-specs.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, rest = line.split(" ", 1)
            gates[name] = {"specs": parse_specs(rest), "src": ["O"], "fields": {}}
    with open(os.path.join(EXTRACTS, "history.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cols = [c.strip() for c in line.split("|")]
            name, specs = cols[0], cols[1]
            fields = {}
            for c in cols[2:]:
                k, v = c.split("=", 1)
                fields[k] = v
            g = gates.setdefault(name, {"specs": [], "src": [], "fields": {}})
            if specs == "-":
                g["specs"] = []
            elif specs != "=":
                g["specs"] = parse_specs(specs)
            g["fields"].update(fields)
            for t in fields.get("src", "").split(","):
                tag = t.split("(")[0]
                if tag and tag not in g["src"]:
                    g["src"].append(tag)
    snaps = {}
    with open(os.path.join(EXTRACTS, "snapshots.txt")) as f:
        for line in f:
            if line.startswith("snapshot "):
                _, sid, minor, where, _ = line.split(" ", 4)
                snaps[sid] = {"minor": minor, "where": where, "names": set(), "partial": "[partial]" in line}
            elif line.startswith("names "):
                parts = line.split()
                snaps[parts[1]]["names"] = set(parts[2:])
    return gates, snaps


def derive(gates):
    out = []
    for ident, g in gates.items():
        f = g["fields"]
        specs = [s for s in g["specs"] if vkey(s["version"]) <= vkey("1.36")]
        if "added" in f:
            added = f["added"]
        elif g["specs"]:
            added = g["specs"][0]["version"]
        else:
            added = "1.0"
        removed = f.get("removed")
        known = [m for m in MINORS if vkey(added) <= vkey(m) and (removed is None or vkey(m) < vkey(removed))]
        if not known and removed != "1.30":
            continue
        verified = f.get("verified") != "0"
        note = f.get("note")
        if added == "1.36" and "verified" not in f:
            # the newest spec list says 1.36; the mid-1.36 feature_list.md is the only 1.36 list read
            pass
        entry = {"name": f.get("flag", ident), "goName": ident if "flag" in f else None,
                 "specs": specs, "knownIn": known, "removedIn": removed, "added": added,
                 "partial": f.get("partial") == "1", "verified": verified, "note": note,
                 "src": g["src"], "confirmed": f.get("confirmed")}
        out.append(entry)
    out.sort(key=lambda e: e["name"].lower())
    return out


def q(s):
    return '"' + s + '"'


def render(entries):
    lines = [
        "# Feature gates known to kube-apiserver, kube-controller-manager and kube-scheduler of Kubernetes 1.30..1.36.",
        "# Generated by data/releases/tools/gates.py from tools/extracts/*.txt (hand-copied from files read through",
        "# the search tools); see GATES-SOURCES.md for what each source is and how complete each release is.",
        "# All three components register the same gate set (pkg/features plus the apiserver, apiextensions-apiserver,",
        "# component-base logs, controller-manager and client-go gates added to the one default feature gate).",
        "# specs: as the newest snapshot that still has the gate (the generated list's Go identifiers; 'name' is",
        "#   the flag spelling, 'goName' shows where they differ). knownIn: minors whose binaries recognise the name",
        "#   (any emulated version). removedIn: first minor >= 1.30 that no longer knows it.",
        "# verified: false = knownIn rests on an inference no snapshot of that release confirms (see note).",
        "# specsPartial: true = only the lock state could be sourced for a gate already gone.",
        "sources:",
    ]
    for m in MINORS:
        lines.append("  %s: %s" % (q(m), q(SOURCES[m])))
    lines.append("gates:")
    for e in entries:
        lines.append("  - name: %s" % e["name"])
        if e["goName"]:
            lines.append("    goName: %s" % e["goName"])
        if e["specs"]:
            lines.append("    specs:")
            for s in e["specs"]:
                parts = ["version: %s" % q(s["version"]), "default: %s" % str(s["default"]).lower(),
                         "preRelease: %s" % s["preRelease"]]
                if s.get("lockToDefault"):
                    parts.append("lockToDefault: true")
                lines.append("      - {%s}" % ", ".join(parts))
        else:
            lines.append("    specs: []")
        if e["partial"]:
            lines.append("    specsPartial: true")
        lines.append("    knownIn: [%s]" % ", ".join(q(m) for m in e["knownIn"]))
        if e["removedIn"]:
            lines.append("    removedIn: %s" % q(e["removedIn"]))
        if not e["verified"]:
            lines.append("    verified: false")
        lines.append("    source: %s" % q("; ".join(TAGS[t] for t in e["src"] if t in TAGS)))
        if e["note"]:
            lines.append("    note: %s" % q(e["note"].replace('"', "'")))
    return "\n".join(lines) + "\n"


# Differences between a snapshot and knownIn that are understood (snapshot id, gate, reason).
EXPLAINED = {
    ("F36", "ContextualLogging"): "feature_list.md omits the component-base logs gates",
    ("F36", "LoggingAlphaOptions"): "feature_list.md omits the component-base logs gates",
    ("F36", "LoggingBetaOptions"): "feature_list.md omits the component-base logs gates",
    ("V32", "HPAContainerMetrics"): "V32 is a 1.32 development snapshot; gardener and removals.md say removed in 1.32",
    ("F36", "HonorPVReclaimPolicy"): "mid-1.36 list; gone from the late-1.36 snapshot B36",
    ("F36", "InPlacePodVerticalScalingAllocatedStatus"): "mid-1.36 list; gone from the late-1.36 snapshot B36",
    ("K35", "PodLevelResourceManagers"): "contributor branch; upstream has the gate from 1.36",
    ("K35", "ImageVolumeWithDigest"): "spec says 1.35; absent from this 1.35-development snapshot",
}


def check(entries, snaps):
    bad = []
    info = []
    by_ident = {(e["goName"] or e["name"]): e for e in entries}
    by_flag = {e["name"]: e for e in entries}
    client_go = {"WatchListClient", "InformerResourceVersion", "ClientsAllowCBOR", "ClientsPreferCBOR",
                 "InOrderInformers", "InOrderInformersBatchProcess", "AtomicFIFO", "UnlockWhileProcessingFIFO"}
    for sid, s in sorted(snaps.items()):
        m = s["minor"]
        flagnames = sid == "F36"
        table = by_flag if flagnames else by_ident
        for name in sorted(s["names"]):
            e = table.get(name)
            if e is None:
                bad.append("%s: %s in snapshot but not in the data" % (sid, name))
            elif m not in e["knownIn"]:
                why = EXPLAINED.get((sid, name))
                (info if why else bad).append("%s (%s): %s in snapshot, knownIn lacks %s%s" % (sid, m, name, m, " -- " + why if why else ""))
        for e in ([] if s["partial"] else entries):
            key = e["name"] if flagnames else (e["goName"] or e["name"])
            if m in e["knownIn"] and key not in s["names"]:
                if e["name"] in {"AllAlpha", "AllBeta"} or (not flagnames and e["name"] in client_go):
                    continue
                why = EXPLAINED.get((sid, e["name"]))
                if why is None and e["specs"] and e["specs"][0]["version"] == m and not e["verified"]:
                    why = "added in %s per its spec; this %s snapshot predates it" % (m, m)
                if why is None and e["added"] == m and flagnames:
                    why = "spec says added in 1.36; feature_list.md is a mid-1.36 snapshot"
                (info if why else bad).append("%s (%s): %s knownIn has %s, snapshot lacks it%s" % (sid, m, e["name"], m, " -- " + why if why else ""))
    return bad, info


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "check"
    gates, snaps = load()
    entries = derive(gates)
    # gates whose spec starts 1.36 but which the mid-1.36 list lacks: mark unverified
    f36 = snaps["F36"]["names"]
    for e in entries:
        if e["added"] == "1.36" and e["name"] not in f36 and e["verified"] and not e["confirmed"]:
            e["verified"] = False
            e["note"] = (e["note"] + "; " if e["note"] else "") + "first spec 1.36; absent from the mid-1.36 feature_list.md, presence in v1.36.0 not confirmed"
    text = render(entries)
    doc = yaml.safe_load(text)
    assert set(doc["sources"]) == set(MINORS)
    names = [g["name"] for g in doc["gates"]]
    assert len(names) == len(set(names)), "duplicate gate names"
    for g in doc["gates"]:
        vs = [s["version"] for s in g["specs"]]
        assert vs == sorted(vs, key=vkey), g["name"]
        for s in g["specs"]:
            if s.get("lockToDefault"):
                assert s["preRelease"] in ("GA", "Deprecated"), g["name"]
    bad, info = check(entries, snaps)
    for line in info:
        print("explained: " + line)
    for line in bad:
        print("MISMATCH: " + line)
    print("%d gates; %d explained differences; %d unexplained" % (len(entries), len(info), len(bad)))
    if cmd == "build":
        with open(OUT, "w") as f:
            f.write(text)
        print("wrote " + OUT)
        return 0
    with open(OUT) as f:
        same = f.read() == text
    if not same:
        print("feature-gates.yaml differs from what the extracts give; run gates.py build")
    return 0 if same and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
