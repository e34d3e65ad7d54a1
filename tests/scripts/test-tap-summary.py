#!/usr/bin/env python3
"""scripts/tap-summary.py on meson test logs written here: what counts as passed, failed and
skipped, what a failing case prints, and the one last line CI reads."""
import json
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

SCRIPT = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[2] / "scripts" / "tap-summary.py")
LAST_LINE = re.compile(r"^\d+ passed, \d+ failed, \d+ skipped$")


def build(root, name, *tests):
    """A build directory whose testlog.json holds `tests`: (name, stdout, result, returncode, stderr)."""
    d = Path(root) / name
    (d / "meson-logs").mkdir(parents=True)
    with open(d / "meson-logs" / "testlog.json", "w") as f:
        for test, stdout, result, rc, stderr in tests:
            j = {"name": test, "stdout": stdout, "result": result, "returncode": rc}
            if stderr:
                j["stderr"] = stderr
            f.write(json.dumps(j) + "\n")
    return str(d)


def summary(*dirs):
    p = subprocess.run([sys.executable, SCRIPT, *dirs], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout


def check_last_line(out, want):
    lines = out.rstrip("\n").split("\n")
    assert LAST_LINE.match(lines[-1]), f"last line {lines[-1]!r} is not 'N passed, N failed, N skipped'"
    assert lines[-1] == want, f"last line {lines[-1]!r}, expected {want!r}\n{out}"


def test_skip_and_todo_counted_apart(root):
    stdout = ("1..7\nok 1 - a\nok 2 - b # SKIP no network\nnot ok 3 - c\n# c: expected 1, got 2\n"
              "# at test.c:10\nok 4 - d\nnot ok 5 - e # TODO not written yet\nok 6 - f # skip\n"
              "ok 7 - g\n")
    rc, out = summary(build(root, "b", ("cplet:unit / test-x", stdout, "FAIL", 1, "")))
    assert rc == 1, out
    check_last_line(out, "3 passed, 1 failed, 2 skipped")
    # The expected failure is named, above the last line, and is not a failure.
    assert "cplet:unit / test-x: not ok 5 - e # TODO not written yet" in out, out


def test_failing_case_printed_with_its_diagnostics(root):
    stdout = ("1..3\nok 1 - first\n# 0.1s\nnot ok 2 - the gate refuses an old process\n# expected ok=0\n"
              "# got ok=1\nok 3 - third\n# 0.2s\n")
    rc, out = summary(build(root, "plain", ("cplet:e2e / test-rollout", stdout, "FAIL", 1, "ERROR: boom\n")))
    assert rc == 1, out
    block = ("not ok 2 - the gate refuses an old process\n# expected ok=0\n# got ok=1\n")
    assert block in out, out
    assert "=== FAILED cplet:e2e / test-rollout (" in out and "plain" in out, out
    assert "| ERROR: boom" in out, out
    # Passing cases are not printed.
    assert "ok 1 - first" not in out and "ok 3 - third" not in out, out
    check_last_line(out, "2 passed, 1 failed, 0 skipped")


def test_crash_counts_as_a_failure(root):
    stderr = "==1==ERROR: AddressSanitizer: heap-buffer-overflow\n" + "".join(f"    #{i} frame\n" for i in range(200))
    rc, out = summary(build(root, "asan", ("cplet:unit / test-y", "1..3\nok 1 - a\n", "ERROR", -6, stderr)))
    assert rc == 1, out
    check_last_line(out, "1 passed, 1 failed, 0 skipped")
    assert "no failing case was reported" in out, out
    # A long report keeps its head (where the sanitizer says what happened).
    assert "| ==1==ERROR: AddressSanitizer: heap-buffer-overflow" in out, out
    assert "lines left out" in out, out


def test_unexpected_pass_and_not_ok_skip_fail(root):
    stdout = "1..2\nok 1 - was todo # TODO fix\nnot ok 2 - skipped the cmocka 1.1.5 way # SKIP\n"
    rc, out = summary(build(root, "b", ("cplet:unit / test-z", stdout, "FAIL", 1, "")))
    assert rc == 1, out
    check_last_line(out, "0 passed, 2 failed, 0 skipped")


def test_whole_binary_skipped_and_several_builds(root):
    skipped = build(root, "one", ("cplet:unit / test-root", "1..0 # SKIP needs root\n", "SKIP", 0, ""))
    rc, out = summary(skipped)
    # Nothing ran: not a success.
    assert rc == 1, out
    check_last_line(out, "0 passed, 0 failed, 1 skipped")
    passing = build(root, "two", ("cplet:unit / test-ok", "1..2\nok 1 - a\nok 2 - b\n", "OK", 0, ""))
    rc, out = summary(skipped, passing)
    assert rc == 0, out
    check_last_line(out, "2 passed, 0 failed, 1 skipped")


def test_missing_log_fails(root):
    rc, out = summary(str(Path(root) / "never-built"))
    assert rc == 1, out
    check_last_line(out, "0 passed, 1 failed, 0 skipped")


TESTS = [(name, fn) for name, fn in globals().items() if name.startswith("test_")]


def main():
    print(f"1..{len(TESTS)}", flush=True)
    failed = 0
    for i, (name, fn) in enumerate(TESTS, 1):
        with tempfile.TemporaryDirectory(prefix="cplet-test-tap-summary-") as root:
            try:
                fn(root)
                print(f"ok {i} - {name}")
            except Exception:
                failed += 1
                print(f"not ok {i} - {name}")
                for line in traceback.format_exc().splitlines():
                    print(f"# {line}")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
