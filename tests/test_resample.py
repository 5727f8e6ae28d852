"""F.interpolate / nn.Upsample and PixelShuffle against torch.autograd in float64: z, δ_prev.

A table of named cases covers every mode (nearest, nearest-exact, linear, bilinear,
bicubic, trilinear, area) with size and scale_factor, align_corners, recompute_scale_factor,
down- and up-sampling, the sizes where torch's index arithmetic rounds in float32, and the
module forms. A sweep compares every small size pair per mode; a hypothesis property checks
the adjoint identity ⟨M x, u⟩ = ⟨x, Mᵀ u⟩; refusals are data, including the nearest calls
whose torch backward does not match torch's own forward (shown to be so); planted bugs (a
cubic with Keys' A = −0.5, floor in double where torch floors in float32, a backward that
is not the transpose) must fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import _compare
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _layer_check import check_layer
from _tolerances import TOLERANCES
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bp.ops.resample as resample
from manual_bp.ops.resample import Interpolate, PixelShuffle, PixelUnshuffle

TOL = TOLERANCES["layer"]


@dataclass(frozen=True)
class InterpCase:
    """A printable spec: F.interpolate(x, **options) on an input of in_shape."""

    id: str
    in_shape: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def check_against_torch(case: InterpCase) -> None:
    """Our layer against F.interpolate, forward and backward (tests/_layer_check.py)."""
    x = np.random.default_rng(case.seed).standard_normal(case.in_shape)

    def torch_fn(x_t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x_t, **case.options)

    check_layer(case.id, Interpolate(**case.options), [x], torch_fn, tol=TOL, seed=case.seed)


def _c(id: str, in_shape: tuple[int, ...], **options: Any) -> InterpCase:
    return InterpCase(id, in_shape, options)


X1, X2, X3 = (2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)

# fmt: off
CASES = [
    # nearest: size, scale (2x uses torch's o >> 1 in the backward: the same cells), down
    _c("nearest-1d-size-up", X1, size=8, mode="nearest"),
    _c("nearest-1d-size-down", X1, size=3, mode="nearest"),
    _c("nearest-2d-scale2", X2, scale_factor=2, mode="nearest"),
    _c("nearest-2d-scale-pair", X2, scale_factor=(1.5, 0.5), mode="nearest"),
    _c("nearest-2d-size-pair", X2, size=(7, 3), mode="nearest"),
    _c("nearest-3d-size", X3, size=(5, 2, 9), mode="nearest"),
    _c("nearest-3d-scale-recompute", X3, scale_factor=1.7, mode="nearest",
       recompute_scale_factor=True),
    _c("nearest-scale-one-third", (1, 2, 9), scale_factor=1 / 3, mode="nearest"),
    # nearest-exact
    _c("nearest-exact-1d-size", X1, size=8, mode="nearest-exact"),
    _c("nearest-exact-2d-scale", X2, scale_factor=(1.5, 2.5), mode="nearest-exact"),
    _c("nearest-exact-2d-down", X2, size=(3, 2), mode="nearest-exact"),
    _c("nearest-exact-3d", X3, size=(4, 7, 3), mode="nearest-exact"),
    # ⌊(o + ½)·2/49⌋ at o = 24 is 1 only once the product is rounded to float32, as floorf does
    _c("nearest-exact-float32-rounding", (1, 2, 2), size=49, mode="nearest-exact"),
    # linear, bilinear, trilinear
    _c("linear-up", X1, size=9, mode="linear"),
    _c("linear-down", X1, size=3, mode="linear"),
    _c("linear-align-corners", X1, size=9, mode="linear", align_corners=True),
    _c("linear-align-corners-to-one", X1, size=1, mode="linear", align_corners=True),
    _c("linear-scale-not-recomputed", X1, scale_factor=1.7, mode="linear"),
    _c("linear-scale-recomputed", X1, scale_factor=1.7, mode="linear",
       recompute_scale_factor=True),
    _c("linear-same-size-copies", X1, scale_factor=1.1, mode="linear"),
    _c("linear-from-one-cell", (2, 3, 1), size=4, mode="linear"),
    _c("bilinear-up", X2, size=(7, 9), mode="bilinear"),
    _c("bilinear-down", X2, size=(3, 2), mode="bilinear"),
    _c("bilinear-align-corners", X2, size=(7, 9), mode="bilinear", align_corners=True),
    _c("bilinear-scale2", X2, scale_factor=2.0, mode="bilinear"),
    _c("bilinear-scale-pair-align", X2, scale_factor=(0.6, 1.4), mode="bilinear",
       align_corners=True),
    _c("trilinear", X3, size=(5, 6, 3), mode="trilinear"),
    _c("trilinear-align-corners", X3, scale_factor=(2.0, 0.5, 1.3), mode="trilinear",
       align_corners=True),
    # bicubic: taps past the border clamp onto it; negative source positions are kept
    _c("bicubic-up", X2, size=(9, 11), mode="bicubic"),
    _c("bicubic-down", X2, size=(2, 3), mode="bicubic"),
    _c("bicubic-align-corners", X2, size=(9, 11), mode="bicubic", align_corners=True),
    _c("bicubic-scale", X2, scale_factor=(1.3, 2.7), mode="bicubic"),
    _c("bicubic-from-one-row", (1, 2, 1, 3), size=(4, 5), mode="bicubic"),
    _c("bicubic-same-size", X2, size=(4, 5), mode="bicubic"),
    # area: adaptive average pooling
    _c("area-1d-down", X1, size=2, mode="area"),
    _c("area-2d-scale", X2, scale_factor=0.5, mode="area"),
    _c("area-3d-up", X3, size=(4, 5, 7), mode="area"),
    # empty batch
    _c("bilinear-empty-batch", (0, 3, 4, 5), size=(6, 7), mode="bilinear"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_interpolate_matches_torch(case: InterpCase) -> None:
    check_against_torch(case)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize(
    "mode, align_corners",
    [
        ("nearest", None),
        ("nearest-exact", None),
        ("linear", False),
        ("linear", True),
        ("bicubic", False),
        ("bicubic", True),
    ],
)
def test_every_small_size_pair_matches_torch(mode: str, align_corners: bool | None) -> None:
    """Every L_in ≤ 8 → L_out ≤ 20 along one axis (bicubic along H of a (L, 3) plane)."""
    for L_in in range(1, 9):
        for L_out in range(1, 21):
            if mode == "bicubic":
                in_shape, size = (1, 1, L_in, 3), (L_out, 2)
            else:
                in_shape, size = (1, 2, L_in), L_out
            options = {"size": size, "mode": mode}
            if align_corners is not None:
                options["align_corners"] = align_corners
            check_against_torch(InterpCase(f"{mode}-{L_in}->{L_out}", in_shape, options))


@pytest.mark.parametrize(
    "module, kwargs, options",
    [
        pytest.param(torch.nn.Upsample, {"scale_factor": 2}, {"scale_factor": 2.0}, id="default"),
        pytest.param(
            torch.nn.Upsample,
            {"size": (6, 7), "mode": "bicubic", "align_corners": True},
            {"size": (6, 7), "mode": "bicubic", "align_corners": True},
            id="bicubic",
        ),
        pytest.param(
            torch.nn.UpsamplingNearest2d,
            {"scale_factor": 3},
            {"scale_factor": 3.0, "mode": "nearest"},
            id="UpsamplingNearest2d",
        ),
        pytest.param(
            torch.nn.UpsamplingBilinear2d,
            {"size": (7, 3)},
            {"size": (7, 3), "mode": "bilinear", "align_corners": True},
            id="UpsamplingBilinear2d",
        ),
    ],
)
def test_upsampling_modules_are_interpolate(module: type, kwargs: dict, options: dict) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(X2)
    layer = Interpolate(**options)
    z, cache = layer.forward(x)
    delta = rng.standard_normal(z.shape)
    dx, _ = layer.backward(delta, cache)
    x_t = torch.from_numpy(x).requires_grad_(True)
    z_t = module(**kwargs)(x_t)
    (dx_t,) = torch.autograd.grad(z_t, x_t, torch.from_numpy(delta))
    _compare.assert_close("z", module.__name__, z, z_t.detach().numpy(), **TOL)
    _compare.assert_close("delta_prev", module.__name__, dx, dx_t.numpy(), **TOL)


# --- the adjoint identity -------------------------------------------------------------------


@st.composite
def interp_cases(draw: st.DrawFn) -> InterpCase:
    mode = draw(st.sampled_from(list(resample.MODE_RANKS)))
    rank = draw(st.sampled_from(resample.MODE_RANKS[mode]))
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(rank - 2))
    options: dict[str, Any] = {"mode": mode}
    if draw(st.booleans()):
        options["size"] = tuple(draw(st.integers(1, 9)) for _ in spatial)
    else:
        options["scale_factor"] = tuple(
            draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])) for _ in spatial
        )
        if mode != "area":  # torch recomputes for area itself
            options["recompute_scale_factor"] = draw(st.sampled_from([None, True, False]))
    if mode not in ("nearest", "nearest-exact", "area"):
        options["align_corners"] = draw(st.booleans())
    batch = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return InterpCase("hypothesis", (*batch, *spatial), options, draw(st.integers(0, 99)))


def _usable(case: InterpCase) -> bool:
    try:
        Interpolate(**case.options).shape(case.in_shape)
    except ValueError:
        return False
    return True


@given(interp_cases())
@settings(max_examples=150)
def test_backward_is_the_transpose(case: InterpCase) -> None:
    """⟨z(x), u⟩ = ⟨x, δ_prev(u)⟩ for random x and u: the backward is Mᵀ."""
    if not _usable(case):
        return
    rng = np.random.default_rng(case.seed)
    layer = Interpolate(**case.options)
    x = rng.standard_normal(case.in_shape)
    z, cache = layer.forward(x)
    u = rng.standard_normal(z.shape)
    dx, _ = layer.backward(u, cache)
    lhs, rhs = float(np.vdot(z, u)), float(np.vdot(x, dx))
    scale = np.linalg.norm(z) * np.linalg.norm(u) + np.linalg.norm(x) * np.linalg.norm(dx)
    assert abs(lhs - rhs) <= 1e-12 * scale, f"[{case}] <Mx, u> = {lhs!r}, <x, Mᵀu> = {rhs!r}"


@given(interp_cases())
@settings(max_examples=100)
def test_random_calls_match_torch(case: InterpCase) -> None:
    if _usable(case):
        check_against_torch(case)


# --- planted bugs ---------------------------------------------------------------------------


def test_planted_keys_a_half_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's bicubic uses A = −0.75 (OpenCV's), not Keys' −0.5: the latter must fail."""
    real = resample.cubic_coefficients
    monkeypatch.setattr(resample, "cubic_coefficients", lambda t: real(t, A=-0.5))
    with pytest.raises(AssertionError, match="z"):
        check_against_torch(next(c for c in CASES if c.id == "bicubic-up"))


def test_planted_double_floor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch floors in float32 (floorf): flooring the double picks another cell."""
    monkeypatch.setattr(
        resample, "_floorf", lambda r: np.floor(np.asarray(r, dtype=np.float64)).astype(np.int64)
    )
    with pytest.raises(AssertionError, match=r"z\[0\] .nearest-exact-float32-rounding. at index"):
        check_against_torch(next(c for c in CASES if c.id == "nearest-exact-float32-rounding"))


def test_planted_non_transpose_backward_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backward that spreads δ evenly instead of with the forward's weights must fail."""

    def even(self: Interpolate, delta: np.ndarray, cache):  # type: ignore[no-untyped-def]
        dx = delta
        for axis, M in enumerate(cache):
            flat = resample.AxisMap(M.index, np.full(M.weight.shape, 0.5), M.L_in)
            dx = flat.apply_transpose(dx, 2 + axis)
        return dx, {}

    monkeypatch.setattr(Interpolate, "backward", even)
    with pytest.raises(AssertionError, match="δ_prev of input 0"):
        check_against_torch(next(c for c in CASES if c.id == "bilinear-up"))


# --- refusals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    in_shape: tuple[int, ...]
    options: dict[str, Any]
    match: str
    torch_refuses: bool = True  # False: torch computes something we refuse on purpose


# fmt: off
REFUSALS = [
    Refusal("size-and-scale", X2, {"size": 4, "scale_factor": 2.0},
            r"only one of size or scale_factor"),
    Refusal("neither-size-nor-scale", X2, {}, r"either size or scale_factor"),
    Refusal("align-corners-with-nearest", X2, {"size": 4, "align_corners": True},
            r"align_corners option can only be set with the interpolating modes"),
    Refusal("recompute-with-size", X2, {"size": 4, "recompute_scale_factor": True,
                                        "mode": "bilinear"},
            r"recompute_scale_factor is not meaningful with an explicit size"),
    Refusal("antialias", X2, {"size": 4, "mode": "bilinear", "antialias": True},
            r"antialias=True is not supported", torch_refuses=False),
    Refusal("bilinear-on-3d", X1, {"size": 4, "mode": "bilinear"},
            r"mode 'bilinear' takes 4D input"),
    Refusal("linear-on-4d", X2, {"size": 4, "mode": "linear"}, r"mode 'linear' takes 3D input"),
    Refusal("trilinear-on-4d", X2, {"size": 4, "mode": "trilinear"},
            r"mode 'trilinear' takes 5D input"),
    Refusal("nearest-on-2d", (3, 4), {"size": 4}, r"takes 3D or 4D or 5D input"),
    Refusal("unknown-mode", X2, {"size": 4, "mode": "lanczos"},
            r"unknown interpolation mode 'lanczos'"),
    Refusal("size-length", X2, {"size": (4, 5, 6)}, r"expected size with 2 entries"),
    Refusal("scale-length", X2, {"scale_factor": (2.0,)}, r"expected scale_factor with 2 entries"),
    Refusal("output-size-zero", X2, {"scale_factor": 0.1},
            r"output sizes should be greater than 0, got input \(4, 5\) and output \(0, 0\)"),
    Refusal("size-zero", X2, {"size": (0, 3), "mode": "bilinear"},
            r"greater than 0"),
    Refusal("size-not-int", X2, {"size": 2.5}, r"expected size as an int"),
    Refusal("scale-not-finite", X2, {"scale_factor": float("inf")}, r"finite number",
            torch_refuses=True),
    # torch's nearest backward and forward disagree here: refused (see the test below)
    Refusal("nearest-same-size-scale-1.1", X1, {"scale_factor": 1.1},
            r"torch's forward copies input cell 0 to output cell 1 but its backward sends "
            r"that cell's gradient to input cell 1", torch_refuses=False),
    Refusal("nearest-double-size-scale-2.3", (1, 2, 3), {"scale_factor": 2.3},
            r"its gradient is not its forward's", torch_refuses=False),
]
# fmt: on


@pytest.mark.parametrize("r", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusals(r: Refusal) -> None:
    with pytest.raises(ValueError, match=r.match):
        Interpolate(**r.options).shape(r.in_shape)
    if r.torch_refuses:
        with pytest.raises((RuntimeError, ValueError, TypeError, NotImplementedError)):
            F.interpolate(torch.zeros(r.in_shape, dtype=torch.float64), **r.options)


@pytest.mark.parametrize(
    "L, scale", [(5, 1.1), (3, 2.3), (8, 1.05), (4, 2.1)], ids=lambda v: str(v)
)
def test_torch_nearest_gradient_is_not_its_forward_where_we_refuse(L: int, scale: float) -> None:
    """Why we refuse: torch's gradient differs from the transpose of its own forward."""
    with pytest.raises(ValueError, match="not its forward's"):
        Interpolate(scale_factor=scale).shape((1, 1, L))
    x = torch.arange(float(L), dtype=torch.float64).reshape(1, 1, L).requires_grad_(True)
    z = F.interpolate(x, scale_factor=scale, mode="nearest")
    read = z.detach().long().flatten().numpy()  # the input cell each output copies
    z.sum().backward()
    transpose = np.bincount(read, minlength=L).astype(np.float64)
    assert not np.array_equal(x.grad.flatten().numpy(), transpose), (
        f"torch is now consistent at L={L}, scale={scale}: drop the refusal"
    )


def test_same_calls_are_consistent_with_recompute_or_size() -> None:
    """The refusal's advice works: recompute_scale_factor=True gives a consistent pair."""
    check_against_torch(
        InterpCase("advice", X1, {"scale_factor": 1.1, "recompute_scale_factor": True})
    )


def test_interpolate_has_no_parameters_and_no_ties() -> None:
    layer = Interpolate(size=4)
    assert layer.params == {} and layer.ties(np.zeros(X1)) is None


# --- pixel shuffle -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, module, in_shape",
    [
        pytest.param(PixelShuffle(2), torch.nn.PixelShuffle(2), (2, 8, 3, 4), id="shuffle-r2"),
        pytest.param(PixelShuffle(3), torch.nn.PixelShuffle(3), (9, 2, 3), id="shuffle-unbatched"),
        pytest.param(PixelShuffle(1), torch.nn.PixelShuffle(1), (2, 3, 2, 2), id="shuffle-r1"),
        pytest.param(PixelShuffle(2), torch.nn.PixelShuffle(2), (2, 3, 4, 2, 3), id="shuffle-5d"),
        pytest.param(
            PixelUnshuffle(2), torch.nn.PixelUnshuffle(2), (2, 3, 4, 6), id="unshuffle-r2"
        ),
        pytest.param(
            PixelUnshuffle(3), torch.nn.PixelUnshuffle(3), (2, 6, 9), id="unshuffle-unbatched"
        ),
    ],
)
def test_pixel_shuffle_matches_torch(layer, module, in_shape: tuple[int, ...]) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(in_shape)
    out_shape = layer.shape(in_shape)
    z, cache = layer.forward(x)
    delta = rng.standard_normal(out_shape)
    dx, _ = layer.backward(delta, cache)
    x_t = torch.from_numpy(x).requires_grad_(True)
    z_t = module(x_t)
    (dx_t,) = torch.autograd.grad(z_t, x_t, torch.from_numpy(delta))
    assert out_shape == tuple(z_t.shape)
    assert np.array_equal(z, z_t.detach().numpy()), "a permutation: z equal exactly"
    assert np.array_equal(dx, dx_t.numpy()), "a permutation: δ_prev equal exactly"


def test_shuffle_and_unshuffle_are_each_others_backward() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 12, 3, 5))
    shuffle, unshuffle = PixelShuffle(2), PixelUnshuffle(2)
    z, _ = shuffle.forward(x)
    assert np.array_equal(unshuffle.forward(z)[0], x)
    assert np.array_equal(shuffle.backward(z, None)[0], unshuffle.forward(z)[0])
    assert np.array_equal(unshuffle.backward(x, None)[0], shuffle.forward(x)[0])


# fmt: off
SHUFFLE_REFUSALS = [
    (PixelShuffle, 2, (2, 6, 3, 3), r"channels divisible by 4, got shape \(2, 6, 3, 3\)"),
    (PixelShuffle, 2, (4, 3), r"pixel_shuffle expects input \(\*, C·r², H, W\)"),
    (PixelUnshuffle, 2, (2, 3, 4, 5), r"H and W divisible by 2, got shape \(2, 3, 4, 5\)"),
    (PixelUnshuffle, 3, (3, 6), r"pixel_unshuffle expects input"),
]
# fmt: on


@pytest.mark.parametrize("cls, r, in_shape, match", SHUFFLE_REFUSALS)
def test_pixel_shuffle_refusals(cls: type, r: int, in_shape: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(r).shape(in_shape)
    with pytest.raises(RuntimeError):
        getattr(torch.nn, cls.__name__)(r)(torch.zeros(in_shape))


@pytest.mark.parametrize("r", [0, -1, 1.5, True])
def test_pixel_shuffle_refuses_bad_factors(r: Any) -> None:
    with pytest.raises(ValueError, match="must be a positive int"):
        PixelShuffle(r)
