"""Regenerate the numbers and the figure of docs: theory-kl-selection (the K = 3 selection
among equally rewarded components): the table of
:func:`mixforget.studies.selection_among_correct_modes` at its defaults, the figure
``docs/kl_selection.png``, and the logit-ODE values quoted in the text.

    python scripts/kl_selection.py            # print the table and the ODE values
    python scripts/kl_selection.py --write    # also store the table in the docs page and
                                              # redraw the figure

``tests/test_selection_study.py`` checks that the stored table is what the code gives.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from mixforget import studies, theory

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "theory" / "kl-regularized.md"
FIGURE = ROOT / "docs" / "kl_selection.png"
BEGIN, END = "<!-- kl-selection-table: begin -->", "<!-- kl-selection-table: end -->"


def stored_table(text: str) -> str:
    """The table stored between the markers of the docs page."""
    match = re.search(re.escape(BEGIN) + r"\n?(.*?)\n?" + re.escape(END), text, re.S)
    if match is None:
        raise ValueError(f"{PAGE} has no {BEGIN} … {END} block")
    return match.group(1)


def ode_values() -> dict[str, float]:
    """w_2/w_3 of the three logit ODEs at t = 50 from w = (0.5, 0.3, 0.2), r = (0, 1, 1)."""
    w, r = (0.5, 0.3, 0.2), (0.0, 1.0, 1.0)
    out = {}
    for name, flow in (
        ("plain, all logits", lambda: theory.policy_gradient_logit_flow(w, r, 50.0, 2000)),
        (
            "plain, pinned logit",
            lambda: theory.policy_gradient_logit_flow(w, r, 50.0, 2000, "pinned"),
        ),
        ("natural", lambda: theory.natural_gradient_logit_flow(w, r, 50.0, 2000)),
    ):
        v = flow()
        out[name] = float(v[1] / v[2])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the table and the figure")
    args = parser.parse_args()
    study = studies.selection_among_correct_modes()
    table = study.to_markdown()
    print(table)
    for name, ratio in ode_values().items():
        print(f"ODE t = 50, {name}: w2/w3 = {ratio:.6g}")
    if args.write:
        text = PAGE.read_text()
        stored_table(text)  # the markers must exist
        start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
        PAGE.write_text(text[:start] + "\n" + table + "\n" + text[stop:])
        axes = study.plot()
        fig = axes[0].figure
        fig.tight_layout()
        fig.savefig(FIGURE, dpi=110)
        print(f"wrote {PAGE.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
