"""Training with manual_bp: does a deep MLP learn, and what decides whether it does?

Plain minibatch SGD (θ ← θ − α ∇θ L) on scikit-learn's 8×8 digits, every gradient from
manual_bp's explicit δ backprop. Three comparisons, each changing one thing:

- init at depth 30: a 30-layer ReLU MLP with xavier_normal against kaiming_normal (He et al.
  2015, "Delving deep into rectifiers", Fig. 3), the same standard normals scaled;
- homogeneity: the Xavier net with its logits multiplied by 1/Π c_l ≈ 2^14.6 and each
  parameter trained at α·c_p² follows the Kaiming run (experiments.measure.train.reparametrisation);
- activation at depth 10: sigmoid against relu, both xavier_normal.

    python -m experiments.training [--out DIR] [--epochs N] [--seed S] [--quick]

Writes history.csv, layers.csv, PNG plots and README.md into --out.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.measure.runner import run_tasks
from experiments.measure.train import (
    Dataset,
    Snapshot,
    digits,
    init_mlp,
    reparametrisation,
    scaled,
    train,
)
from experiments.report import training as report
from experiments.report.io import atomic_write, write_csv
from manual_bp.losses import CrossEntropyLoss

DEFAULT_OUT = Path("reports/training")
DEFAULT_SEED = 0
DEFAULT_EPOCHS = 60
DEFAULT_SEEDS = 4  # every run with seeds seed, seed + 1, …: a claim holds for all or says so
QUICK_SEEDS = 2
QUICK_EPOCHS = 2
QUICK_SAMPLES = 300  # --quick trains on the first 300 digits only
#: measured when the committed report was generated (fixed text: the README stays
#: byte-identical between runs).
RUNTIME = (
    "about 130 s of CPU time for the 20 runs (5 runs × 4 seeds), about 70 s with --jobs 2 "
    "on two idle cores (the 150-epoch plateau runs are the longest)."
)


def run_one(task: tuple[report.RunSpec, Dataset, int, int]) -> list[Snapshot]:
    """One run: the init drawn from a stream seeded by (seed, depth), so runs of one depth
    scale the same standard normals; the same minibatch order for all."""
    spec, data, epochs, seed = task
    sizes = spec.sizes(data.x_train.shape[1])
    network = init_mlp(
        sizes, spec.activation, spec.init, np.random.default_rng([seed, 1, spec.depth])
    )
    loss, lr_scale = CrossEntropyLoss(), None
    if spec.reference is not None:
        scale, lr_scale = reparametrisation(sizes, spec.activation, spec.init, spec.reference)
        loss = scaled(loss, scale)
    return train(
        network,
        data,
        loss,
        lr=report.LR,
        epochs=epochs,
        batch_size=report.BATCH,
        rng=np.random.default_rng([seed, 2]),
        probe_size=report.PROBE,
        lr_scale=lr_scale,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.training",
        description="SGD with manual_bp on the 8×8 digits: init and homogeneity at depth 30, "
        "activation at depth 10.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs per run (default {DEFAULT_EPOCHS}, {QUICK_EPOCHS} with "
        "--quick; the plateau run relu30_xavier 2.5 times as many)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed for the split, the inits and the batches (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_SAMPLES} digits, {QUICK_EPOCHS} epochs",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="runs in parallel processes (default 2)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"seeds per run, --seed and the next ones: each draws its own split, init and "
        f"batches (default {DEFAULT_SEEDS}, {QUICK_SEEDS} with --quick); the plots and "
        "history.csv, layers.csv show --seed",
    )
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be a positive integer, got {args.seeds}")
    if args.jobs < 1:
        parser.error(f"--jobs must be ≥ 1, got {args.jobs}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    start = time.perf_counter()
    n_seeds = args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    seeds = list(range(args.seed, args.seed + n_seeds))
    datas = {
        s: digits(s, report.TEST_FRACTION, QUICK_SAMPLES if args.quick else None) for s in seeds
    }
    tasks = [
        (spec, datas[s], spec.epochs(epochs), s) for s in seeds for spec in report.RUNS.values()
    ]
    results = run_tasks(
        run_one, tasks, jobs=args.jobs, desc="training", unit="run", show_progress=False
    )
    n = len(report.RUNS)
    by_seed = {
        s: dict(zip(report.RUNS, results[i * n : (i + 1) * n], strict=True))
        for i, s in enumerate(seeds)
    }
    histories, data = by_seed[args.seed], datas[args.seed]

    out: Path = args.out
    argv_text = " ".join(
        ([f"--epochs {args.epochs}"] if args.epochs else [])
        + ([f"--seed {args.seed}"] if args.seed != DEFAULT_SEED else [])
        + ([f"--seeds {args.seeds}"] if args.seeds else [])
        + (["--quick"] if args.quick else [])
    )
    write_csv(out / "history.csv", report.history_frame(histories), "%.6f")
    write_csv(out / "layers.csv", report.layers_frame(histories), "%.4g")
    write_csv(out / "seeds.csv", report.seeds_frame(by_seed), "%.6g")
    figures = report.write_figures(out, histories)
    text = report.readme(histories, by_seed, data, epochs, args.seed, argv_text, figures, RUNTIME)
    atomic_write(out / "README.md", text)
    for run, h in histories.items():
        print(
            f"{run:>22}: train loss {h[-1].train_loss:.4f}, test acc {h[-1].test_acc:.3f} "
            f"after {h[-1].epoch} epochs"
        )
    print(
        f"wrote {out}/README.md, history.csv, layers.csv and {len(figures)} PNG plots "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
