"""Depth scales and trainability: ξ_q and ξ_c of the mean-field maps over σ_w² at σ_b² = 0.05
(tanh), and a trainability phase diagram on scikit-learn's digits with 6ξ_c drawn over it
(Schoenholz et al. 2017, "Deep information propagation").

    python -m experiments.depth_scales [--out DIR] [--steps N] [--jobs J] [--quick]

Writes depth_scales.csv, trainability.csv, PNG plots and README.md into --out (default
reports/depth_scales/). The grid runs on experiments.measure.runner's process pool.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.measure.runner import run_tasks
from experiments.measure.train import digits
from experiments.measure.trainability import Budget, Cell, train_cell
from experiments.report import depth_scales as report
from experiments.report.common import command_line
from experiments.report.io import atomic_write, write_csv

OUT = Path("reports/depth_scales")
SEED = 0  # the data split
#: networks per cell: each seed its own init and batch order
SEEDS = (0, 1)
SIGMA_B2 = 0.05
DEFAULT = {
    "sigma_w2": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0],
    "depths": [4, 8, 12, 16, 24, 32, 48, 64, 96],
    "steps": 400,
}
QUICK = {"sigma_w2": [1.0, 1.75, 3.0], "depths": [2, 4, 8], "steps": 20}
THEORY_GRID = np.round(np.arange(0.5, 4.0001, 0.025), 6)
RUNTIME = (
    "about 180 s of CPU time for the 198 runs (99 cells × 2 seeds) and the theory, about "
    "90 s with --jobs 2 on two lightly loaded cores."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.depth_scales",
        description="ξ_q and ξ_c over σ_w² (tanh, σ_b² = 0.05) and a trainability phase "
        "diagram on the digits with 6ξ_c drawn over it.",
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument(
        "--steps", type=int, default=None, help=f"SGD steps per cell (default {DEFAULT['steps']})"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (default 2, or 1 on one core); 1 runs in this process",
    )
    p.add_argument("--quick", action="store_true", help="a small run for tests and demos")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    steps = args.steps or base["steps"]
    if steps < 1 or args.jobs < 1:
        p.error(f"--steps and --jobs must be ≥ 1, got {steps} and {args.jobs}")
    budget = Budget(sigma_b2=SIGMA_B2, steps=steps)
    critical = report.critical_line(budget.activation, SIGMA_B2)
    theory_grid = THEORY_GRID if not args.quick else np.array(base["sigma_w2"], dtype=float)
    scales = report.scales_frame(budget.activation, theory_grid, SIGMA_B2)
    grid_scales = report.scales_frame(budget.activation, base["sigma_w2"], SIGMA_B2)
    data = digits(SEED)
    cells = [Cell(s, d, seed) for s in base["sigma_w2"] for d in base["depths"] for seed in SEEDS]
    order = sorted(range(len(cells)), key=lambda i: -cells[i].depth)  # long cells first
    results = run_tasks(
        train_cell,
        [(cells[i], budget, data) for i in order],
        jobs=args.jobs,
        sizes=[cells[i].depth for i in order],
        desc="depth_scales",
        unit="layer",
        show_progress=not args.no_progress,
    )
    frame = pd.DataFrame(results).sort_values(["sigma_w2", "depth", "seed"], kind="stable")
    frame = frame.reset_index(drop=True)
    out: Path = args.out
    write_csv(out / "depth_scales.csv", scales, "%.6g")
    write_csv(out / "trainability.csv", frame, "%.6g")
    figures = report.write_figures(out, frame, scales, critical, budget)
    command = command_line("experiments.depth_scales", sys.argv[1:] if argv is None else argv)
    text = report.readme(
        frame, scales, grid_scales, critical, budget, len(data.y_train), figures, command, RUNTIME
    )
    atomic_write(out / "README.md", text)
    print(
        f"{len(cells)} cells; wrote {out}/README.md, depth_scales.csv, trainability.csv and "
        f"{len(figures)} PNG plots"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
