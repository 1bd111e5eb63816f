"""The shipped files cite only documentation that ships: no reference to the internal
specification files, and every ``docs: <label>`` citation names a section label of docs/.

The documentation build itself (``sphinx-build -W``, executing the tutorials) runs in CI
(.ci/run), not here: it needs the ``docs`` extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("python", "rust", "docs", "README.md")
SUFFIXES = {".py", ".pyi", ".rs", ".md", ".rst", ".txt", ".toml"}
# Built from pieces so that this file does not match its own patterns.
# A cited label: one of the page prefixes, optionally followed by "-words".
LABEL = r"(?:theory|design|speed|api)(?:-[a-z0-9]+)*"
FORBIDDEN = ("MATH" + ".md", "DESIGN" + ".md", "MATH" + " §", "DESIGN" + " §")


def shipped_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                f
                for f in sorted(path.rglob("*"))
                if f.is_file()
                and f.suffix in SUFFIXES
                and not {"_build", "tutorials", "__pycache__"} & set(f.relative_to(path).parts)
            )
    return files


def doc_labels() -> set[str]:
    labels = set()
    for page in (ROOT / "docs").rglob("*.md"):
        if "_build" in page.parts:
            continue
        labels.update(re.findall(r"^\(([\w-]+)\)=\s*$", page.read_text(encoding="utf-8"), re.M))
    return labels


def test_scanned_tree_is_present() -> None:
    files = shipped_files()
    assert any(f.name == "__init__.py" for f in files), "python/ not found"
    assert any(f.suffix == ".rs" for f in files), "rust/ not found"
    assert any(f.parent.name == "theory" for f in files), "docs/theory not found"


@pytest.mark.parametrize("pattern", FORBIDDEN)
def test_no_reference_to_unshipped_spec(pattern: str) -> None:
    hits = [
        f"{f.relative_to(ROOT)}:{i}: {line.strip()[:80]}"
        for f in shipped_files()
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if pattern in line
    ]
    assert not hits, f"{len(hits)} line(s) cite {pattern!r}, which does not ship:\n" + "\n".join(
        hits[:20]
    )


def test_cited_labels_exist() -> None:
    labels = doc_labels()
    assert {"theory", "theory-replay", "theory-reverse-kl", "api", "speed"} <= labels
    missing = []
    for f in shipped_files():
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for group in re.findall(rf"docs: ((?:{LABEL}, )*{LABEL})", line):
                missing += [
                    f"{f.relative_to(ROOT)}:{i}: {label}"
                    for label in group.split(", ")
                    if label not in labels
                ]
    assert not missing, "citations of unknown doc labels:\n" + "\n".join(missing)
