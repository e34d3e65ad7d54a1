#!/usr/bin/env python3
"""Reads meson's test logs (BUILD_DIR/meson-logs/testlog.json) of one or more builds, prints
every failing test case with its diagnostics, and ends with one line:

    N passed, N failed, N skipped

counting individual TAP test cases. How each test line counts (TAP 13/14, and as meson reads
them):
- "ok":                 passed.
- "ok ... # SKIP":       skipped: not run, so neither passed nor failed.
- "1..0 # SKIP reason":  the whole binary skipped: one skipped.
- "not ok":             failed.
- "not ok ... # SKIP":   failed. TAP defines SKIP on "ok" lines; meson reports this as a failure
                        too (cmocka 1.1.5 prints skipped cases this way: skip a whole binary
                        with a plan instead).
- "not ok ... # TODO":   neither passed nor failed: TAP says a TODO case is not expected to
                        succeed and its failure is not a failure of the suite (meson:
                        EXPECTEDFAIL). Such cases are listed by name, above the last line.
- "ok ... # TODO":       failed: the TODO is done and its directive must go. TAP calls this a
                        bonus; meson fails the test (UNEXPECTEDPASS), so counting it as passed
                        would contradict the exit status.
A test binary that crashed, timed out or exited non-zero without reporting a failing case
counts as one failed case, so a crash can never hide behind the cases it printed before dying.
Exits non-zero when anything failed or when no test case ran at all.
"""
import json
import re
import sys
from pathlib import Path

# As meson's TAP parser reads a test line: status, number, description, directive.
TEST = re.compile(r"^(not ok|ok)\b\s*(?:\d+\b)?([^#]*)(?:#\s*(\w+)\b\s*(.*))?$")
PLAN_SKIP = re.compile(r"^1\.\.0\s*#\s*skip", re.IGNORECASE)
GOOD_RESULTS = ("OK", "EXPECTEDFAIL", "SKIP")
STDERR_HEAD, STDERR_TAIL = 60, 40


class Counts:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.todo = []  # "test / case" of expected failures


def classify(status, directive):
    """'passed', 'failed', 'skipped' or 'todo' for one test line."""
    directive = (directive or "").upper()
    if directive.startswith("SKIP"):
        return "skipped" if status == "ok" else "failed"
    if directive == "TODO":
        return "todo" if status == "not ok" else "failed"
    return "passed" if status == "ok" else "failed"


def parse(stdout):
    """The test lines of a TAP stream, each with the '#' lines that follow it, and whether the
    plan skips the whole stream."""
    cases = []  # [kind, line, [diagnostic lines]]
    plan_skip = False
    for raw in stdout.splitlines():
        line = raw.strip()
        m = TEST.match(line)
        if m:
            cases.append([classify(m.group(1), m.group(3)), line, []])
        elif PLAN_SKIP.match(line):
            plan_skip = True
        elif line.startswith("#") and cases:
            cases[-1][2].append(line)
    return cases, plan_skip


def stderr_excerpt(text):
    lines = (text or "").rstrip("\n").splitlines()
    if len(lines) <= STDERR_HEAD + STDERR_TAIL:
        return lines
    return (lines[:STDERR_HEAD] + [f"... ({len(lines) - STDERR_HEAD - STDERR_TAIL} lines left out) ..."] +
            lines[-STDERR_TAIL:])


def report_failure(build_dir, test, failing):
    print(f"\n=== FAILED {test.get('name')} ({build_dir}): {test.get('result')}, "
          f"exit status {test.get('returncode')}")
    for line, diagnostics in failing:
        print(line)
        for d in diagnostics:
            print(d)
    if not failing:
        print("(no failing case was reported: the binary crashed, timed out or exited non-zero)")
    excerpt = stderr_excerpt(test.get("stderr"))
    if excerpt:
        print("--- its stderr:")
        for line in excerpt:
            print(f"| {line}")


def count(build_dir, counts):
    # A build directory (its meson-logs/testlog.json) or a log file of its own (--logbase).
    log = Path(build_dir) if build_dir.endswith(".json") else Path(build_dir) / "meson-logs" / "testlog.json"
    if not log.exists():
        print(f"\n=== FAILED {build_dir}: no {log} (the build or the test run failed)")
        counts.failed += 1
        return
    for text in log.read_text().splitlines():
        if not text.strip():
            continue
        test = json.loads(text)
        cases, plan_skip = parse(test.get("stdout") or "")
        kinds = [kind for kind, _, _ in cases]
        failing = [(line, diagnostics) for kind, line, diagnostics in cases if kind == "failed"]
        f = len(failing)
        if test.get("result") not in GOOD_RESULTS and f == 0:
            f = 1
        counts.passed += kinds.count("passed")
        counts.failed += f
        counts.skipped += kinds.count("skipped")
        if not cases and f == 0 and (plan_skip or test.get("result") == "SKIP"):
            counts.skipped += 1
        counts.todo += [f"{test.get('name')}: {line}" for kind, line, _ in cases if kind == "todo"]
        if f:
            report_failure(build_dir, test, failing)


def main():
    counts = Counts()
    for d in sys.argv[1:]:
        count(d, counts)
    if counts.todo:
        print(f"\n{len(counts.todo)} expected failure(s) (TODO), counted neither as passed nor as failed:")
        for t in counts.todo:
            print(f"  {t}")
    print(f"{counts.passed} passed, {counts.failed} failed, {counts.skipped} skipped")
    return 0 if counts.failed == 0 and counts.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
