"""Depth scales measured as Schoenholz et al. (2017, "Deep information propagation",
section 3) measure them: feed inputs through a finite random MLP, follow the length q^(l)
of one input and the correlation c^(l) of two inputs layer by layer, and fit

    q^(l) − q* ∝ e^{−l/ξ_q},        c^(l) − c* ∝ e^{−l/ξ_c}

over the range of layers where the deviation is clean: below a fraction of its start (the
maps are linear there) and above the finite network's noise floor (the largest deviation
over the last quarter of the layers). q* and c* are the mean-field fixed points
(experiments.theory.meanfield.depth_scales), the same ρ as the network.

A network: `depth` Linear layers of `width` units, W ~ N(0, σ_w²/width), b ~ N(0, σ_b²),
the activation after each, and dropout of keep probability ρ (torch's: φ · mask/ρ, each
input its own mask) on the activation that enters every layer after the first. One draw of
the weights serves every ρ; each ρ gets its own masks.

Inputs (per ρ, started at the theory's q* so that q has nothing to relax):
- `pairs` pairs of inputs of per-unit variance v and correlation c_in: c^(l) is the mean
  over the pairs of ⟨z_a, z_b⟩/(‖z_a‖‖z_b‖), 1 − c taken as
  (‖z_a − z_b‖² − (‖z_a‖ − ‖z_b‖)²)/(2‖z_a‖‖z_b‖), exact where c → 1;
- `lengths` inputs started at q^(1) = 3q*, whose mean ‖z‖²/width is q^(l).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from experiments.theory import meanfield
from manual_bp.ops.activations import get_activation

Array = np.ndarray


@dataclass(frozen=True)
class Probe:
    """The networks and inputs every configuration gets."""

    width: int = 500
    depth: int = 96
    pairs: int = 8  # input pairs for c
    lengths: int = 32  # inputs for q
    sigma_b2: float = 0.05


@dataclass(frozen=True)
class Config:
    activation: str
    sigma_w2: float
    keeps: tuple[float, ...]
    seed: int

    def rng(self) -> np.random.Generator:
        words = [self.seed, zlib.crc32(f"{self.activation} {self.sigma_w2:.6g}".encode())]
        return np.random.default_rng(np.random.SeedSequence(words))


def start_correlation(c_star: float) -> float:
    """c_in far from c* and away from the unstable c = ±1: 0 when c* ≥ 1/2, else −1/2."""
    return 0.0 if c_star >= 0.5 else -0.5


def _pairs(rng: np.random.Generator, n: int, width: int, var: float, c_in: float) -> Array:
    """n pairs as rows 2i, 2i+1 (2n, width): per-unit variance `var`, correlation c_in."""
    x = rng.standard_normal((n, width))
    y = c_in * x + math.sqrt(1.0 - c_in * c_in) * rng.standard_normal((n, width))
    return math.sqrt(var) * np.stack([x, y], axis=1).reshape(2 * n, width)


def _one_minus_c(z: Array) -> float:
    """Mean over the pairs (rows 2i, 2i+1) of 1 − c, written to stay exact as c → 1."""
    a, b = z[0::2], z[1::2]
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dist2 = np.sum((a - b) ** 2, axis=1)
    return float(np.mean((dist2 - (na - nb) ** 2) / (2.0 * na * nb)))


def propagate(task: tuple[Config, Probe]) -> list[dict[str, float]]:
    """One network per seed: per ρ and layer l = 1..depth, q^(l) and 1 − c^(l) (module doc)."""
    config, probe = task
    act = get_activation(config.activation)
    rng = config.rng()
    theory = {
        k: meanfield.depth_scales(act, config.sigma_w2, probe.sigma_b2, k) for k in config.keeps
    }
    states = {}
    for k, d in theory.items():
        var = (d.q_star - probe.sigma_b2) / config.sigma_w2  # q^(1) = q*
        var_q = (3.0 * d.q_star - probe.sigma_b2) / config.sigma_w2  # q^(1) = 3q*
        c_in = start_correlation(d.c_star)
        states[k] = np.concatenate(
            [
                _pairs(rng, probe.pairs, probe.width, var, c_in),
                math.sqrt(var_q) * rng.standard_normal((probe.lengths, probe.width)),
            ]
        )
    rows = []
    scale = math.sqrt(config.sigma_w2 / probe.width)
    for layer in range(1, probe.depth + 1):
        W = scale * rng.standard_normal((probe.width, probe.width))
        b = math.sqrt(probe.sigma_b2) * rng.standard_normal(probe.width)
        for k in config.keeps:
            a = states[k]
            if layer > 1:
                a = act.f(a)
                if k < 1.0:
                    a = a * (rng.random(a.shape) < k) / k
            z = a @ W.T + b  # (2 pairs + lengths, width)
            states[k] = z
            rows.append(
                {
                    "activation": config.activation,
                    "sigma_w2": config.sigma_w2,
                    "keep": k,
                    "seed": config.seed,
                    "layer": layer,
                    "q": float(np.mean(z[2 * probe.pairs :] ** 2)),
                    "one_minus_c": _one_minus_c(z[: 2 * probe.pairs]),
                    "q_star": theory[k].q_star,
                    "c_star": theory[k].c_star,
                }
            )
    return rows


# --- the fit ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    xi: float  # −1/slope of log|deviation| against l; NaN without enough clean layers
    first: int  # the clean range's first and last layer
    last: int
    points: int


#: the clean range: below this fraction of the first layer's deviation (linear maps) ...
LINEAR_FRACTION = 0.6
#: ... and above this multiple of the noise floor
FLOOR_FACTOR = 2.0
#: a fit needs at least this many clean layers
MIN_POINTS = 3


def noise_floor(deviation: Array) -> float:
    """The largest |deviation| over the last quarter of the layers."""
    tail = np.abs(deviation[-max(len(deviation) // 4, 1) :])
    return float(np.max(tail))


def fit_depth_scale(layers: Array, deviation: Array, floor: float | None = None) -> Fit:
    """ξ from a least-squares line through log|deviation| over the clean range: the first
    run of layers with FLOOR_FACTOR·floor < |dev| < LINEAR_FRACTION·|dev at the first layer|.

    log|dev_l| = a − l/ξ, so ξ = −1/slope; a slope ≥ 0 (no decay seen) gives ξ = ∞."""
    layers, dev = np.asarray(layers, dtype=float), np.abs(np.asarray(deviation, dtype=float))
    if layers.shape != dev.shape or layers.ndim != 1:
        raise ValueError(f"layers and deviation must be equal 1-d arrays, got {layers.shape} "
                         f"and {dev.shape}")  # fmt: skip
    floor = noise_floor(dev) if floor is None else floor
    ok = (dev > FLOOR_FACTOR * floor) & (dev < LINEAR_FRACTION * dev[0])
    start = int(np.argmax(ok)) if ok.any() else len(ok)
    stop = start
    while stop < len(ok) and ok[stop]:
        stop += 1
    if stop - start < MIN_POINTS:
        return Fit(math.nan, 0, 0, stop - start)
    slope = np.polyfit(layers[start:stop], np.log(dev[start:stop]), 1)[0]
    xi = -1.0 / slope if slope < 0 else math.inf
    return Fit(float(xi), int(layers[start]), int(layers[stop - 1]), stop - start)
