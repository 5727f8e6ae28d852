"""The batch's weight gradient in mean-field theory: ‖Σ_b δ_b a_bᵀ‖² = Σ_{b,b′} ⟨δ_b, δ_b′⟩
⟨a_b, a_b′⟩, the cross terms carried by the correlation map of experiments.theory.meanfield
(Schoenholz et al. 2017) forward and by its derivative backward."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from experiments.theory.meanfield import (
    Q_MAX,
    _check,
    _log10,
    as_activation,
    moments,
    pair_moments,
)
from manual_bp.ops.activations import Activation

Array = np.ndarray


# --- the batch's weight gradient: what the correlation map adds ------------------------------


@dataclass(frozen=True)
class PairTrajectory:
    """Per hidden layer l = 1..L−1 of a random MLP fed independent inputs: q_l, the inputs'
    correlation c_l, and the four moments the weight gradient needs."""

    q: tuple[float, ...]
    c: tuple[float, ...]
    phi2: tuple[float, ...]  # E[φ(z)²]: an example with itself
    phi_pair: tuple[float, ...]  # E[φ(u1)φ(u2)] at c_l: two examples
    dphi2: tuple[float, ...]  # E[φ′(z)²]
    dphi_pair: tuple[float, ...]  # E[φ′(u1)φ′(u2)]


def pair_trajectory(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, layers: int,
    var_x: float = 1.0,
) -> PairTrajectory:  # fmt: skip
    """q^(1) = σ_w² Var(x) + σ_b², c^(1) = σ_b²/q^(1) (independent inputs), then
    q^(l+1) = σ_w² E[φ²] + σ_b² and c^(l+1) q^(l+1) = σ_w² E[φ(u1)φ(u2)] + σ_b²."""
    act = as_activation(activation)
    q = min(sigma_w2 * var_x + sigma_b2, Q_MAX)
    c = sigma_b2 / q if q > 0 else 1.0
    rows = []
    for _ in range(layers):
        phi2, dphi2 = moments(act, q)
        pair, dpair = pair_moments(act, q, min(max(c, -1.0), 1.0))
        rows.append((q, c, phi2, pair, dphi2, dpair))
        q_next = min(sigma_w2 * phi2 + sigma_b2, Q_MAX)
        c = (sigma_w2 * pair + sigma_b2) / q_next if q_next > 0 else 1.0
        q = q_next
    return PairTrajectory(*(tuple(col) for col in zip(*rows, strict=True)))


def _softmax(z: Array) -> Array:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def output_error_gram(
    q: float, c: float, classes: int = 10, samples: int = 20000
) -> tuple[float, float]:
    """(E‖p − y‖², E⟨p − y, p′ − y′⟩) for the cross-entropy's δ = p − y of two examples whose
    logits are N(0, q) per class with correlation c, labels drawn uniformly and independently:
    E‖p‖² + 1 − 2/K and E⟨p, p′⟩ − 1/K, by a seeded Monte Carlo over the logits."""
    rng = np.random.default_rng(20170101)
    g1, g2 = rng.normal(size=(2, samples, classes))
    c = min(max(c, -1.0), 1.0)
    r = math.sqrt(min(q, Q_MAX))
    p1 = _softmax(r * g1)
    p2 = _softmax(r * (c * g1 + math.sqrt(1.0 - c * c) * g2))
    return (
        float(np.mean(np.sum(p1 * p1, axis=1))) + 1.0 - 2.0 / classes,
        float(np.mean(np.sum(p1 * p2, axis=1))) - 1.0 / classes,
    )


def _layer_factors(
    t: PairTrajectory, sigma_w2: float, l: int, var_x: float
) -> tuple[float, float]:  # fmt: skip
    """(diagonal, cross) factor of ‖∂L/∂W^(l)‖² = diag · Σ_b ‖e_b‖² + cross · Σ_{b≠b′} ⟨e_b, e_b′⟩
    for output errors e_b: backward Π σ_w² E[φ′φ′] over the layers above l, forward the
    activations' Gram (the input's at l = 1)."""
    back_d = math.prod(sigma_w2 * d for d in t.dphi2[l - 1 :])
    back_c = math.prod(sigma_w2 * d for d in t.dphi_pair[l - 1 :])
    a_d, a_c = (var_x, 0.0) if l == 1 else (t.phi2[l - 2], t.phi_pair[l - 2])
    return back_d * a_d, back_c * a_c


def _output(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, depth: int, var_x: float,
    sigma_w2_out: float | None = None, sigma_b2_out: float | None = None,
) -> tuple[PairTrajectory, float, float] | None:  # fmt: skip
    """The trajectory and the logits' (q, c), or None where q overflows.

    q_out = σ_w,out² E[φ²] + σ_b,out² with the output layer's own σ_w,out², σ_b,out² (the
    hidden layers' where None): an init whose variance reads fan_out, as xavier's
    2/(fan_in + fan_out), gives the (K, N) output layer σ_w,out² = 2N/(N + K) ≈ 2, not 1."""
    sw_out = sigma_w2 if sigma_w2_out is None else sigma_w2_out
    sb_out = sigma_b2 if sigma_b2_out is None else sigma_b2_out
    _check(sw_out, sb_out)
    t = pair_trajectory(activation, sigma_w2, sigma_b2, depth - 1, var_x)
    q_out = min(sw_out * t.phi2[-1] + sb_out, Q_MAX)
    c_out = (sw_out * t.phi_pair[-1] + sb_out) / q_out if q_out > 0 else 1.0
    if not (math.isfinite(q_out) and q_out < Q_MAX):
        return None
    return t, q_out, c_out


def logit_moments(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, depth: int,
    var_x: float = 1.0, sigma_w2_out: float | None = None, sigma_b2_out: float | None = None,
) -> tuple[float, float]:  # fmt: skip
    """(q_out, c_out): the logits' mean square and two independent inputs' logit correlation
    (NaN, NaN where q overflows)."""
    _check(sigma_w2, sigma_b2)
    out = _output(activation, sigma_w2, sigma_b2, depth, var_x, sigma_w2_out, sigma_b2_out)
    return (math.nan, math.nan) if out is None else (out[1], out[2])


def batch_grad_ratio_log10_theory(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, depth: int, batch: int,
    var_x: float = 1.0, classes: int = 10,
    sigma_w2_out: float | None = None, sigma_b2_out: float | None = None,
) -> float:  # fmt: skip
    """log10(‖∂L/∂W^(1)‖/‖∂L/∂W^(L−1)‖) of a batch of `batch` independent inputs.

    ‖Σ_b δ_b a_bᵀ‖² = Σ_{b,b′} ⟨δ_b, δ_b′⟩⟨a_b, a_b′⟩: beside each example with itself (the
    single-example theory) come the B(B − 1) cross terms. Forward, ⟨a_b, a_b′⟩ ∝ E[φ(u1)φ(u2)]
    at the correlation c_l the c-map carries (0 at the input); backward, ⟨δ_b, δ_b′⟩ is the
    output's error Gram (`output_error_gram` at the logits' q, c) times Π σ_w² E[φ′(u1)φ′(u2)]
    over the layers above (the gradient-independence assumption, as for χ). The logits' q
    reads the output layer's own σ_w,out², σ_b,out² (`_output`); the backward step through
    W^(L) multiplies both layers' norms alike and cancels from the ratio.
    """
    _check(sigma_w2, sigma_b2)
    if depth < 3:
        return 0.0
    out = _output(activation, sigma_w2, sigma_b2, depth, var_x, sigma_w2_out, sigma_b2_out)
    if out is None:
        return math.nan
    t, q_out, c_out = out
    self_gram, cross_gram = output_error_gram(q_out, c_out, classes)
    diag, cross = batch * self_gram, batch * (batch - 1) * cross_gram

    def grad_norm2(l: int) -> float:
        d, c = _layer_factors(t, sigma_w2, l, var_x)
        return d * diag + c * cross

    first, last = grad_norm2(1), grad_norm2(depth - 1)
    return 0.5 * (_log10(first) - _log10(last))


def batch_grad_ratio_log10_draws(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, depth: int, batch: int,
    var_x: float = 1.0, classes: int = 10, draws: int = 400, seed: int = 20170102,
    sigma_w2_out: float | None = None, sigma_b2_out: float | None = None,
) -> Array:  # fmt: skip
    """The batch theory's ratio for `draws` networks of infinite width, one draw each of what
    stays random there: the batch's logits and labels.

    At N → ∞ the layers' Grams are the c-map's, but the output has only K = `classes`
    channels: the logits of the batch are N(0, q_out) per class with correlation c_out
    between examples (a common part √c g and an own part √(1 − c) h_b), drawn once per
    network, and the labels are drawn once per batch. Each draw gives S_d = Σ_b ‖e_b‖² and
    S_c = Σ_{b≠b′} ⟨e_b, e_b′⟩ for e_b = softmax(z_b) − y_b, and the ratio
    ½ log10((d_1 S_d + c_1 S_c)/(d_{L−1} S_d + c_{L−1} S_c)). Their spread is the seed scatter
    no width removes; `batch_grad_ratio_log10_theory` is the ratio of the draws' mean norms.
    """
    _check(sigma_w2, sigma_b2)
    if depth < 3:
        return np.zeros(draws)
    out = _output(activation, sigma_w2, sigma_b2, depth, var_x, sigma_w2_out, sigma_b2_out)
    if out is None:
        return np.full(draws, math.nan)
    t, q_out, c_out = out
    rng = np.random.default_rng(seed)
    c = min(max(c_out, 0.0), 1.0)
    g = rng.normal(size=(draws, 1, classes))
    h = rng.normal(size=(draws, batch, classes))
    e = _softmax(math.sqrt(q_out) * (math.sqrt(c) * g + math.sqrt(1.0 - c) * h))
    labels = rng.integers(0, classes, size=(draws, batch))
    np.subtract.at(e, (np.arange(draws)[:, None], np.arange(batch)[None, :], labels), 1.0)
    s_d = np.sum(e * e, axis=(1, 2))
    s_c = np.sum(np.sum(e, axis=1) ** 2, axis=1) - s_d  # ‖Σ_b e_b‖² − Σ_b ‖e_b‖²
    (d1, c1), (dl, cl) = (_layer_factors(t, sigma_w2, l, var_x) for l in (1, depth - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * (np.log10(d1 * s_d + c1 * s_c) - np.log10(dl * s_d + cl * s_c))
