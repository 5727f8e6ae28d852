"""Vanishing and exploding gradients through time, and the adding problem, with manual BPTT.

    python -m experiments.rnn_gradient_flow [--out DIR] [--seed S] [--quick]

Two studies, every gradient from manual_bp's explicit backprop through time:

- flow: ‖∂L/∂h_t‖ against t for a loss at the last step (T = 100, H = 128): tanh RNNs with
  W_hh orthogonal·ρ, the same nets without the tanh (linear), a relu RNN with identity
  W_hh, LSTM and GRU with torch's init and with gate bias 1; the measured decay rate per
  step beside the bound of Pascanu et al. (2013);
- adding problem: a tanh RNN and an LSTM trained with Adam and gradient clipping on
  sequences of several lengths T.

Writes flow.csv, flow_summary.csv, adding.csv, adding_summary.csv, PNG plots and README.md.
The measuring code is experiments.measure.recurrent.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.measure.recurrent import FULL, QUICK, run_adding, run_flow
from experiments.report import rnn_gradient_flow as report
from experiments.report.io import atomic_write

DEFAULT_OUT = Path("reports/rnn_gradient_flow")
DEFAULT_SEED = 0


# --- entry point -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.rnn_gradient_flow",
        description="Gradient flow through time and the adding problem, with manual BPTT.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed for weights and data (default {DEFAULT_SEED}); the adding "
                        f"problem also runs the next {FULL.seeds - 1} seeds")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: small nets, short sequences, few steps")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for the adding problem's runs (default 2, or 1 on one "
                        "core); 1 runs in this process")  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be ≥ 1, got {args.jobs}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import matplotlib
    from threadpoolctl import threadpool_limits

    matplotlib.use("Agg")
    s = QUICK if args.quick else FULL
    start = time.perf_counter()
    with threadpool_limits(limits=1), np.errstate(over="raise", invalid="raise"):
        flow = run_flow(s, args.seed)
        seeds = range(args.seed, args.seed + s.seeds)
        runs = run_adding(s, seeds, print, jobs=args.jobs)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    argv_text = " ".join(
        ([f"--seed {args.seed}"] if args.seed != DEFAULT_SEED else [])
        + (["--quick"] if args.quick else [])
    )
    atomic_write(out / "flow.csv", report.flow_csv(flow))
    atomic_write(out / "flow_summary.csv", report.flow_summary_csv(flow))
    atomic_write(out / "adding.csv", report.adding_csv(runs))
    atomic_write(out / "adding_summary.csv", report.adding_summary_csv(runs))
    report.plot_flow_rnn(out / "flow_rnn.png", flow)
    report.plot_flow_gated(out / "flow_gated.png", flow)
    report.plot_rates(out / "rates.png", flow)
    report.plot_adding(out / "adding.png", runs, s)
    atomic_write(out / "README.md", report.readme(flow, runs, s, args.seed, argv_text))
    print(f"wrote {out}/README.md, 4 CSV files and 4 PNG plots "
          f"in {time.perf_counter() - start:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
