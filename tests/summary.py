"""
Print the one closing line CI reads, ``N passed, N failed[, N skipped]``, from trial's output.

Usage: ``python -m tests.summary TRIAL_OUTPUT_FILE``.  Exits 1 unless the run passed:
passed = successes + expected failures; failed = failures + errors + unexpected successes.
Under ``CI=true`` a test skipped for a missing tool is already a failure (tests/support.py).
"""

import re
import sys

_STATUS = re.compile(r"^(PASSED|FAILED) \((?P<counts>[^)]*)\)\s*$")


def summarise(output: str) -> tuple[str, bool]:
    """
    Return the closing line and whether the run passed.  A run whose summary is missing
    (trial crashed before reporting) counts as one failure.
    """
    counts: dict[str, int] | None = None
    for line in output.splitlines():
        match = _STATUS.match(line)
        if match:
            counts = {}
            for item in match.group("counts").split(","):
                name, _, value = item.strip().partition("=")
                if value.isdigit():
                    counts[name] = int(value)
    if counts is None:
        return "0 passed, 1 failed", False
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = (
        counts.get("failures", 0)
        + counts.get("errors", 0)
        + counts.get("unexpectedSuccesses", 0)
    )
    line = f"{passed} passed, {failed} failed"
    skipped = counts.get("skips", 0)
    if skipped:
        line += f", {skipped} skipped"
    return line, failed == 0 and passed > 0


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8", errors="replace") as f:
        line, ok = summarise(f.read())
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
