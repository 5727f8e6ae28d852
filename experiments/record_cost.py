"""What the recorded run costs, per model and per torch call (the table of docs/oracle.md).

    python -m experiments.record_cost [--runs N]

For each model (float64, one thread): the torch calls its forward and loss make (counted by a
mode that only counts), the nodes of the manual network, `prepare` (the twin's copy, the
recorded run of the forward and the loss, the checks), the same forward and loss run plainly
with autograd's graph built, the cost per torch call of recording (prepare less the plain
run and less prepare's fixed cost, over the torch calls; the fixed cost is prepare's for an
nn.Linear(1, 1) with MSELoss, less its plain run), `manual_gradients` (prepare and the NumPy
pass), and the forward and `loss.backward()` a user runs. Each figure is the median of `runs`
calls after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

import torch_ref
from experiments.benchmark.models import (
    Case,
    EncoderLM,
    GPTBlock,
    ViTBlock,
    mlp,
    token_ids,
    tokens,
    vectors,
)
from torch_ref import _bench

CASES = [
    Case("MLP 20-32-32-5, b16", lambda: mlp((20, 32, 32, 5)), vectors(16, 20, 5)),
    Case("ViT block, b8", lambda: ViTBlock(48, 64, 4, 16), tokens(8, 16, 48)),
    Case("GPT block, b8", lambda: GPTBlock(64, 32, 4, 16), token_ids(8, 16, 64)),
    Case("pre-norm TransformerEncoder LM, b2", EncoderLM, token_ids(2, 8, 50)),
]


class _Count(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _fixed_ms(runs: int) -> float:
    """prepare's cost that does not grow with the forward: an nn.Linear(1, 1) and MSELoss,
    less their plain run."""
    model, loss_fn = torch.nn.Linear(1, 1).double(), torch.nn.MSELoss()
    x, t = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    prepare_ms = _median_ms(lambda: _bench.prepare(model, loss_fn, x, t), runs)
    return prepare_ms - _median_ms(lambda: loss_fn(model(x), t), runs)


def _row(case: Case, runs: int, fixed: float) -> dict[str, Any]:
    model, loss_fn, x, t = case.problem()

    def plain() -> torch.Tensor:
        return loss_fn(model(x), t)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        plain().backward()

    with _Count() as count:
        plain()
    problem = _bench.prepare(model, loss_fn, x, t)
    prepare_ms = _median_ms(lambda: _bench.prepare(model, loss_fn, x, t), runs)
    plain_ms = _median_ms(plain, runs)
    manual_ms = _median_ms(lambda: torch_ref.manual_gradients(model, loss_fn, x, t), runs)
    return {
        "model": case.name,
        "torch calls": count.calls,
        "nodes": len(problem.captured.network.nodes),
        "prepare, ms": prepare_ms,
        "plain forward + loss, ms": plain_ms,
        "per torch call, µs": 1e3 * (prepare_ms - plain_ms - fixed) / count.calls,
        "manual_gradients, ms": manual_ms,
        "forward + backward, ms": _median_ms(step, runs),
    }


def measure(runs: int = 20) -> tuple[float, list[dict[str, Any]]]:
    """(prepare's fixed cost in ms, one row per case)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fixed = _fixed_ms(runs)
        return fixed, [_row(case, runs, fixed) for case in CASES]
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="calls per median (default 20)")
    fixed, rows = measure(parser.parse_args(argv).runs)
    print(f"fixed cost of prepare: {fixed:.2f} ms")
    heads = list(rows[0])
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
