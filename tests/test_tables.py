"""The tables stored in README.md are what the code produces now (issue 25).

Each table lives between ``<!-- NAME:start -->`` / ``<!-- NAME:end -->`` markers and comes from
a command a reader can run: ``mixforget demo`` (demo_table), ``scripts/theory_table.py``
(theory_table) and ``scripts/methods_table.py`` (methods_table). Every number is seeded, so a
full-size run must print the stored text exactly (marked slow where it takes more than a few
seconds); the theory table is also checked at reduced size, with closed forms and population
values exact and intervals within 5 combined standard errors. The comparison helpers
themselves are tested on small inputs, so that a check that cannot fail is caught too.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import table_check  # noqa: E402  (scripts/table_check.py: the scripts' comparison helpers)


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_every_stored_block_has_its_markers():
    for name in ("theory_table", "methods_table"):
        assert table_check.table_rows(table_check.stored_block(name)), name
    assert "objective  replay" in table_check.stored_block("demo_table")


def test_interval_z_reads_the_standard_errors_off_the_intervals():
    # half-widths 1.96 SE: SE 0.01 each, combined 0.01·√2
    z = table_check.interval_z("1.0 [0.9804, 1.0196]", "1.05 [1.0304, 1.0696]")
    assert z == pytest.approx(0.05 / (0.01 * 2**0.5), rel=1e-3)
    assert table_check.interval_z("0.5 [0.5, 0.5]", "0.5 [0.5, 0.5]") == 0.0
    assert table_check.interval_z("0.5 [0.5, 0.5]", "0.6 [0.6, 0.6]") == float("inf")
    assert table_check.interval_z("0.5", "0.5 [0.4, 0.6]") is None


def test_cell_differences_catch_a_changed_cell():
    stored = "| a | b |\n|---|---|\n| 1 | 1.0 [0.98, 1.02] |\n"
    assert table_check.cell_differences(stored, stored, [{1}]) == []
    near = stored.replace("1.0 [0.98, 1.02]", "1.01 [0.99, 1.03]")
    assert table_check.cell_differences(stored, near, [{1}]) == []
    far = stored.replace("1.0 [0.98, 1.02]", "1.2 [1.18, 1.22]")
    assert len(table_check.cell_differences(stored, far, [{1}])) == 1
    exact = stored.replace("| 1 |", "| 2 |")
    assert len(table_check.cell_differences(stored, exact, [{1}])) == 1
    assert table_check.exact_differences(stored, near)


def test_write_block_replaces_only_the_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- x:start -->\nold\n<!-- x:end -->\nafter\n", encoding="utf-8")
    table_check.write_block("x", "new", page)
    assert page.read_text(encoding="utf-8") == (
        "before\n<!-- x:start -->\nnew\n<!-- x:end -->\nafter\n"
    )
    assert table_check.stored_block("x", page) == "new"


def _demo_table(lines: list[str]) -> list[list[str]]:
    """The demo's table without its wall-clock column (the one unseeded number)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("objective  replay"))
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip())[:-1])
    return rows


@pytest.mark.slow
def test_demo_table_is_what_mixforget_demo_prints(tmp_path):
    from mixforget import cli

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 0
    produced = _demo_table(buffer.getvalue().splitlines())
    stored_text = table_check.stored_block("demo_table").strip("`\n")
    stored = _demo_table(stored_text.splitlines())
    assert len(stored) == 6 and stored == produced


def test_theory_table_matches_at_reduced_size():
    proc = _script("theory_table.py", "--check", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "theory_table: 0 difference(s)" in proc.stderr


@pytest.mark.slow
def test_theory_table_matches_exactly_at_full_size():
    proc = _script("theory_table.py", "--check")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_methods_table_matches_exactly():
    proc = _script("methods_table.py", "--check")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_prose_quotes_the_stored_tables():
    """The sentences under the theory table quote its last columns."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    starvation = table_check.table_rows(table_check.stored_block("theory_table"))[1][1:]
    largest_gradient_difference = max(float(row[10]) for row in starvation)
    ratios = [float(row[9]) for row in starvation]
    bound = re.search(r"unchanged up to rounding \(≤ ([\d.e-]+),", readme)
    assert bound and largest_gradient_difference <= float(bound.group(1))
    span = re.search(r"old-mean gradient (\d+)–(\d+)× where", readme)
    assert span and (int(span.group(1)), int(span.group(2))) == (
        int(min(ratios)),
        round(max(ratios)),
    )


def test_readme_says_what_the_test_step_costs_and_how_to_skip_the_slow_tests():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pytest -m "not slow"' in readme and "968 MB" in readme
    with open(ROOT / "pyproject.toml", "rb") as fh:
        markers = tomllib.load(fh)["tool"]["pytest"]["ini_options"]["markers"]
    assert any(marker.startswith("slow:") for marker in markers)


def test_readme_warns_that_the_rl_z_scores_hold_for_one_seed_set():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "*for this seed set*" in readme and "infinite variance" in readme


def test_k_drift_table_in_the_k_component_page_matches_exactly():
    """docs/theory/k-components.md's drift-conjecture table (population flow, deterministic)."""
    proc = _script("k_drift_table.py", "--check")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "k_drift_table: 0 difference(s)" in proc.stderr
