"""Every command and code block of README.md and of examples/*.toml runs.

Commands are the lines of the README's ```bash blocks and the indented ``#   command`` lines
of the example configs. Each one is run here, in order, in a scratch folder holding copies of
examples/, scripts/ and benches/ (so later commands see what earlier ones wrote, as a reader's
would), with a few size reductions where a command would take minutes; the README's Python
block runs at full size and must print exactly the README's output block. Installing (pip
install, scripts/build-wheels) and the test suite itself are what ``.ci/run`` does: for those
this file checks that ``.ci/run`` does them. A command that no rule here covers fails the
test, so a new README line needs a runner.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"

#: (pattern, replacement) applied to a command before it runs: smaller sizes, same code paths
SMALLER = [
    (r"^mixforget demo\b(.*)$", r"mixforget demo\1 --replicates 30"),
    (r"^mixforget bench$", "mixforget bench --quick"),
    (r"^python scripts/theory_table\.py$", "python scripts/theory_table.py --quick"),
    (
        r"^pytest benches (.*)$",
        r"env MIXFORGET_BENCH_SIZES=smoke MIXFORGET_BENCH_ROUNDS=1 "
        r"python -m pytest benches \1 -q -p no:cacheprovider",
    ),
]
#: example configs run with fewer replicates and steps (same grid): (file, {key: value})
SMALLER_CONFIGS = {"replay_sweep.toml": {"replicates": 20, "steps": 100}}


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def readme_blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def readme_commands() -> list[str]:
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            line = _strip_comment(line)
            if line:
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


def example_commands() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "examples").glob("*.toml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^#\s{2,}((?:mixforget|python) .*)$", line)
            if m:
                out.append((path.name, m.group(1).strip()))
    return out


def _extras() -> set[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return set(tomllib.load(fh)["project"]["optional-dependencies"])


def _is_install_or_suite(command: str) -> bool:
    return command == "pytest" or command.startswith(("pip install", "scripts/build-wheels"))


def test_install_and_suite_commands_are_what_ci_runs():
    commands = [c for c in readme_commands() if _is_install_or_suite(c)]
    assert "pip install '.[test]'" in commands and "pytest" in commands
    extras = _extras()
    ci = CI.read_text(encoding="utf-8")
    for command in commands:
        m = re.fullmatch(r"pip install '\.\[([\w,]+)\]'", command)
        if m:  # an extra of this package: it exists, and CI installs from the source tree
            assert set(m.group(1).split(",")) <= extras, command
            assert "pip install --quiet '.[test]'" in ci
        elif command == "pytest":
            assert "pip install --quiet '.[test]'" in ci and "\npytest -q\n" in ci
        elif command == "pip install dist/mixforget-*-manylinux*.whl":
            assert "\nscripts/build-wheels\n" in ci and "dist/mixforget-*manylinux*.whl" in ci
        else:
            pytest.fail(f"README command {command!r}: no rule says how it is checked")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the `mixforget` and `python` of this interpreter's environment come first
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"
    env.pop("PYTHONPATH", None)
    return env


def _scratch(tmp_path: Path) -> Path:
    for name in ("examples", "scripts", "benches"):
        shutil.copytree(ROOT / name, tmp_path / name)
    for name, changes in SMALLER_CONFIGS.items():
        path = tmp_path / "examples" / name
        text = path.read_text(encoding="utf-8")
        for key, value in changes.items():
            text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
            assert n == 1, f"{name}: no single '{key} =' line to shrink"
        path.write_text(text, encoding="utf-8")
    return tmp_path


def _smaller(command: str) -> str:
    for pattern, replacement in SMALLER:
        command = re.sub(pattern, replacement, command)
    return command


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"`{command}` exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
        f"stderr:\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.mark.slow
def test_every_readme_and_example_command_runs(tmp_path):
    work = _scratch(tmp_path)
    commands = [c for c in readme_commands() if not _is_install_or_suite(c)]
    commands += [c for _, c in example_commands()]
    assert commands, "no commands found"
    known = ("mixforget ", "python ", "pytest benches")
    unknown = [c for c in commands if not c.startswith(known)]
    assert not unknown, f"commands without a runner in this test: {unknown}"
    outputs: list[tuple[str, str]] = []
    for command in commands:
        began = time.perf_counter()
        outputs.append((command, _run(_smaller(command), work).stdout))
        print(f"{time.perf_counter() - began:6.1f} s  {command}")
    # what the commands promise
    assert (work / "mixforget-demo" / "forgetting.svg").is_file()
    assert (work / "run.npz").is_file() and (work / "demo.npz").is_file()
    assert (work / "quick.npz").is_file() and (work / "replay.sqlite").is_file()
    assert (work / "drift.png").stat().st_size > 1000
    sweep_runs = [o for c, o in outputs if c.startswith("mixforget sweep examples/sweep.toml")]
    assert len(sweep_runs) >= 2
    # the first run computes, every later one resumes and says that nothing was left
    assert "10 points in sweep.sqlite" in sweep_runs[0]
    for output in sweep_runs[1:]:
        assert "nothing to compute: all 10 points are already in sweep.sqlite" in output
    replay = next(o for c, o in outputs if c.startswith("mixforget sweep examples/replay"))
    rows = [line.split() for line in replay.splitlines()[1:]]
    table = [row for row in rows if row and row[0].isdigit() and row[1] != "points"]
    assert len(table) == 16  # the objective label, e.g. "ForwardKL" or "ReverseKL(replay=0.25)"
    for row in table:
        assert re.fullmatch(r"(Forward|Reverse)KL(\(replay=0\.\d+\))?", row[1]), row


def test_readme_python_block_prints_the_readme_output():
    blocks = readme_blocks("python")
    outputs = readme_blocks("text")
    assert len(blocks) >= 1 and len(outputs) >= 1
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    assert buffer.getvalue() == outputs[0]


def test_readme_other_python_blocks_run():
    """The later blocks (the Retaining-by-Doing study) run as written, at a small size."""
    blocks = readme_blocks("python")[1:]
    assert blocks, "the README's Retaining-by-Doing block is missing"
    for block in blocks:
        small = block.replace("replicates=1000", "replicates=8")
        namespace: dict[str, object] = {"__name__": "__readme__"}
        exec(compile(small, "README.md", "exec"), namespace)
        if "study" in namespace:
            rows = namespace["study"].rows  # type: ignore[attr-defined]
            assert rows, "the study produced no rows"


def test_readme_numbers_match_the_example():
    """The prose quotes the example's numbers: the transient of α, the drifts, the overlaps."""
    import math

    text = README.read_text(encoding="utf-8")
    assert f"{math.exp(-(6.5**2) / 8):.1e}" == "5.1e-03" and "5.1e-3" in text
    assert f"{math.exp(-(3.5**2) / 8):.2f}" == "0.22" and "≈ 0.22" in text
    out = readme_blocks("text")[0]
    assert "sup drift 6.75e-02" in out and "6.8e-2" in text
    assert "sup drift 3.32e-02" in out and "3.3e-2" in text
    assert "max old weight 0.92 at step 250" in out and "≈ 0.92 (around step 250)" in text
    assert "starved 1000.0" in out and "Its *starved* count is 1000.0" in text
    floor = math.sqrt(0.05 / (math.pi * 64))
    assert f"{floor:.3f}" == "0.016" and "√(lr/(πB)) = 0.016" in text


def test_readme_links_the_docs_and_has_no_relative_images():
    text = README.read_text(encoding="utf-8")
    assert "[`docs/`](docs/)" in text and "sphinx-build" in text
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert re.match(r"https://", target), f"relative image link {target!r}"
    assert "Rust toolchain ≥ 1.89" in text and "pip install dist/mixforget-" in text


def test_shell_commands_parse():
    for command in readme_commands() + [c for _, c in example_commands()]:
        shlex.split(command)  # quoting is balanced
