"""Division by a tensor, maximum/minimum, powers of tensors, where and masked_fill against
torch.autograd in float64: a table of named cases (broadcasting, rounding modes, exact ties
with integer-valued inputs, bases and exponents at 0), the tie masks, the adjoint identity of
the linear ones, refusals as data, a property over random broadcast shapes, and planted bugs
that must fail."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _layer_check import adjoint, check_layer
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.arithmetic import (
    DivTensor,
    MaskedFill,
    Maximum,
    Minimum,
    Pow,
    RDiv,
    RPow,
    Where,
)
from manual_bp.ops.base import TIE_RTOL, Layer
from torch_ref import compare_gradients

Gen = torch.Generator


def _np(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """The shared layer check (tests/_layer_check.py) takes NumPy inputs."""
    return [t.numpy().copy() for t in tensors]


def randn(*shape: int) -> Callable[[Gen], torch.Tensor]:
    return lambda g: torch.randn(shape, generator=g, dtype=torch.float64)


def away_from_0(*shape: int) -> Callable[[Gen], torch.Tensor]:
    """Entries in ±[0.5, 2.5): a divisor or base far from 0."""

    def draw(g: Gen) -> torch.Tensor:
        x = torch.rand(shape, generator=g, dtype=torch.float64) * 2 + 0.5
        return x * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()

    return draw


def positive(*shape: int) -> Callable[[Gen], torch.Tensor]:
    return lambda g: torch.rand(shape, generator=g, dtype=torch.float64) * 2 + 0.25


def integers(lo: int, hi: int, *shape: int) -> Callable[[Gen], torch.Tensor]:
    """Integer-valued floats: exact ties and exact zeros."""
    return lambda g: torch.randint(lo, hi + 1, shape, generator=g).double()


def const(values: Any, dtype: torch.dtype = torch.float64) -> Callable[[Gen], torch.Tensor]:
    return lambda g: torch.tensor(values, dtype=dtype)


def mask(*shape: int) -> Callable[[Gen], torch.Tensor]:
    return lambda g: torch.rand(shape, generator=g) < 0.5


@dataclass(frozen=True)
class Case:
    id: str
    layer: Callable[[], Layer]
    fn: Callable[..., torch.Tensor]
    inputs: tuple[Callable[[Gen], torch.Tensor], ...]
    seed: int = 0


CASES = [
    # a / b
    Case("div_same_shape", DivTensor, operator.truediv, (randn(3, 4), away_from_0(3, 4))),
    Case("div_both_broadcast", DivTensor, operator.truediv, (randn(2, 1, 4), away_from_0(3, 1))),
    Case("div_by_channel", DivTensor, torch.div, (randn(2, 3, 4, 4), away_from_0(3, 1, 1))),
    Case("div_by_0d", DivTensor, torch.true_divide, (randn(3, 2), away_from_0())),
    Case("div_0d_by_vector", DivTensor, operator.truediv, (randn(), away_from_0(5))),
    Case(
        "div_integer_valued",
        DivTensor,
        operator.truediv,
        (integers(-4, 4, 6), const([1.0, -2.0, 4.0, 3.0, -1.0, 8.0])),
    ),
    Case(
        "div_trunc",
        lambda: DivTensor("trunc"),
        lambda a, b: torch.div(a, b, rounding_mode="trunc"),
        (randn(3, 4), away_from_0(4)),
    ),
    Case(
        "div_floor",
        lambda: DivTensor("floor"),
        lambda a, b: torch.div(a, b, rounding_mode="floor"),
        (integers(-9, 9, 3, 4), const([2.0, -3.0, 0.5, -0.25])),
    ),
    # c / b
    Case("rdiv_2", lambda: RDiv(2.0), lambda b: 2.0 / b, (away_from_0(3, 4),)),
    Case("rdiv_negative", lambda: RDiv(-3.5), lambda b: -3.5 / b, (away_from_0(5),)),
    Case("rdiv_0d", lambda: RDiv(1.0), lambda b: 1 / b, (away_from_0(),)),
    # maximum, minimum
    Case("maximum_same_shape", Maximum, torch.maximum, (randn(3, 4), randn(3, 4))),
    Case("maximum_broadcast", Maximum, torch.max, (randn(2, 1, 4), randn(3, 1))),
    Case("minimum_broadcast", Minimum, torch.minimum, (randn(4, 1), randn(5))),
    Case("minimum_via_min", Minimum, torch.min, (randn(3, 4), randn(4))),
    Case(
        "maximum_exact_ties", Maximum, torch.maximum, (integers(-2, 2, 4, 5), integers(-2, 2, 4, 5))
    ),
    Case("minimum_exact_ties", Minimum, torch.minimum, (integers(-2, 2, 4, 5), integers(-2, 2, 5))),
    Case(
        "maximum_ties_broadcast",
        Maximum,
        torch.maximum,
        (integers(0, 1, 3, 1, 4), integers(0, 1, 2, 1)),
    ),
    # a ** b
    Case("pow_positive_base", Pow, operator.pow, (positive(3, 4), randn(3, 4))),
    Case("pow_broadcast", Pow, torch.pow, (positive(2, 1, 3), randn(4, 1))),
    Case(
        "pow_negative_base_integer_exponent",
        Pow,
        torch.pow,
        (away_from_0(6), const([2.0, 3.0, -1.0, 0.0, 4.0, -2.0])),
    ),
    Case(
        "pow_zero_base", Pow, torch.pow, (const([0.0, 0.0, 0.0, 2.0]), const([0.0, 1.0, 2.5, 0.0]))
    ),
    Case("pow_integer_valued", Pow, torch.pow, (integers(0, 3, 4, 3), integers(0, 3, 3))),
    # c ** b
    Case("rpow_2", lambda: RPow(2.0), lambda b: 2.0**b, (randn(3, 4),)),
    Case("rpow_e", lambda: RPow(np.e), lambda b: torch.pow(np.e, b), (randn(5),)),
    Case("rpow_half", lambda: RPow(0.5), lambda b: 0.5**b, (randn(2, 3),)),
    Case("rpow_zero_base", lambda: RPow(0.0), lambda b: 0.0**b, (const([0.0, 1.0, 2.0, 0.5]),)),
    Case(
        "rpow_negative_base",
        lambda: RPow(-2.0),
        lambda b: (-2.0) ** b,
        (const([0.0, 1.0, 2.0, -3.0]),),
    ),
    # where, masked_fill with a constant condition
    Case("where_tensors", Where, torch.where, (mask(3, 4), randn(3, 4), randn(3, 4))),
    Case("where_broadcast", Where, torch.where, (mask(4), randn(3, 1), randn(2, 3, 4))),
    Case(
        "where_x_number",
        lambda: Where(x=0.0),
        lambda c, y: torch.where(c, 0.0, y),
        (mask(3, 4), randn(4)),
    ),
    Case(
        "where_y_number",
        lambda: Where(y=-1e9),
        lambda c, x: torch.where(c, x, -1e9),
        (mask(2, 3), randn(2, 3)),
    ),
    Case(
        "where_both_numbers",
        lambda: Where(1.0, 2.0),
        lambda c: torch.where(c, 1.0, 2.0),
        (mask(3),),
    ),
    Case(
        "masked_fill",
        lambda: MaskedFill(-1e4),
        lambda x, m: x.masked_fill(m, -1e4),
        (randn(2, 3, 4), mask(2, 3, 4)),
    ),
    Case(
        "masked_fill_mask_broadcast",
        lambda: MaskedFill(0.0),
        lambda x, m: x.masked_fill(m, 0.0),
        (randn(2, 3, 4), mask(1, 4)),
    ),
    Case(
        "masked_fill_x_broadcast",
        lambda: MaskedFill(2.5),
        lambda x, m: torch.masked_fill(x, m, 2.5),
        (randn(4), mask(3, 4)),
    ),
    Case(
        "masked_fill_causal",
        lambda: MaskedFill(-1e9),
        lambda x, m: x.masked_fill(m, -1e9),
        (randn(2, 4, 4), const(np.triu(np.ones((4, 4)), 1).astype(bool), torch.bool)),
    ),
]


def _inputs(case: Case) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    return [draw(g) for draw in case.inputs]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_torch(case: Case) -> None:
    check_layer(case.id, case.layer(), _np(_inputs(case)), case.fn, seed=case.seed)


# --- ties: the masks name exactly the entries rounding can decide ------------------------


def test_maximum_ties_mask_exact_and_near_ties_only():
    a = np.array([1.0, 2.0, 3.0, 5.0, -4.0])
    b = np.array([1.0, 2.0 + 2e-9, 3.0 + 1e-7, 4.0, -4.0 - 1e-12])
    ma, mb = Maximum().ties(a, b)
    np.testing.assert_array_equal(ma, [True, True, False, False, True])
    np.testing.assert_array_equal(mb, ma)


def test_maximum_ties_reduce_to_each_inputs_shape():
    a = np.array([[1.0, 2.0, 3.0]])  # (1, 3), broadcast over 2 rows
    b = np.array([[1.0], [7.0]])  # (2, 1), broadcast over 3 columns
    ma, mb = Minimum().ties(a, b)
    assert ma.shape == (1, 3) and mb.shape == (2, 1)
    np.testing.assert_array_equal(ma, [[True, False, False]])
    np.testing.assert_array_equal(mb, [[True], [False]])


def test_pow_ties_are_the_zeros_of_base_and_exponent():
    a, b = np.array([0.0, 1e-12, 2.0, 3.0]), np.array([1.0, 2.0, 1e-13, 0.5])
    ma, mb = Pow().ties(a, b)
    np.testing.assert_array_equal(ma, [True, True, False, False])
    np.testing.assert_array_equal(mb, [False, False, True, False])
    assert RPow(2.0).ties(b) is None
    np.testing.assert_array_equal(RPow(0.0).ties(b)[0], mb)


def test_rounding_division_ties_where_the_quotient_is_an_integer():
    a, b = np.array([4.0, 4.0 + 1e-12, 4.5, 0.0, 1e-12]), np.array([2.0, 2.0, 2.0, 3.0, 3.0])
    (m_floor, _), (m_trunc, _) = DivTensor("floor").ties(a, b), DivTensor("trunc").ties(a, b)
    np.testing.assert_array_equal(m_floor, [True, True, False, True, True])
    np.testing.assert_array_equal(m_trunc, [True, True, False, False, False])  # trunc: 0 smooth
    assert DivTensor().ties(a, b) is None


def test_exact_ties_split_delta_in_halves_as_torch():
    """At a == b torch sends δ/2 to each side: the manual branch agrees with no replay."""
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64)
    (da, db), _ = Maximum().backward(np.ones(3), (a.numpy(), b.numpy()))
    np.testing.assert_array_equal(da, [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(db, [0.5, 1.0, 0.5])
    check_layer("max-ties", Maximum(), _np([a, b]), torch.maximum)


# --- the adjoint identity of the linear ops ---------------------------------------------

LINEAR = [
    (
        "where_tensors",
        Where(),
        [np.array([[True, False, True]]), np.zeros((2, 3)), np.zeros((1, 3))],
    ),
    ("where_x_zero", Where(x=0.0), [np.array([True, False, True]), np.zeros((2, 3))]),
    ("masked_fill_zero", MaskedFill(0.0), [np.zeros((2, 3)), np.array([False, True, True])]),
]


@pytest.mark.parametrize(("id", "layer", "inputs"), LINEAR, ids=[c[0] for c in LINEAR])
def test_adjoint_identity(id, layer, inputs):
    adjoint(id, layer, inputs)


# --- refusals as data -------------------------------------------------------------------

REFUSALS = [
    (
        "div_rounding_mode",
        lambda: DivTensor("round"),
        None,
        r"rounding_mode must be None, 'trunc' or 'floor'",
    ),
    (
        "div_shapes",
        DivTensor,
        ((2, 3), (4,)),
        r"expected shapes that broadcast together, got \(2, 3\), \(4,\)",
    ),
    ("maximum_shapes", Maximum, ((3,), (2,)), r"broadcast together"),
    ("pow_shapes", Pow, ((3, 2), (3,)), r"broadcast together"),
    ("rdiv_nan", lambda: RDiv(float("nan")), None, r"expected a finite constant, got nan"),
    ("rpow_inf", lambda: RPow(float("inf")), None, r"expected a finite constant, got inf"),
    ("where_nan", lambda: Where(y=float("nan")), None, r"where: expected a number other than NaN"),
    ("where_inputs", Where, ((3,), (3,)), r"where: expected 3 inputs, got 2"),
    ("masked_fill_shapes", lambda: MaskedFill(0.0), ((2, 3), (2,)), r"broadcast together"),
]


@pytest.mark.parametrize(("id", "make", "shapes", "match"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(id, make, shapes, match):
    with pytest.raises(ValueError, match=match):
        layer = make()
        layer.shape(*shapes)


@pytest.mark.parametrize(
    ("layer", "inputs", "match"),
    [
        (
            Where(),
            [np.ones(3), np.ones(3), np.ones(3)],
            r"where: expected a boolean condition, got dtype float64",
        ),
        (
            MaskedFill(0.0),
            [np.ones(3), np.array([0, 1, 0])],
            r"masked_fill: expected a boolean condition, got dtype int64",
        ),
    ],
    ids=["where_float_condition", "masked_fill_int_mask"],
)
def test_non_boolean_conditions_are_refused(layer, inputs, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(*inputs)


# --- a property over random broadcast shapes --------------------------------------------


@st.composite
def broadcast_pair(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=4)))
    suffix = shape[draw(st.integers(0, len(shape))) :]
    other = tuple(1 if draw(st.booleans()) else n for n in suffix)
    return (shape, other) if draw(st.booleans()) else (other, shape)


OPS = {
    "div": (DivTensor, operator.truediv, away_from_0),
    "maximum": (Maximum, torch.maximum, None),
    "minimum": (Minimum, torch.minimum, None),
    "pow": (Pow, torch.pow, positive),
}


@given(st.sampled_from(sorted(OPS)), broadcast_pair(), st.integers(0, 2**16), st.booleans())
def test_binary_ops_over_random_shapes(name, shapes, seed, integer_valued):
    """Random broadcast shapes; integer-valued operands put maximum/minimum on exact ties."""
    make, fn, second = OPS[name]
    g = torch.Generator().manual_seed(seed)
    if name == "pow":
        a, b = positive(*shapes[0])(g), randn(*shapes[1])(g)
    elif integer_valued and name != "div":
        a, b = integers(-2, 2, *shapes[0])(g), integers(-2, 2, *shapes[1])(g)
    else:
        a, b = randn(*shapes[0])(g), (second or randn)(*shapes[1])(g)
    check_layer(f"{name}{shapes}", make(), _np([a, b]), fn)


# --- planted bugs: the checks above must catch them --------------------------------------


def _wrong_tie_rule(self, delta, cache):
    """maximum giving the whole δ to a at a tie (fmax's rule, not maximum's)."""
    a, b = cache
    return (np.where(a >= b, delta, 0.0), np.where(b > a, delta, 0.0)), {}


def _no_zero_base_rule(self, delta, cache):
    a, b, z = cache
    with np.errstate(all="ignore"):
        return (np.where(b == 0, 0.0, delta * b * a ** (b - 1)), delta * z * np.log(a)), {}


def _div_sign_flipped(self, delta, cache):
    a, b = cache
    return (delta / b, delta * a / b / b), {}


PLANTED = [
    ("maximum_full_delta_at_tie", Maximum, _wrong_tie_rule, "maximum_exact_ties"),
    ("pow_log_of_zero_base", Pow, _no_zero_base_rule, "pow_zero_base"),
    ("div_sign_of_db", DivTensor, _div_sign_flipped, "div_same_shape"),
]


@pytest.mark.parametrize(("id", "cls", "bad", "case_id"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_fails(id, cls, bad, case_id, monkeypatch):
    case = next(c for c in CASES if c.id == case_id)
    monkeypatch.setattr(cls, "backward", bad)
    with pytest.raises(AssertionError, match="δ_prev of input"):
        check_layer(case.id, case.layer(), _np(_inputs(case)), case.fn)


def test_tie_tolerance_is_the_documented_one():
    """The masks above are built on TIE_RTOL = 1e-9 of the magnitudes involved."""
    assert TIE_RTOL == 1e-9


# --- through the oracle: small models as people write them ----------------------------------


class SqueezeExcite(torch.nn.Module):
    """MobileNetV3's block: Hardswish, then a squeeze-excitation gate with Hardsigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.act = torch.nn.Hardswish()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc1 = torch.nn.Conv2d(4, 2, 1)
        self.fc2 = torch.nn.Conv2d(2, 4, 1)
        self.gate = torch.nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        s = self.gate(self.fc2(torch.relu(self.fc1(self.pool(h)))))
        return (h * s).flatten(1)


class Head(torch.nn.Module):
    """max over a dim (values and indices unpacked), where on a comparison, powers, norms."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(5, 6)
        self.prelu = torch.nn.PReLU(6)
        self.scale = torch.nn.Parameter(torch.tensor([1.5, 0.5, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.prelu(self.fc(x)).view(-1, 2, 3)
        v, _ = torch.max(h, dim=1)
        g = torch.where(v > 0, v, 0.1 * v) / self.scale
        lse = torch.logsumexp(g, -1, keepdim=True)
        return g.clamp(-1.0, 1.0) ** 2 + lse * torch.linalg.vector_norm(h, dim=(1, 2)).unsqueeze(1)


class Masked(torch.nn.Module):
    """Scores masked with a causal buffer, softmin, std and amax."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.register_buffer("causal", torch.triu(torch.ones(4, 4, dtype=torch.bool), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc(x).masked_fill(self.causal, 1e4)
        p = F.softmin(s, dim=-1)
        return p * x.std(-1, keepdim=True) + torch.amax(torch.exp(-x.abs()), -1, keepdim=True)


MODELS = [
    ("squeeze_excite", SqueezeExcite, (2, 3, 5, 5)),
    ("head", Head, (3, 5)),
    ("masked", Masked, (4, 4)),
]


@pytest.mark.parametrize(("id", "build", "shape"), MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("integer_valued", [False, True], ids=["normal", "integer-valued"])
def test_models_through_the_oracle(id, build, shape, integer_valued):
    """compare_gradients at rtol 1e-9 (∂L/∂θ, δ, ∂L/∂x); integer-valued weights and inputs
    put values exactly on the kinks (Hardswish ±3, PReLU 0, clamp ±1) and ties (max)."""
    torch.manual_seed(0)
    model = build().double().eval()
    x = torch.randn(shape, dtype=torch.float64)
    if integer_valued:
        x = x.mul(2).round()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.mul(4).round() / 2)
    out = model(x)
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    report = compare_gradients(
        model, torch.nn.MSELoss(), x, target, rtol=1e-9, atol=1e-12, input_grads=True
    )
    assert report.ok, str(report)
