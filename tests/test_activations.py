"""The elementwise table: each f and f′ against torch in float64 (inf and NaN where torch has
them), the subgradient at every kink, the kink masks, the derivatives' known ranges,
stability at |z| = 1e3, exact GELU against mpmath, PReLU as a layer, refusals as data, and
planted bugs that these checks must catch."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.activations import ACTIVATIONS, Activation, PReLU, get_activation
from manual_bp.ops.base import TIE_RTOL
from torch_ref.registry import registry

TOL = TOLERANCES["elementwise"]  # relative to 1 + |value|

TorchFn = Callable[[torch.Tensor], torch.Tensor]

# name, options, the torch function with the same options (a module where torch has one)
CASES: list[tuple[str, dict[str, Any], TorchFn]] = [
    ("identity", {}, nn.Identity()),
    ("sigmoid", {}, nn.Sigmoid()),
    ("tanh", {}, nn.Tanh()),
    ("relu", {}, nn.ReLU()),
    ("leaky_relu", {}, nn.LeakyReLU()),
    ("leaky_relu", {"negative_slope": 0.2}, nn.LeakyReLU(0.2)),
    ("leaky_relu", {"negative_slope": -0.5}, nn.LeakyReLU(-0.5)),
    ("rrelu", {}, nn.RReLU().eval()),
    ("rrelu", {"lower": 0.1, "upper": 0.3}, nn.RReLU(0.1, 0.3).eval()),
    ("elu", {}, nn.ELU()),
    ("elu", {"alpha": 0.3}, nn.ELU(0.3)),
    ("selu", {}, nn.SELU()),
    ("celu", {}, nn.CELU()),
    ("celu", {"alpha": 0.5}, nn.CELU(0.5)),
    ("celu", {"alpha": -2.0}, lambda t: F.celu(t, -2.0)),
    ("gelu", {}, nn.GELU()),
    ("gelu", {"approximate": "tanh"}, nn.GELU(approximate="tanh")),
    ("silu", {}, nn.SiLU()),
    ("mish", {}, nn.Mish()),
    ("softplus", {}, nn.Softplus()),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, nn.Softplus(2.0, 5.0)),
    ("softplus", {"beta": -1.0}, nn.Softplus(-1.0)),
    ("logsigmoid", {}, nn.LogSigmoid()),
    ("softsign", {}, nn.Softsign()),
    ("tanhshrink", {}, nn.Tanhshrink()),
    ("hardtanh", {}, nn.Hardtanh()),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, nn.Hardtanh(-0.5, 2.0)),
    ("relu6", {}, nn.ReLU6()),
    ("hardsigmoid", {}, nn.Hardsigmoid()),
    ("hardswish", {}, nn.Hardswish()),
    ("softshrink", {}, nn.Softshrink()),
    ("softshrink", {"lambd": 2.0}, nn.Softshrink(2.0)),
    ("softshrink", {"lambd": 0.0}, nn.Softshrink(0.0)),
    ("hardshrink", {}, nn.Hardshrink()),
    ("hardshrink", {"lambd": 1.0}, nn.Hardshrink(1.0)),
    ("hardshrink", {"lambd": -1.0}, nn.Hardshrink(-1.0)),
    ("threshold", {"threshold": 0.5, "value": -2.0}, nn.Threshold(0.5, -2.0)),
    ("threshold", {"threshold": -1.0, "value": -1.0}, nn.Threshold(-1.0, -1.0)),
    ("exp", {}, torch.exp),
    ("expm1", {}, torch.expm1),
    ("log", {}, torch.log),
    ("log1p", {}, torch.log1p),
    ("log2", {}, torch.log2),
    ("log10", {}, torch.log10),
    ("sqrt", {}, torch.sqrt),
    ("rsqrt", {}, torch.rsqrt),
    ("reciprocal", {}, torch.reciprocal),
    ("square", {}, torch.square),
    ("pow", {"exponent": 2.0}, lambda t: t**2),
    ("pow", {"exponent": 3.0}, lambda t: torch.pow(t, 3)),
    ("pow", {"exponent": 0.5}, lambda t: t**0.5),
    ("pow", {"exponent": 1.5}, lambda t: t**1.5),
    ("pow", {"exponent": -1.0}, lambda t: t**-1),
    ("pow", {"exponent": -2.0}, lambda t: t**-2.0),
    ("pow", {"exponent": -0.5}, lambda t: t**-0.5),
    ("pow", {"exponent": 1.0}, lambda t: t**1),
    ("pow", {"exponent": 0.0}, lambda t: t**0),
    ("abs", {}, torch.abs),
    ("sin", {}, torch.sin),
    ("cos", {}, torch.cos),
    ("clamp", {"min": -1.0, "max": 2.0}, lambda t: torch.clamp(t, -1.0, 2.0)),
    ("clamp", {"min": 0.0}, lambda t: torch.clamp(t, min=0.0)),
    ("clamp", {"max": 0.5}, lambda t: torch.clip(t, max=0.5)),
    ("clamp", {"min": 1.0, "max": 1.0}, lambda t: torch.clamp(t, 1.0, 1.0)),
    ("clamp", {"min": 2.0, "max": -1.0}, lambda t: torch.clamp(t, 2.0, -1.0)),
    ("sign", {}, torch.sign),
    ("round", {}, torch.round),
    ("round", {"decimals": 2}, lambda t: torch.round(t, decimals=2)),
    ("round", {"decimals": -1}, lambda t: torch.round(t, decimals=-1)),
    ("floor", {}, torch.floor),
    ("ceil", {}, torch.ceil),
    ("trunc", {}, torch.trunc),
    ("polygamma", {"n": 1}, lambda t: torch.polygamma(1, t)),
    ("polygamma", {"n": 2}, lambda t: torch.polygamma(2, t)),
    ("mvlgamma", {"p": 3}, lambda t: torch.mvlgamma(t, 3)),
    ("logit", {"eps": 0.1}, lambda t: torch.logit(t, 0.1)),
]
#: rows defined on an open interval only: compared with torch inside it (torch raises
#: outside mvlgamma's), checked for continuity inside it (f or f′ is inf or NaN at its ends,
#: which the oracle refuses)
DOMAINS: dict[str, tuple[float, float]] = {
    "mvlgamma": (1.0, math.inf),
    "asin": (-1.0, 1.0),
    "acos": (-1.0, 1.0),
    "atanh": (-1.0, 1.0),
    "erfinv": (-1.0, 1.0),
    "acosh": (1.0, math.inf),
    "lgamma": (0.0, math.inf),
    "digamma": (0.0, math.inf),
    "polygamma": (0.0, math.inf),
    "ndtri": (0.0, 1.0),
    "entr": (0.0, math.inf),
}
# every other activation of the table with its defaults, against the torch function of its
# registry row: adding an elementwise op (its formula, its row) adds its case here
CASES += [
    (row.name, {}, row.functions[0])
    for row in registry()
    if row.family in ("activation", "elementwise")
    and row.name in ACTIVATIONS
    and row.functions
    and row.name not in {n for n, _, _ in CASES}
]
IDS = [f"{n}{o}" if o else n for n, o, _ in CASES]

GRID = np.concatenate(
    [
        np.linspace(-1e3, 1e3, 4001),
        np.linspace(-12.0, 12.0, 4801),
        [0.0, -0.0, 1.0, -1.0, 6.0, 2.0, -0.5, 0.5, 2.5, 10.0, 20.0, -20.0, 3.0, -3.0, 1e-300],
        [-1.5, 1.5, 0.125, 0.375, 5.0, 15.0, 25.0, -5.0, 710.0, 800.0],
    ]
)


def torch_f_and_grad(fn: TorchFn, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    (g,) = torch.autograd.grad(y.sum(), t, allow_unused=True, materialize_grads=True)
    return y.detach().numpy(), g.numpy()


def worst(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    """The worst entry and its error |got − want|/(1 + |want|); inf and NaN must match exactly
    (same infinity, NaN against NaN), as the oracle's finite checks rely on them."""
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(got - want) / (1.0 + np.abs(want)), 0.0)
    err = np.where(finite & ~np.isfinite(got), np.inf, err)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    err = np.where(~finite & ~same, np.inf, err)
    i = int(np.argmax(err))
    return i, float(err[i])


def assert_close(what: str, got: np.ndarray, want: np.ndarray, z: np.ndarray, tol: float) -> None:
    i, err = worst(got, want)
    assert err <= tol, f"{what}: at z={z[i]!r} manual {got[i]!r}, torch {want[i]!r}"


def manual_f_and_grad(act: Activation, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f and f′ as the network's backward takes them (from the output where the row says)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stable at |z| = 1e3, inf/NaN without a warning
        a = act.f(z)
        return a, act.derivative(z, a)


@pytest.mark.parametrize(("name", "options", "fn"), CASES, ids=IDS)
def test_f_and_grad_match_torch(name, options, fn):
    act = get_activation(name, **options)
    grid = GRID
    if name == "mvlgamma":
        lo, hi = DOMAINS[name]
        grid = GRID[(GRID > lo) & (GRID < hi)]
    if name in ("sinh", "cosh"):
        # NOTE: torch's own sinh/cosh of ±710 is inf in its vectorised kernel and finite in
        # its scalar tail (the same value, two answers by position): compared below 709
        grid = GRID[np.abs(GRID) < 709.0]
    want_f, want_g = torch_f_and_grad(fn, grid)
    got_f, got_g = manual_f_and_grad(act, grid)
    assert_close(f"{name} f", got_f, want_f, grid, TOL["f"])
    assert_close(f"{name} f'", got_g, want_g, grid, TOL["grad"])


def test_every_table_row_is_checked_against_torch():
    untested = set(ACTIVATIONS) - {n for n, _, _ in CASES} - {"linear"}
    assert not untested, f"rows with no torch case: {sorted(untested)}"


# --- kinks ----------------------------------------------------------------------------

# The subgradient at each kink, as torch's backward takes it (the module docstring's table).
KINKS = [
    ("relu", {}, 0.0, 0.0),
    ("leaky_relu", {"negative_slope": 0.2}, 0.0, 0.2),
    ("rrelu", {}, 0.0, (1 / 8 + 1 / 3) / 2),
    ("elu", {"alpha": 0.3}, 0.0, 0.3),
    ("selu", {}, 0.0, 1.6732632423543772 * 1.0507009873554805),
    ("celu", {"alpha": 0.5}, 0.0, 1.0),
    ("hardtanh", {}, -1.0, 0.0),
    ("hardtanh", {}, 1.0, 0.0),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, 2.0, 0.0),
    ("relu6", {}, 0.0, 0.0),
    ("relu6", {}, 6.0, 0.0),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, 2.5, 1.0 / (1.0 + math.exp(-5.0))),
    ("hardsigmoid", {}, -3.0, 0.0),
    ("hardsigmoid", {}, 3.0, 0.0),
    ("hardswish", {}, -3.0, 0.0),
    ("hardswish", {}, 3.0, 1.0),
    ("softshrink", {}, 0.5, 0.0),
    ("softshrink", {}, -0.5, 0.0),
    ("hardshrink", {}, 0.5, 0.0),
    ("hardshrink", {}, -0.5, 0.0),
    ("threshold", {"threshold": 0.5, "value": -2.0}, 0.5, 0.0),
    ("abs", {}, 0.0, 0.0),
    ("abs", {}, -0.0, 0.0),
    ("clamp", {"min": -1.0, "max": 2.0}, -1.0, 1.0),
    ("clamp", {"min": -1.0, "max": 2.0}, 2.0, 1.0),
    ("clamp", {"min": 0.0}, 0.0, 1.0),
    ("clamp", {"max": 0.5}, 0.5, 1.0),
    ("clamp", {"min": 1.0, "max": 1.0}, 1.0, 1.0),
    ("clamp", {"min": 2.0, "max": -1.0}, 0.5, 0.0),
    ("pow", {"exponent": 0.0}, 0.0, 0.0),
    ("sign", {}, 0.0, 0.0),
    ("round", {}, 0.5, 0.0),
    ("floor", {}, 1.0, 0.0),
]


def _torch_fn(name: str, options: dict[str, Any]) -> TorchFn:
    return next(fn for n, o, fn in CASES if n == name and o == options)


@pytest.mark.parametrize(
    ("name", "options", "z", "expected"), KINKS, ids=[f"{k[0]}{k[1]}@{k[2]}" for k in KINKS]
)
def test_kink_convention(name, options, z, expected):
    got = float(get_activation(name, **options).grad(np.array([z]))[0])
    _, torch_grad = torch_f_and_grad(_torch_fn(name, options), np.array([z]))
    assert got == pytest.approx(expected, abs=1e-15), f"{name}'({z}) = {got}, expected {expected}"
    assert got == pytest.approx(float(torch_grad[0]), abs=1e-15), f"{name}'({z}) vs torch"


# name, options, the points where f′ (or f) jumps: every kinked row of the table
KINK_POINTS: list[tuple[str, dict[str, Any], tuple[float, ...]]] = [
    ("relu", {}, (0.0,)),
    ("leaky_relu", {"negative_slope": 0.2}, (0.0,)),
    ("rrelu", {}, (0.0,)),
    ("elu", {"alpha": 0.3}, (0.0,)),
    ("selu", {}, (0.0,)),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, (-0.5, 2.0)),
    ("relu6", {}, (0.0, 6.0)),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, (2.5,)),
    ("hardsigmoid", {}, (-3.0, 3.0)),
    ("hardswish", {}, (-3.0, 3.0)),
    ("softshrink", {"lambd": 2.0}, (-2.0, 2.0)),
    ("hardshrink", {"lambd": 1.0}, (-1.0, 1.0)),
    ("threshold", {"threshold": 0.5, "value": -2.0}, (0.5,)),
    ("abs", {}, (0.0,)),
    ("clamp", {"min": -1.0, "max": 2.0}, (-1.0, 2.0)),
    ("clamp", {"max": 0.5}, (0.5,)),
    ("sign", {}, (0.0,)),
    ("round", {}, (-1.5, -0.5, 0.5, 1.5, 2.5)),
    ("round", {"decimals": 2}, (0.125, -0.375)),
    ("floor", {}, (-2.0, -1.0, 0.0, 1.0, 7.0)),
    ("ceil", {}, (-2.0, 0.0, 3.0)),
    ("trunc", {}, (-2.0, -1.0, 1.0, 3.0)),
]
# rows whose f′ and f are continuous at the points where a piecewise formula switches
SMOOTH = [
    ("elu", {}, (0.0,)),  # α = 1: f′(0⁻) = e⁰ = 1 = f′(0⁺)
    ("celu", {"alpha": 0.5}, (0.0,)),
    ("leaky_relu", {"negative_slope": 1.0}, (0.0,)),
    ("logsigmoid", {}, (0.0,)),
    ("softsign", {}, (0.0,)),
    ("pow", {"exponent": 2.0}, (0.0,)),
]


def _jump(act: Activation, p: float) -> float:
    """The largest jump of f or f′ across p: one side against the other at p ± 1e-7·(1+|p|)."""
    h = 1e-7 * (1.0 + abs(p))
    z = np.array([p - h, p + h])
    f, g = act.f(z), act.grad(z)
    g_scale = 1.0 + max(abs(g[0]), abs(g[1]))
    return max(abs(f[1] - f[0]) - 2.5 * h * g_scale, abs(g[1] - g[0]) - 1e-4 * g_scale)


@pytest.mark.parametrize(
    ("name", "options", "points"), KINK_POINTS, ids=[f"{n}{o}" for n, o, _ in KINK_POINTS]
)
def test_kink_mask_holds_every_kink_and_nothing_far(name, options, points):
    act = get_activation(name, **options)
    assert act.kink is not None, f"{name}{options} has kinks at {points} but no kink mask"
    for p in points:
        assert _jump(act, p) > 0, f"{name}{options}: f and f′ are continuous at {p}: no kink"
    scale = 10.0  # the largest |z| in the tensor below
    off = TIE_RTOL * scale
    pts = np.array(points)
    at = np.concatenate([pts, pts + 0.5 * off, pts - 0.5 * off, [scale]])
    far = np.concatenate([pts + 3 * off, pts - 3 * off, pts + 1e-3, pts - 2.3e-3])
    mask = act.kink(np.concatenate([at, far]))
    assert mask[: len(at) - 1].all(), f"{name}: entries within TIE_RTOL of a kink not all masked"
    assert not mask[len(at) :].any(), (
        f"{name}: entries far from every kink masked: {far[mask[len(at) :]]}"
    )


@pytest.mark.parametrize(
    ("name", "options", "points"), SMOOTH, ids=[f"{n}{o}" for n, o, _ in SMOOTH]
)
def test_no_kink_mask_where_f_and_its_derivative_are_continuous(name, options, points):
    act = get_activation(name, **options)
    assert act.kink is None, f"{name}{options}: a kink mask on a C¹ function"
    for p in points:
        assert _jump(act, p) <= 0, f"{name}{options}: jumps at {p}"


def test_trunc_is_continuous_at_zero_and_masks_no_entry_there():
    """trunc(±0.4) = 0: no jump at 0, so entries near 0 are not masked; ±1 are."""
    act = get_activation("trunc")
    assert _jump(act, 0.0) <= 0 < _jump(act, 1.0)
    np.testing.assert_array_equal(act.kink(np.array([0.0, 1e-12, 1.0, -1.0, 4.0])), [0, 0, 1, 1, 1])


def test_rows_without_a_kink_mask_are_c1_on_a_grid():
    """Every row with kink=None has f and f′ continuous at a dense set of candidate points
    (the places piecewise formulas switch), so no kink is forgotten."""
    candidates = [0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 3.0, -3.0, 6.0, 20.0, 2.5]
    for name, options, _ in CASES:
        act = get_activation(name, **options)
        if act.kink is not None or name in {"log", "log2", "log10", "rsqrt", "reciprocal"}:
            continue  # kinked, or singular at 0 (inf/NaN there, refused by the oracle)
        if name in {"sqrt", "pow", "log1p"}:
            candidates_here = [p for p in candidates if p > 0]
        elif name in DOMAINS:
            lo, hi = DOMAINS[name]
            candidates_here = [p for p in candidates if lo < p < hi]
        elif name == "logit":
            candidates_here = [0.5]
        else:
            candidates_here = candidates
        for p in candidates_here:
            assert _jump(act, p) <= 0, f"{name}{options}: f or f′ jumps at {p}, no kink mask"


# --- integer-valued inputs: the manual branch equals torch's without any replay -------


@st.composite
def option_cases(draw: st.DrawFn) -> tuple[str, dict[str, Any], TorchFn]:
    """A row with random options and its torch twin: kinks at integers and halves."""
    half = st.integers(-8, 8).map(lambda k: k / 2)
    name = draw(
        st.sampled_from(
            ["clamp", "hardtanh", "softshrink", "hardshrink", "threshold", "leaky_relu", "elu"]
            + ["celu", "softplus", "pow", "round", "rrelu"]
        )
    )
    if name == "clamp":
        lo, hi = draw(st.none() | half), draw(st.none() | half)
        if lo is None and hi is None:
            lo = 0.0
        return name, {"min": lo, "max": hi}, lambda t: torch.clamp(t, lo, hi)
    if name == "hardtanh":
        lo, hi = sorted(draw(st.lists(half, min_size=2, max_size=2, unique=True)))
        return name, {"min_val": lo, "max_val": hi}, lambda t: F.hardtanh(t, lo, hi)
    if name in ("softshrink", "hardshrink"):
        lam = abs(draw(half)) if name == "softshrink" else draw(half)
        return name, {"lambd": lam}, lambda t: getattr(F, name)(t, lam)
    if name == "threshold":
        th, v = draw(half), draw(half)
        return name, {"threshold": th, "value": v}, lambda t: F.threshold(t, th, v)
    if name == "leaky_relu":
        s = draw(half)
        return name, {"negative_slope": s}, lambda t: F.leaky_relu(t, s)
    if name in ("elu", "celu"):
        a = draw(half.filter(lambda x: x != 0))
        return name, {"alpha": a}, lambda t: getattr(F, name)(t, a)
    if name == "softplus":
        b, th = draw(half.filter(lambda x: x != 0)), draw(half)
        return name, {"beta": b, "threshold": th}, lambda t: F.softplus(t, b, th)
    if name == "pow":
        e = draw(st.integers(-3, 4).map(float) | half)
        return name, {"exponent": e}, lambda t: t**e
    if name == "round":
        d = draw(st.integers(-2, 3))
        return name, {"decimals": d}, lambda t: torch.round(t, decimals=d)
    lo, hi = sorted(draw(st.lists(half.map(abs), min_size=2, max_size=2)))
    return name, {"lower": lo, "upper": hi}, lambda t: F.rrelu(t, lo, hi, training=False)


@given(option_cases(), st.lists(st.integers(-16, 16).map(lambda k: k / 4), min_size=1))
def test_random_options_on_kinks_match_torch(case, zs):
    """Inputs on multiples of ¼ land on every kink of these rows: same branch as torch."""
    name, options, fn = case
    z = np.array(zs)
    want_f, want_g = torch_f_and_grad(fn, z)
    got_f, got_g = manual_f_and_grad(get_activation(name, **options), z)
    assert_close(f"{name}{options} f", got_f, want_f, z, TOL["f"])
    assert_close(f"{name}{options} f'", got_g, want_g, z, TOL["grad"])


# --- planted bugs: the checks above must catch them --------------------------------------


def _mismatch(act: Activation, fn: TorchFn, z: np.ndarray) -> float:
    want_f, want_g = torch_f_and_grad(fn, z)
    got_f, got_g = manual_f_and_grad(act, z)
    return max(worst(got_f, want_f)[1], worst(got_g, want_g)[1])


PLANTED = [
    ("hardswish f′ off by 1%", "hardswish", lambda a: lambda z: 1.01 * a.grad(z)),
    ("mish f′ off by 1%", "mish", lambda a: lambda z: 1.01 * a.grad(z)),
    ("relu′(0) = 1 (wrong kink side)", "relu", lambda a: lambda z: (z >= 0).astype(float)),
    ("clamp′ 0 on its bounds", "clamp", lambda a: lambda z: ((z > 0) & (z < 1)).astype(float)),
    ("hardsigmoid′ 1/6 at ±3", "hardsigmoid", lambda a: lambda z: np.where(abs(z) <= 3, 1 / 6, 0)),
    ("abs′(0) = 1", "abs", lambda a: lambda z: np.where(z >= 0, 1.0, -1.0)),
]


@pytest.mark.parametrize(("what", "name", "bad_grad"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_is_caught(what, name, bad_grad):
    options = {"min": 0.0, "max": 1.0} if name == "clamp" else {}
    fn = (lambda t: torch.clamp(t, 0.0, 1.0)) if name == "clamp" else _torch_fn(name, options)
    good = get_activation(name, **options)
    z = np.concatenate([GRID, [-3.0, 3.0, 0.0, 1.0]])
    assert _mismatch(good, fn, z) <= TOL["grad"], f"{name}: the correct row must pass"
    bad = Activation(good.name, good.f, bad_grad(good), good.options)
    assert _mismatch(bad, fn, z) > TOL["grad"], f"planted bug not caught: {what}"


def test_planted_missing_kink_mask_is_caught():
    """A kinked row whose mask forgets one of its kinks fails the mask test."""
    act = get_activation("hardswish")
    bad = Activation(act.name, act.f, act.grad, kink=lambda z: np.abs(z + 3.0) <= 1e-9)
    with pytest.raises(AssertionError, match="not all masked"):
        _check_mask(bad, (-3.0, 3.0))


def _check_mask(act: Activation, points: tuple[float, ...]) -> None:
    off = TIE_RTOL * 10.0
    at = np.array([p + s * off for p in points for s in (0.0, 0.5, -0.5)])
    mask = act.kink(np.concatenate([at, [10.0]]))
    assert mask[:-1].all(), f"{act.name}: entries within TIE_RTOL of a kink not all masked"


# --- the derivatives' known ranges, derivatives against differences --------------------


@given(st.floats(-1e3, 1e3, allow_nan=False))
def test_sigmoid_derivative_range(z):
    """σ′(x) = σ(x)(1 − σ(x)) ∈ [0, 0.25]."""
    g = float(get_activation("sigmoid").grad(np.array([z]))[0])
    assert 0.0 <= g <= 0.25, f"sigmoid'({z}) = {g} outside [0, 1/4]"


@given(st.floats(-1e3, 1e3, allow_nan=False))
def test_tanh_derivative_range(z):
    """tanh′(x) = 1 − tanh²(x) ∈ [0, 1]."""
    g = float(get_activation("tanh").grad(np.array([z]))[0])
    assert 0.0 <= g <= 1.0, f"tanh'({z}) = {g} outside [0, 1]"


REQUIRED = {
    "polygamma": {"n": 1},
    "mvlgamma": {"p": 2},
    "threshold": {"threshold": 0.5, "value": -1.0},
    "pow": {"exponent": 2.5},
    "clamp": {"min": -1.0, "max": 2.0},
}


@given(st.sampled_from(sorted(ACTIVATIONS)), st.floats(-50, 50, allow_nan=False))
def test_grad_is_the_derivative(name, z):
    """f′ against a central difference of f, away from kinks and outside f's domain."""
    act = get_activation(name, **REQUIRED.get(name, {}))
    h = 1e-6
    zs = np.array([z - h, z, z + h, z - h / 2, z + h / 2])
    if act.kink is not None and act.kink(np.array([z, 1e4 * h / TIE_RTOL]))[0]:
        return  # within 1e-2 of a kink
    with np.errstate(all="ignore"):
        f = act.f(zs)
        g = act.grad(zs[1:2])[0]
    if not np.all(np.isfinite(f)) or not np.isfinite(g) or abs(z) < 1e-3:
        return  # outside f's domain (log, sqrt of z ≤ 0) or near a singularity
    fd = (f[2] - f[0]) / (2 * h)
    if abs(fd - (f[4] - f[3]) / h) > 1e-6 * (1 + abs(fd)):
        return  # too curved for a central difference here (log1p near −1): not a test of f′
    assert abs(g - fd) <= 1e-5 * (1 + abs(fd)), f"{name}'({z}) = {g}, central difference {fd}"


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_from_the_output_is_the_derivative(name):
    """Backward takes f′ from a = f(z) where torch does (tanh′ = 1 − a², exp′ = a)."""
    act = get_activation(name, **REQUIRED.get(name, {}))
    got = act.derivative(GRID, act.f(GRID))
    want = act.grad(GRID)
    bad = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    i = int(np.argmax(bad))
    assert not bad.any(), f"{name}: at z={GRID[i]} from output {got[i]}, f'(z) {want[i]}"


# --- exact GELU: torch's form z·½(1 + erf(z/√2)), accurate in absolute terms -------------


def test_exact_gelu_against_mpmath():
    """|f − z Φ(z)| and |f′ − (Φ + z φ)| within a few ulps of 1 + |z| (torch's form loses the
    relative accuracy of the far left tail, where both are below 1e-16·|z|, as torch does)."""
    act = get_activation("gelu")
    z = np.concatenate([np.linspace(-12, 12, 241), [-40.0, -8.5, -1e-8, 1e-8, 40.0]])
    mpmath.mp.dps = 40
    phi = [mpmath.ncdf(mpmath.mpf(float(v))) for v in z]
    pdf = [mpmath.npdf(mpmath.mpf(float(v))) for v in z]
    want_f = np.array([float(mpmath.mpf(float(v)) * p) for v, p in zip(z, phi, strict=True)])
    want_g = np.array(
        [float(p + mpmath.mpf(float(v)) * d) for v, p, d in zip(z, phi, pdf, strict=True)]
    )
    eps = np.finfo(float).eps
    for what, got, want in (("f", act.f(z), want_f), ("f'", act.grad(z), want_g)):
        err = np.abs(got - want) / (1.0 + np.abs(z))
        i = int(np.argmax(err))
        assert err[i] <= 4 * eps, f"gelu {what}({z[i]}) = {got[i]!r}, mpmath {want[i]!r}"


def test_exact_gelu_is_minus_zero_where_torchs_is():
    """Far left, 1 + erf(z/√2) rounds to 0 in torch's kernel: both give −0.0, so a max pool
    after GELU sees the same ties in both."""
    z = np.array([-9.0, -20.0, -38.0])
    want, _ = torch_f_and_grad(nn.GELU(), z)
    got = get_activation("gelu").f(z)
    assert np.array_equal(got, want) and np.all(np.signbit(got)), f"{got} vs torch {want}"


# --- refusals as data -------------------------------------------------------------------

REFUSALS = [
    ("unknown", "swish", {}, r"unknown activation 'swish'.*known activations: .*relu"),
    ("gelu approximate", "gelu", {"approximate": "erf"}, r"gelu: approximate must be one of"),
    ("hardtanh min > max", "hardtanh", {"min_val": 1.0, "max_val": 0.5}, r"must not exceed max"),
    ("celu alpha 0", "celu", {"alpha": 0.0}, r"celu: alpha must be nonzero"),
    ("softshrink negative", "softshrink", {"lambd": -0.5}, r"softshrink: lambd must be >= 0"),
    ("rrelu lower > upper", "rrelu", {"lower": 0.5, "upper": 0.1}, r"lower must not exceed"),
    ("clamp neither", "clamp", {}, r"clamp: expected min, max or both"),
    ("clamp nan", "clamp", {"min": float("nan")}, r"clamp: min: expected a finite number"),
    ("pow inf", "pow", {"exponent": float("inf")}, r"pow: exponent: expected a finite number"),
    ("pow string", "pow", {"exponent": "2"}, r"pow: exponent: expected a number, got '2'"),
    ("round float decimals", "round", {"decimals": 1.5}, r"round: decimals must be an integer"),
    ("leaky slope bool", "leaky_relu", {"negative_slope": True}, r"expected a number, got True"),
    ("softplus beta 0", "softplus", {"beta": 0}, r"softplus: beta must be nonzero"),
    ("threshold missing", "threshold", {"threshold": 1.0}, r"value"),
]


@pytest.mark.parametrize(
    ("what", "name", "options", "match"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refusals(what, name, options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        get_activation(name, **options)


# --- PReLU: a learned slope per channel --------------------------------------------------

PRELU_CASES = [
    ("nc_per_channel", (4, 3), 3),
    ("nc_shared", (4, 3), 1),
    ("nchw_per_channel", (2, 3, 4, 5), 3),
    ("ncl_per_channel", (2, 5, 7), 5),
    ("nchw_shared", (2, 3, 4, 5), 1),
    ("vector_shared", (6,), 1),
    ("scalar_shared", (), 1),
]


def _prelu_check(shape, c, x: torch.Tensor | None = None, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) if x is None else x
    x = x.clone().requires_grad_(True)
    w = (0.5 * torch.randn(c, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = F.prelu(x, w)
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    layer = PReLU(w.detach().numpy())
    assert layer.shape(tuple(shape)) == tuple(y.shape)
    z, cache = layer.forward(x.detach().numpy())
    np.testing.assert_allclose(z, y.detach().numpy(), rtol=1e-15, atol=0)
    dx, grads = layer.backward(up.numpy(), cache)
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-13, atol=1e-15, err_msg="δ_prev")
    np.testing.assert_allclose(grads["weight"], w.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert grads["weight"].shape == (c,)
    np.testing.assert_array_equal(layer.param_grads(up.numpy(), cache)["weight"], grads["weight"])


@pytest.mark.parametrize(("id", "shape", "c"), PRELU_CASES, ids=[c[0] for c in PRELU_CASES])
def test_prelu_matches_torch(id, shape, c):
    _prelu_check(shape, c)


def test_prelu_at_zero_takes_the_slope_as_torch():
    """Integer-valued inputs with exact zeros: the branch at 0 is torch's (w), no replay."""
    x = torch.tensor([[0.0, -1.0, 2.0], [0.0, 0.0, -3.0]], dtype=torch.float64)
    _prelu_check(x.shape, 3, x=x)
    mask = PReLU(np.ones(3)).ties(x.numpy())[0]
    np.testing.assert_array_equal(mask, x.numpy() == 0)


def test_prelu_module_default():
    m = nn.PReLU(3).double()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    m(x).sum().backward()
    layer = PReLU(m.weight.detach().numpy())
    z, cache = layer.forward(x.detach().numpy())
    dx, grads = layer.backward(np.ones_like(z), cache)
    np.testing.assert_allclose(grads["weight"], m.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-13)


PRELU_REFUSALS = [
    ("channels differ", np.ones(3), (2, 4), r"expected an input of shape \(N, 3, \*\)"),
    ("1-d input per channel", np.ones(3), (3,), r"expected an input of shape \(N, 3, \*\)"),
    ("2-d weight", np.ones((3, 1)), None, r"weight of shape \(C,\), \(1,\) or \(\), got \(3, 1\)"),
    ("empty weight", np.ones(0), None, r"weight of shape \(C,\), \(1,\) or \(\), got \(0,\)"),
]


@pytest.mark.parametrize(
    ("what", "w", "shape", "match"), PRELU_REFUSALS, ids=[r[0] for r in PRELU_REFUSALS]
)
def test_prelu_refusals(what, w, shape, match):
    with pytest.raises(ValueError, match=match):
        PReLU(w).shape(shape)


def test_planted_prelu_bug_is_caught(monkeypatch):
    """A PReLU whose δ at 0 takes slope 1 (wrong side) differs from torch on exact zeros."""
    x = torch.tensor([[0.0, -1.0, 2.0]], dtype=torch.float64)

    def wrong_side(self, d, a):
        return np.where(a >= 0, d, self._slope(a.ndim) * d), self.param_grads(d, a)

    monkeypatch.setattr(PReLU, "backward", wrong_side)
    with pytest.raises(AssertionError, match="δ_prev"):
        _prelu_check(x.shape, 3, x=x)
