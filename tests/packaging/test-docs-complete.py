#!/usr/bin/env python3
"""cplet(8) and the bash completion against the built cplet.

The commands and options are read from the binary itself (cplet --help, cplet COMMAND --help);
which options a command really accepts, and which options cplet keeps as its own after
"flags set COMPONENT", are found by running it. Then:
  - cplet.8 documents every command in its own subsection, every option of a command's help
    in that subsection (or under GLOBAL OPTIONS), every global option, the cluster
    sub-commands, and has the sections a reader looks for;
  - the completion (sourced into bash, its function called as bash would, without the
    bash-completion package) offers every command, every option of a command's help and no
    option the command refuses, the components, the cluster sub-commands, the values of
    --on-failure, files and directories, and the revision numbers that cplet history lists
    for a root made here, under the --root/--plugin-dir/--config typed on the line.
TAP, one case per check."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from cli_common import copy_example  # noqa: E402

CPLET = os.environ.get("CPLET_BINARY", "")
PLUGINS = os.environ.get("CPLET_PLUGIN_BUILD_DIR", "")
SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MAN8 = os.path.join(SOURCE, "docs", "man", "cplet.8")
MAN5 = os.path.join(SOURCE, "docs", "man", "cplet-config.5")
COMPLETION = os.path.join(SOURCE, "packaging", "bash-completion", "cplet")
NO_ROOT = "/nonexistent-cplet-docs-test"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w-])")
# A value each option accepts, for probing (durations valid together: 1s < 1m).
VALUES = {"--plugin-dir": "/", "--image": "kube-scheduler=registry.k8s.io/kube-scheduler:v1.35.0",
          "--components": "kube-scheduler", "--component": "kube-scheduler", "--stable-for": "1s",
          "--step-timeout": "1m", "--node-timeout": "1m", "--max-status-age": "1m", "--on-failure": "stop",
          "--to-revision": "1", "--binary-version": "v1.35.0", "--emulated-version": "1.35",
          "--min-compatibility-version": "1.34"}
# Positional arguments a command needs before cplet looks at the options' fit.
ARGS = {"flags": ["set", "kube-scheduler", "--v=1"], "cluster": ["status"], "diff": ["kube-scheduler", "1"]}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, **kw)


def options_in(text):
    return set(OPTION.findall(text))


# ---- what the binary says and does ----

class Cli:
    def __init__(self):
        self.main_help = run([CPLET, "--help"]).stdout
        m = re.search(r"^Commands:\n((?:  \S.*\n)+)", self.main_help, re.M)
        self.commands = re.findall(r"^  (\S+)", m.group(1), re.M) if m else []
        opts = self.main_help.split("Options", 1)[1] if "Options" in self.main_help else ""
        self.global_options = options_in(opts)
        self.help = {c: run([CPLET, c, "--help"]).stdout for c in self.commands}
        self._real = {}
        self.value_options = set()
        self.all_options = set(self.global_options)
        for c in self.commands:
            self.all_options |= {o for o in options_in(self.help[c]) if self.is_real(o)}
        self.accepted = {c: self.accepted_by(c) for c in self.commands}

    def is_real(self, opt):
        """An option of cplet (the help texts also name the components' flags)."""
        if opt not in self._real:
            if run([CPLET, opt, "--version"]).returncode == 0:
                self._real[opt] = True
            elif run([CPLET, f"{opt}={VALUES.get(opt, 'x')}", "--version"]).returncode == 0:
                self._real[opt] = True
                self.value_options.add(opt)
            else:
                self._real[opt] = False
        return self._real[opt]

    def option_words(self, opt):
        return [f"{opt}={VALUES.get(opt, 'x')}"] if opt in self.value_options else [opt]

    def accepted_by(self, command):
        """The options cplet does not refuse as "does not apply to this command"."""
        ok = set(self.global_options)
        for opt in self.all_options - self.global_options:
            words = [CPLET, "--root", NO_ROOT] + self.option_words(opt) + [command] + ARGS.get(command, [])
            p = run(words)
            if "does not apply" not in p.stderr:
                ok.add(opt)
        return ok

    def help_options(self, command):
        return {o for o in options_in(self.help[command]) if self.is_real(o)}


# ---- the man page ----

def man_text(path):
    """The roff source with comments, font changes and escapes taken out: what a reader sees."""
    lines = [ln for ln in open(path, encoding="utf-8").read().splitlines() if not ln.startswith('.\\"')]
    text = "\n".join(lines)
    text = re.sub(r"\\f(\[[A-Z]*\]|[BIRP])", "", text)
    text = text.replace("\\-", "-").replace("\\&", "").replace("\\%", "")
    return text


def man_sections(text):
    """{".SH name": body}, and {".SS name": body} for the subsections."""
    sections, subsections = {}, {}
    for m in re.finditer(r"^\.SH (.*)\n((?:(?!^\.SH ).*\n?)*)", text, re.M):
        sections[m.group(1).strip('"')] = m.group(2)
    for m in re.finditer(r"^\.SS (.*)\n((?:(?!^\.S[HS] ).*\n?)*)", text, re.M):
        subsections[m.group(1).strip('"')] = m.group(2)
    return sections, subsections


# ---- the completion, as bash calls it ----

def comp_words(line):
    """COMP_WORDS as bash builds them: words split at blanks, and at the COMP_WORDBREAKS
    characters = and : (kept as words of their own); a trailing blank starts an empty word."""
    words = []
    for w in line.split():
        parts = re.split(r"([=:])", w)
        words += [p for p in parts if p != ""]
    if line.endswith(" ") or not words:
        words.append("")
    return words


def complete(line, env=None):
    """The completions bash would offer for `line` (cursor at its end), and stderr."""
    words = comp_words(line)
    script = (f"source {shlex.quote(COMPLETION)} || exit 99\n"
              "spec=$(complete -p cplet) || exit 98\n"
              "[[ $spec =~ -F\\ ([^ ]+) ]] || exit 97\n"
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              f"COMP_LINE={shlex.quote(line)}\nCOMP_POINT=${{#COMP_LINE}}\n"
              "COMPREPLY=()\n"
              "\"${BASH_REMATCH[1]}\" cplet \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    p = run(["bash", "--norc", "--noprofile", "-c", script], env=env)
    if p.returncode != 0:
        raise AssertionError(f"bash exited {p.returncode} completing {line!r}: {p.stderr}")
    return [w for w in p.stdout.split("\n") if w], p.stderr


# ---- the cases ----

class Case:
    def __init__(self, name):
        self.name = name
        self.failures = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
        return bool(cond)

    def same(self, actual, expected, msg):
        a, e = set(actual), set(expected)
        return self.check(a == e, f"{msg}: missing {sorted(e - a)}, unexpected {sorted(a - e)}")

    def covers(self, actual, expected, msg):
        missing = set(expected) - set(actual)
        return self.check(not missing, f"{msg}: missing {sorted(missing)}")

    def within(self, actual, allowed, msg):
        extra = set(actual) - set(allowed)
        return self.check(not extra, f"{msg}: not accepted by cplet: {sorted(extra)}")


def build_cases():
    cli = Cli()
    man = man_text(MAN8)
    sections, subsections = man_sections(man)
    cases = []

    def case(name):
        def register(fn):
            cases.append((name, fn))
            return fn
        return register

    @case("cplet --help lists commands and global options")
    def _(t):
        t.check(len(cli.commands) >= 11, f"commands read from cplet --help: {cli.commands}")
        t.covers(cli.global_options, {"--root", "--config", "--plugin-dir", "--json", "--help", "--version"},
                 "global options read from cplet --help")
        t.check("--emulation-forward-compatible" not in cli.all_options,
                "a component's flag named in a help text was taken for cplet's")

    # The man page.
    @case("cplet.8: the sections")
    def _(t):
        t.covers(sections, ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "GLOBAL OPTIONS", "A GATED STEP",
                            "EXIT STATUS", "FILES", "SIGNALS", "ENVIRONMENT", "SEE ALSO"], "cplet.8 sections")
        status = sections.get("EXIT STATUS", "")
        for code in "012":
            t.check(re.search(rf"^\.B {code}$", status, re.M), f"EXIT STATUS does not describe exit status {code}")
        files = sections.get("FILES", "")
        for f in ["/etc/cplet/config.yaml", "/etc/kubernetes/manifests", "/var/lib/cplet/revisions",
                  "/var/lib/cplet/rollout.json", "/var/lib/cplet/min-compatibility.json",
                  "/var/lib/cplet/daemon.json", "/run/cplet/lock", "/etc/kubernetes/kubelet.conf",
                  "cplet/plugins", "cplet.service"]:
            t.check(f in files, f"FILES does not name {f}")
        for s in ["SIGTERM", "SIGHUP"]:
            t.check(s in sections.get("SIGNALS", ""), f"SIGNALS does not name {s}")
        t.check("KUBECONFIG" in sections.get("ENVIRONMENT", ""), "ENVIRONMENT does not name KUBECONFIG")
        t.check("cplet-config (5)" in sections.get("SEE ALSO", ""), "SEE ALSO does not name cplet-config(5)")

    @case("cplet.8: global options")
    def _(t):
        t.covers(options_in(sections.get("GLOBAL OPTIONS", "")), cli.global_options,
                 "cplet --help's options under GLOBAL OPTIONS")

    for command in cli.commands:
        @case(f"cplet.8: {command} and its options")
        def _(t, command=command):
            body = subsections.get(f"cplet {command}")
            if not t.check(body is not None, f'no subsection .SS "cplet {command}" under COMMANDS'):
                return
            documented = options_in(body) | (options_in(sections.get("GLOBAL OPTIONS", ""))
                                             & cli.global_options)
            t.covers(documented, cli.help_options(command), f"options of cplet {command} --help")

    @case("cplet.8: cluster sub-commands")
    def _(t):
        subs = set(re.findall(r"cplet cluster (\w+)", cli.help.get("cluster", "")))
        t.check(subs >= {"status", "plan", "upgrade", "rollback"}, f"sub-commands read from the help: {subs}")
        body = subsections.get("cplet cluster", "")
        for s in subs:
            t.check(f"cplet cluster {s}" in body, f"cplet cluster {s} is not in the cluster subsection")

    @case("cplet-config.5: every field, and its example is accepted")
    def _(t):
        text = man_text(MAN5)
        fields_section = man_sections(text)[0].get("FIELDS", "")
        # The fields of the shipped default file (commented out there), each one cplet knows.
        shipped = open(os.path.join(SOURCE, "packaging", "config.yaml"), encoding="utf-8").read()
        fields = re.findall(r"^#?([a-zA-Z]+):", shipped, re.M)
        t.covers(fields, ["apiVersion", "kind", "pluginDir", "revisionsToKeep", "imageRepositories", "kubeconfig",
                          "nodeName"], "fields of packaging/config.yaml")
        d = tempfile.mkdtemp(prefix="cplet-docs-")
        try:
            copy_example(os.path.join(d, "node"))
            base = [CPLET, "--root", os.path.join(d, "node"), "--plugin-dir", PLUGINS]
            for field in fields:
                t.check(re.search(rf"^\.TP\n\.BR? {field}\b", fields_section, re.M),
                        f"field {field} has no entry under FIELDS in cplet-config.5")
                with open(os.path.join(d, "c.yaml"), "w") as f:
                    f.write(f"kind: CpletConfiguration\n{field}: 0\n")
                p = run(base + ["--config", os.path.join(d, "c.yaml"), "status"])
                t.check("unknown field" not in p.stderr, f"cplet does not know field {field}: {p.stderr}")
            m = re.search(r"^\.SH EXAMPLE\n\.RS \d+\n\.nf\n(.*?)^\.fi$", text, re.M | re.S)
            if t.check(m, "no EXAMPLE block (.RS, .nf ... .fi)"):
                with open(os.path.join(d, "example.yaml"), "w") as f:
                    f.write(m.group(1))
                p = run(base + ["--config", os.path.join(d, "example.yaml"), "status"])
                t.check(p.returncode == 0, f"the EXAMPLE is refused (exit {p.returncode}): {p.stderr}")
        finally:
            shutil.rmtree(d, ignore_errors=True)
        for word in ["SIGHUP", "systemctl reload cplet", "CpletConfiguration", "cplet.io/v1alpha1"]:
            t.check(word in text, f"{word} is not mentioned")

    # The completion.
    @case("completion: commands")
    def _(t):
        got, err = complete("cplet ")
        t.same(got, cli.commands, "cplet <TAB>")
        got, _ = complete("cplet up")
        t.same(got, ["upgrade"], "cplet up<TAB>")
        got, _ = complete("cplet --root / hi")
        t.same(got, ["history"], "cplet --root / hi<TAB> (after an option's value)")
        got, _ = complete("cplet --")
        t.covers(got, cli.global_options, "cplet --<TAB>")
        t.check(err == "", f"stderr: {err}")

    @case("completion: cplet upgrade --st")
    def _(t):
        got, _ = complete("cplet upgrade --st")
        t.same(got, ["--stable-for", "--step-timeout"], "cplet upgrade --st<TAB>")

    for command in cli.commands:
        if command == "flags":
            continue
        @case(f"completion: options of {command}")
        def _(t, command=command):
            line = "cplet cluster upgrade --" if command == "cluster" else f"cplet {command} --"
            got, err = complete(line)
            t.covers(got, cli.help_options(command) & cli.accepted[command], f"{line}<TAB> against the help")
            t.within(got, cli.accepted[command], f"{line}<TAB>")
            t.check(err == "", f"stderr: {err}")

    @case("completion: flags, cplet's own options after the component")
    def _(t):
        # Which options cplet keeps after "flags set COMPONENT" (the others are the component's
        # flags): a dry run shows a component flag in its diff or in its refusal.
        root = tempfile.mkdtemp(prefix="cplet-docs-")
        try:
            copy_example(os.path.join(root, "node"))
            own = set()
            for opt in cli.all_options:
                word = cli.option_words(opt)[0].replace("=/", "=/tmp")
                p = run([CPLET, "--root", os.path.join(root, "node"), "--plugin-dir", PLUGINS, "flags", "set",
                         "kube-scheduler", "--v=1", "--dry-run", word])
                out = p.stdout + p.stderr
                # The component's: refused as a flag without a value or a compatibility flag, or
                # in the diff as a new item of its command line.
                if not (f'"{opt}"' in out or f"- {word}" in out or "is a compatibility flag" in out):
                    own.add(opt)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        t.check({"--dry-run", "--no-wait", "--stable-for"} <= own, f"own options found by running cplet: {own}")
        got, err = complete("cplet flags set kube-scheduler --")
        t.covers(got, cli.help_options("flags") & own, "cplet flags set kube-scheduler --<TAB> against the help")
        t.within(got, own, "cplet flags set kube-scheduler --<TAB> (others would be the component's flags)")
        got, _ = complete("cplet --")
        t.covers(got, cli.help_options("flags") & cli.global_options,
                 "cplet --<TAB>: the options that go before flags")
        got, _ = complete("cplet flags ")
        t.same(got, ["set", "unset"], "cplet flags <TAB>")
        t.check(err == "", f"stderr: {err}")

    @case("completion: component names")
    def _(t):
        root = tempfile.mkdtemp(prefix="cplet-docs-")
        try:
            copy_example(os.path.join(root, "node"))
            p = run([CPLET, "--root", os.path.join(root, "node"), "--plugin-dir", PLUGINS, "status", "--json"])
            components = [c["name"] for c in json.loads(p.stdout)["components"]]
        finally:
            shutil.rmtree(root, ignore_errors=True)
        t.same(components, ["kube-apiserver", "kube-controller-manager", "kube-scheduler"], "cplet status --json")
        for line in ["cplet history --component ", "cplet rollback --component ", "cplet flags set ",
                     "cplet --json flags unset ", "cplet diff ", "cplet plan --components ",
                     "cplet upgrade --components="]:
            got, _ = complete(line)
            t.same(got, components, f"{line}<TAB>")
        got, _ = complete("cplet history --component kube-c")
        t.same(got, ["kube-controller-manager"], "cplet history --component kube-c<TAB>")
        got, _ = complete("cplet upgrade --components kube-apiserver,")
        t.same(got, ["kube-apiserver," + c for c in components if c != "kube-apiserver"],
               "cplet upgrade --components kube-apiserver,<TAB>")

    @case("completion: cluster sub-commands")
    def _(t):
        got, _ = complete("cplet cluster ")
        t.same(got, set(re.findall(r"cplet cluster (\w+)", cli.help["cluster"])), "cplet cluster <TAB>")
        got, _ = complete("cplet --kubeconfig /x cluster up")
        t.same(got, ["upgrade"], "cplet --kubeconfig /x cluster up<TAB>")

    @case("completion: --on-failure values")
    def _(t):
        m = re.search(r"--on-failure (\w+)\|(\w+)", cli.help["upgrade"])
        if not t.check(m, "cplet upgrade --help shows no --on-failure A|B"):
            return
        for line in ["cplet upgrade --on-failure ", "cplet resume --on-failure=",
                     "cplet flags set kube-scheduler --v=2 --on-failure "]:
            got, _ = complete(line)
            t.same(got, m.groups(), f"{line}<TAB>")

    @case("completion: files and directories")
    def _(t):
        d = tempfile.mkdtemp(prefix="cplet-docs-")
        try:
            os.mkdir(os.path.join(d, "subdir"))
            open(os.path.join(d, "kubelet.conf"), "w").close()
            got, _ = complete(f"cplet daemon --kubeconfig {d}/")
            t.same(got, [f"{d}/kubelet.conf", f"{d}/subdir"], "--kubeconfig (files)")
            got, _ = complete(f"cplet --config {d}/k")
            t.same(got, [f"{d}/kubelet.conf"], "--config (files)")
            for opt in ["--root", "--plugin-dir"]:
                got, _ = complete(f"cplet {opt} {d}/")
                t.same(got, [f"{d}/subdir"], f"{opt} (directories)")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @case("completion: revision numbers from cplet history")
    def _(t):
        d = tempfile.mkdtemp(prefix="cplet-docs-")
        root = os.path.join(d, "node")
        try:
            copy_example(root)
            for v in ["3", "4"]:
                p = run([CPLET, "--root", root, "--plugin-dir", PLUGINS, "flags", "set", "kube-scheduler",
                         f"--v={v}", "--no-wait"])
                t.check(p.returncode == 0, f"flags set --v={v}: {p.stderr}")
            p = run([CPLET, "--root", root, "--plugin-dir", PLUGINS, "history", "--component", "kube-scheduler",
                     "--json"])
            revisions = [str(r["revision"]) for r in json.loads(p.stdout)["components"][0]["revisions"]]
            t.same(revisions, ["1", "2", "3"], "the revisions cplet history lists")
            base = f"{CPLET} --root {root} --plugin-dir {PLUGINS}"
            for line in [f"{base} rollback --component kube-scheduler --to-revision ",
                         f"{CPLET} --root={root} --plugin-dir={PLUGINS} rollback --component=kube-scheduler --to-revision=",
                         f"{base} diff kube-scheduler ",
                         f"{base} diff kube-scheduler 1 "]:
                got, err = complete(line)
                t.same(got, revisions, f"{line}<TAB>")
                t.check(err == "", f"stderr: {err}")
            got, _ = complete(f"{base} rollback --component kube-scheduler --to-revision 2")
            t.same(got, ["2"], "--to-revision 2<TAB>")
            got, _ = complete(f"{base} diff kube-scheduler 1 2 ")
            t.same(got, [], "diff C A B <TAB> (no third revision)")
            # --config typed on the line: its pluginDir is where the plugins are.
            config = os.path.join(d, "config.yaml")
            with open(config, "w") as f:
                f.write(f"apiVersion: cplet.io/v1alpha1\nkind: CpletConfiguration\npluginDir: {PLUGINS}\n")
            got, _ = complete(f"{CPLET} --root {root} --config {config} rollback --component kube-scheduler "
                              "--to-revision ")
            t.same(got, revisions, "with --config naming the plugin directory")
            # Errors are silent: no revisions, nothing on the terminal.
            for line in [f"{CPLET} --root {NO_ROOT} --plugin-dir {PLUGINS} rollback --component kube-scheduler --to-revision ",
                         f"{CPLET} --root {root} --plugin-dir {d} diff kube-scheduler ",
                         f"{base} rollback --component kube-nothing --to-revision "]:
                got, err = complete(line)
                t.same(got, [], f"{line}<TAB>")
                t.check(err == "", f"stderr of {line!r}: {err}")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    return cases


def main():
    missing = [v for v in ("CPLET_BINARY", "CPLET_PLUGIN_BUILD_DIR", "CPLET_EXAMPLES_DIR") if not os.environ.get(v)]
    if missing:
        print("1..1\nnot ok 1 - environment\n# not set: " + ", ".join(missing))
        return 1
    cases = build_cases()
    print(f"1..{len(cases)}", flush=True)
    failed = 0
    for i, (name, fn) in enumerate(cases, 1):
        t = Case(name)
        try:
            fn(t)
        except Exception:
            t.failures.append("exception:\n" + traceback.format_exc())
        if t.failures:
            failed += 1
            print(f"not ok {i} - {name}")
            for f in t.failures:
                for line in str(f).splitlines():
                    print(f"# {line}")
        else:
            print(f"ok {i} - {name}")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
