"""The oracle against torch.autograd per model: the headline models at the default threads and
at one, without the oracle's thread arrangement, a fresh model per call, a second core, and
the sweeps of batch, width and depth with the exponent of a power law fitted to each side."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

import torch_ref
from experiments.benchmark.models import (
    Case,
    cnn,
    images,
    mlp,
    vectors,
)
from experiments.benchmark.profiles import stage_profile
from experiments.benchmark.timing import (
    WARMUP,
    _autograd_step,
    _timed,
    enough_pairs,
    flops,
    manual_rel_err,
    paired,
    row,
    sides,
    threads,
)
from torch_ref import _bench


def headline(
    case: Case, n_threads: int, pairs: int, section: str = "headline", seconds: float = 0.0
) -> dict[str, Any]:
    """manual_gradients against loss.backward() at n threads (over more pairs than `pairs`
    where `seconds` of them hold more: see enough_pairs)."""
    model, loss_fn, x, t = case.problem()
    with threads(n_threads):
        a, b = sides(model, loss_fn, x, t)
        p = paired(a, b, enough_pairs(a, b, pairs, seconds))
    model.zero_grad(set_to_none=True)
    return row(
        section,
        case.name,
        f"{n_threads} thread{'s' if n_threads > 1 else ''}",
        "manual_gradients",
        "loss.backward()",
        params=sum(q.numel() for q in model.parameters()),
        batch=x.shape[0],
        max_rel_err=manual_rel_err(model, loss_fn, x, t),
        **p.summary(),
    )


def without_arrangement(cases: list[Case], n_threads: int, pairs: int) -> list[dict[str, Any]]:
    """The headline comparison with the oracle's thread arrangement switched off (NumPy's BLAS
    left at the caller's threads during the pass): what the arrangement is for."""
    with _bench.without_thread_arrangement():
        return [headline(c, n_threads, pairs, "no arrangement") for c in cases]


def fresh_model(pairs: int, quick: bool, n_threads: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """compare_gradients on a new 20-32-32-5 MLP each call (batch 16) at n threads: the time
    per call, its spread, and where it goes."""
    widths = (4, 5, 3) if quick else (20, 32, 32, 5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, widths[0], generator=g, dtype=torch.float64)
    t = torch.randint(0, widths[-1], (16,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    runs = min(pairs, 3) if quick else pairs
    torch.manual_seed(0)  # every model new, built before the timers start
    models = iter([mlp(widths).double() for _ in range(2 * WARMUP + pairs + runs)])

    def call() -> None:
        report = torch_ref.compare_gradients(next(models), loss_fn, x, t)
        assert report.ok, report

    times = []
    with threads(n_threads):
        for _ in range(WARMUP):
            call()
        for _ in range(pairs):
            times.append(_timed(call)[0])
        stages = stage_profile(call, runs)
    name = "mlp-" + "-".join(map(str, widths))
    setting = f"{n_threads} thread{'s' if n_threads > 1 else ''}"
    measured = row(
        "fresh-model",
        name,
        setting,
        "compare_gradients",
        "",
        a_ms=statistics.median(times),
        a_min=min(times),
        a_max=max(times),
        pairs=len(times),
    )
    return measured, {"case": name, "call": f"compare_gradients, {setting}", **stages}


def second_core(pairs: int, quick: bool, cores: int) -> list[dict[str, Any]]:
    """Each side at `cores` threads over itself at one, on an MLP of width 1024: the pairs are
    (one thread, `cores` threads) of the same call."""
    width = 32 if quick else 1024
    case = Case(
        f"mlp-width-{width}",
        lambda: mlp((width, width, width, 10)),
        vectors(128, width, 10),
    )
    model, loss_fn, x, t = case.problem()
    sides = {
        "manual_gradients": lambda: torch_ref.manual_gradients(model, loss_fn, x, t),
        "loss.backward()": lambda: _autograd_step(model, loss_fn, x, t),
    }
    rows = []
    for name, fn in sides.items():
        p = paired(fn, fn, pairs, setup_a=lambda: threads(cores), setup_b=lambda: threads(1))
        rows.append(
            row(
                "second-core",
                case.name,
                f"{cores} threads over 1",
                f"{name} at {cores} threads",
                f"{name} at 1 thread",
                **p.summary(),
            )
        )
    return rows


def sweep_cases(quick: bool) -> list[tuple[str, int, Case]]:
    """(sweep, x, case): the MLP's batch, width and depth, the CNN's batch."""
    batches = (8, 16, 32) if quick else (16, 32, 64, 128, 256, 512)
    widths = (16, 32, 64) if quick else (64, 128, 256, 512, 1024)
    depths = (2, 3, 4) if quick else (2, 4, 8, 16)
    cnn_batches = (2, 4, 8) if quick else (8, 16, 32, 64, 128)
    base = 32 if quick else 256
    out = []
    for b in batches:
        out.append(("mlp batch", b, Case(f"mlp-batch-{b}", lambda: mlp((base,) * 3 + (10,)),
                                       vectors(b, base, 10))))  # fmt: skip
    for w in widths:
        out.append(("mlp width", w, Case(f"mlp-width-{w}", lambda w=w: mlp((w, w, w, 10)),
                                       vectors(128, w, 10))))  # fmt: skip
    for d in depths:
        out.append(("mlp depth", d, Case(f"mlp-depth-{d}", lambda d=d: mlp((base,) * d + (10,)),
                                       vectors(128, base, 10))))  # fmt: skip
    for b in cnn_batches:
        out.append(("cnn batch", b, Case(f"cnn-batch-{b}", lambda: cnn(8 if quick else 32),
                                       images(b, 8 if quick else 32))))  # fmt: skip
    return out


def sweeps(pairs: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    with threads(1):
        for sweep, value, case in sweep_cases(quick):
            model, loss_fn, x, t = case.problem()
            p = paired(*sides(model, loss_fn, x, t), pairs)
            rows.append(
                row(
                    f"sweep: {sweep}",
                    case.name,
                    "1 thread",
                    "manual_gradients",
                    "loss.backward()",
                    x=value,
                    gflop=flops(model, x) / 1e9,
                    **p.summary(),
                )
            )
    return rows


def fitted_exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Per sweep, the exponent k of time ∝ xᵏ fitted by least squares on log–log, each side,
    over the whole sweep and over its upper half (where fixed costs matter least)."""
    out = []
    for sweep, part in frame[frame["section"].str.startswith("sweep")].groupby(
        "section", sort=False
    ):
        x = np.log(part["x"].to_numpy(float))
        upper = slice(len(x) // 2, None)
        fits = {}
        for side, col in (("manual", "a_ms"), ("autograd", "b_ms")):
            y = np.log(part[col].to_numpy(float))
            fits[f"{side}_exponent"] = float(np.polyfit(x, y, 1)[0])
            fits[f"{side}_exponent_upper"] = float(np.polyfit(x[upper], y[upper], 1)[0])
        out.append({"sweep": sweep.removeprefix("sweep: "), **fits})
    return pd.DataFrame(out)
