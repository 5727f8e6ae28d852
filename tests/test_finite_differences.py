"""manual_bp's gradients against directional finite differences: no torch anywhere here.

For a random unit direction v over ALL parameters jointly (and, separately, over the input)

    ⟨∇L, v⟩   vs   D_ε = (L(θ + εv) − L(θ − εv)) / 2ε,        ε = 1e-6, float64.

Error of D_ε for a C³ loss (no kink within ε of θ):
- truncation: |D_ε − ⟨∇L, v⟩| ≤ ε²/6 · max|D³L[v, v, v]| ≈ 1e-12 · 𝒪(1) for these nets;
- round-off: each L carries a relative error of k·u (u = 1.1e-16, k ≲ 100 operations on a
  path), so the difference quotient carries ≈ 2·k·u·|L| / 2ε ≈ 1e-8 · |L|.
Tolerance: |D_ε − ⟨∇L, v⟩| ≤ RTOL·|⟨∇L, v⟩| + ATOL·max(1, |L|) with RTOL of 1e-6 and
ATOL of 1e-7 (tests/_tolerances.py, "finite_differences"): ten times the round-off
estimate, and far below any real error, which moves ⟨∇L, v⟩ by a fraction of itself (a
wrong f′, a missing term, a transposed W).

Kinks (relu, leaky_relu, elu, hardtanh, relu6, the softplus threshold; L1, Huber and
smooth-L1 in the residual) are kept away from: every row asserts as a precondition that
no pre-activation or residual lies within MARGIN of a kink, far more than ε moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from _tolerances import TOLERANCES
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from manual_bp import losses as L
from manual_bp.network import Network
from manual_bp.ops import Linear, LogSoftmax
from manual_bp.ops.activations import get_activation

EPS = 1e-6
RTOL, ATOL = TOLERANCES["finite_differences"]["rtol"], TOLERANCES["finite_differences"]["atol"]
MARGIN = 1e-3  # distance of every z (and residual) from a kink; ε·|∂z/∂θ·v| ≲ 1e-5

#: activation → the points where f′ jumps, as a function of its options
KINKS: dict[str, Callable[..., tuple[float, ...]]] = {
    "relu": lambda: (0.0,),
    "leaky_relu": lambda negative_slope=0.01: (0.0,),
    "elu": lambda alpha=1.0: (0.0,),
    "hardtanh": lambda min_val=-1.0, max_val=1.0: (min_val, max_val),
    "relu6": lambda: (0.0, 6.0),
    "softplus": lambda beta=1.0, threshold=20.0: (threshold / beta,),
}

#: loss → where its ∂ℓ/∂y jumps, in the residual y − t
LOSS_KINKS: dict[type, Callable[[L.Loss], tuple[float, ...]]] = {
    L.L1Loss: lambda loss: (0.0,),
    L.HuberLoss: lambda loss: (-loss.delta, loss.delta),
    L.SmoothL1Loss: lambda loss: (-loss.beta, loss.beta),
}


# --- the table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """An MLP of `widths` with `activation` between Linear layers, and a loss on top."""

    name: str
    activation: str
    loss: Callable[[int], L.Loss]  # classes → loss
    target: str  # "regression" | "unit" | "labels" | "probabilities"
    widths: tuple[int, ...] = (4, 6, 5, 3)
    act_options: dict[str, Any] = field(default_factory=dict)
    output: str | None = None  # "sigmoid" | "log_softmax" | None
    l2: float = 0.0
    seed: int = 0
    batch: int = 5
    scale: float = 1.0  # weights N(0, scale² / fan_in)


def _ce(**options: Any) -> Callable[[int], L.Loss]:
    return lambda classes: L.CrossEntropyLoss(**options)


def _class_weight(classes: int) -> np.ndarray:
    return np.linspace(0.5, 2.0, classes)


CASES = [
    # each activation, with a loss that is smooth everywhere
    Case("identity_mse", "identity", lambda c: L.MSELoss(), "regression"),
    Case("sigmoid_ce", "sigmoid", _ce(), "labels", l2=0.1),
    Case("tanh_ce_label_smoothing", "tanh", _ce(label_smoothing=0.2), "labels", l2=0.05),
    Case("relu_mse", "relu", lambda c: L.MSELoss(reduction="sum"), "regression", seed=1),
    Case(
        "leaky_relu_ce_weighted",
        "leaky_relu",
        lambda c: L.CrossEntropyLoss(weight=_class_weight(c), label_smoothing=0.1),
        "labels",
        act_options={"negative_slope": 0.2},
        l2=0.1,
    ),
    Case(
        "elu_bce_with_logits",
        "elu",
        lambda c: L.BCEWithLogitsLoss(),
        "unit",
        act_options={"alpha": 0.7},
    ),
    Case("gelu_ce_probabilities", "gelu", _ce(label_smoothing=0.1), "probabilities", l2=0.2),
    Case(
        "gelu_tanh_huber",
        "gelu",
        lambda c: L.HuberLoss(delta=0.5),
        "regression",
        act_options={"approximate": "tanh"},
    ),
    Case(
        "silu_bce_with_logits_pos_weight",
        "silu",
        lambda c: L.BCEWithLogitsLoss(pos_weight=np.linspace(0.5, 3.0, c), reduction="sum"),
        "unit",
        l2=0.1,
    ),
    Case(
        "softplus_threshold_nll",
        "softplus",
        lambda c: L.NLLLoss(weight=_class_weight(c)),
        "labels",
        output="log_softmax",
        act_options={"beta": 2.0, "threshold": 1.0},
    ),
    Case(
        "hardtanh_smooth_l1",
        "hardtanh",
        lambda c: L.SmoothL1Loss(beta=0.3),
        "regression",
        act_options={"min_val": -0.5, "max_val": 0.8},
        seed=2,
        scale=2.0,
    ),
    Case(
        "relu6_bce",
        "relu6",
        lambda c: L.BCELoss(weight=np.linspace(0.5, 1.5, c)),
        "unit",
        output="sigmoid",
        scale=4.0,
        seed=6,
    ),
    # several losses on one smooth activation, l2 on
    Case(
        "tanh_huber_sum",
        "tanh",
        lambda c: L.HuberLoss(delta=0.3, reduction="sum"),
        "regression",
        l2=0.3,
    ),
    Case("tanh_l1", "tanh", lambda c: L.L1Loss(), "regression", l2=0.1),
    Case("tanh_half_squared_error", "tanh", lambda c: L.HalfSquaredError(), "regression"),
    Case(
        "sigmoid_ce_ignore_index",
        "sigmoid",
        _ce(ignore_index=1, label_smoothing=0.3),
        "labels",
        l2=0.1,
    ),
    Case("tanh_deep_narrow", "tanh", _ce(), "labels", widths=(3, 2, 2, 2, 2, 2, 4), l2=0.1),
    Case(
        "softplus_wide_bce_with_logits",
        "softplus",
        lambda c: L.BCEWithLogitsLoss(weight=np.linspace(0.2, 1.0, c)),
        "unit",
        widths=(7, 12, 2),
        batch=9,
    ),
]


# --- building: parameters in, loss out ------------------------------------------------


def _network(case: Case, params: dict[str, np.ndarray]) -> Network:
    act = get_activation(case.activation, **case.act_options)
    depth = len(case.widths) - 1
    layers: list[tuple[str, Any, Any]] = []
    for l in range(1, depth + 1):
        last = l == depth
        out_act = get_activation("sigmoid") if last and case.output == "sigmoid" else None
        layers.append(
            (str(l), Linear(params[f"{l}.weight"], params[f"{l}.bias"]), out_act if last else act)
        )
    if case.output == "log_softmax":
        layers.append(("log_softmax", LogSoftmax(dim=1), None))
    return Network.sequential(layers)


def _problem(case: Case) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, L.Loss]:
    rng = np.random.default_rng(case.seed)
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(case.widths, case.widths[1:], strict=False), start=1):
        params[f"{l}.weight"] = rng.normal(0.0, case.scale / np.sqrt(fan_in), (fan_out, fan_in))
        params[f"{l}.bias"] = rng.normal(0.0, 0.3, fan_out)
    n, classes = case.batch, case.widths[-1]
    x = rng.normal(size=(n, case.widths[0]))
    target = {
        "regression": lambda: rng.normal(size=(n, classes)),
        "unit": lambda: rng.uniform(size=(n, classes)),
        "labels": lambda: rng.integers(0, classes, n),
        "probabilities": lambda: rng.dirichlet(np.ones(classes), n),
    }[case.target]()
    return params, x, target, case.loss(classes)


def _loss(
    case: Case, params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray, loss: L.Loss
) -> float:
    return _network(case, params).loss_and_gradients(x, target, loss, l2=case.l2).loss


def _assert_away_from_kinks(case: Case, params, x, target, loss) -> None:
    result = _network(case, params).loss_and_gradients(x, target, loss, l2=case.l2)
    kinks = KINKS.get(case.activation, lambda **o: ())(**case.act_options)
    hidden = [str(l) for l in range(1, len(case.widths) - 1)]
    for name in hidden:
        for k in kinks:
            gap = float(np.min(np.abs(result.tape.z[name] - k)))
            assert gap > MARGIN, (
                f"precondition {case.name}: a z of layer {name} is {gap:.1e} from the kink {k}"
            )
    for k in LOSS_KINKS.get(type(loss), lambda _: ())(loss):
        gap = float(np.min(np.abs(result.output - target - k)))
        assert gap > MARGIN, f"precondition {case.name}: a residual is {gap:.1e} from {k}"


def _well_conditioned(case: Case) -> bool:
    """BCE on a probability p near 0 or 1: 1 − p carries a relative rounding error of
    ~1e-16/(1 − p), so a central difference of log(1 − p) with step EPS holds noise of about
    1e-16/((1 − p)·EPS), above ATOL once 1 − p < 1e-3 (the analytic gradient is fine). Such
    draws say nothing about the gradient: skip them."""
    params, x, target, loss = _problem(case)
    if not isinstance(loss, L.BCELoss):
        return True
    p = _network(case, params).forward(x)[0]
    return bool(np.min(p * (1 - p)) > 1e-3)


def _assert_directional(where: str, dot: float, fd: float, value: float) -> None:
    bound = RTOL * abs(dot) + ATOL * max(1.0, abs(value))
    assert abs(fd - dot) <= bound, (
        f"{where}: ⟨∇L, v⟩ = {dot!r} vs finite difference {fd!r} "
        f"(|diff| {abs(fd - dot):.3e} > {bound:.3e}, L = {value:.6g})"
    )


def _unit(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    v = {k: rng.normal(size=s) for k, s in shapes.items()}
    norm = np.sqrt(sum(float(np.sum(a * a)) for a in v.values()))
    return {k: a / norm for k, a in v.items()}


def check_parameters(case: Case, directions: int = 3) -> None:
    """⟨∇_θ L, v⟩ against the central difference along v, for random unit v over all θ."""
    params, x, target, loss = _problem(case)
    _assert_away_from_kinks(case, params, x, target, loss)
    result = _network(case, params).loss_and_gradients(x, target, loss, l2=case.l2)
    grads = result.grads
    assert grads.keys() == params.keys(), f"{case.name}: grads {sorted(grads)}"
    rng = np.random.default_rng(1000 + case.seed)
    for k in range(directions):
        v = _unit(rng, {n: p.shape for n, p in params.items()})
        dot = sum(float(np.sum(grads[n] * v[n])) for n in params)
        plus = _loss(case, {n: p + EPS * v[n] for n, p in params.items()}, x, target, loss)
        minus = _loss(case, {n: p - EPS * v[n] for n, p in params.items()}, x, target, loss)
        _assert_directional(
            f"{case.name}, parameters, direction {k}", dot, (plus - minus) / (2 * EPS), result.loss
        )


def check_input(case: Case, directions: int = 2) -> None:
    """⟨∂L/∂x, u⟩ (Gradients.dL_dinput) against the central difference along unit u."""
    params, x, target, loss = _problem(case)
    _assert_away_from_kinks(case, params, x, target, loss)
    result = _network(case, params).loss_and_gradients(x, target, loss, l2=case.l2)
    dL_dx = result.gradients.dL_dinput
    assert dL_dx is not None and dL_dx.shape == x.shape, f"{case.name}: dL_dinput {dL_dx!r}"
    rng = np.random.default_rng(2000 + case.seed)
    for k in range(directions):
        u = _unit(rng, {"x": x.shape})["x"]
        dot = float(np.sum(dL_dx * u))
        plus = _loss(case, params, x + EPS * u, target, loss)
        minus = _loss(case, params, x - EPS * u, target, loss)
        _assert_directional(
            f"{case.name}, input, direction {k}", dot, (plus - minus) / (2 * EPS), result.loss
        )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parameter_gradient_matches_finite_differences(case: Case):
    check_parameters(case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_input_gradient_matches_finite_differences(case: Case):
    check_input(case)


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), names


def test_a_wrong_gradient_fails_the_check():
    """The tolerance bites: a 1e-4 relative error in ⟨∇L, v⟩ is far outside it."""
    dot = 0.123
    with pytest.raises(AssertionError, match=r"⟨∇L, v⟩ = .* vs finite difference"):
        _assert_directional("planted", dot * (1 + 1e-4), dot, 1.0)


# --- a property over random smooth MLPs ------------------------------------------------

SMOOTH_ACTIVATIONS = {
    "identity": st.just({}),
    "sigmoid": st.just({}),
    "tanh": st.just({}),
    "gelu": st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}),
    "silu": st.just({}),
    "softplus": st.fixed_dictionaries({"beta": st.sampled_from([0.5, 1.0, 3.0])}),
}

SMOOTH_LOSSES: dict[str, tuple[Callable[[int], L.Loss], str, str | None]] = {
    "mse": (lambda c: L.MSELoss(), "regression", None),
    "half_squared_error": (lambda c: L.HalfSquaredError(), "regression", None),
    "cross_entropy": (_ce(label_smoothing=0.1), "labels", None),
    "cross_entropy_probabilities": (_ce(), "probabilities", None),
    "nll": (lambda c: L.NLLLoss(reduction="sum"), "labels", "log_softmax"),
    "bce": (lambda c: L.BCELoss(), "unit", "sigmoid"),
    "bce_with_logits": (lambda c: L.BCEWithLogitsLoss(pos_weight=np.full(c, 2.0)), "unit", None),
}


@st.composite
def smooth_cases(draw: st.DrawFn, *, max_depth: int = 4, max_width: int = 6) -> Case:
    """A random MLP with a smooth activation and a smooth loss (a printable Case)."""
    activation = draw(st.sampled_from(sorted(SMOOTH_ACTIVATIONS)))
    loss_name = draw(st.sampled_from(sorted(SMOOTH_LOSSES)))
    loss, target, output = SMOOTH_LOSSES[loss_name]
    depth = draw(st.integers(1, max_depth))
    min_out = 2 if target in ("labels", "probabilities") else 1
    widths = (
        *draw(st.lists(st.integers(1, max_width), min_size=depth, max_size=depth)),
        draw(st.integers(min_out, max_width)),
    )
    return Case(
        name=f"{activation}_{loss_name}",
        activation=activation,
        act_options=draw(SMOOTH_ACTIVATIONS[activation]),
        loss=loss,
        target=target,
        output=output,
        widths=widths,
        l2=draw(st.sampled_from([0.0, 0.1, 1.0])),
        seed=draw(st.integers(0, 2**16)),
        batch=draw(st.integers(1, 6)),
        scale=draw(st.sampled_from([0.5, 1.0, 2.0])),
    )


@settings(max_examples=150)
@given(smooth_cases())
def test_random_smooth_mlps_match_finite_differences(case: Case):
    assume(_well_conditioned(case))
    check_parameters(case, directions=1)
    check_input(case, directions=1)
