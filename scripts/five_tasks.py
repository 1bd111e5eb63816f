#!/usr/bin/env python
"""The numbers and figures of the "five tasks in a row" tutorial (docs: theory-sequences).

    python scripts/five_tasks.py [--out FOLDER] [--replicates R] [--steps S]

Five unit-variance tasks on a line (−8, −4, 0, 4, 8, equal weights) are post-trained one
after the other (4 stages) with ForwardKL: without replay, with replay λ = 0.2 split by the
'uniform', 'proportional' and 'recency' (γ = 0.5) schedules, and from 'reservoir' and
'balanced' buffers of M = 20 samples; ReverseKL without replay for comparison. Prints one
Markdown table (BWT and mean forgetting of the weight matrix, finite batch beside the
population flow; the old tasks' mean error) and writes the weights-over-the-sequence figure
and the accuracy-matrix heatmap of the uniform-replay run as PNGs into FOLDER.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mixforget as mf

TASKS = mf.Mixture([0.2] * 5, [[-8.0], [-4.0], [0.0], [4.0], [8.0]], cov=1.0)

#: (row name, objective, sequence keywords)
RUNS = [
    ("ForwardKL, no replay", mf.ForwardKL(), {}),
    ("ForwardKL, λ=0.2 uniform", mf.ForwardKL(replay=0.2), {"schedule": "uniform"}),
    ("ForwardKL, λ=0.2 proportional", mf.ForwardKL(replay=0.2), {"schedule": "proportional"}),
    ("ForwardKL, λ=0.2 recency γ=0.5", mf.ForwardKL(replay=0.2), {"schedule": "recency"}),
    (
        "ForwardKL, λ=0.2 reservoir M=20",
        mf.ForwardKL(replay=0.2),
        {"buffer": "reservoir", "memory": 20},
    ),
    (
        "ForwardKL, λ=0.2 balanced M=20",
        mf.ForwardKL(replay=0.2),
        {"buffer": "balanced", "memory": 20},
    ),
    ("ReverseKL, no replay", mf.ReverseKL(), {"start_offset": 1.0}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("five_tasks_out"))
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = dict(steps=args.steps, lr=0.1, record_every=10)
    header = ["run", "BWT (batch)", "BWT (population)", "mean forgetting", "old mean error"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|")
    for name, objective, extra in RUNS:
        res = mf.sequence(
            TASKS, objective, batch_size=32, replicates=args.replicates, rng=0, **common, **extra
        )
        pop_extra = {k: v for k, v in extra.items() if k not in ("buffer", "memory")}
        pop = (
            None
            if "buffer" in extra
            else mf.sequence(TASKS, objective, population=True, **common, **pop_extra)
        )
        weight = res.summary("weight")
        error = res.matrix("mean_error")[-1, :-1].mean()
        pop_bwt = "n/a" if pop is None else f"{pop.summary('weight')['bwt']:.3f}"
        cells = [name, f"{weight['bwt']:.3f}", pop_bwt, f"{weight['mean_forgetting']:.3f}"]
        print("| " + " | ".join([*cells, f"{error:.3f}"]) + " |")
        if extra.get("schedule") == "uniform":
            _figures(res, args.out)
    return 0


def _figures(res: mf.SequenceResult, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    res.plot_weights(ax=ax)
    ax.set_title("five tasks in a row: ForwardKL, uniform replay λ = 0.2")
    fig.tight_layout()
    fig.savefig(out / "sequence_weights.png", dpi=110)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    res.plot_matrix("weight", ax=axes[0])
    res.plot_matrix("log_likelihood", ax=axes[1])
    fig.tight_layout()
    fig.savefig(out / "sequence_matrix.png", dpi=110)
    print(res.to_markdown("weight"))
    print()


if __name__ == "__main__":
    raise SystemExit(main())
