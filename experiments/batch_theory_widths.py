"""The batch theory's misses, measured again at larger widths: are they finite-width effects?

    python -m experiments.batch_theory_widths [--widths 256 512 1024] [--seeds 0 1 2 3 4 5]
        [--wide-widths 2048] [--wide-seeds 0 1 2] [--jobs N] [--summary PATH] [--out PATH]

Reads the gradient-flow sweep's summary.csv (default reports/gradient_flow/summary.csv),
picks every cell (activation, init, depth) whose weight-gradient ratio the batch theory
misses by ≥ 0.1 decade at the sweep's width, and measures those cells again at each of
--widths with --seeds, and the deepest of them also at --wide-widths with --wide-seeds,
with the sweep's own measurement (experiments.measure.flow). Writes one summary row per
configuration, in summary.csv's columns, to --out (default
reports/gradient_flow/widths.csv), which the gradient-flow report reads.

Not part of `make report` (about 30 min of CPU time on one core with the defaults); the
committed widths.csv is what the report reads, and this command regenerates it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.measure import flow, sweep
from experiments.measure.runner import run_tasks
from experiments.report.gradient_flow_numbers import AGREE, batch_theory_table
from experiments.report.io import write_csv

SUMMARY = Path("reports/gradient_flow/summary.csv")
OUT = Path("reports/gradient_flow/widths.csv")
WIDTHS, SEEDS = (256, 512, 1024), tuple(range(6))
WIDE_WIDTHS, WIDE_SEEDS = (2048,), (0, 1, 2)


def missed_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """(activation, init, depth, width, batch) of every cell the batch theory misses by ≥
    AGREE decades (mean over the sweep's seeds), at the zero/torch-default biases."""
    grid = summary[summary["bias_init"].isin(["zeros", "torch_default"])]
    g = batch_theory_table(grid)
    misses = g[g["batch_err"].abs() >= AGREE]
    batch = int(grid["batch"].iloc[0])
    return misses[["activation", "init", "depth", "width"]].assign(batch=batch)


def configs(
    cells: pd.DataFrame,
    widths: Sequence[int],
    seeds: Sequence[int],
    wide_widths: Sequence[int] = (),
    wide_seeds: Sequence[int] = (),
) -> list[flow.Config]:
    """Every missed cell at every width and seed; the deepest cells also at the wide widths."""
    deepest = int(cells["depth"].max()) if len(cells) else 0
    out = []
    for c in cells.itertuples():
        plan = [(w, s) for w in widths for s in seeds]
        if c.depth == deepest:
            plan += [(w, s) for w in wide_widths for s in wide_seeds]
        out += [flow.Config(c.activation, c.init, int(c.depth), w, s, int(c.batch))
                for w, s in plan]  # fmt: skip
    return list(dict.fromkeys(out))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.batch_theory_widths",
        description="Measure the batch theory's missed cells again at larger widths.",
    )
    p.add_argument("--widths", type=int, nargs="*", default=list(WIDTHS),
                   help="widths for every missed cell (default 256 512 1024)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                   help="seeds at those widths (default 0 to 5)")  # fmt: skip
    p.add_argument("--wide-widths", type=int, nargs="*", default=list(WIDE_WIDTHS),
                   help="widths for the deepest missed cells only (default 2048)")  # fmt: skip
    p.add_argument("--wide-seeds", type=int, nargs="*", default=list(WIDE_SEEDS),
                   help="seeds at the wide widths (default 0 1 2)")  # fmt: skip
    p.add_argument("--summary", type=Path, default=SUMMARY,
                   help=f"the gradient-flow sweep's summary.csv (default {SUMMARY})")  # fmt: skip
    p.add_argument("--out", type=Path, default=OUT, help=f"the CSV to write (default {OUT})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: every core)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.summary.is_file():
        p.exit(2, f"{p.prog}: error: {args.summary} not found; run experiments.gradient_flow\n")
    summary = sweep.numeric(pd.read_csv(args.summary, dtype=str, keep_default_na=False))
    cells = missed_cells(summary)
    todo = configs(cells, args.widths, args.seeds, args.wide_widths, args.wide_seeds)
    tasks = sweep.groups(todo)
    results = run_tasks(flow.measure_all, tasks, jobs=args.jobs, sizes=[len(t) for t in tasks],
                        desc="batch_theory_widths", unit="config")  # fmt: skip
    table, _ = sweep.tables(m for group in results for m in group)
    table = sweep.sort(table, flow.SUMMARY_KEYS)
    write_csv(args.out, table, sweep.SUMMARY_FORMAT)
    print(f"{len(cells)} cells, {len(todo)} configurations; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
