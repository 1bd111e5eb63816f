"""Compare the tables a script prints with the copy stored in README.md (``--check``), or store it.

README.md keeps each generated block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``.
At full size the scripts are deterministic (fixed seeds; mixforget is bit-reproducible), so
:func:`exact_differences` asks for every line to match, except round-off: numbers below 1e-10
(a gradient difference of 2e-14, a drift of 3e-15) agree with each other, since their digits
depend on the platform's libm. At reduced size (``--quick``) :func:`cell_differences`
compares the markdown tables cell by cell: closed-form and population cells exactly, a Monte
Carlo cell ``mean [lo, hi]`` (95 % interval) within 5 combined standard errors
(SE = interval width / 3.92), any other Monte Carlo cell (a variance, a ratio, a mean stored
without interval) within 25 % relative or the row's 5-SE band, whichever is wider.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
INTERVAL = re.compile(r"^(\S+) \[(\S+), (\S+)\]$")
ROUND_OFF = 1e-10
TOLERANCE_SE = 5.0
RELATIVE_TOLERANCE = 0.25


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def stored_block(name: str, path: Path = README) -> str:
    """The text stored between the markers of ``name`` in ``path``."""
    start, end = _markers(name)
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{path.name} has no {start} … {end} block")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def write_block(name: str, block: str, path: Path = README) -> None:
    """Replace the text between the markers of ``name`` in ``path`` by ``block``."""
    start, end = _markers(name)
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{block.strip()}\n{end}{tail}", encoding="utf-8")


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _round_off_pair(a: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    return x is not None and y is not None and abs(x) < ROUND_OFF and abs(y) < ROUND_OFF


def _interval(cell: str) -> tuple[float, float] | None:
    """(mean, standard error) of a ``mean [lo, hi]`` cell."""
    m = INTERVAL.match(cell)
    if not m:
        return None
    mean, lo, hi = (float(x) for x in m.groups())
    return mean, (hi - lo) / 3.92


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def exact_differences(stored: str, fresh: str) -> list[str]:
    """Lines (and cells) of ``fresh`` that differ from ``stored`` beyond round-off."""
    old = stored.strip().splitlines()
    new = fresh.strip().splitlines()
    if len(old) != len(new):
        return [f"{len(old)} lines stored, {len(new)} produced"]
    found = []
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a == b:
            continue
        if a.startswith("|") and b.startswith("|") and len(_cells(a)) == len(_cells(b)):
            for column, (x, y) in enumerate(zip(_cells(a), _cells(b))):
                if x != y and not _round_off_pair(x, y):
                    found.append(f"line {number}, column {column}: stored {x!r}, now {y!r}")
        else:
            found.append(f"line {number}: stored {a!r}, now {b!r}")
    return found


def table_rows(block: str) -> list[list[list[str]]]:
    """The markdown tables of a block: per table, its header row and data rows (cells)."""
    tables: list[list[list[str]]] = []
    current = None
    for line in block.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            if not re.fullmatch(r"\|(\s*-+\s*\|)+", line.strip()):
                current.append(_cells(line))
        else:
            current = None
    return tables


def _tables(block: str) -> list[list[list[str]]]:
    return [table[1:] for table in table_rows(block)]


def interval_z(stored: str, fresh: str) -> float | None:
    """z = (fresh − stored) / combined SE of two ``mean [lo, hi]`` cells (None: not both)."""
    a, b = _interval(stored), _interval(fresh)
    if not (a and b):
        return None
    difference, combined = b[0] - a[0], math.hypot(a[1], b[1])
    if combined == 0:
        return 0.0 if difference == 0 else math.inf
    return abs(difference) / combined


def _stochastic_cell_agrees(x: str, y: str, row_se: float) -> bool:
    z = interval_z(x, y)
    if z is not None:
        return z <= TOLERANCE_SE
    u, v = _number(x), _number(y)
    if u is None or v is None:
        return x == y
    band = max(RELATIVE_TOLERANCE * max(abs(u), abs(v)), TOLERANCE_SE * row_se)
    return abs(u - v) <= band


def cell_differences(stored: str, fresh: str, stochastic: list[set[int]]) -> list[str]:
    """Table cells of ``fresh`` (a reduced-size run) that disagree with ``stored``.

    ``stochastic[i]`` holds the 0-based Monte Carlo columns of table ``i``; every other
    column must match exactly (or both be round-off).
    """
    old, new = _tables(stored), _tables(fresh)
    if len(old) != len(new) or len(old) != len(stochastic):
        return [f"{len(old)} tables stored, {len(new)} produced, {len(stochastic)} described"]
    found = []
    for index, (table_a, table_b, columns) in enumerate(zip(old, new, stochastic)):
        if len(table_a) != len(table_b):
            found.append(f"table {index}: {len(table_a)} rows stored, {len(table_b)} produced")
            continue
        for row, (cells_a, cells_b) in enumerate(zip(table_a, table_b)):
            intervals = [_interval(c) for c in cells_a + cells_b]
            ses = [iv[1] for iv in intervals if iv]
            row_se = math.sqrt(sum(se * se for se in ses) / max(len(ses), 1))
            for column, (x, y) in enumerate(zip(cells_a, cells_b)):
                if column in columns:
                    agrees = _stochastic_cell_agrees(x, y, row_se)
                else:
                    agrees = x == y or _round_off_pair(x, y)
                if not agrees:
                    found.append(
                        f"table {index}, row {row}, column {column}: stored {x!r}, now {y!r}"
                    )
    return found
