"""Conv1d/2d/3d and ConvTranspose1d/2d/3d against torch.autograd in float64: z, ∂L/∂W,
∂L/∂b and δ_prev.

One table of named cases covers every option (padding ints / 'same' / 'valid', each
padding mode, stride, dilation, groups, depthwise, bias off, 1-d, 2-d and 3-d, unbatched); a
hypothesis property draws random configurations against torch; another checks that the
rotated-kernel δ_prev is the transpose of the forward map (⟨z − b, δ⟩ = ⟨x, δ_prev⟩); a
table of refusals checks every ValueError, and that torch refuses the same inputs.

The transposed convolution has its own table (output_padding, and output_padding ≥ stride
where dilation allows it), its own property, the adjoint identity that ties it to the
convolution (⟨C(W)ᵀ x, y⟩ = ⟨x, C(W) y⟩: its forward is the convolution's backward-data and
its backward-data is the convolution's forward, checked on the very same arrays), and
planted bugs (an unrotated kernel, a weight read in the convolution's layout) that must fail.
"""

from __future__ import annotations

import warnings
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

from manual_bp.ops.conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    adjoint_inner_products,
    output_padding_for,
    transpose_inner_products,
)

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = TOLERANCES["layer"]

CLASSES = {
    1: (Conv1d, torch.nn.Conv1d),
    2: (Conv2d, torch.nn.Conv2d),
    3: (Conv3d, torch.nn.Conv3d),
}


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


def check_against_torch(case: ConvCase) -> None:
    """Our layer against torch's module, forward and backward (tests/_layer_check.py)."""
    ours, theirs = CLASSES[case.dims]
    rng = np.random.default_rng(case.seed)
    W = rng.standard_normal(case.weight_shape())
    b = rng.standard_normal(case.out_channels) if case.bias else None
    x = rng.standard_normal(case.in_shape)
    m = theirs(case.in_channels, case.out_channels, case.kernel, bias=case.bias,
               dtype=torch.float64, **case.options)  # fmt: skip
    params = {"weight": torch.from_numpy(W)} | ({"bias": torch.from_numpy(b)} if case.bias else {})

    def torch_fn(x_t: torch.Tensor, **p: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # 'same' with an even kernel warns about a padded copy
            warnings.simplefilter("ignore", UserWarning)
            return torch.func.functional_call(m, p, (x_t,))

    layer = ours(W, b, **case.options)
    check_layer(case.id, layer, [x], torch_fn, params=params, tol=TOL, seed=case.seed)


# --- the table: one case per option ------------------------------------------------------


def _c2(id: str, in_shape: tuple[int, ...], c_out: int, kernel: Any, **options: Any) -> ConvCase:
    bias = options.pop("bias", True)
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    return ConvCase(id, 2, in_shape, c_out, kernel, options, bias)


def _c1(id: str, in_shape: tuple[int, ...], c_out: int, kernel: int, **options: Any) -> ConvCase:
    bias = options.pop("bias", True)
    return ConvCase(id, 1, in_shape, c_out, (kernel,), options, bias)


def _c3(id: str, in_shape: tuple[int, ...], c_out: int, kernel: Any, **options: Any) -> ConvCase:
    bias = options.pop("bias", True)
    kernel = (kernel,) * 3 if isinstance(kernel, int) else kernel
    return ConvCase(id, 3, in_shape, c_out, kernel, options, bias)


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
X3 = (2, 3, 4, 5, 6)  # N, C_in, D, H, W
CASES += [
    _c3("3d-default", X3, 4, 2),
    _c3("3d-rect-kernel-stride-pad", X3, 4, (2, 3, 1), stride=(1, 2, 3), padding=(1, 0, 2)),
    _c3("3d-dilation-groups", X3, 6, 2, dilation=(2, 1, 2), groups=3, padding=1),
    _c3("3d-depthwise-bias-off", X3, 3, 3, groups=3, padding=1, bias=False),
    _c3("3d-same", X3, 2, (2, 3, 4), padding="same"),
    _c3("3d-unbatched", (3, 4, 5, 6), 2, 2, stride=2),
]
for mode in ("reflect", "replicate", "circular"):
    CASES += [_c3(f"3d-{mode}", X3, 2, (3, 2, 3), padding=(1, 1, 2), padding_mode=mode)]
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
    dims = draw(st.sampled_from([1, 2, 3]))
    if dims == 3:  # keep 3-d small: the suite runs on two cores
        max_size, max_channels = min(max_size, 5), min(max_channels, 2)
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
    Refusal("constant-is-not-a-conv-padding-mode", 2, (2, 1, 3, 3),
            {"padding_mode": "constant"}, (1, 1, 5, 5), r"unknown padding_mode 'constant'"),
    Refusal("3d-wrong-input-ndim", 3, (2, 1, 3, 3, 3), {}, (1, 5, 5, 5, 5, 5),
            r"expected input \(N, C_in, D, H, W\) or unbatched \(C_in, D, H, W\)"),
    Refusal("3d-kernel-larger-than-input", 3, (2, 1, 3, 3, 3), {}, (1, 1, 5, 2, 5),
            r"kernel of reach 3 .* padded input 2 .* along spatial dim 1"),
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


# --- the transposed convolution ---------------------------------------------------------------

T_CLASSES = {
    1: (ConvTranspose1d, torch.nn.ConvTranspose1d),
    2: (ConvTranspose2d, torch.nn.ConvTranspose2d),
    3: (ConvTranspose3d, torch.nn.ConvTranspose3d),
}


@dataclass(frozen=True)
class TCase:
    """A printable spec of a transposed convolution and its input."""

    id: str
    dims: int
    in_shape: tuple[int, ...]  # (N, C_in, *spatial) or unbatched
    out_channels: int
    kernel: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)  # stride, padding, output_padding, ...
    bias: bool = True
    seed: int = 0

    @property
    def in_channels(self) -> int:
        return self.in_shape[-self.dims - 1]

    def weight_shape(self) -> tuple[int, ...]:
        """torch's transposed layout (C_in, C_out/groups, *k)."""
        groups = self.options.get("groups", 1)
        return (self.in_channels, self.out_channels // groups, *self.kernel)


def run_transposed(case: TCase) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ours, theirs = T_CLASSES[case.dims]
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
        case.in_channels, case.out_channels, case.kernel, bias=case.bias, dtype=torch.float64,
        **case.options,
    )  # fmt: skip
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(W))
        if case.bias:
            m.bias.copy_(torch.from_numpy(b))
    x_t = torch.from_numpy(x).requires_grad_(True)
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
    # ∂L/∂θ alone (the network's input needs no δ_prev) is the same ∂L/∂θ
    alone = layer.param_grads(delta, cache)
    assert sorted(alone) == sorted(grads), f"[{case.id}] param_grads names {sorted(alone)}"
    for name in alone:
        pairs[f"param_grads {name}"] = (alone[name], grads[name])
    return pairs


def check_transposed(case: TCase) -> None:
    for check, (got, want) in run_transposed(case).items():
        assert_close(check, case.id, got, want)


def _t(id: str, dims: int, in_shape: tuple, c_out: int, kernel: Any, **options: Any) -> TCase:
    bias = options.pop("bias", True)
    kernel = (kernel,) * dims if isinstance(kernel, int) else kernel
    return TCase(id, dims, in_shape, c_out, kernel, options, bias)


# fmt: off
T_CASES = [
    _t("t1d-default", 1, (2, 3, 5), 4, 3),
    _t("t1d-stride2", 1, (2, 3, 5), 4, 3, stride=2),
    _t("t1d-stride3-pad2-outpad2", 1, (2, 3, 5), 4, 3, stride=3, padding=2, output_padding=2),
    _t("t1d-dilation2-outpad1-beyond-stride", 1, (2, 3, 5), 4, 3, dilation=2, output_padding=1),
    _t("t1d-groups-bias-off", 1, (2, 4, 5), 6, 2, groups=2, bias=False),
    _t("t1d-unbatched", 1, (3, 6), 2, 4, stride=2, padding=1),
    _t("t1d-pad-crops-to-one", 1, (1, 2, 3), 2, 3, padding=2),
    _t("t2d-default", 2, (2, 3, 4, 5), 4, 3),
    _t("t2d-stride2-pad1-outpad1", 2, (2, 3, 4, 5), 4, 3, stride=2, padding=1, output_padding=1),
    _t("t2d-stride-pair-outpad-pair", 2, (2, 3, 4, 5), 4, (3, 2), stride=(2, 3), padding=(1, 0),
       output_padding=(1, 2)),
    _t("t2d-dilation-pair-groups", 2, (2, 4, 4, 5), 6, (2, 3), dilation=(2, 1), groups=2,
       padding=(1, 1)),
    _t("t2d-depthwise", 2, (2, 3, 4, 5), 3, 3, groups=3, stride=2),
    _t("t2d-depthwise-multiplier", 2, (2, 3, 4, 5), 6, 3, groups=3, padding=1),
    _t("t2d-1x1", 2, (2, 3, 4, 5), 2, 1),
    _t("t2d-unet-upsample", 2, (2, 4, 3, 3), 2, 2, stride=2),
    _t("t2d-unbatched", 2, (3, 4, 5), 2, 3, stride=2, output_padding=1),
    _t("t2d-empty-batch", 2, (0, 3, 4, 5), 2, 3, stride=2),
    _t("t3d-default", 3, (1, 2, 3, 4, 3), 3, 2),
    _t("t3d-stride-pad-outpad", 3, (2, 2, 3, 2, 3), 3, (2, 3, 2), stride=(2, 1, 2),
       padding=(1, 0, 1), output_padding=(1, 0, 0)),
    _t("t3d-groups-dilation-bias-off", 3, (1, 4, 2, 3, 2), 2, 2, groups=2, dilation=(1, 2, 1),
       bias=False),
    _t("t3d-unbatched", 3, (2, 3, 2, 3), 3, 2, stride=2),
]
# fmt: on


@pytest.mark.parametrize("case", T_CASES, ids=[c.id for c in T_CASES])
def test_conv_transpose_matches_torch(case: TCase) -> None:
    check_transposed(case)


def test_transposed_case_ids_are_unique() -> None:
    ids = [c.id for c in T_CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@st.composite
def transposed_cases(draw: st.DrawFn, *, max_size: int = 5) -> TCase:
    """A valid ConvTranspose configuration and input, as a printable TCase."""
    dims = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    output_padding = tuple(
        draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)
    )
    size, pads = [], []
    for k, s, d, op in zip(kernel, stride, dilation, output_padding, strict=True):
        L = draw(st.integers(1, max_size if dims < 3 else 3))
        full = (L - 1) * s + d * (k - 1) + op + 1
        pads.append(draw(st.integers(0, (full - 1) // 2)))  # the output keeps ≥ 1 cell
        size.append(L)
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    options = {
        "stride": stride,
        "padding": tuple(pads),
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
    }
    return TCase(
        "hypothesis", dims, (*batch, c_in, *size), c_out, kernel, options, draw(st.booleans()),
        draw(st.integers(0, 99)),
    )  # fmt: skip


@given(transposed_cases())
@settings(max_examples=60)
def test_random_transposed_configurations_match_torch(case: TCase) -> None:
    check_transposed(case)


@given(transposed_cases())
@settings(max_examples=60)
def test_transposed_is_the_adjoint_of_the_convolution(case: TCase) -> None:
    """⟨C(W)ᵀ x, y⟩ = ⟨x, C(W) y⟩, and both sides are the very convolution's arrays: the
    transposed forward is Conv's backward-data, its backward-data is Conv's forward."""
    ours, _ = T_CLASSES[case.dims]
    conv, _ = CLASSES[case.dims]
    rng = np.random.default_rng(case.seed)
    W = rng.standard_normal(case.weight_shape())
    layer = ours(W, rng.standard_normal(case.out_channels), **case.options)
    x = rng.standard_normal(case.in_shape)
    y = rng.standard_normal(layer.shape(case.in_shape))
    lhs, rhs = transpose_inner_products(layer, x, y)
    z, cache = layer.forward(x)
    dy, _ = layer.backward(y, cache)
    scale = np.linalg.norm(z) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(dy)
    assert abs(lhs - rhs) <= TOL["rtol"] * scale, f"[{case}] {lhs!r} vs {rhs!r}"
    # the symmetry, written out: C(W) is Conv(W) with the same options, from C_out to C_in
    options = {k: case.options[k] for k in ("stride", "padding", "dilation", "groups")}
    c = conv(W, None, **options)
    conv_y, conv_cache = c.forward(y)  # C(W) y: the transposed layer's backward-data
    crop = (..., *(slice(0, L) for L in case.in_shape[-case.dims :]))
    assert np.allclose(dy, conv_y[crop], rtol=1e-12, atol=1e-12), f"[{case}] δ_prev ≠ C(W) y"
    back, _ = c.backward(x if conv_y.shape == x.shape else _embed(x, conv_y.shape), conv_cache)
    z_no_bias = z - layer.params["bias"].reshape(-1, *(1,) * case.dims)
    assert np.allclose(z_no_bias, back, rtol=1e-12, atol=1e-12), f"[{case}] z ≠ C(W)ᵀ x"


def _embed(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """x in the leading corner of zeros of `shape` (C(W)'s output can be longer than x when
    output_padding ≥ stride: those cells are no input's)."""
    out = np.zeros(shape)
    out[tuple(slice(0, n) for n in x.shape)] = x
    return out


def test_planted_unrotated_transposed_kernel_fails() -> None:
    """A transposed forward with the kernel flipped (the plain correlation) must fail."""

    class Flipped(ConvTranspose2d):
        def forward(self, x):  # type: ignore[no-untyped-def]
            W = self.params["weight"]
            self.params["weight"] = np.flip(W, axis=(2, 3))
            try:
                return super().forward(x)
            finally:
                self.params["weight"] = W

    case = next(c for c in T_CASES if c.id == "t2d-stride2-pad1-outpad1")
    with pytest.raises(AssertionError, match="z"):
        _check_with(Flipped, case)


def test_planted_conv_layout_weight_fails() -> None:
    """Reading the weight as (C_out, C_in/groups, ...) (a transpose of torch's layout) fails."""

    class WrongLayout(ConvTranspose2d):
        def __init__(self, weight, bias=None, **options):  # type: ignore[no-untyped-def]
            super().__init__(np.swapaxes(weight, 0, 1).copy(), bias, **options)

    with pytest.raises(AssertionError, match="z"):  # C_in = C_out: the shapes cannot tell
        _check_with(WrongLayout, TCase("square-channels", 2, (2, 3, 4, 5), 3, (3, 3)))


def _check_with(cls: type, case: TCase) -> None:
    saved = T_CLASSES[case.dims]
    T_CLASSES[case.dims] = (cls, saved[1])
    try:
        check_transposed(case)
    finally:
        T_CLASSES[case.dims] = saved


@pytest.mark.parametrize(
    "in_spatial, output_size, stride, padding",
    [
        ((4, 5), (8, 10), (2, 2), (0, 0)),
        ((4, 5), (9, 11), (2, 2), (0, 0)),
        ((3,), (8,), (3,), (1,)),
    ],
)
def test_output_size_gives_torchs_output_padding(
    in_spatial: tuple, output_size: tuple, stride: tuple, padding: tuple
) -> None:
    """m(x, output_size=...) as torch computes it: output_padding = size − smallest size."""
    n = len(in_spatial)
    kernel, dilation = (2,) * n, (1,) * n
    op = output_padding_for(in_spatial, output_size, kernel, stride, padding, dilation)
    m = T_CLASSES[n][1](2, 3, kernel, stride=stride, padding=padding, dtype=torch.float64)
    z = m(torch.zeros(1, 2, *in_spatial, dtype=torch.float64), output_size=output_size)
    layer = T_CLASSES[n][0](np.zeros((2, 3, *kernel)), stride=stride, padding=padding,
                            output_padding=op)  # fmt: skip
    assert layer.shape((1, 2, *in_spatial)) == tuple(z.shape)


def test_output_size_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"valid sizes range from 8 to 9"):
        output_padding_for((4,), (10,), (2,), (2,), (0,), (1,))
    with pytest.raises(ValueError):
        m = torch.nn.ConvTranspose1d(1, 1, 2, stride=2)
        m(torch.zeros(1, 1, 4), output_size=(10,))


@dataclass(frozen=True)
class TRefusal:
    id: str
    dims: int
    weight_shape: tuple[int, ...]
    options: dict[str, Any]
    in_shape: tuple[int, ...]
    match: str


# fmt: off
T_REFUSALS = [
    TRefusal("output-padding-not-below-stride-or-dilation", 1, (2, 3, 3),
             {"stride": 2, "output_padding": 2}, (1, 2, 5),
             r"output_padding must be smaller than either stride or dilation"),
    TRefusal("output-too-small", 1, (2, 3, 3), {"padding": 4}, (1, 2, 5),
             r"gives output size \(L − 1\)·1 − 2·4 \+ 1·\(3 − 1\) \+ 0 \+ 1 = -1"),
    TRefusal("channels", 2, (4, 3, 3, 3), {}, (1, 3, 5, 5),
             r"expected input with 4 channels .* transposed layout"),
    TRefusal("groups-not-dividing-in-channels", 2, (3, 2, 3, 3), {"groups": 2}, (1, 3, 5, 5),
             r"groups must be a positive int dividing in_channels 3"),
    TRefusal("padding-string", 2, (2, 3, 3, 3), {"padding": "same"}, (1, 2, 5, 5),
             r"padding of a transposed convolution must be ints, got 'same'"),
    TRefusal("wrong-input-ndim", 3, (2, 3, 2, 2, 2), {}, (2, 2, 5),
             r"expected input \(N, C_in, D, H, W\) or unbatched"),
    TRefusal("negative-output-padding", 1, (2, 3, 3), {"output_padding": -1}, (1, 2, 5),
             r"output_padding must be an int ≥ 0"),
]
# fmt: on


@pytest.mark.parametrize("r", T_REFUSALS, ids=[r.id for r in T_REFUSALS])
def test_transposed_refusals(r: TRefusal) -> None:
    ours, theirs = T_CLASSES[r.dims]
    with pytest.raises(ValueError, match=r.match):
        ours(np.ones(r.weight_shape), **r.options).shape(r.in_shape)
    c_in, c_g, *kernel = r.weight_shape
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        m = theirs(c_in, c_g * r.options.get("groups", 1), tuple(kernel), dtype=torch.float64,
                   **r.options)  # fmt: skip
        m(torch.zeros(r.in_shape, dtype=torch.float64))


def test_transposed_bias_shape_is_checked() -> None:
    with pytest.raises(
        ValueError, match=r"expected a bias of shape \(6,\) \(C_out = 3 · groups 2\)"
    ):
        ConvTranspose1d(np.ones((4, 3, 2)), np.ones(3), groups=2)


def test_transposed_layer_protocol() -> None:
    layer = ConvTranspose2d(np.ones((2, 3, 2, 2)), np.zeros(3))
    assert layer.decayed == ("weight",) and layer.reports_delta
    assert sorted(layer.params) == ["bias", "weight"]
    assert Conv3d.decayed == ("weight",) and Conv3d.reports_delta
