"""Hooks into the oracle for experiments.benchmark: internal, not public API.

The benchmark times the stages of one oracle call and measures what the oracle's thread
arrangement is for; both reach inside torch_ref. They do it here and nowhere else, through
the table `STAGES` and the two context managers below, each naming the internal it
touches, so that renaming one fails tests/test_benchmark.py (which checks every entry)
instead of leaving the benchmark to measure nothing. The convolution's kernel rules have
their own public hook, manual_bp.ops.conv.tuned.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch.nn as nn

from manual_bp.network import Network
from torch_ref import oracle
from torch_ref import problem as problem_module
from torch_ref.problem import Problem

#: the stages of one oracle call, by name: the owner and attribute of the function that runs
#: it (prepare holds capture; the reference runs in compare_gradients only)
STAGES: dict[str, tuple[Any, str]] = {
    "prepare": (oracle, "_prepare"),  # the float64 twin, its recorded run, the checks
    "capture": (problem_module, "record"),  # the recorded run of the twin and its loss
    "numpy_pass": (Network, "loss_and_gradients"),  # the manual forward and backward
    "autograd": (oracle, "_autograd"),  # the user's autograd on the twin
}

#: the oracle's thread arrangement for the NumPy pass (one BLAS thread, manual_bp.parallel's
#: own threads): (owner, attribute) of the context manager that sets it
ARRANGEMENT: tuple[Any, str] = (oracle, "_one_blas_thread")


def prepare(model: nn.Module, loss_fn: Callable[..., Any], inputs: Any, target: Any) -> Problem:
    """The problem the oracle prepares for a call (l2 = 0): its manual network is
    `problem.captured.network`, its inputs `problem.xs`, target `problem.y`, loss
    `problem.loss`."""
    return oracle._prepare(model, loss_fn, inputs, target, 0.0)


@contextlib.contextmanager
def timed_stages() -> Iterator[dict[str, float]]:
    """Within the block, the wall time (ms) of every call of each stage in STAGES is added
    up in the dict yielded, by stage name; the functions are restored after it. A stage
    nested in another (capture in prepare) is timed inside its parent."""
    ms: dict[str, float] = {}
    originals = {name: getattr(owner, attr) for name, (owner, attr) in STAGES.items()}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                ms[name] = ms.get(name, 0.0) + 1e3 * (time.perf_counter() - start)

        return call

    for name, (owner, attr) in STAGES.items():
        setattr(owner, attr, timed(name, originals[name]))
    try:
        yield ms
    finally:
        for name, (owner, attr) in STAGES.items():
            setattr(owner, attr, originals[name])


@contextlib.contextmanager
def without_thread_arrangement() -> Iterator[None]:
    """Within the block the oracle's NumPy pass leaves NumPy's BLAS as the caller set it
    (what the arrangement is for is measured against this); restored after it."""
    owner, attr = ARRANGEMENT
    saved = getattr(owner, attr)
    setattr(owner, attr, contextlib.nullcontext)
    try:
        yield
    finally:
        setattr(owner, attr, saved)
