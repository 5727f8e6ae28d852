"""Speed of the oracle: manual backprop against loss.backward() and against gradcheck.

    python -m experiments.benchmark [--out reports/benchmark] [--runs 20] [--quick]

In one process, float64, torch and NumPy's BLAS on the same number of threads (`--threads`,
default 1: two thread pools that spin-wait — OpenBLAS's and torch's OpenMP — alternating in
one process on a 2-core machine measure their contention, not the arithmetic), after
warm-up, median of `--runs` timings taken in alternation (manual, autograd, manual, ...):

- (a) an MLP 784-512-512-10 (tanh), batch 128;
- (b) a CNN for 3×32×32 inputs, batch 32: Conv(3→16, 3, p1)-ReLU-MaxPool(2)-Conv(16→32, 3, p1)
  -ReLU-AvgPool(2)-Flatten-Linear(2048→10);
- (c) manual_gradients against torch.autograd.gradcheck on a 20-32-32-5 tanh MLP (1,893
  parameters, batch 16) and a ~200-parameter CNN (1×8×8 input, batch 4), each with the
  agreement of its gradient with autograd's;
- (d) how the cost grows with batch, width and depth.

Peak memory is the growth of the resident set (ru_maxrss) while one side runs alone in a
fresh subprocess. Timings are measurements: they differ from run to run.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from threadpoolctl import threadpool_limits

import torch_ref
from torch_ref import capture, oracle

COLUMNS = [
    "model",
    "sweep",
    "params",
    "batch",
    "manual_ms",
    "autograd_ms",
    "ratio",
    "gradcheck_ms",
    "manual_peak_mb",
    "autograd_peak_mb",
    "gflop",
    "manual_gemm_fraction",
    "autograd_gemm_fraction",
    "manual_max_rel_err",
    "gradcheck_fd_max_rel_err",
]


# --- the models ----------------------------------------------------------------------


def mlp(widths: tuple[int, ...], act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2048, 10),
    )


def tiny_cnn() -> nn.Sequential:
    """About 200 parameters for 1×8×8 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


@dataclass
class Case:
    """A model, its batch, and the FLOPs of one forward + backward pass."""

    name: str
    sweep: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    classes: int

    def problem(self) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = self.build().double()
        g = torch.Generator().manual_seed(1)
        x = torch.randn(self.input_shape, generator=g, dtype=torch.float64)
        t = torch.randint(0, self.classes, (self.input_shape[0],), generator=g)
        return model, nn.CrossEntropyLoss(), x, t


def flops(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds ×2 of the forward of every Linear and Conv, ×3 for forward + backward."""
    total = 0.0

    def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Linear):
            total += 2.0 * out.numel() * m.in_features
        elif isinstance(m, nn.Conv2d):
            k = m.weight[0].numel()  # C_in/groups · kH · kW
            total += 2.0 * out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return 3.0 * total


# --- timing ----------------------------------------------------------------------------


def _autograd_step(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), t).backward()


def median_ms(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 3) -> dict[str, float]:
    """Median wall time of each function, timed in alternation so both see the same noise."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def gemm_gflops(n: int = 1024, runs: int = 5) -> float:
    """This machine's float64 GEMM rate through NumPy, GFLOP/s (the best of a few runs)."""
    a = np.random.default_rng(0).standard_normal((n, n))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(runs))
    return 2.0 * n**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_worker(case_name: str, side: str) -> None:
    """Runs one side in this fresh process and prints its peak resident-set growth in MB.

    A first run warms up (lazy imports, caches); then the kernel's high-water mark is reset
    to the current RSS (/proc/self/clear_refs, 5) and the second run's peak is read."""
    case = next(c for c in all_cases(quick=False) if c.name == case_name)
    model, loss_fn, x, t = case.problem()

    def once() -> None:
        if side == "manual":
            torch_ref.manual_gradients(model, loss_fn, x, t)
        else:
            _autograd_step(model, loss_fn, x, t)
            model.zero_grad(set_to_none=True)

    once()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    once()
    print(json.dumps({"peak_mb": (_status_kb("VmHWM") - before) / 1024.0}))


def peak_mb(case: Case, side: str) -> float:
    """Peak memory of one side, in a fresh process whose malloc returns freed memory to the
    system at once (so that the measured run grows the resident set again)."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.benchmark",
            "--threads",
            str(torch.get_num_threads()),
            "--peak-worker",
            case.name,
            side,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


# --- agreement: manual vs autograd, finite differences vs autograd ---------------------


def manual_rel_err(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    report = torch_ref.compare_gradients(model, loss_fn, x, t)
    return max(r.max_rel_err for r in report.rows if r.kind == "param")


def _loss_of_params(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor, names: list[str]
) -> Callable[..., torch.Tensor]:
    def f(*params: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, params, strict=True)), (x,))
        return loss_fn(out, t)

    return f


def central_differences(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor, eps: float = 1e-6
) -> list[torch.Tensor]:
    """(L(θ + ε e_i) − L(θ − ε e_i)) / 2ε for every parameter entry: what gradcheck computes."""
    grads = []
    with torch.no_grad():
        for p in model.parameters():
            flat, fd = p.view(-1), torch.empty(p.numel(), dtype=p.dtype)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(loss_fn(model(x), t))
                flat[i] = old - eps
                down = float(loss_fn(model(x), t))
                flat[i] = old
                fd[i] = (up - down) / (2 * eps)
            grads.append(fd.view_as(p))
    return grads


def gradcheck_case(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor, runs: int
) -> tuple[float, float]:
    """(median ms of torch.autograd.gradcheck over all parameters, max relative error of the
    central differences it compares against autograd's gradient)."""
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    f = _loss_of_params(model, loss_fn, x, t, names)
    check = functools.partial(torch.autograd.gradcheck, f, params, eps=1e-6, atol=1e-5, rtol=1e-3)
    ms = 1e3 * statistics.median(_timed(check) for _ in range(runs))
    exact = torch.autograd.grad(f(*params), params)
    fd = central_differences(model, loss_fn, x, t)
    worst = max(float((d - g).abs().max() / g.abs().max()) for d, g in zip(fd, exact, strict=True))
    return ms, worst


# --- the cases ---------------------------------------------------------------------------


def all_cases(quick: bool) -> list[Case]:
    cases = [
        Case("mlp-784-512-512-10", "headline", lambda: mlp((784, 512, 512, 10)), (128, 784), 10),
        Case("cnn-3x32x32", "headline", cnn, (32, 3, 32, 32), 10),
        Case("mlp-20-32-32-5", "gradcheck", lambda: mlp((20, 32, 32, 5)), (16, 20), 5),
        Case("cnn-1x8x8", "gradcheck", tiny_cnn, (4, 1, 8, 8), 3),
    ]
    batches = (8, 16) if quick else (16, 32, 64, 128, 256, 512)
    widths = (16, 32) if quick else (64, 128, 256, 512, 1024)
    depths = (2, 3) if quick else (2, 4, 8, 16)
    for b in batches:
        cases.append(
            Case(f"mlp-batch-{b}", "batch", lambda: mlp((256, 256, 256, 10)), (b, 256), 10)
        )
    for w in widths:
        cases.append(
            Case(f"mlp-width-{w}", "width", functools.partial(mlp, (w, w, w, 10)), (128, w), 10)
        )
    for d in depths:
        cases.append(
            Case(
                f"mlp-depth-{d}",
                "depth",
                functools.partial(mlp, (256,) * d + (10,)),
                (128, 256),
                10,
            )
        )
    return cases


def measure(case: Case, runs: int, gemm: float, with_peaks: bool) -> dict[str, object]:
    model, loss_fn, x, t = case.problem()
    ms = median_ms(
        {
            "manual": lambda: torch_ref.manual_gradients(model, loss_fn, x, t),
            "autograd": lambda: _autograd_step(model, loss_fn, x, t),
        },
        runs,
    )
    gflop = flops(model, x) / 1e9
    row: dict[str, object] = {
        "model": case.name,
        "sweep": case.sweep,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": case.input_shape[0],
        "manual_ms": ms["manual"],
        "autograd_ms": ms["autograd"],
        "ratio": ms["manual"] / ms["autograd"],
        "gradcheck_ms": np.nan,
        "manual_peak_mb": np.nan,
        "autograd_peak_mb": np.nan,
        "gflop": gflop,
        "manual_gemm_fraction": gflop / (ms["manual"] / 1e3) / gemm,
        "autograd_gemm_fraction": gflop / (ms["autograd"] / 1e3) / gemm,
        "manual_max_rel_err": manual_rel_err(model, loss_fn, x, t),
        "gradcheck_fd_max_rel_err": np.nan,
    }
    if case.sweep == "gradcheck":
        row["gradcheck_ms"], row["gradcheck_fd_max_rel_err"] = gradcheck_case(
            model, loss_fn, x, t, runs=1
        )
    if with_peaks and case.sweep == "headline":
        row["manual_peak_mb"] = peak_mb(case, "manual")
        row["autograd_peak_mb"] = peak_mb(case, "autograd")
    return row


def breakdown(case: Case, runs: int) -> dict[str, object]:
    """Where manual_gradients' time goes, each stage timed alone (median ms)."""
    model, loss_fn, x, t = case.problem()
    problem = oracle._prepare(model, loss_fn, x, t, 0.0)
    net = problem.captured.network
    ms = median_ms(
        {
            "total": lambda: torch_ref.manual_gradients(model, loss_fn, x, t),
            "fx_capture": lambda: capture.capture(model, [(tuple(x.shape), "float")]),
            "prepare": lambda: oracle._prepare(model, loss_fn, x, t, 0.0),
            "numpy_pass": lambda: net.loss_and_gradients(
                problem.xs, problem.y, problem.loss, input_grad=False
            ),
            "autograd": lambda: _autograd_step(model, loss_fn, x, t),
        },
        runs,
    )
    return {
        "model": case.name,
        "total_ms": ms["total"],
        "fx_capture_ms": ms["fx_capture"],
        "convert_and_checks_ms": ms["prepare"] - ms["fx_capture"],
        "numpy_forward_backward_ms": ms["numpy_pass"],
        "rest_ms": ms["total"] - ms["prepare"] - ms["numpy_pass"],
        "autograd_ms": ms["autograd"],
    }


# --- outputs -----------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [
        ("batch", "batch size", "batch"),
        ("width", "width (units per layer)", None),
        ("depth", "depth (Linear layers)", None),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (sweep, label, col) in zip(axes, sweeps, strict=True):
        part = frame[frame["sweep"] == sweep].copy()
        if col is None:
            part["x"] = part["model"].str.rsplit("-", n=1).str[-1].astype(int)
        else:
            part["x"] = part[col]
        ax.plot(part["x"], part["manual_ms"], "o-", label="manual_gradients (NumPy, float64)")
        ax.plot(part["x"], part["autograd_ms"], "s--", label="loss.backward() (torch, float64)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("median time per forward + backward (ms)")
        ax.set_title(f"cost against {sweep}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Manual backprop vs autograd: time grows linearly in batch, width² and depth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: object, spec: str) -> str:
    return "–" if isinstance(x, float) and np.isnan(x) else format(x, spec)


def readme(frame: pd.DataFrame, parts: pd.DataFrame, gemm: float, threads: int, runs: int) -> str:
    head = frame[frame["sweep"].isin(["headline", "gradcheck"])]
    rows = "\n".join(
        f"| {r.model} | {r.params:,} | {r.batch} | {r.manual_ms:.2f} | {r.autograd_ms:.2f} | "
        f"{r.ratio:.2f} | {_fmt(r.gradcheck_ms, '.0f')} | {_fmt(r.manual_peak_mb, '.1f')} | "
        f"{_fmt(r.autograd_peak_mb, '.1f')} | {r.manual_gemm_fraction:.0%} | "
        f"{r.autograd_gemm_fraction:.0%} | {r.manual_max_rel_err:.1e} | "
        f"{_fmt(r.gradcheck_fd_max_rel_err, '.1e')} |"
        for r in head.itertuples()
    )
    labels = [
        "model",
        "params",
        "batch",
        "manual ms",
        "autograd ms",
        "ratio",
        "gradcheck ms",
        "manual MB",
        "autograd MB",
        "manual GEMM %",
        "autograd GEMM %",
        "manual rel. err",
        "finite-diff. rel. err",
    ]
    header = "| " + " | ".join(labels) + " |\n|" + "---|" * len(labels)
    speedups = "\n".join(
        f"- {r.model}: manual_gradients is {r.gradcheck_ms / r.manual_ms:,.0f}× faster than "
        f"gradcheck, and agrees with autograd to {r.manual_max_rel_err:.1e} (gradcheck's "
        f"finite differences: {r.gradcheck_fd_max_rel_err:.1e})."
        for r in frame[frame["sweep"] == "gradcheck"].itertuples()
    )
    part_labels = [
        "model",
        "total",
        "fx capture",
        "convert + checks",
        "NumPy forward + backward",
        "rest",
        "autograd",
    ]
    parts_table = "\n".join(
        ["| " + " | ".join(part_labels) + " |", "|" + "---|" * len(part_labels)]
        + [
            f"| {r.model} | {r.total_ms:.2f} | {r.fx_capture_ms:.2f} | "
            f"{r.convert_and_checks_ms:.2f} | {r.numpy_forward_backward_ms:.2f} | "
            f"{r.rest_ms:.2f} | {r.autograd_ms:.2f} |"
            for r in parts.itertuples()
        ]
    )
    return f"""# Benchmark: manual backprop against torch.autograd

Generated by `python -m experiments.benchmark` (`make bench`; part of `make report`).
float64 on both sides, {threads} thread(s) for torch and for NumPy's BLAS alike, median of
{runs} runs after warm-up, the two sides timed in alternation. This machine's float64 GEMM
rate (NumPy, 1024², same threads): {gemm:.1f} GFLOP/s; "GEMM %" is each model's FLOPs per
second as a fraction of it. Peak memory is the growth
of the resident set while one side runs alone in a fresh process (after a warm-up run,
with the kernel's high-water mark reset, and malloc returning freed memory at once).

{header}
{rows}

{speedups}

## Where manual_gradients' time goes

Each stage timed alone (median ms): capturing the model with torch.fx; converting it to
float64 NumPy and checking the inputs and parameters; the NumPy forward and backward pass
itself; the rest (the loss, collecting and casting the gradients). The pass alone is what
to set beside autograd's forward + backward.

{parts_table}

![cost against batch, width and depth](scaling.png)

`manual_gradients` includes everything a user pays for: tracing the model with torch.fx,
copying the parameters to float64 NumPy, the checks, the forward and backward pass, and
casting the gradients back. Raw numbers: [`benchmark.csv`](benchmark.csv).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/benchmark"),
        help="output folder (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=20, help="timed runs per side (default: 20)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch and for NumPy's BLAS alike (default: 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs and sizes, no memory subprocesses (for tests)",
    )
    parser.add_argument("--peak-worker", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.threads < 1:
        parser.error(f"--runs and --threads must be ≥ 1, got {args.runs} and {args.threads}")
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        if args.peak_worker:
            _peak_worker(*args.peak_worker)
        else:
            run(args)


def run(args: argparse.Namespace) -> None:
    """The whole benchmark, written to args.out."""
    runs = 3 if args.quick else args.runs
    cases = all_cases(args.quick)
    if args.quick:  # one model of each kind, small: the benchmark's own test
        cases = [
            c
            for c in cases
            if c.name in ("mlp-20-32-32-5", "cnn-1x8x8") or c.sweep in ("batch", "width", "depth")
        ]
    gemm = gemm_gflops()
    rows = [measure(c, runs, gemm, with_peaks=not args.quick) for c in cases]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    parts = pd.DataFrame(
        [
            breakdown(c, runs)
            for c in cases
            if c.sweep == "headline" or (args.quick and c.name == "mlp-20-32-32-5")
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / "benchmark.csv", frame.to_csv(index=False, float_format="%.6g"))
    plot(frame, args.out / "scaling.png")
    _write_atomic(args.out / "breakdown.csv", parts.to_csv(index=False, float_format="%.6g"))
    _write_atomic(args.out / "README.md", readme(frame, parts, gemm, args.threads, runs))
    print(
        frame[["model", "manual_ms", "autograd_ms", "ratio", "gradcheck_ms"]].to_string(index=False)
    )
    print(f"wrote {args.out}/benchmark.csv, scaling.png, README.md")


if __name__ == "__main__":
    main()
