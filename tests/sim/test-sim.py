#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Self-test of the simulated control-plane node (fake components, fake kubelet, simnode),
printing TAP. Run: python3 tests/sim/test-sim.py
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import simnode  # noqa: E402
from simnode import SimNode, https_get, reserve_ports  # noqa: E402

BIN = os.path.join(HERE, "bin")
FIXTURES = os.environ.get("CPLET_FIXTURES_DIR") or os.path.join(
    os.path.dirname(HERE), "data", "fixtures")
TMP = tempfile.mkdtemp(prefix="cplet-sim-test-")
CERTS = os.path.join(TMP, "certs")

_results = []


def check(name, cond, diag=""):
    _results.append((bool(cond), name, diag))
    return bool(cond)


def skip(name, reason):
    _results.append((True, "%s # SKIP %s" % (name, reason), ""))


def readable_by_others(path):
    """Whether another user can reach path: every directory on the way lets others through."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def emit_tap():
    print("1..%d" % len(_results))
    for i, (ok, name, diag) in enumerate(_results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        if not ok and diag:
            for line in str(diag).splitlines()[-25:]:
                print("#   " + line)
    sys.stdout.flush()
    return all(ok for ok, _, _ in _results)


def note(msg):
    _notes.append(msg)


_notes = []


# --------------------------------------------------------------------------------------
# helpers for running a fake component directly
# --------------------------------------------------------------------------------------

def fake_env(image, knobs=None):
    env = dict(os.environ, CPLET_SIM_IMAGE=image, CPLET_SIM_CERT_DIR=CERTS,
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("CPLET_SIM_KNOBS", None)
    if knobs is not None:
        path = os.path.join(TMP, "knobs-%d.json" % time.monotonic_ns())
        with open(path, "w") as f:
            json.dump(knobs, f)
        env["CPLET_SIM_KNOBS"] = path
    return env


def run_fake(component, image, args, timeout=10):
    """Runs a fake expected to exit at once; returns (code, stderr)."""
    p = subprocess.run([os.path.join(BIN, component)] + args, env=fake_env(image),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stderr.decode()


class Fake:
    """A fake component serving on a reserved port."""

    def __init__(self, component, image, args=(), knobs=None):
        self.ports, self.lock = reserve_ports(3)
        self.err = None
        self.port = self.ports[0]
        self.t_start = time.monotonic()
        self.p = subprocess.Popen(
            [os.path.join(BIN, component), "--secure-port=%d" % self.port,
             "--bind-address", "127.0.0.1"] + list(args),
            env=fake_env(image, knobs), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def get(self, path):
        return https_get(self.port, path, 2.0)

    def wait_code(self, path, code, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c, _ = self.get(path)
            if c == code:
                return time.monotonic() - self.t_start
            if self.p.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(3)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None
        if self.err is None:
            self.err = self.p.stderr.read().decode()
        return self.err

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


IMG = "registry.k8s.io/%s:%s"


# --------------------------------------------------------------------------------------
# /proc, read directly (no procps on a minimal system)
# --------------------------------------------------------------------------------------

def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return None


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def proc_uid(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def children(pid):
    out = []
    for p in all_pids():
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                out.append(p)
        except (OSError, IndexError, ValueError):
            pass
    return out


def procs_with(text):
    """Live processes (not us) whose command line contains text, like `pgrep -f`."""
    out = []
    for p in all_pids():
        argv = cmdline(p)
        if p != os.getpid() and argv and text in " ".join(argv) and simnode.pid_alive(p):
            out.append((p, argv))
    return out


# --------------------------------------------------------------------------------------
# fake components
# --------------------------------------------------------------------------------------

def test_version_endpoint():
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.34.2")) as f:
        f.wait_code("/livez", 200)
        code, body = f.get("/version")
        v = json.loads(body) if code == 200 else {}
        check("v1.34.2 /version reports binary and emulation fields (emulation 1.34, min-compat 1.33)",
              code == 200 and v.get("gitVersion") == "v1.34.2" and v.get("major") == "1"
              and v.get("minor") == "34" and v.get("emulationMajor") == "1"
              and v.get("emulationMinor") == "34" and v.get("minCompatibilityMajor") == "1"
              and v.get("minCompatibilityMinor") == "33", body)
    with open(os.path.join(FIXTURES, "version-v1.32.3-kthw-no-emulation-fields.json")) as fx:
        want = set(json.load(fx))
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.32.3"),
              ["--emulated-version", "1.31"]) as f:
        f.wait_code("/livez", 200)
        code, body = f.get("/version")
        v = json.loads(body) if code == 200 else {}
        check("v1.32.3 (emulating 1.31) /version has exactly the fields of the real 1.32 body",
              set(v) == want and v.get("gitVersion") == "v1.32.3", "%s vs %s" % (sorted(v), sorted(want)))
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.35.0"),
              ["--emulated-version=v1.33", "--min-compatibility-version", "kube=1.32"]) as f:
        f.wait_code("/livez", 200)
        code, body = f.get("/version")
        v = json.loads(body) if code == 200 else {}
        check("v1.35.0 --emulated-version=v1.33 --min-compatibility-version kube=1.32 -> /version 1.33/1.32",
              v.get("emulationMinor") == "33" and v.get("minCompatibilityMinor") == "32"
              and v.get("minor") == "35", body)
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.35.0"), ["--emulated-version=1.32"]) as f:
        f.wait_code("/livez", 200)
        code, body = f.get("/version")
        v = json.loads(body) if code == 200 else {}
        check("v1.35.0 emulating 1.32: default min-compat is raised to the floor 1.32",
              v.get("emulationMinor") == "32" and v.get("minCompatibilityMinor") == "32", body)
    with Fake("kube-controller-manager", IMG % ("kube-controller-manager", "v1.34.2")) as f:
        c1 = f.wait_code("/healthz", 200)
        c2, _ = f.get("/livez")
        c3, _ = f.get("/version")
        check("controller-manager serves /healthz only (/livez and /version 404)",
              c1 is not None and c2 == 404 and c3 == 404, (c1, c2, c3))
    with Fake("kube-scheduler", IMG % ("kube-scheduler", "v1.33.1")) as f:
        codes = [f.wait_code(p, 200) is not None for p in ("/livez", "/readyz", "/healthz")]
        check("scheduler serves /livez /readyz /healthz", all(codes), codes)


def test_validation():
    cases = [
        ("unknown flag before 1.31", "kube-apiserver", "v1.30.14", ["--emulated-version=1.30"],
         "Error: unknown flag: --emulated-version"),
        ("--min-compatibility-version unknown before 1.35", "kube-apiserver", "v1.34.2",
         ["--min-compatibility-version=1.33"], "Error: unknown flag: --min-compatibility-version"),
        ("--emulation-forward-compatible is apiserver-only", "kube-scheduler", "v1.34.2",
         ["--emulation-forward-compatible"], "Error: unknown flag: --emulation-forward-compatible"),
        ("--emulation-forward-compatible unknown before 1.33", "kube-apiserver", "v1.32.3",
         ["--emulation-forward-compatible=true"], "Error: unknown flag: --emulation-forward-compatible"),
        ("1.35 refuses emulated 1.31", "kube-apiserver", "v1.35.0", ["--emulated-version=1.31"],
         "emulation version 1.31 is not between [1.32.0, 1.35.0]"),
        ("1.31 allows exactly 1.31", "kube-controller-manager", "v1.31.4", ["--emulated-version=1.30"],
         "Error: emulation version 1.30 is not between [1.31, 1.31.0]"),
        ("1.32 refuses emulated 1.30", "kube-scheduler", "v1.32.3", ["--emulated-version", "1.30"],
         "Error: emulation version 1.30 is not between [1.31.0, 1.32.0]"),
        ("emulated above the binary", "kube-apiserver", "v1.34.2", ["--emulated-version=1.35"],
         "Error: emulation version 1.35 is not between [1.31.0, 1.34.0]"),
        ("min-compat above emulated", "kube-scheduler", "v1.35.0",
         ["--emulated-version=1.34", "--min-compatibility-version=1.35"],
         "Error: minCompatibilityVersion version 1.35 is not between [1.32.0, 1.34]"),
        ("min-compat below the floor", "kube-apiserver", "v1.36.1",
         ["--min-compatibility-version=1.32"],
         "Error: minCompatibilityVersion version 1.32 is not between [1.33.0, 1.36]"),
        ("patch version", "kube-apiserver", "v1.34.2", ["--emulated-version=kube=1.34.1"],
         "Error: patch version not allowed, got: kube=1.34.1"),
        ("forward-compatible at emulation == binary", "kube-apiserver", "v1.34.2",
         ["--emulation-forward-compatible"],
         "Error: ServerRunOptions.EmulationForwardCompatible cannot be set to true if the "
         "emulation version is the same as the binary version"),
        ("runtime-config forward-compatible at emulation == binary", "kube-apiserver", "v1.35.0",
         ["--emulated-version=1.35", "--runtime-config-emulation-forward-compatible=true"],
         "Error: ServerRunOptions.RuntimeConfigEmulationForwardCompatible cannot be set"),
        ("unregistered component", "kube-apiserver", "v1.35.0", ["--emulated-version=wardle=1.2"],
         "Error: component not registered: wardle"),
        ("duplicate version", "kube-apiserver", "v1.35.0", ["--emulated-version=1.33,kube=1.34"],
         "Error: duplicate version flag, kube=1.33 and kube=1.34"),
        ("flag without its value", "kube-apiserver", "v1.35.0", ["--emulated-version"],
         "Error: flag needs an argument: --emulated-version"),
        ("no image tag", "kube-apiserver", "", [], "Error: "),
        # pflag refuses what the binary does not register
        ("the KEP's spelling --emulation-version", "kube-apiserver", "v1.35.0",
         ["--emulation-version=1.34"], "Error: unknown flag: --emulation-version"),
        ("an unknown flag", "kube-controller-manager", "v1.34.2", ["--totally-bogus=1"],
         "Error: unknown flag: --totally-bogus"),
        ("an unknown flag, --name value form", "kube-scheduler", "v1.34.2", ["--totally-bogus", "1"],
         "Error: unknown flag: --totally-bogus"),
        ("an apiserver flag on the scheduler", "kube-scheduler", "v1.34.2", ["--etcd-servers=https://x"],
         "Error: unknown flag: --etcd-servers"),
        ("an unknown flag spelled with _", "kube-apiserver", "v1.34.2", ["--totally_bogus"],
         "Error: unknown flag: --totally_bogus"),
        ("an unknown shorthand", "kube-apiserver", "v1.34.2", ["-x"],
         "Error: unknown shorthand flag: 'x' in -x"),
        ("a bool flag does not take the next word", "kube-scheduler", "v1.34.2", ["--profiling", "false"],
         'Error: "kube-scheduler" does not take any arguments, got ["false"]'),
        ("a bool flag with a bad value", "kube-scheduler", "v1.34.2", ["--leader-elect=maybe"],
         'Error: invalid argument "maybe" for "--leader-elect" flag'),
        ("a value flag at the end", "kube-apiserver", "v1.34.2", ["--etcd-servers"],
         "Error: flag needs an argument: --etcd-servers"),
    ]
    for name, comp, tag, args, want in cases:
        image = IMG % (comp, tag) if tag else "registry.k8s.io/" + comp
        code, err = run_fake(comp, image, args)
        check("validation: %s -> exit 1, %r" % (name, want[:60]), code == 1 and want in err,
              "exit %s stderr %r" % (code, err))
    # accepted spellings start (and are not refused): bare, v-prefixed, kube=, forward-compat
    for comp, tag, args in [
        ("kube-apiserver", "v1.34.2", ["--emulated-version=v1.33", "--emulation-forward-compatible"]),
        ("kube-apiserver", "v1.31.0", ["--emulated-version", "kube=1.31"]),
        ("kube-controller-manager", "v1.35.0", ["--emulated-version=1.32", "--min-compatibility-version=v1.32"]),
        # component-base toVersionMap() refuses a non-zero patch only (ver.Patch() != 0)
        ("kube-scheduler", "v1.35.0", ["--emulated-version=1.34.0"]),
        # pflag forms: _ for -, --name value, bool alone or =false, -v shorthand, --version tristate
        ("kube-apiserver", "v1.34.2", ["--etcd_servers=https://127.0.0.1:2379", "--v", "4", "-v=2",
                                       "--profiling=false", "--allow-privileged", "--feature-gates", "A=true"]),
        ("kube-controller-manager", "v1.34.2", ["--leader-elect", "--controllers", "*,-foo", "-v", "3",
                                                "--use-service-account-credentials=true"]),
    ]:
        with Fake(comp, IMG % (comp, tag), args) as f:
            ok = f.wait_code("/healthz", 200) is not None
            err = f.close()
            check("accepted: %s %s %s" % (comp, tag, " ".join(args)), ok, err)


# --------------------------------------------------------------------------------------
# what each release removed (data/releases/, read by the fakes at start)
# --------------------------------------------------------------------------------------

def klog_err(text):
    """How the fake (like klog's ErrorS) quotes an error after logging started."""
    return '"command failed" err="%s"' % text.replace('"', '\\"')


def test_release_data():
    pflag_cases = [
        # (what, component, tag, args, the error line)
        ("kube-apiserver 1.33 no longer has --cloud-provider (removed in 1.33)", "kube-apiserver",
         "v1.33.1", ["--cloud-provider=external"], "Error: unknown flag: --cloud-provider"),
        ("... nor --cloud_config, spelled with _, --flag value form", "kube-apiserver", "v1.36.0",
         ["--cloud_config", "/etc/kubernetes/cloud.conf"], "Error: unknown flag: --cloud_config"),
        ("kube-apiserver 1.31 no longer has --cloud-provider-gce-lb-src-cidrs", "kube-apiserver",
         "v1.31.4", ["--cloud-provider-gce-lb-src-cidrs=130.211.0.0/22"],
         "Error: unknown flag: --cloud-provider-gce-lb-src-cidrs"),
        ("kube-controller-manager 1.31 no longer has --horizontal-pod-autoscaler-upscale-delay",
         "kube-controller-manager", "v1.31.0", ["--horizontal-pod-autoscaler-upscale-delay", "3m0s"],
         "Error: unknown flag: --horizontal-pod-autoscaler-upscale-delay"),
        ("1.30: a removed gate is pflag's error (the gate is the flag's value)", "kube-apiserver",
         "v1.30.14", ["--feature-gates=ExpandedDNSConfig=true"],
         'Error: invalid argument "ExpandedDNSConfig=true" for "--feature-gates" flag: '
         "unrecognized feature gate: ExpandedDNSConfig"),
        ("1.30 has no kube: prefix (it is part of the name)", "kube-scheduler", "v1.30.14",
         ["--feature-gates", "kube:AppArmor=true"],
         'Error: invalid argument "kube:AppArmor=true" for "--feature-gates" flag: '
         "unrecognized feature gate: kube:AppArmor"),
    ]
    for name, comp, tag, args, want in pflag_cases:
        code, err = run_fake(comp, IMG % (comp, tag), args)
        lines = err.rstrip("\n").split("\n")
        check("release data: %s -> exit 1, usage then %r" % (name, want), code == 1
              and lines[-1] == want and "Usage:\n  %s [flags]" % comp in err
              and err.index("Usage:") < err.index(want), "exit %s stderr %r" % (code, err[-600:]))
    code, err = run_fake("kube-apiserver", IMG % ("kube-apiserver", "v1.33.1"), ["--cloud-provider=x"])
    check("release data: the usage lists the flags of this binary (no --cloud-provider in 1.33)",
          "      --etcd-servers\n" in err and "      --cloud-provider\n" not in err, err[:300])

    klog_cases = [
        ("1.31 does not know InTreePluginvSphereUnregister (removed in 1.31)", "kube-apiserver",
         "v1.31.4", ["--feature-gates=InTreePluginvSphereUnregister=true"],
         "unrecognized feature gate: InTreePluginvSphereUnregister"),
        ("a removed gate with the kube: prefix", "kube-scheduler", "v1.33.1",
         ["--feature-gates", "kube:AppArmor=true"], "unrecognized feature gate: AppArmor"),
        ("a removed gate, whatever the emulated version", "kube-controller-manager", "v1.34.2",
         ["--emulated-version=1.31", "--feature-gates=DevicePluginCDIDevices=true"],
         "unrecognized feature gate: DevicePluginCDIDevices"),
        ("a locked gate set to the other value", "kube-controller-manager", "v1.32.3",
         ["--feature-gates=APIListChunking=false"],
         "cannot set feature gate APIListChunking to false, feature is locked to true"),
        ("the lock at the emulated version: 1.36 at 1.36", "kube-apiserver", "v1.36.0",
         ["--feature-gates=ImageMaximumGCAge=false"],
         "cannot set feature gate ImageMaximumGCAge to false, feature is locked to true"),
        ("a gate newer than the emulated version is PreAlpha", "kube-apiserver", "v1.35.0",
         ["--emulated-version=1.34", "--feature-gates=UserNamespacesHostNetworkSupport=true"],
         "cannot set feature gate UserNamespacesHostNetworkSupport to true, feature is PreAlpha "
         "at emulated version 1.34"),
        ("kube: prefix mixed with bare names", "kube-apiserver", "v1.34.2",
         ["--feature-gates=kube:Foo=true", "--feature-gates=Bar=false"],
         "set kube feature gates with default empty prefix or kube: prefix consistently, do not mix use"),
        ("kube-apiserver 1.30 refuses admission plugin SecurityContextDeny (removed in 1.30)",
         "kube-apiserver", "v1.30.14", ["--enable-admission-plugins=NodeRestriction,SecurityContextDeny"],
         'enable-admission-plugins plugin "SecurityContextDeny" is unknown'),
        ("kube-apiserver 1.31: PersistentVolumeLabel, enabled and disabled", "kube-apiserver", "v1.31.4",
         ["--enable-admission-plugins", "PersistentVolumeLabel", "--disable-admission-plugins=PersistentVolumeLabel"],
         '[enable-admission-plugins plugin "PersistentVolumeLabel" is unknown, '
         'disable-admission-plugins plugin "PersistentVolumeLabel" is unknown, '
         '[PersistentVolumeLabel] in enable-admission-plugins and disable-admission-plugins overlapped]'),
        ("... and in --admission-control", "kube-apiserver", "v1.35.0",
         ["--admission-control=NamespaceLifecycle,PersistentVolumeLabel"],
         'admission-control plugin "PersistentVolumeLabel" is unknown'),
    ]
    for name, comp, tag, args, want in klog_cases:
        code, err = run_fake(comp, IMG % (comp, tag), args)
        check("release data: %s -> exit 1, %r" % (name, want[:70]), code == 1 and klog_err(want) in err
              and "Usage:" not in err, "exit %s stderr %r" % (code, err[-600:]))

    # What the release before still has, and what the data does not name, starts.
    started = [
        ("kube-apiserver", "v1.32.3", ["--cloud-provider=external", "--cloud_config=/etc/kubernetes/cloud.conf"]),
        ("kube-controller-manager", "v1.30.14", ["--horizontal-pod-autoscaler-upscale-delay=3m0s",
                                                 "--volume-host-allow-local-loopback=false"]),
        ("kube-apiserver", "v1.30.14", ["--feature-gates=InTreePluginvSphereUnregister=true,APIListChunking=true",
                                        "--enable-admission-plugins=NodeRestriction,PersistentVolumeLabel"]),
        ("kube-scheduler", "v1.32.3", ["--feature-gates=kube:AppArmor=true,kube:APIListChunking=true"]),
        ("kube-apiserver", "v1.36.0", ["--emulated-version=1.34", "--feature-gates=ImageMaximumGCAge=false"]),
        ("kube-apiserver", "v1.35.0", ["--feature-gates=NotAGateTheDataNames=true",
                                       "--enable-admission-plugins=NotAPluginTheDataNames"]),
        # a flag of the release's list (flags-1.3x.yaml) that the fake's own table lacks
        ("kube-controller-manager", "v1.33.1", ["--concurrent-statefulset-syncs=5"]),
    ]
    for comp, tag, args in started:
        with Fake(comp, IMG % (comp, tag), args) as f:
            ok = f.wait_code("/healthz", 200) is not None
            err = f.close()
            check("release data: starts: %s %s %s" % (comp, tag, " ".join(args)), ok, err[-600:])

    # The data is read from $CPLET_RELEASE_DATA: a copy that removes a flag changes the fake.
    import shutil
    data = os.path.join(TMP, "release-data")
    shutil.copytree(os.path.join(simnode.REPO, "data", "releases"), data)
    with open(os.path.join(data, "removed-flags.yaml"), "a") as f:
        f.write('\n- {component: kube-scheduler, flag: pod-max-in-unschedulable-pods-duration, '
                'removedIn: "1.34", fix: "test", source: "test"}\n')
    env = dict(fake_env(IMG % ("kube-scheduler", "v1.34.2")), CPLET_RELEASE_DATA=data)
    p = subprocess.run([os.path.join(BIN, "kube-scheduler"), "--pod-max-in-unschedulable-pods-duration=5m"],
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    check("release data: read from $CPLET_RELEASE_DATA (a flag removed there is refused)",
          p.returncode == 1 and p.stderr.decode().endswith(
              "Error: unknown flag: --pod-max-in-unschedulable-pods-duration\n"), p.stderr[-300:])
    env["CPLET_RELEASE_DATA"] = os.path.join(TMP, "no-such-dir")
    p = subprocess.run([os.path.join(BIN, "kube-scheduler")], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    check("release data: a $CPLET_RELEASE_DATA that is not there is an error, not a silent pass",
          p.returncode == 1 and b"CPLET_RELEASE_DATA=" in p.stderr, p.stderr[-300:])

    # On the simulated node: the kubelet runs the manifests, the containers exit 1, and their
    # logs under /var/log/pods carry the texts.
    root = os.path.join(TMP, "node-removed")
    node = SimNode(root, "v1.33.1", backoff=0.3, backoff_max=1.0, flags={
        "kube-apiserver": {"cloud-provider": "external"},
        "kube-controller-manager": {"feature-gates": "AppArmor=true"},
        "kube-scheduler": {"feature-gates": "SidecarContainers=false"},
    })
    want = {
        "kube-apiserver": "Error: unknown flag: --cloud-provider",
        "kube-controller-manager": klog_err("unrecognized feature gate: AppArmor"),
        "kube-scheduler": klog_err("cannot set feature gate SidecarContainers to false, feature is locked to true"),
    }
    try:
        t0 = time.time()
        node.up(wait=False)
        got = {}
        for comp in simnode.COMPONENTS:
            ev = node.wait_event(lambda e, c=comp: e["event"] == "exit" and e["file"] == c + ".yaml",
                                 20, since=t0)
            logs = ""
            pods = os.path.join(root, "var", "log", "pods")
            for d in os.listdir(pods) if os.path.isdir(pods) else []:
                if d.startswith("kube-system_%s-" % comp):
                    cdir = os.path.join(pods, d, comp)
                    for n in sorted(os.listdir(cdir)):
                        with open(os.path.join(cdir, n)) as f:
                            logs += f.read()
            got[comp] = (ev and ev["code"], logs)
            check("sim node v1.33.1: %s exits 1, its /var/log/pods log (CRI format, stderr) has %r"
                  % (comp, want[comp]),
                  ev is not None and ev["code"] == 1
                  and any(l.split(" ", 3)[1:3] == ["stderr", "F"] and l.endswith(want[comp])
                          for l in logs.splitlines()),
                  "event %s log %r" % (ev, logs[-800:]))
        # without them the same node starts
        for comp, flag in (("kube-apiserver", "--cloud-provider"), ("kube-controller-manager", "--feature-gates"),
                           ("kube-scheduler", "--feature-gates")):
            text = "".join(l for l in node.read_manifest(comp).splitlines(keepends=True)
                           if not l.strip().startswith("- " + flag + "="))
            node.write_manifest(comp, text)
        check("sim node v1.33.1: the manifests without them start, all three healthy",
              node.wait_healthy(30), node.health())
    finally:
        node.down()


def test_knobs():
    # 3 s: on a loaded machine the interpreter alone may take over a second to open its port
    knobs = {"kube-apiserver": {"startupDelay": 3.0}}
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.34.2"), knobs=knobs) as f:
        first = None
        deadline = time.monotonic() + 6
        while first is None and time.monotonic() < deadline:
            first, _ = f.get("/livez")
            time.sleep(0.01)
        early = time.monotonic() - f.t_start
        t200 = f.wait_code("/livez", 200, timeout=8.0)
        check("startupDelay 3.0: port open, /livez 500 at first, then 200 after >= 3.0 s",
              first == 500 and early < 3.0 and t200 is not None and t200 >= 2.98,
              "first=%s at %.2fs, 200 at %s" % (first, early, t200))
        code, _ = f.get("/readyz")
        check("startupDelay: /readyz 200 afterwards", code == 200, code)
    knobs = {"kube-scheduler": {"neverReady": True}}
    with Fake("kube-scheduler", IMG % ("kube-scheduler", "v1.34.2"), knobs=knobs) as f:
        live = f.wait_code("/livez", 200)
        time.sleep(0.3)
        r, body = f.get("/readyz")
        h, _ = f.get("/healthz")
        check("neverReady: /livez 200, /readyz and /healthz 500", live is not None and r == 500 and h == 500,
              (live, r, h, body))
    knobs = {"kube-apiserver": {"versions": {"v1.35.0": {"failVersions": ["v1.35.0"]}}}}
    t = time.monotonic()
    p = subprocess.run([os.path.join(BIN, "kube-apiserver")], env=fake_env(IMG % ("kube-apiserver", "v1.35.0"), knobs),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    err = p.stderr.decode()
    check("failVersions: exit 1 at once with a fatal 'command failed' line",
          p.returncode == 1 and 'run.go:72] "command failed" err="simulated failure of v1.35.0"' in err
          and err.splitlines()[-1].startswith("E") and time.monotonic() - t < 5, err)
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.34.2"), knobs=knobs) as f:
        check("failVersions: other versions are not affected", f.wait_code("/readyz", 200) is not None)
    knobs = {"kube-controller-manager": {"crashAfter": 0.3, "exitMessage": "boom"}}
    with Fake("kube-controller-manager", IMG % ("kube-controller-manager", "v1.34.2"), knobs=knobs) as f:
        try:
            code = f.p.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - f.t_start
        err = f.close()
        check("crashAfter 0.3: exit 1 after ~0.3 s with the message", code == 1 and 0.3 <= took < 3 and "boom" in err,
              (code, took, err))
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.34.2")) as f:
        f.wait_code("/livez", 200)
        t = time.monotonic()
        f.p.send_signal(signal.SIGTERM)
        code = f.p.wait(5)
        took = time.monotonic() - t
        check("SIGTERM: exit 0 within 100 ms (took %.0f ms)" % (took * 1000), code == 0 and took < 0.5,
              (code, took))


# --------------------------------------------------------------------------------------
# kube-apiserver authentication: --client-ca-file, --anonymous-auth, --authentication-config
# --------------------------------------------------------------------------------------

AUTHN_HEALTH_ONLY = """apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
"""
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def write_tmp(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def cert_get(port, path, cert, key):
    """(status, content type, body) of a GET with a client certificate (server not verified,
    as probes do)."""
    import http.client
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return None, None, str(e)
    finally:
        conn.close()


def test_authentication():
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "apiserver"))
    import pki as pkimod
    ca = pkimod.PKI(os.path.join(TMP, "pki"))
    crt, key = ca.client_cert("system:node:n1", ["system:nodes"])
    authn = write_tmp("authn-health.yaml", AUTHN_HEALTH_ONLY)
    img = IMG % ("kube-apiserver", "v1.34.2")

    with Fake("kube-apiserver", img, ["--client-ca-file=" + ca.ca_cert,
                                      "--authentication-config=" + authn]) as f:
        up = f.wait_code("/livez", 200) is not None
        code, ctype, body = cert_get(f.port, "/version", None, None)
        try:
            st = json.loads(body)
        except ValueError:
            st = None
        check("anonymous only for health paths: /version anonymous -> 401 with the Unauthorized Status",
              up and code == 401 and ctype == "application/json" and st == UNAUTHORIZED,
              (up, code, ctype, body, f.close() if not up else ""))
        codes = {p: cert_get(f.port, p, None, None)[0] for p in ("/livez", "/readyz", "/healthz", "/api")}
        check("anonymous only for health paths: /livez /readyz /healthz 200, /api 401",
              codes == {"/livez": 200, "/readyz": 200, "/healthz": 200, "/api": 401}, codes)
        code, _, body = cert_get(f.port, "/version", crt, key)
        v = json.loads(body) if code == 200 else {}
        check("a client certificate of the --client-ca-file CA reads /version (200, the binary's)",
              code == 200 and v.get("gitVersion") == "v1.34.2", (code, body))
        code, _, body = cert_get(f.port, "/api", crt, key)
        msg = json.loads(body).get("message") if code == 403 else None
        check("an authenticated user is not authorized beyond public info: 403 naming the user (CN)",
              msg == 'forbidden: User "system:node:n1" cannot get path "/api"', (code, body))

    with Fake("kube-apiserver", img, ["--client-ca-file=" + ca.ca_cert, "--anonymous-auth=false"]) as f:
        t = f.wait_code("/livez", 401)
        code, _, _ = cert_get(f.port, "/livez", crt, key)
        check("--anonymous-auth=false: /livez 401 anonymous, 200 with a client certificate",
              t is not None and code == 200, (t, code))

    with Fake("kube-apiserver", img, ["--anonymous-auth=false"]) as f:
        t = f.wait_code("/livez", 401)
        code, _, _ = cert_get(f.port, "/version", crt, key)
        check("without --client-ca-file no certificate is asked for: a client certificate is not "
              "seen (401)", t is not None and code == 401, (t, code))

    with Fake("kube-apiserver", img) as f:
        up = f.wait_code("/livez", 200) is not None
        code, _, _ = cert_get(f.port, "/version", None, None)
        code2, _, _ = cert_get(f.port, "/version", crt, key)
        check("no authentication flags: anonymous reads /version (200), a client certificate is "
              "not asked for (200 anyway)", up and code == 200 and code2 == 200, (up, code, code2))

    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.31.4"),
              ["--client-ca-file=" + ca.ca_cert, "--authentication-config=" + authn,
               "--feature-gates=AnonymousAuthConfigurableEndpoints=true"]) as f:
        t = f.wait_code("/livez", 200)
        code, _, _ = cert_get(f.port, "/version", None, None)
        check("1.31 with the AnonymousAuthConfigurableEndpoints gate on: the conditions apply",
              t is not None and code == 401, (t, code, f.close() if t is None else ""))

    no_anon = write_tmp("authn-none.yaml", "apiVersion: apiserver.config.k8s.io/v1beta1\n"
                                           "kind: AuthenticationConfiguration\n")
    with Fake("kube-apiserver", img, ["--anonymous-auth=false", "--authentication-config=" + no_anon]) as f:
        t = f.wait_code("/livez", 401)
        check("--anonymous-auth with a configuration file without `anonymous` is fine (the flag "
              "rules)", t is not None, f.close() if t is None else "")

    disabled_conds = write_tmp("authn-bad.yaml", AUTHN_HEALTH_ONLY.replace("enabled: true", "enabled: false"))
    v1 = write_tmp("authn-v1.yaml", AUTHN_HEALTH_ONLY.replace("/v1beta1", "/v1"))
    fatal = '"command failed" err="'
    for name, tag, args, want in [
        ("--anonymous-auth=true and `anonymous` in --authentication-config", "v1.34.2",
         ["--anonymous-auth=true", "--authentication-config=" + authn],
         fatal + "anonymous: Forbidden: --anonymous-auth flag cannot be set when anonymous field is "
         "configured in authentication configuration file\""),
        ("--anonymous-auth=false and `anonymous` in --authentication-config (set is set)", "v1.35.0",
         ["--authentication-config", authn, "--anonymous-auth=false"],
         "--anonymous-auth flag cannot be set when anonymous field is configured"),
        ("`anonymous` disabled with conditions", "v1.34.2", ["--authentication-config=" + disabled_conds],
         fatal + "invalid authentication configuration: anonymous.conditions: Invalid value: "
         "[]apiserver.AnonymousAuthCondition{apiserver.AnonymousAuthCondition{Path:\\\"/livez\\\"}, "),
        ("`anonymous` on 1.31 without the feature gate", "v1.31.4", ["--authentication-config=" + authn],
         "anonymous: Forbidden: anonymous is not supported when AnonymousAuthConfigurableEndpoints "
         "feature gate is disabled"),
        ("apiserver.config.k8s.io/v1 before 1.34", "v1.33.5", ["--authentication-config=" + v1],
         'no kind \\"AuthenticationConfiguration\\" is registered for version '
         '\\"apiserver.config.k8s.io/v1\\"'),
        ("--client-ca-file that does not exist", "v1.34.2",
         ["--client-ca-file=" + os.path.join(TMP, "no-such-ca.crt")],
         fatal + "open %s: no such file or directory\"" % os.path.join(TMP, "no-such-ca.crt")),
        ("--authentication-config that does not exist", "v1.34.2",
         ["--authentication-config=" + os.path.join(TMP, "no-such.yaml")],
         "failed to load authentication configuration from file"),
    ]:
        code, err = run_fake("kube-apiserver", IMG % ("kube-apiserver", tag), args)
        check("authentication at start: %s -> exit 1, %r" % (name, want[-70:]),
              code == 1 and want in err, "exit %s stderr %r" % (code, err))
    with Fake("kube-apiserver", IMG % ("kube-apiserver", "v1.34.2"), ["--authentication-config=" + v1]) as f:
        check("apiserver.config.k8s.io/v1 from 1.34", f.wait_code("/livez", 200) is not None, f.close())

    with open(os.path.join(simnode.template_dir(), "kube-apiserver.yaml")) as f:
        tmpl = f.read()
    plain = simnode.render_manifest("kube-apiserver", tmpl, "v1.34.2", 20000)
    given = simnode.render_manifest("kube-apiserver", tmpl, "v1.34.2", 20000,
                                    {"client-ca-file": ca.ca_cert, "authentication-config": authn})
    lines = [l.strip() for l in given.splitlines() if l.strip().startswith("- --")]
    check("simnode: the template's --client-ca-file (no such file here) is dropped unless a test "
          "gives one; given flags land in kubeadm's sorted order",
          "--client-ca-file=" not in plain.replace("--requestheader-client-ca-file=", "")
          and "- --client-ca-file=" + ca.ca_cert in lines
          and "- --authentication-config=" + authn in lines and lines == sorted(lines), lines)


# --------------------------------------------------------------------------------------
# kubelet and simnode
# --------------------------------------------------------------------------------------

def add_flag(text, flag):
    """Adds a command flag after the binary's line (as cplet would, order aside)."""
    lines = text.splitlines(keepends=True)
    for i, l in enumerate(lines):
        if l.strip() in ("- kube-apiserver", "- kube-controller-manager", "- kube-scheduler"):
            indent = l[:len(l) - len(l.lstrip())]
            lines.insert(i + 1, "%s- %s\n" % (indent, flag))
            return "".join(lines)
    raise AssertionError("no command")


def test_kubelet():
    root = os.path.join(TMP, "node1")
    node = SimNode(root, "v1.34.2", backoff=0.2, backoff_max=2.0)
    t = time.monotonic()
    node.up(timeout=20)
    check("up: all three components healthy (%.2f s)" % (time.monotonic() - t),
          node.health() == {c: 200 for c in simnode.COMPONENTS}, node.health())
    st = os.stat(node.manifest_dir)
    check("up: manifest dir 0700, three manifests, no etcd",
          (st.st_mode & 0o777) == 0o700
          and sorted(os.listdir(node.manifest_dir)) == sorted(c + ".yaml" for c in simnode.COMPONENTS),
          (oct(st.st_mode), os.listdir(node.manifest_dir)))
    import yaml
    pids = node.pids()
    exact = []
    for comp in simnode.COMPONENTS:
        c = yaml.safe_load(node.read_manifest(comp))["spec"]["containers"][0]
        want = c.get("command", []) + c.get("args", [])
        pid = pids[comp + ".yaml"]
        exact.append((comp, cmdline(pid) == want, proc_uid(pid) == os.geteuid(), comm(pid) == comp[:15],
                      cmdline(pid)[:2]))
    check("each component's /proc/PID/cmdline is exactly the manifest's command + args (argv[0] "
          "included, nothing in front), its uid the kubelet's, its comm the binary's",
          all(e[1] and e[2] and e[3] for e in exact), exact)
    pid = pids["kube-apiserver.yaml"]
    kids = children(pid)
    check("the fake itself runs as the launcher's only child (python3 <bin-dir>/kube-apiserver ...)",
          len(kids) == 1 and cmdline(kids[0])[1:2] == [os.path.join(BIN, "kube-apiserver")],
          [(k, cmdline(k)[:2]) for k in kids])

    # restart on change; measure kubelet reaction and start -> /livez
    file = "kube-apiserver.yaml"
    orig = node.read_manifest("kube-apiserver")
    react, ready = [], []
    ok_order = True
    for i in range(6):
        old_pid = node.pids().get(file)
        text = add_flag(orig, "--emulated-version=1.33") if i % 2 == 0 else orig
        t0 = time.time()
        node.write_manifest("kube-apiserver", text)
        ev = node.wait_event(lambda e: e["event"] == "start" and e["file"] == file, 10, since=t0)
        if ev is None:
            ok_order = False
            break
        while https_get(node.ports["kube-apiserver"], "/livez", 1.0)[0] != 200:
            if time.time() - ev["t"] > 10:
                break
            time.sleep(0.002)
        t_live = time.time()
        react.append(ev["t"] - t0)
        ready.append(t_live - ev["t"])
        evs = [e for e in node.events(file=file) if e["t"] >= t0]
        kinds = [(e["event"], e["pid"]) for e in evs]
        if not (len(kinds) >= 2 and kinds[0] == ("stop", old_pid) and kinds[1][0] == "start"
                and kinds[1][1] != old_pid):
            ok_order = False
    check("manifest change: stop(old pid) then start(new pid), every time", ok_order,
          json.dumps(node.events(file=file)[-4:]))
    v = node.version() or {}
    check("after the change /version shows the new effective versions (emulation 1.34 again)",
          v.get("emulationMinor") == "34" and v.get("minCompatibilityMinor") == "33", v)
    if react:
        note("kubelet reaction (rename -> new process started): median %.1f ms, max %.1f ms over %d"
             % (statistics.median(react) * 1000, max(react) * 1000, len(react)))
        note("process start -> /livez 200 (startupDelay 0): median %.1f ms, max %.1f ms"
             % (statistics.median(ready) * 1000, max(ready) * 1000))

    # dot-file and comment-only change are not restarts
    n0 = len(node.events())
    with open(os.path.join(node.manifest_dir, ".kube-apiserver.yaml.swp"), "w") as f:
        f.write(orig.replace("v1.34.2", "v1.35.0"))
    node.write_manifest("kube-apiserver", "# edited by hand\n" + orig)
    time.sleep(0.3)
    check("a dot-file and a comment-only edit start nothing", len(node.events()) == n0,
          node.events()[n0:])
    os.unlink(os.path.join(node.manifest_dir, ".kube-apiserver.yaml.swp"))

    # a backup without a dot runs as a second pod (and crash-loops on the taken port)
    bak = os.path.join(node.manifest_dir, "kube-apiserver.yaml.bak")
    t0 = time.time()
    with open(bak, "w") as f:
        f.write(orig)
    ev = node.wait_event(lambda e: e["event"] == "exit" and e["file"] == "kube-apiserver.yaml.bak", 5, since=t0)
    check("kube-apiserver.yaml.bak runs as a second pod (which fails on the port in use)",
          ev is not None and ev["code"] == 1, node.events(file="kube-apiserver.yaml.bak"))
    os.unlink(bak)
    time.sleep(0.5)
    n_bak = len(node.events(file="kube-apiserver.yaml.bak"))
    time.sleep(0.5)
    check("removing the .bak stops its crash loop",
          len(node.events(file="kube-apiserver.yaml.bak")) == n_bak and "kube-apiserver.yaml.bak" not in node.pids(),
          node.events(file="kube-apiserver.yaml.bak"))

    # unparseable file: logged, old pod keeps running
    file = "kube-controller-manager.yaml"
    cm_pid = node.pids().get(file)
    cm_orig = node.read_manifest("kube-controller-manager")
    t0 = time.time()
    node.write_manifest("kube-controller-manager", "apiVersion: v1\nkind: Pod\nspec: [\n  broken")
    ev = node.wait_event(lambda e: e["event"] == "invalid" and e["file"] == file, 5, since=t0)
    time.sleep(0.2)
    check("an unparseable manifest is logged and ignored; the pod keeps running",
          ev is not None and node.pids().get(file) == cm_pid and simnode.pid_alive(cm_pid),
          (ev, node.pids()))
    node.write_manifest("kube-controller-manager", cm_orig)
    time.sleep(0.2)
    check("restoring the same manifest is not a restart", node.pids().get(file) == cm_pid, node.pids())

    # crash -> restart with doubling back-off
    file = "kube-scheduler.yaml"
    starts = []
    orphans = []
    for i in range(3):
        pid = node.pids().get(file)
        kids = children(pid)
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        ev = node.wait_event(lambda e: e["event"] == "start" and e["file"] == file, 10, since=t0)
        ex = [e for e in node.events(file=file) if e["event"] == "exit" and e["pid"] == pid]
        starts.append((ev["t"] - ex[0]["t"]) if ev and ex else None)
        orphans += [k for k in kids if simnode.pid_alive(k)]
        node.wait_healthy(5, ["kube-scheduler"])
    check("a crashed process is restarted with back-off 0.2, 0.4, 0.8 s (%s)"
          % ", ".join("%.2f" % s if s is not None else "-" for s in starts),
          all(s is not None for s in starts) and 0.2 <= starts[0] < 0.6 and 0.4 <= starts[1] < 0.9
          and 0.8 <= starts[2] < 1.5, starts)
    ex = [e for e in node.events(file=file) if e["event"] == "exit"]
    check("a crash is an 'exit' event with the code (-9)", ex and ex[0]["code"] == -9, ex[:1])
    check("SIGKILL of the container's process also ends the fake it runs (no orphan)", not orphans,
          [(k, cmdline(k)) for k in orphans])

    # knob-driven crash loop of a new version, then back
    node.set_knobs({"kube-scheduler": {"failVersions": ["v1.35.0"]}})
    sched = node.read_manifest("kube-scheduler")
    t0 = time.time()
    node.write_manifest("kube-scheduler", sched.replace(":v1.34.2", ":v1.35.0"))
    ev = node.wait_event(lambda e: e["event"] == "exit" and e["file"] == file and e["code"] == 1, 5, since=t0)
    check("failVersions through the kubelet: the new image exits 1", ev is not None and "v1.35.0" in ev["image"], ev)
    node.write_manifest("kube-scheduler", sched)
    check("rolling the manifest back makes it healthy again", node.wait_healthy(5, ["kube-scheduler"]),
          node.health())

    # JSON manifests are pods too
    import yaml
    doc = yaml.safe_load(node.read_manifest("kube-controller-manager"))
    doc["spec"]["containers"][0]["command"].append("--emulated-version=1.33")
    cm_pid = node.pids().get("kube-controller-manager.yaml")
    t0 = time.time()
    node.write_manifest("kube-controller-manager", json.dumps(doc, indent=2))
    ev = node.wait_event(lambda e: e["event"] == "start" and e["file"] == "kube-controller-manager.yaml", 5, since=t0)
    check("a JSON manifest is loaded (restart with the new flag)",
          ev is not None and ev["pid"] != cm_pid and "--emulated-version=1.33" in ev["argv"], ev)

    # $(VAR) in command/args is expanded from the container's env, as the kubelet does
    doc = yaml.safe_load(node.read_manifest("kube-controller-manager"))
    c = doc["spec"]["containers"][0]
    c["env"] = [{"name": "PORT", "value": str(node.ports["kube-controller-manager"])},
                {"name": "ADDR", "value": "127.0.0.1"},
                {"name": "BIND", "value": "--bind-address=$(ADDR)"}]
    c["command"] = [a for a in c["command"] if not a.startswith(("--secure-port", "--bind-address"))]
    c["args"] = ["--secure-port=$(PORT)", "$(BIND)", "--cluster-name=$$(PORT)-$(NOPE)"]
    t0 = time.time()
    node.write_manifest("kube-controller-manager", json.dumps(doc, indent=2))
    ev = node.wait_event(lambda e: e["event"] == "start" and e["file"] == "kube-controller-manager.yaml", 5, since=t0)
    want = c["command"] + ["--secure-port=%d" % node.ports["kube-controller-manager"],
                           "--bind-address=127.0.0.1", "--cluster-name=$(PORT)-$(NOPE)"]
    check("$(VAR) in args is expanded from env like the kubelet ($$ escapes, unknown stays literal)",
          ev is not None and cmdline(ev["pid"]) == want and ev["argv"] == want,
          (ev and cmdline(ev["pid"]), want))
    check("... and the component serves on the expanded port",
          node.wait_healthy(5, ["kube-controller-manager"]), node.health())

    # securityContext.runAsUser: the process runs as that user (a non-root kubelet cannot)
    doc = yaml.safe_load(node.read_manifest("kube-scheduler"))
    t0 = time.time()
    if os.geteuid() == 0 and not readable_by_others(HERE):
        # The fake behind the launcher is this tree's Python: uid 65534 must reach it.
        skip("runAsUser 65534: the container's process and the fake run as uid 65534, and serve",
             "%s is not reachable by other users (a checkout under /root): uid 65534 cannot run the fake" % HERE)
    elif os.geteuid() == 0:
        for d in (TMP, root, node.sim_dir, node.cert_dir):
            os.chmod(d, 0o755)  # let user 65534 reach its certificate and knobs
        doc["spec"]["containers"][0]["securityContext"] = {"runAsUser": 65534}
        node.write_manifest("kube-scheduler", json.dumps(doc, indent=2))
        ev = node.wait_event(lambda e: e["event"] == "start" and e["file"] == "kube-scheduler.yaml", 5, since=t0)
        check("runAsUser 65534: the container's process and the fake run as uid 65534, and serve",
              ev is not None and proc_uid(ev["pid"]) == 65534 and node.wait_healthy(15, ["kube-scheduler"])
              and [proc_uid(k) for k in children(ev["pid"])] == [65534],
              (ev, ev and proc_uid(ev["pid"]), node.health(), node._tail("kube-scheduler.yaml.log")))
    else:
        doc["spec"]["containers"][0]["securityContext"] = {"runAsUser": os.geteuid() + 1}
        node.write_manifest("kube-scheduler", json.dumps(doc, indent=2))
        ev = node.wait_event(lambda e: e["event"] == "exit" and e["file"] == "kube-scheduler.yaml", 5, since=t0)
        check("runAsUser of another user: a non-root simulated kubelet fails to start it",
              ev is not None and ev["code"] == 126 and "not root" in ev.get("reason", ""), ev)
    node.write_manifest("kube-scheduler", sched)
    node.wait_healthy(5, ["kube-scheduler"])

    # etcd (no fake binary) is skipped quietly, once
    t0 = time.time()
    with open(os.path.join(simnode.template_dir(), "etcd.yaml")) as f:
        node.write_manifest("etcd", f.read())
    ev = node.wait_event(lambda e: e["file"] == "etcd.yaml", 5, since=t0)
    time.sleep(0.5)
    check("etcd.yaml: one 'skip' event, nothing runs, no crash loop",
          ev is not None and ev["event"] == "skip" and len(node.events(file="etcd.yaml")) == 1
          and "etcd.yaml" not in node.pids(), node.events(file="etcd.yaml"))

    # deletion
    pid = node.pids().get(file)
    t0 = time.time()
    os.unlink(node.manifest_path("kube-scheduler"))
    ev = node.wait_event(lambda e: e["event"] == "stop" and e["file"] == file, 5, since=t0)
    check("deleting a manifest stops its pod", ev is not None and ev["pid"] == pid and not simnode.pid_alive(pid),
          ev)

    # down
    ports = dict(node.ports)
    left = node.down()
    pg = procs_with(root)
    pg2 = [p for port in ports.values() for p in procs_with("--secure-port=%d" % port)]
    check("down leaves no processes (marker scan and command lines in /proc)", not left and not pg and not pg2,
          (left, pg, pg2))


def test_cli_and_parallel():
    roots = [os.path.join(TMP, "cli%d" % i) for i in range(2)]
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "simnode.py"), "up", "--root", r,
                               "--version", "v1.33.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for r in roots]
    outs = [p.communicate(timeout=30) for p in procs]
    infos = []
    for p, (out, err) in zip(procs, outs):
        try:
            infos.append(json.loads(out.decode().strip().splitlines()[-1]))
        except (ValueError, IndexError):
            infos.append(None)
    ok = all(p.returncode == 0 for p in procs) and all(infos)
    check("two nodes come up in parallel through the CLI", ok, [o[1].decode() for o in outs])
    if ok:
        allports = [p for i in infos for p in i["ports"].values()]
        check("their ports do not collide", len(set(allports)) == 6, allports)
        st = subprocess.run([sys.executable, os.path.join(HERE, "simnode.py"), "status", "--root", roots[0]],
                            stdout=subprocess.PIPE)
        s = json.loads(st.stdout)
        check("status: kubelet alive, three healthy components, apiserver v1.33.5",
              st.returncode == 0 and s["kubelet_alive"]
              and all(c["health"] == 200 for c in s["components"].values())
              and s["apiserverVersion"]["gitVersion"] == "v1.33.5", s)
        # a kubelet killed hard does not leave orphans behind
        kpid = infos[1]["kubelet_pid"]
        os.kill(kpid, signal.SIGKILL)
        deadline = time.monotonic() + 3
        while simnode.node_processes(roots[1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        check("components exit when their kubelet is SIGKILLed", not simnode.node_processes(roots[1]),
              simnode.node_processes(roots[1]))
    for r in roots:
        d = subprocess.run([sys.executable, os.path.join(HERE, "simnode.py"), "down", "--root", r],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check("CLI down %s: exit 0, nothing left" % os.path.basename(r),
              d.returncode == 0 and not simnode.node_processes(r), d.stderr.decode())


def test_expansion():
    """The fake kubelet's $(VAR) expansion, on the cases cplet's unit test (test-probe) uses."""
    import fake_kubelet
    env = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_EMPTY": "", "VAR_REF": "$(VAR_A)"}
    cases = [("$(VAR_A)", "A"), ("___$(VAR_B)___", "___B___"), ("$(VAR_A)-$(VAR_A)", "A-A"),
             ("$(VAR_A)$(VAR_B)", "AB"), ("f000-$$VAR_A", "f000-$VAR_A"), ("foo\\$(VAR_C)bar", "foo\\Cbar"),
             ("$$$(VAR_B)$$", "$B$"), ("$$(VAR_A)", "$(VAR_A)"), ("$$$$(VAR_A)", "$$(VAR_A)"),
             ("$$$$$(VAR_A)", "$$A"), ("$(VAR_EMPTY)", ""), ("$(UNKNOWN)", "$(UNKNOWN)"),
             ("--x=$(UNKNOWN)-$(VAR_A)", "--x=$(UNKNOWN)-A"), ("$(VAR_A", "$(VAR_A"), ("$VAR_A", "$VAR_A"),
             ("$", "$"), ("a$", "a$"), ("$$", "$"), ("$()", "$()"), ("$(VAR_A))", "A)"),
             ("$((VAR_A))", "$((VAR_A))"), ("$(VAR_REF)", "$(VAR_A)"), ("", "")]
    bad = [(i, fake_kubelet.expand(i, env), o) for i, o in cases if fake_kubelet.expand(i, env) != o]
    check("fake kubelet: $(VAR) expansion follows the kubelet's rules (%d cases)" % len(cases), not bad, bad)
    c = {"name": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-$(LATER)"},
                              {"name": "LATER", "value": "3"}, {"name": "E"}, {"name": "A", "value": "2"}]}
    env = fake_kubelet.container_env(c, {}, {})
    check("fake kubelet: env values expand with the entries before them; the last one wins",
          env == {"A": "2", "B": "1-$(LATER)", "LATER": "3", "E": ""}, env)


def main():
    t = time.monotonic()
    only = os.environ.get("CPLET_SIM_TESTS")  # e.g. "test_release_data" while developing
    for fn in (test_expansion, test_version_endpoint, test_validation, test_knobs, test_authentication,
               test_release_data, test_kubelet, test_cli_and_parallel):
        if only and fn.__name__ not in only.split(","):
            continue
        try:
            fn()
        except Exception:  # noqa: BLE001
            check("%s raised no exception" % fn.__name__, False, traceback.format_exc())
    ok = emit_tap()
    for n in _notes:
        print("# " + n)
    print("# total %.1f s" % (time.monotonic() - t))
    for r in ("node1", "cli0", "cli1", "node-removed"):
        path = os.path.join(TMP, r)
        if os.path.isdir(path):
            SimNode(path).down()
    if ok:
        import shutil
        shutil.rmtree(TMP, ignore_errors=True)
    else:
        print("# work files kept in %s" % TMP)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
