"""The gradient-flow lab: how ‖δ^(l)‖ and ‖∂L/∂W^(l)‖ change with depth, activation and init.

    python -m experiments.gradient_flow [--quick] [--jobs N] [--dask ADDRESS] [--resume]
        [--depths 2 4 8 …] [--widths 256] [--activations sigmoid tanh …] [--inits …]
        [--seeds 0 1 2] [--batch 128] [--sigma-b2 X] [--check-autograd K] [--out DIR]
        [--scan] [--scan-activation tanh] [--scan-depth 64] [--scan-sigma2 1.0 1.1 …]
        [--scan-sigma-b2 0.05] [--no-scan]

Writes into --out (default reports/gradient_flow/): summary.csv (one row per configuration
and seed), layers.csv (one row per configuration, seed and layer), the plots and README.md.
The σ_w² scan runs in the default sweep (with or without --quick) and wherever --scan or a
--scan-* option asks for it; a sweep narrowed by --depths/--widths/--activations/--inits/
--seeds/--batch/--sigma-b2 measures exactly what it names. Every number comes from
experiments.measure.flow (the explicit δ recursion) and experiments.theory.meanfield; torch only
appears under --check-autograd.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.measure import flow, sweep
from experiments.measure.runner import run_tasks
from experiments.report import gradient_flow as report
from experiments.report import gradient_flow_cells as cells_report
from experiments.report import gradient_flow_widths as widths_report
from experiments.report.common import command_line
from experiments.report.io import atomic_write, write_csv

SEED = 20240  # the autograd cross-check's choice of configurations
DEFAULT: dict[str, Any] = {
    "depths": [2, 4, 8, 16, 32, 64],
    "widths": [256],
    "activations": ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "linear"],
    "inits": [
        "small_normal",
        "large_normal",
        "torch_default",
        "xavier_normal",
        "kaiming_normal",
        "orthogonal",
    ],
    "seeds": [0, 1, 2],
    "batch": 128,
    "scan_activation": "tanh",
    "scan_depth": 64,
    "scan_sigma2": [round(1.0 + 0.1 * k, 10) for k in range(17)],
    "scan_sigma_b2": 0.05,
}
QUICK: dict[str, Any] = {
    **DEFAULT,
    "depths": [2, 4, 8],
    "widths": [48],
    "seeds": [0],
    "batch": 16,
    "scan_depth": 8,
    "scan_sigma2": [1.0, 1.5, 2.0, 2.5],
}
OUT = Path("reports/gradient_flow")
GRID_FLAGS = ("depths", "widths", "activations", "inits", "seeds", "batch", "sigma_b2")
SCAN_FLAGS = ("scan_activation", "scan_depth", "scan_sigma2", "scan_sigma_b2")
#: measured when the committed report was generated (not per run: the README stays
#: byte-identical between runs).
RUNTIME = (
    "the default sweep (807 runs) takes about 60 s of CPU time, about 35 s with "
    "--jobs 2 on two idle cores; the section on widths.csv adds about 10 s of CPU time (the "
    "floor's draws and the linear nets' input correlations at widths 256 and 512), the one on "
    "cells.csv about 3 s (bootstrap intervals and the theory's draws)."
)


def _items(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A list argument: space- or comma-separated values."""

    def parse(text: str) -> list[Any]:
        return [kind(t) for t in text.split(",") if t.strip()]

    parse.__name__ = kind.__name__
    return parse


def _list(values: list[Any]) -> str:
    return " ".join(map(str, values))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.gradient_flow",
        description="Measure ‖δ^(l)‖ and ‖∂L/∂W^(l)‖ through deep random MLPs against "
        "mean-field theory.",
    )
    d = DEFAULT
    known_inits = "an init name or sigma2=X (N(0, X/fan_in))"
    for flag, kind, text in (
        ("--depths", int, f"numbers of Linear layers (default {_list(d['depths'])})"),
        ("--widths", int, f"hidden widths, also the input's size (default {_list(d['widths'])})"),
        ("--activations", str, f"hidden activations (default {_list(d['activations'])})"),
        ("--inits", str, f"weight inits: {known_inits} (default {_list(d['inits'])})"),
        ("--seeds", int, f"seeds; one network per seed and config (default {_list(d['seeds'])})"),
        ("--scan-sigma2", float, "the scan's σ_w² values (default 1.0 to 2.6 in steps of 0.1)"),
    ):
        p.add_argument(flag, nargs="+", type=_items(kind), default=None,
                       help=text + "; space- or comma-separated")  # fmt: skip
    p.add_argument("--batch", type=int, default=None,
                   help=f"examples per network (default {d['batch']})")  # fmt: skip
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument("--quick", action="store_true", help="a small sweep for tests and demos")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: every core); 1 runs in this process",
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run on a Dask cluster (the 'cluster' extra) instead of a process pool",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the whole rows already in --out, measure the rest",
    )
    p.add_argument(
        "--sigma-b2",
        type=float,
        default=None,
        help="grid biases N(0, σ_b²) for every init (default: the init's own)",
    )
    p.add_argument(
        "--check-autograd",
        type=int,
        default=0,
        metavar="K",
        help="cross-check K random configurations with torch.autograd",
    )
    p.add_argument(
        "--scan",
        action="store_true",
        help="run the σ_w² scan (on by default only in the default sweep)",
    )
    p.add_argument("--no-scan", action="store_true", help="skip the σ_w² scan")
    p.add_argument("--scan-activation", default=None,
                   help=f"the scan's activation (default {d['scan_activation']})")  # fmt: skip
    p.add_argument("--scan-depth", type=int, default=None,
                   help=f"the scan's depth (default {d['scan_depth']})")  # fmt: skip
    p.add_argument(
        "--scan-sigma-b2", type=float, default=None, help="the scan's bias variance (default 0.05)"
    )
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr")  # fmt: skip
    p.add_argument("--no-report", action="store_true", help="write the CSVs only")
    return p


def _flat(value: list[list[Any]] | None, fallback: list[Any]) -> tuple[Any, ...]:
    if value is None:
        return tuple(fallback)
    return tuple(dict.fromkeys(v for chunk in value for v in chunk))  # unique, in order


def settings(args: argparse.Namespace) -> sweep.Sweep:
    """The sweep the arguments ask for, validated; ValueError names the valid choices."""
    base = QUICK if args.quick else DEFAULT
    given = {k for k in (*GRID_FLAGS, *SCAN_FLAGS) if getattr(args, k) is not None}
    run_scan = not args.no_scan and (
        args.scan or bool(given & set(SCAN_FLAGS)) or not given & set(GRID_FLAGS)
    )
    s = sweep.Sweep(
        depths=_flat(args.depths, base["depths"]),
        widths=_flat(args.widths, base["widths"]),
        activations=_flat(args.activations, base["activations"]),
        inits=_flat(args.inits, base["inits"]),
        seeds=_flat(args.seeds, base["seeds"]),
        batch=base["batch"] if args.batch is None else args.batch,
        sigma_b2=args.sigma_b2,
    )
    for name in ("depths", "widths", "activations", "inits", "seeds"):
        if not getattr(s, name):
            raise ValueError(f"--{name} needs at least one value")
    for name in s.activations:
        flow.check_activation(name)
    for name in s.inits:
        flow.check_init(name)
    if min(s.depths) < 2:
        raise ValueError(f"every depth must be ≥ 2 (one hidden layer), got {list(s.depths)}")
    if max(s.depths) < 3:
        raise ValueError(
            f"the ratios need depth ≥ 3 (two hidden layers); got only {list(s.depths)}"
        )
    if min(s.widths) < 1 or min(s.seeds) < 0 or s.batch < 1:
        raise ValueError("widths and batch must be ≥ 1 and seeds ≥ 0")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be ≥ 1, got {args.jobs}")
    if args.check_autograd < 0:
        raise ValueError(
            f"--check-autograd must be ≥ 0 (configurations to check), got {args.check_autograd}"
        )
    if s.sigma_b2 is not None and not (s.sigma_b2 >= 0 and math.isfinite(s.sigma_b2)):
        raise ValueError(f"--sigma-b2 must be a finite number ≥ 0, got {s.sigma_b2}")
    if not run_scan:
        return s
    scan = sweep.Scan(
        activation=args.scan_activation or base["scan_activation"],
        depth=base["scan_depth"] if args.scan_depth is None else args.scan_depth,
        sigma2=_flat(args.scan_sigma2, base["scan_sigma2"]),
        sigma_b2=base["scan_sigma_b2"] if args.scan_sigma_b2 is None else args.scan_sigma_b2,
    )
    flow.check_activation(scan.activation)
    if scan.depth < 3:
        raise ValueError(f"--scan-depth must be ≥ 3 for a ratio, got {scan.depth}")
    if not scan.sigma2 or any(not (x > 0 and math.isfinite(x)) for x in scan.sigma2):
        raise ValueError(f"--scan-sigma2 values must be positive numbers, got {list(scan.sigma2)}")
    if not (scan.sigma_b2 >= 0 and math.isfinite(scan.sigma_b2)):
        raise ValueError(f"--scan-sigma-b2 must be a finite number ≥ 0, got {scan.sigma_b2}")
    return sweep.Sweep(**{**s.__dict__, "scan": scan})


def check_out(out: Path) -> None:
    """--out must be a folder we can write into; ValueError (one line) otherwise."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder to write the report into")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"--out {out} cannot be written: {err.strerror or err}") from None


# --- the autograd cross-check (the one place torch appears) --------------------------------


def _torch_twin(config: flow.Config):  # -> torch.nn.Sequential
    import torch
    from torch import nn

    from torch_ref.registry.activations import activation_modules

    act = activation_modules()[config.activation]  # the op registry's module for it
    weights, biases = flow.parameters(config)
    layers: list[nn.Module] = []
    for l, (W, b) in enumerate(zip(weights, biases, strict=True), start=1):
        linear = nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if l < len(weights) and act is not nn.Identity:
            layers.append(act())
    return nn.Sequential(*layers)


def check_autograd(configs: Sequence[flow.Config], k: int) -> list[str]:
    """Cross-check k random configurations: torch_ref.compare_gradients on the torch twin,
    and flow's per-layer ‖δ‖, ‖∂L/∂W‖ against autograd's. Returns one line per check."""
    import torch

    import torch_ref

    rng = np.random.default_rng(SEED)
    chosen = [configs[i] for i in sorted(rng.choice(len(configs), min(k, len(configs)), False))]
    lines, failures = [], []
    for config in chosen:
        model = _torch_twin(config)
        x, target = flow.batch(config)
        xt, tt = torch.from_numpy(x), torch.from_numpy(target)
        result = torch_ref.compare_gradients(model, torch.nn.CrossEntropyLoss(), xt, tt)
        outputs, h = [], xt
        for module in model:
            h = module(h)
            if isinstance(module, torch.nn.Linear):
                h.retain_grad()
                outputs.append(h)
        torch.nn.functional.cross_entropy(h, tt).backward()
        layers = flow.measure(config).layers
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        worst = 0.0
        for row, z, lin in zip(layers, outputs, linears, strict=True):
            for ours, theirs in (
                (row["delta_norm"], float(z.grad.norm())),
                (row["grad_w_norm"], float(lin.weight.grad.norm())),
            ):
                worst = max(worst, abs(ours - theirs) / max(abs(theirs), 1e-300))
        line = (
            f"{config.activation}/{config.init}/depth {config.depth}/seed {config.seed}: "
            f"compare_gradients ok={result.ok}, flow norms max rel err {worst:.1e}"
        )
        lines.append(line)
        if not (result.ok and worst <= 1e-7):
            failures.append(f"{line}\n{result}")
    if failures:
        raise SystemExit("autograd cross-check FAILED:\n" + "\n".join(failures))
    return lines


# --- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        s = settings(args)
        configs = s.configs()
        check_out(args.out)
        if args.resume:
            todo, old_summary, old_layers = sweep.resume(args.out, configs)
        else:
            todo, old_summary, old_layers = list(configs), None, None
    except ValueError as err:
        p.exit(2, f"{p.prog}: error: {err}\n")
    try:
        tasks = sweep.groups(todo)
        results = run_tasks(
            flow.measure_all,
            tasks,
            jobs=args.jobs,
            dask=args.dask,
            sizes=[len(t) for t in tasks],
            desc="gradient_flow",
            unit="config",
            show_progress=not args.no_progress,
        )
    except ValueError as err:
        p.exit(2, f"{p.prog}: error: {err}\n")
    except KeyboardInterrupt:
        p.exit(130, f"{p.prog}: interrupted; nothing written\n")
    summary, layers = sweep.tables(m for group in results for m in group)
    if old_summary is not None:
        summary = pd.concat([old_summary, summary], ignore_index=True)
        layers = pd.concat([old_layers, layers], ignore_index=True)
    summary = sweep.sort(summary, flow.SUMMARY_KEYS)
    layers = sweep.sort(layers, flow.LAYER_KEYS)
    out: Path = args.out
    write_csv(out / "layers.csv", layers, sweep.LAYERS_FORMAT)  # first: a summary row = done
    write_csv(out / "summary.csv", summary, sweep.SUMMARY_FORMAT)

    checks = check_autograd(configs, args.check_autograd) if args.check_autograd else []
    files: list[Path] = []
    if not args.no_report:
        numbers, layer_numbers = sweep.numeric(summary), sweep.numeric(layers)
        grid, scan = sweep.select(numbers, s)
        rows = widths_report.read(out / widths_report.CSV)  # batch_theory_widths wrote it
        widths = None if rows is None else widths_report.width_table(rows)
        cells = cells_report.read(out / cells_report.CSV)  # batch_theory_cells wrote it
        files = report.write_figures(out, grid, scan, layer_numbers, s, widths, cells)
        command = command_line("experiments.gradient_flow", sys.argv[1:] if argv is None else argv)
        text = report.readme(
            grid, scan, layer_numbers, s, command, files, checks, RUNTIME, widths, cells
        )
        files.append(atomic_write(out / "README.md", text))
    print(f"{len(todo)} configurations measured ({len(configs) - len(todo)} resumed); wrote")
    for path in [out / "summary.csv", out / "layers.csv", *files]:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
