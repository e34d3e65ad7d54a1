# SPDX-License-Identifier: Apache-2.0
"""Leader election of the fake kube-controller-manager and kube-scheduler, as client-go's
tools/leaderelection does it with a coordination.k8s.io/v1 Lease lock:

  * identity `<hostname>_<uuid>` (the simulated node's name stands for the hostname);
  * flags (component-base LeaderElectionConfiguration): --leader-elect (default true),
    --leader-elect-lease-duration 15s, --leader-elect-renew-deadline 10s,
    --leader-elect-retry-period 2s, --leader-elect-resource-name (the component's name),
    --leader-elect-resource-namespace kube-system, --leader-elect-resource-lock leases;
    NewLeaderElector's checks (leaseDuration > renewDeadline > 1.2 x retryPeriod, all > 0);
  * tryAcquireOrRenew: GET; NotFound -> create; a lease held by another is taken only once
    this process has *seen it unchanged* for leaseDuration (client-go judges expiry by its own
    clock from the moment the record last changed, not by renewTime); then an Update (PUT with
    the resourceVersion read: a concurrent writer gets 409 and loses the round);
  * acquire: retry every retryPeriod with jitter 1.2; renew: every retryPeriod, and a renewal
    that does not succeed within renewDeadline loses the lease: the component logs
    "leaderelection lost" and exits 1, as both binaries do (the kubelet restarts it);
  * SIGTERM: the scheduler (ReleaseOnCancel: true in its makeLeaderElectionConfig) releases
    a lease it holds (holderIdentity "", leaseDurationSeconds 1), so another one takes over at
    once; the controller-manager (no ReleaseOnCancel) simply stops renewing, and another one
    takes over when the lease has not changed for leaseDuration. So does any component that
    crashes or is killed.
"""

import random
import re
import threading
import time
import uuid

JITTER = 1.2
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(Exception):
    pass


def parse_duration(flag, text):
    """Go's time.ParseDuration (as pflag's DurationVar) -> seconds."""
    s, total, sign = text, 0.0, 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ConfigError('invalid argument "%s" for "--%s" flag: time: invalid duration "%s"'
                          % (text, flag, text))
    while s:
        m = DURATION_RE.match(s)
        if not m:
            why = "missing unit in duration" if re.match(r"^[0-9.]+$", s) else "invalid duration"
            raise ConfigError('invalid argument "%s" for "--%s" flag: time: %s "%s"'
                              % (text, flag, why, text))
        total += float(m.group(1)) * UNITS[m.group(3)]
        s = s[m.end():]
    return sign * total


def micro_time(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def config_from_flags(component, flags):
    """None when leader election is off; else its settings. Raises ConfigError."""
    le = flags.get("leader-elect") or []
    if le and not le[-1]:
        return None

    def last(name, default):
        v = flags.get(name)
        return v[-1] if v else default
    cfg = {
        "lease": parse_duration("leader-elect-lease-duration", last("leader-elect-lease-duration", "15s")),
        "renew": parse_duration("leader-elect-renew-deadline", last("leader-elect-renew-deadline", "10s")),
        "retry": parse_duration("leader-elect-retry-period", last("leader-elect-retry-period", "2s")),
        "name": last("leader-elect-resource-name", component),
        "namespace": last("leader-elect-resource-namespace", "kube-system"),
        "lock": last("leader-elect-resource-lock", "leases"),
    }
    if cfg["lock"] != "leases":
        raise ConfigError('leader-elect-resource-lock "%s" is not simulated (only "leases", '
                          "the only lock the binaries still accept)" % cfg["lock"])
    # client-go leaderelection.NewLeaderElector
    if cfg["lease"] <= cfg["renew"]:
        raise ConfigError("leaseDuration must be greater than renewDeadline")
    if cfg["renew"] <= JITTER * cfg["retry"]:
        raise ConfigError("renewDeadline must be greater than retryPeriod*JitterFactor")
    if cfg["lease"] < 1 or cfg["renew"] < 1 or cfg["retry"] < 1:
        # the flags are whole seconds at least in every real configuration; the simulation
        # accepts fractions (faster tests) but not zero or negative values
        if min(cfg["lease"], cfg["renew"], cfg["retry"]) <= 0:
            raise ConfigError("leaseDuration, renewDeadline and retryPeriod must be greater "
                              "than zero")
    return cfg


class LeaderElector(threading.Thread):
    def __init__(self, client, cfg, identity, log, on_lost):
        super().__init__(name="leader-election", daemon=True)
        self.c, self.cfg, self.identity = client, cfg, identity
        self.log, self.on_lost = log, on_lost
        self.path = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s" % (
            cfg["namespace"], cfg["name"])
        self.observed = None          # the lease spec as last seen
        self.observed_time = 0.0      # monotonic time it last changed (our clock)
        self.leader = False
        self.release_on_cancel = False
        self.lock = threading.Lock()     # one request at a time: a release is the last one

    def desc(self):
        return "%s/%s" % (self.cfg["namespace"], self.cfg["name"])

    def try_acquire_or_renew(self, timeout):
        with self.lock:
            if self.released:
                return False
            return self._try_acquire_or_renew(timeout)

    released = False

    def release(self, timeout=1.0):
        """client-go's release(): an empty holder with a 1 s duration, if we hold it.
        Called from a signal handler: it never waits long for the elector's request."""
        import kubeclient
        if not self.lock.acquire(timeout=timeout):
            return False
        try:
            self.released = True
            if not self.leader or not self.observed:
                return False
            now = micro_time()
            try:
                old = self.c.request("GET", self.path, timeout=timeout)
                if (old.get("spec") or {}).get("holderIdentity") != self.identity:
                    return False
                old["spec"] = {"leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                               "leaseTransitions": self.observed.get("leaseTransitions") or 0}
                self.c.request("PUT", self.path, old, timeout=timeout)
            except (kubeclient.APIError, kubeclient.Unreachable) as e:
                self.log("E", "Failed to release lock: %s" % e)
                return False
            self.leader = False
            self.log("I", "released lease %s" % self.desc())
            return True
        finally:
            self.lock.release()

    def _try_acquire_or_renew(self, timeout):
        import kubeclient
        now_wall, now = time.time(), time.monotonic()
        record = {"holderIdentity": self.identity,
                  "leaseDurationSeconds": max(1, int(round(self.cfg["lease"]))),
                  "acquireTime": micro_time(now_wall), "renewTime": micro_time(now_wall),
                  "leaseTransitions": 0}
        try:
            old = self.c.request("GET", self.path, timeout=timeout)
        except kubeclient.APIError as e:
            if e.code != 404:
                self.log("E", "error retrieving resource lock %s: %s" % (self.desc(), e.message))
                return False
            try:
                self.c.request("POST", "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
                               % self.cfg["namespace"],
                               {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": {"name": self.cfg["name"],
                                             "namespace": self.cfg["namespace"]},
                                "spec": record}, timeout=timeout)
            except (kubeclient.APIError, kubeclient.Unreachable) as e:
                self.log("E", "error initially creating leader election record: %s" % e)
                return False
            self.observed, self.observed_time = record, now
            return True
        except kubeclient.Unreachable as e:
            self.log("E", "error retrieving resource lock %s: %s" % (self.desc(), e))
            return False
        spec = old.get("spec") or {}
        if spec != self.observed:
            self.observed, self.observed_time = spec, now
        holder = spec.get("holderIdentity") or ""
        dur = spec.get("leaseDurationSeconds") or 0
        if holder and holder != self.identity and self.observed_time + dur > now:
            return False
        if holder == self.identity:
            record["acquireTime"] = spec.get("acquireTime") or record["acquireTime"]
            record["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            record["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        body = dict(old)
        body["spec"] = record
        try:
            self.c.request("PUT", self.path, body, timeout=timeout)
        except (kubeclient.APIError, kubeclient.Unreachable) as e:
            self.log("E", "Failed to update lock: %s" % e)
            return False
        self.observed, self.observed_time = record, now
        return True

    def run(self):
        retry = self.cfg["retry"]
        self.log("I", 'attempting to acquire leader lease %s...' % self.desc())
        while not self.try_acquire_or_renew(timeout=max(1.0, retry)):
            time.sleep(retry * (1 + random.random() * JITTER))
        self.leader = True
        self.log("I", "successfully acquired lease %s" % self.desc())
        while True:
            time.sleep(retry)
            deadline = time.monotonic() + self.cfg["renew"]
            while True:
                left = deadline - time.monotonic()
                if left > 0 and self.try_acquire_or_renew(timeout=max(0.2, min(left, retry))):
                    break
                if time.monotonic() >= deadline:
                    self.leader = False
                    self.log("I", "failed to renew lease %s: timed out waiting for the "
                                  "condition" % self.desc())
                    self.on_lost()
                    return
                time.sleep(min(retry, max(0.0, deadline - time.monotonic())))


def start(component, flags, node_root, node_name, log, die):
    """Called by fake_component's main for kube-controller-manager and kube-scheduler.
    Returns the elector, or None when leader election is off or has no API server here."""
    import os
    try:
        cfg = config_from_flags(component, flags)
    except ConfigError as e:
        die(str(e))
    if cfg is None:
        return None
    kc = (flags.get("kubeconfig") or [""])[-1]
    if not kc:
        return None
    # the manifest says /etc/kubernetes/<x>.conf: on a simulated node that is under its root
    # (never the host's own file)
    path = os.path.join(node_root, kc.lstrip("/")) if node_root else kc
    if not os.path.exists(path):
        path = None
    if path is None:
        log("W", "kubeconfig %s is not there: no API server on this simulated node, leader "
                 "election off (the real binary would exit)" % kc)
        return None
    import kubeclient
    try:
        client = kubeclient.Client(path)
    except Exception as e:  # noqa: BLE001 - the binary's "invalid configuration" exit
        die("invalid configuration: %s: %s" % (path, e))
    identity = "%s_%s" % (node_name or "localhost", uuid.uuid4())
    el = LeaderElector(client, cfg, identity, log,
                       lambda: die("leaderelection lost"))
    el.release_on_cancel = component == "kube-scheduler"
    global ELECTOR
    ELECTOR = el
    el.start()
    return el


ELECTOR = None


def on_terminate():
    """Called by the fake component on SIGTERM, before it exits."""
    if ELECTOR is not None and ELECTOR.release_on_cancel:
        ELECTOR.release()
