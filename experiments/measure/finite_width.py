"""Finite width: what mean-field theory (width → ∞) leaves out, measured per example.

Hanin (2018, "Which neural net architectures give rise to exploding and vanishing
gradients?", arXiv:1801.03744) and Hanin & Nica (2019, "Products of many large random matrices
and gradients in deep neural networks", arXiv:1812.05994): in a ReLU net with symmetric iid
weights of variance 2/fan_in, each backward step multiplies an example's ‖δ‖² by

    r = ‖D Wᵀ v‖² / ‖v‖² = (2/n) Σ_i ξ_i (w_i · v̂)²,      ξ_i ~ Bernoulli(½) the active units,

so E[r] = 1 and, with μ₄ = E[w⁴]/E[w²]² and ℓ = Σ_k v̂_k⁴ the direction's localisation,

    n Var(r) = 5 + 2(μ₄ − 3) ℓ                                              (one step, exact)

(E[(w·v̂)⁴] = 3 + (μ₄ − 3)ℓ). A coordinate direction (ℓ = 1, the first step of one Jacobian
entry) gives 2μ₄ − 1: 5 for Gaussian weights, 2.6 for uniform ones (μ₄ = 9/5). An example's δ
below the top layer is spread over its ~n/2 active units (ℓ ≈ 6/n), so μ₄ drops out at
first order, and over the L − 1 steps ln(‖δ^(1)‖²/‖δ^(L)‖²) is close to Gaussian with

    variance ≈ 5 Σ_l 1/n_l,        mean ≈ −½ · 5 Σ_l 1/n_l

for Gaussian and uniform weights alike (E ln r ≈ −Var(r)/2). The mean-field prediction (0)
holds for ‖δ‖² on average, while a single example's gradient drifts by e^{±√(5Σ 1/n_l)}.

The same multiplicative noise acts on the forward variance q̂^(l): where the mean-field
drift of q is weak (gelu at σ_w² = 2, whose map(q)/q creeps towards 1 at large q, where
gelu looks like relu), q̂ can wander instead of falling to q* = 0, and δ then vanishes far
less than the trajectory theory says. `measure_residual` gives the gap and q̂^(l) beside
the mean-field q^(l).

The law takes each step's direction v as independent of its weights. A cross-entropy δ^(L)
= p − y is not: p was computed from the same W_L that sends it back. `log_ratios` measures
three: the loss's δ^(L), an output direction v drawn independently (the input–output
Jacobian's setting), and the one-hot v = e_k (one row of the Jacobian: ℓ = 1 at the first
step), each through manual_bp's own backward (Network.backward from ∂L/∂output = v).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from scipy import special, stats

from experiments.measure import flow
from experiments.theory import meanfield
from manual_bp.losses import CrossEntropyLoss

Array = np.ndarray


def step_variance(mu4: float, localisation: float) -> float:
    """n·Var(r) of one backward ReLU step at σ_w² = 2: 5 + 2(μ₄ − 3)ℓ, ℓ = Σ_k v̂_k⁴."""
    return 5.0 + 2.0 * (mu4 - 3.0) * localisation


def hanin_coefficient(mu4: float) -> float:
    """n·Var(r) for a coordinate direction (ℓ = 1): 2μ₄ − 1 (Hanin 2018's fourth moment)."""
    return step_variance(mu4, 1.0)


#: the weight distributions of the study, as the init that draws them (σ_w² = 2 for both)
WEIGHTS = {"gaussian": "kaiming_normal", "uniform": "kaiming_uniform"}
#: their normalised fourth moments μ₄ = E[w⁴]/E[w²]²: Gaussian 3, uniform 9/5
MU4 = {"gaussian": 3.0, "uniform": 9.0 / 5.0}
#: the law for an example's δ (delocalised, ℓ → 0): 5 per unit of Σ 1/n_l, whatever μ₄
HANIN = step_variance(MU4["gaussian"], 0.0)
#: E[ℓ] of v ~ N(0, I_k): E[Σ v_j⁴ / ‖v‖⁴] = 3/(k + 2), 1/4 for the 10 classes
RANDOM_LOCALISATION = 3.0 / (flow.CLASSES + 2)


def hanin_law(widths: list[int] | tuple[int, ...]) -> tuple[float, float]:
    """(mean, variance) of ln(‖δ^(1)‖²/‖δ^(L)‖²) by the law, for hidden widths n_l."""
    beta = float(sum(1.0 / n for n in widths))
    return -0.5 * HANIN * beta, HANIN * beta


def gaussian_step_log_moments(n: int) -> tuple[float, float]:
    """(E, Var) of ln r for one step into n units with Gaussian weights, exactly: W ᵀv is
    N(0, (2/n)‖v‖² I) whatever v, so r = (2/n) χ²_K, K ~ Binomial(n, ½) active units
    (K ≥ 1), and ln χ²_K has mean ψ(K/2) + ln 2 and variance ψ′(K/2). → (−5/(2n), 5/n)."""
    k = np.arange(1, n + 1)
    p = stats.binom.pmf(k, n, 0.5)
    p /= p.sum()
    m = special.digamma(k / 2) + math.log(4.0 / n)
    mean = float(p @ m)
    return mean, float(p @ (special.polygamma(1, k / 2) + m**2) - mean**2)


def hanin_law_next_order(widths: list[int] | tuple[int, ...], mu4: float) -> float:
    """Var ln(‖δ^(1)‖²/‖δ^(L)‖²) at finite width: the exact Gaussian step per layer, plus the
    fourth moment's 2(μ₄ − 3)ℓ/n with ℓ = 1/4 at the top step (v ~ N(0, I_10)) and ℓ ≈ 6/n
    below (a δ spread over ~n/2 active units)."""
    top, *rest = widths
    var = sum(gaussian_step_log_moments(n)[1] for n in widths)
    return var + 2.0 * (mu4 - 3.0) * (RANDOM_LOCALISATION / top + sum(6.0 / n**2 for n in rest))


def log_ratios(config: flow.Config) -> dict[str, Array]:
    """Per example n: ln(‖δ_n^(1)‖² / ‖δ_n^(L)‖²), with δ^(L) the cross-entropy's ('loss'),
    with δ^(L) = v drawn N(0, I) independently of the network ('random'), and with the
    one-hot δ^(L) = e_{n mod 10} ('onehot'); and ln ‖δ_n^(L)‖² of 'random' ('ln_last')."""
    net = flow.network(config)
    x, target = flow.batch(config)
    last = str(config.depth)
    result = net.loss_and_gradients(x, target, CrossEntropyLoss(), input_grad=False)
    out = {"loss": _log_ratio(result.deltas["1"], result.deltas[last])}
    words = [config.seed, config.width, config.depth, zlib.crc32(b"direction")]
    v = np.random.default_rng(words).normal(size=result.output.shape)
    onehot = np.eye(flow.CLASSES)[np.arange(config.batch) % flow.CLASSES]
    for name, direction in (("random", v), ("onehot", onehot)):
        deltas = net.backward(result.tape, direction, input_grad=False).deltas
        out[name] = _log_ratio(deltas["1"], deltas[last])
        if name == "random":
            out["ln_last"] = np.log(np.sum(deltas[last] ** 2, axis=1))
    return out


def _log_ratio(first: Array, last: Array) -> Array:
    return np.log(np.sum(first**2, axis=1)) - np.log(np.sum(last**2, axis=1))


def measure_hanin(config: flow.Config) -> list[dict]:
    """One network's per-example rows for the Hanin study."""
    weights = {init: name for name, init in WEIGHTS.items()}
    if config.activation != "relu" or config.init not in weights:
        raise ValueError(
            f"the Hanin study takes relu with {' or '.join(weights)}, got "
            f"{config.activation} with {config.init}"
        )
    ratios = log_ratios(config)
    return [
        {
            "weights": weights[config.init],
            "depth": config.depth,
            "width": config.width,
            "seed": config.seed,
            "example": n,
            "ln_ratio_loss": float(ratios["loss"][n]),
            "ln_ratio_random": float(ratios["random"][n]),
            "ln_ratio_onehot": float(ratios["onehot"][n]),
            "ln_last_random": float(ratios["ln_last"][n]),
        }
        for n in range(config.batch)
    ]


#: the per-example columns of the Hanin study
LN_COLUMNS = ("ln_ratio_loss", "ln_ratio_random", "ln_ratio_onehot", "ln_last_random")


def cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (weights, depth, width): the networks, the examples, and for each ln column its
    mean, variance (ddof = 1) and median over every example of every network."""
    g = rows.groupby(["weights", "depth", "width"], sort=False)
    out = g.agg(networks=("seed", "nunique"), examples=("example", "size"))
    for column in LN_COLUMNS:
        out[f"{column}_mean"] = g[column].mean()
        out[f"{column}_var"] = g[column].var(ddof=1)
        out[f"{column}_median"] = g[column].median()
    return out.reset_index()


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
