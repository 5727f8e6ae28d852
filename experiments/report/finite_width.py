"""The finite-width report: Hanin's law for per-example δ in ReLU nets, and the residual of the
trajectory theory for gelu against width, with the findings and the README."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.report import hanin
from experiments.report.common import (
    MEASURED,
    figure,
    findings_and_plots,
    glossary,
    markdown_table,
    signed,
)
from experiments.report.io import write_png


def plot_residual(residual: pd.DataFrame, layers: pd.DataFrame) -> Figure:
    """Left: measured − theory of the δ ratio against 1/width (per seed and mean), log-log.
    Right: the measured q̂^(l) against the mean-field q^(l), per width (seed 0)."""
    fig, axes = figure(1, 2, width=5.2, height=4.0)
    a1, a2 = axes.flat
    residual = residual.assign(
        r=residual["delta_ratio_log10"] - residual["delta_ratio_log10_theory"]
    )
    residual = residual.assign(
        m=residual["delta_ratio_log10_median_example"] - residual["delta_ratio_log10_theory"]
    )
    mean = residual.groupby("width")[["r", "m"]].mean()
    x = 1.0 / residual["width"]
    a1.plot(x * 0.97, residual["r"], "o", color="tab:orange", alpha=0.6, ms=5,
            label="batch ‖δ‖_F ratio, one seed")  # fmt: skip
    a1.plot(x * 1.03, residual["m"], "s", color="tab:blue", alpha=0.6, ms=4,
            label="median over examples of the per-example ratio, one seed")  # fmt: skip
    a1.plot(1.0 / mean.index, mean["r"].to_numpy(), color="tab:orange", **MEASURED,
            label="batch: mean over seeds")  # fmt: skip
    a1.plot(1.0 / mean.index, mean["m"].to_numpy(), color="tab:blue", **MEASURED,
            label="per-example median: mean over seeds")  # fmt: skip
    a1.axhline(0.0, color="k", lw=0.8)
    a1.set_xscale("log", base=2)
    a1.set_xticks(1.0 / mean.index.to_numpy(), [f"1/{w}" for w in mean.index])
    a1.minorticks_off()
    a1.set(
        xlabel="1 / width",
        ylabel="measured − theory [decades]",
        title="δ ratio: the gap against width",
    )
    a1.grid(alpha=0.3)
    a1.legend(fontsize=7, loc="upper left")
    first = layers[layers["seed"] == layers["seed"].min()]
    cmap = {
        w: c
        for w, c in zip(
            sorted(first["width"].unique()),
            ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple"),
            strict=False,
        )
    }
    for width, part in first.groupby("width"):
        a2.semilogy(
            part["layer"] + 1,
            part["q_measured"],
            color=cmap[width],
            lw=1.3,
            label=f"measured q̂, width {width}",
        )
    theory = first[first["width"] == first["width"].max()]
    a2.semilogy(theory["layer"] + 1, theory["q_theory"], "k--", lw=1.2, label="mean-field q^(l)")
    a2.set(
        xlabel="layer l",
        ylabel="pre-activation variance q^(l)",
        title="the forward variance, seed 0",
    )
    a2.grid(alpha=0.3)
    a2.legend(fontsize=7, loc="lower left")
    depth = int(residual["depth"].iloc[0])
    fig.suptitle(
        f"gelu + kaiming_normal (σ_w² = 2), depth {depth}: the trajectory theory's gap, "
        "batch norm against per example",
        fontsize=10,
    )
    return fig


def write_figures(
    out: Path, rows: pd.DataFrame, residual: pd.DataFrame, layers: pd.DataFrame
) -> list[Path]:
    figures = {**hanin.figures(rows), "gelu_residual.png": plot_residual(residual, layers)}
    return [write_png(out / name, fig) for name, fig in figures.items()]


def findings(residual: pd.DataFrame, layers: pd.DataFrame) -> list[str]:
    """The gelu findings (the Hanin ones are `hanin.findings`)."""
    out = []
    theory = residual["delta_ratio_log10_theory"]
    r = residual.assign(
        r=residual["delta_ratio_log10"] - theory,
        m=residual["delta_ratio_log10_median_example"] - theory,
    )
    n_seeds = r["seed"].nunique()

    def per_width(col: str) -> str:
        by = r.groupby("width")[col].agg(["mean", "min", "max"])
        return "; ".join(
            f"width {wd}: {signed(row['mean'])} ({signed(row['min'])} to {signed(row['max'])})"
            for wd, row in by.iterrows()
        )

    means = r.groupby("width")["r"].mean().to_numpy()
    monotone = bool(np.all(np.diff(means) < 0))
    above = int((r["r"] > 0).sum())
    out.append(
        f"**gelu + kaiming_normal at depth {int(r['depth'].iloc[0])}: the batch ratio lies "
        f"above the theory in {above} of {len(r)} runs ({n_seeds} seeds per width).** "
        f"Measured − theory of `delta_ratio_log10`, in decades, mean (seed range): "
        f"{per_width('r')}. "
        + (
            "The mean gap falls with every doubling of the width."
            if monotone
            else "The mean gap does not fall with every doubling of the width; with "
            f"{n_seeds} seeds no 1/width law can be read off it."
        )
    )
    share = r["top_example_share"]
    out.append(
        "**The batch norm is a heavy-tailed sum.** ‖δ^(1)‖_F² over the batch is dominated by "
        f"a few examples: the largest single example's share is {share.median():.2f} "
        f"(median over the {len(r)} runs; {int((share > 0.5).sum())} runs above one half, "
        f"largest {share.max():.3f}). The median over examples of the per-example ratio "
        f"log10 ‖δ_n^(1)‖/‖δ_n^(L−1)‖ lies much closer to the theory: {per_width('m')}. So "
        "much of the batch gap is a few examples whose δ did not shrink: the batch ratio "
        "depends on which examples the batch holds (how it changes with the batch size is "
        "not measured here). The same caveat applies to gelu's rows in "
        "`reports/gradient_flow/`."
    )
    first = layers[layers["seed"] == layers["seed"].min()]
    last = first["layer"].max()
    ends = first[first["layer"] == last].set_index("width")
    q_parts = ", ".join(f"{ends.loc[wd, 'q_measured']:.1e} at width {wd}" for wd in ends.index)
    out.append(
        f"The mechanism shows in the forward variance: the mean-field q^(l) falls to "
        f"{ends['q_theory'].iloc[0]:.1e} by layer {last + 1}, the measured q̂ to {q_parts} "
        "(seed 0). gelu's map(q)/q creeps towards 1 at large q, where gelu looks like relu, so "
        "the drift towards q* = 0 is weak at first, and the multiplicative noise of a finite "
        "layer (variance ~ 1/n per layer, as above) lets q̂ wander; where it stays large, "
        "gelu′ ≈ relu′ and δ stops shrinking by ½ per layer."
    )
    return out


def summary(rows: pd.DataFrame, residual: pd.DataFrame) -> list[str]:
    """The report's first lines, each with its numbers."""
    theory = residual["delta_ratio_log10_theory"]
    gap = residual["delta_ratio_log10"] - theory
    per_example = residual["delta_ratio_log10_median_example"] - theory
    share = residual["top_example_share"]
    return [
        hanin.summary(rows),
        f"- For gelu + kaiming_normal at depth {int(residual['depth'].iloc[0])}, the batch's "
        f"δ ratio minus the mean-field theory is {signed(float(np.median(gap)))} decades "
        f"(median over {len(residual)} runs, {residual['seed'].nunique()} seeds per width); for "
        f"the median example it is {signed(float(np.median(per_example)))}. One example "
        f"carries a median {share.median():.0%} of ‖δ^(1)‖²: the batch norm is a heavy-tailed "
        "sum.",
    ]


def readme(
    rows: pd.DataFrame,
    step: pd.DataFrame,
    residual: pd.DataFrame,
    layers: pd.DataFrame,
    figures: Sequence[Path],
    command: str,
    runtime: str,
) -> str:
    lines = [
        "# Finite width: what mean-field theory leaves out",
        "",
        "Generated by `experiments/finite_width.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(rows, residual),
        "",
        *glossary("δ", "decades", "σ_w², σ_b²", "q*", "seeds"),
        "## What was run",
        "",
        f"    {command}",
        "",
        "- Hanin's law (Hanin 2018, arXiv:1801.03744; Hanin & Nica 2019, arXiv:1812.05994): "
        "bias-free ReLU nets at σ_w² = 2 with Gaussian (kaiming_normal) or uniform "
        "(kaiming_uniform) weights, the gradient-flow lab's networks and inputs; per example "
        "ln(‖δ_n^(1)‖²/‖δ_n^(L)‖²) from manual_bp's backward with δ^(L) = v ~ N(0, I), with "
        "the cross-entropy's δ^(L), and with a one-hot δ^(L). Networks are seeds 0, 1, …; "
        f"intervals are 95 % bootstraps over networks ({hanin.BOOTSTRAP} resamples).",
        "- One step (depth 2): n·Var(r) against the exact 5 + 2(μ₄ − 3)ℓ.",
        "- gelu + kaiming_normal: `delta_ratio_log10` minus its trajectory theory (as in "
        "`reports/gradient_flow/`) against width, and the measured q̂^(l+1) = σ_w² E[a^(l)²] "
        "beside the mean-field q^(l+1).",
        f"- Runtime: {runtime}",
        "",
        "## Hanin's law, measured",
        "",
        markdown_table(hanin.HEADER, hanin.markdown_rows(rows), "lrrrrrrrrrrrr"),
        "",
    ]
    captions = {
        "hanin.png": "Variance and mean of the per-example log ratio against Σ 1/n_l, Gaussian "
        "and uniform weights, and the batch ratio beside the median example.",
        "hanin_qq.png": "QQ plots of the per-example log ratio at the largest and smallest β.",
        "gelu_residual.png": "gelu + kaiming_normal: the gap against 1/width, and q̂^(l).",
    }
    found = hanin.findings(rows, step) + findings(residual, layers)
    lines += findings_and_plots(found, figures, captions)
    lines += [
        "## Files",
        "",
        "- `hanin_cells.csv`: one row per (weights, depth, width) over every example of every "
        "network the findings use: `networks`, `examples`, and the `_mean`, `_var` (ddof = 1) "
        "and `_median` of each per-example column below.",
        "- `hanin.csv`: a sample, the examples of networks (seeds) 0–7 of each cell: one row "
        "per (weights, depth, width, network, example): `weights`, `depth`, `width`, `seed`, "
        "`example`, `ln_ratio_loss`, `ln_ratio_random`, `ln_ratio_onehot`, `ln_last_random` "
        "(ln ‖δ^(L)‖² of the random direction), 5 significant digits.",
        "- `hanin_step.csv`: the same columns for the one-step (depth 2) networks, seeds 0–49.",
        "- `gelu_residual.csv`: one row per width and seed: the δ and weight-gradient ratios "
        "and their theory, `delta_ratio_log10_median_example` (the median over examples of "
        "log10 ‖δ_n^(1)‖/‖δ_n^(L−1)‖) and `top_example_share` (the largest example's share "
        "of ‖δ^(1)‖²).",
        "- `gelu_layers.csv`: per width, seed and hidden layer: `q_measured`, `q_theory`.",
        "",
    ]
    return "\n".join(lines)
