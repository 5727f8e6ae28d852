"""Conv1d and Conv2d against torch.autograd in float64: z, ∂L/∂W, ∂L/∂b and δ_prev.

One table of named cases covers every option (padding ints / 'same' / 'valid', each
padding mode, stride, dilation, groups, depthwise, bias off, 1-d and 2-d, unbatched); a
hypothesis property draws random configurations against torch; another checks that the
rotated-kernel δ_prev is the transpose of the forward map (⟨z − b, δ⟩ = ⟨x, δ_prev⟩); a
table of refusals checks every ValueError, and that torch refuses the same inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import _compare
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manual_bp.ops.conv import Conv1d, Conv2d, adjoint_inner_products

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = {"rtol": 1e-10, "atol": 1e-12}

CLASSES = {1: (Conv1d, torch.nn.Conv1d), 2: (Conv2d, torch.nn.Conv2d)}


def assert_close(check: str, where: str, got: np.ndarray, want: np.ndarray) -> None:
    """Fail naming the check, the case, the worst index and both values there."""
    _compare.assert_close(check, where, got, want, **TOL)


@dataclass(frozen=True)
class ConvCase:
    """A printable spec: the layer's options and the input it sees."""

    id: str
    dims: int
    in_shape: tuple[int, ...]  # (N, C_in, *spatial), or (C_in, *spatial) unbatched
    out_channels: int
    kernel: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)  # stride, padding, ... as torch's
    bias: bool = True
    seed: int = 0

    @property
    def in_channels(self) -> int:
        return self.in_shape[-self.dims - 1]

    def weight_shape(self) -> tuple[int, ...]:
        groups = self.options.get("groups", 1)
        return (self.out_channels, self.in_channels // groups, *self.kernel)


def run_both(case: ConvCase) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Forward and backward through our layer and torch's module: {check: (ours, torch)}."""
    ours, theirs = CLASSES[case.dims]
    rng = np.random.default_rng(case.seed)
    W = rng.standard_normal(case.weight_shape())
    b = rng.standard_normal(case.out_channels) if case.bias else None
    x = rng.standard_normal(case.in_shape)

    layer = ours(W, b, **case.options)
    out_shape = layer.shape(case.in_shape)
    z, cache = layer.forward(x)
    delta = rng.standard_normal(out_shape)
    dx, grads = layer.backward(delta, cache)

    m = theirs(
        case.in_channels,
        case.out_channels,
        case.kernel,
        bias=case.bias,
        dtype=torch.float64,
        **case.options,
    )
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(W))
        if case.bias:
            m.bias.copy_(torch.from_numpy(b))
    x_t = torch.from_numpy(x).requires_grad_(True)
    with warnings.catch_warnings():  # 'same' with an even kernel warns about a padded copy
        warnings.simplefilter("ignore", UserWarning)
        z_t = m(x_t)
    wrt = [x_t, m.weight] + ([m.bias] if case.bias else [])
    dx_t, dW_t, *db_t = torch.autograd.grad(z_t, wrt, torch.from_numpy(delta))

    pairs = {
        "shape()": (np.zeros(out_shape), np.zeros(tuple(z_t.shape))),
        "z": (z, z_t.detach().numpy()),
        "dL/dW": (grads["weight"], dW_t.numpy()),
        "delta_prev": (dx, dx_t.numpy()),
    }
    if case.bias:
        pairs["dL/db"] = (grads["bias"], db_t[0].numpy())
    else:
        assert "bias" not in grads, f"[{case.id}] bias gradient without a bias"
    return pairs


def check_against_torch(case: ConvCase) -> None:
    for check, (got, want) in run_both(case).items():
        assert_close(check, case.id, got, want)


# --- the table: one case per option ------------------------------------------------------


def _c2(id: str, in_shape: tuple[int, ...], c_out: int, kernel: Any, **options: Any) -> ConvCase:
    bias = options.pop("bias", True)
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    return ConvCase(id, 2, in_shape, c_out, kernel, options, bias)


def _c1(id: str, in_shape: tuple[int, ...], c_out: int, kernel: int, **options: Any) -> ConvCase:
    bias = options.pop("bias", True)
    return ConvCase(id, 1, in_shape, c_out, (kernel,), options, bias)


# fmt: off
X2 = (2, 4, 7, 8)  # N, C_in, H, W: odd and even sizes
CASES = [
    # plain options
    _c2("2d-3x3-valid-default", X2, 5, 3),
    _c2("2d-pad1", X2, 5, 3, padding=1),
    _c2("2d-pad-pair", X2, 5, 3, padding=(2, 0)),
    _c2("2d-stride2-pad1-unreached-rows", X2, 5, 3, stride=2, padding=1),
    _c2("2d-stride-pair", X2, 5, 3, stride=(2, 3)),
    _c2("2d-stride-larger-than-kernel", X2, 3, 2, stride=3),
    _c2("2d-dilation2", X2, 5, 3, dilation=2),
    _c2("2d-dilation-pair-stride-pad", X2, 5, 3, dilation=(2, 1), stride=2, padding=(2, 1)),
    _c2("2d-rect-kernel", X2, 5, (2, 3)),
    _c2("2d-1x1-kernel", X2, 6, 1),
    _c2("2d-kernel-as-large-as-input", X2, 3, (7, 8)),
    _c2("2d-bias-off", X2, 5, 3, padding=1, bias=False),
    _c2("2d-groups2", X2, 6, 3, groups=2, padding=1),
    _c2("2d-groups4-stride2", (2, 8, 7, 8), 4, 3, groups=4, stride=2),
    _c2("2d-depthwise", X2, 4, 3, groups=4, padding=1),
    _c2("2d-depthwise-multiplier2", X2, 8, 3, groups=4, stride=2, dilation=2, padding=2),
    _c2("2d-batch1", (1, 3, 5, 5), 2, 3),
    _c2("2d-unbatched", (4, 7, 8), 5, 3, padding=1, stride=2),
    _c2("2d-empty-batch", (0, 4, 7, 8), 5, 3, padding=1),
    # padding strings
    _c2("2d-valid", X2, 5, 3, padding="valid"),
    _c2("2d-same-odd-kernel", X2, 5, 3, padding="same"),
    _c2("2d-same-even-kernel-odd-total", X2, 5, (2, 4), padding="same"),
    _c2("2d-same-even-kernel-dilation2-even-total", X2, 5, 2, padding="same", dilation=2),
    _c2("2d-same-even-kernel-dilation3-odd-total", X2, 5, 2, padding="same", dilation=3),
    _c2("2d-same-groups-bias-off", X2, 4, (3, 2), padding="same", groups=2, bias=False),
]
for mode in ("reflect", "replicate", "circular"):
    CASES += [
        _c2(f"2d-{mode}-pad1", X2, 5, 3, padding=1, padding_mode=mode),
        _c2(f"2d-{mode}-pad-pair-stride2-dil2", X2, 5, 3, padding=(2, 1), stride=2, dilation=2,
            padding_mode=mode),
        _c2(f"2d-{mode}-groups2", X2, 6, 3, padding=(1, 2), groups=2, padding_mode=mode),
        _c2(f"2d-{mode}-same-odd-total", X2, 5, (2, 4), padding="same", padding_mode=mode),
        _c2(f"2d-{mode}-depthwise-bias-off", X2, 4, 3, padding=1, groups=4, bias=False,
            padding_mode=mode),
        _c1(f"1d-{mode}-pad2-stride2", (2, 3, 9), 4, 3, padding=2, stride=2, padding_mode=mode),
        _c1(f"1d-{mode}-same-even", (2, 3, 9), 4, 4, padding="same", padding_mode=mode),
    ]
CASES += [
    # padding as wide as each mode allows (reflect < L, circular ≤ L, replicate any)
    _c2("2d-reflect-widest", (2, 2, 4, 3), 3, 3, padding=(3, 2), padding_mode="reflect"),
    _c2("2d-circular-widest", (2, 2, 4, 3), 3, 3, padding=(4, 3), padding_mode="circular"),
    _c2("2d-replicate-wider-than-input", (2, 2, 3, 2), 3, 2, padding=(4, 5),
        padding_mode="replicate"),
    _c2("2d-zeros-wider-than-input", (2, 2, 3, 2), 3, 2, padding=(4, 5)),
    _c2("2d-reflect-unbatched", (4, 7, 8), 5, 3, padding=2, padding_mode="reflect"),
    # 1-d
    _c1("1d-default", (2, 3, 9), 4, 3),
    _c1("1d-pad1-stride2", (2, 3, 10), 4, 3, padding=1, stride=2),
    _c1("1d-dilation3", (2, 3, 12), 4, 3, dilation=3, padding=1),
    _c1("1d-groups3-depthwise", (2, 3, 9), 6, 3, groups=3, padding=1),
    _c1("1d-same-even-kernel", (2, 3, 9), 4, 2, padding="same"),
    _c1("1d-valid-bias-off", (2, 3, 9), 4, 5, padding="valid", bias=False),
    _c1("1d-unbatched", (3, 9), 4, 3, padding=1),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_conv_matches_torch(case: ConvCase) -> None:
    check_against_torch(case)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), (
        f"duplicate case ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    )


# --- random configurations ---------------------------------------------------------------


@st.composite
def conv_cases(draw: st.DrawFn, *, max_size: int = 7, max_channels: int = 3) -> ConvCase:
    """A valid Conv1d/Conv2d configuration and input, as a printable ConvCase."""
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, max_channels))
    c_out = groups * draw(st.integers(1, max_channels))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    same = draw(st.booleans())
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = (1,) * dims if same else tuple(draw(st.integers(1, 3)) for _ in range(dims))
    if same:
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        pads = [t - t // 2 for t in totals]  # the wider side
    else:
        pads = [draw(st.integers(0, 3)) for _ in range(dims)]
    size = []
    for k, d, p in zip(kernel, dilation, pads, strict=True):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the kernel fits the padded input
        smallest = max(smallest, p + 1 if mode == "reflect" else p if mode == "circular" else 1)
        size.append(draw(st.integers(smallest, max(smallest, max_size))))
    options = {
        "stride": stride,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": mode,
        "padding": "same" if same else tuple(pads),
    }
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    return ConvCase(
        id="hypothesis",
        dims=dims,
        in_shape=(*batch, c_in, *size),
        out_channels=c_out,
        kernel=kernel,
        options=options,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 99)),
    )


@given(conv_cases())
@settings(max_examples=60)
def test_random_configurations_match_torch(case: ConvCase) -> None:
    check_against_torch(case)


@given(conv_cases(max_size=9))
@settings(max_examples=60)
def test_rotated_kernel_delta_is_the_adjoint(case: ConvCase) -> None:
    """⟨z − b, δ⟩ = ⟨x, δ_prev(δ)⟩ for random x and δ: δ_prev is the forward map's transpose."""
    ours, _ = CLASSES[case.dims]
    rng = np.random.default_rng(case.seed)
    W = rng.standard_normal(case.weight_shape())
    b = rng.standard_normal(case.out_channels) if case.bias else None
    layer = ours(W, b, **case.options)
    x = rng.standard_normal(case.in_shape)
    delta = rng.standard_normal(layer.shape(case.in_shape))
    lhs, rhs = adjoint_inner_products(layer, x, delta)
    z, cache = layer.forward(x)
    dx, _ = layer.backward(delta, cache)
    scale = np.linalg.norm(z) * np.linalg.norm(delta) + np.linalg.norm(x) * np.linalg.norm(dx)
    assert abs(lhs - rhs) <= TOL["rtol"] * scale, (
        f"adjoint identity [{case}]: <z - b, delta> = {lhs!r}, <x, delta_prev> = {rhs!r}"
    )


def test_adjoint_check_catches_an_unrotated_kernel() -> None:
    """The identity is a real check: a δ_prev with the kernel not rotated fails it."""

    class Unrotated(Conv2d):
        def backward(self, delta, cache):  # type: ignore[no-untyped-def]
            W = self.params["weight"]
            self.params["weight"] = np.flip(W, axis=(2, 3))  # pre-flip, so the rotation undoes it
            try:
                return super().backward(delta, cache)
            finally:
                self.params["weight"] = W

    rng = np.random.default_rng(3)
    layer = Unrotated(rng.standard_normal((3, 2, 3, 2)), padding=1)
    x = rng.standard_normal((2, 2, 5, 6))
    lhs, rhs = adjoint_inner_products(layer, x, rng.standard_normal(layer.shape(x.shape)))
    assert abs(lhs - rhs) > 1e-3 * abs(lhs), f"unrotated kernel passed: {lhs!r} vs {rhs!r}"


# --- refusals: ValueError before any arithmetic, where torch refuses too ------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    dims: int
    weight_shape: tuple[int, ...]
    options: dict[str, Any]
    in_shape: tuple[int, ...]
    match: str


# fmt: off
REFUSALS = [
    Refusal("wrong-channel-count", 2, (4, 3, 3, 3), {}, (2, 2, 8, 8),
            r"expected input with 3 channels .* got 2 channels"),
    Refusal("groups-channel-count", 2, (4, 2, 3, 3), {"groups": 2}, (2, 2, 8, 8),
            r"expected input with 4 channels .*groups=2.* got 2 channels"),
    Refusal("kernel-larger-than-input", 2, (4, 3, 5, 5), {}, (2, 3, 4, 8),
            r"kernel of reach 5 .* larger than the padded input 4 .* output size would be 0"),
    Refusal("dilated-kernel-larger-than-padded", 2, (4, 3, 3, 3), {"dilation": 3, "padding": 1},
            (2, 3, 8, 4), r"kernel of reach 7 \(size 3, dilation 3\) .* padded input 6"),
    Refusal("1d-kernel-larger", 1, (2, 1, 4), {}, (1, 1, 3), r"kernel of reach 4 .* input 3"),
    Refusal("out-channels-not-divisible-by-groups", 2, (5, 1, 3, 3), {"groups": 2},
            (1, 2, 5, 5), r"groups must be a positive int dividing out_channels 5"),
    Refusal("same-with-stride", 2, (4, 3, 3, 3), {"padding": "same", "stride": 2},
            (1, 3, 5, 5), r"padding='same' is not supported for strided convolutions"),
    Refusal("reflect-pad-equal-to-input", 2, (2, 1, 3, 3),
            {"padding": (1, 3), "padding_mode": "reflect"}, (1, 1, 5, 3),
            r"reflect padding \(3, 3\) must be smaller than the input size 3"),
    Refusal("reflect-same-too-wide", 1, (2, 1, 5),
            {"padding": "same", "dilation": 2, "padding_mode": "reflect"}, (1, 1, 4),
            r"reflect padding \(4, 4\) must be smaller"),
    Refusal("circular-pad-wider-than-input", 2, (2, 1, 3, 3),
            {"padding": (4, 1), "padding_mode": "circular"}, (1, 1, 3, 5),
            r"circular padding \(4, 4\) must be at most the input size 3"),
    Refusal("wrong-input-ndim", 2, (2, 1, 3, 3), {}, (1, 1, 1, 5, 5),
            r"expected input \(N, C_in, H, W\) or unbatched \(C_in, H, W\)"),
    Refusal("1d-wrong-input-ndim", 1, (2, 1, 3), {}, (1, 1, 5, 5),
            r"expected input \(N, C_in, L\) or unbatched \(C_in, L\)"),
    Refusal("empty-spatial-dim", 2, (2, 1, 1, 1), {}, (1, 1, 0, 5),
            r"expected non-empty spatial dims"),
    Refusal("negative-padding", 2, (2, 1, 3, 3), {"padding": -1}, (1, 1, 5, 5),
            r"padding must be an int ≥ 0"),
    Refusal("zero-stride", 2, (2, 1, 3, 3), {"stride": (1, 0)}, (1, 1, 5, 5),
            r"stride must be an int ≥ 1"),
    Refusal("zero-dilation", 1, (2, 1, 3), {"dilation": 0}, (1, 1, 5),
            r"dilation must be an int ≥ 1"),
    Refusal("unknown-padding-string", 2, (2, 1, 3, 3), {"padding": "full"}, (1, 1, 5, 5),
            r"padding must be 'same', 'valid' or ints, got 'full'"),
    Refusal("unknown-padding-mode", 2, (2, 1, 3, 3), {"padding_mode": "mirror"}, (1, 1, 5, 5),
            r"unknown padding_mode 'mirror'; known: \['circular', 'reflect'"),
]
# fmt: on


def _build_and_check(r: Refusal) -> None:
    ours, _ = CLASSES[r.dims]
    ours(np.ones(r.weight_shape), **r.options).shape(r.in_shape)


@pytest.mark.parametrize("r", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusals(r: Refusal) -> None:
    with pytest.raises(ValueError, match=r.match):
        _build_and_check(r)
    # torch refuses the same configuration (at construction or on the call)
    _, theirs = CLASSES[r.dims]
    c_out, c_g, *kernel = r.weight_shape
    with pytest.raises((RuntimeError, ValueError)):
        m = theirs(
            c_g * r.options.get("groups", 1), c_out, tuple(kernel), dtype=torch.float64, **r.options
        )
        m(torch.zeros(r.in_shape, dtype=torch.float64))


def test_refusals_name_the_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 2, 8, 8\)"):
        Conv2d(np.ones((4, 3, 3, 3))).shape((2, 2, 8, 8))


@pytest.mark.parametrize(
    "weight, bias, match",
    [
        pytest.param(
            (4, 3, 3), None, r"expected a weight \(C_out, C_in/groups, H, W\)", id="weight-ndim"
        ),
        pytest.param((4, 3, 0, 3), None, r"no empty dim", id="weight-empty"),
        pytest.param(
            (4, 3, 3, 3), (3,), r"expected a bias of shape \(4,\), got \(3,\)", id="bias-shape"
        ),
    ],
)
def test_refuses_bad_parameters(weight: tuple, bias: tuple | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Conv2d(np.ones(weight), None if bias is None else np.ones(bias))


def test_layer_protocol_attributes() -> None:
    layer = Conv2d(np.ones((2, 1, 3, 3)), np.zeros(2))
    assert Conv2d.decayed == ("weight",) and Conv1d.decayed == ("weight",)
    assert Conv2d.reports_delta and Conv1d.reports_delta
    assert sorted(layer.params) == ["bias", "weight"], f"params: {sorted(layer.params)}"
