#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fake kube-apiserver / kube-controller-manager / kube-scheduler for cplet's simulated node.

Run through the wrappers in tests/sim/bin/ (their basename is the component name), or as
`fake_component.py --component NAME ...`. Behaviour follows ../shared/FACTS.md:

  * binary version = tag of the image in $CPLET_SIM_IMAGE (the kubelet sets it);
  * pflag's flag parsing as the binaries set it up (`--k=v`, `--k v`, bool flags, `_` = `-`,
    -v/-h shorthands): a flag the binary does not register (REGISTERED and the release's list
    in data/releases, the compatibility flags only from the versions in FACTS.md, the flags
    data/releases/removed-flags.yaml says the release removed) exits with the usage and
    `Error: unknown flag: --NAME`;
  * the feature gates and admission plugins the release removed or locks, as
    data/releases says (RELEASE DATA below);
  * the validation rules and error texts of component-base (cobra prints `Error: ...`,
    exit 1);
  * HTTPS on --secure-port / --bind-address with the cert in $CPLET_SIM_CERT_DIR;
    /livez /readyz /healthz (controller-manager: /healthz only), apiserver /version;
  * kube-apiserver authentication as its flags say (see AUTHENTICATION below):
    --client-ca-file (x509 client certificates: user = CN, groups = O), --anonymous-auth,
    --authentication-config (AuthenticationConfiguration's `anonymous`: enabled, conditions);
    a request no authenticator accepts gets the real 401 Status;
  * knobs from the JSON file $CPLET_SIM_KNOBS, read at start:
      {"default": {...},                       # every component
       "kube-apiserver": {...,                 # this component
           "versions": {"v1.35": {...}, "v1.35.0": {...}}}}   # this binary minor / tag
    later layers win. Keys: startupDelay (s; the port is open at once, health 500 until
    then, counted from process start), neverReady (/readyz /healthz stay 500, /livez ok),
    crashAfter (s, then exit), failVersions (["v1.35.0" or "v1.35"]: exit at start),
    failEmulated (["1.35"]: exit at start when emulating that), exitMessage, exitCode
    (default 1), termDelay (s between SIGTERM and exit, /readyz 500 meanwhile),
    ignoreSigterm (only SIGKILL ends it).

  * kube-controller-manager and kube-scheduler with a --kubeconfig that exists (under the
    node's root $CPLET_SIM_NODE, else as given) and --leader-elect not false: the leader-election
    Lease kube-system/<component>, renewed as client-go does (leader_election.py; the
    --leader-elect-* flags); the leader that cannot renew within the renew deadline exits 1
    ("leaderelection lost"). A --kubeconfig that is not there: no API (the real binary exits).

Kept free of heavy imports: process start to a listening socket is on the critical path of
every simulated restart.
"""

import json
import os
import re
import signal
import socket
import sys
import threading
import time

T0 = time.monotonic()


def _process_start_boottime():
    """This process's start on CLOCK_BOOTTIME (from /proc/self/stat), or None."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


_START_BT = _process_start_boottime()


def uptime():
    """Seconds since this process started (exec of the interpreter)."""
    if _START_BT is not None:
        el = time.clock_gettime(time.CLOCK_BOOTTIME) - _START_BT
        if 0 <= el < 1e7:
            return el
    return time.monotonic() - T0

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
DEFAULT_PORTS = {"kube-apiserver": 6443, "kube-controller-manager": 10257, "kube-scheduler": 10259}
# flag -> (components that have it, first binary minor (1.x) that has it)
COMPAT_FLAGS = {
    "emulated-version": (COMPONENTS, 31),
    "min-compatibility-version": (COMPONENTS, 35),
    "emulation-forward-compatible": (("kube-apiserver",), 33),
    "runtime-config-emulation-forward-compatible": (("kube-apiserver",), 33),
}
# The flags each binary registers (besides COMPAT_FLAGS), as its --help lists them for the
# releases the simulator runs (1.30 on): at least every flag of the manifests in
# tests/data/fixtures, examples/ and the tests. pflag refuses anything else with
# "unknown flag: --NAME".
_GENERIC = """
    v vmodule log-flush-frequency logging-format log-json-info-buffer-size log-json-split-stream
    log-text-info-buffer-size log-text-split-stream help version feature-gates
    bind-address cert-dir http2-max-streams-per-connection permit-address-sharing
    permit-port-sharing secure-port tls-cert-file tls-cipher-suites tls-min-version
    tls-private-key-file tls-sni-cert-key profiling contention-profiling
    show-hidden-metrics-for-version allow-metric-labels allow-metric-labels-manifest disabled-metrics
    client-ca-file requestheader-allowed-names requestheader-client-ca-file
    requestheader-extra-headers-prefix requestheader-group-headers requestheader-username-headers
    requestheader-uid-headers
"""
_DELEGATED = """
    authentication-kubeconfig authentication-skip-lookup authentication-token-webhook-cache-ttl
    authentication-tolerate-lookup-failure authorization-always-allow-paths authorization-kubeconfig
    authorization-webhook-cache-authorized-ttl authorization-webhook-cache-unauthorized-ttl
    kubeconfig master kube-api-burst kube-api-content-type kube-api-qps
    leader-elect leader-elect-lease-duration leader-elect-renew-deadline leader-elect-resource-lock
    leader-elect-resource-name leader-elect-resource-namespace leader-elect-retry-period
"""
REGISTERED = {
    "kube-apiserver": set((_GENERIC + """
        admission-control admission-control-config-file advertise-address
        aggregator-reject-forwarding-redirect allow-privileged anonymous-auth api-audiences
        audit-log-batch-buffer-size audit-log-batch-max-size audit-log-batch-max-wait
        audit-log-batch-throttle-burst audit-log-batch-throttle-enable audit-log-batch-throttle-qps
        audit-log-compress audit-log-format audit-log-maxage audit-log-maxbackup audit-log-maxsize
        audit-log-mode audit-log-path audit-log-truncate-enabled audit-log-truncate-max-batch-size
        audit-log-truncate-max-event-size audit-log-version audit-policy-file
        audit-webhook-batch-buffer-size audit-webhook-batch-max-size audit-webhook-batch-max-wait
        audit-webhook-batch-throttle-burst audit-webhook-batch-throttle-enable
        audit-webhook-batch-throttle-qps audit-webhook-config-file audit-webhook-initial-backoff
        audit-webhook-mode audit-webhook-truncate-enabled audit-webhook-truncate-max-batch-size
        audit-webhook-truncate-max-event-size audit-webhook-version authentication-config
        authentication-token-webhook-cache-ttl authentication-token-webhook-config-file
        authentication-token-webhook-version authorization-config authorization-mode
        authorization-policy-file authorization-webhook-cache-authorized-ttl
        authorization-webhook-cache-unauthorized-ttl authorization-webhook-config-file
        authorization-webhook-version cloud-config cloud-provider cors-allowed-origins
        debug-socket-path default-not-ready-toleration-seconds default-unreachable-toleration-seconds
        default-watch-cache-size delete-collection-workers disable-admission-plugins
        egress-selector-config-file enable-admission-plugins enable-aggregator-routing
        enable-bootstrap-token-auth enable-garbage-collector enable-logs-handler
        enable-priority-and-fairness encryption-provider-config
        encryption-provider-config-automatic-reload endpoint-reconciler-type etcd-cafile
        etcd-certfile etcd-compaction-interval etcd-count-metric-poll-period
        etcd-db-metric-poll-interval etcd-healthcheck-timeout etcd-keyfile etcd-prefix
        etcd-readycheck-timeout etcd-servers etcd-servers-overrides event-ttl external-hostname
        goaway-chance kubelet-certificate-authority kubelet-client-certificate kubelet-client-key
        kubelet-preferred-address-types kubelet-timeout lease-reuse-duration-seconds livez-grace-period
        max-connection-bytes-per-sec max-mutating-requests-inflight max-requests-inflight
        min-request-timeout oidc-ca-file oidc-client-id oidc-groups-claim oidc-groups-prefix
        oidc-issuer-url oidc-required-claim oidc-signing-algs oidc-username-claim
        oidc-username-prefix peer-advertise-ip peer-advertise-port peer-ca-file
        proxy-client-cert-file proxy-client-key-file request-timeout runtime-config
        service-account-extend-token-expiration service-account-issuer service-account-jwks-uri
        service-account-key-file service-account-lookup service-account-max-token-expiration
        service-account-signing-endpoint service-account-signing-key-file service-cluster-ip-range
        service-node-port-range shutdown-delay-duration shutdown-send-retry-after
        shutdown-watch-termination-grace-period storage-backend storage-initialization-timeout
        storage-media-type strict-transport-security-directives token-auth-file tracing-config-file
        watch-cache watch-cache-sizes
    """).split()),
    "kube-controller-manager": set((_GENERIC + _DELEGATED + """
        allocate-node-cidrs attach-detach-reconcile-sync-period cidr-allocator-type cloud-config
        cloud-provider cluster-cidr cluster-name cluster-signing-cert-file cluster-signing-duration
        cluster-signing-key-file concurrent-deployment-syncs concurrent-endpoint-syncs
        concurrent-gc-syncs concurrent-namespace-syncs concurrent-replicaset-syncs
        concurrent-service-syncs configure-cloud-routes controller-start-interval controllers
        disable-attach-detach-reconcile-sync enable-dynamic-provisioning enable-garbage-collector
        enable-hostpath-provisioner horizontal-pod-autoscaler-sync-period large-cluster-size-threshold
        node-cidr-mask-size node-cidr-mask-size-ipv4 node-cidr-mask-size-ipv6 node-eviction-rate
        node-monitor-grace-period node-monitor-period node-startup-grace-period
        pv-recycler-pod-template-filepath-hostpath pvclaimbinder-sync-period root-ca-file
        service-account-private-key-file service-cluster-ip-range terminated-pod-gc-threshold
        use-service-account-credentials
    """).split()),
    "kube-scheduler": set((_GENERIC + _DELEGATED + """
        config write-config-to pod-max-in-unschedulable-pods-duration
    """).split()),
}
# Flags that take no argument (pflag NoOptDefVal): `--name` alone is true; `--name=false` works.
BOOL_FLAGS = set("""
    emulation-forward-compatible runtime-config-emulation-forward-compatible help
    allocate-node-cidrs allow-privileged anonymous-auth audit-log-compress
    audit-log-batch-throttle-enable audit-log-truncate-enabled audit-webhook-batch-throttle-enable
    audit-webhook-truncate-enabled authentication-skip-lookup authentication-tolerate-lookup-failure
    configure-cloud-routes contention-profiling disable-attach-detach-reconcile-sync
    enable-aggregator-routing enable-bootstrap-token-auth enable-dynamic-provisioning
    enable-garbage-collector enable-hostpath-provisioner enable-logs-handler
    enable-priority-and-fairness encryption-provider-config-automatic-reload leader-elect
    log-json-split-stream log-text-split-stream permit-address-sharing permit-port-sharing
    profiling service-account-extend-token-expiration service-account-lookup
    use-service-account-credentials watch-cache
""".split())
# --version is a tristate: alone it prints the version, or --version=raw / =false.
OPTIONAL_VALUE_FLAGS = {"version"}
VALUE_FLAGS = {"emulated-version", "min-compatibility-version", "secure-port", "bind-address",
               "client-ca-file", "authentication-config", "feature-gates",
               # leader election (tests/sim/leader_election.py)
               "kubeconfig", "leader-elect-lease-duration", "leader-elect-renew-deadline",
               "leader-elect-retry-period", "leader-elect-resource-name",
               "leader-elect-resource-namespace", "leader-elect-resource-lock"}
# --feature-gates is a map flag: repeated flags and comma-separated pairs accumulate.
SLICE_FLAGS = {"emulated-version", "min-compatibility-version", "feature-gates",
               "enable-admission-plugins", "disable-admission-plugins", "admission-control"}
# klog's -v is the one shorthand (a one-letter Go flag); -h is cobra's help.
SHORTHANDS = {"v": "v", "h": "help"}


class Fatal(Exception):
    """Exit 1 after printing `Error: <message>` (what cobra does with RunE errors)."""


class FlagError(Fatal):
    """A flag parsing error: cobra prints the usage first (the kube commands' FlagErrorFunc turns
    it back on), then `Error: <message>`."""


# --------------------------------------------------------------------------------------
# Versions, printed the way k8s.io/apimachinery/pkg/util/version prints them
# --------------------------------------------------------------------------------------

class GoVersion:
    def __init__(self, *parts):
        self.parts = tuple(int(p) for p in parts)

    @property
    def major(self):
        return self.parts[0]

    @property
    def minor(self):
        return self.parts[1]

    @property
    def patch(self):
        return self.parts[2] if len(self.parts) > 2 else 0

    def mm(self):
        return (self.parts[0], self.parts[1])

    def key(self):
        return self.parts + (0,) * (4 - len(self.parts))

    def __lt__(self, other):
        return self.key() < other.key()

    def __gt__(self, other):
        return self.key() > other.key()

    def __eq__(self, other):
        return isinstance(other, GoVersion) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __str__(self):
        return ".".join(str(p) for p in self.parts)

    def sub_minor(self, n):
        return GoVersion(self.parts[0], self.parts[1] - n, *self.parts[2:])

    def major_minor(self):
        return GoVersion(self.parts[0], self.parts[1])


def parse_generic(text):
    """version.Parse: optional leading v, at least major.minor, digits only."""
    m = re.fullmatch(r"\s*v?([0-9]+(?:\.[0-9]+)+)\s*", text)
    if not m:
        raise Fatal('illegal version string "%s"' % text)
    return GoVersion(*m.group(1).split("."))


IMAGE_TAG_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)([-+][0-9A-Za-z.+-]*)?$")


def binary_version_from_image(image):
    """Returns (GoVersion(major, minor, patch), gitVersion) from an image reference."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon <= slash:
        raise Fatal("cannot determine the binary version: image %r has no tag" % image)
    tag = ref[colon + 1:]
    m = IMAGE_TAG_RE.match(tag)
    if not m:
        raise Fatal("cannot determine the binary version from image tag %r" % tag)
    git_version = tag if tag.startswith("v") else "v" + tag
    return GoVersion(m.group(1), m.group(2), m.group(3)), git_version


def to_version_map(values):
    """component-base compatibility toVersionMap()."""
    out = {}
    for comp_ver in values:
        k, v = "kube", comp_ver
        if "=" in comp_ver:
            k, v = comp_ver.split("=", 1)
            k, v = k.strip(), v.strip()
        ver = parse_generic(v)
        if ver.patch != 0:
            raise Fatal("patch version not allowed, got: %s=%s" % (k, ver))
        if k in out:
            raise Fatal("duplicate version flag, %s=%s and %s=%s" % (k, out[k], k, ver))
        out[k] = ver
    for k in out:
        if k != "kube":
            raise Fatal("component not registered: %s" % k)
    return out


# --------------------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------------------

def parse_bool(name, value):
    v = value.strip()
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise FlagError('invalid argument "%s" for "--%s" flag: strconv.ParseBool: parsing "%s": '
                    "invalid syntax" % (value, name, value))


def normalize(name):
    """cliflag.WordSepNormalizeFunc: "_" and "-" are the same word separator."""
    return name.replace("_", "-")


def known_flag(component, binary, name, data=None):
    if name in COMPAT_FLAGS:
        who, since = COMPAT_FLAGS[name]
        return component in who and binary.mm() >= (1, since)
    removed = removed_flag_minor(data, component, name)
    if removed is not None:
        # registered by every release before the one that removed it (release data)
        return binary.mm() < (1, removed)
    if name in REGISTERED[component]:
        return True
    # the release's own list (flags-1.3x.yaml); such a flag takes a value (--name=value or
    # --name value): the lists do not say which flags are bool
    return bool(data) and binary.major == 1 and name in (
        ((data.get("registered") or {}).get(component) or {}).get(str(binary.minor)) or ())


def parse_flags(component, binary, argv, data=None):
    """pflag's parsing as the kube binaries configure it. Returns {name: [values]} for the flags
    the fake cares about; raises FlagError with pflag's message (Fatal with cobra's) otherwise.
    data: the release data (removed flags; the 1.30 feature gates, checked while parsing)."""
    flags = {}
    positional = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            positional += argv[i:]
            break
        if not a.startswith("-") or a == "-":
            positional.append(a)
            continue
        if not a.startswith("--"):
            # shorthand(s): -v=4, -v 4, -h
            short = a[1:2]
            if short not in SHORTHANDS:
                raise FlagError("unknown shorthand flag: '%s' in %s" % (short, a))
            name, rest = SHORTHANDS[short], a[2:]
            if name in BOOL_FLAGS:
                continue
            if rest.startswith("="):
                rest = rest[1:]
            if rest == "":
                if i >= len(argv):
                    raise FlagError("flag needs an argument: '%s' in -%s" % (short, short))
                i += 1
            continue
        body = a[2:]
        if body.startswith("-") or body.startswith("="):
            raise FlagError("bad flag syntax: %s" % a)
        if "=" in body:
            raw, value = body.split("=", 1)
            has_value = True
        else:
            raw, value, has_value = body, None, False
        name = normalize(raw)
        if not known_flag(component, binary, name, data):
            raise FlagError("unknown flag: --%s" % raw)
        if name in BOOL_FLAGS:
            flags.setdefault(name, []).append(parse_bool(raw, value) if has_value else True)
            continue
        if name in OPTIONAL_VALUE_FLAGS:
            continue
        if not has_value:
            if i >= len(argv):
                raise FlagError("flag needs an argument: --%s" % raw)
            value = argv[i]  # pflag takes the next word, whatever it looks like
            i += 1
        if name == "feature-gates" and binary.mm() < (1, 31):
            check_gates_flag_130(data, binary, value)
        if name in SLICE_FLAGS:
            # StringSlice: comma separated, repeated flags accumulate, "" means none
            flags.setdefault(name, []).extend(x for x in value.split(",") if x != "")
        elif name in VALUE_FLAGS:
            flags[name] = [value]
    if any(positional):
        # the kube commands' Args check
        raise Fatal('"%s" does not take any arguments, got [%s]'
                    % (component, " ".join('"%s"' % p for p in positional)))
    return flags


# --------------------------------------------------------------------------------------
# Effective versions (FACTS.md "Allowed values")
# --------------------------------------------------------------------------------------

def effective_versions(component, binary, flags):
    """Returns (emulated, min_compat, errors) with GoVersion values printed like Go."""
    binmm = binary.mm()
    binp0 = GoVersion(binary.major, binary.minor, 0)
    ev_map = to_version_map(flags.get("emulated-version", []))
    mc_map = to_version_map(flags.get("min-compatibility-version", []))
    emulated = ev_map.get("kube", binary.major_minor())
    errors = []
    if binmm < (1, 31):
        return binary.major_minor(), binary.major_minor().sub_minor(1), errors
    if binmm == (1, 31):
        lo, hi = GoVersion(1, 31), binp0
        min_compat = emulated.sub_minor(1)
    elif binmm == (1, 32):
        lo, hi = binp0.sub_minor(1), binp0
        min_compat = GoVersion(1, 31)
    else:
        floor = binp0.sub_minor(3)
        if floor < GoVersion(1, 31):
            floor = GoVersion(1, 31)
        lo, hi = floor, binp0
        min_compat = emulated.sub_minor(1)
        if min_compat < floor:
            min_compat = floor
    if "kube" in mc_map:
        min_compat = mc_map["kube"]
    if emulated > hi or emulated < lo:
        errors.append("emulation version %s is not between [%s, %s]" % (emulated, lo, hi))
    if binmm >= (1, 35) and (min_compat > emulated or min_compat < lo):
        errors.append("minCompatibilityVersion version %s is not between [%s, %s]"
                      % (min_compat, lo, emulated))
    if component == "kube-apiserver" and binmm >= (1, 33):
        not_emulating = emulated.mm() == binmm
        if not_emulating and any(flags.get("emulation-forward-compatible", [])[-1:]):
            errors.append("ServerRunOptions.EmulationForwardCompatible cannot be set to true if "
                          "the emulation version is the same as the binary version")
        if not_emulating and any(flags.get("runtime-config-emulation-forward-compatible", [])[-1:]):
            errors.append("ServerRunOptions.RuntimeConfigEmulationForwardCompatible cannot be set "
                          "to true if the emulation version is the same as the binary version")
    return emulated, min_compat, errors


def aggregate(errors):
    """k8s.io/apimachinery utilerrors.NewAggregate(...).Error()"""
    seen = []
    for e in errors:
        if e not in seen:
            seen.append(e)
    return seen[0] if len(seen) == 1 else "[" + ", ".join(seen) + "]"


# --------------------------------------------------------------------------------------
# RELEASE DATA: what each release removed, as data/releases/ records it (the same files
# cplet's preflight is built from; $CPLET_RELEASE_DATA names another directory).
#
#   * removed-flags.yaml: a flag whose removedIn <= the binary's minor is not registered
#     (pflag: `Error: unknown flag: --NAME`); before that release it is (even when REGISTERED
#     lacks it). An admission plugin whose removedIn <= the binary's minor is not registered
#     either: kube-apiserver's option validation refuses it (`enable-admission-plugins plugin
#     "X" is unknown`, same for disable-admission-plugins and admission-control).
#   * flags-1.3x.yaml: a flag of the binary's minor's list is registered (besides REGISTERED).
#   * feature-gates.yaml, for the binaries of the minors it covers (others are not checked):
#     a gate the data knows but not in the binary's minor (knownIn) is `unrecognized feature
#     gate: X` whatever the emulated version; a gate locked (lockToDefault) in the spec in force
#     at the emulated version refuses the other value (`cannot set feature gate X to V, feature
#     is locked to D`); from 1.31 a gate whose first spec is newer than the emulated version is
#     PreAlpha (`... feature is PreAlpha at emulated version E`).
#   * A flag, gate or plugin the data does not name is accepted: the lists are incomplete
#     (data/releases/SOURCES.md), and a fake that refused what the real binary takes would make
#     cplet's tests prove nothing.
#
# Where the errors come from (component-base cli/run.go: before logging is set up cobra prints
# the usage and cli.Run prints `Error: <err>`; after it, klog `"command failed" err=...`; exit 1
# either way): unknown flags are pflag's; the 1.30 feature gate is a pflag value, its errors are
# pflag's `invalid argument "<value>" for "--feature-gates" flag: <err>`; from 1.31 the gates are
# set by the component-globals registry after logging starts, and the admission plugins are
# checked by the options' Validate() in RunE: klog lines.
#
# Parsing the YAML costs more than a simulated restart should (the crash sweep restarts the
# fakes thousands of times), so the parsed data is kept as JSON in a per-user cache keyed by the
# files' paths, sizes and modification times.
# --------------------------------------------------------------------------------------

RELEASE_DATA_FILES = ("removed-flags.yaml", "feature-gates.yaml") + tuple(
    "flags-1.%d.yaml" % m for m in range(30, 37))
RELEASE_CACHE_FORMAT = 2


def release_data_dir():
    """($CPLET_RELEASE_DATA or the repository's data/releases, whether it was named)."""
    named = os.environ.get("CPLET_RELEASE_DATA")
    if named:
        return named, True
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    return os.path.join(repo, "data", "releases"), False


def _minor_of(text):
    """"1.33" -> 33 (major 1 only; the data has no other)."""
    major, minor = str(text).split(".")[:2]
    if int(major) != 1:
        raise ValueError("major version %s" % major)
    return int(minor)


def parse_release_data(directory):
    """The YAML files -> the compact form the fake uses (JSON-serialisable)."""
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(os.path.join(directory, "removed-flags.yaml"), encoding="utf-8") as f:
        removed = yaml.load(f, Loader=loader) or []
    with open(os.path.join(directory, "feature-gates.yaml"), encoding="utf-8") as f:
        gates_doc = yaml.load(f, Loader=loader) or {}
    flags, plugins = {}, {}
    for e in removed:
        minor = _minor_of(e["removedIn"])
        if e.get("flag"):
            flags.setdefault(e["component"], {})[normalize(e["flag"])] = minor
        if e.get("admissionPlugin"):
            plugins[e["admissionPlugin"]] = minor
    gates = {}
    minors = set()
    for g in gates_doc.get("gates") or []:
        known = sorted(_minor_of(m) for m in g.get("knownIn") or [])
        minors.update(known)
        specs = []
        for sp in g.get("specs") or []:
            major, minor = (int(x) for x in str(sp["version"]).split(".")[:2])
            specs.append([major, minor, bool(sp.get("default")), bool(sp.get("lockToDefault")),
                          str(sp.get("preRelease") or "")])
        specs.sort(key=lambda x: (x[0], x[1]))
        gates[g["name"]] = {"known": known, "specs": specs, "partial": bool(g.get("specsPartial"))}
    for m in (gates_doc.get("sources") or {}):
        minors.add(_minor_of(m))
    registered = {}
    for m in range(30, 37):
        with open(os.path.join(directory, "flags-1.%d.yaml" % m), encoding="utf-8") as f:
            doc = yaml.load(f, Loader=loader) or {}
        for comp, c in (doc.get("components") or {}).items():
            registered.setdefault(comp, {})[str(m)] = sorted(normalize(x) for x in c.get("flags") or [])
    return {"format": RELEASE_CACHE_FORMAT, "flags": flags, "plugins": plugins, "gates": gates,
            "minors": sorted(minors), "registered": registered}


def load_release_data():
    """The release data (cached), or None (with a warning line) when the default directory is
    not there; a directory named by $CPLET_RELEASE_DATA that cannot be read is a Fatal."""
    directory, named = release_data_dir()
    try:
        stats = [os.stat(os.path.join(directory, n)) for n in RELEASE_DATA_FILES]
    except OSError as e:
        if named:
            raise Fatal("CPLET_RELEASE_DATA=%s: %s" % (directory, e))
        sys.stderr.write("W fake: no release data at %s (%s): removed flags, gates and admission "
                         "plugins are not checked\n" % (directory, e.strerror or e))
        return None
    import binascii  # not hashlib: its import (OpenSSL) costs more than the whole cache read
    ident = json.dumps([RELEASE_CACHE_FORMAT, os.path.realpath(directory)]
                       + [[st.st_size, st.st_mtime_ns, st.st_ino] for st in stats]).encode()
    key = "%08x%08x" % (binascii.crc32(ident), binascii.crc32(ident[::-1]))
    cache_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), "cplet-sim-release-data-%d" % os.getuid())
    cache = os.path.join(cache_dir, key + ".json")
    try:
        with open(cache, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("ident") == ident.decode():
            return data
    except (OSError, ValueError):
        pass
    try:
        data = parse_release_data(directory)
        data["ident"] = ident.decode()
    except Exception as e:  # noqa: BLE001 - a broken data file must be seen, not skipped
        raise Fatal("release data %s unreadable: %s" % (directory, e))
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = "%s.tmp%d" % (cache, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.rename(tmp, cache)
    except OSError:
        pass  # no cache: the next start parses again
    return data


def removed_flag_minor(data, component, name):
    """The minor that removed this flag of this component, or None."""
    if not data:
        return None
    return (data["flags"].get(component) or {}).get(name)


def go_bool(v):
    return "true" if v else "false"


def gate_errors(data, binary, emulated, pairs):
    """featureGate.SetFromMap over pairs [(name, bool)] (a later pair of the same name wins) by a
    binary of minor binary emulating emulated: the errors, as unsafeSetFromMap collects them."""
    m = {}
    for k, v in pairs:
        m[k] = v
    if binary.mm() < (1, 31):
        # no component-globals registry: `kube:Foo` is the name of no gate
        for k in m:
            if ":" in k:
                return ["unrecognized feature gate: %s" % k]
    if not data or binary.major != 1 or binary.minor not in data["minors"]:
        return []
    errs = []
    for k, v in m.items():
        g = data["gates"].get(k)
        if g is None:
            continue  # not in the (incomplete) data: accepted
        if binary.minor not in g["known"]:
            errs.append("unrecognized feature gate: %s" % k)
            return errs  # early return, as the binary does
        em = emulated.mm()
        spec = None
        for sp in g["specs"]:
            if (sp[0], sp[1]) <= em:
                spec = sp
        if spec is None:
            if g["specs"] and not g["partial"] and binary.mm() >= (1, 31):
                errs.append("cannot set feature gate %s to %s, feature is PreAlpha at emulated "
                            "version %s" % (k, go_bool(v), emulated))
            continue
        if spec[3] and spec[2] != v:
            errs.append("cannot set feature gate %s to %s, feature is locked to %s"
                        % (k, go_bool(v), go_bool(spec[2])))
    return errs


def parse_gate_map(value):
    """featureGate.Set's parsing of `k=v,k2=v2` -> [(k, bool)]; raises Fatal with its texts."""
    out = []
    for s in value.split(","):
        if not s:
            continue
        arr = s.split("=", 1)
        k = arr[0].strip()
        if len(arr) != 2:
            raise Fatal("missing bool value for %s" % k)
        v = arr[1].strip()
        try:
            out.append((k, parse_bool(k, v)))
        except Fatal:
            raise Fatal('invalid value of %s=%s, err: strconv.ParseBool: parsing "%s": invalid syntax'
                        % (k, v, v))
    return out


def check_gates_flag_130(data, binary, value):
    """1.30: --feature-gates is the feature gate itself (pflag value); an error is pflag's."""
    try:
        errs = gate_errors(data, binary, binary.major_minor(), parse_gate_map(value))
        if errs:
            raise Fatal(aggregate(errs))
    except Fatal as e:
        raise FlagError('invalid argument "%s" for "--feature-gates" flag: %s' % (value, e))


def check_gates_registry(data, binary, emulated, entries):
    """1.31+: the component-globals registry's Set(): `kube:` prefix or none, never both; the
    kube gates set at the emulated version. entries: the comma-split --feature-gates values.
    Returns the error text or None."""
    by_comp = {}
    for pair in entries:
        kv = pair.split(":", 1)
        if len(kv) == 1:
            comp, v = "", kv[0].strip()
        else:
            comp, v = kv[0].strip(), kv[1].strip()
        by_comp.setdefault(comp, []).append(v)
    for comp, values in by_comp.items():
        if comp == "":
            if "kube" in by_comp:
                return ("set kube feature gates with default empty prefix or kube: prefix "
                        "consistently, do not mix use")
        elif comp != "kube":
            return "component not registered: %s" % comp
        try:
            errs = gate_errors(data, binary, emulated, parse_gate_map(",".join(values)))
        except Fatal as e:
            return str(e)
        if errs:
            return aggregate(errs)
    return None


def admission_errors(data, binary, flags):
    """kube-apiserver's AdmissionOptions.Validate(): the plugins the data says this binary no
    longer registers, --admission-control with the other two, a plugin both enabled and
    disabled (the real texts, pkg/kubeapiserver/options/admission.go and apiserver's
    pkg/server/options/admission.go)."""
    def gone(name):
        minor = data["plugins"].get(name) if data else None
        return data is not None and minor is not None and binary.mm() >= (1, minor)
    errs = []
    if "admission-control" in flags and ("enable-admission-plugins" in flags
                                         or "disable-admission-plugins" in flags):
        errs.append("admission-control and enable-admission-plugins/disable-admission-plugins "
                    "flags are mutually exclusive")
    for flag in ("admission-control", "enable-admission-plugins", "disable-admission-plugins"):
        for name in flags.get(flag, []):
            if gone(name):
                errs.append('%s plugin "%s" is unknown' % (flag, name))
    both = sorted(set(flags.get("enable-admission-plugins", []))
                  & set(flags.get("disable-admission-plugins", [])))
    if both:
        errs.append("[%s] in enable-admission-plugins and disable-admission-plugins overlapped"
                    % " ".join(both))
    return errs


# --------------------------------------------------------------------------------------
# AUTHENTICATION (kube-apiserver only; the controller-manager's and scheduler's delegated
# authentication is not modelled: their --client-ca-file is accepted and ignored)
#
# As pkg/kubeapiserver/options/authentication.go (ToAuthenticationConfig) and
# pkg/kubeapiserver/authenticator/config.go set it up:
#   * --client-ca-file: the x509 authenticator; a client certificate signed by that CA is the
#     user CN in the groups O (+ system:authenticated). The TLS server asks for a client
#     certificate (never requires one) only when the flag is given.
#   * anonymous: from the --authentication-config file's `anonymous` field when it has one,
#     else --anonymous-auth (default true). Both at once: the server exits at start. With
#     `conditions`, anonymous is accepted only on those exact paths.
#   * no authenticator accepts the request: 401 with the Unauthorized Status.
# Authorization: system:public-info-viewer lets every user (authenticated or anonymous) GET
# /healthz /livez /readyz /version; anything else this fake does not serve is 403.
#
# Not like the real server: a client certificate from another CA fails the TLS handshake
# (Python's ssl cannot ask for a certificate without verifying it); the real one answers 401.
# Tokens (Authorization: Bearer) are not authenticated (no token authenticator is modelled).
# Binaries before 1.31 are not modelled for `anonymous` (the fake honours it there too). The
# texts of a configuration file that is not YAML or of an unknown apiVersion are close to the
# real ones, not byte-equal; the others are the real texts (checked against the sources: the
# conflict, "enabled should be set to true when conditions are defined", the feature gate).
# --------------------------------------------------------------------------------------

PUBLIC_INFO_PATHS = ("/healthz", "/livez", "/readyz", "/version", "/version/")
AUTHN_API_VERSIONS = {  # apiserver.config.k8s.io version -> first binary minor serving it
    "apiserver.config.k8s.io/v1alpha1": 29,
    "apiserver.config.k8s.io/v1beta1": 30,
    "apiserver.config.k8s.io/v1": 34,
}
UNAUTHORIZED_BODY = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": "Unauthorized",
                                "reason": "Unauthorized", "code": 401},
                               separators=(",", ":")) + "\n"


class Authn:
    """What the flags configured: client_ca (path or None), anonymous (bool) and
    anonymous_paths (None: every path)."""

    def __init__(self, client_ca=None, anonymous=True, anonymous_paths=None):
        self.client_ca, self.anonymous, self.anonymous_paths = client_ca, anonymous, anonymous_paths

    def user(self, peer_cert, path):
        """(name, groups) of the request, or None (401)."""
        if peer_cert:
            cn, orgs = None, []
            for rdn in peer_cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
                    elif k == "organizationName":
                        orgs.append(v)
            if cn:
                return cn, orgs + ["system:authenticated"]
        if self.anonymous and (self.anonymous_paths is None or path in self.anonymous_paths):
            return "system:anonymous", ["system:unauthenticated"]
        return None


def _go_conditions(conds):
    """%#v of []apiserver.AnonymousAuthCondition, as field.Invalid prints the bad value."""
    return "[]apiserver.AnonymousAuthCondition{%s}" % ", ".join(
        'apiserver.AnonymousAuthCondition{Path:%s}' % json.dumps(str(c.get("path", "")))
        for c in conds)


def feature_enabled(flags, gate, default):
    value = default
    for pair in flags.get("feature-gates", []):
        k, _, v = pair.partition("=")
        if k.strip() == gate:
            value = v.strip().lower() == "true"
    return value


def load_authentication_config(path, binary):
    """The file's `anonymous` field (dict) or None. Raises Fatal with the server's text."""
    prefix = "failed to load authentication configuration from file %s: " % json.dumps(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Fatal(prefix + "open %s: %s" % (path, (e.strerror or str(e)).lower()))
    import yaml  # only here: most starts have no configuration file
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise Fatal(prefix + "error converting YAML to JSON: %s" % str(e).replace("\n", " "))
    if not isinstance(doc, dict):
        raise Fatal(prefix + "Object 'Kind' is missing in '%s'" % data.decode(errors="replace").strip())
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    since = AUTHN_API_VERSIONS.get(api_version)
    if kind != "AuthenticationConfiguration" or since is None or binary.mm() < (1, since):
        raise Fatal(prefix + 'no kind "%s" is registered for version "%s" in scheme '
                    '"pkg/runtime/scheme.go:110"' % (kind, api_version))
    anonymous = doc.get("anonymous")
    if anonymous is not None and not isinstance(anonymous, dict):
        raise Fatal(prefix + "json: cannot unmarshal %s into Go struct field "
                    "AuthenticationConfiguration.anonymous of type v1beta1.AnonymousAuthConfig"
                    % type(anonymous).__name__)
    return anonymous


def configure_authentication(component, binary, flags):
    """Authn for this process, or raises Fatal with the error the real server exits with."""
    if component != "kube-apiserver":
        return Authn()
    client_ca = (flags.get("client-ca-file") or [""])[-1] or None
    if client_ca:
        try:
            with open(client_ca, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise Fatal("open %s: %s" % (client_ca, (e.strerror or str(e)).lower()))
        if not pem.strip():
            raise Fatal('missing content for CA bundle "client-ca-bundle::%s"' % client_ca)
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise Fatal('unable to load "client-ca-bundle::%s": data does not contain any valid '
                        "RSA or ECDSA certificates" % client_ca)
    flag_set = "anonymous-auth" in flags
    anonymous_flag = flags.get("anonymous-auth", [True])[-1]
    config_path = (flags.get("authentication-config") or [""])[-1]
    file_anonymous = load_authentication_config(config_path, binary) if config_path else None
    if file_anonymous is None:
        return Authn(client_ca, anonymous_flag)
    if flag_set:
        raise Fatal("anonymous: Forbidden: --anonymous-auth flag cannot be set when anonymous "
                    "field is configured in authentication configuration file")
    errors = []
    # AnonymousAuthConfigurableEndpoints: alpha (off) in 1.31, beta (on) from 1.32
    if not feature_enabled(flags, "AnonymousAuthConfigurableEndpoints", binary.mm() >= (1, 32)):
        errors.append("anonymous: Forbidden: anonymous is not supported when "
                      "AnonymousAuthConfigurableEndpoints feature gate is disabled")
    enabled = file_anonymous.get("enabled") is True
    conds = [c for c in (file_anonymous.get("conditions") or []) if isinstance(c, dict)]
    if not enabled and conds:
        errors.append("anonymous.conditions: Invalid value: %s: enabled should be set to true "
                      "when conditions are defined" % _go_conditions(conds))
    if errors:
        raise Fatal("invalid authentication configuration: " + aggregate(errors))
    paths = {str(c.get("path", "")) for c in conds} if conds else None
    return Authn(client_ca, enabled, paths)


# --------------------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------------------

def load_knobs(component, git_version, binary):
    path = os.environ.get("CPLET_SIM_KNOBS", "")
    data = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            log("W", "knobs file %s unreadable, using defaults: %s" % (path, e))
            data = {}
    knobs = {"startupDelay": 0.0, "neverReady": False, "crashAfter": None,
             "failVersions": [], "failEmulated": [], "exitMessage": None, "exitCode": 1,
             "termDelay": 0.0, "ignoreSigterm": False}
    layers = [data.get("default"), data.get("*"), data.get(component)]
    comp = data.get(component) or {}
    per_version = comp.get("versions") or {}
    layers += [per_version.get("v%d.%d" % binary.mm()), per_version.get(git_version)]
    for layer in layers:
        if isinstance(layer, dict):
            knobs.update({k: v for k, v in layer.items() if k != "versions"})
    return knobs


# --------------------------------------------------------------------------------------
# Logging (klog-like header)
# --------------------------------------------------------------------------------------

def log(level, msg, where="server.go:1"):
    now = time.time()
    lt = time.localtime(now)
    try:
        sys.stderr.write("%s%02d%02d %02d:%02d:%02d.%06d %7d %s] %s\n" % (
            level, lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec,
            int((now % 1) * 1e6), os.getpid(), where, msg))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # the kubelet that read our output is gone; carry on (or exit) without it


def die(msg, code=1):
    log("E", '"command failed" err="%s"' % msg.replace('"', '\\"'), "run.go:72")
    os._exit(code)


# --------------------------------------------------------------------------------------
# TLS certificate (one per node; generated on demand, safe under concurrency)
# --------------------------------------------------------------------------------------

def default_cert_dir():
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), "cplet-sim-certs-%d" % os.getuid())


def ensure_cert(cert_dir):
    """Creates cert_dir/tls.crt and tls.key (self-signed, SAN 127.0.0.1/::1/localhost)."""
    crt = os.path.join(cert_dir, "tls.crt")
    key = os.path.join(cert_dir, "tls.key")
    if os.path.exists(crt) and os.path.exists(key):
        return crt, key
    import fcntl
    import subprocess
    os.makedirs(cert_dir, mode=0o755, exist_ok=True)
    with open(os.path.join(cert_dir, ".lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.path.exists(crt) and os.path.exists(key):
            return crt, key
        tcrt, tkey = crt + ".tmp%d" % os.getpid(), key + ".tmp%d" % os.getpid()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
             "-subj", "/CN=cplet-sim", "-keyout", tkey, "-out", tcrt,
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # group root may read it: a container started as another runAsUser keeps gid 0
        os.chmod(tkey, 0o640)
        os.rename(tkey, key)
        os.rename(tcrt, crt)
    return crt, key


# --------------------------------------------------------------------------------------
# HTTPS server (minimal, one thread per connection, Connection: close)
# --------------------------------------------------------------------------------------

HEALTH_CHECKS = {
    "kube-apiserver": ["ping", "log", "etcd", "poststarthook/start-apiserver-admission-initializer",
                       "poststarthook/generic-apiserver-start-informers"],
    "kube-controller-manager": ["leaderElection"],
    "kube-scheduler": ["ping", "log", "sched-handler-sync", "leaderElection"],
}
STATUS_TEXT = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               500: "Internal Server Error", 400: "Bad Request"}


class Component:
    def __init__(self, name, binary, git_version, emulated, min_compat, knobs, authn=None):
        self.name = name
        self.authn = authn or Authn()
        self.binary = binary
        self.git_version = git_version
        self.emulated = emulated
        self.min_compat = min_compat
        self.knobs = knobs
        self.terminating = False

    def started(self):
        return uptime() >= float(self.knobs.get("startupDelay") or 0)

    def health(self, path, verbose):
        kind = path.strip("/")
        endpoints = ("healthz",) if self.name == "kube-controller-manager" else ("livez", "readyz", "healthz")
        if kind not in endpoints:
            return None
        ok = self.started()
        failing = None if ok else "poststarthook/simulated-startup"
        if ok and kind != "livez" and (self.knobs.get("neverReady") or self.terminating):
            ok, failing = False, ("shutdown" if self.terminating else "simulated-never-ready")
        if ok and not verbose:
            return 200, "ok"
        lines = ["[+]%s ok" % c for c in HEALTH_CHECKS[self.name]]
        if failing:
            lines.append("[-]%s failed: reason withheld" % failing)
        lines.append("%s check %s" % (kind, "passed" if ok else "failed"))
        return (200 if ok else 500), "\n".join(lines) + "\n"

    def version_body(self):
        info = {"major": str(self.binary.major), "minor": str(self.binary.minor)}
        if self.binary.mm() >= (1, 33):
            info["emulationMajor"] = str(self.emulated.major)
            info["emulationMinor"] = str(self.emulated.minor)
            info["minCompatibilityMajor"] = str(self.min_compat.major)
            info["minCompatibilityMinor"] = str(self.min_compat.minor)
        info.update({
            "gitVersion": self.git_version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        })
        return json.dumps(info, indent=2) + "\n"

    def respond(self, method, target, peer_cert=None):
        path, _, query = target.partition("?")
        verbose = "verbose" in query.split("&") or any(q.startswith("verbose=") for q in query.split("&"))
        user = "system:anonymous"
        if self.name == "kube-apiserver":
            # authentication comes before everything else, health included
            who = self.authn.user(peer_cert, path)
            if who is None:
                return 401, "application/json", UNAUTHORIZED_BODY
            user = who[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", "method not allowed\n"
        h = self.health(path, verbose)
        if h is not None:
            return h[0], "text/plain; charset=utf-8", h[1]
        if self.name == "kube-apiserver":
            if path in ("/version", "/version/"):
                return 200, "application/json", self.version_body()
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure",
                               "message": 'forbidden: User "%s" cannot get path "%s"' % (user, path),
                               "reason": "Forbidden", "details": {}, "code": 403}, indent=2) + "\n"
            return 403, "application/json", body
        return 404, "text/plain; charset=utf-8", "404 page not found\n"


def handle_connection(comp, ctx, conn):
    try:
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = ctx.wrap_socket(conn, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) < 2:
            code, ctype, body = 400, "text/plain; charset=utf-8", "bad request\n"
            method = "GET"
        else:
            method = parts[0]
            code, ctype, body = comp.respond(method, parts[1], tls.getpeercert())
        raw = body.encode()
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
                % (code, STATUS_TEXT.get(code, "Unknown"), ctype, len(raw)))
        tls.sendall(head.encode() + (b"" if method == "HEAD" else raw))
        try:
            tls.settimeout(0.5)  # send close_notify; do not wait long for the peer's
            tls.unwrap()
        except (OSError, ValueError):
            pass
    except Exception:  # noqa: BLE001 - a broken client must never take the server down
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def usage(component, binary, data):
    """What cobra prints on a flag error (cliflag's usage func: the flags this binary has)."""
    names = set(REGISTERED[component]) | set(COMPAT_FLAGS)
    if data:
        names |= set((data["flags"].get(component) or {}))
        if binary.major == 1:
            names |= set(((data.get("registered") or {}).get(component) or {}).get(str(binary.minor)) or ())
    names = sorted(n for n in names if known_flag(component, binary, n, data))
    return ("Usage:\n  %s [flags]\n\nFlags:\n" % component
            + "".join("      --%s\n" % n for n in names) + "\n")


def set_comm(name):
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def main(component=None, argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if component is None:
        component = os.path.basename(sys.argv[0])
        if component not in COMPONENTS and argv[:1] == ["--component"] and len(argv) > 1:
            component, argv = argv[1], argv[2:]
    if component not in COMPONENTS:
        sys.stderr.write("Error: unknown fake component %r (use bin/<name>)\n" % component)
        return 1
    set_comm(component)
    image = os.environ.get("CPLET_SIM_IMAGE", "")
    binary = None
    data = None
    try:
        if not image:
            raise Fatal("CPLET_SIM_IMAGE is not set: the fake takes its binary version from "
                        "the image tag")
        binary, git_version = binary_version_from_image(image)
        data = load_release_data()
        flags = parse_flags(component, binary, argv, data)
        emulated, min_compat, errors = effective_versions(component, binary, flags)
        if errors:
            raise Fatal(aggregate(errors))
        port_text = (flags.get("secure-port") or [str(DEFAULT_PORTS[component])])[-1]
        try:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise Fatal('invalid argument "%s" for "--secure-port" flag: strconv.ParseInt: '
                        'parsing "%s": invalid syntax' % (port_text, port_text))
    except Fatal as e:
        if isinstance(e, FlagError) and binary is not None:
            sys.stderr.write(usage(component, binary, data))
        sys.stderr.write("Error: %s\n" % e)
        sys.stderr.flush()
        return 1

    # After logging is set up: the component-globals registry sets the feature gates (1.31 on),
    # then RunE validates the options (the admission plugins).
    if binary.mm() >= (1, 31):
        err = check_gates_registry(data, binary, emulated, flags.get("feature-gates", []))
        if err:
            die(err)
    if component == "kube-apiserver":
        errs = admission_errors(data, binary, flags)
        if errs:
            die(aggregate(errs))

    knobs = load_knobs(component, git_version, binary)
    comp = Component(component, binary, git_version, emulated, min_compat, knobs)
    bind = (flags.get("bind-address") or ["127.0.0.1"])[-1]

    # SIGTERM: exit at once (or after termDelay, /readyz failing meanwhile)
    exiting = []

    def on_term(signum, frame):
        if knobs.get("ignoreSigterm"):
            log("I", "received %s, ignoring it (knob ignoreSigterm)" % signal.Signals(signum).name)
            return
        if exiting:
            # the same signal again: the kubelet signals the process group and the launcher
            # forwards it too; the first is being handled (the scheduler's Lease release may
            # be under way in the handler this one interrupted)
            return
        exiting.append(signum)
        delay = float(knobs.get("termDelay") or 0)
        le = sys.modules.get("leader_election")
        if delay > 0:
            comp.terminating = True

            def end():
                if le:
                    le.on_terminate()
                os._exit(0)
            threading.Timer(delay, end).start()
            return
        if le:
            le.on_terminate()  # the scheduler releases its Lease (ReleaseOnCancel)
        sys.stderr.flush()
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    log("I", '"Starting fake component" component="%s" version="%s" emulatedVersion="%s" '
             'minCompatibilityVersion="%s" address="%s:%d"'
        % (component, git_version, emulated.major_minor(), min_compat.major_minor(), bind, port))

    fail_versions = knobs.get("failVersions") or []
    if git_version in fail_versions or ("v%d.%d" % binary.mm()) in fail_versions:
        die(knobs.get("exitMessage") or "simulated failure of %s" % git_version,
            int(knobs.get("exitCode") or 1))
    fail_emulated = [str(x).lstrip("v") for x in knobs.get("failEmulated") or []]
    if "%d.%d" % emulated.mm() in fail_emulated:
        die(knobs.get("exitMessage") or "simulated failure at emulated version %d.%d" % emulated.mm(),
            int(knobs.get("exitCode") or 1))

    # The server's configuration is built after logging starts: its errors are klog lines.
    try:
        comp.authn = configure_authentication(component, binary, flags)
    except Fatal as e:
        die(str(e))

    import ssl
    cert_dir = os.environ.get("CPLET_SIM_CERT_DIR") or default_cert_dir()
    try:
        crt, key = ensure_cert(cert_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.num_tickets = 0  # no session tickets: one less write after the handshake
    except Exception as e:  # noqa: BLE001
        die("unable to load server certificate: %s" % e)
    if comp.authn.client_ca:
        # Ask for a client certificate, never require one (Go's tls.RequestClientCert).
        try:
            ctx.load_verify_locations(comp.authn.client_ca)
        except Exception as e:  # noqa: BLE001
            die('unable to load client CA file "%s": %s' % (comp.authn.client_ca, e))
        ctx.verify_mode = ssl.CERT_OPTIONAL

    try:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((bind, port))
        lsock.listen(128)
    except OSError as e:
        die("failed to create listener: failed to listen on %s:%d: listen tcp %s:%d: bind: %s"
            % (bind, port, bind, port, (e.strerror or str(e)).lower()))
    log("I", '"Serving securely on %s:%d"' % (bind, port))

    crash_after = knobs.get("crashAfter")
    if crash_after is not None:
        code = int(knobs.get("exitCode") or 1)
        msg = knobs.get("exitMessage") or "simulated crash after %ss" % crash_after
        t = threading.Timer(float(crash_after), die, (msg, code))
        t.daemon = True
        t.start()

    if component in ("kube-controller-manager", "kube-scheduler"):
        # a --kubeconfig that exists on this simulated node: hold the leader-election Lease
        sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
        import leader_election
        leader_election.start(component, flags, os.environ.get("CPLET_SIM_NODE"),
                              os.environ.get("CPLET_SIM_NODE_NAME"),
                              lambda level, msg: log(level, msg, "leaderelection.go:1"), die)

    if os.environ.get("CPLET_SIM_EXIT_WITH_PARENT") == "1":
        ppid = os.getppid()

        def watch_parent():
            while True:
                time.sleep(0.2)
                if os.getppid() != ppid:
                    log("W", "parent (kubelet) went away, exiting")
                    os._exit(0)
        threading.Thread(target=watch_parent, daemon=True).start()

    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            continue
        threading.Thread(target=handle_connection, args=(comp, ctx, conn), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
