"""Finite width: what mean-field theory (width → ∞) leaves out, measured per example.

Hanin (2018, "Which neural net architectures give rise to exploding and vanishing
gradients?") and Hanin & Nica (2018, "Products of many large random matrices and gradients
in deep neural networks"): in a ReLU net with weights N(0, 2/fan_in) each backward step
multiplies an example's ‖δ‖² by r = ‖D W ᵀ v‖²/‖v‖² = (2/n) χ²_K, K ~ Binomial(n, ½)
active units, so E[r] = 1 but Var(r) = 5/n. Over the L − 1 hidden layers,
ln(‖δ^(1)‖²/‖δ^(L)‖²) is close to Gaussian with

    variance ≈ 5 Σ_l 1/n_l,        mean ≈ −½ · 5 Σ_l 1/n_l

(E ln r ≈ −Var(r)/2): the mean-field prediction (0) holds for ‖δ‖² on average, while a
single example's gradient drifts by e^{±√(5Σ 1/n_l)}.

The same multiplicative noise acts on the forward variance q̂^(l): where the mean-field
drift of q is weak (gelu at σ_w² = 2, whose map(q)/q creeps towards 1 at large q, where
gelu looks like relu), q̂ can wander instead of falling to q* = 0, and δ then vanishes far
less than the trajectory theory says. `measure_residual` gives the gap and q̂^(l) beside
the mean-field q^(l).

The law takes each step's direction v as independent of its weights. A cross-entropy δ^(L)
= p − y is not: p was computed from the same W_L that sends it back. `log_ratios` measures
both: with the loss's δ^(L), and with an output direction v drawn independently (the
input–output Jacobian's setting), through manual_bp's own backward (Network.backward from
∂L/∂output = v).
"""

from __future__ import annotations

import zlib

import numpy as np

from experiments.measure import flow
from experiments.theory import meanfield
from manual_bp.losses import CrossEntropyLoss

Array = np.ndarray


def hanin_coefficient(mu4: float) -> float:
    """The variance of ln(‖δ^(1)‖²/‖δ^(L)‖²) per unit of Σ 1/n_l for ReLU at σ_w² = 2:
    2μ₄ − 1, μ₄ = E[w⁴]/E[w²]² the weights' normalised fourth moment (Hanin 2018)."""
    return 2.0 * mu4 - 1.0


#: normalised fourth moments: Gaussian 3, uniform 9/5
MU4 = {"gaussian": 3.0, "uniform": 9.0 / 5.0}
#: the coefficient for Gaussian weights (kaiming_normal), the law this study measures: 5;
#: uniform weights (kaiming_uniform) would give 2.6
HANIN = hanin_coefficient(MU4["gaussian"])


def hanin_law(widths: list[int] | tuple[int, ...]) -> tuple[float, float]:
    """(mean, variance) of ln(‖δ^(1)‖²/‖δ^(L)‖²) by the law, for hidden widths n_l."""
    beta = float(sum(1.0 / n for n in widths))
    return -0.5 * HANIN * beta, HANIN * beta


def log_ratios(config: flow.Config) -> dict[str, Array]:
    """Per example n: ln(‖δ_n^(1)‖² / ‖δ_n^(L)‖²), with δ^(L) the cross-entropy's
    ('loss') and with δ^(L) = v drawn N(0, I) independently of the network ('random')."""
    net = flow.network(config)
    x, target = flow.batch(config)
    last = str(config.depth)
    result = net.loss_and_gradients(x, target, CrossEntropyLoss(), input_grad=False)
    out = {"loss": _log_ratio(result.deltas["1"], result.deltas[last])}
    words = [config.seed, config.width, config.depth, zlib.crc32(b"direction")]
    v = np.random.default_rng(words).normal(size=result.output.shape)
    deltas = net.backward(result.tape, v, input_grad=False).deltas
    out["random"] = _log_ratio(deltas["1"], deltas[last])
    return out


def _log_ratio(first: Array, last: Array) -> Array:
    return np.log(np.sum(first**2, axis=1)) - np.log(np.sum(last**2, axis=1))


def measure_hanin(config: flow.Config) -> list[dict]:
    """One network's per-example rows for the Hanin study."""
    ratios = log_ratios(config)
    return [
        {
            "depth": config.depth,
            "width": config.width,
            "seed": config.seed,
            "example": n,
            "ln_ratio_loss": float(ratios["loss"][n]),
            "ln_ratio_random": float(ratios["random"][n]),
        }
        for n in range(config.batch)
    ]


def _per_example(config: flow.Config) -> dict[str, float]:
    """What the batch's Frobenius norms hide: per example n, log10 ‖δ_n^(1)‖/‖δ_n^(L−1)‖ (its
    median over the batch), and the largest single example's share of ‖δ^(1)‖²."""
    net = flow.network(config)
    x, target = flow.batch(config)
    result = net.loss_and_gradients(x, target, CrossEntropyLoss(), input_grad=False)
    first = np.sum(result.deltas["1"] ** 2, axis=1)
    last = np.sum(result.deltas[str(config.depth - 1)] ** 2, axis=1)
    return {
        "delta_ratio_log10_median_example": float(np.median(0.5 * np.log10(first / last))),
        "top_example_share": float(first.max() / first.sum()),
    }


def measure_residual(config: flow.Config) -> tuple[dict, list[dict]]:
    """One network's δ and weight-gradient ratios beside the trajectory theory, and per hidden
    layer l the measured q̂^(l+1) = σ_w² E[a^(l)²] + σ_b² (mean over units and examples)
    beside the mean-field q^(l+1)."""
    m = flow.measure(config)
    s = m.summary
    keys = (
        "delta_ratio_log10",
        "delta_ratio_log10_theory",
        "grad_ratio_log10",
        "grad_ratio_log10_theory",
    )
    per_example = _per_example(config)
    summary = {
        "activation": config.activation,
        "init": config.init,
        "depth": config.depth,
        "width": config.width,
        "seed": config.seed,
        **{k: s[k] for k in keys},
        **per_example,
    }
    sigma_w2, sigma_b2 = s["sigma_w2"], s["sigma_b2"]
    theory = meanfield.trajectory(config.activation, sigma_w2, sigma_b2, s["q1"], config.depth)
    layers = [
        {
            "width": config.width,
            "seed": config.seed,
            "layer": row["layer"],
            "q_measured": sigma_w2 * (row["act_std"] ** 2 + row["act_mean"] ** 2) + sigma_b2,
            "q_theory": float(theory[row["layer"]]),
        }
        for row in m.layers[: config.depth - 1]
    ]
    return summary, layers
