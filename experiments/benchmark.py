"""Speed of the oracle against torch.autograd, measured so that the figures can be trusted.

    python -m experiments.benchmark [--out reports/benchmark] [--pairs 20] [--quick]

Everything runs in one process, float64 on both sides, after warm-up. A comparison is a
series of pairs: the oracle and its reference (autograd's `loss.backward()`, gradcheck, or
the same call at another thread count) run back to back, the order alternating from pair to
pair so neither side always follows the other's thread pools. Each side's time is the median
over the pairs; the ratio is the median of the per-pair ratios, and its spread the min–max
of them. The thread settings (torch's intra-op pool and NumPy's BLAS pool) are set per
section and printed with the BLAS libraries in use.

- goals: the MLP 784-512-512-10, the CNN, a CIFAR ResNet of 4 BasicBlocks with BatchNorm,
  a ViT encoder block and a GPT block, each at the machine's default threads and at one;
  manual_gradients against torch.autograd.gradcheck on a 1,893-parameter MLP;
  compare_gradients on a fresh 20-32-32-5 MLP per call (what a property test does), and
  where its time goes; peak memory on a CNN at batch 256 of 3×64×64 (a fresh process per
  side); the second core: an MLP of width 1024 at two threads over one;
- profiles: where manual_gradients' time goes (stages, then the NumPy pass layer by
  layer next to autograd's own profile), for every headline model;
- sweeps: batch, width and depth of an MLP and batch of the CNN, with the exponent of a
  power law fitted to each side's time;
- the convolution kernels: each benchmark convolution under the three ways the sum over
  kernel offsets can run (manual_bp.ops.conv), to show what the rule picks.

Writes README.md (the goals marked met or missed), benchmark.csv (every measurement),
stages.csv, layers.csv and scaling.png into --out. Timings are measurements: they differ
from run to run and from machine to machine; the README says where they come from.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from threadpoolctl import threadpool_info, threadpool_limits

import torch_ref
import torch_ref.problem as problem_module
from experiments.report.io import atomic_write, write_csv, write_png
from manual_bp.network import Network
from manual_bp.ops import conv as conv_ops
from torch_ref import oracle

DEFAULT_OUT = Path("reports/benchmark")
DEFAULT_PAIRS = 20
WARMUP = 3

# --- the models ------------------------------------------------------------------------


def mlp(widths: tuple[int, ...], act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of these widths, `act` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def cnn(size: int = 32) -> nn.Sequential:
    """Conv(3→16, 3, p1)-ReLU-MaxPool(2)-Conv(16→32, 3, p1)-ReLU-AvgPool(2)-Flatten-Linear."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (size // 4) ** 2, 10),
    )


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-BN-ReLU-conv-BN, plus the (projected) input, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """A CIFAR ResNet: a 3×3 stem, 4 BasicBlocks of widths 16, 32, 64, 128 (stride 2 from the
    second), global average pooling, a Linear head. BatchNorm in training mode."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        blocks, c_in = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(c_in, w, 1 if i == 0 else 2))
            c_in = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ViTBlock(nn.Module):
    """A ViT encoder: patch embedding, position embedding, one pre-norm block (LayerNorm,
    nn.MultiheadAttention, LayerNorm, GELU MLP, two residuals), mean over tokens, head."""

    def __init__(self, patch: int = 48, dim: int = 64, heads: int = 4, tokens: int = 64) -> None:
        super().__init__()
        self.embed = nn.Linear(patch, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.norm(x).mean(dim=1))


class GPTBlock(nn.Module):
    """A GPT: token and position embeddings, one pre-norm block with causal
    nn.MultiheadAttention and a GELU MLP, final LayerNorm, a head over the vocabulary.
    Returns logits as (N, vocab, T) for CrossEntropyLoss over every position."""

    def __init__(self, vocab: int = 128, dim: int = 64, heads: int = 4, context: int = 32) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("causal", torch.triu(torch.ones(context, context), 1).bool())
        self.register_buffer("positions", torch.arange(context))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(self.positions)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.causal, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln_f(x)).transpose(1, 2)


@dataclass(frozen=True)
class Case:
    """A model and a batch for it: `inputs(generator)` draws (x, target)."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]

    def problem(self) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = self.build().double()
        x, t = self.inputs(torch.Generator().manual_seed(1))
        return model, nn.CrossEntropyLoss(), x, t


def images(n: int, size: int, classes: int = 10) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
        return x, torch.randint(0, classes, (n,), generator=g)

    return draw


def vectors(n: int, features: int, classes: int) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, features, generator=g, dtype=torch.float64)
        return x, torch.randint(0, classes, (n,), generator=g)

    return draw


def tokens(n: int, t: int, features: int) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, t, features, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 10, (n,), generator=g)

    return draw


def token_ids(n: int, t: int, vocab: int) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, vocab, (n, t), generator=g)
        return idx, torch.randint(0, vocab, (n, t), generator=g)

    return draw


def headline_cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("mlp-20-32-10", lambda: mlp((20, 32, 10)), vectors(8, 20, 10)),
            Case("cnn-b2", lambda: cnn(8), images(2, 8)),
            Case("resnet-b2", lambda: ResNet((4, 8, 8, 8)), images(2, 8)),
            Case("vit-block-b2", lambda: ViTBlock(6, 8, 2, 4), tokens(2, 4, 6)),
            Case("gpt-block-b2", lambda: GPTBlock(11, 8, 2, 5), token_ids(2, 5, 11)),
        ]
    return [
        Case("mlp-784-512-512-10", lambda: mlp((784, 512, 512, 10)), vectors(128, 784, 10)),
        Case("cnn-3x32x32", cnn, images(32, 32)),
        Case("resnet-4-blocks", ResNet, images(32, 32)),
        Case("vit-block", ViTBlock, tokens(32, 64, 48)),
        Case("gpt-block", GPTBlock, token_ids(32, 32, 128)),
    ]


#: the goals of issue 11, each with the figure the issue measured before this round
GOALS: dict[str, tuple[str, str, float, str]] = {
    # key: (case, before, goal, how the goal compares)
    "mlp": ("MLP 784-512-512-10, b128, tanh, CE", "1.8× (defaults), 2.1× (1 thread)", 1.0, "≤"),
    "cnn": ("CNN of the benchmark, b32", "3.1× / 2.3×", 1.2, "≤"),
    "resnet": ("CIFAR ResNet, 4 BasicBlocks with BatchNorm, b32", "2.7× / 1.75×", 1.3, "≤"),
    "vit": ("ViT encoder block (nn.MultiheadAttention), b32", "—", 1.5, "≤"),
    "gpt": ("GPT block (causal nn.MultiheadAttention), b32", "—", 1.5, "≤"),
    "gradcheck": ("speed-up over gradcheck, 1,893-parameter MLP", "229×", 1000.0, "≥"),
    "fresh": ("a fresh 20-32-32-5 MLP per compare_gradients call", "—", 3.0, "≤"),
    "memory": ("peak memory, CNN b256 3×64×64, over float64 autograd", "1.9×", 1.3, "≤"),
    "second-core": ("MLP width 1024: time at 2 threads over 1 thread", "≈ 1.0", 0.65, "≤"),
}
HEADLINE_GOALS = ["mlp", "cnn", "resnet", "vit", "gpt"]


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


# --- the measurements --------------------------------------------------------------------


def row(section: str, case: str, setting: str, a: str, b: str, **values: Any) -> dict[str, Any]:
    return {"section": section, "case": case, "setting": setting, "a": a, "b": b, **values}


def headline(case: Case, n_threads: int, pairs: int, section: str = "headline") -> dict[str, Any]:
    """manual_gradients against loss.backward() at n threads."""
    model, loss_fn, x, t = case.problem()
    with threads(n_threads):
        p = paired(*sides(model, loss_fn, x, t), pairs)
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
    saved = oracle._one_blas_thread
    oracle._one_blas_thread = contextlib.nullcontext  # type: ignore[assignment]
    try:
        return [headline(c, n_threads, pairs, "no arrangement") for c in cases]
    finally:
        oracle._one_blas_thread = saved


def gradcheck_speedup(pairs: int, quick: bool) -> dict[str, Any]:
    """manual_gradients against torch.autograd.gradcheck over every parameter, 1,893 of them."""
    case = Case("mlp-20-32-32-5", lambda: mlp((20, 32, 32, 5)), vectors(16, 20, 5))
    if quick:
        case = Case("mlp-4-5-3", lambda: mlp((4, 5, 3)), vectors(4, 4, 3))
    model, loss_fn, x, t = case.problem()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(q.detach().clone().requires_grad_(True) for q in model.parameters())

    def f(*ps: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))
        return loss_fn(out, t)

    def check() -> None:
        torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-3)

    with threads(1):
        p = paired(lambda: torch_ref.manual_gradients(model, loss_fn, x, t), check, pairs, warmup=1)
    s = p.summary()
    speedups = 1.0 / p.ratios
    return row(
        "gradcheck",
        case.name,
        "1 thread",
        "manual_gradients",
        "gradcheck",
        params=sum(q.numel() for q in model.parameters()),
        batch=x.shape[0],
        max_rel_err=manual_rel_err(model, loss_fn, x, t),
        speedup=float(np.median(speedups)),
        speedup_min=float(speedups.min()),
        speedup_max=float(speedups.max()),
        **s,
    )


class Stages:
    """Wall time spent inside chosen functions during one call, by stage name: each
    function is wrapped for the duration and its calls' times summed (nested stages are
    measured inside their parent, so a parent minus its children is never negative)."""

    def __init__(self, targets: dict[str, tuple[Any, str]]) -> None:
        self.targets = targets
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[Stages]:
        originals = {name: getattr(obj, attr) for name, (obj, attr) in self.targets.items()}

        def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.ms[name] = self.ms.get(name, 0.0) + 1e3 * (time.perf_counter() - start)

            return timed

        for name, (obj, attr) in self.targets.items():
            setattr(obj, attr, wrap(name, originals[name]))
        try:
            yield self
        finally:
            for name, (obj, attr) in self.targets.items():
                setattr(obj, attr, originals[name])


def stage_profile(call: Callable[[], object], runs: int) -> dict[str, float]:
    """Median over runs of each stage of one oracle call: capture (the recorded run of the
    float64 twin and its loss, autograd's graph built with it), convert + checks (the rest
    of _prepare), the NumPy pass, the autograd reference
    (compare_gradients only), and the rest (the loss's checks, collecting and casting the
    gradients, the report), which is the whole call less the stages, never negative."""
    targets = {
        "prepare": (oracle, "_prepare"),
        "capture": (problem_module, "record"),
        "numpy_pass": (Network, "loss_and_gradients"),
        "autograd": (oracle, "_autograd"),
    }
    for _ in range(WARMUP):
        call()
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        stages = Stages(targets)
        with stages.active():
            total, _ = _timed(call)
        ms = stages.ms
        per_run.append(
            {
                "total": total,
                "capture": ms.get("capture", 0.0),
                "convert_and_checks": ms.get("prepare", 0.0) - ms.get("capture", 0.0),
                "numpy_pass": ms.get("numpy_pass", 0.0),
                "autograd_reference": ms.get("autograd", 0.0),
                "rest": total
                - ms.get("prepare", 0.0)
                - ms.get("numpy_pass", 0.0)
                - ms.get("autograd", 0.0),
            }
        )
    return {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}


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


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def memory_case(quick: bool) -> Case:
    if quick:
        return Case("cnn-b32-3x32x32", lambda: cnn(32), images(32, 32))  # a few MB: measurable
    return Case("cnn-b256-3x64x64", lambda: cnn(64), images(256, 64))


def _peak_worker(side: str, quick: bool) -> None:
    """In this fresh process: one side of the memory case, its peak resident-set growth.

    A first call warms up (lazy imports, caches); then the kernel's high-water mark is reset
    to the current RSS (/proc/self/clear_refs, 5) and the second call's peak is read."""
    model, loss_fn, x, t = memory_case(quick).problem()

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


def peak_mb(side: str, quick: bool) -> float:
    """Peak memory of one side, in a fresh process whose malloc returns freed memory to the
    system at once (so that the measured call grows the resident set again)."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, "-m", "experiments.benchmark", "--peak-worker", side]
    out = subprocess.run(
        command + (["--quick"] if quick else []),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def memory(runs: int, quick: bool) -> dict[str, Any]:
    """Peak memory of manual_gradients over loss.backward()'s, `runs` fresh processes each."""
    manual, autograd = [], []
    for _ in range(runs):
        manual.append(peak_mb("manual", quick))
        autograd.append(peak_mb("autograd", quick))
    ratios = np.asarray(manual) / np.asarray(autograd)
    return row(
        "memory",
        memory_case(quick).name,
        f"{torch.get_num_threads()} threads",
        "manual_gradients",
        "loss.backward()",
        a_mb=statistics.median(manual),
        b_mb=statistics.median(autograd),
        ratio=float(np.median(ratios)),
        ratio_min=float(ratios.min()),
        ratio_max=float(ratios.max()),
        pairs=runs,
    )


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


# --- profiles: where the time goes ---------------------------------------------------------


def layer_profile(case: Case, runs: int) -> pd.DataFrame:
    """The NumPy pass layer by layer at one thread: each layer's forward and backward (or
    param_grads), median ms per pass, summed by layer type; and what the pass spends outside
    its layers: the activations and the δ recursion (the network's forward and backward less
    their layers), and the loss (the pass less both)."""
    model, loss_fn, x, t = case.problem()
    problem = oracle._prepare(model, loss_fn, x, t, 0.0)
    net = problem.captured.network
    times: dict[tuple[str, str], list[float]] = {}
    originals = []
    for node in net.nodes:
        layer = node.layer
        for method in ("forward", "backward", "param_grads"):
            fn = getattr(layer, method)
            originals.append((layer, method))

            def timed(*args: Any, _fn: Any = fn, _key: Any = (node.name, method)) -> Any:
                start = time.perf_counter()
                out = _fn(*args)
                times.setdefault(_key, []).append(time.perf_counter() - start)
                return out

            setattr(layer, method, timed)
    whole: dict[str, list[float]] = {"forward": [], "backward": [], "pass": []}
    for part in ("forward", "backward"):
        fn = getattr(net, part)

        def timed_part(*args: Any, _fn: Any = fn, _part: str = part, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = _fn(*args, **kwargs)
            whole[_part].append(time.perf_counter() - start)
            return out

        setattr(net, part, timed_part)
    try:
        with threads(1):
            for _ in range(runs):
                start = time.perf_counter()
                with np.errstate(all="ignore"):
                    net.loss_and_gradients(problem.xs, problem.y, problem.loss, input_grad=False)
                whole["pass"].append(time.perf_counter() - start)
    finally:
        for layer, method in originals:
            delattr(layer, method)
        del net.forward, net.backward
    by_type: dict[str, dict[str, float]] = {}
    kinds = {node.name: type(node.layer).__name__ for node in net.nodes}
    for (name, method), ts in times.items():
        ms = 1e3 * statistics.median(ts) * len(ts) / runs
        entry = by_type.setdefault(kinds[name], {"forward": 0.0, "backward": 0.0})
        # backward calls param_grads itself for some layers: count param_grads alone only
        # where backward was not called (the first layer, whose input needs no gradient)
        if method == "forward":
            entry["forward"] += ms
        elif method == "backward" or (name, "backward") not in times:
            entry["backward"] += ms
    frame = pd.DataFrame(
        [
            {"layer": k, "forward_ms": v["forward"], "backward_ms": v["backward"]}
            for k, v in by_type.items()
        ]  # fmt: skip
    )
    median = {k: 1e3 * statistics.median(v) for k, v in whole.items()}
    outside = {
        "layer": "(activations, δ recursion)",
        "forward_ms": max(0.0, median["forward"] - frame["forward_ms"].sum()),
        "backward_ms": max(0.0, median["backward"] - frame["backward_ms"].sum()),
    }
    loss = {
        "layer": "(loss)",
        "forward_ms": max(0.0, median["pass"] - median["forward"] - median["backward"]),
        "backward_ms": 0.0,
    }
    frame = pd.concat([frame, pd.DataFrame([outside, loss])], ignore_index=True)
    frame["total_ms"] = frame["forward_ms"] + frame["backward_ms"]
    frame.insert(0, "case", case.name)
    return frame.sort_values("total_ms", ascending=False)


def torch_profiles(quick: bool, runs: int) -> pd.DataFrame:
    """`torch_profile` of every headline case, in a fresh process: there KINETO_LOG_LEVEL
    keeps the profiler's C++ side from printing its start and stop into our output."""
    env = dict(os.environ, KINETO_LOG_LEVEL="5")
    command = [sys.executable, "-m", "experiments.benchmark", "--profile-worker", str(runs)]
    out = subprocess.run(
        command + (["--quick"] if quick else []),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    return pd.DataFrame(json.loads(out.stdout.strip().splitlines()[-1]))


def torch_profile(case: Case, runs: int) -> pd.DataFrame:
    """autograd's self CPU time per aten op at one thread, ms per step (torch.profiler)."""
    model, loss_fn, x, t = case.problem()
    with threads(1):
        for _ in range(WARMUP):
            _autograd_step(model, loss_fn, x, t)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                _autograd_step(model, loss_fn, x, t)
    rows = [
        {"case": case.name, "op": e.key, "self_ms": e.self_cpu_time_total / 1e3 / runs}
        for e in prof.key_averages()
        if e.key.startswith("aten::")
    ]
    frame = pd.DataFrame(rows).sort_values("self_ms", ascending=False)
    return frame[frame["self_ms"] > 0]


# --- the convolution kernels: what the rule picks --------------------------------------------


def conv_shapes(quick: bool) -> list[tuple[str, tuple[int, ...], tuple[int, ...], int]]:
    """(where, x_pad shape, weight shape, stride) of the benchmark's convolutions (forward)."""
    if quick:
        return [("tiny", (2, 3, 10, 10), (4, 3, 3, 3), 1)]
    return [
        ("CNN conv 1 (3→16, 32²)", (32, 3, 34, 34), (16, 3, 3, 3), 1),
        ("CNN conv 2 (16→32, 16²)", (32, 16, 18, 18), (32, 16, 3, 3), 1),
        ("CNN conv 2, δ_prev (32→16, 18²)", (32, 32, 20, 20), (16, 32, 3, 3), 1),
        ("ResNet block 1 (16→16, 32²)", (32, 16, 34, 34), (16, 16, 3, 3), 1),
        ("ResNet block 2 (16→32, s2)", (32, 16, 34, 34), (32, 16, 3, 3), 2),
        ("ResNet block 3 (64→64, 8²)", (32, 64, 10, 10), (64, 64, 3, 3), 1),
        ("ResNet block 4 (128→128, 4²)", (32, 128, 6, 6), (128, 128, 3, 3), 1),
        ("CNN b256 conv 2 (16→32, 32²)", (256, 16, 34, 34), (32, 16, 3, 3), 1),
    ]


@contextlib.contextmanager
def conv_plan(column_bytes: int, per_sample_pixels: int) -> Iterator[None]:
    saved = conv_ops.COLUMN_BYTES, conv_ops.PER_SAMPLE_PIXELS
    conv_ops.COLUMN_BYTES, conv_ops.PER_SAMPLE_PIXELS = column_bytes, per_sample_pixels
    try:
        yield
    finally:
        conv_ops.COLUMN_BYTES, conv_ops.PER_SAMPLE_PIXELS = saved


def _correlate(settings: tuple[int, int] | None, x_pad: np.ndarray, W: np.ndarray, s: int) -> None:
    with conv_plan(*settings) if settings else contextlib.nullcontext():
        conv_ops.correlate(x_pad, W, (s, s), (1, 1), 1)


def conv_kernels(pairs: int, quick: bool) -> pd.DataFrame:
    """`correlate` on each shape under each plan, one thread, median ms over `pairs` rounds
    (the plans interleaved), with what the rule picks and torch's F.conv2d beside it."""
    huge = 2**62
    plans = {
        "im2col, per sample": (huge, 1),
        "im2col, batch folded": (huge, huge),
    }
    rng = np.random.default_rng(0)
    rows = []
    with threads(1):
        for where, x_shape, w_shape, s in conv_shapes(quick):
            x_pad, W = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
            tx, tw = torch.from_numpy(x_pad), torch.from_numpy(W)
            fns: dict[str, Callable[[], object]] = {
                **{
                    plan: functools.partial(_correlate, settings, x_pad, W, s)
                    for plan, settings in plans.items()
                },
                "the rule": functools.partial(_correlate, None, x_pad, W, s),
                "torch F.conv2d": functools.partial(torch.nn.functional.conv2d, tx, tw, stride=s),
            }
            times: dict[str, list[float]] = {k: [] for k in fns}
            for fn in fns.values():
                fn()
            for _ in range(pairs):
                for k, fn in fns.items():
                    times[k].append(_timed(fn)[0])
            cols_mb = np.prod(x_shape[:2]) * np.prod(w_shape[2:]) * 8 / 2**20
            out = [(L - k) // s + 1 for L, k in zip(x_shape[2:], w_shape[2:], strict=True)]
            rows.append(
                {
                    "convolution": where,
                    "x_pad": "×".join(map(str, x_shape)),
                    "columns_mb": cols_mb * np.prod(out),
                    "pixels": int(np.prod(out)),
                    **{k: statistics.median(v) for k, v in times.items()},
                }
            )
    return pd.DataFrame(rows)


# --- outputs -------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """The same rows as aligned plain text, for the terminal."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def spread(r: Any, fmt: str = ".2f", suffix: str = "×") -> str:
    return f"{r.ratio:{fmt}}{suffix} ({r.ratio_min:{fmt}}–{r.ratio_max:{fmt}})"


def goal_rows(frame: pd.DataFrame) -> list[list[str]]:
    """One row per goal: the case, the figure before, the goal, what was measured (median
    and the min–max over pairs), met or missed (by the median)."""
    heads = frame[frame["section"] == "headline"]
    by_goal = dict(zip(HEADLINE_GOALS, heads["case"].drop_duplicates(), strict=False))
    out = []
    for key, (label, before, goal, sense) in GOALS.items():
        if key in by_goal:
            rows = heads[heads["case"] == by_goal[key]]
            measured = "; ".join(f"{spread(r)} at {r.setting}" for r in rows.itertuples())
            values = rows["ratio"].tolist()
        elif key == "gradcheck":
            r = next(frame[frame["section"] == "gradcheck"].itertuples())
            measured = f"{r.speedup:,.0f}× ({r.speedup_min:,.0f}–{r.speedup_max:,.0f})"
            values = [r.speedup]
        elif key == "fresh":
            rows = frame[frame["section"] == "fresh-model"]
            measured = "; ".join(
                f"{r.a_ms:.2f} ms ({r.a_min:.2f}–{r.a_max:.2f}) at {r.setting}"
                for r in rows.itertuples()
            )
            values = rows["a_ms"].tolist()
        elif key == "memory":
            r = next(frame[frame["section"] == "memory"].itertuples())
            measured = f"{spread(r)} ({r.a_mb:.0f} MB against {r.b_mb:.0f} MB)"
            values = [r.ratio]
        else:
            r = next(
                frame[
                    (frame["section"] == "second-core") & frame["a"].str.startswith("manual")
                ].itertuples()
            )
            measured = spread(r, suffix="")
            values = [r.ratio]
        ok = all(v <= goal for v in values) if sense == "≤" else all(v >= goal for v in values)
        unit = " ms" if key == "fresh" else "" if key == "second-core" else "×"
        out.append([label, before, f"{sense} {goal:g}{unit}", measured, "met" if ok else "missed"])
    return out


def plot(frame: pd.DataFrame, exponents: pd.DataFrame, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(frame[frame["section"].str.startswith("sweep")].groupby("section", sort=False))
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 4.2))
    for ax, (section, part) in zip(np.atleast_1d(axes), parts, strict=True):
        sweep = section.removeprefix("sweep: ")
        fit = exponents[exponents["sweep"] == sweep].iloc[0]
        ax.plot(
            part["x"], part["a_ms"], "o-", label=f"manual_gradients (k = {fit.manual_exponent:.2f})"
        )
        ax.plot(
            part["x"],
            part["b_ms"],
            "s--",
            label=f"loss.backward() (k = {fit.autograd_exponent:.2f})",
        )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(sweep.split()[-1])
        ax.set_ylabel("median ms per forward + backward")
        ax.set_title(f"{sweep}: time ∝ x^k, fitted k")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("How the cost grows (float64, one thread)")
    fig.tight_layout()
    write_png(path, fig, dpi=100)
    plt.close(fig)


def _ms(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def bounds(
    frame: pd.DataFrame, stages: pd.DataFrame, layers: pd.DataFrame, ops: pd.DataFrame
) -> list[str]:
    """For each headline goal missed, one line from the profiles: how much of the call is the
    NumPy pass, its costliest layer types, and autograd's costliest ops, all at one thread."""
    marks = dict(zip(GOALS, (r[-1] for r in goal_rows(frame)), strict=True))
    heads = frame[frame["section"] == "headline"]["case"].drop_duplicates().tolist()
    lines = []
    for key, case in zip(HEADLINE_GOALS, heads, strict=False):
        if marks[key] != "missed":
            continue
        st = stages[stages["case"] == case].iloc[0]
        mine = layers[layers["case"] == case].head(3)
        theirs = ops[ops["case"] == case].head(3)
        top = ", ".join(f"{r.layer} {r.total_ms:.1f} ms" for r in mine.itertuples())
        ref = ", ".join(f"{r.op} {r.self_ms:.1f} ms" for r in theirs.itertuples())
        lines.append(
            f"- **{GOALS[key][0]}**: at one thread the NumPy pass is {st.numpy_pass:.1f} ms of "
            f"{st.total:.1f} ms ({st.numpy_pass / st.total:.0%}); capture, conversion and "
            f"checks {st.capture + st.convert_and_checks:.1f} ms. Costliest layers: {top}. "
            f"Autograd's costliest ops: {ref} (of {ops[ops['case'] == case]['self_ms'].sum():.1f}"
            " ms)."
        )
    return lines


def readme(
    env: dict[str, Any],
    frame: pd.DataFrame,
    stages: pd.DataFrame,
    layers: pd.DataFrame,
    ops: pd.DataFrame,
    exponents: pd.DataFrame,
    kernels: pd.DataFrame,
    pairs: int,
) -> str:
    blas = [
        f"{p['internal_api']} {p.get('version') or ''} ({p.get('threading_layer') or 'n/a'} "
        f"threading, {p.get('architecture') or 'n/a'}, {Path(p['filepath']).name}), "
        f"{p['num_threads']} threads by default"
        for p in env["numpy_blas"]
    ]
    goals = table(["case", "before", "goal", "measured: median (min–max)", ""], goal_rows(frame))
    heads = frame[frame["section"] == "headline"]
    head_rows = [
        [r.case, f"{int(r.params):,}", int(r.batch), r.setting, _ms(r.a_ms), _ms(r.b_ms),
         spread(r), f"{r.cpu_ratio:.2f}×", f"{r.max_rel_err:.1e}"]
        for r in heads.itertuples()
    ]  # fmt: skip
    stage_rows = [
        [r.case, r.call, _ms(r.total), _ms(r.capture), _ms(r.convert_and_checks),
         _ms(r.numpy_pass), _ms(r.autograd_reference), _ms(r.rest)]
        for r in stages.itertuples()
    ]  # fmt: skip
    profile_parts = []
    for case, part in layers.groupby("case", sort=False):
        theirs = ops[ops["case"] == case].head(6)
        mine = [
            [r.layer, _ms(r.forward_ms), _ms(r.backward_ms), _ms(r.total_ms)]
            for r in part.head(6).itertuples()
        ]
        profile_parts.append(
            f"**{case}**: the NumPy pass by layer type (and outside its layers), "
            f"{part['total_ms'].sum():.1f} ms in all; autograd by aten op (self CPU time), "
            f"{ops[ops['case'] == case]['self_ms'].sum():.1f} ms in all. Top six of each.\n\n"
            + table(["layer", "forward ms", "backward ms", "total ms"], mine)
            + "\n\n"
            + table(["aten op", "self ms"], [[r.op, _ms(r.self_ms)] for r in theirs.itertuples()])
        )
    fresh_rows = frame[frame["section"] == "fresh-model"]
    fresh_text = "; ".join(
        f"{r.a_ms:.2f} ms per call at {r.setting} (min {r.a_min:.2f}, max {r.a_max:.2f}, "
        f"{int(r.pairs)} calls)"
        for r in fresh_rows.itertuples()
    )
    fresh = fresh_rows.iloc[0]
    mem = frame[frame["section"] == "memory"].iloc[0]
    grad = frame[frame["section"] == "gradcheck"].iloc[0]
    cores = frame[frame["section"] == "second-core"]
    core_rows = [[r.a, r.b, spread(r, suffix="")] for r in cores.itertuples()]
    arranged = frame[frame["section"].isin(["headline", "no arrangement"])]
    shown = set(frame[frame["section"] == "no arrangement"]["case"])
    arrangement_rows = [
        [r.case, "one BLAS thread, own threads" if r.section == "headline" else "BLAS as set",
         _ms(r.a_ms), _ms(r.b_after_a_ms), _ms(r.b_after_b_ms), spread(r)]
        for r in arranged.itertuples()
        if r.case in shown and r.setting != "1 thread"
    ]  # fmt: skip
    exp_rows = [
        [r.sweep, f"{r.manual_exponent:.2f}", f"{r.autograd_exponent:.2f}",
         f"{r.manual_exponent_upper:.2f}", f"{r.autograd_exponent_upper:.2f}"]
        for r in exponents.itertuples()
    ]  # fmt: skip
    sweep_rows = [
        [r.section.removeprefix("sweep: "), int(r.x), _ms(r.a_ms), _ms(r.b_ms), spread(r)]
        for r in frame[frame["section"].str.startswith("sweep")].itertuples()
    ]
    plans = ["im2col, per sample", "im2col, batch folded"]
    kernel_rows = [
        [r["convolution"], f"{r['columns_mb']:.1f}", r["pixels"],
         *(_ms(r[p]) for p in [*plans, "the rule", "torch F.conv2d"])]
        for r in kernels.to_dict("records")
    ]  # fmt: skip
    missed = bounds(frame, stages, layers, ops)
    return f"""# Benchmark: the oracle against torch.autograd

Generated by `python -m experiments.benchmark` (`make bench`; part of `make report`).
Timings are measurements: they change from run to run and from machine to machine.

**Where these figures come from.**

{
        table(
            ["", ""],
            [
                ["machine", f"{env['cpu']}, {env['cores']} cores, shared with other work"],
                [
                    "load average (1, 5, 15 min)",
                    f"{env['load_start']} at the start, {env['load_end']} at the end",
                ],
                ["Python, torch, NumPy", f"{env['python']}, {env['torch']}, {env['numpy']}"],
                [
                    "torch's BLAS, intra-op threads",
                    f"{env['torch_blas']}, {env['torch_threads']} by default",
                ],
                *[["NumPy's BLAS" if i == 0 else "(also loaded)", p] for i, p in enumerate(blas)],
            ],
        )
    }

"defaults" are the thread counts the libraries pick on this machine; "1 thread" sets both
torch's and NumPy's to one.

**How.** float64 on both sides, in one process, after {WARMUP} warm-up calls. A comparison
is {pairs} pairs of calls run back to back, the order alternating from pair to pair; a time
is the median over the pairs, a ratio the median of the per-pair ratios, with the min–max of
those ratios in brackets. "CPU ratio" is the same median over process CPU time, which other
work on a shared machine disturbs less at one thread. Garbage collection runs between pairs,
never inside a timer. The oracle's thread arrangement is as it ships: NumPy's BLAS at one
thread per call during the NumPy pass, its convolutions split over as many threads of its
own as the caller gave BLAS (see "Threads" below).

## The goals (issue 11)

A goal is met when the median meets it at every thread setting measured.

{goals}

{"### What bounds the goals missed" if missed else ""}

{chr(10).join(missed)}

## The headline models

`manual_gradients` (everything a user pays for: capture, conversion, checks, the NumPy pass,
the gradients cast back) against `model.zero_grad(); loss_fn(model(x), t).backward()`.
"max rel. err" is the largest relative difference of a parameter gradient from autograd's.

{
        table(
            [
                "model",
                "params",
                "batch",
                "threads",
                "manual ms",
                "autograd ms",
                "ratio (min–max)",
                "CPU ratio",
                "max rel. err",
            ],
            head_rows,
        )
    }

## Where the time goes

Each stage timed inside the same calls (median over {pairs} calls, ms): capture (the recorded
run of the float64 twin and its loss, autograd's graph built with it), building the twin and
checking everything (the rest of preparing), the NumPy forward and backward, the autograd reference
(compare_gradients only), and the rest (the loss's checks, the gradients collected and cast
back, the report): the call less its stages, never negative.

{
        table(
            [
                "case",
                "call",
                "total",
                "capture",
                "convert + checks",
                "NumPy pass",
                "autograd reference",
                "rest",
            ],
            stage_rows,
        )
    }

### The NumPy pass layer by layer, beside autograd's profile (one thread)

{(chr(10) * 2).join(profile_parts)}

## A fresh small model per call

compare_gradients on a new {fresh.case} each call (batch 16), as a property test calls it:
{fresh_text}. Where it goes: the compare_gradients rows of "Where the time goes".

## Speed-up over gradcheck

On the {int(grad.params):,}-parameter {grad.case} (batch {int(grad.batch)}, one thread),
`manual_gradients` takes {grad.a_ms:.2f} ms and `torch.autograd.gradcheck` over every
parameter {grad.b_ms:,.0f} ms: {grad.speedup:,.0f}× faster
({grad.speedup_min:,.0f}–{grad.speedup_max:,.0f}× over {int(grad.pairs)} pairs), and exact
where gradcheck's finite differences are not (largest relative difference from autograd
{grad.max_rel_err:.1e}). Both sides run one after the other, so each starts with caches the
other has just used.

## Peak memory

{mem.case}, each side alone in a fresh process ({int(mem.pairs)} processes per side), the
growth of the resident set during the second call (the first warms up; the kernel's
high-water mark is reset between them; malloc returns freed memory at once):
`manual_gradients` {mem.a_mb:.0f} MB, `loss.backward()` {mem.b_mb:.0f} MB, ratio
{spread(mem)}.

## Threads

Each call at two threads over itself at one thread (pairs of the two settings):

{table(["time of", "over", "ratio (min–max)"], core_rows)}

Why the pass runs NumPy's BLAS at one thread: OpenBLAS's idle threads spin for ~0.1 s after
every threaded call, and torch's OpenMP threads want the same cores. The same comparison at
the default threads with that arrangement switched off (BLAS left as the caller set it), with
autograd's time split by what ran just before it. Where autograd right after the oracle is
slower than autograd right after autograd, the oracle has left a spinning pool behind: the
user's next torch step pays for it, and a per-pair ratio flatters the oracle.

{
        table(
            [
                "model",
                "NumPy pass",
                "manual ms",
                "autograd ms right after manual",
                "autograd ms right after autograd",
                "ratio (min–max)",
            ],
            arrangement_rows,
        )
    }

## How the cost grows

One thread, {max(3, pairs // 2)} pairs per point. The exponent k of time ∝ xᵏ, fitted by
least squares on log–log over the whole sweep and over its upper half (where fixed per-call
costs matter least): 2 for the width of an MLP means the products dominate, 1 for batch and
depth.

{
        table(
            ["sweep", "manual k", "autograd k", "manual k (upper half)", "autograd k (upper half)"],
            exp_rows,
        )
    }

![cost against batch, width and depth](scaling.png)

{table(["sweep", "x", "manual ms", "autograd ms", "ratio (min–max)"], sweep_rows)}

## The convolution kernels

`manual_bp.ops.conv.correlate` on the benchmark's convolutions (forward, and the CNN's
δ_prev, the same correlation over δ padded by the kernel's reach), one thread, median ms:
one GEMM over the whole im2col, each sample its own; the same with the batch folded into
the GEMM's columns; what the rule picks (the batch in parts whose columns fit COLUMN_BYTES =
{conv_ops.COLUMN_BYTES // 2**20} MiB, one GEMM per sample from PER_SAMPLE_PIXELS =
{conv_ops.PER_SAMPLE_PIXELS} output pixels, the batch folded below); torch's own float64
convolution beside them. (For comparison: the kernel this replaced, one matmul per kernel
offset with inner dimension C_in, measured 7.1 ms and 5.5 ms on the CNN's two convolutions
on this machine, one thread.)

{table(["convolution", "columns MB", "pixels", *plans, "the rule", "torch F.conv2d"], kernel_rows)}

Raw numbers: [`benchmark.csv`](benchmark.csv), [`stages.csv`](stages.csv),
[`layers.csv`](layers.csv).
"""


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
            rows.append(headline(case, n, pairs))
            print(f"  {case.name} at {n} thread(s): {spread(pd.Series(rows[-1]))}")
    rows.extend(without_arrangement(cases[:2], max(2, defaults), pairs))
    rows.append(gradcheck_speedup(pairs, quick))
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
    plot(frame, exponents, args.out / "scaling.png")
    atomic_write(
        args.out / "README.md", readme(env, frame, stages, layers, ops, exponents, kernels, pairs)
    )
    print()
    print(text_table(["goal", "before", "target", "measured: median (min–max)", ""],
                     goal_rows(frame)))  # fmt: skip
    print(f"load average at the end: {env['load_end']}")
    print(f"wrote {args.out}/README.md, benchmark.csv, stages.csv, layers.csv, scaling.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    main()
