"""A small SGD training loop over minibatches, with what it measures along the way.

Every step is seed 004's plain gradient descent on a minibatch B, the gradient coming from
the network's explicit δ backprop:

    θ ← θ − α ∇θ L_B(θ),        L_B = (1/|B|) Σ_{n∈B} ℓ(f(x_n; θ), y_n)

After every epoch (and once before the first, epoch 0) the loop records the training
loss and accuracy, the test loss and accuracy, and for every layer l

    grad_w_norm = ‖∂L/∂W^(l)‖_F,        delta_norm = ‖δ^(l)‖_F over the probe batch,

measured on a fixed probe of training rows with no update; L is the probe's mean loss,
so δ^(l) = ∂L/∂z^(l) carries its 1/N. The same rows every epoch make epochs comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from manual_bp.lab.initializers import initialize, initialize_bias
from manual_bp.network import Network, mlp
from manual_bp.optim import SGD

Array = np.ndarray
LossFn = Callable[[Array, Array], tuple[float, Array]]


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A classification problem split once: inputs (N, D) float64, labels (N,) int."""

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array


def split(x: Array, y: Array, test_fraction: float, rng: np.random.Generator) -> Dataset:
    """A random train/test split: a permutation of the rows, its first ⌈f·N⌉ the test set."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    n_test = int(np.ceil(test_fraction * len(x)))
    if not 0 < n_test < len(x):
        raise ValueError(f"{len(x)} rows cannot be split with test_fraction {test_fraction}")
    order = rng.permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return Dataset(x[train], y[train], x[test], y[test])


def standardize(data: Dataset) -> Dataset:
    """x ← (x − μ) / σ per feature, μ and σ from the training set; σ = 0 features → σ = 1."""
    mu = data.x_train.mean(axis=0)
    sigma = data.x_train.std(axis=0)
    sigma = np.where(sigma > 0, sigma, 1.0)  # NOTE: constant pixels (digits' borders) stay 0
    return Dataset(
        (data.x_train - mu) / sigma, data.y_train, (data.x_test - mu) / sigma, data.y_test
    )


# --- the model ---------------------------------------------------------------------------


def init_mlp(sizes: Sequence[int], activation: str, init: str, rng: np.random.Generator) -> Network:
    """An MLP with layers sizes[0] → sizes[1] → … → sizes[-1], weights drawn from `init`.

    len(sizes) − 1 Linear layers named "1".."L", `activation` after every hidden one, the
    last layer's output the logits. Biases as initialize_bias gives them (zero for most).
    """
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"an MLP needs at least 2 positive sizes, got {list(sizes)}")
    shapes = [(n_out, n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    weights = [initialize(init, shape, rng) for shape in shapes]
    biases = [initialize_bias(init, shape, rng) for shape in shapes]
    return mlp(weights, biases, activation)


def accuracy(logits: Array, labels: Array) -> float:
    """The fraction of rows whose largest logit is at the label."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The network after `epoch` epochs; norms keyed by layer name "1".."L"."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    grad_w_norm: dict[str, float]
    delta_norm: dict[str, float]


def evaluate(network: Network, x: Array, y: Array, loss: LossFn) -> tuple[float, float]:
    """(loss, accuracy) of the network on (x, y): a forward pass, no gradient."""
    logits, _ = network.forward(x)
    value, _ = loss(logits, y)
    return float(value), accuracy(logits, y)


def layer_norms(
    network: Network, x: Array, y: Array, loss: LossFn
) -> tuple[dict[str, float], dict[str, float]]:
    """Per weighted layer l: (‖∂L/∂W^(l)‖_F, ‖δ^(l)‖_F) on the batch (x, y); no update."""
    result = network.loss_and_gradients(x, y, loss)
    grads = result.grads
    layers = [node.name for node in network.nodes if f"{node.name}.weight" in grads]
    grad_w_norm = {l: float(np.linalg.norm(grads[f"{l}.weight"])) for l in layers}
    delta_norm = {l: float(np.linalg.norm(result.deltas[l])) for l in layers}
    return grad_w_norm, delta_norm


# --- the loop --------------------------------------------------------------------------


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[Array]:
    """One epoch's index sets: a fresh permutation of 0..n−1 in batches (the last may be short)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def sgd_epoch(
    network: Network,
    x: Array,
    y: Array,
    loss: LossFn,
    optimizer: SGD,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """One pass over (x, y) in shuffled minibatches, θ ← θ − α ∇θ L_B after each.

    Returns the loss and accuracy over the epoch, each minibatch counted as it was seen
    (before its own step), weighted by its size.
    """
    loss_sum, correct = 0.0, 0.0
    for batch in minibatches(len(x), batch_size, rng):
        result = network.loss_and_gradients(x[batch], y[batch], loss)
        optimizer.step(network, result.grads)
        loss_sum += result.loss * len(batch)
        correct += accuracy(result.output, y[batch]) * len(batch)
    return loss_sum / len(x), correct / len(x)


def train(
    network: Network,
    data: Dataset,
    loss: LossFn,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    probe_size: int = 256,
) -> list[Snapshot]:
    """Plain minibatch SGD for `epochs` epochs; the snapshots of epochs 0..epochs.

    train_loss / train_acc: epoch 0 on the whole training set at initialisation, later
    epochs averaged over that epoch's minibatches as seen. test_loss / test_acc: the
    whole test set after the epoch. Norms: on the probe, the first `probe_size` training
    rows (a random subset, the split being random), the same rows every epoch.
    Training stops, after recording it, at the first epoch whose loss is not finite.
    """
    if epochs < 0 or batch_size < 1 or probe_size < 1:
        raise ValueError(
            f"need epochs ≥ 0, batch_size ≥ 1 and probe_size ≥ 1, "
            f"got {epochs}, {batch_size} and {probe_size}"
        )
    optimizer = SGD(lr)
    x_probe, y_probe = data.x_train[:probe_size], data.y_train[:probe_size]

    def snapshot(epoch: int, train_loss: float, train_acc: float) -> Snapshot:
        test_loss, test_acc = evaluate(network, data.x_test, data.y_test, loss)
        grad_w_norm, delta_norm = layer_norms(network, x_probe, y_probe, loss)
        return Snapshot(epoch, train_loss, train_acc, test_loss, test_acc, grad_w_norm, delta_norm)

    history = [snapshot(0, *evaluate(network, data.x_train, data.y_train, loss))]
    for epoch in range(1, epochs + 1):
        train_loss, train_acc = sgd_epoch(
            network, data.x_train, data.y_train, loss, optimizer, batch_size, rng
        )
        history.append(snapshot(epoch, train_loss, train_acc))
        if not np.isfinite(train_loss):
            break
    return history
