"""How the benchmark times: the machine and its thread pools, pairs of calls run back to
back in alternating order, and the row every measurement writes."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from threadpoolctl import threadpool_info, threadpool_limits

import torch_ref

DEFAULT_OUT = Path("reports/benchmark")
DEFAULT_PAIRS = 20
WARMUP = 3
#: a headline model's comparison: as many pairs as this many seconds hold, at least the
#: pairs asked for and at most MOST_PAIRS (a median over more pairs moves less with the noise
#: of a shared machine; the slow models keep the pairs asked for)
HEADLINE_SECONDS = 2.0
MOST_PAIRS = 200

# --- the machine -----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def environment() -> dict[str, Any]:
    """The machine, the libraries, the thread pools as they are when the benchmark starts."""
    pools = [
        f"{p['internal_api']} {p.get('version') or ''} ({p['user_api']}, "
        f"{p.get('threading_layer', '') or 'n/a'} threading, {p['num_threads']} threads, "
        f"{Path(p['filepath']).name})".replace("  ", " ")
        for p in threadpool_info()
    ]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "not MKL",
        "numpy_blas": [p for p in threadpool_info() if p["user_api"] == "blas"],
        "pools": pools,
        "load_start": load_average(),
    }


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's intra-op pool and NumPy's BLAS both at n threads; as they were afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


# --- timing ----------------------------------------------------------------------------


@dataclass
class Pairs:
    """Wall times (ms) of two functions run back to back, pair after pair."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    a_cpu: list[float] = field(default_factory=list)
    b_cpu: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> np.ndarray:
        return np.asarray(self.a) / np.asarray(self.b)

    def summary(self) -> dict[str, float]:
        """Medians, the per-pair ratio's median and min–max, the CPU-time ratio, and each
        side's median split by what ran just before it: in pairs 0, 2, … (a b) b follows a
        and a follows the previous pair's a; in pairs 1, 3, … (b a) the other way round."""
        cpu = np.asarray(self.a_cpu) / np.asarray(self.b_cpu)
        even, odd = slice(0, None, 2), slice(1, None, 2)
        return {
            "a_ms": statistics.median(self.a),
            "b_ms": statistics.median(self.b),
            "ratio": float(np.median(self.ratios)),
            "ratio_min": float(self.ratios.min()),
            "ratio_max": float(self.ratios.max()),
            "cpu_ratio": float(np.median(cpu)),
            "pairs": len(self.a),
            "a_after_b_ms": statistics.median(self.a[odd]) if len(self.a) > 1 else np.nan,
            "b_after_a_ms": statistics.median(self.b[even]),
            "b_after_b_ms": statistics.median(self.b[odd]) if len(self.b) > 1 else np.nan,
        }


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)


def paired(
    a: Callable[[], object],
    b: Callable[[], object],
    pairs: int,
    warmup: int = WARMUP,
    setup_a: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    setup_b: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Pairs:
    """`pairs` pairs of (a, b), the order alternating (a b, b a, a b, ...) so that neither
    always runs right after the other; `setup_*` wraps each call (thread settings), outside
    the timer. Warm-up calls first, then a full collection, then no collection while timing."""
    for _ in range(warmup):
        with setup_a():
            a()
        with setup_b():
            b()
    out = Pairs()
    gc.collect()
    gc.disable()
    try:
        for i in range(pairs):
            order = [("a", a, setup_a), ("b", b, setup_b)]
            for side, fn, setup in order if i % 2 == 0 else order[::-1]:
                with setup():
                    wall, cpu = _timed(fn)
                getattr(out, side).append(wall)
                getattr(out, f"{side}_cpu").append(cpu)
            if i % 5 == 4:
                gc.collect()  # (outside the timers: garbage of torch graphs and tapes)
    finally:
        gc.enable()
    return out


def enough_pairs(
    a: Callable[[], object], b: Callable[[], object], pairs: int, seconds: float
) -> int:
    """At least `pairs`, and as many as `seconds` of pairs hold (one call of each timed
    here), at most MOST_PAIRS."""
    if seconds <= 0:
        return pairs
    pair_s = 1e-3 * (_timed(a)[0] + _timed(b)[0])
    return max(pairs, min(MOST_PAIRS, int(seconds / pair_s)))


def _autograd_step(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), t).backward()


def sides(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor
) -> tuple[Callable[[], object], Callable[[], object]]:
    """The two calls compared: manual_gradients, and autograd's step as a user writes it."""
    return (
        functools.partial(torch_ref.manual_gradients, model, loss_fn, x, t),
        functools.partial(_autograd_step, model, loss_fn, x, t),
    )


def manual_rel_err(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    """The largest relative difference of a parameter gradient from autograd's."""
    report = torch_ref.compare_gradients(model, loss_fn, x, t)
    return max(r.max_rel_err for r in report.rows if r.kind == "param")


def flops(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds ×2 of the forward of every Linear and Conv, ×3 for forward + backward."""
    total = 0.0

    def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Linear):
            total += 2.0 * out.numel() * m.in_features
        elif isinstance(m, nn.Conv2d):
            total += 2.0 * out.numel() * m.weight[0].numel()  # C_in/groups · kH · kW

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return 3.0 * total


def row(section: str, case: str, setting: str, a: str, b: str, **values: Any) -> dict[str, Any]:
    return {"section": section, "case": case, "setting": setting, "a": a, "b": b, **values}
