"""The docs read offline: no built page loads a script from the network (issue 25).

Building the docs takes minutes, so ``.ci/run`` runs ``scripts/check_docs_offline.py`` on the
real build; here the checker is tested on tiny pages, and the configuration is checked to ship
the math renderer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_docs_offline.py"


def _check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(folder)], capture_output=True, text=True, timeout=60
    )


def test_a_page_with_a_cdn_script_fails(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<script src="_static/mathjax/tex-chtml.js"></script>', encoding="utf-8"
    )
    (tmp_path / "sub" / "theory.html").write_text(
        "<script defer='defer' src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js'>"
        '</script><script src="//cdn.example.org/x.js"></script>',
        encoding="utf-8",
    )
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert "cdn.jsdelivr.net" in proc.stderr and "//cdn.example.org/x.js" in proc.stderr
    assert "index.html" not in proc.stderr


def test_local_scripts_and_remote_links_pass(tmp_path):
    (tmp_path / "index.html").write_text(
        '<script src="_static/mathjax/tex-chtml.js"></script>'
        '<a href="https://arxiv.org/abs/2603.12163">paper</a>'
        "<script>var url = 'https://example.org';</script>",
        encoding="utf-8",
    )
    proc = _check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 pages, no remote script" in proc.stdout


def test_an_empty_folder_is_not_a_pass(tmp_path):
    assert _check(tmp_path).returncode == 1


def test_docs_ship_the_math_renderer_and_ci_checks_the_build():
    conf = (ROOT / "docs" / "conf.py").read_text(encoding="utf-8")
    assert '"sphinx-mathjax-offline"' in conf
    # sphinx-gallery's execution-times page loads jQuery/DataTables from a CDN
    assert '"write_computation_times": False' in conf
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    docs_extra = next(line for line in pyproject.splitlines() if line.startswith("docs = "))
    assert "sphinx-mathjax-offline" in docs_extra
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python scripts/check_docs_offline.py "$docs_out/html"' in ci
