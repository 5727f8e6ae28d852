"""Dynamical isometry, measured: the singular values of the input–output Jacobian of deep
tanh and ReLU nets at criticality, orthogonal against Gaussian weights, beside the
free-probability prediction of Pennington, Schoenholz & Ganguli (2017).

    python -m experiments.jacobian_spectrum [--out DIR] [--width N] [--depths 4 8 …]
        [--seeds K] [--jobs J] [--quick]

Writes spectrum.csv, density.csv, theory_density.csv, PNG plots and README.md into --out (default
reports/jacobian_spectrum/). The Jacobian is multiplied out from manual_bp's explicit
per-layer factors W_l and diag φ′(h^(l−1)) (experiments.measure.jacobian).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.measure import jacobian
from experiments.measure.runner import run_tasks
from experiments.report import jacobian_spectrum as report
from experiments.report.common import command_line
from experiments.report.io import atomic_write, write_csv

OUT = Path("reports/jacobian_spectrum")
SEED = 0  # seeds are SEED, SEED + 1, …
DEFAULT = {"width": 256, "depths": [4, 8, 16, 32, 64], "seeds": 16}
QUICK = {"width": 24, "depths": [2, 4, 8], "seeds": 2}
DENSITY_DEPTHS = 3  # the density plot shows the shallowest, a middle and the deepest depth
EDGES = np.linspace(-8.0, 3.0, 221)  # log10 s² bins; below 1e-8: dead units / rounding floor
THEORY_GRID = np.linspace(-8.0, 3.0, 551)  # where the free-probability density is drawn
RUNTIME = (
    "about 31 s of CPU time for the 64 networks, the 12 densities and the plots (the densities "
    "about 3 s of it); 32 to 100 s of wall time with --jobs 2 on two cores shared with other "
    "work."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.jacobian_spectrum",
        description="Singular values of the input–output Jacobian at criticality: orthogonal "
        "against Gaussian weights, tanh and relu, beside free probability.",
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument("--width", type=int, default=None, help=f"default {DEFAULT['width']}")
    p.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=None,
        help=f"default {' '.join(map(str, DEFAULT['depths']))}",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help=f"networks per case (default {DEFAULT['seeds']})"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (default 2, or 1 on one core); 1 runs in this process",
    )
    p.add_argument("--quick", action="store_true", help="a small run for tests and demos")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    width = args.width or base["width"]
    depths = tuple(sorted(set(args.depths or base["depths"])))
    seeds = base["seeds"] if args.seeds is None else args.seeds
    if width < 1 or min(depths) < 1 or seeds < 1 or args.jobs < 1:
        p.error(
            f"--width, --depths, --seeds and --jobs must be ≥ 1, got {width}, "
            f"{list(depths)}, {seeds}, {args.jobs}"
        )
    tasks = []
    for activation, sigma_w2, sigma_b2 in jacobian.CRITICAL:
        q = jacobian.critical_q(activation, sigma_w2, sigma_b2)
        for weights in jacobian.WEIGHT_SPREAD:
            for seed in range(SEED, SEED + seeds):
                config = jacobian.JacobianConfig(
                    activation, weights, sigma_w2, sigma_b2, width, max(depths), seed, q
                )
                tasks.append((config, depths, EDGES))
    results = run_tasks(
        jacobian.measure,
        tasks,
        jobs=args.jobs,
        desc="jacobian_spectrum",
        unit="network",
        show_progress=False,
    )
    rows = [row for result in results for row in result]
    shown = sorted({depths[0], depths[len(depths) // 2], depths[-1]})[:DENSITY_DEPTHS]
    density = [
        {
            "activation": r["activation"],
            "weights": r["weights"],
            "depth": r["depth"],
            "bin": k,
            "lo": EDGES[k],
            "hi": EDGES[k + 1],
            "count": c,
        }
        for r in rows
        if r["depth"] in shown
        for k, c in enumerate(r["histogram"])
    ]
    curves = [
        (act, w, sigma_w2, jacobian.critical_q(act, sigma_w2, sigma_b2), depth, THEORY_GRID)
        for act, sigma_w2, sigma_b2 in jacobian.CRITICAL
        for w in jacobian.WEIGHT_SPREAD
        for depth in shown
    ]
    theory = run_tasks(
        jacobian.theory_density,
        curves,
        jobs=args.jobs,
        desc="free probability",
        unit="density",
        show_progress=False,
    )
    theory = pd.DataFrame([row for result in theory for row in result])
    spectrum = pd.DataFrame([{k: v for k, v in r.items() if k != "histogram"} for r in rows])
    density = (
        pd.DataFrame(density)
        .groupby(["activation", "weights", "depth", "bin", "lo", "hi"], sort=False)["count"]
        .sum()
        .reset_index()
    )
    density = density[density["count"] > 0]  # NOTE: the empty bins are implied by the edges
    out: Path = args.out
    write_csv(out / "spectrum.csv", spectrum, "%.6g")
    write_csv(out / "density.csv", density, "%.6g")
    write_csv(out / "theory_density.csv", theory[theory["density"] > 1e-4], "%.4g")
    figures = report.write_figures(out, spectrum, density, theory, EDGES)
    command = command_line("experiments.jacobian_spectrum", sys.argv[1:] if argv is None else argv)
    atomic_write(
        out / "README.md",
        report.readme(spectrum, figures, command, RUNTIME, (density, theory, EDGES)),
    )
    print(
        f"{len(tasks)} networks; wrote {out}/README.md, spectrum.csv, density.csv, "
        "theory_density.csv and "
        f"{len(figures)} PNG plots"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
