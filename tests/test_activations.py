"""The activation table: each f and f′ against torch, the kink conventions, the derivative
ranges of seed 000, stability at |z| = 1e3, and the erf underneath the exact GELU."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.activations import ACTIVATIONS, get_activation
from manual_bp.ops.special import erf, erfc

TOL = {"f": 1e-14, "grad": 1e-13}  # relative to 1 + |value|

# name, options, the torch module with the same options
CASES = [
    ("identity", {}, nn.Identity()),
    ("sigmoid", {}, nn.Sigmoid()),
    ("tanh", {}, nn.Tanh()),
    ("relu", {}, nn.ReLU()),
    ("leaky_relu", {}, nn.LeakyReLU()),
    ("leaky_relu", {"negative_slope": 0.2}, nn.LeakyReLU(0.2)),
    ("elu", {}, nn.ELU()),
    ("elu", {"alpha": 0.3}, nn.ELU(0.3)),
    ("gelu", {}, nn.GELU()),
    ("gelu", {"approximate": "tanh"}, nn.GELU(approximate="tanh")),
    ("silu", {}, nn.SiLU()),
    ("softplus", {}, nn.Softplus()),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, nn.Softplus(2.0, 5.0)),
    ("hardtanh", {}, nn.Hardtanh()),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, nn.Hardtanh(-0.5, 2.0)),
    ("relu6", {}, nn.ReLU6()),
]
IDS = [f"{n}{o}" if o else n for n, o, _ in CASES]

GRID = np.concatenate(
    [
        np.linspace(-1e3, 1e3, 4001),
        np.linspace(-12.0, 12.0, 4801),
        [0.0, -0.0, 1.0, -1.0, 6.0, 2.0, -0.5, 2.5, 10.0, 20.0, -20.0],
    ]
)


def torch_f_and_grad(module: nn.Module, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = module(t)
    (g,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), g.numpy()


def assert_close(what: str, got: np.ndarray, want: np.ndarray, z: np.ndarray, tol: float) -> None:
    err = np.abs(got - want) / (1.0 + np.abs(want))
    i = int(np.argmax(err))
    assert err[i] <= tol, f"{what}: at z={z[i]!r} manual {got[i]!r}, torch {want[i]!r}"


@pytest.mark.parametrize(("name", "options", "module"), CASES, ids=IDS)
def test_f_and_grad_match_torch(name, options, module):
    act = get_activation(name, **options)
    want_f, want_g = torch_f_and_grad(module, GRID)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stable at |z| = 1e3: no overflow warning
        got_f, got_g = act.f(GRID), act.grad(GRID)
    assert_close(f"{name} f", got_f, want_f, GRID, TOL["f"])
    assert_close(f"{name} f'", got_g, want_g, GRID, TOL["grad"])


# The subgradient at each kink, as torch's backward takes it (the docstring's table).
KINKS = [
    ("relu", {}, 0.0, 0.0),
    ("leaky_relu", {"negative_slope": 0.2}, 0.0, 0.2),
    ("elu", {"alpha": 0.3}, 0.0, 0.3),
    ("hardtanh", {}, -1.0, 0.0),
    ("hardtanh", {}, 1.0, 0.0),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, 2.0, 0.0),
    ("relu6", {}, 0.0, 0.0),
    ("relu6", {}, 6.0, 0.0),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, 2.5, 1.0 / (1.0 + math.exp(-5.0))),
]


@pytest.mark.parametrize(
    ("name", "options", "z", "expected"), KINKS, ids=[f"{k[0]}@{k[2]}" for k in KINKS]
)
def test_kink_convention(name, options, z, expected):
    got = float(get_activation(name, **options).grad(np.array([z]))[0])
    module = {n: m for n, o, m in CASES if o == options and n == name}[name]
    _, torch_grad = torch_f_and_grad(module, np.array([z]))
    assert got == pytest.approx(expected, abs=1e-15), f"{name}'({z}) = {got}, expected {expected}"
    assert got == pytest.approx(float(torch_grad[0]), abs=1e-15), f"{name}'({z}) vs torch"


@given(st.floats(-1e3, 1e3, allow_nan=False))
def test_sigmoid_derivative_range(z):
    """Seed 000: σ′(x) = σ(x)(1 − σ(x)) ∈ [0, 0.25]."""
    g = float(get_activation("sigmoid").grad(np.array([z]))[0])
    assert 0.0 <= g <= 0.25, f"sigmoid'({z}) = {g} outside [0, 1/4]"


@given(st.floats(-1e3, 1e3, allow_nan=False))
def test_tanh_derivative_range(z):
    """Seed 000: tanh′(x) = 1 − tanh²(x) ∈ [0, 1]."""
    g = float(get_activation("tanh").grad(np.array([z]))[0])
    assert 0.0 <= g <= 1.0, f"tanh'({z}) = {g} outside [0, 1]"


@given(st.sampled_from(sorted(ACTIVATIONS)), st.floats(-50, 50, allow_nan=False))
def test_grad_is_the_derivative(name, z):
    """f′ against a central difference of f (away from kinks, where f is smooth)."""
    act = get_activation(name)
    kinks = {"relu": [0], "leaky_relu": [0], "hardtanh": [-1, 1], "relu6": [0, 6], "elu": [0]}
    h = 1e-6
    if any(abs(z - k) < 10 * h for k in kinks.get(name, [])):
        return
    fd = (act.f(np.array([z + h])) - act.f(np.array([z - h])))[0] / (2 * h)
    g = act.grad(np.array([z]))[0]
    assert abs(g - fd) <= 1e-6 * (1 + abs(fd)), f"{name}'({z}) = {g}, central difference {fd}"


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*known activations: .*relu"):
        get_activation("swish")


def test_erf_matches_the_standard_library():
    x = np.linspace(-8, 8, 20001)
    want = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - want)) <= 2e-15
    tail = np.linspace(2.5, 26, 2001)
    want_c = np.array([math.erfc(v) for v in tail])
    rel = np.abs(erfc(tail) - want_c) / want_c
    # e^{-x²} alone carries a relative error of about x²·ε (the rounding of x² is amplified
    # by the exponent), so the bound grows with x²: 1e-14 up to x ≈ 3, 4·x²·ε beyond.
    bound = np.maximum(1e-14, 4 * tail**2 * np.finfo(float).eps)
    worst = int(np.argmax(rel / bound))
    assert rel[worst] <= bound[worst], f"erfc({tail[worst]}) relative error {rel[worst]:.2e}"


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_from_the_output_is_the_derivative(name):
    """Backward takes f′ from a = f(z) where it can (tanh′ = 1 − a², σ′ = a(1 − a))."""
    act = get_activation(name)
    got = act.derivative(GRID, act.f(GRID))
    want = act.grad(GRID)
    i = int(np.argmax(np.abs(got - want)))
    assert np.array_equal(got, want), (
        f"{name}: at z={GRID[i]} from output {got[i]}, f'(z) {want[i]}"
    )
