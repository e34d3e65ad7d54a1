#!/usr/bin/env python3
"""Writes data/releases/flags-1.30.yaml .. flags-1.36.yaml.

Inputs (all in data/releases/pages/, each a flag list copied by hand from one page that the
search tool returned; SOURCES.md names every page and how it was dated):
  kube-scheduler-1.36.page.txt          English generated reference page, "--emulated-version ...
                                        kube=1.33..1.36(default:1.36)"
  kube-apiserver-1.35.page.txt          English generated reference page, "kube=1.32..1.35"
  kube-controller-manager-1.34.page.txt zh-tw page (English original kept in comments),
                                        "kube=1.31..1.34", cross-checked with the uk 1.35 page
  admission-1.35.page.txt               --admission-control list of the 1.35 apiserver page
  admission-1.36.plugins-go.txt         AllOrderedPlugins of pkg/kubeapiserver/options/plugins.go
                                        at kubernetes/kubernetes@008b3652959ca58af8be3fb5b6ecfe9ae7638282

Check pages (1.31 generated pages of all three, the 1.31 admission list, the 1.32 uk kube-scheduler page): the derived 1.31
lists are asserted against them (see CHECK below).

Every other release is derived from the nearest page by the additions and removals written
below, each with the changelog line it comes from. A flag added in a release whose changelog
part was not read stays in the older lists (so the older lists can hold a few flags too many,
never a removed one): that is why every list except the page releases says complete: false.

Run: python3 data/releases/derive-flags.py   (needs python3-yaml)
"""
import os
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K = "kubernetes/kubernetes"


def page(name):
    with open(os.path.join(HERE, "pages", name)) as f:
        return [l.strip() for l in f if l.strip()]


# Registered by k8s.io/component-base/logs/api/v1 only when the "json" format is linked in,
# which the cmd/ binaries do (import _ "k8s.io/component-base/logs/json/register"); the
# reference-doc generator does not link it, so the pages show only the text options.
JSON_LOG = ["log-json-info-buffer-size", "log-json-split-stream"]

C31 = f"{K}@1892e4deb967a2b39cfc2fea87a8bd49274449ef CHANGELOG/CHANGELOG-1.31.md"
C32 = f"{K}@030880a5dc5449403c6d1f0aa146a7dc21d6c6dc CHANGELOG/CHANGELOG-1.32.md"
C33 = f"{K}@2e94b405ac89f322d58dba55dae5e52a18f59778 CHANGELOG/CHANGELOG-1.33.md"
C34 = f"{K}@008b3652959ca58af8be3fb5b6ecfe9ae7638282 CHANGELOG/CHANGELOG-1.34.md"
C35 = f"{K}@008b3652959ca58af8be3fb5b6ecfe9ae7638282 CHANGELOG/CHANGELOG-1.35.md"
C36 = f"{K}@008b3652959ca58af8be3fb5b6ecfe9ae7638282 CHANGELOG/CHANGELOG-1.36.md"

# (release, component) -> flags added in that release (absent before it), with source.
ADDED = {
    ("1.30", "kube-controller-manager"): (["disable-force-detach-on-timeout"], f"{K}@03fe89c2339a1582733649faab5f5df471f65f09 CHANGELOG/CHANGELOG-1.30.md API Change #120344"),
    ("1.31", "all"): (["disable-http2-serving", "emulated-version"], f"disable-http2-serving: {C31} Feature #122176 (generic secure serving, all three read it); emulated-version: on the 1.31 generated pages of all three ('kube=1.31..1.31 (default=1.31)': find_string ids 660247849 apiserver, 173037830 controller-manager, 694276371 zh-cn scheduler)"),
    ("1.32", "kube-controller-manager"): (["concurrent-daemonset-syncs"], f"{C32} Feature #128444"),
    ("1.32", "all"): (["requestheader-uid-headers"], f"{C32} Feature #115834 (delegating and built-in request-header authentication)"),
    ("1.32", "kube-apiserver"): (["service-account-signing-endpoint"], f"{C32} Feature #128190"),
    ("1.33", "kube-apiserver"): (["emulation-forward-compatible", "runtime-config-emulation-forward-compatible"], f"{C33} Feature #130354"),
    ("1.34", "kube-apiserver"): (["coordinated-leadership-lease-duration", "coordinated-leadership-renew-deadline", "coordinated-leadership-retry-period"], f"{C34} Feature #132433 'Added configurable flags to kube-apiserver for coordinated leader election'"),
    ("1.35", "all"): (["min-compatibility-version"], f"{C35} API Change #133980"),
    ("1.35", "kube-controller-manager"): (["concurrent-device-taint-eviction-syncs", "controller-shutdown-timeout"], "absent from the 1.34 zh-tw page, present on the 1.35 uk page (find_string ids 7822693472 / 8038890296)"),
    ("1.36", "all"): (["tls-curve-preferences"], f"{C36} API Change #137115; on the 1.36 kube-scheduler page"),
    ("1.36", "kube-controller-manager"): (["concurrent-resourceclaim-syncs"], f"{C36} API Change #134701"),
}

# Flags removed in a release: they are in every list before it (from removed-flags.yaml).
with open(os.path.join(HERE, "removed-flags.yaml")) as f:
    REMOVED = [e for e in yaml.safe_load(f) if "flag" in e]

RELEASES = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36"]
COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
PAGE = {
    "kube-apiserver": ("1.35", page("kube-apiserver-1.35.page.txt")),
    "kube-controller-manager": ("1.34", page("kube-controller-manager-1.34.page.txt")),
    "kube-scheduler": ("1.36", page("kube-scheduler-1.36.page.txt")),
}
PAGE_SOURCE = {
    "kube-apiserver": "kubernetes/website content/en/docs/reference/command-line-tools-reference/kube-apiserver.md, stored version find_string id 1424424734 (generated page of the 1.35 binary: --emulated-version 'kube=1.32..1.35(default:1.35)')",
    "kube-controller-manager": "kubernetes/website content/zh-tw/.../kube-controller-manager.md, stored version find_string id 7822693472 (1.34 generated page kept as English comments, 'kube=1.31..1.34'); cross-checked with content/uk/... id 8038890296 (1.35)",
    "kube-scheduler": "kubernetes/website content/en/docs/reference/command-line-tools-reference/kube-scheduler.md, stored version find_string id 52070109846 (generated page of the 1.36 binary: 'kube=1.33..1.36(default:1.36)')",
}


RELEASES_INDEX = {r: i for i, r in enumerate(RELEASES)}


def added_in(comp):
    out = {}
    for (r, c), (flags, _) in ADDED.items():
        if c in (comp, "all"):
            for fl in flags:
                out[fl] = r
    return out


def flags_for(comp, release):
    base_rel, base = PAGE[comp]
    s = set(base) | set(JSON_LOG)
    added = added_in(comp)
    ri, bi = RELEASES_INDEX[release], RELEASES_INDEX[base_rel]
    for fl, r in added.items():
        ai = RELEASES_INDEX[r]
        if ri < ai:
            s.discard(fl)          # added after this release
        elif ri >= ai and bi < ai:
            s.add(fl)              # added after the page's release, present here
    for e in REMOVED:
        if e["component"] != comp:
            continue
        ri_rm = RELEASES_INDEX.get(e["removedIn"])
        if ri_rm is None:
            continue
        if ri < ri_rm:
            s.add(e["flag"])       # still present before its removal
        else:
            s.discard(e["flag"])
    return sorted(s)


DEPRECATED = {
    "kube-apiserver": [
        ({"flag": "admission-control", "message": "DEPRECATED: Use --enable-admission-plugins or --disable-admission-plugins instead. Will be removed in a future version."}, RELEASES, "help text on the 1.35 page; same text in a v1.33.0 'kube-apiserver -h' output (find_string id 15569837947)"),
        ({"flag": "enable-logs-handler", "message": "DEPRECATED: Log handler functionality is deprecated (CHANGELOG-1.31 #125787: switched off by default, scheduled to be removed in v1.33; still registered on the 1.35 page)"}, RELEASES, "1.35 page help text"),
        ({"flag": "cloud-provider", "message": "deprecated; removed in 1.33 (CHANGELOG-1.33 #130162). Help text of 1.30-1.32 not read"}, ["1.30", "1.31", "1.32"], C33),
        ({"flag": "cloud-config", "message": "deprecated; removed in 1.33 (CHANGELOG-1.33 #130162). Help text of 1.30-1.32 not read"}, ["1.30", "1.31", "1.32"], C33),
        ({"flag": "cloud-provider-gce-lb-src-cidrs", "message": "This flag will be removed once the GCE Cloud Provider is removed from kube-apiserver"}, ["1.30"], f"{K}@33989170827d12dff81743df1244d48c18b83b80 cmd/kube-apiserver/app/options/globalflags_providers.go (MarkDeprecated)"),
    ],
    "kube-controller-manager": [
        ({"flag": "horizontal-pod-autoscaler-upscale-delay", "message": "deprecated and non-functional since v1.12 (CHANGELOG-1.31 #124948); removed in 1.31"}, ["1.30"], C31),
        ({"flag": "horizontal-pod-autoscaler-downscale-delay", "message": "deprecated and non-functional since v1.12 (CHANGELOG-1.31 #124948); removed in 1.31"}, ["1.30"], C31),
        ({"flag": "volume-host-cidr-denylist", "message": "deprecated; removed in 1.31 (CHANGELOG-1.31 #124017)"}, ["1.30"], C31),
        ({"flag": "volume-host-allow-local-loopback", "message": "deprecated; removed in 1.31 (CHANGELOG-1.31 #124017)"}, ["1.30"], C31),
    ],
    "kube-scheduler": [
        ({"flag": f, "message": "DEPRECATED: ... This parameter is ignored if a config file is specified in --config."}, RELEASES, "1.36 page help text")
        for f in ["contention-profiling", "kube-api-burst", "kube-api-content-type", "kube-api-qps", "kubeconfig", "profiling"]
    ] + [
        ({"flag": "pod-max-in-unschedulable-pods-duration", "message": "DEPRECATED: the maximum time a pod can stay in unschedulablePods. ... This flag is deprecated and will be removed in a future version."}, RELEASES, "1.36 page help text"),
    ],
}

ADMISSION_35 = page("admission-1.35.page.txt")
ADMISSION_36 = page("admission-1.36.plugins-go.txt")


def admission_for(release):
    if release == "1.36":
        return sorted(ADMISSION_36), (f"{K}@008b3652959ca58af8be3fb5b6ecfe9ae7638282 pkg/kubeapiserver/options/plugins.go AllOrderedPlugins "
                                      "(master at the v1.36.0 changelog commit; PodGroupWorkloadExists #137464 and PodGroupProtection #137641 "
                                      "are in CHANGELOG-1.36, JobValidation and PodResizeValidator are not named there)")
    s = set(ADMISSION_35)
    note = ["1.35 apiserver page --admission-control list (find_string id 1424424734)"]
    if RELEASES_INDEX[release] < RELEASES_INDEX["1.35"]:
        s.discard("NodeDeclaredFeatureValidator")
        note.append("minus NodeDeclaredFeatureValidator (CHANGELOG-1.35 #133389; absent from the 1.34 zh-tw page and from a v1.33.0 'kube-apiserver -h' output)")
    if RELEASES_INDEX[release] < RELEASES_INDEX["1.33"]:
        s.discard("PodTopologyLabels")
        note.append("minus PodTopologyLabels (CHANGELOG-1.33 #127092)")
    if RELEASES_INDEX[release] < RELEASES_INDEX["1.32"]:
        s.discard("MutatingAdmissionPolicy")
        note.append("minus MutatingAdmissionPolicy (CHANGELOG-1.32 #127134, v1alpha1 introduced)")
    if release == "1.31":
        assert s == set(page("admission-1.31.page.txt")), "1.31 admission list differs from the 1.31 page"
        note.append("identical to the --enable-admission-plugins list of the 1.31 kube-apiserver page (find_string id 660247849)")
    if release == "1.30":
        s.add("PersistentVolumeLabel")
        note.append("plus PersistentVolumeLabel (removed in 1.31, CHANGELOG-1.31 #124505)")
    return sorted(s), "; ".join(note)


# Pages of other releases used only to check the derived lists. A derived flag missing from such
# a page must be one that pflag hides (MarkDeprecated) or the JSON log flags; a page flag missing
# from the derived list must be a known stale translation row.
CHECK = {
    ("1.31", "kube-apiserver"): ("kube-apiserver-1.31.page.txt", "English kube-apiserver page of the 1.31 binary, find_string id 660247849 ('kube=1.31..1.31 (default=1.31)')"),
    ("1.31", "kube-controller-manager"): ("kube-controller-manager-1.31.page.txt", "English kube-controller-manager page of the 1.31 binary, find_string id 173037830 ('kube=1.31..1.31 (default=1.31)')"),
    ("1.31", "kube-scheduler"): ("kube-scheduler-1.31.zh-cn.page.txt", "zh-cn kube-scheduler page with English originals in comments, find_string id 694276371 ('kube=1.31..1.31 (default=1.31)')"),
    ("1.32", "kube-scheduler"): ("kube-scheduler-1.32.uk.page.txt", "uk kube-scheduler page (flag names and defaults untranslated), find_string id 19398381754 ('kube=1.32..1.32 (default=1.32)')"),
}
HIDDEN_OK = {"admission-control", "cloud-config", "cloud-provider", "enable-logs-handler"} | set(JSON_LOG)
STALE_OK = {"logtostderr"}   # klog flag long gone from the components; left over in the zh-cn translation


def check(comp, release, flags):
    if (release, comp) not in CHECK:
        return None
    name, desc = CHECK[(release, comp)]
    p = set(page(name))
    extra, missing = set(flags) - p, p - set(flags)
    assert extra <= HIDDEN_OK, (comp, release, "derived but not on page", sorted(extra - HIDDEN_OK))
    assert missing <= STALE_OK, (comp, release, "on page but not derived", sorted(missing - STALE_OK))
    note = f"checked against the {desc}: identical"
    if extra:
        note += f" except {', '.join(sorted(extra))} (not shown on the page: hidden deprecated flags / JSON log flags)"
    if missing:
        note += f"; the page's {', '.join(sorted(missing))} is a stale translation row, not a flag of the binary"
    return note


def component_source(comp, release):
    base_rel, _ = PAGE[comp]
    parts = [PAGE_SOURCE[comp]]
    if release != base_rel:
        parts.append(f"derived to {release} with the additions/removals listed in derive-flags.py ADDED and removed-flags.yaml")
    c = check(comp, release, flags_for(comp, release))
    if c:
        parts.append(c)
    parts.append("plus log-json-info-buffer-size/log-json-split-stream (registered when the JSON log format is linked, as in the released binaries)")
    return "; ".join(parts)


def main():
    for r in RELEASES:
        comps = {}
        for c in COMPONENTS:
            dep = [d for d, rels, _ in DEPRECATED[c] if r in rels]
            fl = flags_for(c, r)
            dep = [d for d in dep if d["flag"] in fl]
            comps[c] = {
                "source": component_source(c, r),
                "complete": False,
                "flags": fl,
                "deprecated": dep,
            }
        plugins, psrc = admission_for(r)
        doc = {"release": r, "components": comps,
               "admissionPlugins": {"source": psrc, "plugins": plugins}}
        path = os.path.join(HERE, f"flags-{r}.yaml")
        with open(path, "w") as f:
            f.write(f"# Flags that kube-apiserver, kube-controller-manager and kube-scheduler {r} register, and the\n"
                    f"# admission plugin names of kube-apiserver {r}. Written by data/releases/derive-flags.py from the\n"
                    "# pages in data/releases/pages/ (see SOURCES.md for every page, commit and how complete it is).\n"
                    "# complete: false everywhere: the lists come from generated reference pages (flags hidden with\n"
                    "# pflag MarkDeprecated/MarkHidden are not shown there) and, for other releases, are derived by\n"
                    "# changelog additions and removals; removals are sourced, additions may be missing.\n")
            yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=100000, allow_unicode=True)
        print(path, {c: len(comps[c]["flags"]) for c in COMPONENTS}, len(plugins))


if __name__ == "__main__":
    main()
