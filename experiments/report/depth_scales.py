"""The depth-scales report: ξ_q and ξ_c over σ_w² with the critical line, the trainability
phase diagram with 6ξ_c drawn over it, the findings and the README."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure

from experiments.measure.trainability import Budget
from experiments.report.common import figure, findings_and_plots, glossary, markdown_table
from experiments.report.io import write_png
from experiments.theory import meanfield

#: a cell "trains" when its test accuracy after the budget reaches this (chance is 0.1)
TRAINED = 0.5


def scales_frame(activation: str, sigma_w2: Sequence[float], sigma_b2: float) -> pd.DataFrame:
    """q*, χ1, c*, the c-map's slope χ_c at c*, ξ_q and ξ_c for every σ_w²."""
    rows = []
    for s in sigma_w2:
        d = meanfield.depth_scales(activation, float(s), sigma_b2)
        rows.append(
            {
                "sigma_w2": float(s),
                "sigma_b2": sigma_b2,
                "q_star": d.q_star,
                "chi1": d.chi1,
                "c_star": d.c_star,
                "chi_c": d.chi_c,
                "xi_q": d.xi_q,
                "xi_c": d.xi_c,
            }
        )
    return pd.DataFrame(rows)


def plot_scales(scales: pd.DataFrame, critical: float) -> Figure:
    """ξ_q and ξ_c against σ_w² (log y), and χ1 and c*; the critical line where χ1 = 1."""
    fig, axes = figure(1, 2, width=5.2, height=3.9)
    a1, a2 = axes.flat
    sigma, xi_c = divergent_xi_c(scales, critical)
    a1.semilogy(sigma, xi_c, color="tab:blue", lw=1.6, label="ξ_c = −1/ln χ_c(c*)")
    a1.annotate(
        "ξ_c → ∞ at the critical line\n(a divergence, ∝ 1/|σ_w² − σ_w²*|;\nit leaves the axes)",
        xy=(critical, 1e3),
        xytext=(critical + 0.45, 40),
        fontsize=7,
        arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 0.8},
    )
    a1.semilogy(
        scales["sigma_w2"],
        scales["xi_q"],
        color="tab:orange",
        lw=1.6,
        label="ξ_q = −1/ln (d map/dq at q*)",
    )
    a1.set(xlabel="σ_w²", ylabel="depth scale (layers)")
    a1.set_ylim(0.5, 1e3)
    a2.plot(scales["sigma_w2"], scales["chi1"], color="k", lw=1.4, label="χ1 = σ_w² E[φ′(√q* z)²]")
    a2.plot(
        scales["sigma_w2"],
        scales["c_star"],
        color="tab:green",
        lw=1.4,
        label="c*, the c-map's fixed point",
    )
    a2.axhline(1.0, color="0.6", lw=0.8)
    a2.set(xlabel="σ_w²", ylabel="χ1 and c*")
    for ax in (a1, a2):
        ax.axvline(
            critical, color="r", ls=":", lw=1.2, label=f"critical line σ_w² = {critical:.3f}"
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="center right" if ax is a2 else "upper right")
    sb2 = scales["sigma_b2"].iloc[0]
    fig.suptitle(
        f"tanh, σ_b² = {sb2:g}: depth scales of the mean-field maps (Schoenholz et al. 2017)",
        fontsize=10,
    )
    return fig


def divergent_xi_c(scales: pd.DataFrame, critical: float) -> tuple[np.ndarray, np.ndarray]:
    """ξ_c over the grid, with points approaching the critical line from both sides (down to
    10⁻⁶ away) and a break (NaN) on it: drawn from the grid alone, the divergence would look
    like a finite peak whose height is set by how close a grid point happens to fall."""
    sb2 = float(scales["sigma_b2"].iloc[0])
    lo, hi = float(scales["sigma_w2"].min()), float(scales["sigma_w2"].max())
    near = [critical + sign * 10.0**-k for k in range(1, 7) for sign in (-1.0, 1.0)]
    near = [s for s in near if lo < s < hi]
    extra = {s: meanfield.depth_scales("tanh", s, sb2).xi_c for s in near}
    points = dict(zip(scales["sigma_w2"], scales["xi_c"], strict=True)) | extra
    points[critical] = np.nan
    sigma = np.array(sorted(points))
    return sigma, np.array([points[s] for s in sigma])


def plot_phase_diagram(
    cells: pd.DataFrame, scales: pd.DataFrame, critical: float, budget: Budget
) -> Figure:
    """Test accuracy over (σ_w², depth) with 6ξ_c (and ξ_c) drawn over it."""
    grid = cells.groupby(["depth", "sigma_w2"])["test_acc"].mean().unstack()
    depths, sigmas = grid.index.to_numpy(), grid.columns.to_numpy()
    fig, axes = figure(1, 1, width=7.0, height=4.8)
    ax = axes[0, 0]
    x_edges = _edges(sigmas)
    y_edges = _edges(np.log2(depths))
    levels = np.linspace(0.0, 1.0, 11)
    image = ax.pcolormesh(
        x_edges,
        2.0**y_edges,
        grid.to_numpy(),
        cmap="viridis",
        norm=BoundaryNorm(levels, 256),
        shading="flat",
    )
    bad = cells[cells["diverged"] == 1]
    if len(bad):
        ax.plot(bad["sigma_w2"], bad["depth"], "rx", ms=6, label="diverged (loss not finite)")
    curve = scales[(scales["sigma_w2"] >= x_edges[0]) & (scales["sigma_w2"] <= x_edges[-1])]
    ax.plot(curve["sigma_w2"], 6 * curve["xi_c"], color="w", lw=2.0, label="6 ξ_c")
    ax.plot(curve["sigma_w2"], curve["xi_c"], color="w", lw=1.2, ls="--", label="ξ_c")
    ax.axvline(critical, color="r", ls=":", lw=1.2, label=f"critical σ_w² = {critical:.3f}")
    ax.set_yscale("log", base=2)
    ax.set_ylim(2.0 ** y_edges[0], 2.0 ** y_edges[-1])
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set(xlabel=f"σ_w² (σ_b² = {budget.sigma_b2:g})", ylabel="depth (Linear layers)")
    seeds = cells["seed"].nunique()
    fig.colorbar(
        image, ax=ax, label=f"test accuracy after {budget.steps} SGD steps (mean of {seeds} seeds)"
    )
    ax.legend(fontsize=7, loc="upper left", facecolor="0.85", framealpha=0.9)
    fig.suptitle(
        f"Trainability of {budget.activation} MLPs on the 8×8 digits: width "
        f"{budget.width}, lr {budget.lr}, batch {budget.batch}, {budget.steps} steps",
        fontsize=10,
    )
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between centres (extrapolated at both ends)."""
    c = np.asarray(centres, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def write_figures(
    out: Path, cells: pd.DataFrame, scales: pd.DataFrame, critical: float, budget: Budget
) -> list[Path]:
    figures = {
        "depth_scales.png": plot_scales(scales, critical),
        "trainability.png": plot_phase_diagram(cells, scales, critical, budget),
    }
    return [write_png(out / name, fig) for name, fig in figures.items()]


# --- numbers and the README --------------------------------------------------------------


def deepest_trained(cells: pd.DataFrame) -> pd.Series:
    """Per σ_w²: the largest depth whose cell reaches TRAINED accuracy (0 if none)."""
    ok = cells[cells["test_acc"] >= TRAINED]
    return (
        ok.groupby("sigma_w2")["depth"]
        .max()
        .reindex(sorted(cells["sigma_w2"].unique()), fill_value=0)
    )


def agreement(cells: pd.DataFrame, xi_c: pd.Series) -> dict[str, int]:
    """How many cells below / above 6ξ_c trained (accuracy ≥ TRAINED)."""
    limit = cells["sigma_w2"].map(6 * xi_c)
    trained = cells["test_acc"] >= TRAINED
    below = cells["depth"] < limit
    return {
        "below": int(below.sum()),
        "below_trained": int((below & trained).sum()),
        "above": int((~below).sum()),
        "above_trained": int((~below & trained).sum()),
    }


def summary(
    cells: pd.DataFrame, grid_scales: pd.DataFrame, critical: float, budget: Budget
) -> list[str]:
    """The report's first lines, each with its numbers."""
    xi = grid_scales.set_index("sigma_w2")["xi_c"]
    a = agreement(cells, xi)
    seeds = cells["seed"].nunique()
    trained = (cells["test_acc"] >= TRAINED).groupby([cells["sigma_w2"], cells["depth"]])
    split = trained.nunique()
    split = split[split > 1]
    disagree, n_cells = len(split), trained.ngroups
    where = [d / (6 * xi[s]) for s, d in split.index]
    near = f", at depth / 6ξ_c from {min(where):.2f} to {max(where):.2f}" if where else ""
    return [
        f"- For tanh with σ_b² = {grid_scales['sigma_b2'].iloc[0]:g}, the edge of chaos is at "
        f"σ_w² = {critical:.4f}; there the correlation depth scale ξ_c diverges, and it falls "
        "to a few layers on either side.",
        f"- Trainability after {budget.steps} SGD steps follows ξ_c's shape: of the "
        f"{a['below']} runs shallower than 6ξ_c, {a['below_trained']} reach test accuracy "
        f"{TRAINED}; of the {a['above']} deeper ones, {a['above_trained']} ({seeds} "
        f"seed{'s' if seeds > 1 else ''} per cell).",
        f"- The seeds disagree on {disagree} of {n_cells} cells{near}: a single cell may "
        "train or not with another seed or machine; the frontier's shape over the grid is "
        "the claim.",
    ]


def findings(
    cells: pd.DataFrame, grid_scales: pd.DataFrame, critical: float, budget: Budget
) -> list[str]:
    xi = grid_scales.set_index("sigma_w2")["xi_c"]
    out = []
    c_lo = grid_scales.iloc[(grid_scales["sigma_w2"] - 1.0).abs().argmin()]
    c_hi = grid_scales.iloc[(grid_scales["sigma_w2"] - 3.0).abs().argmin()]
    out.append(
        f"The critical line at σ_b² = {grid_scales['sigma_b2'].iloc[0]:g} sits at σ_w² = "
        f"{critical:.4f} (χ1 = 1, by brentq on the mean-field χ1): ξ_c diverges there and "
        f"falls off on both sides, to {c_lo['xi_c']:.2f} layers at σ_w² = {c_lo['sigma_w2']:g} "
        f"(ordered, c* = 1, ξ_c = −1/ln χ1) and {c_hi['xi_c']:.2f} at σ_w² = "
        f"{c_hi['sigma_w2']:g} (chaotic, c* = {c_hi['c_star']:.3f}). ξ_q stays between "
        f"{grid_scales['xi_q'].min():.2f} and {grid_scales['xi_q'].max():.2f} layers: the "
        "length of a signal (its variance q) settles within a few layers everywhere; the "
        "correlation between two inputs lives on for many layers only near criticality "
        "(Schoenholz et al. 2017)."
    )
    deepest = deepest_trained(cells)
    a = agreement(cells, xi)
    parts = [f"σ_w² = {s:g}: {int(d)} (6ξ_c = {6 * xi[s]:.0f})" for s, d in deepest.items()]
    out.append(
        f"Deepest cell reaching test accuracy {TRAINED} in any seed after {budget.steps} steps, "
        "per σ_w²: " + "; ".join(parts) + "."
    )
    out.append(
        f"Of the {a['below']} runs (cell and seed) shallower than 6ξ_c, {a['below_trained']} "
        f"trained; of the "
        f"{a['above']} deeper ones, {a['above_trained']}. The trainable region follows the "
        "shape of ξ_c (deepest near the critical line, shallow on both sides), but with a "
        f"budget of {budget.steps} plain-SGD steps it ends well inside 6ξ_c near criticality, "
        "where ξ_c is largest: Schoenholz et al.'s 6ξ_c is a bound on what can train, and "
        "how close a fixed budget gets to it depends on the optimiser and the steps."
    )
    div = cells[cells["diverged"] == 1]
    if len(div):
        out.append(
            f"{len(div)} cells diverged (loss not finite), all at σ_w² ≥ {div['sigma_w2'].min():g}."
        )
    return out


def readme(
    cells: pd.DataFrame,
    scales: pd.DataFrame,
    grid_scales: pd.DataFrame,
    critical: float,
    budget: Budget,
    n_train: int,
    figures: Sequence[Path],
    command: str,
    runtime: str,
) -> str:
    sigmas = sorted(cells["sigma_w2"].unique())
    depths = sorted(cells["depth"].unique())
    table = grid_scales.copy()
    lines = [
        "# Depth scales and trainability: ξ_q, ξ_c and how deep SGD can go",
        "",
        "Generated by `experiments/depth_scales.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(cells, grid_scales, critical, budget),
        "",
        *glossary("σ_w², σ_b²", "q*", "χ1", "c-map", "ξ", "edge of chaos"),
        "## What was run",
        "",
        f"    {command}",
        "",
        f"- Theory (`experiments.theory.meanfield.depth_scales`): for {budget.activation} at "
        f"σ_b² = {budget.sigma_b2:g}, the variance fixed point q* (brentq), χ1, the fixed point "
        "c* of the correlation map c^(l+1) = (σ_w² E[φ(u1)φ(u2)] + σ_b²)/q* (a 2-d "
        "Gauss–Hermite rule), its slope χ_c at c*, and the depth scales ξ_q = −1/ln(d map/dq "
        'at q*) and ξ_c = −1/ln χ_c (Schoenholz et al. 2017, "Deep information propagation"), '
        f"over σ_w² from {scales['sigma_w2'].min():g} to {scales['sigma_w2'].max():g}.",
        f"- Trainability: {budget.activation} MLPs on scikit-learn's 8×8 digits ({n_train} "
        f"training images, standardised), width {budget.width}, weights N(0, σ_w²/fan_in), "
        f"biases N(0, {budget.sigma_b2:g}), plain SGD (lr {budget.lr}, batch {budget.batch}) "
        f"for {budget.steps} steps, then the test accuracy; one network per cell, σ_w² ∈ "
        f"{{{', '.join(f'{s:g}' for s in sigmas)}}} × depth ∈ {{{', '.join(map(str, depths))}}}"
        f" = {len(cells)} cells on the process pool of `experiments.measure.runner`.",
        f"- Runtime: {runtime}",
        "",
        "## Depth scales at the trained σ_w²",
        "",
        markdown_table(
            ["σ_w²", "q*", "χ1", "c*", "ξ_q", "ξ_c", "6 ξ_c"],
            [
                (
                    f"{r.sigma_w2:g}",
                    f"{r.q_star:.4f}",
                    f"{r.chi1:.4f}",
                    f"{r.c_star:.4f}",
                    f"{r.xi_q:.2f}",
                    f"{r.xi_c:.2f}",
                    f"{6 * r.xi_c:.1f}",
                )
                for r in table.itertuples()
            ],
            "rrrrrrr",
        ),
        "",
    ]
    captions = {
        "depth_scales.png": "ξ_q, ξ_c, χ1 and c* against σ_w², with the critical line.",
        "trainability.png": "Test accuracy over (σ_w², depth) with 6ξ_c drawn over it.",
    }
    lines += findings_and_plots(findings(cells, grid_scales, critical, budget), figures, captions)
    lines += [
        "## Files",
        "",
        "- `depth_scales.csv`: `sigma_w2`, `sigma_b2`, `q_star`, `chi1`, `c_star`, `chi_c`, "
        "`xi_q`, `xi_c` on a fine σ_w² grid.",
        "- `trainability.csv`: one row per cell: `sigma_w2`, `depth`, `seed`, `steps`, "
        "`test_loss`, `test_acc`, `diverged`.",
        "",
    ]
    return "\n".join(lines)


def critical_line(activation: str, sigma_b2: float) -> float:
    return meanfield.critical_sigma_w2(activation, sigma_b2)
