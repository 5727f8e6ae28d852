"""Training speed at criticality, orthogonal against Gaussian weights (Pennington, Schoenholz
& Ganguli 2017): deep tanh nets on the critical line at a few q*, and ReLU, trained by SGD on a
linear teacher for a fixed budget, beside the free-probability spectral variance of their
input–output Jacobians.

    python -m experiments.isometry_training [--out DIR] [--jobs J] [--quick]

Writes curves.csv, summary.csv, PNG plots and README.md into --out (default
reports/isometry_training/). The training loop is experiments.measure.isometry_training.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.measure import isometry_training as speed
from experiments.measure.runner import run_tasks
from experiments.report import isometry_training as report
from experiments.report.common import command_line
from experiments.report.io import atomic_write, write_csv
from experiments.theory import free_probability, meanfield

OUT = Path("reports/isometry_training")
SEED = 0  # seeds are SEED, SEED + 1, …
DEFAULT = {
    "depth": 64,
    "deep": (128, 200),  # deeper nets for the smallest q* and relu (Pennington et al.: 200)
    "width": 64,
    "steps": 200,
    "seeds": 3,
    "sigma_b2": [1e-5, 1e-3, 0.05],
}
QUICK = {
    "depth": 8,
    "deep": (12, 16),
    "width": 16,
    "steps": 20,
    "seeds": 2,
    "sigma_b2": [1e-5, 0.05],
}
LR = 0.01
THRESHOLD = 0.5  # the normalised loss whose first crossing counts as "learnt"
RUNTIME = (
    "about 86 s of CPU time for the 48 runs (24 at depth 64, 12 each at depths 128 and 200; "
    "the depth-200 runs are about 37 s of it, so about 19 s of wall time on two idle cores); "
    "236 s of wall time with --jobs 2 on two cores shared with a load of about 8."
)


def cells(sigma_b2s: Sequence[float]) -> list[tuple[str, float, float, float]]:
    """(activation, σ_w², σ_b², q*): tanh on the critical line χ1 = 1 at each σ_b², and relu
    at σ_w² = 2 (every q is a fixed point: q* = 1)."""
    out = []
    for sigma_b2 in sigma_b2s:
        sigma_w2 = meanfield.critical_sigma_w2("tanh", sigma_b2)
        out.append(("tanh", sigma_w2, sigma_b2, meanfield.fixed_point("tanh", sigma_w2, sigma_b2)))
    return [*out, ("relu", 2.0, 0.0, 1.0)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.isometry_training",
        description="Training speed of deep critical nets: orthogonal against Gaussian "
        "weights, tanh at several q* and relu.",
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (default 2, or 1 on one core); 1 runs in this process",
    )
    p.add_argument("--quick", action="store_true", help="a small run for tests and demos")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be ≥ 1, got {args.jobs}")
    s = QUICK if args.quick else DEFAULT
    grid = [(s["depth"], cell) for cell in cells(s["sigma_b2"])]
    grid += [(deep, cell) for deep in s["deep"] for cell in cells(s["sigma_b2"][:1])]
    configs = [
        speed.SpeedConfig(
            act, weights, sigma_w2, sigma_b2, q, depth, s["width"], seed, s["steps"], LR
        )
        for depth, (act, sigma_w2, sigma_b2, q) in grid
        for weights in ("orthogonal", "gaussian")
        for seed in range(SEED, SEED + s["seeds"])
    ]
    runs = run_tasks(speed.train, configs, jobs=args.jobs, show_progress=False)
    curves = pd.DataFrame(
        [
            {
                "depth": c.depth,
                "activation": c.activation,
                "weights": c.weights,
                "sigma_w2": c.sigma_w2,
                "sigma_b2": c.sigma_b2,
                "q_star": c.q,
                "seed": c.seed,
                "step": k * c.every,
                "loss": value,
            }
            for c, run in zip(configs, runs, strict=True)
            for k, value in enumerate(run["loss"])
        ]
    )
    spread = {
        (c.depth, c.activation, c.weights, c.sigma_b2): free_probability.jacobian_spectrum(
            c.activation, c.weights, c.sigma_w2, c.q, c.depth
        ).normalised_variance()
        for c in configs
    }
    summary = report.summarise(curves, spread, THRESHOLD)
    out: Path = args.out
    write_csv(out / "curves.csv", curves, "%.6g")
    write_csv(out / "summary.csv", summary, "%.6g")
    figures = report.write_figures(out, curves, summary, THRESHOLD)
    command = command_line("experiments.isometry_training", sys.argv[1:] if argv is None else argv)
    setup = {**s, "lr": LR, "threshold": THRESHOLD, "runtime": RUNTIME}
    atomic_write(out / "README.md", report.readme(summary, figures, command, setup))
    print(f"{len(configs)} runs; wrote {out}/README.md, curves.csv, summary.csv and PNG plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
