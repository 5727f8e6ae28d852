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
from manual_bp.ops.activations import get_activation
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


# --- the frontier: many cells in lockstep, checkpoints at several budgets ---------------------


@dataclass(frozen=True)
class Frontier:
    """What every network of the frontier gets: a small width and batch so that 10⁴ steps
    fit the lab's time budget, and the budgets at which the test accuracy is read."""

    width: int = 32
    activation: str = "tanh"
    sigma_b2: float = 0.05
    lr: float = 0.01
    batch: int = 16
    checkpoints: tuple[int, ...] = (100, 1000, 10000)


def _draw(
    cell: Cell, frontier: Frontier, sizes: list[int]
) -> tuple[list[Array], list[Array], np.random.Generator]:
    """The cell's weights and biases drawn as train_cell draws them, and its generator, which
    goes on to the batch order."""
    rng = cell.rng()
    weights = [
        rng.normal(0.0, math.sqrt(cell.sigma_w2 / n_in), size=(n_out, n_in))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [rng.normal(0.0, math.sqrt(frontier.sigma_b2), size=n) for n in sizes[1:]]
    return weights, biases, rng


def stacked_forward(
    Ws: list[Array], bs: list[Array], x: Array, act_name: str
) -> tuple[Array, list[tuple[Array, Array]]]:
    """K networks at once, K leading: z^(l) = a^(l−1) W^(l)ᵀ + b^(l), a^(l) = φ(z^(l));
    x (K, N, D) → logits (K, N, 10), and per layer (a^(l−1), z^(l)) for the backward."""
    act = get_activation(act_name)
    a, cache = x, []
    for l, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = a @ W.transpose(0, 2, 1) + b[:, None, :]  # (K, N, out)
        cache.append((a, z))
        a = act.f(z) if l < len(Ws) - 1 else z
    return a, cache


def stacked_loss(logits: Array, y: Array) -> tuple[Array, Array]:
    """Per network L = −(1/N) Σ_n log softmax(z_n)_{y_n} and δ^(L) = (p − onehot(y))/N."""
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    k, n = np.indices(y.shape)
    loss = -log_p[k, n, y].mean(axis=1)  # (K,)
    delta = np.exp(log_p)
    delta[k, n, y] -= 1.0
    return loss, delta / y.shape[1]


def stacked_backward(
    Ws: list[Array], cache: list[tuple[Array, Array]], delta: Array, act_name: str
) -> tuple[list[Array], list[Array]]:
    """∂L/∂W^(l) = δ^(l)ᵀ a^(l−1), ∂L/∂b^(l) = Σ_n δ^(l), δ^(l−1) = (δ^(l) W^(l)) ⊙ φ′(z^(l−1))."""
    act = get_activation(act_name)
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        a_prev, _ = cache[l]
        dWs[l] = delta.transpose(0, 2, 1) @ a_prev
        dbs[l] = delta.sum(axis=1)
        if l:
            delta = (delta @ Ws[l]) * act.grad(cache[l - 1][1])
    return dWs, dbs


def train_frontier(task: tuple[int, tuple[Cell, ...], Frontier, Dataset]) -> list[dict[str, float]]:
    """The cells (all of one depth) trained side by side by plain SGD, each with its own
    init and batch order (drawn as train_cell draws them), the test accuracy read at every
    checkpoint. A network whose loss turns non-finite stops there (diverged)."""
    depth, cells, frontier, data = task
    if depth < 1 or any(c.depth != depth or not c.sigma_w2 > 0 for c in cells):
        raise ValueError(f"need depth ≥ 1, cells of that depth and σ_w² > 0, got {depth}, {cells}")
    sizes = [data.x_train.shape[1]] + [frontier.width] * (depth - 1) + [10]
    drawn = [_draw(c, frontier, sizes) for c in cells]
    rngs = [d[2] for d in drawn]
    Ws = [np.stack([d[0][l] for d in drawn]) for l in range(depth)]
    bs = [np.stack([d[1][l] for d in drawn]) for l in range(depth)]
    alive = np.ones(len(cells), dtype=bool)
    stopped = np.zeros(len(cells), dtype=int)
    rows, step, last = [], 0, max(frontier.checkpoints)
    n = len(data.x_train)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while step < last:
            epoch = np.stack([rng.permutation(n) for rng in rngs])  # (K, n)
            for start in range(0, n, frontier.batch):
                rows_k = epoch[:, start : start + frontier.batch]
                logits, cache = stacked_forward(Ws, bs, data.x_train[rows_k], frontier.activation)
                loss, delta = stacked_loss(logits, data.y_train[rows_k])
                newly = alive & ~np.isfinite(loss)
                stopped[newly], alive = step, alive & ~newly
                dWs, dbs = stacked_backward(Ws, cache, delta, frontier.activation)
                for W, b, dW, db in zip(Ws, bs, dWs, dbs, strict=True):
                    W -= frontier.lr * dW
                    b -= frontier.lr * db
                step += 1
                if step in frontier.checkpoints:
                    rows += _checkpoint(Ws, bs, cells, frontier, data, step, alive, stopped)
                if step >= last:
                    break
    return rows


def _checkpoint(Ws, bs, cells, frontier, data, step, alive, stopped) -> list[dict[str, float]]:
    k = len(cells)
    x = np.broadcast_to(data.x_test, (k, *data.x_test.shape))
    logits, _ = stacked_forward(Ws, bs, x, frontier.activation)
    y = np.broadcast_to(data.y_test, (k, len(data.y_test)))
    loss, _ = stacked_loss(logits, y)
    acc = (logits.argmax(axis=-1) == y).mean(axis=1)
    return [
        {
            "sigma_w2": c.sigma_w2,
            "depth": c.depth,
            "seed": c.seed,
            "budget": step,
            "steps": step if alive[i] else int(stopped[i]),
            "test_loss": float(loss[i]) if alive[i] else math.nan,
            "test_acc": float(acc[i]) if alive[i] else math.nan,
            "diverged": int(not alive[i]),
        }
        for i, c in enumerate(cells)
    ]
