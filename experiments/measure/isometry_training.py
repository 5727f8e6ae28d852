"""How fast a deep critical net learns, orthogonal against Gaussian weights: Pennington,
Schoenholz & Ganguli (2017), "Resurrecting the sigmoid in deep learning through dynamical
isometry", arXiv:1711.04735, find that a tanh net at criticality with orthogonal weights and a
small q* (a well-conditioned input–output Jacobian, normalised spectral variance
L (μ2/μ1² − 1) small) trains faster than the same net with Gaussian weights, and than ReLU,
whose spectrum is wide with either weights.

The task: a linear teacher y = A x (k outputs, x ~ N(0, s² I), Var y = 1 per output), fresh
minibatches every step, the MSE on a fixed evaluation set recorded every `every` steps and
normalised by Var y (1 at a zero output). The student: `depth` square layers of `width`
h^(l) = W_l φ(h^(l−1)) + b_l with W Gaussian N(0, σ_w²/N) or σ_w·Q (Q Haar), b ~ N(0, σ_b²),
the input scaled so that h^(1) already sits at q* (s² = (q* − σ_b²)/σ_w²), and a linear
readout N(0, 1/N) without bias; plain SGD at one rate for every cell.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from experiments.measure.jacobian import JacobianConfig
from experiments.measure.jacobian import parameters as square_parameters
from manual_bp.losses import MSELoss
from manual_bp.network import Network, mlp
from manual_bp.optim import SGD

Array = np.ndarray


@dataclass(frozen=True)
class SpeedConfig:
    """One training run: the net (activation, weights, σ_w², σ_b², q*, depth, width), the
    seed, and the SGD budget (steps, rate, batch, evaluation every `every` steps)."""

    activation: str
    weights: str
    sigma_w2: float
    sigma_b2: float
    q: float
    depth: int
    width: int
    seed: int
    steps: int
    lr: float
    batch: int = 32
    every: int = 10
    outputs: int = 4
    evaluation: int = 256

    def __post_init__(self) -> None:
        if min(self.depth, self.width, self.steps, self.batch, self.every, self.outputs) < 1:
            raise ValueError(f"depth, width, steps, batch, every and outputs must be ≥ 1: {self}")
        if not (self.lr > 0 and self.q > self.sigma_b2 >= 0):
            raise ValueError(f"need lr > 0 and q* > σ_b² ≥ 0, got {self}")


def network(config: SpeedConfig) -> Network:
    """The student: the square layers of experiments.measure.jacobian (same draw for the same
    seed, weights and size) and a readout N(0, 1/N)."""
    square = JacobianConfig(
        config.activation,
        config.weights,
        config.sigma_w2,
        config.sigma_b2,
        config.width,
        config.depth,
        config.seed,
        config.q,
    )
    weights, biases, _ = square_parameters(square)
    rng = _rng(config, "readout")
    readout = rng.normal(0.0, 1.0 / math.sqrt(config.width), size=(config.outputs, config.width))
    return mlp([*weights, readout], [*biases, None], config.activation)


def _rng(config: SpeedConfig, what: str) -> np.random.Generator:
    words = [config.seed, config.width, config.outputs, zlib.crc32(what.encode())]
    return np.random.default_rng(np.random.SeedSequence(words))


def teacher(config: SpeedConfig) -> tuple[Array, float]:
    """(A, s): the teacher's matrix (k, N), N(0, 1/(N s²)) so that Var y = 1, and the input
    scale s (h^(1) at q*). The same teacher for every net of a seed."""
    s = math.sqrt((config.q - config.sigma_b2) / config.sigma_w2)
    rng = _rng(config, "teacher")
    A = rng.normal(0.0, 1.0 / (math.sqrt(config.width) * s), size=(config.outputs, config.width))
    return A, s


def train(config: SpeedConfig) -> dict:
    """SGD on the teacher's task; the normalised evaluation loss at steps 0, every, 2·every, …
    (stopping at the first non-finite loss)."""
    net = network(config)
    A, s = teacher(config)
    rng = _rng(config, "data")
    x_eval = rng.normal(0.0, s, size=(config.evaluation, config.width))
    y_eval = x_eval @ A.T
    loss, optimizer = MSELoss(), SGD(config.lr)
    curve = []
    for step in range(config.steps + 1):
        if step % config.every == 0:
            value = float(loss(net.forward(x_eval)[0], y_eval)[0])
            curve.append(value)
            if not math.isfinite(value) or step == config.steps:
                break
        x = rng.normal(0.0, s, size=(config.batch, config.width))
        result = net.loss_and_gradients(x, x @ A.T, loss, input_grad=False, trace=False)
        optimizer.step(net, result.grads)
    return {"config": config, "loss": curve}


def steps_to(curve: list[float], every: int, threshold: float) -> float:
    """The first evaluated step whose loss is ≤ threshold (inf if none)."""
    hits = [k * every for k, v in enumerate(curve) if v <= threshold]
    return float(hits[0]) if hits else math.inf
