"""Packaging: one version everywhere, license, citation, changelog, the installed copy.

CI runs this suite twice: against ``pip install '.[test]'`` and against the release wheel in
a virtual environment without a Rust toolchain (``MIXFORGET_EXPECT_INSTALLED=1``), where the
package must come from site-packages, never from the source tree.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

import mixforget as mf
import mixforget._core

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib


def _pep440(cargo_version: str) -> str:
    """Cargo's semver as maturin writes it into the wheel (1.2.3-alpha.1 -> 1.2.3a1 etc.)."""
    m = re.fullmatch(r"(\d+\.\d+\.\d+)(?:-(alpha|beta|rc|dev)\.?(\d+)?)?", cargo_version)
    assert m, f"unexpected Cargo version {cargo_version!r}"
    base, pre, num = m.group(1), m.group(2), m.group(3) or "0"
    if pre is None:
        return base
    return base + {"alpha": "a", "beta": "b", "rc": "rc", "dev": ".dev"}[pre] + num


def _cargo_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as fh:
        return str(tomllib.load(fh)["package"]["version"])


def test_version_is_single_sourced_from_cargo():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    expected = _pep440(_cargo_version())
    assert mf.__version__ == mixforget._core.__version__ == _cargo_version()
    assert importlib.metadata.version("mixforget") == expected


def test_citation_changelog_and_license_carry_the_version():
    version = mf.__version__
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(rf"^version: {re.escape(version)}$", cff, re.M)
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    for arxiv in ("2603.12163", "2510.18874"):
        assert f"doi: 10.48550/arXiv.{arxiv}" in cff and f"arxiv.org/abs/{arxiv}" in cff
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog and f"## [{version}]" in changelog
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{version}]")
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License") and "the mixforget developers" in license_text


def test_citation_is_valid_yaml_with_both_papers():
    yaml = __import__("yaml")  # PyYAML: a dependency of dask.distributed (extra 'test')
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["type"] == "software" and cff["license"] == "MIT"
    titles = {ref["title"] for ref in cff["references"]}
    assert titles == {
        "A Quantitative Characterization of Forgetting in Post-Training",
        "Retaining by Doing: The Role of On-Policy Data in Mitigating Forgetting",
    }
    assert all(ref["authors"] and ref["year"] for ref in cff["references"])


def test_metadata_has_authors_urls_and_license():
    meta = importlib.metadata.metadata("mixforget")
    assert meta["Author"] == "the mixforget developers"
    urls = meta.get_all("Project-URL") or []
    assert any("arxiv.org/abs/2603.12163" in u for u in urls), urls
    assert any("License :: OSI Approved :: MIT License" in c for c in meta.get_all("Classifier"))


def test_package_imported_from_the_expected_place():
    package_dir = Path(mf.__file__).resolve().parent
    # the compiled core belongs to the same copy of the package as the Python files
    assert Path(mixforget._core.__file__).resolve().parent == package_dir
    if os.environ.get("MIXFORGET_EXPECT_INSTALLED"):
        assert "site-packages" in package_dir.parts, package_dir
        assert ROOT not in package_dir.parents, f"{package_dir} is inside the source tree"


def test_sweep_module_is_reachable_as_an_attribute():
    """`mf.sweep` is the function; the module is `mixforget.sweeps` (not hidden by it)."""
    from mixforget import sweeps as sweeps_module

    assert callable(mf.sweep) and mf.sweep is sweeps_module.sweep
    assert mf.load_sweep is sweeps_module.load_sweep
    assert mf.sweeps is sweeps_module  # attribute access, as `mixforget.sweeps.load_sweep(...)`


def test_demo_output_directories_are_ignored_by_git():
    from mixforget.cli import build_parser

    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    default_out = build_parser().parse_args(["demo"]).out
    assert f"/{default_out}/" in ignored
    assert "/demo/" in ignored  # the name the README of 0.1.0 used


def test_readme_and_examples_cite_no_unshipped_documents():
    for path in [ROOT / "README.md", *sorted((ROOT / "examples").glob("*.toml"))]:
        text = path.read_text(encoding="utf-8")
        for name in ("MATH", "DESIGN"):
            assert name not in text, f"{path.name} refers to {name}, which does not ship"
