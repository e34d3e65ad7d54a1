#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs one libFuzzer target as two TAP cases, so scripts/tap-summary.py counts them:

  1. every checked-in seed replays without a crash, a leak or a broken invariant;
  2. fuzzing from those seeds for its time finds none.

Usage: run-fuzz.py [--targets=N] TARGET SEED_DIR ARTIFACT_DIR

The time: CPLET_FUZZ_SECONDS seconds when set; else an even share of CPLET_FUZZ_BUDGET (default
150 s) among the N targets of the suite (at least 5 s each), so that adding a target does not
lengthen the whole run.

New inputs go to a temporary directory, never into the checked-in seeds. A failing input is
kept in ARTIFACT_DIR (crash-*, leak-*, timeout-*); add it to SEED_DIR with the fix.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

KINDS = [
    ("leak", re.compile(r"ERROR: LeakSanitizer")),
    ("timeout", re.compile(r"ERROR: libFuzzer: timeout")),
    ("out of memory", re.compile(r"ERROR: libFuzzer: out-of-memory")),
    ("broken invariant", re.compile(r"invariant broken")),
    ("undefined behaviour", re.compile(r"runtime error:")),
    ("crash", re.compile(r"ERROR: (AddressSanitizer|libFuzzer)")),
]


def diagnose(output):
    for kind, pattern in KINDS:
        if pattern.search(output):
            return kind
    return "failure"


def report(number, name, ok, output, extra=""):
    if ok:
        print(f"ok {number} - {name}{extra}")
        return
    print(f"not ok {number} - {name}: {diagnose(output)}")
    lines = output.splitlines()
    interesting = [l for l in lines if not l.startswith("#") and "INFO:" not in l]
    for line in (interesting or lines)[-60:]:
        print(f"# {line}")


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    return p.returncode, p.stdout


BUDGET_SECONDS = 150
MIN_SECONDS = 5


def fuzz_seconds(targets):
    if os.environ.get("CPLET_FUZZ_SECONDS"):
        return int(os.environ["CPLET_FUZZ_SECONDS"])
    budget = int(os.environ.get("CPLET_FUZZ_BUDGET") or BUDGET_SECONDS)
    return max(MIN_SECONDS, budget // max(1, targets))


def main():
    args = sys.argv[1:]
    targets = 1
    if args and args[0].startswith("--targets="):
        targets = int(args.pop(0).split("=", 1)[1])
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    target, seeds, artifacts = args
    name = os.path.basename(target)
    seconds = fuzz_seconds(targets)
    os.makedirs(artifacts, exist_ok=True)
    common = [f"-artifact_prefix={artifacts}/", "-timeout=10", "-rss_limit_mb=2048"]

    print("1..2", flush=True)
    files = sorted(os.path.join(seeds, f) for f in os.listdir(seeds)) if os.path.isdir(seeds) else []
    if not files:
        report(1, f"{name}: seeds replay", False, f"no seeds in {seeds}")
    else:
        rc, out = run([target] + common + files)
        report(1, f"{name}: {len(files)} seeds replay", rc == 0, out)
    sys.stdout.flush()

    work = tempfile.mkdtemp(prefix=f"cplet-{name}-")
    try:
        rc, out = run([target] + common + [f"-max_total_time={seconds}", "-print_final_stats=1", work, seeds])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    execs = m.group(1) if m else "?"
    report(2, f"{name}: fuzzing for {seconds}s", rc == 0, out, f" ({execs} execs, no crash, no leak)")
    print(f"# {name}: {execs} execs in {seconds}s, exit code {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
