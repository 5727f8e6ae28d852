"""Max, average, adaptive and power-average pooling against torch.autograd in float64.

A table of named cases covers every option (stride, padding, dilation, ceil_mode,
count_include_pad, divisor_override, adaptive sizes with None and non-divisible ones,
LPPool's norm types, 1-d, 2-d and 3-d, unbatched). Max pooling is also checked on integer
inputs full of ties, where δ must go exactly where torch sends it (the first maximum in the
window's row-major order), overlapping windows included. A hypothesis property draws random
configurations; a table of refusals checks every ValueError.

Ties (`ties()`): the mask equals a brute-force reading of the rule (per window, the entries
within TIE_RTOL · max|x| of its max, where at least two are), contains every entry whose
δ changes under a perturbation below that tolerance, and is empty on generic inputs; a
planted tie rule (the last maximum) and a planted zero tolerance must fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import _compare
import numpy as np
import pytest
import torch
from _layer_check import check_layer
from _tolerances import TOLERANCES
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bp.ops.pooling as pooling

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = TOLERANCES["layer"]


def assert_close(check: str, where: str, got: np.ndarray, want: np.ndarray) -> None:
    """Fail naming the check, the case, the worst index and both values there."""
    _compare.assert_close(check, where, got, want, **TOL)


def assert_equal(check: str, where: str, got: np.ndarray, want: np.ndarray) -> None:
    """Exact equality (ties: δ must land on the very cell torch picks)."""
    assert got.shape == want.shape, f"{check} [{where}]: shape {got.shape}, torch {want.shape}"
    diff = np.argwhere(got != want)
    assert diff.size == 0, (
        f"{check} [{where}]: {len(diff)} cells differ, first at {tuple(diff[0])}: "
        f"manual {got[tuple(diff[0])]!r}, torch {want[tuple(diff[0])]!r}"
    )


@dataclass(frozen=True)
class PoolCase:
    """A printable spec: the layer by its torch name, its options, the input it sees."""

    id: str
    name: str  # "MaxPool2d", "AdaptiveAvgPool1d", ...: the same in ops.pooling and torch.nn
    options: dict[str, Any] = field(default_factory=dict)
    in_shape: tuple[int, ...] = (2, 3, 7, 8)
    ints: bool = False  # small-integer x and δ: ties everywhere, and exact sums
    seed: int = 0
    positive: bool = False  # |x|: LPPool with a fractional or odd norm_type needs x ≥ 0


def check_against_torch(case: PoolCase) -> None:
    """Our layer against torch's module, forward and backward (tests/_layer_check.py)."""
    rng = np.random.default_rng(case.seed)
    if case.ints:
        x = rng.integers(-1, 2, case.in_shape).astype(np.float64)
    else:
        x = rng.standard_normal(case.in_shape)
    if case.positive:
        x = np.abs(x)
    layer = getattr(pooling, case.name)(**case.options)
    module = getattr(torch.nn, case.name)(**case.options)
    # integer inputs and δ: max pooling only copies and sums integers, so equality is exact
    # (LPPool's roots are not: compared at the tolerance, zero-sum windows included)
    exact = case.ints and not case.name.startswith("LP")
    tol = TOLERANCES["equal"] if exact else TOL
    check_layer(case.id, layer, [x], module, tol=tol, seed=case.seed, integer_delta=case.ints)


# --- the table: one case per option ------------------------------------------------------

# fmt: off
X1 = (2, 3, 9)
CASES = [
    # max pooling
    PoolCase("max2d-k2-default-stride", "MaxPool2d", {"kernel_size": 2}),
    PoolCase("max2d-k3-s2-p1", "MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
    PoolCase("max2d-overlapping-s1", "MaxPool2d", {"kernel_size": 3, "stride": 1}),
    PoolCase("max2d-rect-kernel-stride-pad", "MaxPool2d",
             {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 1)}),
    PoolCase("max2d-stride-larger-than-kernel", "MaxPool2d", {"kernel_size": 2, "stride": 3}),
    PoolCase("max2d-dilation2-p1", "MaxPool2d",
             {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2}),
    PoolCase("max2d-dilation-pair", "MaxPool2d",
             {"kernel_size": (2, 3), "stride": 2, "padding": 1, "dilation": (3, 1)}),
    PoolCase("max2d-pad-half-even-kernel", "MaxPool2d",
             {"kernel_size": 4, "stride": 2, "padding": 2}),
    PoolCase("max2d-ceil-overhang", "MaxPool2d",
             {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    PoolCase("max2d-ceil-last-window-dropped", "MaxPool2d",
             {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True},
             in_shape=(2, 3, 6, 5)),
    PoolCase("max2d-ceil-dilation-pad", "MaxPool2d",
             {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
    PoolCase("max2d-unbatched", "MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1},
             in_shape=(3, 7, 8)),
    PoolCase("max2d-empty-batch", "MaxPool2d", {"kernel_size": 2}, in_shape=(0, 3, 7, 8)),
    PoolCase("max1d-k2", "MaxPool1d", {"kernel_size": 2}, in_shape=X1),
    PoolCase("max1d-k3-s2-p1-ceil", "MaxPool1d",
             {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, in_shape=X1),
    PoolCase("max1d-dilation3", "MaxPool1d",
             {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 3}, in_shape=X1),
    PoolCase("max1d-unbatched", "MaxPool1d", {"kernel_size": 3, "stride": 1}, in_shape=(3, 9)),
    # average pooling
    PoolCase("avg2d-k2-default-stride", "AvgPool2d", {"kernel_size": 2}),
    PoolCase("avg2d-k3-s2-p1-include-pad", "AvgPool2d",
             {"kernel_size": 3, "stride": 2, "padding": 1}),
    PoolCase("avg2d-k3-s2-p1-exclude-pad", "AvgPool2d",
             {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    PoolCase("avg2d-overlapping-s1", "AvgPool2d", {"kernel_size": 3, "stride": 1}),
    PoolCase("avg2d-rect-kernel", "AvgPool2d",
             {"kernel_size": (2, 4), "stride": (1, 3), "padding": (1, 2)}),
    PoolCase("avg2d-stride-larger-than-kernel", "AvgPool2d", {"kernel_size": 2, "stride": 3}),
    PoolCase("avg2d-ceil-include-pad-overhang-not-counted", "AvgPool2d",
             {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    PoolCase("avg2d-ceil-exclude-pad", "AvgPool2d",
             {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
              "count_include_pad": False}),
    PoolCase("avg2d-ceil-no-pad", "AvgPool2d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    PoolCase("avg2d-ceil-last-window-dropped", "AvgPool2d",
             {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True},
             in_shape=(2, 3, 6, 5)),
    PoolCase("avg2d-divisor-override", "AvgPool2d", {"kernel_size": 3, "divisor_override": 5}),
    PoolCase("avg2d-divisor-override-pad-ceil", "AvgPool2d",
             {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True,
              "divisor_override": 3}),
    PoolCase("avg2d-divisor-override-negative", "AvgPool2d",
             {"kernel_size": 2, "divisor_override": -2}),
    PoolCase("avg2d-unbatched", "AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1},
             in_shape=(3, 7, 8)),
    PoolCase("avg1d-k3", "AvgPool1d", {"kernel_size": 3}, in_shape=X1),
    PoolCase("avg1d-k3-s2-p1-ceil-exclude-pad", "AvgPool1d",
             {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
              "count_include_pad": False}, in_shape=X1),
    PoolCase("avg1d-k4-p2-ceil-include-pad", "AvgPool1d",
             {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True}, in_shape=X1),
    # adaptive pooling
    PoolCase("adaptive-avg2d-global", "AdaptiveAvgPool2d", {"output_size": 1}),
    PoolCase("adaptive-avg2d-divisible", "AdaptiveAvgPool2d", {"output_size": (7, 4)}),
    PoolCase("adaptive-avg2d-non-divisible", "AdaptiveAvgPool2d", {"output_size": 3}),
    PoolCase("adaptive-avg2d-none-keeps-H", "AdaptiveAvgPool2d", {"output_size": (None, 3)}),
    PoolCase("adaptive-avg2d-none-keeps-both", "AdaptiveAvgPool2d",
             {"output_size": (None, None)}),
    PoolCase("adaptive-avg2d-larger-than-input", "AdaptiveAvgPool2d", {"output_size": (5, 11)}),
    PoolCase("adaptive-avg2d-unbatched", "AdaptiveAvgPool2d", {"output_size": (2, 5)},
             in_shape=(3, 7, 8)),
    PoolCase("adaptive-avg1d-non-divisible", "AdaptiveAvgPool1d", {"output_size": 4}, in_shape=X1),
    PoolCase("adaptive-max2d-global", "AdaptiveMaxPool2d", {"output_size": 1}),
    PoolCase("adaptive-max2d-non-divisible", "AdaptiveMaxPool2d", {"output_size": 3}),
    PoolCase("adaptive-max2d-none", "AdaptiveMaxPool2d", {"output_size": (4, None)}),
    PoolCase("adaptive-max2d-larger-than-input", "AdaptiveMaxPool2d", {"output_size": (9, 5)}),
    PoolCase("adaptive-max2d-unbatched", "AdaptiveMaxPool2d", {"output_size": (3, 5)},
             in_shape=(3, 7, 8)),
    PoolCase("adaptive-max1d-non-divisible", "AdaptiveMaxPool1d", {"output_size": 4}, in_shape=X1),
]
X3 = (2, 2, 5, 6, 4)
CASES += [
    PoolCase("max3d-k2", "MaxPool3d", {"kernel_size": 2}, in_shape=X3),
    PoolCase("max3d-rect-stride-pad-dilation-ceil", "MaxPool3d",
             {"kernel_size": (2, 3, 2), "stride": (1, 2, 2), "padding": (1, 1, 0),
              "dilation": (2, 1, 1), "ceil_mode": True}, in_shape=X3),
    PoolCase("max3d-unbatched", "MaxPool3d", {"kernel_size": 3, "stride": 2, "padding": 1},
             in_shape=X3[1:]),
    PoolCase("avg3d-k2", "AvgPool3d", {"kernel_size": 2}, in_shape=X3),
    PoolCase("avg3d-pad-exclude-ceil", "AvgPool3d",
             {"kernel_size": (3, 2, 3), "stride": 2, "padding": (1, 1, 1), "ceil_mode": True,
              "count_include_pad": False}, in_shape=X3),
    PoolCase("avg3d-divisor-override", "AvgPool3d",
             {"kernel_size": 3, "stride": 1, "padding": 1, "divisor_override": 7}, in_shape=X3),
    PoolCase("avg3d-unbatched", "AvgPool3d", {"kernel_size": 2, "stride": 1}, in_shape=X3[1:]),
    PoolCase("adaptive-avg3d", "AdaptiveAvgPool3d", {"output_size": (3, 4, 3)}, in_shape=X3),
    PoolCase("adaptive-avg3d-none", "AdaptiveAvgPool3d", {"output_size": (None, 2, None)},
             in_shape=X3),
    PoolCase("adaptive-max3d", "AdaptiveMaxPool3d", {"output_size": (2, 4, 3)}, in_shape=X3),
    PoolCase("adaptive-max3d-larger", "AdaptiveMaxPool3d", {"output_size": (6, 7, 5)},
             in_shape=X3[1:]),
    # power-average pooling: (K · avg(x^p))^(1/p)
    PoolCase("lp1d-p2", "LPPool1d", {"norm_type": 2, "kernel_size": 3}, in_shape=X1),
    PoolCase("lp1d-p1-signed", "LPPool1d", {"norm_type": 1, "kernel_size": 2, "stride": 1},
             in_shape=X1),
    PoolCase("lp1d-p3-ceil-overhang-scaled-by-K", "LPPool1d",
             {"norm_type": 3, "kernel_size": 4, "stride": 3, "ceil_mode": True}, in_shape=X1,
             positive=True),
    PoolCase("lp2d-p2", "LPPool2d", {"norm_type": 2, "kernel_size": 2}),
    PoolCase("lp2d-p1.5-rect-stride", "LPPool2d",
             {"norm_type": 1.5, "kernel_size": (2, 3), "stride": (1, 2)}, positive=True),
    PoolCase("lp2d-p4-ceil", "LPPool2d", {"norm_type": 4, "kernel_size": 3, "stride": 2,
                                          "ceil_mode": True}),
    PoolCase("lp2d-inf", "LPPool2d", {"norm_type": float("inf"), "kernel_size": 2}),
    PoolCase("lp2d-unbatched", "LPPool2d", {"norm_type": 2, "kernel_size": 2},
             in_shape=(3, 7, 8)),
    PoolCase("lp3d-p2", "LPPool3d", {"norm_type": 2, "kernel_size": 2}, in_shape=X3),
    PoolCase("lp3d-inf-ceil", "LPPool3d", {"norm_type": float("inf"), "kernel_size": 3,
                                           "stride": 2, "ceil_mode": True}, in_shape=X3),
]

# Ties: integer-valued x in {−1, 0, 1} (and all zeros) through every max pool, most with
# overlapping windows: z and δ_prev must equal torch's exactly.
TIES = [
    PoolCase("ties-max2d-k2", "MaxPool2d", {"kernel_size": 2}, ints=True),
    PoolCase("ties-max2d-overlap-k3-s1", "MaxPool2d", {"kernel_size": 3, "stride": 1}, ints=True),
    PoolCase("ties-max2d-overlap-k3-s2-p1", "MaxPool2d",
             {"kernel_size": 3, "stride": 2, "padding": 1}, ints=True),
    PoolCase("ties-max2d-overlap-dilation", "MaxPool2d",
             {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2}, ints=True),
    PoolCase("ties-max2d-overlap-rect-ceil", "MaxPool2d",
             {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "ceil_mode": True},
             ints=True),
    PoolCase("ties-max1d-overlap", "MaxPool1d", {"kernel_size": 4, "stride": 1, "padding": 2},
             in_shape=X1, ints=True),
    PoolCase("ties-adaptive-max2d-overlap", "AdaptiveMaxPool2d", {"output_size": (5, 6)},
             ints=True),
    PoolCase("ties-adaptive-max1d-overlap", "AdaptiveMaxPool1d", {"output_size": 7},
             in_shape=X1, ints=True),
]
for seed in (1, 2):
    TIES += [PoolCase(f"ties-max2d-overlap-seed{seed}", "MaxPool2d",
                      {"kernel_size": 3, "stride": 1, "padding": 1}, ints=True, seed=seed)]
TIES += [
    PoolCase("ties-max3d-overlap", "MaxPool3d", {"kernel_size": 2, "stride": 1, "padding": 1},
             in_shape=X3, ints=True),
    PoolCase("ties-adaptive-max3d-overlap", "AdaptiveMaxPool3d", {"output_size": (4, 5, 3)},
             in_shape=X3, ints=True),
    # LPPool: zero sums (p = 1: a window of +1 and −1; p = 2: all zeros) get torch's 0
    PoolCase("ties-lp1d-p1-zero-sums", "LPPool1d", {"norm_type": 1, "kernel_size": 2,
                                                    "stride": 1}, in_shape=X1, ints=True),
    PoolCase("ties-lp2d-p2-zero-windows", "LPPool2d", {"norm_type": 2, "kernel_size": 2,
                                                       "stride": 1}, ints=True),
    PoolCase("ties-lp2d-inf", "LPPool2d", {"norm_type": float("inf"), "kernel_size": 3,
                                           "stride": 1}, ints=True),
]
# fmt: on


@pytest.mark.parametrize("case", CASES + TIES, ids=[c.id for c in CASES + TIES])
def test_pool_matches_torch(case: PoolCase) -> None:
    check_against_torch(case)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES + TIES]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate case ids: {dupes}"


@pytest.mark.parametrize(
    "name, options",
    [
        pytest.param("MaxPool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, id="max2d"),
        pytest.param("MaxPool1d", {"kernel_size": 3, "stride": 2, "padding": 1}, id="max1d"),
        pytest.param("AdaptiveMaxPool2d", {"output_size": (4, 5)}, id="adaptive-max2d"),
    ],
)
def test_all_equal_input_sends_delta_to_each_windows_first_cell(name: str, options: dict) -> None:
    """On a constant input every cell ties: torch picks each window's first input cell."""
    shape = (1, 2, 5, 6) if name.endswith("2d") else (1, 2, 6)
    x = np.zeros(shape)
    layer = getattr(pooling, name)(**options)
    z, cache = layer.forward(x)
    delta = np.arange(1.0, 1.0 + z.size).reshape(z.shape)  # distinct: shows who got what
    dx, _ = layer.backward(delta, cache)
    x_t = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    z_t = getattr(torch.nn, name)(**options)(x_t)
    (dx_t,) = torch.autograd.grad(z_t, x_t, torch.from_numpy(delta))
    assert_equal("delta_prev", f"{name} zeros", dx, dx_t.numpy())


# --- random configurations ---------------------------------------------------------------


@st.composite
def pool_cases(draw: st.DrawFn, *, max_size: int = 9, kinds: tuple[str, ...] = ()) -> PoolCase:
    """A pooling configuration torch accepts (padding ≤ k/2, output ≥ 1), as a PoolCase."""
    kind = draw(st.sampled_from(kinds or ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg", "LP")))
    dims = draw(st.sampled_from([1, 2, 3]))
    if dims == 3:
        max_size = min(max_size, 5)
    name = f"{kind}Pool{dims}d"
    positive = False
    if kind.startswith("Adaptive"):
        sizes = [draw(st.integers(1, max_size)) for _ in range(dims)]
        out = [draw(st.integers(1, L + 3)) for L in sizes]
        if dims == 1:
            options: dict[str, Any] = {"output_size": out[0]}
        else:  # None keeps that input size
            options = {"output_size": tuple(draw(st.sampled_from([o, None])) for o in out)}
    else:
        kernel = [draw(st.integers(1, 4 if dims < 3 else 3)) for _ in range(dims)]
        dilation = [draw(st.integers(1, 3)) if kind == "Max" else 1 for _ in range(dims)]
        padding = [draw(st.integers(0, k // 2)) if kind != "LP" else 0 for k in kernel]
        smallest = [  # the kernel fits the padded input (avg_pool3d: the unpadded one)
            max(1, d * (k - 1) + 1 - 2 * p, k if name == "AvgPool3d" else 1)
            for k, d, p in zip(kernel, dilation, padding, strict=True)
        ]
        sizes = [draw(st.integers(lo, max(lo, max_size))) for lo in smallest]
        options = {
            "kernel_size": tuple(kernel),
            "stride": tuple(draw(st.integers(1, 4)) for _ in range(dims)),
            "ceil_mode": draw(st.booleans()),
        }
        if kind == "LP":
            options["norm_type"] = draw(st.sampled_from([1, 2, 3, 1.5, float("inf")]))
            positive = options["norm_type"] in (3, 1.5)
            if dims == 1:  # NOTE: torch's lp_pool1d multiplies by kernel_size: an int only
                options["kernel_size"], options["stride"] = kernel[0], options["stride"][0]
        else:
            options["padding"] = tuple(padding)
        if kind == "Max":
            options["dilation"] = tuple(dilation)
        elif kind == "Avg":
            options["count_include_pad"] = draw(st.booleans())
            if dims > 1:
                options["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 7)))
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    ints = (kind.endswith("Max") or kind == "LP") and draw(st.booleans())
    return PoolCase(
        "hypothesis", name, options, (*batch, 2, *sizes), ints, draw(st.integers(0, 99)), positive
    )


@given(pool_cases())
@settings(max_examples=150)
def test_random_configurations_match_torch(case: PoolCase) -> None:
    """Ours equals torch, or refuses exactly where torch's max pool returns −∞ (a window on
    padding only)."""
    with torch.no_grad():
        z_t = getattr(torch.nn, case.name)(**case.options)(torch.zeros(case.in_shape))
    if torch.isinf(z_t).any():
        with pytest.raises(ValueError, match="covers only padding"):
            getattr(pooling, case.name)(**case.options).shape(case.in_shape)
    else:
        check_against_torch(case)


# --- refusals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    name: str
    options: dict[str, Any]
    in_shape: tuple[int, ...]
    match: str
    torch_refuses: bool = True  # False: torch computes something we refuse on purpose


# fmt: off
REFUSALS = [
    Refusal("max-window-on-padding-only", "MaxPool2d",
            {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2}, (1, 1, 1, 1),
            r"window 0 along spatial dim 0 covers only padding", torch_refuses=False),
    Refusal("max1d-window-on-padding-only", "MaxPool1d",
            {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": 3}, (1, 1, 2),
            r"window 0 along spatial dim 0 covers only padding", torch_refuses=False),
    Refusal("max-window-on-padding-only-dim1", "MaxPool2d",
            {"kernel_size": 2, "stride": 1, "padding": (0, 1), "dilation": (1, 2)}, (1, 1, 3, 1),
            r"window 0 along spatial dim 1 covers only padding", torch_refuses=False),
    Refusal("max-padding-over-half-kernel", "MaxPool2d", {"kernel_size": 2, "padding": 2},
            (1, 1, 9, 9), r"padding must be at most half the kernel size"),
    Refusal("max-padding-over-half-undilated-kernel", "MaxPool2d",
            {"kernel_size": 3, "padding": 2, "dilation": 3}, (1, 1, 9, 9),
            r"padding must be at most half the kernel size, got padding \(2, 2\)"),
    Refusal("avg-padding-over-half-kernel", "AvgPool2d", {"kernel_size": 3, "padding": (1, 2)},
            (1, 1, 9, 9), r"padding must be at most half the kernel size"),
    Refusal("avg1d-padding-over-half-kernel", "AvgPool1d", {"kernel_size": 3, "padding": 2},
            (1, 1, 9), r"padding must be at most half the kernel size"),
    Refusal("max-output-size-zero", "MaxPool2d", {"kernel_size": 5}, (1, 1, 2, 2),
            r"too small .* output size would be 0 along spatial dim 0"),
    Refusal("avg1d-output-size-zero", "AvgPool1d", {"kernel_size": 4}, (1, 1, 3),
            r"output size would be 0"),
    Refusal("max-dilated-kernel-too-large", "MaxPool1d", {"kernel_size": 3, "dilation": 3},
            (1, 1, 6), r"output size would be 0"),
    Refusal("max-wrong-ndim", "MaxPool2d", {"kernel_size": 2}, (4, 4),
            r"expected input \(N, C, H, W\) or unbatched \(C, H, W\)"),
    Refusal("avg1d-wrong-ndim", "AvgPool1d", {"kernel_size": 2}, (1, 1, 4, 4),
            r"expected input \(N, C, L\) or unbatched \(C, L\)"),
    Refusal("max-empty-channels", "MaxPool2d", {"kernel_size": 2}, (1, 0, 4, 4),
            r"with C and H, W non-zero, got shape \(1, 0, 4, 4\)"),
    Refusal("adaptive-empty-spatial", "AdaptiveMaxPool2d", {"output_size": 2}, (1, 1, 0, 2),
            r"with C and H, W non-zero"),
    Refusal("adaptive-output-zero", "AdaptiveAvgPool2d", {"output_size": (0, 2)}, (1, 1, 4, 4),
            r"output_size must be a positive int or 2 of them .*, got \(0, 2\)",
            torch_refuses=False),
    Refusal("adaptive-output-none", "AdaptiveAvgPool2d", {"output_size": None}, (1, 1, 4, 4),
            r"output_size must be a positive int or 2 of them .*, got None"),
    Refusal("adaptive1d-output-none-entry", "AdaptiveMaxPool1d", {"output_size": (None,)},
            (1, 1, 4), r"output_size must be a positive int or 1 of them, got \(None,\)"),
    Refusal("adaptive-output-wrong-length", "AdaptiveAvgPool2d", {"output_size": (1, 2, 3)},
            (1, 1, 4, 4), r"output_size must be"),
    Refusal("avg-divisor-override-zero", "AvgPool2d", {"kernel_size": 2, "divisor_override": 0},
            (1, 1, 4, 4), r"divisor_override must be a non-zero int, got 0"),
    Refusal("max-stride-zero", "MaxPool2d", {"kernel_size": 2, "stride": 0}, (1, 1, 4, 4),
            r"stride must be an int ≥ 1"),
    Refusal("avg-kernel-zero", "AvgPool2d", {"kernel_size": (2, 0)}, (1, 1, 4, 4),
            r"kernel_size must be an int ≥ 1"),
    Refusal("max-negative-padding", "MaxPool1d", {"kernel_size": 2, "padding": -1}, (1, 1, 4),
            r"padding must be an int ≥ 0"),
    Refusal("avg3d-input-smaller-than-kernel-despite-padding", "AvgPool3d",
            {"kernel_size": (1, 2, 1), "stride": 1, "padding": (0, 1, 0)}, (1, 2, 1, 1, 1),
            r"smaller than kernel_size \(1, 2, 1\)"),
    Refusal("max3d-wrong-ndim", "MaxPool3d", {"kernel_size": 2}, (2, 4, 4),
            r"expected input \(N, C, D, H, W\) or unbatched \(C, D, H, W\)"),
    Refusal("lp-norm-below-one", "LPPool2d", {"norm_type": 0.5, "kernel_size": 2}, (1, 1, 4, 4),
            r"norm_type must be ≥ 1 \(or inf\), got 0.5", torch_refuses=False),
    Refusal("lp-norm-minus-inf", "LPPool1d", {"norm_type": float("-inf"), "kernel_size": 2},
            (1, 1, 4), r"norm_type must be ≥ 1", torch_refuses=False),
    Refusal("lp-output-size-zero", "LPPool1d", {"norm_type": 2, "kernel_size": 5}, (1, 1, 4),
            r"output size would be 0"),
]
# fmt: on


@pytest.mark.parametrize("r", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusals(r: Refusal) -> None:
    with pytest.raises(ValueError, match=r.match):
        getattr(pooling, r.name)(**r.options).shape(r.in_shape)
    if r.torch_refuses:
        with pytest.raises((RuntimeError, ValueError, TypeError)):
            getattr(torch.nn, r.name)(**r.options)(torch.zeros(r.in_shape, dtype=torch.float64))


def test_torch_computes_garbage_where_we_refuse_a_window_on_padding() -> None:
    """Why we refuse: torch returns −∞ for a window that sees only padding."""
    z = torch.nn.MaxPool2d(2, stride=1, padding=1, dilation=2)(torch.zeros(1, 1, 1, 1))
    assert torch.isinf(z).all(), f"torch now returns {z} here; revisit the refusal"


def test_avgpool1d_takes_no_divisor_override() -> None:
    """As torch.nn.AvgPool1d: the option does not exist."""
    with pytest.raises(TypeError):
        pooling.AvgPool1d(2, divisor_override=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        torch.nn.AvgPool1d(2, divisor_override=2)  # type: ignore[call-arg]


def test_pooling_layers_have_no_parameters() -> None:
    for name in ("MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d"):
        layer = getattr(pooling, name)(2)
        assert layer.params == {} and layer.decayed == () and not layer.reports_delta, name


# --- ties: which entries rounding could hand to another winner ------------------------------

MAX_POOLS = [
    ("MaxPool1d", {"kernel_size": 3, "stride": 1, "padding": 1}, (2, 2, 7)),
    ("MaxPool2d", {"kernel_size": 2}, (2, 2, 4, 6)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 1}, (1, 2, 5, 6)),
    ("MaxPool2d", {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1), "ceil_mode": True},
     (2, 1, 5, 5)),
    ("MaxPool3d", {"kernel_size": 2, "stride": 1}, (1, 2, 3, 4, 3)),
    ("AdaptiveMaxPool1d", {"output_size": 4}, (2, 2, 7)),
    ("AdaptiveMaxPool2d", {"output_size": (3, 4)}, (1, 2, 5, 6)),
    ("AdaptiveMaxPool3d", {"output_size": (2, 3, 2)}, (1, 1, 3, 4, 3)),
]  # fmt: skip


def _windows(name: str, options: dict, in_shape: tuple[int, ...]) -> list[list[list[int]]]:
    """Per spatial axis, each output position's input positions, written out from torch's
    definitions (not from ops.pooling), with torch's output sizes."""
    out = getattr(torch.nn, name)(**options)(torch.zeros(in_shape)).shape
    n = int(name[-2])
    axes = []
    for a in range(n):
        L, o_size = in_shape[-n + a], out[-n + a]
        if name.startswith("Adaptive"):
            axes.append(
                [list(range(o * L // o_size, -(-(o + 1) * L // o_size))) for o in range(o_size)]
            )
            continue

        def pick(v: Any, a: int = a) -> int:
            return v if isinstance(v, int) else v[a]

        k, p = pick(options["kernel_size"]), pick(options.get("padding", 0))
        s = pick(options.get("stride") or options["kernel_size"])
        d = pick(options.get("dilation", 1))
        axes.append([[s * o - p + d * j for j in range(k) if 0 <= s * o - p + d * j < L]
                     for o in range(o_size)])  # fmt: skip
    return axes


def brute_force_ties(name: str, options: dict, x: np.ndarray) -> np.ndarray:
    """The tie rule read literally: in each window, the entries within TIE_RTOL · max|x| of
    its max, where there are at least two."""
    from itertools import product

    from manual_bp.ops.base import TIE_RTOL

    tol = TIE_RTOL * np.abs(x).max()
    n = int(name[-2])
    mask = np.zeros(x.shape, dtype=bool)
    axes = _windows(name, options, x.shape)
    for lead in np.ndindex(*x.shape[:-n]):
        for window in product(*axes):
            cells = [lead + c for c in product(*window)]
            values = np.array([x[c] for c in cells])
            near_max = values >= values.max() - tol
            if near_max.sum() >= 2:
                for c, hit in zip(cells, near_max, strict=True):
                    mask[c] |= hit
    return mask


def _near_tie_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Integers in {−1, 0, 1} (ties everywhere) moved by rounding-sized noise (≤ 1e-12)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, shape).astype(np.float64)
    return x + 1e-12 * rng.uniform(-1, 1, shape) * rng.integers(0, 2, shape)


def _delta_prev(layer: Any, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    z, cache = layer.forward(x)
    return layer.backward(delta, cache)[0]


@pytest.mark.parametrize("name, options, in_shape", MAX_POOLS, ids=lambda v: str(v))
@pytest.mark.parametrize("seed", range(3))
def test_ties_are_the_rule_read_literally(
    name: str, options: dict, in_shape: tuple, seed: int
) -> None:
    x = _near_tie_input(in_shape, seed)
    (mask,) = getattr(pooling, name)(**options).ties(x)
    want = brute_force_ties(name, options, x)
    assert np.array_equal(mask, want), (
        f"ties [{name} {options}]: {np.argwhere(mask != want)[:5].tolist()} differ "
        f"(manual {mask[tuple(np.argwhere(mask != want)[0])]})"
    )
    assert mask.any(), "integer inputs full of ties mark some entries"


def check_ties_cover_rounding(name: str, options: dict, in_shape: tuple, seed: int) -> None:
    """Moving x by less than the tolerance changes δ_prev (by more than a smooth function's
    O(1e-12), as a branch flip does) only at entries ties(x) marks."""
    layer = getattr(pooling, name)(**options)
    x = _near_tie_input(in_shape, seed)
    (mask,) = layer.ties(x)
    rng = np.random.default_rng(100 + seed)
    delta = rng.integers(1, 5, layer.shape(in_shape)).astype(np.float64)
    base = _delta_prev(layer, x, delta)
    for _ in range(5):
        moved = x + 3e-12 * rng.uniform(-1, 1, x.shape)
        changed = np.abs(_delta_prev(layer, moved, delta) - base) > 1e-6 * np.abs(base).max()
        outside = changed & ~mask
        assert not outside.any(), (
            f"[{name} {options} seed {seed}] δ_prev moved at unmarked entries "
            f"{np.argwhere(outside)[:5].tolist()}"
        )


@pytest.mark.parametrize("name, options, in_shape", MAX_POOLS, ids=lambda v: str(v))
@pytest.mark.parametrize("seed", range(3))
def test_ties_cover_every_entry_rounding_could_reroute(
    name: str, options: dict, in_shape: tuple, seed: int
) -> None:
    check_ties_cover_rounding(name, options, in_shape, seed)


@pytest.mark.parametrize("name, options, in_shape", MAX_POOLS, ids=lambda v: str(v))
def test_no_ties_on_generic_inputs(name: str, options: dict, in_shape: tuple) -> None:
    """Nothing far from a tie: distinct Gaussian values mark nothing."""
    x = np.random.default_rng(5).standard_normal(in_shape)
    (mask,) = getattr(pooling, name)(**options).ties(x)
    assert not mask.any(), f"[{name}] marked {np.argwhere(mask)[:5].tolist()} on generic input"


def test_ties_mark_only_the_tied_entries() -> None:
    """A window holding 1, 1 + 1e-12, 0, 0: the two near-maxima, not the zeros; a window of
    exact zeros: all four; a window with a clear winner: none."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, :2] = [1.0, 1.0 + 1e-12]
    x[0, 0, 2:, 2:] = [[5.0, 1.0], [2.0, 3.0]]
    (mask,) = pooling.MaxPool2d(2).ties(x)
    want = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=bool)
    assert np.array_equal(mask[0, 0], want), mask[0, 0].astype(int)


def test_ties_tolerance_is_relative_to_the_input() -> None:
    """1e-6 apart is a tie at scale 1e4 (1e-9 · 1e4 = 1e-5) and not at scale 1."""
    x = np.array([[[1.0, 1.0 + 1e-6, 0.0, 0.5]]])
    assert not pooling.MaxPool1d(2).ties(x)[0].any()
    x[0, 0, 3] = 1e4
    assert pooling.MaxPool1d(2).ties(x)[0][0, 0].tolist() == [True, True, False, False]


def test_planted_zero_tolerance_misses_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """With exact equality as the tie rule, a rounding-sized move reroutes δ unmarked."""
    monkeypatch.setattr(pooling.windows, "TIE_RTOL", 0.0)
    with pytest.raises(AssertionError, match="unmarked entries"):
        for name, options, in_shape in MAX_POOLS:
            for seed in range(3):
                check_ties_cover_rounding(name, options, in_shape, seed)


def test_planted_last_maximum_tie_rule_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch keeps the first maximum; keeping the last must fail the exact-tie cases."""

    def last_max(x: np.ndarray, tables: Any) -> tuple[np.ndarray, np.ndarray]:
        out = (*x.shape[: x.ndim - len(tables)], *(t.shape[0] for t in tables))
        z, tap = np.full(out, -np.inf), np.zeros(out, dtype=np.intp)
        for j, (value, _) in enumerate(pooling.windows._taps(x, tables)):
            better = value >= z  # planted: a tie moves to the later tap
            np.copyto(z, value, where=better)
            np.copyto(tap, j, where=better)
        return z, tap

    monkeypatch.setattr(pooling.fixed, "max_pool", last_max)
    with pytest.raises(AssertionError, match="δ_prev of input 0 .ties-max2d-k2."):
        check_against_torch(next(c for c in TIES if c.id == "ties-max2d-k2"))


# --- LPPool: the kink at a zero power sum, and the inputs torch turns into NaN ------------------


@pytest.mark.parametrize(
    "norm_type, x, marked",
    [
        pytest.param(1, [1.0, -1.0, 2.0, 3.0], [1, 1, 0, 0], id="p1-window-cancels"),
        pytest.param(1, [1.0, -1.0 + 1e-13, 2.0, 3.0], [1, 1, 0, 0], id="p1-nearly-cancels"),
        pytest.param(2, [0.0, 0.0, 2.0, 3.0], [1, 1, 0, 0], id="p2-zero-window"),
        pytest.param(2, [1e-12, 0.0, 2.0, 3.0], [1, 1, 0, 0], id="p2-nearly-zero-window"),
        pytest.param(2, [1e-3, 0.0, 2.0, 3.0], [0, 0, 0, 0], id="p2-small-is-not-zero"),
        pytest.param(3, [2.0, -2.0, 1.0, 1.0], [1, 1, 0, 0], id="p3-cancels"),
        pytest.param(float("inf"), [2.0, 2.0, 0.0, 1.0], [1, 1, 1, 0], id="inf-tie-and-abs-kink"),
    ],
)
def test_lppool_ties(norm_type: float, x: list, marked: list) -> None:
    (mask,) = pooling.LPPool1d(norm_type, 2).ties(np.array([[x]]))
    assert mask[0, 0].astype(int).tolist() == marked


@pytest.mark.parametrize("norm_type", [1, 2, float("inf")])
@pytest.mark.parametrize("seed", range(3))
def test_lppool_ties_cover_rounding(norm_type: float, seed: int) -> None:
    check_ties_cover_rounding(
        "LPPool2d", {"norm_type": norm_type, "kernel_size": 2, "stride": 1}, (2, 2, 4, 5), seed
    )


@pytest.mark.parametrize(
    "norm_type, x, match",
    [
        pytest.param(1.5, [1.0, -1.0, 2.0, 3.0], r"norm_type 1.5 on a negative input", id="frac"),
        pytest.param(3, [1.0, -2.0, 2.0, 3.0], r"sum of x\^3 is negative \(-7\)", id="odd-neg"),
    ],
)
def test_lppool_refuses_what_torch_turns_into_nan(norm_type: float, x: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pooling.LPPool1d(norm_type, 2).forward(np.array([[x]]))
    z = torch.nn.LPPool1d(norm_type, 2)(torch.tensor([[x]], dtype=torch.float64))
    assert torch.isnan(z).any(), f"torch no longer returns NaN here: {z}"
