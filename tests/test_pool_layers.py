"""Max, average and adaptive pooling against torch.autograd in float64: z and δ_prev.

A table of named cases covers every option (stride, padding, dilation, ceil_mode,
count_include_pad, divisor_override, adaptive sizes with None and non-divisible ones, 1-d
and 2-d, unbatched). Max pooling is also checked on integer inputs full of ties, where δ
must go exactly where torch sends it (the first maximum in the window's row-major order),
overlapping windows included. A hypothesis property draws random configurations; a table
of refusals checks every ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import _compare
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bp.ops.pooling as pooling

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = {"rtol": 1e-10, "atol": 1e-12}


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


def run_both(case: PoolCase) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Forward and backward through our layer and torch's module: {check: (ours, torch)}."""
    rng = np.random.default_rng(case.seed)
    if case.ints:
        x = rng.integers(-1, 2, case.in_shape).astype(np.float64)
    else:
        x = rng.standard_normal(case.in_shape)
    layer = getattr(pooling, case.name)(**case.options)
    out_shape = layer.shape(case.in_shape)
    z, cache = layer.forward(x)
    if case.ints:
        delta = rng.integers(-3, 4, out_shape).astype(np.float64)
    else:
        delta = rng.standard_normal(out_shape)
    dx, grads = layer.backward(delta, cache)
    assert grads == {}, f"[{case.id}] a pooling layer has no parameters, got {sorted(grads)}"

    x_t = torch.from_numpy(x).requires_grad_(True)
    z_t = getattr(torch.nn, case.name)(**case.options)(x_t)
    (dx_t,) = torch.autograd.grad(z_t, x_t, torch.from_numpy(delta))
    return {
        "shape()": (np.zeros(out_shape), np.zeros(tuple(z_t.shape))),
        "z": (z, z_t.detach().numpy()),
        "delta_prev": (dx, dx_t.numpy()),
    }


def check_against_torch(case: PoolCase) -> None:
    compare = assert_equal if case.ints else assert_close
    for check, (got, want) in run_both(case).items():
        compare(check, case.id, got, want)


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
def pool_cases(draw: st.DrawFn, *, max_size: int = 9) -> PoolCase:
    """A pooling configuration torch accepts (padding ≤ k/2, output ≥ 1), as a PoolCase."""
    kind = draw(st.sampled_from(["Max", "Avg", "AdaptiveMax", "AdaptiveAvg"]))
    dims = draw(st.sampled_from([1, 2]))
    name = f"{kind}Pool{dims}d"
    if kind.startswith("Adaptive"):
        sizes = [draw(st.integers(1, max_size)) for _ in range(dims)]
        out = [draw(st.integers(1, L + 3)) for L in sizes]
        if dims == 1:
            options: dict[str, Any] = {"output_size": out[0]}
        else:  # None keeps that input size
            options = {"output_size": tuple(draw(st.sampled_from([o, None])) for o in out)}
    else:
        kernel = [draw(st.integers(1, 4)) for _ in range(dims)]
        dilation = [draw(st.integers(1, 3)) if kind == "Max" else 1 for _ in range(dims)]
        padding = [draw(st.integers(0, k // 2)) for k in kernel]
        smallest = [  # the kernel fits the padded input
            max(1, d * (k - 1) + 1 - 2 * p)
            for k, d, p in zip(kernel, dilation, padding, strict=True)
        ]
        sizes = [draw(st.integers(lo, max(lo, max_size))) for lo in smallest]
        options = {
            "kernel_size": tuple(kernel),
            "stride": tuple(draw(st.integers(1, 4)) for _ in range(dims)),
            "padding": tuple(padding),
            "ceil_mode": draw(st.booleans()),
        }
        if kind == "Max":
            options["dilation"] = tuple(dilation)
        else:
            options["count_include_pad"] = draw(st.booleans())
            if dims == 2:
                options["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 7)))
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    ints = kind.endswith("Max") and draw(st.booleans())
    return PoolCase(
        "hypothesis", name, options, (*batch, 2, *sizes), ints, draw(st.integers(0, 99))
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
