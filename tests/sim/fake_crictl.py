#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A fake `crictl` for cplet's image pre-pull tests: installed as `crictl` in a temporary
directory put first in PATH. It behaves as cri-tools' crictl does for `pull` (read from
kubernetes-sigs/cri-tools cmd/crictl/main.go, image.go, main_unix.go, pkg/common and
k8s.io/cri-client's remote_image.go):

- global options before the command: --config/-c FILE ($CRI_CONFIG_FILE), --runtime-endpoint/-r
  ($CONTAINER_RUNTIME_ENDPOINT), --image-endpoint/-i ($IMAGE_SERVICE_ENDPOINT), --timeout/-t D
  (the connection timeout), --debug/-D; an option after the command is refused as urfave/cli
  refuses it;
- the configuration: --config, else /etc/crictl.yaml, else crictl.yaml beside the program
  ("Config ... does not exist, trying next" warning); a --config that cannot be read is fatal;
  keys runtime-endpoint, image-endpoint, timeout, debug; flags win over the file;
- the endpoint: the image endpoint, else the runtime endpoint, else the deprecated defaults
  unix:///run/containerd/containerd.sock, unix:///run/crio/crio.sock,
  unix:///var/run/cri-dockerd.sock tried in order (with their warnings);
- connecting: a real connect() to the unix socket; a missing socket or one nobody listens on
  fails as crictl does: `validate service connection: validate CRI v1 image API for endpoint
  "unix:///...": rpc error: code = Unavailable desc = connection error: desc = "transport:
  Error while dialing: dial unix /...: connect: no such file or directory"`;
- `pull IMAGE`: stdout "Image is up to date for sha256:<id>" and exit 0; an image the
  registry does not have: containerd's NotFound through crictl, exit 1;
- every message on stderr as logrus writes it when stderr is not a terminal
  (time="..." level=fatal msg="..."), after the cri-client's klog line, exit status 1.

Knobs (environment):
  CRICTL_FAKE_LOG      a file: one JSON line per call when it starts ({"call": "start", "argv",
                       "time", "pid"}) and when it ends ({"call": "end", "rc", "time", "pid",
                       "image"})
  CRICTL_FAKE_MISSING  comma-separated images the registry does not have (as given to pull)
  CRICTL_FAKE_DELAY    seconds each pull takes (float)
"""

import hashlib
import json
import os
import socket
import sys
import time

DEFAULT_CONFIG = "/etc/crictl.yaml"
DEFAULT_ENDPOINTS = ["unix:///run/containerd/containerd.sock", "unix:///run/crio/crio.sock",
                     "unix:///var/run/cri-dockerd.sock"]
GLOBAL_WITH_VALUE = {"--config": "config", "-c": "config", "--runtime-endpoint": "runtime-endpoint",
                     "-r": "runtime-endpoint", "--image-endpoint": "image-endpoint", "-i": "image-endpoint",
                     "--timeout": "timeout", "-t": "timeout"}
GLOBAL_BOOL = {"--debug": "debug", "-D": "debug"}


class Fatal(Exception):
    pass


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def logrus(level, msg):
    quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
    sys.stderr.write('time="%s" level=%s msg="%s"\n' % (now_rfc3339(), level, quoted))


def klog_error(where, text):
    t = time.time()
    sys.stderr.write("E%s %7d %s] %s\n" % (time.strftime("%m%d %H:%M:%S", time.localtime(t)) +
                                          ".%06d" % int((t % 1) * 1e6), os.getpid(), where, text))


def record(entry):
    path = os.environ.get("CRICTL_FAKE_LOG")
    if not path:
        return
    entry = dict(entry, pid=os.getpid(), time=time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def parse_args(argv):
    """(global options, command, command args)."""
    opts, i = {}, 0
    while i < len(argv):
        a = argv[i]
        name, _, inline = a.partition("=")
        if name in GLOBAL_WITH_VALUE:
            if inline or "=" in a:
                opts[GLOBAL_WITH_VALUE[name]] = inline
            elif i + 1 < len(argv):
                i += 1
                opts[GLOBAL_WITH_VALUE[name]] = argv[i]
            else:
                raise Fatal("flag needs an argument: %s" % name)
        elif a in GLOBAL_BOOL:
            opts[GLOBAL_BOOL[a]] = True
        elif a.startswith("-"):
            raise Fatal("flag provided but not defined: -%s" % a.lstrip("-"))
        else:
            return opts, a, argv[i + 1:]
        i += 1
    return opts, None, []


def read_config(path):
    """crictl's keys from a crictl.yaml ("key: value" lines)."""
    conf = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise Fatal("load config file: yaml: line: could not find expected ':'")
            key, value = key.strip(), value.strip().strip('"').strip("'")
            if key not in ("runtime-endpoint", "image-endpoint", "timeout", "debug", "pull-image-on-create",
                           "disable-pull-on-run"):
                raise Fatal("load config file: Config option '%s' is not valid" % key)
            conf[key] = value
    return conf


def server_config(opts):
    """The configuration file as crictl finds it (None when there is none)."""
    explicit = "config" in opts or bool(os.environ.get("CRI_CONFIG_FILE"))
    path = opts.get("config") or os.environ.get("CRI_CONFIG_FILE") or DEFAULT_CONFIG
    if not os.path.exists(path):
        beside = os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), "crictl.yaml")
        logrus("warning", 'Config "%s" does not exist, trying next: "%s"' % (path, beside))
        if not os.path.exists(beside):
            if explicit:
                raise Fatal("load config file: stat %s: no such file or directory" % beside)
            return None
        path = beside
    try:
        return read_config(path)
    except OSError as e:
        if explicit:
            raise Fatal("load config file: open %s: %s" % (path, e.strerror.lower()))
        return None
    except Fatal:
        if explicit:
            raise
        return None


def image_endpoints(opts):
    """([endpoints], set explicitly)."""
    conf = server_config(opts) or {}
    for key, env in (("image-endpoint", "IMAGE_SERVICE_ENDPOINT"), ("runtime-endpoint", "CONTAINER_RUNTIME_ENDPOINT")):
        value = opts.get(key) or os.environ.get(env) or conf.get(key)
        if value:
            return [value], True
        if key in opts:  # set, but empty
            raise Fatal("--%s is not set" % key)
    return DEFAULT_ENDPOINTS, False


def dial(endpoint, timeout):
    """None when a CRI server listens there, else the gRPC transport error."""
    if not endpoint.startswith("unix://"):
        return 'transport: Error while dialing: dial tcp: address %s: missing port in address' % endpoint
    path = endpoint[len("unix://"):]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return None
    except FileNotFoundError:
        why = "no such file or directory"
    except ConnectionRefusedError:
        why = "connection refused"
    except PermissionError:
        why = "permission denied"
    except OSError as e:
        why = (e.strerror or str(e)).lower()
    finally:
        s.close()
    return "transport: Error while dialing: dial unix %s: connect: %s" % (path, why)


def connect(opts):
    endpoints, explicit = image_endpoints(opts)
    timeout = parse_duration(opts.get("timeout", "2s"))
    if not explicit:
        logrus("warning", "Image connect using default endpoints: [%s]. As the default settings are now deprecated, "
                          "you should set the endpoint instead." % " ".join(endpoints))
    err = None
    for ep in endpoints:
        why = dial(ep, timeout)
        if why is None:
            return ep
        text = 'rpc error: code = Unavailable desc = connection error: desc = "%s"' % why
        klog_error("remote_image.go:84", '"ImageFsInfo from image service failed" err="%s"'
                   % text.replace('"', '\\"'))
        err = 'validate service connection: validate CRI v1 image API for endpoint "%s": %s' % (ep, text)
        if not explicit:
            logrus("error", err)
    raise Fatal(err)


def parse_duration(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u):
            try:
                return float(text[:-len(u)])
            except ValueError:
                break
    raise Fatal('invalid value "%s" for flag -timeout: parse error' % text)


def normalize(image):
    """containerd's reference normalisation (docker.io/library/, :latest)."""
    name = image
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def pull(opts, args):
    if not args or not args[0]:
        raise Fatal("image name cannot be empty")
    for a in args:
        if a.startswith("-"):
            raise Fatal("flag provided but not defined: -%s" % a.lstrip("-"))
    image = args[0]
    connect(opts)
    delay = float(os.environ.get("CRICTL_FAKE_DELAY") or 0)
    if delay > 0:
        time.sleep(delay)
    missing = [m.strip() for m in (os.environ.get("CRICTL_FAKE_MISSING") or "").split(",") if m.strip()]
    ref = normalize(image)
    if image in missing or ref in missing:
        text = ('rpc error: code = NotFound desc = failed to pull and unpack image "%s": failed to resolve '
                'reference "%s": %s: not found' % (ref, ref, ref))
        klog_error("remote_image.go:180", '"PullImage from image service failed" err="%s" image="%s"'
                   % (text.replace('"', '\\"'), image))
        raise Fatal("pulling image: " + text)
    print("Image is up to date for sha256:%s" % hashlib.sha256(ref.encode()).hexdigest())
    return image


def main(argv):
    record({"call": "start", "argv": argv})
    rc, image = 0, None
    try:
        opts, command, args = parse_args(argv)
        if command == "pull":
            image = pull(opts, args)
        elif command is None:
            sys.stderr.write("NAME:\n   crictl - client for CRI\n")
        else:
            raise Fatal("the fake crictl simulates only pull, not %r" % command)
    except Fatal as e:
        logrus("fatal", str(e))
        rc = 1
    sys.stdout.flush()
    record({"call": "end", "argv": argv, "rc": rc, "image": image})
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
