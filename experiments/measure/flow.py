"""Gradient flow through a deep random MLP: the per-layer measurements of the experiment.

One configuration is an MLP of `depth` Linear layers: `depth − 1` hidden layers of
`width` units with the activation, a last Linear to 10 classes, cross-entropy on random
labels, inputs x ~ N(0, 1) of dimension `width`. Its δ^(l) = ∂L/∂z^(l) come straight
from manual_bp.network's backward, δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1), and

    delta_ratio_log10 = log10(‖δ^(1)‖ / ‖δ^(depth−1)‖)         (first over last hidden)
    grad_ratio_log10  = log10(‖∂L/∂W^(1)‖ / ‖∂L/∂W^(depth−1)‖) (what SGD sees)
    chi1_measured     = (‖δ^(1)‖ / ‖δ^(depth−1)‖)^(2/(depth−2))  (mean factor on ‖δ‖²)

next to the mean-field predictions (experiments.theory.meanfield) for the same σ_w², σ_b².
`regime` is decided on grad_ratio_log10, `delta_regime` on delta_ratio_log10, each with the
scale test on grad_scale_log10 = log10 max_l ‖∂L/∂W^(l)‖/‖W^(l)‖ (see `regime`): δ can
vanish while ∂L/∂W^(l) = Σ_n δ_n^(l) a_n^(l−1)ᵀ stays flat, when the forward activations
shrink in step with it (Glorot & Bengio 2010). At depth 2 the first and last hidden layer
coincide: both ratios are exactly 0 (log of 1, the empty product) and chi1_measured is
undefined (NaN).

`cross_first_log10` and `cross_last_log10` split the weight gradient of layers 1 and
depth − 1 into what the examples give alone and what their cross terms add:
log10(‖Σ_n δ_n a_nᵀ‖ / √(Σ_n ‖δ_n‖² ‖a_n‖²)), 0 for uncorrelated examples (the mean-field
assumption), positive where the examples' activations and δ are aligned.

Per layer (layers 1..depth; the last one is the output Linear, whose f′ is 1):
- `delta_norm` ‖δ^(l)‖_F over the batch; `grad_w_norm`, `grad_b_norm` ‖∂L/∂W‖, ‖∂L/∂b‖;
- `act_mean`, `act_std` of a^(l) = f(z^(l));
- `deriv_mean` and the 5/50/95 % quantiles `deriv_p05`, `deriv_p50`, `deriv_p95` of f′(z^(l));
- `saturated_frac`: the fraction of entries with f′(z) < 0.01 (sigmoid |z| > 4.6,
  tanh |z| > 3.0, relu z ≤ 0): little gradient passes there;
- `dead_frac`: the fraction of units with f′(z) = 0 for every example of the batch.

A configuration whose numbers overflow is recorded, not raised: regime `overflow` with
the counts of NaN and Inf entries over every z, a, δ and gradient.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from experiments.theory import batch_gradient, meanfield
from experiments.theory.initializers import (
    EXPERIMENT_INITS,
    get_initializer,
    initialize,
    initialize_bias,
    mean_field_params,
)
from manual_bp.losses import CrossEntropyLoss
from manual_bp.network import Network, mlp
from manual_bp.ops.activations import ACTIVATIONS, Activation, get_activation

Array = np.ndarray

CLASSES = 10
#: the activation names the experiment accepts (every activation of the table but the
#: parametrised clipping ones, hardtanh and relu6, and identity, which is `linear`).
FLOW_ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu",
                    "silu", "softplus")  # fmt: skip
SATURATION = 0.01
QUANTILES = (0.05, 0.5, 0.95)
#: the regime rule (`regime`): a trend of at least RATE decades per layer that adds up to at
#: least MIN_DECADES over the net, or a scale at which SGD cannot move (SCALE_LOW) or
#: overshoots (SCALE_HIGH), in log10 of max_l ‖∂L/∂W^(l)‖/‖W^(l)‖
RATE, MIN_DECADES = 0.05, 1.0
SCALE_LOW, SCALE_HIGH = -4.0, 1.0

SUMMARY_KEYS = ("activation", "init", "depth", "width", "seed", "batch", "bias_init")
LAYER_KEYS = (*SUMMARY_KEYS, "layer")


# --- one configuration ----------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Config:
    """One network of the sweep; `sigma_b2` None keeps the init's own bias."""

    activation: str
    init: str
    depth: int
    width: int
    seed: int
    batch: int
    sigma_b2: float | None = None

    def __post_init__(self) -> None:
        check_activation(self.activation)
        check_init(self.init)
        for name, low in (("depth", 2), ("width", 1), ("batch", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if self.sigma_b2 is not None and not (math.isfinite(self.sigma_b2) and self.sigma_b2 >= 0):
            raise ValueError(f"sigma_b2 must be a finite number ≥ 0, got {self.sigma_b2!r}")

    @property
    def bias_init(self) -> str:
        """How the biases are drawn: the init's own rule, or N(0, σ_b²)."""
        if self.sigma_b2 is not None:
            return f"normal:{self.sigma_b2:g}"
        return "torch_default" if self.init == "torch_default" else "zeros"

    def key(self) -> tuple[str, ...]:
        """The row key in summary.csv, as the strings written there."""
        values = {**asdict(self), "bias_init": self.bias_init}
        return tuple(str(values[k]) for k in SUMMARY_KEYS)


def check_activation(name: str) -> str:
    if name not in FLOW_ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; valid choices: {', '.join(FLOW_ACTIVATIONS)}"
        )
    assert name in ACTIVATIONS
    return name


def check_init(name: str) -> str:
    if name not in EXPERIMENT_INITS:
        try:
            if not name.startswith("sigma2="):
                raise ValueError
            get_initializer(name)
        except ValueError:
            raise ValueError(
                f"unknown init {name!r}; valid choices: {', '.join(EXPERIMENT_INITS)}, "
                "sigma2=X (X > 0)"
            ) from None
    return name


def _rng(*parts: int | str) -> np.random.Generator:
    """A generator seeded from the parts; strings through crc32 (stable, unlike hash())."""
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


def shapes(config: Config) -> list[tuple[int, int]]:
    """Weight shapes (out, in), torch's layout: width → width (depth − 1 times) → 10."""
    return [(config.width, config.width)] * (config.depth - 1) + [(CLASSES, config.width)]


def parameters(config: Config) -> tuple[list[Array], list[Array]]:
    """Weights and biases of the configuration, seeded by (seed, init, width, depth, bias).

    The activation is not part of the seed: every activation sees the same weights.
    """
    rng = _rng(config.seed, config.init, config.width, config.depth, config.bias_init)
    weights, biases = [], []
    for shape in shapes(config):
        weights.append(initialize(config.init, shape, rng))
        if config.sigma_b2 is None:
            biases.append(initialize_bias(config.init, shape, rng))
        else:
            biases.append(rng.normal(0.0, math.sqrt(config.sigma_b2), size=shape[0]))
    return weights, biases


def batch(config: Config) -> tuple[Array, Array]:
    """x ~ N(0, 1) of shape (batch, width) and labels uniform on 0..9, seeded by seed."""
    rng = _rng(config.seed, "data", config.width, config.batch)
    return rng.normal(size=(config.batch, config.width)), rng.integers(0, CLASSES, config.batch)


def network(config: Config) -> Network:
    weights, biases = parameters(config)
    return mlp(weights, biases, get_activation(config.activation))


def layer_params(config: Config, shape: tuple[int, int]) -> tuple[float, float]:
    """(σ_w², σ_b²) of a layer of `shape` (out, in): the init's, σ_b² the configuration's
    where it sets one."""
    sigma_w2, sigma_b2 = mean_field_params(config.init, shape)
    return sigma_w2, sigma_b2 if config.sigma_b2 is None else config.sigma_b2


def mean_field(config: Config) -> dict[str, float]:
    """σ_w², σ_b² (hidden layers), q^(1), q*, chi1_theory and the two ratios' theory for the
    configuration; the batch theory also reads the output layer's own σ_w², σ_b²."""
    hidden = layer_params(config, (config.width, config.width))
    output = layer_params(config, (CLASSES, config.width))
    return dict(_theory(config.activation, *hidden, config.depth, config.batch, *output))


@lru_cache(maxsize=1024)
def _theory(
    activation: str, sigma_w2: float, sigma_b2: float, depth: int, batch: int,
    sigma_w2_out: float, sigma_b2_out: float,
) -> tuple[tuple[str, float], ...]:  # fmt: skip
    act = get_activation(activation)
    q1 = sigma_w2 * 1.0 + sigma_b2  # Var(x) = 1
    q_star = meanfield.fixed_point(act, sigma_w2, sigma_b2, q1)
    ratios = meanfield.ratio_theory(act, sigma_w2, sigma_b2, depth)
    out = {"sigma_w2_out": sigma_w2_out, "sigma_b2_out": sigma_b2_out}
    batch_ratio = batch_gradient.batch_grad_ratio_log10_theory(
        act, sigma_w2, sigma_b2, depth, batch, **out
    )
    return (
        ("sigma_w2", sigma_w2),
        ("sigma_b2", sigma_b2),
        ("q1", q1),
        ("q_star", q_star),
        ("chi1_theory", meanfield.chi(act, min(q_star, meanfield.Q_MAX), sigma_w2)),
        ("delta_ratio_log10_theory", ratios.delta_ratio_log10),
        ("grad_ratio_log10_theory", ratios.grad_ratio_log10),
        ("grad_ratio_log10_batch_theory", batch_ratio),
    )


def _recording(act: Activation) -> tuple[Activation, dict[int, Array]]:
    """The same activation, whose f′ also keeps each result by id(z): backward's own f′(z)."""
    seen: dict[int, Array] = {}

    def grad(z: Array) -> Array:
        seen[id(z)] = out = act.grad(z)
        return out

    return Activation(act.name, act.f, grad, act.options), seen


# --- measuring ------------------------------------------------------------------------


def _norm(x: Array) -> float:
    """‖x‖_F without overflow in the squares: max|x| · ‖x / max|x|‖."""
    if not np.all(np.isfinite(x)):
        return math.nan
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    if scale == 0.0:
        return 0.0
    return scale * float(np.sqrt(np.sum((x / scale) ** 2)))


def _log10_ratio(num: float, den: float) -> float:
    """log10(num / den) as a difference of logs: ±inf where one norm is 0 or inf, NaN if NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log10(num) - np.log10(den))


def trend_threshold(depth: int) -> float:
    """The |log10 ratio| over layers 1..depth−1 beyond which a trend counts: RATE decades per
    layer over the depth − 2 layers between, and at least MIN_DECADES (a 4-layer net's noise
    is not a trend)."""
    return max(MIN_DECADES, RATE * (depth - 2))


def regime(ratio_log10: float, depth: int, scale_log10: float, n_bad: int) -> str:
    """overflow, exploding, vanishing or stable, by a per-layer rate and a scale test.

    - overflow: any value NaN or Inf;
    - exploding: the scale max_l ‖∂L/∂W^(l)‖/‖W^(l)‖ above 10^SCALE_HIGH (one SGD step at
      lr 0.1 moves some layer by more than its own norm), or the ratio first/last above
      +trend_threshold(depth);
    - vanishing: the scale below 10^SCALE_LOW (no layer moves by more than 1e-4 of itself
      per unit learning rate), or the ratio below −trend_threshold(depth);
    - stable otherwise.
    """
    if n_bad or not math.isfinite(ratio_log10) or math.isnan(scale_log10):
        return "overflow"
    threshold = trend_threshold(depth)
    if scale_log10 > SCALE_HIGH or ratio_log10 > threshold:
        return "exploding"
    if scale_log10 < SCALE_LOW or ratio_log10 < -threshold:
        return "vanishing"
    return "stable"


@dataclass
class Measurement:
    """One configuration's summary row and its per-layer rows (plain dicts, CSV-ready)."""

    summary: dict[str, Any]
    layers: list[dict[str, Any]]


def _log_row_norms(x: Array) -> Array:
    """ln ‖x_n‖ of every row, without overflow in the squares (−inf for a zero row)."""
    scale = np.max(np.abs(x), axis=1, keepdims=True)
    safe = np.where(scale > 0, scale, 1.0)
    with np.errstate(divide="ignore"):
        return np.log(scale[:, 0]) + np.log(
            np.sqrt(np.sum((x / safe) ** 2, axis=1)) + (scale[:, 0] == 0)
        )


def cross_log10(delta: Array, a_prev: Array, grad_w_norm: float) -> float:
    """log10(‖Σ_n δ_n a_nᵀ‖ / √(Σ_n ‖δ_n‖² ‖a_n‖²)): what the examples' cross terms
    (δ_n·δ_m)(a_n·a_m), n ≠ m, add to ‖∂L/∂W‖; 0 where the examples are uncorrelated."""
    if not (np.all(np.isfinite(delta)) and np.all(np.isfinite(a_prev))) or grad_w_norm <= 0:
        return math.nan
    terms = 2.0 * (_log_row_norms(delta) + _log_row_norms(a_prev))
    top = np.max(terms)
    if not np.isfinite(top):
        return math.nan
    log_diag = 0.5 * (top + math.log(float(np.sum(np.exp(terms - top)))))
    return float((math.log(grad_w_norm) - log_diag) / math.log(10.0))


def _bad(x: Array) -> tuple[int, int]:
    return int(np.isnan(x).sum()), int(np.isinf(x).sum())


def measure(config: Config, params: tuple[list[Array], list[Array]] | None = None) -> Measurement:
    """Forward, cross-entropy on random labels, the δ recursion backward, and every statistic.

    `params` may hand in `parameters(config)` already drawn (they do not depend on the
    activation, so a sweep draws them once for all activations).
    """
    weights, biases = parameters(config) if params is None else params
    act, derivs = _recording(get_activation(config.activation))
    net = mlp(weights, biases, act)
    x, target = batch(config)
    depth = config.depth
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = net.loss_and_gradients(x, target, CrossEntropyLoss())
        tape, deltas, grads = result.tape, result.gradients.deltas, result.gradients.grads
        n_nan = n_inf = 0
        layers = []
        for l in range(1, depth + 1):
            name = str(l)
            z, a, delta = tape.z[name], tape.a[name], deltas[name]
            d_w, d_b = grads[name]["weight"], grads[name]["bias"]
            for arr in (z, a, delta, d_w, d_b):
                nan, inf = _bad(arr)
                n_nan, n_inf = n_nan + nan, n_inf + inf
            deriv = derivs[id(z)] if l < depth else np.ones_like(z)
            finite = deriv[np.isfinite(deriv)]
            quantiles = np.quantile(finite, QUANTILES) if finite.size else [math.nan] * 3
            layers.append(
                {
                    **dict(zip(SUMMARY_KEYS, config.key(), strict=True)),
                    "layer": l,
                    "delta_norm": _norm(delta),
                    "grad_w_norm": _norm(d_w),
                    "grad_b_norm": _norm(d_b),
                    "weight_norm": _norm(weights[l - 1]),
                    "act_mean": float(np.mean(a)),
                    "act_std": float(np.std(a)),
                    "deriv_mean": float(np.mean(deriv)),
                    "deriv_p05": float(quantiles[0]),
                    "deriv_p50": float(quantiles[1]),
                    "deriv_p95": float(quantiles[2]),
                    "saturated_frac": float(np.mean(deriv < SATURATION)),
                    "dead_frac": float(np.mean(np.all(deriv == 0.0, axis=0))),
                }
            )
        loss = result.loss
        inputs = {1: x, depth - 1: tape.a[str(depth - 2)] if depth > 2 else x}
        cross = {
            l: cross_log10(deltas[str(l)], a_prev, layers[l - 1]["grad_w_norm"])
            for l, a_prev in inputs.items()
        }
    first, last = layers[0], layers[depth - 2]
    ratio = _log10_ratio(first["delta_norm"], last["delta_norm"])
    grad_ratio = _log10_ratio(first["grad_w_norm"], last["grad_w_norm"])
    with np.errstate(over="ignore"):
        chi1_measured = float(np.power(10.0, 2.0 * ratio / (depth - 2))) if depth > 2 else math.nan
    n_bad = n_nan + n_inf + (0 if math.isfinite(loss) else 1)
    scale = max(
        (_log10_ratio(r["grad_w_norm"], r["weight_norm"]) for r in layers), default=math.nan
    )
    summary = {
        **dict(zip(SUMMARY_KEYS, config.key(), strict=True)),
        **mean_field(config),
        "loss": loss,
        "delta_ratio_log10": ratio,
        "grad_ratio_log10": grad_ratio,
        "chi1_measured": chi1_measured,
        "cross_first_log10": cross[1],
        "cross_last_log10": cross[depth - 1],
        "grad_scale_log10": scale,
        "regime": regime(grad_ratio, depth, scale, n_bad),
        "delta_regime": regime(ratio, depth, scale, n_bad),
        "n_nan": n_nan,
        "n_inf": n_inf,
    }
    return Measurement(summary, layers)


def pair_correlation2(config: Config, layer: int) -> float:
    """The mean over pairs n ≠ m of c_nm², c_nm = ⟨a_n, a_m⟩/(‖a_n‖‖a_m‖), the batch's
    activations at hidden layer `layer`: how far one network of finite width has correlated
    its independent inputs (mean-field theory: the c-map's c² at that layer)."""
    _, tape = network(config).forward(batch(config)[0])
    a = tape.a[str(layer)]
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    c = unit @ unit.T  # (batch, batch)
    n = len(c)
    return float((np.sum(c * c) - np.sum(np.diag(c) ** 2)) / (n * (n - 1)))


#: the columns of `example_terms`: the weight-gradient ratio and the four terms it is the sum of
EXAMPLE_TERMS = ("grad_ratio_log10", "delta_term", "forward_term", "weighting_term",
                 "cross_term")  # fmt: skip


def example_terms(config: Config) -> dict[str, float]:
    """The weight-gradient ratio of one network as the sum of four terms, and how its
    examples spread (depth ≥ 3). With g_l = ‖∂L/∂W^(l)‖, d_n = ‖δ_n^(1)‖², e_n = ‖δ_n^(L−1)‖²,
    x_n = ‖x_n‖², a_n = ‖a_n^(L−2)‖²:

        log10 g_1/g_{L−1} = ½ log10(Σd/Σe)                      delta_term (the δ ratio)
                          + ½ log10(Σx/Σa)                      forward_term
                          + ½ log10(w_1/w_{L−1})                weighting_term
                          + cross_first_log10 − cross_last_log10  cross_term

    with w_1 = B Σ d_n x_n/(Σd Σx), w_{L−1} = B Σ e_n a_n/(Σe Σa): 1 where an example's δ and
    activations are uncorrelated over the batch, above 1 where the examples with large δ also
    have large activations. Also: `example_median_log10`, the median over examples of each
    one's own ratio ½ log10(d_n x_n/(e_n a_n)); `delta_spread`, `act_spread`, the standard
    deviation over examples of log10 √d_n and log10 √a_n; `top_share`, max d_n/Σd; `logit_q`,
    the logits' mean square (mean-field: q_out).
    """
    if config.depth < 3:
        raise ValueError(f"example_terms needs depth ≥ 3 (two hidden layers), got {config.depth}")
    x, target = batch(config)
    depth = config.depth
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = network(config).loss_and_gradients(x, target, CrossEntropyLoss())
        deltas, grads = result.gradients.deltas, result.gradients.grads
        top, bottom = str(depth - 1), str(depth - 2)
        a_prev = result.tape.a[bottom]
        d, e = np.sum(deltas["1"] ** 2, axis=1), np.sum(deltas[top] ** 2, axis=1)
        xs, a = np.sum(x**2, axis=1), np.sum(a_prev**2, axis=1)
        g1, gl = _norm(grads["1"]["weight"]), _norm(grads[top]["weight"])
        n = len(x)
        w1 = n * np.sum(d * xs) / (d.sum() * xs.sum())
        wl = n * np.sum(e * a) / (e.sum() * a.sum())
        own = 0.5 * np.log10(d * xs / (e * a))
        return {
            "grad_ratio_log10": _log10_ratio(g1, gl),
            "delta_term": 0.5 * float(np.log10(d.sum() / e.sum())),
            "forward_term": 0.5 * float(np.log10(xs.sum() / a.sum())),
            "weighting_term": 0.5 * float(np.log10(w1 / wl)),
            "cross_term": cross_log10(deltas["1"], x, g1) - cross_log10(deltas[top], a_prev, gl),
            "example_median_log10": float(np.median(own)),
            "delta_spread": float(np.std(0.5 * np.log10(d))),
            "act_spread": float(np.std(0.5 * np.log10(a))),
            "top_share": float(d.max() / d.sum()),
            "logit_q": float(np.mean(result.output**2)),
        }


def measure_all(configs: Iterable[Config]) -> list[Measurement]:
    """measure() of each configuration, drawing the parameters once per activation-free key."""
    cache: dict[Config, tuple[list[Array], list[Array]]] = {}
    out = []
    for config in configs:
        key = replace(config, activation="linear")
        if key not in cache:
            cache.clear()
            cache[key] = parameters(config)
        out.append(measure(config, cache[key]))
    return out
