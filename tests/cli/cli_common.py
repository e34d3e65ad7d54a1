"""What the CLI test files share: where things are, the TAP runner, the base of a test case,
and helpers for node roots (tree checksums, manifest edits)."""
import hashlib
import os
import re
import stat
import sys
import traceback

CPLET = os.environ.get("CPLET_BINARY", "")
PLUGINS = os.environ.get("CPLET_PLUGIN_BUILD_DIR", "")
EXAMPLES = os.environ.get("CPLET_EXAMPLES_DIR", "")
FIXTURES = os.environ.get("CPLET_FIXTURES_DIR", "")

MANIFEST_DIR = os.path.join("etc", "kubernetes", "manifests")
COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
EXAMPLE_VERSION = "v1.34.2"
TIMEOUT = 20


class BaseCase:
    """One TAP case: collects failures; subclasses add roots and ways to run cplet."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.roots = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)

    def eq(self, actual, expected, msg):
        return self.check(actual == expected, f"{msg}: expected {expected!r}, got {actual!r}")

    def contains(self, haystack, needle, msg):
        return self.check(needle in haystack, f"{msg}: {needle!r} not in {haystack!r}")

    def not_contains(self, haystack, needle, msg):
        return self.check(needle not in haystack, f"{msg}: {needle!r} unexpectedly in {haystack!r}")


def copy_example(dest):
    """Copies examples/node to dest with directories others cannot write, whatever the umask
    of the checkout (cplet refuses a group- or world-writable manifest or state directory)."""
    import shutil

    shutil.copytree(os.path.join(EXAMPLES, "node"), dest, dirs_exist_ok=True, symlinks=True)
    for dirpath, dirnames, _ in os.walk(dest):
        for d in [dirpath] + [os.path.join(dirpath, n) for n in dirnames]:
            if not os.path.islink(d):
                os.chmod(d, os.stat(d).st_mode & ~0o022)


def remove_roots(roots):
    """Removes test roots, making directories a test locked down (0000, 0555) removable first."""
    import shutil

    for r in roots:
        for dirpath, dirnames, _ in os.walk(r):
            for d in dirnames:
                path = os.path.join(dirpath, d)
                if not os.path.islink(path):
                    try:
                        os.chmod(path, 0o700)
                    except OSError:
                        pass
        shutil.rmtree(r, ignore_errors=True)


def shell_quote(cmd):
    import shlex

    return " ".join(shlex.quote(str(c)) for c in cmd)


def tree_checksum(root, exclude=()):
    """Maps every path under root (and root itself) to (mode, size, content digest / link target)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in [""] + sorted(dirnames + filenames):
            if name == "" and dirpath != root:
                continue
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root)
            if any(rel == e or rel.startswith(e + os.sep) for e in exclude):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = ""
            result[rel] = (st.st_mode, st.st_size if stat.S_ISREG(st.st_mode) else 0, what)
    return result


def tree_diff(a, b):
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"{k}: {a.get(k)} -> {b.get(k)}")
    return "\n".join(lines[:20])


def mpath(root, name):
    return os.path.join(root, MANIFEST_DIR, name)


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def set_version(root, version, components=COMPONENTS):
    """Rewrites the image tags of the example's control-plane manifests."""
    for c in components:
        p = mpath(root, c + ".yaml")
        text = read(p)
        new = re.sub(r"(image: \S+/" + re.escape(c) + r"):v[0-9][^\s]*", r"\1:" + version, text)
        assert new != text or (":" + version) in text, f"no image tag to rewrite in {p}"
        write(p, new)


def add_flags(root, component, flags):
    """Adds flags right after the binary in the component's command list."""
    p = mpath(root, component + ".yaml")
    text = read(p)
    marker = f"    - {component}\n"
    assert marker in text, f"no '{marker.strip()}' line in {p}"
    text = text.replace(marker, marker + "".join(f"    - {f}\n" for f in flags), 1)
    write(p, text)


def run_tap(tests, case_cls):
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR", "CPLET_FIXTURES_DIR")
               if not os.environ.get(v)]
    print(f"1..{len(tests)}", flush=True)
    if missing:
        for i, (name, _) in enumerate(tests, 1):
            print(f"not ok {i} - {name}\n# environment variable(s) not set: {', '.join(missing)}")
        return 1
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        t = case_cls(name)
        try:
            fn(t)
        except Exception:
            t.failures.append("exception:\n" + traceback.format_exc())
        finally:
            t.cleanup()
        if t.failures:
            failed += 1
            print(f"not ok {i} - {name}")
            for f in t.failures:
                for line in str(f).splitlines():
                    print(f"# {line}")
        elif getattr(t, "skip_reason", None):
            print(f"ok {i} - {name} # SKIP {t.skip_reason}")
        else:
            print(f"ok {i} - {name}")
        sys.stdout.flush()
    return 1 if failed else 0
