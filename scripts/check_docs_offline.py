#!/usr/bin/env python
"""Fail when a built HTML page loads a script from the network (the docs must read offline).

    python scripts/check_docs_offline.py docs/_build/html

Scans every ``*.html`` file under the folder for ``<script src="…">`` whose address is remote
(``http:``, ``https:`` or protocol-relative ``//``); the math renderer, for one, must be the
copy shipped with the build (sphinx-mathjax-offline), not a CDN. Exit 1 lists each page and
address; exit 0 says how many pages were checked.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SCRIPT_SRC = re.compile(r"<script\b[^>]*?\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.I)
REMOTE = re.compile(r"^(https?:)?//", re.I)


def remote_scripts(html: str) -> list[str]:
    """The remote addresses of the ``<script src>`` tags of one page."""
    return [src for src in SCRIPT_SRC.findall(html) if REMOTE.match(src)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path, help="the sphinx-build html output folder")
    args = parser.parse_args(argv)
    pages = sorted(args.html_dir.rglob("*.html"))
    if not pages:
        print(f"no HTML pages under {args.html_dir}", file=sys.stderr)
        return 1
    found = [
        (page, src)
        for page in pages
        for src in remote_scripts(page.read_text(encoding="utf-8", errors="replace"))
    ]
    for page, src in found:
        print(f"{page.relative_to(args.html_dir)}: remote script {src}", file=sys.stderr)
    if found:
        return 1
    print(f"{len(pages)} pages, no remote script")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
