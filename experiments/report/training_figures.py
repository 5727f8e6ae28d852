"""The training report's figures, one function per figure (see training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments.measure.train import Snapshot
from experiments.report.common import (
    MEASURED,
    figure,
    legend_below,
)
from experiments.report.io import write_png
from experiments.report.training_runs import (
    BATCH,
    CHANCE_LOSS,
    COMPARISONS,
    GRADIENT_RUNS,
    LR,
    N_CLASSES,
    PROBE,
    RUNS,
    STYLES,
    divergence,
    geomean,
)

# --- figures ------------------------------------------------------------------------------


def plot_curves(histories: dict[str, list[Snapshot]], name: str) -> Figure:
    """Loss and accuracy against epoch, train solid and test dashed, per run."""
    title, runs = COMPARISONS[name]
    fig, axes = figure(1, 2, width=5.4, height=3.8)
    ax_loss, ax_acc = axes.flat
    for run in runs:
        h, style = histories[run], STYLES[run]
        epochs = [s.epoch for s in h]
        label = RUNS[run].label()
        ax_loss.plot(epochs, [s.train_loss for s in h], **style, label=f"{label}: train")
        ax_loss.plot(
            epochs, [s.test_loss for s in h], **{**style, "ls": "--"}, label=f"{label}: test"
        )
        ax_acc.plot(epochs, [s.train_acc for s in h], **style, label=f"{label}: train")
        ax_acc.plot(
            epochs, [s.test_acc for s in h], **{**style, "ls": "--"}, label=f"{label}: test"
        )
    ax_loss.axhline(CHANCE_LOSS, color="grey", lw=0.8, ls=":", label="chance: ln 10, 0.1")
    ax_acc.axhline(1 / N_CLASSES, color="grey", lw=0.8, ls=":")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss (nats)", title="loss")
    ax_acc.set(
        xlabel="epoch", ylabel="accuracy (fraction correct)", title="accuracy", ylim=(0, 1.02)
    )
    legend_below(fig, ax_loss, ncols=2)
    fig.suptitle(f"{title} (SGD, lr {LR}, batch {BATCH}, digits 8×8)", fontsize=10)
    return fig


def plot_homogeneity(histories: dict[str, list[Snapshot]]) -> Figure:
    """The rescaled Xavier run against the Kaiming run: their test losses and |difference|."""
    kai, res = histories["relu30_kaiming"], histories["relu30_xavier_rescaled"]
    xav = histories["relu30_xavier"]
    fig, axes = figure(1, 2, width=5.2, height=3.8)
    a1, a2 = axes.flat
    for run, h in (
        ("relu30_kaiming", kai),
        ("relu30_xavier", xav),
        ("relu30_xavier_rescaled", res),
    ):
        a1.plot(
            [s.epoch for s in h], [s.test_loss for s in h], **STYLES[run], label=RUNS[run].label()
        )
    a1.set(xlabel="epoch", ylabel="test loss (nats)", title="test loss")
    diff = np.maximum(divergence(res, kai), 1e-17)
    a2.semilogy(
        [s.epoch for s in kai[: len(diff)]],
        diff,
        color="k",
        **MEASURED,
        label="|test loss, rescaled Xavier − Kaiming|",
    )
    a2.axhline(
        np.finfo(float).eps * CHANCE_LOSS,
        color="grey",
        ls=":",
        lw=0.8,
        label="one rounding step of ln 10 (2.2e-16 · ln 10)",
    )
    a2.set(
        xlabel="epoch",
        ylabel="nats (log scale)",
        title="the two runs differ by rounding, amplified by SGD",
    )
    a2.grid(alpha=0.3, which="both")
    legend_below(fig, a1, ncols=3)
    a2.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "Positive homogeneity: Xavier ReLU-30 is Kaiming ReLU-30 in other coordinates", fontsize=10
    )
    return fig


def plot_plateau(histories: dict[str, list[Snapshot]]) -> Figure:
    """The Xavier ReLU-30 run: training loss and the geometric-mean ‖∂L/∂W^(l)‖ over epochs."""
    h = histories["relu30_xavier"]
    epochs = [s.epoch for s in h]
    fig, axes = figure(1, 1, width=6.4, height=3.8)
    ax = axes[0, 0]
    ax.plot(epochs, [s.train_loss for s in h], color="tab:red", label="training loss (left)")
    ax.axhline(CHANCE_LOSS, color="grey", lw=0.8, ls=":", label="ln 10")
    ax.set(xlabel="epoch", ylabel="training loss (nats)")
    twin = ax.twinx()
    twin.semilogy(
        epochs,
        [geomean(s.grad_w_norm.values()) for s in h],
        color="tab:blue",
        label="geometric mean of ‖∂L/∂W^(l)‖ over layers (right)",
    )
    twin.set_ylabel("‖∂L/∂W^(l)‖, probe (log scale)")
    handles = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    fig.legend(
        handles[0] + extra[0],
        handles[1] + extra[1],
        loc="outside lower center",
        ncols=3,
        fontsize=7,
        frameon=False,
    )
    ax.set_title("relu, xavier_normal, depth 30: the small-initialisation plateau", fontsize=10)
    return fig


def plot_heatmaps(histories: dict[str, list[Snapshot]]) -> Figure:
    """log10 ‖∂L/∂W^(l)‖ over (epoch, layer), one panel per run, one colour scale."""
    grids = {}
    for run in GRADIENT_RUNS:
        history = histories[run]
        layers = list(history[0].grad_w_norm)
        grid = np.array([[s.grad_w_norm[l] for s in history] for l in layers])
        grids[run] = np.log10(np.maximum(grid, 1e-300))
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    vmin, vmax = np.floor(finite.min()), np.ceil(finite.max())
    fig, axes = figure(1, len(grids), width=3.0, height=3.6)
    image = None
    for ax, (run, grid) in zip(axes.flat, grids.items(), strict=True):
        epochs = [s.epoch for s in histories[run]]
        image = ax.imshow(
            grid,
            aspect="auto",
            origin="lower",
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            extent=(epochs[0] - 0.5, epochs[-1] + 0.5, 0.5, grid.shape[0] + 0.5),
        )
        ax.set_title(RUNS[run].label().replace(", rescaled", ",\nrescaled"), fontsize=8)
        ax.set(xlabel="epoch", ylabel="layer l (1 = input side)")
    fig.colorbar(image, ax=list(axes.flat), label=f"log10 ‖∂L/∂W^(l)‖ (probe of {PROBE} rows)")
    fig.suptitle("Per-layer weight-gradient norm over training", fontsize=10)
    return fig


def plot_by_layer(histories: dict[str, list[Snapshot]]) -> Figure:
    """‖∂L/∂W^(l)‖ and ‖δ^(l)‖ against layer, at initialisation and after the last epoch."""
    groups = {
        "10 layers, xavier_normal: sigmoid vs relu": ("sigmoid10_xavier", "relu10_xavier"),
        "30 ReLU layers: kaiming_normal vs xavier_normal": ("relu30_kaiming", "relu30_xavier"),
    }
    fig, axes = figure(2, len(groups), width=5.0, height=3.4)
    quantities = (("grad_w_norm", "‖∂L/∂W^(l)‖"), ("delta_norm", "‖δ^(l)‖ = ‖∂L/∂z^(l)‖"))
    for col, (title, runs) in enumerate(groups.items()):
        for row, (field, label) in enumerate(quantities):
            ax = axes[row, col]
            for run in runs:
                first, last = histories[run][0], histories[run][-1]
                for snap, ls in ((first, "--"), (last, "-")):
                    values = getattr(snap, field)
                    style = {**STYLES[run], "ls": ls}
                    ax.semilogy(
                        [int(l) for l in values],
                        list(values.values()),
                        **style,
                        label=f"{RUNS[run].label()}, epoch {snap.epoch}",
                    )
            ax.set(xlabel="layer l (1 = input side)", ylabel=f"{label} (probe)")
            ax.set_title(title if row == 0 else "", fontsize=9)
            ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes[0]:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    fig.suptitle(
        "Gradient norms by layer: dashed at initialisation, solid after training", fontsize=10
    )
    return fig


def write_figures(out: Path, histories: dict[str, list[Snapshot]]) -> list[Path]:
    figures = {f"curves_{name}.png": plot_curves(histories, name) for name in COMPARISONS}
    figures["homogeneity.png"] = plot_homogeneity(histories)
    figures["plateau.png"] = plot_plateau(histories)
    figures["grad_norms_heatmap.png"] = plot_heatmaps(histories)
    figures["grad_norms_by_layer.png"] = plot_by_layer(histories)
    return [write_png(out / name, fig) for name, fig in figures.items()]
