"""Finite width: Hanin's law for per-example δ in critical ReLU nets as a falsifiable test
(variance of ln(‖δ^(1)‖²/‖δ^(L)‖²) ≈ 5 Σ 1/n_l for Gaussian and uniform weights alike, the
fourth moment's 2μ₄ − 1 only for a coordinate direction's step), and the gap between the
trajectory theory and gelu + kaiming_normal against width.

    python -m experiments.finite_width [--out DIR] [--jobs J] [--quick]

Writes hanin_cells.csv, hanin.csv, hanin_step.csv, gelu_residual.csv, gelu_layers.csv, PNG plots
and README.md into --out (default reports/finite_width/).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.measure import finite_width, flow
from experiments.measure.runner import run_tasks
from experiments.report import finite_width as report
from experiments.report.common import command_line
from experiments.report.io import atomic_write, write_csv

OUT = Path("reports/finite_width")
DEFAULT = {
    "hanin_depths": [16, 32],
    "hanin_widths": [32, 48, 64, 96, 128, 192, 256],
    "hanin_networks": 96,
    "hanin_batch": 8,
    "step_width": 128,
    "step_networks": 1000,
    "gelu_depth": 64,
    "gelu_widths": [64, 128, 256, 512],
    "gelu_seeds": 5,
    "gelu_batch": 128,
}
QUICK = {
    "hanin_depths": [4, 6],
    "hanin_widths": [16, 32],
    "hanin_networks": 4,
    "hanin_batch": 4,
    "step_width": 16,
    "step_networks": 8,
    "gelu_depth": 6,
    "gelu_widths": [16, 32],
    "gelu_seeds": 2,
    "gelu_batch": 8,
}
SAMPLE = {"hanin": 8, "step": 50}  # networks per cell whose examples are written out
RUNTIME = (
    "about 70 s of CPU time (46 s user, 25 s system) for the 4708 networks, measured with "
    "--jobs 2 on a shared two-core machine."
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.finite_width",
        description="Finite-width fluctuations of δ (Hanin 2018) and the trajectory theory's "
        "gap for gelu against width.",
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
    hanin_configs = [
        flow.Config("relu", init, d, w, seed, s["hanin_batch"])
        for init in finite_width.WEIGHTS.values()
        for d in s["hanin_depths"]
        for w in s["hanin_widths"]
        for seed in range(s["hanin_networks"])
    ]
    step_configs = [
        flow.Config("relu", init, 2, s["step_width"], seed, flow.CLASSES)
        for init in finite_width.WEIGHTS.values()
        for seed in range(s["step_networks"])
    ]
    gelu_configs = [
        flow.Config("gelu", "kaiming_normal", s["gelu_depth"], w, seed, s["gelu_batch"])
        for w in s["gelu_widths"]
        for seed in range(s["gelu_seeds"])
    ]
    hanin = run_tasks(
        finite_width.measure_hanin, hanin_configs, jobs=args.jobs, show_progress=False
    )
    step = run_tasks(finite_width.measure_hanin, step_configs, jobs=args.jobs, show_progress=False)
    gelu = run_tasks(
        finite_width.measure_residual, gelu_configs, jobs=args.jobs, show_progress=False
    )
    hanin_frame = pd.DataFrame([row for rows in hanin for row in rows])
    step_frame = pd.DataFrame([row for rows in step for row in rows])
    residual = pd.DataFrame([summary for summary, _ in gelu])
    layers = pd.DataFrame([row for _, rows in gelu for row in rows])
    out: Path = args.out
    # NOTE: the report reads every example; the folder keeps per-cell summaries of all of
    # them and the examples of the first SAMPLE networks per cell (the rest are rerun)
    cells = finite_width.cells(pd.concat([step_frame, hanin_frame], ignore_index=True))
    write_csv(out / "hanin_cells.csv", cells, "%.6g")
    write_csv(out / "hanin.csv", hanin_frame[hanin_frame["seed"] < SAMPLE["hanin"]], "%.5g")
    write_csv(out / "hanin_step.csv", step_frame[step_frame["seed"] < SAMPLE["step"]], "%.5g")
    write_csv(out / "gelu_residual.csv", residual, "%.6g")
    write_csv(out / "gelu_layers.csv", layers, "%.4g")
    figures = report.write_figures(out, hanin_frame, residual, layers)
    command = command_line("experiments.finite_width", sys.argv[1:] if argv is None else argv)
    atomic_write(
        out / "README.md",
        report.readme(hanin_frame, step_frame, residual, layers, figures, command, RUNTIME),
    )
    n = len(hanin_configs) + len(step_configs) + len(gelu_configs)
    print(f"{n} networks; wrote {out}/README.md, 5 CSV files and {len(figures)} PNG plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
