"""torch_ref.gradcheck against torch.autograd.gradcheck (slow and fast mode): time per call.

    python -m experiments.bench_gradcheck [--quick]

Cases: the 20-32-32-5 MLP of the benchmark as a function of its parameters (a scalar loss,
1,893 parameters), the kornia functions whose gradchecks tests/test_kornia_gradcheck.py
runs (when kornia is installed), a few functions of our own (a custom Function, an image
function of torch ops, a kink), and a small function for the per-call overhead. Each time is
the best of a few repeats on one thread (the best is the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import torch_ref

_torch = sys.modules["torch.autograd.gradcheck"]


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


def _mlp() -> tuple[Callable[..., Any], tuple]:
    from experiments.benchmark.models import Case, mlp, vectors

    model, loss_fn, x, t = Case(
        "mlp-20-32-32-5", lambda: mlp((20, 32, 32, 5)), vectors(16, 20, 5)
    ).problem()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(q.detach().clone().requires_grad_(True) for q in model.parameters())

    def f(*ps: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))
        return loss_fn(out, t)

    return f, params


class _Affine(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return x @ w + b

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, g.sum(0)


def _edges(img: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype).view(1, 3, 1, 1)
    gray = (img * w).sum(1, keepdim=True)
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=img.dtype)
    gx = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))
    gy = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k.T.reshape(1, 1, 3, 3))
    return torch.sqrt(gx * gx + gy * gy + torch.finfo(img.dtype).eps)


#: name → (kind, a builder of (func, inputs)); kind "model", "function" or "overhead"
def _affine() -> tuple[Callable[..., Any], tuple]:
    return _Affine.apply, (_x(8, 4), _x(4, 3, seed=1), _x(3, seed=2))


def _two_outputs(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tanh(x @ w), (x @ w).sum(0)


#: name → (kind, a builder of (func, inputs)); kind "model", "function" or "overhead"
CASES: dict[str, tuple[str, Callable[[], tuple[Callable[..., Any], tuple]]]] = {
    "mlp-20-32-32-5 (1,893 parameters)": ("model", _mlp),
    "custom Function x·w + b": ("function", _affine),
    "image edges (gray, Sobel)": ("function", lambda: (_edges, (_x(1, 3, 6, 6),))),
    "relu + |x| at a kink": ("function", lambda: (lambda x: F.relu(x) + x.abs(), (_x(16),))),
    "tanh(x @ w), two outputs": ("function", lambda: (_two_outputs, (_x(5, 4), _x(4, 3, seed=1)))),
    "small: sin(x)·x, 5 entries": ("overhead", lambda: (lambda x: torch.sin(x) * x, (_x(5),))),
}


def _kornia_cases() -> dict[str, tuple[str, Callable[[], tuple[Callable[..., Any], tuple]]]]:
    try:
        from tests.test_kornia_gradcheck import CASES as KORNIA
    except Exception:  # noqa: BLE001 (kornia, or the tests, not installed)
        return {}
    return {f"kornia {name}": ("function", build) for name, build in KORNIA.items()}


def best_ms(fn: Callable[[], Any], repeats: int, budget_s: float = 2.0) -> float:
    """The best time of `repeats` calls (fewer where one call takes over budget_s / repeats)."""
    times: list[float] = []
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if sum(times) > budget_s and len(times) >= 1:
            break
    return 1e3 * min(times)


def yours_only(fn: Callable[..., Any], inputs: tuple, fast: bool = False) -> None:
    """The part of torch_ref.gradcheck that is your code, torch's side alone: your forward
    once, your VJPs (the whole Jacobian, batched as ours batches it; the same cotangent
    twice for the re-entrancy check) and torch's own checks (undefined output gradients,
    mul-by-grad-output). No check of ours can take less; torch's slow time over this is the
    largest speed-up any exact check keeping torch's checks could reach."""
    from torch_ref.gradchecks.common import undefined_grad, vjp_rows

    tupled = inputs if isinstance(inputs, tuple) else (inputs,)
    diff = [x for x in tupled if isinstance(x, torch.Tensor) and x.requires_grad]
    outs = fn(*tupled)
    outs = [o for o in (outs if isinstance(outs, (tuple, list)) else (outs,)) if o.requires_grad]
    for o in outs:
        n = 3 if fast else o.numel()
        V = np.eye(o.numel())[:n].reshape(n, *o.shape)
        for _ in range(2):
            torch.autograd.grad(o, diff, torch.as_tensor(V[0], dtype=o.dtype), retain_graph=True)
        vjp_rows(o, diff, V)
    undefined_grad(outs, diff)
    _torch._test_backward_mul_by_grad_output(outs, tupled, None)


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """One row per case: torch's gradcheck and ours, slow and fast mode, in ms; the speed-ups
    set each mode against the same mode."""
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = {**CASES, **_kornia_cases()}
        if quick:
            cases = {k: v for k, v in cases.items() if v[0] != "model"}
        for name, (kind, build) in cases.items():
            fn, inputs = build()
            ours = functools.partial(torch_ref.gradcheck, fn, inputs)
            slow = functools.partial(_torch.gradcheck, fn, inputs)
            fast = functools.partial(_torch.gradcheck, fn, inputs, fast_mode=True)
            ours_fast = functools.partial(torch_ref.gradcheck, fn, inputs, fast_mode=True)
            ours(), ours_fast(), slow(), fast()  # (warm-up, and every verdict is a pass)
            row = {
                "case": name,
                "kind": kind,
                "torch_slow_ms": best_ms(slow, 3 if quick else 5),
                "torch_fast_ms": best_ms(fast, 5 if quick else 10),
                "ours_ms": best_ms(ours, 5 if quick else 20),
                "ours_fast_ms": best_ms(ours_fast, 5 if quick else 20),
                "yours_ms": best_ms(functools.partial(yours_only, fn, inputs), 5 if quick else 20),
            }
            row["speedup_vs_slow"] = row["torch_slow_ms"] / row["ours_ms"]
            row["speedup_vs_fast"] = row["torch_fast_ms"] / row["ours_fast_ms"]
            row["speedup_bound"] = row["torch_slow_ms"] / row["yours_ms"]
            rows.append(row)
    finally:
        torch.set_num_threads(threads)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no MLP")
    args = parser.parse_args(argv)
    rows = measure(args.quick)
    head = (
        f"{'torch slow':>11} {'ours slow':>10} {'× slow':>8} {'torch fast':>11} {'ours fast':>10} "
        f"{'× fast':>7}"
    )
    print(f"{'case':<42} {head}")
    for r in rows:
        print(
            f"{r['case']:<42} {r['torch_slow_ms']:>9.2f}ms {r['ours_ms']:>8.2f}ms "
            f"{r['speedup_vs_slow']:>7.1f}× {r['torch_fast_ms']:>9.2f}ms "
            f"{r['ours_fast_ms']:>8.2f}ms {r['speedup_vs_fast']:>6.2f}×"
        )
    functions = [r for r in rows if r["kind"] == "function"]
    if functions:
        slow = np.median([r["speedup_vs_slow"] for r in functions])
        fast = np.median([r["speedup_vs_fast"] for r in functions])
        print(f"median over {len(functions)} function-level checks: {slow:.1f}× torch slow, "
              f"{fast:.2f}× torch fast")  # fmt: skip


if __name__ == "__main__":
    main()
