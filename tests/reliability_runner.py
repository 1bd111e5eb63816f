"""Runs the bad-input cases of reliability_cases.py from index argv[1] on, one JSON line per
case on stdout: {"index", "raised", "message"}. Run in a subprocess by test_reliability.py,
so that a case that aborts the interpreter shows up as a missing line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from reliability_cases import CASES, SETUP


def main() -> None:
    namespace: dict = {}
    exec(SETUP, namespace)
    mf = namespace["mf"]
    default_limit = mf.get_memory_limit()
    for index in range(int(sys.argv[1]), len(CASES)):
        _, expression, _, _ = CASES[index]
        mf.set_memory_limit(default_limit)
        try:
            eval(expression, namespace)
            raised, message = None, ""
        except Exception as exc:
            raised, message = type(exc).__name__, str(exc)
        print(json.dumps({"index": index, "raised": raised, "message": message}), flush=True)


if __name__ == "__main__":
    main()
