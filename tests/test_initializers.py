"""The initialiser table against torch.nn.init: same distributions (two-sample KS), same fans
and gains, orthogonality, torch's nn.Linear default, and the σ_w² the mean-field theory uses.

Tolerances come from the sample size: with n = m samples per side, the two-sample KS
statistic exceeds c(α)·√(2/n), c(α) = √(−ln(α/2)/2), with probability α under the null;
α = 1e-6 gives c = 2.69. Second moments: the relative standard error of mean(W²) is
√(Var(W²))/E[W²]/√n ≤ √(2/n) for these laws (normal: √2, uniform: √0.8); we allow 6 of it.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from experiments.theory.initializers import (
    GAINS,
    INITIALIZERS,
    calculate_gain,
    fan_in_and_fan_out,
    initialize,
    initialize_bias,
    mean_field_params,
)

KS_C = math.sqrt(-math.log(1e-6 / 2) / 2)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a − F_b| over the pooled sample."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    pooled = np.concatenate([a, b])
    fa = np.searchsorted(a, pooled, side="right") / a.size
    fb = np.searchsorted(b, pooled, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def _torch(fn, shape, **kw):
    t = torch.empty(shape, dtype=torch.float64)
    fn(t, **kw)
    return t.numpy()


def _torch_linear_default(shape):
    return nn.Linear(shape[1], shape[0], dtype=torch.float64).weight.detach().numpy()


init = nn.init
# name, options, shape, torch's draw of the same distribution
CASES = [
    ("normal", {"mean": 0.5, "std": 2.0}, (400, 300),
     lambda s: _torch(init.normal_, s, mean=0.5, std=2.0)),
    ("uniform", {"a": -1.0, "b": 3.0}, (400, 300),
     lambda s: _torch(init.uniform_, s, a=-1.0, b=3.0)),
    ("xavier_uniform", {}, (400, 300), lambda s: _torch(init.xavier_uniform_, s)),
    ("xavier_uniform", {"gain": 1.5}, (400, 300),
     lambda s: _torch(init.xavier_uniform_, s, gain=1.5)),
    ("xavier_normal", {}, (300, 400), lambda s: _torch(init.xavier_normal_, s)),
    ("xavier_normal", {}, (64, 16, 5, 5), lambda s: _torch(init.xavier_normal_, s)),
    ("kaiming_uniform", {}, (400, 300), lambda s: _torch(init.kaiming_uniform_, s)),
    ("kaiming_uniform", {"a": math.sqrt(5)}, (64, 16, 5, 5),
     lambda s: _torch(init.kaiming_uniform_, s, a=math.sqrt(5))),
    ("kaiming_normal", {}, (400, 300), lambda s: _torch(init.kaiming_normal_, s)),
    ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"}, (300, 400),
     lambda s: _torch(init.kaiming_normal_, s, mode="fan_out", nonlinearity="relu")),
    ("kaiming_normal", {"a": 0.2}, (400, 300), lambda s: _torch(init.kaiming_normal_, s, a=0.2)),
    ("lecun_normal", {}, (400, 300),
     lambda s: _torch(init.kaiming_normal_, s, nonlinearity="linear")),
    ("orthogonal", {}, (400, 300), lambda s: _torch(init.orthogonal_, s)),
    ("orthogonal", {"gain": 2.0}, (200, 600), lambda s: _torch(init.orthogonal_, s, gain=2.0)),
    ("orthogonal", {}, (32, 8, 3, 3), lambda s: _torch(init.orthogonal_, s)),
    ("torch_default", {}, (400, 300), _torch_linear_default),
    ("small_normal", {}, (400, 300), lambda s: _torch(init.normal_, s, std=0.01)),
    ("large_normal", {}, (400, 300), lambda s: _torch(init.normal_, s, std=1.0)),
    ("sigma2=2.5", {}, (400, 300), lambda s: _torch(init.normal_, s, std=math.sqrt(2.5 / 300))),
]  # fmt: skip
IDS = [f"{n}{o or ''}{s}" for n, o, s, _ in CASES]


@pytest.mark.parametrize("name, options, shape, reference", CASES, ids=IDS)
def test_same_distribution_as_torch(name, options, shape, reference):
    torch.manual_seed(1)
    ours = initialize(name, shape, np.random.default_rng(0), **options)
    theirs = reference(shape)
    assert ours.shape == shape and ours.dtype == np.float64
    d = ks_statistic(ours, theirs)
    limit = KS_C * math.sqrt(2.0 / ours.size)
    assert d <= limit, f"{name}{options}: KS statistic {d:.4g} above {limit:.4g} (n = {ours.size})"


@pytest.mark.parametrize("name, options, shape, reference", CASES, ids=IDS)
def test_sigma_w2_is_the_second_moment_times_fan_in(name, options, shape, reference):
    torch.manual_seed(2)
    sample = reference(shape)
    fan_in, _ = fan_in_and_fan_out(shape)
    sigma_w2, _ = mean_field_params(name, shape, **options)
    empirical = float(np.mean(sample**2)) * fan_in
    tol = 6 * math.sqrt(2.0 / sample.size)
    assert abs(empirical / sigma_w2 - 1) <= tol, (
        f"{name}{options}: σ_w² = {sigma_w2:.6g}, torch's sample says {empirical:.6g} "
        f"(relative tolerance {tol:.2g})"
    )


UNIFORM_BOUNDS = [
    ("xavier_uniform", {}, (400, 300), math.sqrt(6 / 700)),
    ("kaiming_uniform", {}, (400, 300), math.sqrt(6 / 300)),
    ("kaiming_uniform", {"mode": "fan_out"}, (400, 300), math.sqrt(6 / 400)),
    ("torch_default", {}, (400, 300), 1 / math.sqrt(300)),
    ("torch_default", {}, (16, 4, 3, 3), 1 / math.sqrt(36)),
]


@pytest.mark.parametrize("name, options, shape, bound", UNIFORM_BOUNDS)
def test_uniform_bounds(name, options, shape, bound):
    w = initialize(name, shape, np.random.default_rng(3), **options)
    # with n ≥ 500 draws, P(max|w| < 0.99 bound) = 0.99^n < 1e-2 … ≤ 0.99^120000 ≈ 0
    assert np.max(np.abs(w)) <= bound, f"{name}: max |w| {np.max(np.abs(w))} above {bound}"
    assert np.max(np.abs(w)) >= 0.99 * bound, f"{name}: max |w| {np.max(np.abs(w))} ≪ {bound}"


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30), (8, 4, 3, 3), (4, 8, 3, 3)])
def test_orthogonal_is_orthogonal(shape):
    w = initialize("orthogonal", shape, np.random.default_rng(4), gain=1.5)
    flat = w.reshape(shape[0], -1) / 1.5
    rows, cols = flat.shape
    gram = flat.T @ flat if rows >= cols else flat @ flat.T
    err = np.max(np.abs(gram - np.eye(min(rows, cols))))
    assert err < 1e-12, f"orthogonal {shape}: max |WᵀW − I| = {err:.3g}"


GAIN_CASES = [(name, None) for name in GAINS] + [
    ("leaky_relu", 0.2),
    ("leaky_relu", 0),
    ("leaky_relu", math.sqrt(5)),
]


@pytest.mark.parametrize("nonlinearity, param", GAIN_CASES)
def test_gains_match_torch(nonlinearity, param):
    ours = calculate_gain(nonlinearity, param)
    theirs = nn.init.calculate_gain(nonlinearity, param)
    assert ours == pytest.approx(theirs, rel=1e-15), f"gain({nonlinearity}, {param})"


@given(
    st.lists(st.integers(1, 7), min_size=2, max_size=5).map(tuple),
)
def test_fans_match_torch(shape):
    theirs = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert fan_in_and_fan_out(shape) == theirs, f"fans of {shape}"


def test_bias_zero_except_torch_default():
    rng = np.random.default_rng(5)
    for name in INITIALIZERS:
        b = initialize_bias(name, (2000, 50), rng)
        if name == "torch_default":
            bound = 1 / math.sqrt(50)
            assert np.max(np.abs(b)) <= bound and np.max(np.abs(b)) > 0.99 * bound, name
            assert abs(np.mean(b**2) / (bound**2 / 3) - 1) < 6 * math.sqrt(0.8 / 2000), name
        else:
            assert not np.any(b), f"{name}: bias should be zeros"
    assert mean_field_params("torch_default", (256, 256)) == pytest.approx((1 / 3, 1 / 768))


def test_same_rng_same_draw_and_dtype():
    a = initialize("orthogonal", (20, 10), np.random.default_rng(7))
    b = initialize("orthogonal", (20, 10), np.random.default_rng(7))
    assert np.array_equal(a, b) and a.dtype == np.float64


ERRORS = [
    (("nope", (3, 3)), {}, "known inits"),
    (("sigma2=abc", (3, 3)), {}, "positive number"),
    (("sigma2=-1", (3, 3)), {}, "positive number"),
    (("xavier_normal", (3,)), {}, "at least 2 dimensions"),
    (("kaiming_normal", (3, 3)), {"mode": "fan_middle"}, "mode must be one of"),
    (("kaiming_normal", (3, 3)), {"nonlinearity": "swish"}, "unknown nonlinearity"),
]


@pytest.mark.parametrize("args, options, message", ERRORS)
def test_errors_name_what_was_expected(args, options, message):
    with pytest.raises(ValueError, match=message):
        initialize(*args, np.random.default_rng(0), **options)


def test_leaky_relu_gain_refuses_bool():
    with pytest.raises(ValueError, match="not a valid number"):
        calculate_gain("leaky_relu", True)
