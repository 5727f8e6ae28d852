"""Depth scales and trainability (Schoenholz et al. 2017, "Deep information propagation"):
ξ_q and ξ_c of the mean-field maps over σ_w² at σ_b² = 0.05, with dropout (keep ρ) and
without; ξ_c measured in finite random nets (tanh, relu) and set against them; and the
trainable frontier on scikit-learn's digits after 10², 10³ and 10⁴ SGD steps, with 6ξ_c.

    python -m experiments.depth_scales [--out DIR] [--jobs J] [--quick]

Writes depth_scales.csv, propagation.csv, fits.csv, trainability.csv, PNG plots and
README.md into --out (default reports/depth_scales/). The networks run on
experiments.measure.runner's process pool.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.measure import depth_scales as probes
from experiments.measure.runner import run_tasks
from experiments.measure.train import digits
from experiments.measure.trainability import Cell, Frontier, train_frontier
from experiments.report import depth_scales as report
from experiments.report.common import command_line
from experiments.report.io import atomic_write, write_csv

OUT = Path("reports/depth_scales")
SEED = 0  # the data split
#: networks per cell: each seed its own init and batch order
SEEDS = (0, 1, 2)
SIGMA_B2 = 0.05
DEFAULT = {
    "sigma_w2": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0],
    "depths": [4, 8, 16, 24, 32, 48, 64],
    "checkpoints": (100, 1000, 10000),
    "deep": 48,  # deeper cells stop at the middle budget (the time budget; see RUNTIME)
    "probe": probes.Probe(),
    "probe_seeds": (0, 1, 2, 3),
    "probe_sigma_w2": {
        "tanh": [0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0],
        "relu": [0.75, 1.0, 1.25, 1.5, 1.75, 1.9],
    },
}
QUICK = {
    "sigma_w2": [1.0, 1.75, 3.0],
    "depths": [2, 4, 8],
    "checkpoints": (5, 20),
    "deep": 4,
    "probe": probes.Probe(width=64, depth=24, pairs=4, lengths=4),
    "probe_seeds": (0, 1),
    "probe_sigma_w2": {"tanh": [1.0, 2.5], "relu": [1.0]},
}
KEEPS = {"tanh": (1.0, 0.99, 0.95), "relu": (1.0,)}
THEORY_GRID = np.round(np.arange(0.5, 4.0001, 0.025), 6)
RUNTIME = (
    "about 370 s of CPU time (60 random nets, 168 trained ones read at up to 3 budgets, the "
    "theory), so about 185 s with --jobs 2 on two idle cores; the 10⁴-step budget at depth 48 "
    "is about 100 s of the CPU time (about 50 s of wall time on two idle cores). 12.6 min of "
    "wall time on 2 cores shared with a load of about 6. The 10⁴-step budget at depth 64 "
    "would add about 140 s of CPU time more (about 70 s of wall time): over the lab's time "
    "budget, so depth 64 stops at 10³ steps."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.depth_scales",
        description="ξ_q and ξ_c over σ_w² (tanh, σ_b² = 0.05) and a trainability phase "
        "diagram on the digits with 6ξ_c drawn over it.",
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
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
    if args.jobs < 1:
        p.error(f"--jobs must be ≥ 1, got {args.jobs}")
    progress = not args.no_progress
    frontier = Frontier(sigma_b2=SIGMA_B2, checkpoints=base["checkpoints"])
    critical = report.critical_line(frontier.activation, SIGMA_B2)
    theory_grid = THEORY_GRID if not args.quick else np.array(base["sigma_w2"], dtype=float)
    scales = report.dropout_frame(frontier.activation, theory_grid, SIGMA_B2, KEEPS["tanh"])
    grid_scales = report.scales_frame(frontier.activation, base["sigma_w2"], SIGMA_B2)
    # finite networks: q^(l) and c^(l), and the fitted ξ_c
    configs = [
        probes.Config(act, s, KEEPS[act], seed)
        for act, sigmas in base["probe_sigma_w2"].items()
        for s in sigmas
        for seed in base["probe_seeds"]
    ]
    probe = base["probe"]
    layers = run_tasks(probes.propagate, [(c, probe) for c in configs], jobs=args.jobs,
                       desc="propagation", unit="net", show_progress=progress)  # fmt: skip
    propagation = pd.DataFrame([row for rows in layers for row in rows])
    fits = report.fits_frame(propagation, SIGMA_B2)
    # the frontier: one task per depth and seed, every σ_w² in lockstep, long tasks first
    data = digits(SEED)
    last = max(base["checkpoints"])
    tasks = []
    for depth in sorted(base["depths"], reverse=True):
        budgets = base["checkpoints"] if depth <= base["deep"] else base["checkpoints"][:-1]
        f = Frontier(sigma_b2=SIGMA_B2, checkpoints=tuple(budgets))
        for seed in SEEDS:
            tasks.append((depth, tuple(Cell(s, depth, seed) for s in base["sigma_w2"]), f, data))
    sizes = [t[0] * max(t[2].checkpoints) * len(t[1]) // last for t in tasks]
    results = run_tasks(train_frontier, tasks, jobs=args.jobs, sizes=sizes,
                        desc="trainability", unit="layer", show_progress=progress)  # fmt: skip
    frame = pd.DataFrame([row for rows in results for row in rows])
    frame = frame.sort_values(["budget", "sigma_w2", "depth", "seed"], kind="stable")
    frame = frame.reset_index(drop=True)
    out: Path = args.out
    write_csv(out / "depth_scales.csv", scales, "%.6g")
    write_csv(out / "propagation.csv", propagation, "%.6g")
    write_csv(out / "fits.csv", fits, "%.6g")
    write_csv(out / "trainability.csv", frame, "%.6g")
    figures = report.write_figures(out, frame, scales, fits, critical, frontier)
    command = command_line("experiments.depth_scales", sys.argv[1:] if argv is None else argv)
    text = report.readme(
        frame, scales, grid_scales, fits, critical, frontier, probe, len(data.y_train),
        figures, command, RUNTIME,
    )  # fmt: skip
    atomic_write(out / "README.md", text)
    print(
        f"{len(configs)} random nets, {len(frame)} trained cells × budgets; wrote {out}/README.md, "
        f"4 CSV files and {len(figures)} PNG plots"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
