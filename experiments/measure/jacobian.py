"""The input–output Jacobian of a deep random MLP and its singular values (dynamical
isometry: Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid
in deep learning through dynamical isometry: theory and practice").

For h^(l) = W_l φ(h^(l−1)) + b_l, l = 1..L, the Jacobian of the last pre-activation with
respect to the first is the product of the explicit per-layer factors

    J = ∂h^(L)/∂h^(0) = W_L D_{L−1} W_{L−1} ⋯ W_1 D_0,       D_l = diag φ′(h^(l))

formed here from the network's own weights and its forward pass (manual_bp.network's tape
gives h^(l), the activation table φ′), one factor at a time: no autograd.

Free probability (Pennington et al. 2017) gives the moments of the spectrum of JJᵀ (the
squared singular values s²) at width → ∞. With μ_k = E[φ′(√q z)^{2k}] at the layer's
pre-activation variance q, and WWᵀ of mean σ_w² and normalised variance −s1 (1 for Gaussian
weights, Marchenko–Pastur at ratio 1; 0 for orthogonal ones), the S-transform of a product
is the product of the S-transforms, so the mean multiplies and the normalised variances add:

    E[s²] = Π_l σ_w² μ1(q_l) = Π_l χ_l,
    Var(s²) / E[s²]² = Σ_l (μ2(q_l)/μ1(q_l)² − 1 − s1),

which at χ = 1 is their σ²_{JJᵀ} = L (μ2/μ1² − 1 − s1). For ReLU (μ1 = μ2 = ½) the first
term is 1 per layer whatever the weights: orthogonal weights cannot make it isometric.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from experiments.theory import free_probability, meanfield
from manual_bp.network import mlp
from manual_bp.ops.activations import get_activation

Array = np.ndarray

#: weights → the normalised variance −s1 of the spectrum of W Wᵀ / σ_w² (square layers).
WEIGHT_SPREAD = {"gaussian": 1.0, "orthogonal": 0.0}


@dataclass(frozen=True)
class JacobianConfig:
    """One stack of `depth` square layers of `width`: weights `weights` ('gaussian':
    N(0, σ_w²/width); 'orthogonal': σ_w·Q, Q Haar), biases N(0, σ_b²), the input
    pre-activation h^(0) ~ N(0, q_in)."""

    activation: str
    weights: str
    sigma_w2: float
    sigma_b2: float
    width: int
    depth: int
    seed: int
    q_in: float

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_SPREAD:
            raise ValueError(f"unknown weights {self.weights!r}; known: {', '.join(WEIGHT_SPREAD)}")
        get_activation(self.activation)
        if not (self.width >= 1 and self.depth >= 1 and self.seed >= 0):
            raise ValueError(f"need width, depth ≥ 1 and seed ≥ 0, got {self}")
        if not (self.sigma_w2 > 0 and self.sigma_b2 >= 0 and self.q_in >= 0):
            raise ValueError(f"need σ_w² > 0, σ_b² ≥ 0 and q_in ≥ 0, got {self}")


def _rng(config: JacobianConfig) -> np.random.Generator:
    words = [config.seed, zlib.crc32(config.weights.encode()), config.width, config.depth]
    return np.random.default_rng(np.random.SeedSequence(words))


def parameters(config: JacobianConfig) -> tuple[list[Array], list[Array], Array]:
    """(weights, biases, h^(0)), seeded by (seed, weights, width, depth): every activation
    with the same weights sees the same draw."""
    rng = _rng(config)
    n, scale = config.width, math.sqrt(config.sigma_w2)
    weights, biases = [], []
    for _ in range(config.depth):
        g = rng.normal(size=(n, n))
        if config.weights == "gaussian":
            weights.append(scale * g / math.sqrt(n))
        else:
            q, r = np.linalg.qr(g)
            weights.append(scale * q * np.sign(np.diag(r)))  # NOTE: signs make Q Haar
        biases.append(rng.normal(0.0, math.sqrt(config.sigma_b2), size=n))
    h0 = rng.normal(0.0, math.sqrt(config.q_in), size=n)
    return weights, biases, h0


def products(config: JacobianConfig, depths: tuple[int, ...]) -> dict[int, Array]:
    """J = Π_{l=1}^{L} W_l D_{l−1} at each L in `depths` (≤ depth): the prefix products of
    one network are the Jacobians of its first L layers."""
    if not depths or min(depths) < 1 or max(depths) > config.depth:
        raise ValueError(f"depths must lie in 1..{config.depth}, got {depths}")
    act = get_activation(config.activation)
    weights, biases, h0 = parameters(config)
    net = mlp(weights, biases, act)
    _, tape = net.forward(act(h0)[None, :])  # h^(l) = tape.z[str(l)], l = 1..depth
    pre = [h0] + [tape.z[str(l)][0] for l in range(1, config.depth)]
    out: dict[int, Array] = {}
    J = np.eye(config.width)
    for l in range(1, max(depths) + 1):
        W = net.nodes[l - 1].layer.params["weight"]
        J = (W * act.grad(pre[l - 1])[None, :]) @ J  # W_l D_{l−1} J: (width, width)
        if l in depths:
            out[l] = J
    return out


def rank_bound(config: JacobianConfig, depths: tuple[int, ...]) -> dict[int, int]:
    """An upper bound on rank J at each L: the fewest units with φ′ ≠ 0 in D_0..D_{L−1}
    (a unit with φ′ = 0 zeroes a column of every later product). For ReLU about half."""
    act = get_activation(config.activation)
    weights, biases, h0 = parameters(config)
    net = mlp(weights, biases, act)
    _, tape = net.forward(act(h0)[None, :])
    pre = [h0] + [tape.z[str(l)][0] for l in range(1, config.depth)]
    alive = np.minimum.accumulate([int(np.count_nonzero(act.grad(h))) for h in pre])
    return {d: int(alive[d - 1]) for d in depths}


def radial_log10_s2(activation: str, sigma_w2: float, sigma_b2: float, depth: int) -> float:
    """log10 s² of the radial mode: a change of the input's scale moves q, which relaxes to
    q* by the q-map's slope χ_q = e^(−1/ξ_q) per layer, so that singular value is χ_q^L
    (−inf for no fixed point: not an outlier then)."""
    xi_q = meanfield.depth_scales(activation, sigma_w2, sigma_b2).xi_q
    return -2.0 * depth / (xi_q * math.log(10.0)) if 0 < xi_q < math.inf else 0.0


def singular_values(config: JacobianConfig, depths: tuple[int, ...]) -> dict[int, Array]:
    """The singular values of J at each L in `depths`, descending."""
    return {d: np.linalg.svd(J, compute_uv=False) for d, J in products(config, depths).items()}


@dataclass(frozen=True)
class SpectrumTheory:
    """Free-probability moments of the squared singular values of J at one depth."""

    mean_s2: float  # Π χ_l
    var_s2: float  # mean² · Σ_l (μ2/μ1² − 1 − s1)
    normalised_var: float  # Σ_l (μ2/μ1² − 1 − s1)


def spectrum_theory(
    activation: str, weights: str, sigma_w2: float, sigma_b2: float, q_in: float, depth: int
) -> SpectrumTheory:
    """E[s²] and Var(s²) of J at `depth` along the variance trajectory from q^(0) = q_in."""
    spread = WEIGHT_SPREAD[weights]
    act = get_activation(activation)
    q, log_mean, v = q_in, 0.0, 0.0
    for _ in range(depth):
        mu1 = meanfield.derivative_moment(act, q, 1)
        mu2 = meanfield.derivative_moment(act, q, 2)
        log_mean += math.log(sigma_w2 * mu1)
        v += mu2 / mu1**2 - 1.0 + spread
        q = meanfield.variance_map(act, q, sigma_w2, sigma_b2)
    mean = math.exp(log_mean)
    return SpectrumTheory(mean, mean**2 * v, v)


#: singular values below this fraction of s_max are rounding noise of the float64 product.
FLOOR = 1e-8


def summary(s: Array) -> dict[str, float]:
    """Moments and extremes of the squared singular values s² (s descending); `tiny_frac`
    is the fraction below FLOOR·s_max, where the float64 product cannot resolve them."""
    s2 = s**2
    return {
        "mean_s2": float(np.mean(s2)),
        "var_s2": float(np.var(s2)),
        "s_max": float(s[0]),
        "median_s2": float(np.median(s2)),
        "tiny_frac": float(np.mean(s < FLOOR * s[0])),
        "log10_min_s2": float(np.log10(s2[-1])) if s2[-1] > 0 else -math.inf,
    }


def log_histogram(s: Array, edges: Array) -> Array:
    """Counts of log10(s²) in the bins `edges` (values below the first edge in the first)."""
    with np.errstate(divide="ignore"):
        x = np.log10(s**2)
    return np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)[0]


#: the study's cases: (activation, σ_w², σ_b²) at criticality (χ1 = 1).
CRITICAL = (("tanh", 1.05, 2.01e-5), ("relu", 2.0, 0.0))


def critical_q(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """The input variance: q* where the map has a finite positive fixed point, else 1 (relu
    at σ_w² = 2 keeps every q)."""
    q = meanfield.fixed_point(activation, sigma_w2, sigma_b2)
    return q if 0 < q < math.inf else 1.0


def measure(task: tuple[JacobianConfig, tuple[int, ...], Array]) -> list[dict]:
    """One network: per depth, the spectrum's summary, its theory, and the histogram of
    log10(s²) over `edges` (as a list, for the density plots)."""
    config, depths, edges = task
    spectra = singular_values(config, depths)
    ranks = rank_bound(config, depths)
    rows = []
    for depth, s in spectra.items():
        theory = spectrum_theory(
            config.activation, config.weights, config.sigma_w2, config.sigma_b2, config.q_in, depth
        )
        rows.append(
            {
                "activation": config.activation,
                "weights": config.weights,
                "sigma_w2": config.sigma_w2,
                "sigma_b2": config.sigma_b2,
                "q_in": config.q_in,
                "width": config.width,
                "seed": config.seed,
                "depth": depth,
                **summary(s),
                "rank_loss_frac": 1.0 - ranks[depth] / config.width,
                "mean_s2_theory": theory.mean_s2,
                "var_s2_theory": theory.var_s2,
                "normalised_var_theory": theory.normalised_var,
                "radial_log10_s2_theory": radial_log10_s2(
                    config.activation, config.sigma_w2, config.sigma_b2, depth
                ),
                "histogram": log_histogram(s, edges).tolist(),
            }
        )
    return rows


def theory_density(task: tuple[str, str, float, float, int, Array]) -> list[dict]:
    """The free-probability density of log10 s² (experiments.theory.free_probability) for
    (activation, weights, σ_w², q*, depth) on a grid of log10 s², one row per point."""
    activation, weights, sigma_w2, q, depth, log10_s2 = task
    spectrum = free_probability.jacobian_spectrum(activation, weights, sigma_w2, q, depth)
    density = free_probability.log10_density(spectrum, log10_s2)
    return [
        {
            "activation": activation,
            "weights": weights,
            "depth": depth,
            "log10_s2": float(x),
            "density": float(r),
            "zero_mass": spectrum.zero_mass,
        }
        for x, r in zip(log10_s2, density, strict=True)
    ]
