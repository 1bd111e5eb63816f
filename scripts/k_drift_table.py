#!/usr/bin/env python
"""The K = 3 drift-conjecture table of docs/theory/k-components.md (docs: theory-k-components).

    python scripts/k_drift_table.py            # print the table
    python scripts/k_drift_table.py --check    # the stored table still holds (exact)
    python scripts/k_drift_table.py --write    # store it in docs/theory/k-components.md

Runs :func:`mixforget.studies.drift_vs_nearest_separation` with its defaults (population flow
only: exact and deterministic; about 15 s on two cores) for Δ = 3…7 and the second old
component at −4 and −8.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import mixforget as mf
except ImportError:  # running from a checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import mixforget as mf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import table_check  # the sibling module, found from any working directory

BLOCK = "k_drift_table"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "theory" / "k-components.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with the stored table")
    mode.add_argument("--write", action="store_true", help="store the table in the page")
    args = parser.parse_args(argv)
    study = mf.studies.drift_vs_nearest_separation([3.0, 4.0, 5.0, 6.0, 7.0], (4.0, 8.0))
    table = study.to_markdown()
    if args.write:
        table_check.write_block(BLOCK, table, PAGE)
    elif args.check:
        differences = table_check.exact_differences(table_check.stored_block(BLOCK, PAGE), table)
        for line in differences:
            print(line, file=sys.stderr)
        print(f"k_drift_table: {len(differences)} difference(s)", file=sys.stderr)
        return 1 if differences else 0
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
