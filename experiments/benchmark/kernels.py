"""The convolution kernels of manual_bp: each benchmark convolution under each way the sum
over kernel offsets can run (manual_bp.ops.conv.tuned), beside what the rule picks and
torch's own."""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from experiments.benchmark.timing import (
    _timed,
    threads,
)
from manual_bp.ops import conv as conv_ops


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


def _correlate(settings: dict[str, int] | None, x_pad: np.ndarray, W: np.ndarray, s: int) -> None:
    with conv_ops.tuned(**settings) if settings else contextlib.nullcontext():
        conv_ops.correlate(x_pad, W, (s, s), (1, 1), 1)


def conv_kernels(pairs: int, quick: bool) -> pd.DataFrame:
    """`correlate` on each shape under each plan, one thread, median ms over `pairs` rounds
    (the plans interleaved), with what the rule picks and torch's F.conv2d beside it."""
    huge = 2**62
    plans = {
        "im2col, per sample": {"column_bytes": huge, "per_sample_pixels": 1},
        "im2col, batch folded": {"column_bytes": huge, "per_sample_pixels": huge},
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
