#!/usr/bin/env python3
"""Compile data/releases/*.yaml into the C tables of agent/lib/release-data.h.

  gen-release-data.py RELEASES_DIR OUTPUT.c

Reads flags-1.MINOR.yaml (every one in RELEASES_DIR), removed-flags.yaml and feature-gates.yaml,
checks what the C code relies on (names, versions, sorted tables, the minors contiguous) and
writes OUTPUT.c. Only the standard library and PyYAML: it runs at build time (meson
custom_target), so the build needs python3 and python3-yaml.
"""
import glob
import os
import re
import sys

import yaml

STAGES = {"Alpha": "RELEASE_STAGE_ALPHA", "Beta": "RELEASE_STAGE_BETA", "GA": "RELEASE_STAGE_GA",
          "Deprecated": "RELEASE_STAGE_DEPRECATED"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def fail(msg):
    sys.stderr.write("gen-release-data: %s\n" % msg)
    sys.exit(1)


def minor(text, where):
    m = re.fullmatch(r"(\d+)\.(\d+)", str(text))
    if not m:
        fail("%s: %r is not MAJOR.MINOR" % (where, text))
    return int(m.group(1)), int(m.group(2))


def c_str(s):
    if s is None:
        return "NULL"
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif o < 0x20 or o == 0x7f:
            out.append("\\%03o" % o)
        elif o > 0x7e:
            out.extend("\\%03o" % b for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    # "??" would be a trigraph in strict modes; split it.
    return '"' + "".join(out).replace("??", '?""?') + '"'


def c_minor(m):
    return "{ %d, %d }" % m


def check_names(names, where):
    for n in names:
        if not isinstance(n, str) or not NAME.match(n):
            fail("%s: bad name %r" % (where, n))
    if len(set(names)) != len(names):
        fail("%s: duplicate names" % where)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def gen_releases(out, releases_dir):
    files = sorted(glob.glob(os.path.join(releases_dir, "flags-*.yaml")),
                   key=lambda p: minor(re.search(r"flags-(\d+\.\d+)\.yaml$", p).group(1), p))
    if not files:
        fail("no flags-*.yaml in %s" % releases_dir)
    minors = []
    for i, path in enumerate(files):
        doc = load(path)
        m = minor(doc["release"], path)
        if os.path.basename(path) != "flags-%d.%d.yaml" % m:
            fail("%s says release %d.%d" % (path, *m))
        minors.append(m)
        comps = doc["components"]
        for ci, (comp, cd) in enumerate(sorted(comps.items())):
            flags = sorted(cd["flags"])
            check_names(flags, "%s %s" % (path, comp))
            out.append("static const char *const flags_%d_%d[] = {" % (i, ci))
            out.extend("        %s," % c_str(f) for f in flags)
            out.append("};")
            dep = sorted(cd.get("deprecated") or [], key=lambda d: d["flag"])
            check_names([d["flag"] for d in dep], "%s %s deprecated" % (path, comp))
            out.append("static const release_deprecated deprecated_%d_%d[] = {" % (i, ci))
            out.extend("        { %s, %s }," % (c_str(d["flag"]), c_str(str(d["message"]))) for d in dep)
            out.append("        { NULL, NULL }, /* never empty */")
            out.append("};")
        out.append("static const release_component_flags components_%d[] = {" % i)
        for ci, (comp, cd) in enumerate(sorted(comps.items())):
            out.append("        { %s, flags_%d_%d, %d, deprecated_%d_%d, %d, %s }," % (
                c_str(comp), i, ci, len(cd["flags"]), i, ci, len(cd.get("deprecated") or []),
                "true" if cd.get("complete") else "false"))
        out.append("};")
        plugins = sorted(doc["admissionPlugins"]["plugins"])
        check_names(plugins, "%s admissionPlugins" % path)
        out.append("static const char *const admission_%d[] = {" % i)
        out.extend("        %s," % c_str(p) for p in plugins)
        out.append("};")
        out.append("")
    for a, b in zip(minors, minors[1:]):
        if b != (a[0], a[1] + 1):
            fail("the releases are not contiguous: %d.%d then %d.%d" % (*a, *b))
    if any(m[0] != 1 for m in minors):
        fail("only Kubernetes 1.x is supported")
    out.append("const uint16_t RELEASE_FIRST_MINOR = %d, RELEASE_LAST_MINOR = %d;" % (minors[0][1], minors[-1][1]))
    out.append("const release_info release_infos[] = {")
    for i, path in enumerate(files):
        doc = load(path)
        out.append("        { %s, components_%d, %d, admission_%d, %d }," % (
            c_minor(minors[i]), i, len(doc["components"]), i, len(doc["admissionPlugins"]["plugins"])))
    out.append("};")
    out.append("const size_t release_n_infos = %d;" % len(files))
    out.append("")
    return minors


def gen_removals(out, releases_dir):
    path = os.path.join(releases_dir, "removed-flags.yaml")
    entries = load(path) or []
    out.append("const release_removal release_removals[] = {")
    for e in entries:
        flag, plugin = e.get("flag"), e.get("admissionPlugin")
        if (flag is None) == (plugin is None):
            fail("%s: an entry needs exactly one of flag, admissionPlugin: %r" % (path, e))
        check_names([flag or plugin], path)
        out.append("        { %s, %s, %s, %s, %s }," % (c_str(e["component"]), c_str(flag), c_str(plugin),
                                                        c_minor(minor(e["removedIn"], path)), c_str(e["fix"])))
    out.append("        { NULL, NULL, NULL, { 0, 0 }, NULL }, /* never empty */")
    out.append("};")
    out.append("const size_t release_n_removals = %d;" % len(entries))
    out.append("")


def gen_gates(out, releases_dir, minors):
    path = os.path.join(releases_dir, "feature-gates.yaml")
    gates = sorted(load(path)["gates"], key=lambda g: g["name"].encode())
    check_names([g["name"] for g in gates], path)
    first = minors[0][1]
    for i, g in enumerate(gates):
        out.append("static const release_gate_spec gate_specs_%d[] = {" % i)
        prev = None
        for s in g.get("specs") or []:
            v = minor(s["version"], "%s %s" % (path, g["name"]))
            if prev is not None and v <= prev:
                fail("%s: %s: specs not in version order" % (path, g["name"]))
            prev = v
            if s["preRelease"] not in STAGES:
                fail("%s: %s: unknown stage %r" % (path, g["name"], s["preRelease"]))
            out.append("        { %s, %s, %s, %s }," % (c_minor(v), "true" if s["default"] else "false",
                                                       "true" if s.get("lockToDefault") else "false",
                                                       STAGES[s["preRelease"]]))
        out.append("        { { 0, 0 }, false, false, RELEASE_STAGE_ALPHA }, /* never empty */")
        out.append("};")
    out.append("const release_gate release_gates[] = {")
    for i, g in enumerate(gates):
        mask = 0
        for k in g["knownIn"]:
            m = minor(k, "%s %s knownIn" % (path, g["name"]))
            if m not in minors:
                fail("%s: %s: knownIn %s is outside the releases" % (path, g["name"], k))
            mask |= 1 << (m[1] - first)
        removed = minor(g["removedIn"], path) if g.get("removedIn") else (0, 0)
        out.append("        { %s, gate_specs_%d, %d, %s, 0x%xu, %s, %s }," % (
            c_str(g["name"]), i, len(g.get("specs") or []), "true" if g.get("specsPartial") else "false", mask,
            c_minor(removed), "false" if g.get("verified") is False else "true"))
    out.append("};")
    out.append("const size_t release_n_gates = %d;" % len(gates))


def main():
    if len(sys.argv) != 3:
        fail("usage: gen-release-data.py RELEASES_DIR OUTPUT.c")
    releases_dir, output = sys.argv[1], sys.argv[2]
    out = ["/* Generated by data/releases/tools/gen-release-data.py from data/releases/ (the YAML files): do not edit. */",
           "#include \"release-data.h\"", ""]
    minors = gen_releases(out, releases_dir)
    gen_removals(out, releases_dir)
    gen_gates(out, releases_dir, minors)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, output)


if __name__ == "__main__":
    main()
