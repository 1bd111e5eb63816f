"""CI fails on a ruff finding: ``.ci/run`` runs ``ruff check`` and ``ruff format --check`` under
``set -e`` after installing the test extra and before pytest, and ruff with the project's
configuration exits non-zero on a violation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPT = ROOT / ".ci" / "run"
PYPROJECT = ROOT / "pyproject.toml"
RUFF_PATHS = ("python", "tests", "benches", "scripts")


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True
    )


def _commands(script: str) -> list[str]:
    """The script's command lines: comments, blank lines and echo banners left out."""
    lines = [line.split("#", 1)[0].strip() for line in script.splitlines()]
    return [line for line in lines if line and not line.startswith("echo ")]


def test_ci_runs_ruff_before_pytest_and_stops_on_a_finding():
    commands = _commands(CI_SCRIPT.read_text(encoding="utf-8"))
    errexit = next(i for i, c in enumerate(commands) if re.match(r"set -\w*e", c))
    install = next(i for i, c in enumerate(commands) if re.search(r"pip install .*\[test\]", c))
    check = next(i for i, c in enumerate(commands) if re.match(r"ruff check\b", c))
    fmt = next(i for i, c in enumerate(commands) if re.match(r"ruff format --check\b", c))
    pytest_run = next(i for i, c in enumerate(commands) if re.match(r"pytest\b", c))
    assert errexit < install < check < pytest_run
    assert install < fmt < pytest_run
    for i in (check, fmt):
        # a plain command under set -e: nothing may swallow its exit status
        assert not re.search(r"\|\||;|&|\|", commands[i]), commands[i]
    paths = next(c for c in commands if c.startswith("ruff_paths="))
    assert all(p in paths.split("(", 1)[1] for p in RUFF_PATHS), paths


def test_test_extra_installs_ruff():
    text = PYPROJECT.read_text(encoding="utf-8")
    extra = next(line for line in text.splitlines() if line.startswith("test = ["))
    assert '"ruff' in extra


def test_ruff_with_project_config_fails_on_violations(tmp_path):
    config = ("--config", str(PYPROJECT))
    # 95 characters: allowed by the project's line length (100), not by ruff's default (88)
    ok_line = "VALUE = " + repr("x" * 85) + "\n"
    long_line = "VALUE = " + repr("x" * 95) + "\n"  # 105 characters: E501
    closure = (
        "def make():\n"
        "    funcs = []\n"
        "    for i in range(3):\n"
        "        funcs.append(lambda: i)\n"
        "    return funcs\n"
    )  # B023: the lambdas all see the last i
    cases = {"ok.py": ok_line, "long.py": long_line, "closure.py": closure}
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert len(ok_line) - 1 == 95 and len(long_line) - 1 == 105
    assert _ruff("check", *config, "ok.py", cwd=tmp_path).returncode == 0
    long_run = _ruff("check", *config, "long.py", cwd=tmp_path)
    assert long_run.returncode != 0 and "E501" in long_run.stdout
    closure_run = _ruff("check", *config, "closure.py", cwd=tmp_path)
    assert closure_run.returncode != 0 and "B023" in closure_run.stdout
    (tmp_path / "unformatted.py").write_text("x = [1,2,  3]\n", encoding="utf-8")
    assert _ruff("format", "--check", *config, "unformatted.py", cwd=tmp_path).returncode != 0


def test_repository_is_ruff_clean():
    lint = _ruff("check", *RUFF_PATHS)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _ruff("format", "--check", *RUFF_PATHS)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
