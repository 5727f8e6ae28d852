"""The finite-width report: Hanin's law for per-example δ in ReLU nets, and the residual of the
trajectory theory for gelu against width, with the findings and the README."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.measure.finite_width import HANIN
from experiments.report.common import (
    MEASURED,
    figure,
    findings_and_plots,
    glossary,
    legend_below,
    markdown_table,
    signed,
)
from experiments.report.io import write_png

VARIANTS = {
    "ln_ratio_random": ("δ^(L) = v, drawn independently (the law's setting)", "tab:blue"),
    "ln_ratio_loss": ("δ^(L) = ∂L/∂logits of the cross-entropy", "tab:orange"),
}


def hanin_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, width): β = Σ 1/n_l over the depth − 1 hidden layers, and the mean and
    variance of each log ratio over every network and example."""
    g = rows.groupby(["depth", "width"])
    out = pd.DataFrame({"networks": g["seed"].nunique(), "examples": g.size()})
    for col in VARIANTS:
        out[f"mean_{col}"] = g[col].mean()
        out[f"var_{col}"] = g[col].var(ddof=1)
    out = out.reset_index()
    out["beta"] = (out["depth"] - 1) / out["width"]
    out["law_var"] = HANIN * out["beta"]
    out["law_mean"] = -0.5 * HANIN * out["beta"]
    return out


def plot_hanin(table: pd.DataFrame) -> Figure:
    """Variance and −mean of ln(‖δ^(1)‖²/‖δ^(L)‖²) against β = Σ 1/n_l, beside the law."""
    fig, axes = figure(1, 2, width=5.0, height=3.9)
    a1, a2 = axes.flat
    beta = np.linspace(0, table["beta"].max() * 1.05, 50)
    markers = {d: m for d, m in zip(sorted(table["depth"].unique()), "os^D", strict=False)}
    for col, (label, color) in VARIANTS.items():
        for depth, part in table.groupby("depth"):
            style = {**MEASURED, "ls": "none", "marker": markers[depth]}
            a1.plot(
                part["beta"],
                part[f"var_{col}"],
                color=color,
                **style,
                label=f"{label}, depth {depth}",
            )
            a2.plot(part["beta"], -part[f"mean_{col}"], color=color, **style)
    a1.plot(beta, HANIN * beta, "k--", lw=1, label="law: variance 5 Σ 1/n_l, −mean 2.5 Σ 1/n_l")
    a2.plot(beta, 0.5 * HANIN * beta, "k--", lw=1)
    a1.set(
        xlabel="β = Σ_l 1/n_l over the hidden layers",
        ylabel="variance over examples and nets",
        title="variance of ln(‖δ^(1)‖²/‖δ^(L)‖²)",
    )
    a2.set(
        xlabel="β = Σ_l 1/n_l over the hidden layers",
        ylabel="−mean",
        title="minus the mean of ln(‖δ^(1)‖²/‖δ^(L)‖²)",
    )
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    legend_below(fig, a1, ncols=2)
    fig.suptitle(
        "ReLU, σ_w² = 2, per example: finite-width fluctuations of ‖δ‖² (Hanin 2018)", fontsize=10
    )
    return fig


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
    out: Path, hanin: pd.DataFrame, residual: pd.DataFrame, layers: pd.DataFrame
) -> list[Path]:
    figures = {
        "hanin.png": plot_hanin(hanin_table(hanin)),
        "gelu_residual.png": plot_residual(residual, layers),
    }
    return [write_png(out / name, fig) for name, fig in figures.items()]


def findings(hanin: pd.DataFrame, residual: pd.DataFrame, layers: pd.DataFrame) -> list[str]:
    table = hanin_table(hanin)
    out = []
    ratio_r = table["var_ln_ratio_random"] / table["law_var"]
    ratio_l = table["var_ln_ratio_loss"] / table["law_var"]
    mean_r = (table["mean_ln_ratio_random"] / table["var_ln_ratio_random"]).median()
    mean_l = (table["mean_ln_ratio_loss"] / table["var_ln_ratio_loss"]).median()
    out.append(
        "Per example, ‖δ‖² is not preserved in a critical ReLU net (σ_w² = 2), only its average "
        "is: the variance of ln(‖δ^(1)‖²/‖δ^(L)‖²) grows with β = Σ 1/n_l. With an output "
        f"direction drawn independently of the weights (the law's setting) it is "
        f"{ratio_r.min():.2f}–{ratio_r.max():.2f} × 5β over the {len(table)} (depth, width) "
        f"cells and the mean is {signed(mean_r)} × the variance (median; the law says −½): "
        "Hanin's 5 Σ 1/n_l holds. (5 = 2μ₄ − 1 with μ₄ = E[w⁴]/E[w²]² = 3, Gaussian weights "
        "only: uniform weights, μ₄ = 9/5, would give 2.6 Σ 1/n_l.) With the cross-entropy's "
        "own δ^(L) = p − y it is "
        f"{ratio_l.min():.2f}–{ratio_l.max():.2f} × 5β, mean {signed(mean_l)} × the variance: "
        "p was computed by the same W_L that sends δ back, so the first step is not an "
        "independent projection."
    )
    widest = int(table["width"].max())
    w = table[table["width"] == widest].iloc[-1]
    narrow = table[table["width"] == table["width"].min()].iloc[-1]
    out.append(
        f"At width {widest} and depth {int(w['depth'])} (β = {w['beta']:.3f}) one example's "
        f"‖δ^(1)‖²/‖δ^(L)‖² spreads by a factor e^(±{np.sqrt(w['var_ln_ratio_random']):.2f}) "
        f"(one standard deviation); at width {int(narrow['width'])} by "
        f"e^(±{np.sqrt(narrow['var_ln_ratio_random']):.2f})."
    )
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


def summary(hanin: pd.DataFrame, residual: pd.DataFrame) -> list[str]:
    """The report's first lines, each with its numbers."""
    table = hanin_table(hanin)
    ratio = table["var_ln_ratio_random"] / table["law_var"]
    theory = residual["delta_ratio_log10_theory"]
    gap = residual["delta_ratio_log10"] - theory
    per_example = residual["delta_ratio_log10_median_example"] - theory
    share = residual["top_example_share"]
    return [
        f"- Per example, ‖δ‖² in a critical ReLU net fluctuates as Hanin's law says: the "
        f"variance of its log ratio is {ratio.min():.2f} to {ratio.max():.2f} times "
        f"{HANIN:g} Σ 1/n_l over {len(table)} (depth, width) cells.",
        f"- For gelu + kaiming_normal at depth {int(residual['depth'].iloc[0])}, the batch's "
        f"δ ratio minus the mean-field theory is {signed(float(np.median(gap)))} decades "
        f"(median over {len(residual)} runs); for the median example it is "
        f"{signed(float(np.median(per_example)))}. One example carries a median "
        f"{share.median():.0%} of ‖δ^(1)‖²: the batch norm is a heavy-tailed sum.",
    ]


def readme(
    hanin: pd.DataFrame,
    residual: pd.DataFrame,
    layers: pd.DataFrame,
    figures: Sequence[Path],
    command: str,
    runtime: str,
) -> str:
    table = hanin_table(hanin)
    rows = [
        (
            int(r.depth),
            int(r.width),
            f"{r.beta:.4f}",
            int(r.networks),
            int(r.examples),
            f"{r.var_ln_ratio_random:.3f}",
            f"{r.mean_ln_ratio_random:+.3f}",
            f"{r.var_ln_ratio_loss:.3f}",
            f"{r.mean_ln_ratio_loss:+.3f}",
            f"{r.law_var:.3f}",
            f"{r.law_mean:+.3f}",
        )
        for r in table.itertuples()
    ]
    lines = [
        "# Finite width: what mean-field theory leaves out",
        "",
        "Generated by `experiments/finite_width.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(hanin, residual),
        "",
        *glossary("δ", "decades", "σ_w², σ_b²", "q*", "seeds"),
        "## What was run",
        "",
        f"    {command}",
        "",
        "- Hanin's law (Hanin 2018, \"Which neural net architectures give rise to exploding and "
        'vanishing gradients?"; Hanin & Nica 2018, "Products of many large random matrices '
        'and gradients in deep neural networks"): ReLU nets with kaiming_normal weights '
        "(σ_w² = 2, zero biases), the gradient-flow lab's networks and inputs "
        "(`experiments.measure.flow`), per example n the log ratio "
        "ln(‖δ_n^(1)‖²/‖δ_n^(L)‖²), once with "
        "the cross-entropy's δ^(L) (random labels) and once backpropagating an output "
        "direction v ~ N(0, I) drawn independently (manual_bp's `Network.backward` from "
        "∂L/∂output = v). Law: variance (2μ₄ − 1) Σ 1/n_l = 5 Σ 1/n_l for these Gaussian "
        "weights (μ₄ = 3), mean −½ of that, over the L − 1 hidden layers.",
        "- The trajectory theory's gap for gelu + kaiming_normal: `delta_ratio_log10` minus "
        "`delta_ratio_log10_theory` (as in `reports/gradient_flow/`) against width, and the "
        "measured forward variance q̂^(l+1) = σ_w² E[a^(l)²] beside the mean-field q^(l+1).",
        f"- Runtime: {runtime}",
        "",
        "## Hanin's law, measured",
        "",
        markdown_table(
            [
                "depth",
                "width",
                "β = Σ 1/n_l",
                "networks",
                "examples",
                "var (independent v)",
                "mean (independent v)",
                "var (cross-entropy δ)",
                "mean (cross-entropy δ)",
                "law: var",
                "law: mean",
            ],
            rows,
            "rrrrrrrrrrr",
        ),
        "",
    ]
    captions = {
        "hanin.png": "Variance and mean of the per-example log ratio against Σ 1/n_l.",
        "gelu_residual.png": "gelu + kaiming_normal: the gap against 1/width, and q̂^(l).",
    }
    lines += findings_and_plots(findings(hanin, residual, layers), figures, captions)
    lines += [
        "## Files",
        "",
        "- `hanin.csv`: one row per (depth, width, network, example): `depth`, `width`, `seed`, "
        "`example`, `ln_ratio_loss`, `ln_ratio_random`.",
        "- `gelu_residual.csv`: one row per width and seed: the δ and weight-gradient ratios "
        "and their theory, `delta_ratio_log10_median_example` (the median over examples of "
        "log10 ‖δ_n^(1)‖/‖δ_n^(L−1)‖) and `top_example_share` (the largest example's share "
        "of ‖δ^(1)‖²).",
        "- `gelu_layers.csv`: per width, seed and hidden layer: `q_measured`, `q_theory`.",
        "",
    ]
    return "\n".join(lines)
