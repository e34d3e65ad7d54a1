#!/usr/bin/env python3
"""Counts individual TAP test cases in meson's test logs and prints 'N passed, N failed'.

A test binary that crashed or exited non-zero without reporting a failing case counts as one
failed case, so a crash can never hide behind the cases it printed before dying.
Exits non-zero when anything failed or when no test case ran at all.
"""
import json
import re
import sys
from pathlib import Path

OK = re.compile(r"^ok\b")
NOT_OK = re.compile(r"^not ok\b")
TODO_OR_SKIP = re.compile(r"#\s*(TODO|SKIP)", re.IGNORECASE)


def count(build_dir):
    passed = failed = 0
    log = Path(build_dir) / "meson-logs" / "testlog.json"
    if not log.exists():
        print(f"{log}: missing", file=sys.stderr)
        return 0, 1
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        test = json.loads(line)
        p = f = 0
        for out in (test.get("stdout") or "").splitlines():
            out = out.strip()
            if NOT_OK.match(out):
                if TODO_OR_SKIP.search(out):
                    continue
                f += 1
            elif OK.match(out):
                p += 1
        if test.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and f == 0:
            f = 1
        passed += p
        failed += f
    return passed, failed


def main():
    passed = failed = 0
    for d in sys.argv[1:]:
        p, f = count(d)
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
