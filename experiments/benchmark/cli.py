"""The whole benchmark (`run`) and its command line (`main`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from experiments import bench_gradcheck
from experiments.benchmark.gradcheck import gradcheck_speedup
from experiments.benchmark.kernels import conv_kernels
from experiments.benchmark.memory import _peak_worker, memory
from experiments.benchmark.models import headline_cases
from experiments.benchmark.profiles import (
    layer_profile,
    stage_profile,
    torch_profile,
    torch_profiles,
)
from experiments.benchmark.readme import goal_rows, plot, readme, spread, text_table
from experiments.benchmark.speed import (
    fitted_exponents,
    fresh_model,
    headline,
    second_core,
    sweeps,
    without_arrangement,
)
from experiments.benchmark.timing import (
    DEFAULT_OUT,
    DEFAULT_PAIRS,
    HEADLINE_SECONDS,
    environment,
    load_average,
    sides,
    threads,
)
from experiments.report.io import atomic_write, write_csv


def run(args: argparse.Namespace) -> None:
    """The whole benchmark, written to args.out."""
    quick, pairs = args.quick, args.pairs
    env = environment()
    defaults = torch.get_num_threads()
    print(f"{env['cpu']}, {env['cores']} cores, load average {env['load_start']}")
    print(f"torch {env['torch']} (BLAS {env['torch_blas']}), NumPy {env['numpy']}")
    for pool in env["pools"]:
        print(f"  thread pool: {pool}")
    settings = [1] if quick else sorted({defaults, 1}, reverse=True)
    cases = headline_cases(quick)
    rows: list[dict[str, Any]] = []
    for case in cases:
        for n in settings:
            rows.append(headline(case, n, pairs, seconds=0.0 if quick else HEADLINE_SECONDS))
            print(f"  {case.name} at {n} thread(s): {spread(pd.Series(rows[-1]))}")
    rows.extend(without_arrangement(cases[:2], max(2, defaults), pairs))
    rows.append(gradcheck_speedup(pairs, quick))
    drop_in = pd.DataFrame(bench_gradcheck.measure(quick))
    print(f"  torch_ref.gradcheck: {len(drop_in)} checks against torch.autograd.gradcheck")
    stage_rows = []
    for n in settings:
        fresh_row, fresh_stages = fresh_model(pairs, quick, n)
        rows.append(fresh_row)
        stage_rows.append(fresh_stages)
    rows.append(memory(1 if quick else 3, quick))
    rows.extend(second_core(pairs, quick, max(2, defaults)))
    rows.extend(sweeps(max(3, pairs // 2), quick))
    frame = pd.DataFrame(rows)
    exponents = fitted_exponents(frame)
    for case in cases:
        model, loss_fn, x, t = case.problem()
        with threads(1):
            stage_rows.append(
                {
                    "case": case.name,
                    "call": "manual_gradients, 1 thread",
                    **stage_profile(sides(model, loss_fn, x, t)[0], pairs),
                }
            )
    stages = pd.DataFrame(stage_rows)
    profile_runs = 3 if quick else 10
    layers = pd.concat([layer_profile(c, profile_runs) for c in cases], ignore_index=True)
    ops = torch_profiles(quick, profile_runs)
    kernels = conv_kernels(3 if quick else 9, quick)
    env["load_end"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "benchmark.csv", frame)
    write_csv(args.out / "stages.csv", stages)
    write_csv(args.out / "layers.csv", layers)
    write_csv(args.out / "gradcheck.csv", drop_in)
    plot(frame, exponents, args.out / "scaling.png")
    atomic_write(
        args.out / "README.md",
        readme(env, frame, stages, layers, ops, exponents, kernels, pairs, drop_in),
    )
    print()
    print(text_table(["goal", "before", "target", "measured: median (min–max)", ""],
                     goal_rows(frame, drop_in)))  # fmt: skip
    print(f"load average at the end: {env['load_end']}")
    print(
        f"wrote {args.out}/README.md, benchmark.csv, stages.csv, layers.csv, gradcheck.csv, "
        "scaling.png"
    )


def main(argv: list[str] | None = None) -> None:
    from experiments import benchmark

    parser = argparse.ArgumentParser(description=benchmark.__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=DEFAULT_PAIRS,
        help="pairs per comparison (default: %(default)s; the sweeps take half)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny models, few pairs: the benchmark's own test"
    )
    parser.add_argument("--peak-worker", choices=("manual", "autograd"), help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", type=int, metavar="RUNS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_worker:
        _peak_worker(args.peak_worker, args.quick)
        return
    if args.profile_worker:
        frames = [torch_profile(c, args.profile_worker) for c in headline_cases(args.quick)]
        print(json.dumps(pd.concat(frames, ignore_index=True).to_dict("records")))
        return
    if args.pairs < 1:
        parser.error(f"--pairs must be ≥ 1, got {args.pairs}")
    if args.quick:
        args.pairs = min(args.pairs, 3)
    run(args)
