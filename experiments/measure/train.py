"""A small SGD training loop over minibatches, with what it measures along the way.

Every step is plain gradient descent on a minibatch B, the gradient coming from the
network's explicit δ backprop (each parameter p may have its own rate α·r_p):

    θ ← θ − α ∇θ L_B(θ),        L_B = (1/|B|) Σ_{n∈B} ℓ(f(x_n; θ), y_n)

After every epoch (and once before the first, epoch 0) the loop records the training
loss and accuracy, the test loss and accuracy, and for every layer l

    grad_w_norm = ‖∂L/∂W^(l)‖_F,        delta_norm = ‖δ^(l)‖_F over the probe batch,

measured on a fixed probe of training rows with no update; L is the probe's mean loss,
so δ^(l) = ∂L/∂z^(l) carries its 1/N. The same rows every epoch make epochs comparable.

Positive homogeneity (`reparametrisation`): a bias-free ReLU (or linear) MLP satisfies
f(x; c_1 W_1, …, c_L W_L) = (Π c_l) f(x; W). An init whose weights are the reference's
scaled by c_l, with the logits multiplied by 1/Π c_l, the biases at zero and each parameter
trained at the rate α·c_p² (c_p² = c_l² for W_l, Π_{k≤l} c_k² for b_l), follows the
reference run step by step: it is the same SGD written in other coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from experiments.measure.flow import cross_log10
from experiments.theory.initializers import get_initializer, initialize, initialize_bias
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


def digits(seed: int, test_fraction: float = 0.2, n_samples: int | None = None) -> Dataset:
    """scikit-learn's 8×8 digits (1797 images, 64 pixels, 10 classes), split and standardised."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    if n_samples is not None:
        x, y = x[:n_samples], y[:n_samples]
    return standardize(split(x, y, test_fraction, np.random.default_rng([seed, 0])))


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


def scaled(loss: LossFn, scale: float) -> LossFn:
    """The loss of the logits multiplied by `scale`: ℓ(s·y, t), gradient s·∂ℓ/∂(s·y)."""

    def loss_of_scaled(y: Array, target: Array) -> tuple[float, Array]:
        value, grad = loss(scale * y, target)
        return value, scale * grad

    return loss_of_scaled


HOMOGENEOUS = ("relu", "leaky_relu", "linear", "identity")


def reparametrisation(
    sizes: Sequence[int], activation: str, init: str, reference: str
) -> tuple[float, dict[str, float]]:
    """(logit scale 1/Π c_l, per-parameter rate factors c_p²) that make an MLP drawn from
    `init` train as one drawn from `reference` with the same standard normals.

    c_l² = E[W²] of `init` over that of `reference` for layer l; needs a positively
    homogeneous activation and zero initial biases (ValueError otherwise).
    """
    if activation not in HOMOGENEOUS:
        raise ValueError(
            f"reparametrisation needs a positively homogeneous activation "
            f"({', '.join(HOMOGENEOUS)}), got {activation!r}"
        )
    if "torch_default" in (init, reference):
        raise ValueError("reparametrisation needs zero initial biases (not torch_default)")
    shapes = [(n_out, n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    rates, cumulative = {}, 1.0
    for l, shape in enumerate(shapes, start=1):
        c2 = get_initializer(init).second_moment(shape) / get_initializer(reference).second_moment(
            shape
        )
        cumulative *= c2
        rates[f"{l}.weight"], rates[f"{l}.bias"] = c2, cumulative
    return 1.0 / math.sqrt(cumulative), rates


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
    weight_norm: dict[str, float]
    cross_log10: dict[str, float]
    #: RMS over the probe of the logits less each row's mean (the part softmax sees): the
    #: network's end-to-end gain on the task's inputs
    logit_scale: float = math.nan


def evaluate(network: Network, x: Array, y: Array, loss: LossFn) -> tuple[float, float]:
    """(loss, accuracy) of the network on (x, y): a forward pass, no gradient."""
    logits, _ = network.forward(x)
    value, _ = loss(logits, y)
    return float(value), accuracy(logits, y)


def layer_norms(
    network: Network, x: Array, y: Array, loss: LossFn
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per weighted layer l of a chain, on the batch (x, y), no update: ‖∂L/∂W^(l)‖_F,
    ‖δ^(l)‖_F, and the examples' cross terms in ∂L/∂W^(l) (flow.cross_log10: 0 when the
    examples' contributions δ_n a_nᵀ are uncorrelated)."""
    result = network.loss_and_gradients(x, y, loss)
    grads = result.grads
    layers = [node for node in network.nodes if f"{node.name}.weight" in grads]
    grad_w_norm = {n.name: float(np.linalg.norm(grads[f"{n.name}.weight"])) for n in layers}
    delta_norm = {n.name: float(np.linalg.norm(result.deltas[n.name])) for n in layers}
    cross = {
        n.name: cross_log10(result.deltas[n.name], result.tape.a[n.inputs[0]], grad_w_norm[n.name])
        for n in layers
    }
    return grad_w_norm, delta_norm, cross


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
    lr_scale: Mapping[str, float] | None = None,
) -> tuple[float, float]:
    """One pass over (x, y) in shuffled minibatches, θ_p ← θ_p − α r_p ∇_p L_B after each
    (r_p = lr_scale[p], default 1).

    Returns the loss and accuracy over the epoch, each minibatch counted as it was seen
    (before its own step), weighted by its size.
    """
    loss_sum, correct = 0.0, 0.0
    for batch in minibatches(len(x), batch_size, rng):
        result = network.loss_and_gradients(x[batch], y[batch], loss)
        grads = result.grads
        if lr_scale:
            grads = {name: g * lr_scale.get(name, 1.0) for name, g in grads.items()}
        optimizer.step(network, grads)
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
    lr_scale: Mapping[str, float] | None = None,
) -> list[Snapshot]:
    """Plain minibatch SGD for `epochs` epochs; the snapshots of epochs 0..epochs.

    train_loss / train_acc: epoch 0 on the whole training set at initialisation, later
    epochs averaged over that epoch's minibatches as seen. test_loss / test_acc: the
    whole test set after the epoch. Norms: on the probe, the first `probe_size` training
    rows (a random subset, the split being random), the same rows every epoch.
    Training stops, after recording it, at the first epoch whose loss is not finite.
    `lr_scale` gives parameters their own rate α·r_p (see `reparametrisation`).
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
        grad_w_norm, delta_norm, cross = layer_norms(network, x_probe, y_probe, loss)
        params = network.named_parameters()
        weight_norm = {l: float(np.linalg.norm(params[f"{l}.weight"])) for l in grad_w_norm}
        logits, _ = network.forward(x_probe)
        centred = logits - logits.mean(axis=1, keepdims=True)
        return Snapshot(
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            grad_w_norm,
            delta_norm,
            weight_norm,
            cross,
            float(np.sqrt(np.mean(centred**2))),
        )

    history = [snapshot(0, *evaluate(network, data.x_train, data.y_train, loss))]
    for epoch in range(1, epochs + 1):
        train_loss, train_acc = sgd_epoch(
            network, data.x_train, data.y_train, loss, optimizer, batch_size, rng, lr_scale
        )
        history.append(snapshot(epoch, train_loss, train_acc))
        if not np.isfinite(train_loss):
            break
    return history
