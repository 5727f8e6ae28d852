"""F.pad (constant, reflect, replicate, circular) against torch.autograd in float64: z, δ_prev.

A table of named cases covers each mode in 1-d, 2-d and 3-d, batched and unbatched,
negative pads (crops, which reflect and replicate read from the original input and
circular applies first), the widest pads each mode allows, and constant pads of any rank
and value. A pad copies, so z must equal torch's exactly; δ_prev sums copies, so it is
compared at the suite's tolerance. A hypothesis property draws random pads against torch,
another checks the adjoint identity ⟨pad(x), u⟩ = ⟨x, fold(u)⟩, a table of refusals checks
every ValueError against torch's own refusal, and planted bugs in the folds must fail.
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

import manual_bp.ops.padding as padding
from manual_bp.ops.padding import Pad

TOL = TOLERANCES["layer"]


@dataclass(frozen=True)
class PadCase:
    """A printable spec: F.pad(x, pad, mode, value) on an input of in_shape."""

    id: str
    in_shape: tuple[int, ...]
    pad: tuple[int, ...]
    mode: str = "constant"
    options: dict[str, Any] = field(default_factory=dict)  # value
    seed: int = 0


def check_against_torch(case: PadCase) -> None:
    """Our layer against F.pad, forward and backward (tests/_layer_check.py); a pad copies,
    so its forward must equal torch's exactly."""
    x = np.random.default_rng(case.seed).standard_normal(case.in_shape)
    layer = Pad(case.pad, case.mode, **case.options)

    def torch_fn(x_t: torch.Tensor) -> torch.Tensor:
        return F.pad(x_t, case.pad, case.mode, **case.options)

    check_layer(case.id, layer, [x], torch_fn, tol=TOL, tol_z=TOLERANCES["equal"], seed=case.seed)


# --- the table ----------------------------------------------------------------------------

# fmt: off
CASES = [
    # constant: any rank, any value, negative pads crop (to an empty dim, even)
    PadCase("constant-1d", (2, 3, 5), (1, 2)),
    PadCase("constant-value", (2, 3, 5), (2, 1), options={"value": 2.5}),
    PadCase("constant-2d-value-negative", (2, 3, 4, 5), (1, 0, 2, 3), options={"value": -1.0}),
    PadCase("constant-3d", (1, 2, 3, 4, 2), (1, 1, 0, 2, 3, 0)),
    PadCase("constant-crop", (2, 3, 5), (-1, 2)),
    PadCase("constant-crop-both-sides", (2, 3, 4, 5), (-2, -1, 1, -3)),
    PadCase("constant-crop-to-empty", (2, 3, 5), (-5, 0)),
    PadCase("constant-crop-and-pad-past-the-input", (2, 5), (-5, 1)),
    PadCase("constant-all-dims-of-a-vector", (6,), (2, 3)),
    PadCase("constant-leading-dims", (2, 3, 4), (1, 1, 0, 1, 2, 0), options={"value": 1.0}),
    PadCase("constant-empty-pad", (2, 3), ()),
    PadCase("constant-wider-than-input", (1, 2, 2), (5, 7)),
    PadCase("constant-empty-batch", (0, 3, 4), (1, 2)),
    # reflect: pads < L; negative pads crop, reflecting the original input
    PadCase("reflect-1d", (2, 3, 5), (2, 1), "reflect"),
    PadCase("reflect-1d-unbatched", (3, 5), (1, 3), "reflect"),
    PadCase("reflect-widest", (2, 3, 5), (4, 4), "reflect"),
    PadCase("reflect-2d", (2, 3, 4, 5), (1, 2, 3, 0), "reflect"),
    PadCase("reflect-2d-unbatched", (3, 4, 5), (2, 2, 1, 1), "reflect"),
    PadCase("reflect-3d", (1, 2, 3, 4, 5), (1, 2, 0, 3, 2, 1), "reflect"),
    PadCase("reflect-3d-unbatched", (2, 3, 4, 5), (2, 1, 1, 2, 1, 0), "reflect"),
    PadCase("reflect-crop-left-pad-right", (2, 3, 5), (-1, 2), "reflect"),
    PadCase("reflect-pad-left-crop-right", (2, 3, 5), (2, -1), "reflect"),
    PadCase("reflect-reads-the-cropped-part", (2, 3, 5), (-3, 4), "reflect"),
    PadCase("reflect-crop-to-one-then-pad", (1, 1, 5), (-5, 1), "reflect"),
    PadCase("reflect-2d-crop-mixed", (2, 2, 5, 6), (-2, 3, 1, -2), "reflect"),
    # replicate: any width; negative pads crop
    PadCase("replicate-1d", (2, 3, 5), (3, 1), "replicate"),
    PadCase("replicate-wider-than-input", (2, 3, 3), (7, 5), "replicate"),
    PadCase("replicate-2d", (2, 3, 4, 5), (1, 2, 3, 4), "replicate"),
    PadCase("replicate-2d-unbatched", (3, 4, 5), (0, 2, 5, 1), "replicate"),
    PadCase("replicate-3d", (1, 2, 3, 4, 2), (1, 2, 2, 0, 3, 3), "replicate"),
    PadCase("replicate-crop", (2, 3, 5), (-3, 4), "replicate"),
    PadCase("replicate-2d-crop-mixed", (2, 2, 5, 6), (2, -3, -1, 2), "replicate"),
    # circular: pads ≤ L; negative pads crop first, the wrap uses what is left
    PadCase("circular-1d", (2, 3, 5), (2, 1), "circular"),
    PadCase("circular-widest", (2, 3, 5), (5, 5), "circular"),
    PadCase("circular-1d-unbatched", (3, 5), (3, 2), "circular"),
    PadCase("circular-2d", (2, 3, 4, 5), (1, 2, 3, 4), "circular"),
    PadCase("circular-2d-unbatched", (3, 4, 5), (5, 0, 2, 4), "circular"),
    PadCase("circular-3d", (1, 2, 3, 4, 2), (1, 2, 2, 0, 3, 3), "circular"),
    PadCase("circular-crop-left-wrap-right", (2, 3, 5), (-1, 2), "circular"),
    PadCase("circular-wrap-left-crop-right", (2, 3, 5), (2, -1), "circular"),
    PadCase("circular-wrap-all-that-is-left", (2, 3, 5), (4, -1), "circular"),
    PadCase("circular-crop-to-empty", (2, 3, 5), (-5, 0), "circular"),
    PadCase("circular-2d-crop-mixed", (2, 2, 5, 6), (-2, 3, 2, -1), "circular"),
    # value 0 is accepted by every mode, as in torch
    PadCase("reflect-value-zero-accepted", (2, 3, 5), (1, 1), "reflect", {"value": 0.0}),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pad_matches_torch(case: PadCase) -> None:
    check_against_torch(case)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize(
    "module, args, in_shape",
    [
        pytest.param(torch.nn.ZeroPad1d, ((1, 2),), (2, 3, 4), id="ZeroPad1d"),
        pytest.param(torch.nn.ZeroPad2d, (2,), (2, 3, 4, 5), id="ZeroPad2d"),
        pytest.param(torch.nn.ZeroPad3d, ((1, 0, 2, 1, 0, 3),), (1, 2, 3, 4, 2), id="ZeroPad3d"),
        pytest.param(torch.nn.ConstantPad1d, (2, 3.5), (3, 4), id="ConstantPad1d"),
        pytest.param(torch.nn.ConstantPad2d, ((1, -1, 0, 2), -2.0), (2, 3, 4, 5), id="ConstPad2d"),
        pytest.param(torch.nn.ConstantPad3d, (1, 0.5), (2, 3, 4, 2), id="ConstantPad3d"),
        pytest.param(torch.nn.ReflectionPad1d, (2,), (2, 3, 4), id="ReflectionPad1d"),
        pytest.param(torch.nn.ReflectionPad2d, ((1, 2, 3, 0),), (3, 4, 5), id="ReflectionPad2d"),
        pytest.param(torch.nn.ReflectionPad3d, (1,), (1, 2, 3, 4, 2), id="ReflectionPad3d"),
        pytest.param(torch.nn.ReplicationPad1d, ((3, 0),), (2, 3, 4), id="ReplicationPad1d"),
        pytest.param(torch.nn.ReplicationPad2d, (2,), (2, 3, 4, 5), id="ReplicationPad2d"),
        pytest.param(torch.nn.ReplicationPad3d, ((1, 0, 2, 1, 0, 3),), (2, 3, 4, 2), id="Repl3d"),
        pytest.param(torch.nn.CircularPad1d, (2,), (2, 3, 4), id="CircularPad1d"),
        pytest.param(torch.nn.CircularPad2d, ((1, 2, 3, 0),), (2, 3, 4, 5), id="CircularPad2d"),
        pytest.param(torch.nn.CircularPad3d, (1,), (1, 2, 3, 4, 2), id="CircularPad3d"),
    ],
)  # fmt: skip
def test_padding_modules_are_pad_with_their_attributes(
    module: type, args: tuple, in_shape: tuple[int, ...]
) -> None:
    """Every padding module is F.pad(x, m.padding, mode, value): Pad with those attributes."""
    m = module(*args)
    mode = {"Zero": "constant", "Const": "constant", "Refle": "reflect", "Repli": "replicate"}
    name = type(m).__name__
    mode_name = next((v for k, v in mode.items() if name.startswith(k)), "circular")
    value = getattr(m, "value", None) if mode_name == "constant" else None
    layer = Pad(m.padding, mode_name, value)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(in_shape)
    z, cache = layer.forward(x)
    delta = rng.standard_normal(z.shape)
    dx, _ = layer.backward(delta, cache)
    x_t = torch.from_numpy(x).requires_grad_(True)
    z_t = m(x_t)
    (dx_t,) = torch.autograd.grad(z_t, x_t, torch.from_numpy(delta))
    assert np.array_equal(z, z_t.detach().numpy()), f"z [{name}]"
    _compare.assert_close("delta_prev", name, dx, dx_t.numpy(), **TOL)


# --- random pads ----------------------------------------------------------------------------


@st.composite
def pad_cases(draw: st.DrawFn, *, max_size: int = 6) -> PadCase:
    """A pad torch accepts: per mode, pads within its limits, negative ones included."""
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    k = draw(st.integers(1, 3))
    if mode == "constant":
        rank = draw(st.integers(k, k + 2))
    else:
        rank = k + draw(st.integers(1, 2))
    shape = [draw(st.integers(1, 3)) for _ in range(rank - k)]
    pads: list[int] = []
    for _ in range(k):
        L = draw(st.integers(1, max_size))
        shape.append(L)
        if mode == "reflect":
            lo, hi = (draw(st.integers(-L + 1, L - 1)) for _ in range(2))
            if L + lo + hi < 1:
                lo = max(lo, 1 - L - hi)
        elif mode == "replicate":
            lo, hi = (draw(st.integers(-L + 1, L + 2)) for _ in range(2))
            if L + lo + hi < 1:
                lo = 1 - L - hi
        elif mode == "circular":
            crop_lo, crop_hi = draw(st.integers(0, L)), 0
            crop_hi = draw(st.integers(0, L - crop_lo))
            kept = L - crop_lo - crop_hi
            lo = -crop_lo if crop_lo else draw(st.integers(0, kept))
            hi = -crop_hi if crop_hi else draw(st.integers(0, kept))
        else:
            lo, hi = (draw(st.integers(-L, L + 2)) for _ in range(2))
            if L + lo + hi < 0:
                lo = -L - hi
        pads = [lo, hi, *pads]  # torch's flat order lists the last dim first
    options = {"value": draw(st.sampled_from([0.0, 1.5, -3.0]))} if mode == "constant" else {}
    return PadCase("hypothesis", tuple(shape), tuple(pads), mode, options, draw(st.integers(0, 99)))


@given(pad_cases())
@settings(max_examples=150)
def test_random_pads_match_torch(case: PadCase) -> None:
    check_against_torch(case)


@given(pad_cases())
@settings(max_examples=100)
def test_fold_is_the_adjoint_of_the_pad(case: PadCase) -> None:
    """⟨pad(x) − pad(0), u⟩ = ⟨x, fold(u)⟩: the backward is the transpose of the (affine) pad."""
    rng = np.random.default_rng(case.seed)
    layer = Pad(case.pad, case.mode, **case.options)
    x = rng.standard_normal(case.in_shape)
    u = rng.standard_normal(layer.shape(case.in_shape))
    z, cache = layer.forward(x)
    z0, _ = layer.forward(np.zeros(case.in_shape))
    dx, _ = layer.backward(u, cache)
    lhs, rhs = float(np.vdot(z - z0, u)), float(np.vdot(x, dx))
    scale = np.linalg.norm(z - z0) * np.linalg.norm(u) + np.linalg.norm(x) * np.linalg.norm(dx)
    assert abs(lhs - rhs) <= 1e-12 * max(scale, 1.0), f"[{case}] {lhs!r} vs {rhs!r}"


# --- planted bugs: the checks above must catch a wrong fold -----------------------------------


def _reflect_fold_off_by_one(g: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    L = g.shape[axis] - lo - hi
    dx = g[padding._along(axis, lo, lo + L)].copy()
    dx[padding._along(axis, 0, lo)] += np.flip(g[padding._along(axis, 0, lo)], axis)  # not 1..lo
    dx[padding._along(axis, L - 1 - hi, L - 1)] += np.flip(
        g[padding._along(axis, lo + L, lo + L + hi)], axis
    )
    return dx


def _circular_fold_swapped(g: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    L = g.shape[axis] - lo - hi
    dx = g[padding._along(axis, lo, lo + L)].copy()
    dx[padding._along(axis, 0, lo)] += g[padding._along(axis, 0, lo)]  # the left pad is x's end
    dx[padding._along(axis, L - hi, L)] += g[padding._along(axis, lo + L, lo + L + hi)]
    return dx


@pytest.mark.parametrize(
    "mode, fold, case",
    [
        pytest.param("reflect", _reflect_fold_off_by_one, "reflect-2d", id="reflect-off-by-one"),
        pytest.param(
            "circular", _circular_fold_swapped, "circular-2d", id="circular-sides-swapped"
        ),
    ],
)
def test_planted_fold_bugs_fail(monkeypatch: pytest.MonkeyPatch, mode: str, fold, case) -> None:
    case = next(c for c in CASES if c.id == case)
    bad = padding.PaddingMode(
        padding.PADDING_MODES[mode].numpy_mode, fold, padding.PADDING_MODES[mode].max_pad, ""
    )
    monkeypatch.setitem(padding.PADDING_MODES, mode, bad)
    with pytest.raises(AssertionError, match="δ_prev of input 0"):
        check_against_torch(case)


def test_planted_crop_order_bug_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reflect reads the original input: cropping first (as circular does) must fail."""

    def crop_first(self: Pad, x: np.ndarray):  # type: ignore[no-untyped-def]
        grow, crop = padding._split(self.pads)
        return padding.pad(padding._crop(x, crop), grow, self.mode), None

    monkeypatch.setattr(Pad, "forward", crop_first)
    with pytest.raises(AssertionError, match=r"forward z\[0\] .reflect-reads-the-cropped-part."):
        check_against_torch(next(c for c in CASES if c.id == "reflect-reads-the-cropped-part"))


# --- refusals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    in_shape: tuple[int, ...]
    pad: Any
    mode: str
    match: str
    options: dict[str, Any] = field(default_factory=dict)
    torch_refuses: bool = True  # False: torch computes garbage we refuse on purpose


# fmt: off
REFUSALS = [
    Refusal("odd-pad-length", (2, 3, 4), (1, 2, 3), "constant", r"divisible by 2, got 3"),
    Refusal("too-many-pads-for-rank", (2, 3), (1, 1, 1, 1, 1, 1), "constant",
            r"pads 3 dims, more than the 2 of the input"),
    Refusal("constant-crop-past-empty", (2, 3, 5), (-6, 0), "constant",
            r"leaves -1 cells along dim 2"),
    Refusal("unknown-mode", (2, 3, 4), (1, 1), "mirror", r"unknown padding mode 'mirror'"),
    Refusal("pad-not-ints", (2, 3, 4), (1.5, 1), "constant", r"tuple of ints"),
    Refusal("constant-value-nan", (2, 3, 4), (1, 1), "constant", r"finite number",
            {"value": float("nan")}, torch_refuses=False),
    Refusal("reflect-takes-no-value", (2, 3, 4), (1, 1), "reflect", r"takes no value",
            {"value": 1.0}),
    Refusal("reflect-pad-equal-to-input", (2, 3, 5), (5, 0), "reflect",
            r"reflect padding \(5, 0\) must be smaller than the input size 5"),
    Refusal("reflect-crop-to-empty", (2, 3, 5), (-5, 0), "reflect",
            r"leaves 0 cells .* needs at least 1"),
    Refusal("replicate-crop-to-empty", (2, 3, 5), (-3, -2), "replicate",
            r"leaves 0 cells .* needs at least 1"),
    Refusal("reflect-1d-input", (5,), (1, 1), "reflect",
            r"reflect padding of 1 dims .* expects input \(N, C, L\) or \(C, L\)"),
    Refusal("replicate-2d-pad-on-5d", (1, 1, 2, 3, 4), (1, 1, 1, 1), "replicate",
            r"expects input \(N, C, H, W\) or \(C, H, W\)"),
    Refusal("circular-pad-length-8", (1, 1, 2, 3, 4), (1,) * 8, "circular",
            r"pad of length 2, 4 or 6, got 8"),
    Refusal("circular-wraps-twice", (2, 3, 5), (6, 0), "circular",
            r"circular padding \(6, 0\) must be at most the size 5"),
    Refusal("circular-wrap-past-the-crop", (2, 3, 5), (-3, 4), "circular",
            r"circular padding \(-3, 4\) must be at most the size 2 left after cropping",
            torch_refuses=False),
    Refusal("circular-wrap-an-empty-crop", (2, 3, 5), (-5, 1), "circular",
            r"at most the size 0 left after cropping", torch_refuses=False),
]
# fmt: on


@pytest.mark.parametrize("r", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusals(r: Refusal) -> None:
    with pytest.raises(ValueError, match=r.match):
        Pad(r.pad, r.mode, **r.options).shape(r.in_shape)
    if r.torch_refuses:
        with pytest.raises((RuntimeError, ValueError, TypeError, NotImplementedError)):
            F.pad(torch.zeros(r.in_shape, dtype=torch.float64), r.pad, r.mode, **r.options)


def test_torch_is_unreliable_where_we_refuse_circular() -> None:
    """Why we refuse a circular pad wider than what the crop left: torch wraps a crop that
    left nothing from memory it never wrote, and a wider wrap either raises (overlapping
    copies) or wraps twice, depending on the tensor's shape, where a pad wider than the
    input itself is refused as "wrapping around more than once"."""
    x = torch.arange(1.0, 6.0, dtype=torch.float64).reshape(1, 1, 5)
    assert F.pad(x, (-5, 1), "circular").shape == (1, 1, 1)  # one value copied from nowhere
    with pytest.raises(RuntimeError, match="single memory location"):
        F.pad(x, (-3, 4), "circular")
    wide = torch.arange(30.0, dtype=torch.float64).reshape(2, 3, 5)
    assert F.pad(wide, (-3, 4), "circular")[0, 0].tolist() == [3.0, 4.0] * 3  # wrapped twice
    with pytest.raises(RuntimeError, match="more than once"):
        F.pad(x, (6, 0), "circular")


def test_conv_and_pad_share_one_implementation() -> None:
    """conv's padding_mode pads with padding.pad / fold_pad, not copies of them."""
    import manual_bp.ops.conv as conv

    assert conv.pad is padding.pad and conv.fold_pad is padding.fold_pad
    assert conv.PADDING_MODES is padding.PADDING_MODES
