"""The training report's runs (what is trained and how) and the numbers read off one run's
snapshots (see training)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.measure.train import Snapshot

WIDTH = 64
N_CLASSES = 10
TEST_FRACTION = 0.2
#: one learning rate and batch size for every run, chosen once in trial runs of the 30-layer
#: Kaiming net (the arm that can train): lr 0.05 at batch 32 and 0.1, 0.05, 0.02 at batch 64
#: made its loss jump between epochs, 0.01 at batch 32 fell mostly steadily. Not per arm.
LR = 0.01
BATCH = 32
PROBE = 256  # training rows on which the per-layer norms are measured
CHANCE_LOSS = math.log(N_CLASSES)


@dataclass(frozen=True)
class RunSpec:
    """One run: `depth` Linear layers of width WIDTH, `activation` between them; with a
    `reference` init, trained in that init's coordinates (train.reparametrisation)."""

    depth: int
    activation: str
    init: str
    reference: str | None = None
    #: this run's epochs as a multiple of the others' (the plateau run is longer)
    length: float = 1.0

    def epochs(self, epochs: int) -> int:
        return max(1, round(self.length * epochs))

    def sizes(self, n_features: int) -> list[int]:
        return [n_features] + [WIDTH] * (self.depth - 1) + [N_CLASSES]

    def label(self) -> str:
        base = f"{self.activation}, {self.init}, depth {self.depth}"
        return base + (f", rescaled to {self.reference}" if self.reference else "")


RUNS: dict[str, RunSpec] = {
    "relu30_kaiming": RunSpec(30, "relu", "kaiming_normal"),
    "relu30_xavier": RunSpec(30, "relu", "xavier_normal", length=2.5),
    "relu30_xavier_rescaled": RunSpec(30, "relu", "xavier_normal", "kaiming_normal"),
    "sigmoid10_xavier": RunSpec(10, "sigmoid", "xavier_normal"),
    "relu10_xavier": RunSpec(10, "relu", "xavier_normal"),
}
COMPARISONS = {
    "init_depth30": (
        "30-layer ReLU MLP: kaiming_normal, xavier_normal, and xavier_normal rescaled",
        ("relu30_kaiming", "relu30_xavier", "relu30_xavier_rescaled"),
    ),
    "activation_depth10": (
        "10-layer MLP, xavier_normal: sigmoid vs relu",
        ("sigmoid10_xavier", "relu10_xavier"),
    ),
}
#: the runs whose gradients are compared layer by layer (the rescaled run's are in Xavier's
#: coordinates, ∂L/∂W_l/c_l, and would only repeat Kaiming's at another scale)
GRADIENT_RUNS = ("relu30_kaiming", "relu30_xavier", "sigmoid10_xavier", "relu10_xavier")
STYLES = {
    "relu30_kaiming": {"color": "tab:blue", "lw": 2.2},
    "relu30_xavier": {"color": "tab:red"},
    "relu30_xavier_rescaled": {"color": "k", "marker": "x", "ms": 5, "lw": 0.9},
    "sigmoid10_xavier": {"color": "tab:purple"},
    "relu10_xavier": {"color": "tab:green"},
}
HISTORY_COLUMNS = ("run", "epoch", "train_loss", "train_acc", "test_loss", "test_acc")
LAYER_COLUMNS = ("run", "epoch", "layer", "grad_w_norm", "delta_norm", "weight_norm", "cross_log10")


# --- tables -----------------------------------------------------------------------------


def history_frame(histories: dict[str, list[Snapshot]]) -> pd.DataFrame:
    rows = [
        (run, s.epoch, s.train_loss, s.train_acc, s.test_loss, s.test_acc)
        for run, history in histories.items()
        for s in history
    ]
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def layers_frame(histories: dict[str, list[Snapshot]]) -> pd.DataFrame:
    rows = [
        (run, s.epoch, int(l), g, s.delta_norm[l], s.weight_norm[l], s.cross_log10[l])
        for run, history in histories.items()
        for s in history
        for l, g in s.grad_w_norm.items()
    ]
    return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))


# --- numbers ------------------------------------------------------------------------------


def ratio_log10(snap: Snapshot, field: str) -> float:
    """log10(‖·^(1)‖ / ‖·^(L−1)‖): first over last hidden layer, as in gradient_flow."""
    values = list(getattr(snap, field).values())
    first, last_hidden = values[0], values[-2]
    return math.log10(first / last_hidden) if first > 0 and last_hidden > 0 else math.nan


def geomean(values) -> float:
    return float(np.exp(np.mean(np.log(list(values)))))


def relative_step(snap: Snapshot) -> float:
    """Geometric mean over layers of α‖∂L/∂W^(l)‖/‖W^(l)‖ on the probe: one step's size."""
    return geomean(LR * snap.grad_w_norm[l] / snap.weight_norm[l] for l in snap.grad_w_norm)


def escape_epoch(history: list[Snapshot], margin: float = 0.05) -> int | None:
    """The first epoch whose training loss is more than `margin` nats below ln 10."""
    for s in history[1:]:
        if s.train_loss < CHANCE_LOSS - margin:
            return s.epoch
    return None


def divergence(a: list[Snapshot], b: list[Snapshot]) -> list[float]:
    """|test loss of a − test loss of b| per epoch."""
    return [abs(x.test_loss - y.test_loss) for x, y in zip(a, b, strict=False)]
