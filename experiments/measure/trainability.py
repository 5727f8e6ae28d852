"""Trainability against depth and σ_w²: how far SGD gets in a fixed budget, cell by cell, for
the comparison with the depth scale ξ_c of Schoenholz et al. (2017, "Deep information
propagation"), who found random tanh nets trainable up to a depth of about 6ξ_c.

A cell is one MLP on the digits: `depth` Linear layers of `width` units, tanh between them,
weights N(0, σ_w²/fan_in), biases N(0, σ_b²), trained by plain SGD (manual_bp's explicit
backprop) for `steps` minibatch steps; we record the test accuracy and loss at the end.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from experiments.measure.train import Dataset, evaluate, minibatches
from manual_bp.losses import CrossEntropyLoss
from manual_bp.network import mlp
from manual_bp.optim import SGD

Array = np.ndarray


@dataclass(frozen=True)
class Budget:
    """What every cell gets: the architecture's width, the activation, the bias variance, and
    the SGD budget."""

    width: int = 64
    activation: str = "tanh"
    sigma_b2: float = 0.05
    lr: float = 0.01
    batch: int = 32
    steps: int = 400


@dataclass(frozen=True)
class Cell:
    sigma_w2: float
    depth: int
    seed: int = 0

    def rng(self) -> np.random.Generator:
        words = [self.seed, self.depth, zlib.crc32(f"{self.sigma_w2:.6g}".encode())]
        return np.random.default_rng(np.random.SeedSequence(words))


def train_cell(task: tuple[Cell, Budget, Dataset]) -> dict[str, float]:
    """Draw the cell's network, run `steps` SGD steps, and evaluate on the test set."""
    cell, budget, data = task
    if cell.depth < 1 or not cell.sigma_w2 > 0:
        raise ValueError(f"need depth ≥ 1 and σ_w² > 0, got {cell}")
    rng = cell.rng()
    sizes = [data.x_train.shape[1]] + [budget.width] * (cell.depth - 1) + [10]
    weights = [
        rng.normal(0.0, math.sqrt(cell.sigma_w2 / n_in), size=(n_out, n_in))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [rng.normal(0.0, math.sqrt(budget.sigma_b2), size=n) for n in sizes[1:]]
    net = mlp(weights, biases, budget.activation)
    loss, optimizer = CrossEntropyLoss(), SGD(budget.lr)
    step, finite = 0, True
    with np.errstate(over="ignore", invalid="ignore"):
        while step < budget.steps and finite:
            for rows in minibatches(len(data.x_train), budget.batch, rng):
                result = net.loss_and_gradients(data.x_train[rows], data.y_train[rows], loss)
                finite = math.isfinite(result.loss)
                if not finite:
                    break
                optimizer.step(net, result.grads)
                step += 1
                if step >= budget.steps:
                    break
        test_loss, test_acc = (
            evaluate(net, data.x_test, data.y_test, loss) if finite else (math.nan, math.nan)
        )
    return {
        "sigma_w2": cell.sigma_w2,
        "depth": cell.depth,
        "seed": cell.seed,
        "steps": step,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "diverged": int(not finite),
    }
