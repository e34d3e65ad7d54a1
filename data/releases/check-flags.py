#!/usr/bin/env python3
"""Consistency check of flags-1.3x.yaml and removed-flags.yaml (needs python3-yaml).

Checks the shape of every file, that lists are sorted and unique, that every deprecated flag is in
its list, and that removed-flags.yaml names exactly the flags and admission plugins that are in
release N-1 and not in N (for N = 1.31..1.36; 1.30's removals are checked against 1.30 only).
Run: python3 data/releases/check-flags.py
"""
import os
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REL = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36"]


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return yaml.safe_load(f)


L = {r: load(f"flags-{r}.yaml") for r in REL}
for r, d in L.items():
    assert set(d) == {"release", "components", "admissionPlugins"} and d["release"] == r, r
    for c, v in d["components"].items():
        assert set(v) == {"source", "complete", "flags", "deprecated"}, (r, c)
        assert v["flags"] == sorted(set(v["flags"])), (r, c, "not sorted/unique")
        for dep in v["deprecated"]:
            assert dep["flag"] in v["flags"], (r, c, dep)
    assert set(d["admissionPlugins"]) == {"source", "plugins"}, r

removed = load("removed-flags.yaml")
for e in removed:
    assert {"component", "removedIn", "fix", "source"} <= set(e), e
    assert ("flag" in e) != ("admissionPlugin" in e), e
    n = e["removedIn"]
    if "flag" in e:
        assert e["flag"] not in L[n]["components"][e["component"]]["flags"], e
    else:
        assert e["admissionPlugin"] not in L[n]["admissionPlugins"]["plugins"], e

for i in range(1, len(REL)):
    prev, cur = L[REL[i - 1]], L[REL[i]]
    for c in cur["components"]:
        gone = set(prev["components"][c]["flags"]) - set(cur["components"][c]["flags"])
        named = {e["flag"] for e in removed if "flag" in e and e["component"] == c and e["removedIn"] == REL[i]}
        assert gone == named, (REL[i], c, sorted(gone), sorted(named))
    gone = set(prev["admissionPlugins"]["plugins"]) - set(cur["admissionPlugins"]["plugins"])
    named = {e["admissionPlugin"] for e in removed if "admissionPlugin" in e and e["removedIn"] == REL[i]}
    assert gone == named, (REL[i], sorted(gone), sorted(named))
print("ok:", {r: {c: len(v["flags"]) for c, v in d["components"].items()} for r, d in L.items()})
