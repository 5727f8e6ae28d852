"""The gradient-flow report's figures, one function per figure (see gradient_flow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from experiments.measure import flow
from experiments.measure.sweep import Sweep
from experiments.report.common import (
    MEASURED,
    THEORY,
    colors,
    figure,
    legend_below,
    panels,
    signed,
)
from experiments.report.gradient_flow_numbers import (
    LINESTYLES,
    RATIOS,
    _deep,
    critical_line,
    tanh_power_law,
)
from experiments.theory import meanfield

# --- figures ----------------------------------------------------------------------------


def plot_norm_by_layer(layers: pd.DataFrame, sweep: Sweep, column: str) -> Figure:
    """‖δ^(l)‖ or ‖∂L/∂W^(l)‖ by layer at the deepest depth: a panel per activation, a line
    per init (geometric mean over seeds)."""
    label = {"delta_norm": "‖δ^(l)‖ = ‖∂L/∂z^(l)‖", "grad_w_norm": "‖∂L/∂W^(l)‖"}[column]
    deep = _deep(layers, sweep).copy()
    with np.errstate(divide="ignore"):
        deep["log"] = np.log10(deep[column])
    palette = colors(sweep.inits)
    styles = {init: LINESTYLES[k % len(LINESTYLES)] for k, init in enumerate(sweep.inits)}
    fig, axes = panels(len(sweep.activations), width=3.6, height=2.9)
    for ax, act in zip(axes, sweep.activations, strict=True):
        for init in sweep.inits:
            rows = deep[(deep["activation"] == act) & (deep["init"] == init)]
            curve = rows.groupby("layer")["log"].mean()
            ax.plot(
                curve.index,
                10.0**curve.values,
                color=palette[init],
                lw=1.5,
                ls=styles[init],
                label=init,
            )
        ax.set_yscale("log")
        ax.set_title(act, fontsize=10)
        ax.set_xlabel("layer l (1 = first hidden)")
        ax.set_ylabel(f"{label} (Frobenius, batch)", fontsize=8)
        ax.grid(alpha=0.3)
    legend_below(fig, axes[0], ncols=len(sweep.inits))
    fig.suptitle(
        f"{label} through depth {max(sweep.depths)}, width {max(sweep.widths)} "
        f"(geometric mean over {len(sweep.seeds)} seed(s))"
    )
    return fig


def plot_ratio_heatmap(grid: pd.DataFrame, sweep: Sweep) -> Figure:
    """Both ratios over activation × init at the deepest depth: measured (theory)."""
    depth, width = max(sweep.depths), max(sweep.widths)
    at = grid[(grid["depth"] == depth) & (grid["width"] == width)]
    acts, inits = list(sweep.activations), list(sweep.inits)
    fig, axes = figure(1, 2, width=1.3 * len(inits) + 2.4, height=0.55 * len(acts) + 2.2)
    for ax, key in zip(axes.flat, ("grad", "delta"), strict=True):
        column, formula, what = RATIOS[key]
        cells = at.groupby(["activation", "init"])[[column, f"{column}_theory"]].mean()
        measured = np.full((len(acts), len(inits)), np.nan)
        theory = np.full_like(measured, np.nan)
        for (act, init), row in cells.iterrows():
            if act in acts and init in inits:
                measured[acts.index(act), inits.index(init)] = row[column]
                theory[acts.index(act), inits.index(init)] = row[f"{column}_theory"]
        finite = np.abs(measured[np.isfinite(measured)])
        lim = max(float(finite.max()) if finite.size else 1.0, 2.5)
        image = ax.imshow(measured, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim), aspect="auto")
        for (r, c), value in np.ndenumerate(measured):
            ax.text(
                c,
                r,
                f"{value:+.1f}\n({theory[r, c]:+.1f})",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if abs(value) < 0.6 * lim else "white",
            )
        ax.set_xticks(range(len(inits)), inits, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(acts)), acts)
        ax.set_title(f"{what}: {formula}", fontsize=9)
        fig.colorbar(image, ax=ax, label="decades", shrink=0.9)
    fig.suptitle(
        f"First over last hidden layer at depth {depth}, width {width}: measured (mean-field "
        "theory); blue = smaller at layer 1"
    )
    return fig


def plot_ratio_vs_depth(grid: pd.DataFrame, sweep: Sweep, key: str) -> Figure:
    """One ratio against depth: a panel per activation, measured (solid, dots) and theory
    (dashed, crosses) per init; grey band: within the rate test's bound (no trend)."""
    column, formula, what = RATIOS[key]
    width = max(sweep.widths)
    rows = grid[grid["width"] == width]
    means = rows.groupby(["activation", "init", "depth"])[[column, f"{column}_theory"]].mean()
    palette = colors(sweep.inits)
    fig, axes = panels(len(sweep.activations), width=3.6, height=2.9)
    for ax, act in zip(axes, sweep.activations, strict=True):
        for init in sweep.inits:
            if (act, init) not in means.index.droplevel("depth"):
                continue
            curve = means.loc[(act, init)].sort_index()
            ax.plot(curve.index, curve[column], color=palette[init], label=f"{init}", **MEASURED)
            ax.plot(
                curve.index, curve[f"{column}_theory"], color=palette[init], alpha=0.8, **THEORY
            )
        d = np.geomspace(min(sweep.depths), max(sweep.depths), 64)
        band = np.array([flow.trend_threshold(int(round(x))) for x in d])
        ax.fill_between(d, -band, band, color="0.9", zorder=0, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_title(act, fontsize=10)
        ax.set_xlabel("depth (Linear layers)")
        ax.set_ylabel("decades")
        ax.grid(alpha=0.3)
    axes[0].plot([], [], color="0.3", label="measured (mean over seeds)", **MEASURED)
    axes[0].plot([], [], color="0.3", label="mean-field theory", **THEORY)
    legend_below(fig, axes[0], ncols=4)
    fig.suptitle(f"{what}: {formula} against depth, width {width}; grey: no trend by the rate test")
    return fig


def plot_residuals(grid: pd.DataFrame, sweep: Sweep) -> Figure:
    """Measured minus theory for both ratios, against depth (jittered per init), a colour per
    activation: where the theory is off, and by how much."""
    width = max(sweep.widths)
    rows = grid[(grid["width"] == width) & (grid["depth"] >= 3)]
    palette = colors(sweep.activations)
    fig, axes = figure(1, 2, width=5.6, height=4.0)
    offsets = np.linspace(-0.12, 0.12, max(len(sweep.inits), 1))
    for ax, key in zip(axes.flat, ("grad", "delta"), strict=True):
        column, formula, what = RATIOS[key]
        means = rows.groupby(["activation", "init", "depth"])[[column, f"{column}_theory"]].mean()
        residual = (means[column] - means[f"{column}_theory"]).reset_index(name="r")
        residual = residual[np.isfinite(residual["r"])]
        for act in sweep.activations:
            part = residual[residual["activation"] == act]
            x = np.log2(part["depth"]) + [offsets[sweep.inits.index(i)] for i in part["init"]]
            ax.scatter(2.0**x, part["r"], s=14, color=palette[act], label=act, alpha=0.85)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth (points spread by init)")
        ax.set_ylabel("measured − theory [decades]")
        ax.set_title(f"{what}: {formula}", fontsize=9)
        ax.grid(alpha=0.3)
    legend_below(fig, axes[0, 0], ncols=len(sweep.activations))
    fig.suptitle(f"Residual of the mean-field theory, width {width}, every init, mean over seeds")
    return fig


def plot_sigma2_scan(scan: pd.DataFrame, sweep: Sweep) -> Figure:
    """The σ_w² scan at σ_b² > 0: both ratios and χ1 against σ_w², with the critical line."""
    s = sweep.scan
    critical = critical_line(s.activation, s.sigma_b2)
    x = np.linspace(min(s.sigma2), max(s.sigma2), 61)
    theory = [meanfield.ratio_theory(s.activation, v, s.sigma_b2, s.depth) for v in x]
    agg = scan.groupby("sigma2")[["grad_ratio_log10", "delta_ratio_log10", "chi1_measured"]]
    mean, low, high = agg.mean(), agg.min(), agg.max()
    fig, axes = figure(1, 2, width=5.4, height=4.0)
    a1, a2 = axes.flat
    for key, color in (("grad", "tab:blue"), ("delta", "tab:orange")):
        column, _, what = RATIOS[key]
        a1.errorbar(
            mean.index,
            mean[column],
            yerr=[mean[column] - low[column], high[column] - mean[column]],
            fmt="o",
            ms=4,
            color=color,
            label=f"{what}, measured (mean, range over seeds)",
        )
        values = [getattr(t, f"{column}") for t in theory]
        a1.plot(x, values, "--", color=color, lw=1.0, label=f"{what}, mean-field theory")
    a1.axhline(0.0, color="k", lw=0.8)
    a1.set_ylabel(f"first over last hidden layer at depth {s.depth} [decades]")
    a2.plot(
        mean.index,
        mean["chi1_measured"],
        "o",
        ms=4,
        color="tab:orange",
        label="χ1 measured: (‖δ^(1)‖/‖δ^(L−1)‖)^(2/(L−2))",
    )
    a2.plot(
        x,
        [meanfield.chi1_theory(s.activation, v, s.sigma_b2) for v in x],
        "--",
        color="k",
        lw=1.0,
        label="χ1 = σ_w² E[φ′(√q* z)²] at the fixed point",
    )
    a2.plot(
        x,
        [10 ** (2 * t.delta_ratio_log10 / (s.depth - 2)) for t in theory],
        "-",
        color="tab:orange",
        lw=1.0,
        label=f"mean χ_l along the trajectory, l = 1..{s.depth - 2}",
    )
    a2.axhline(1.0, color="0.5", lw=0.8)
    a2.set_ylabel("χ1 (factor on ‖δ‖² per layer)")
    for ax in (a1, a2):
        if critical is not None:
            ax.axvline(
                critical,
                color="r",
                ls=":",
                lw=1.2,
                label=f"critical line χ1 = 1: σ_w² = {critical:.3f}",
            )
        ax.set_xlabel(f"σ_w² = Var(W)·fan_in  (σ_b² = {s.sigma_b2:g})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"{s.activation}, depth {s.depth}, width {max(sweep.widths)}, σ_b² = {s.sigma_b2:g}: "
        "ordered (χ1 < 1) to chaotic (χ1 > 1)"
    )
    return fig


def plot_derivative_distribution(layers: pd.DataFrame, sweep: Sweep) -> Figure | None:
    """f′(z) per layer for sigmoid and tanh (median, 5–95 %, saturated fraction)."""
    acts = [a for a in ("sigmoid", "tanh") if a in sweep.activations]
    inits = [i for i in ("xavier_normal", "torch_default", "large_normal") if i in sweep.inits]
    inits = inits or list(sweep.inits[:3])
    if not acts:
        return None
    depth, seed = max(sweep.depths), min(sweep.seeds)
    deep = _deep(layers, sweep)
    fig, axes = figure(len(acts), len(inits), width=3.8, height=2.9)
    for r, act in enumerate(acts):
        for c, init in enumerate(inits):
            ax = axes[r, c]
            rows = deep[
                (deep["activation"] == act)
                & (deep["init"] == init)
                & (deep["seed"] == seed)
                & (deep["layer"] < depth)
            ]
            ax.fill_between(
                rows["layer"],
                rows["deriv_p05"],
                rows["deriv_p95"],
                alpha=0.3,
                label="5–95 % of f′(z)",
            )
            ax.plot(rows["layer"], rows["deriv_p50"], label="median f′(z)")
            ax.plot(rows["layer"], rows["deriv_mean"], ":", label="mean f′(z)")
            twin = ax.twinx()
            twin.plot(
                rows["layer"],
                rows["saturated_frac"],
                "r--",
                lw=1,
                label="saturated fraction, f′ < 0.01 (right axis)",
            )
            twin.set_ylim(-0.02, 1.02)
            twin.set_ylabel("saturated fraction", color="r", fontsize=8)
            if r == c == 0:
                ax.plot([], [], "r--", lw=1, label="saturated fraction, f′ < 0.01 (right axis)")
            ax.set_ylim(0, 0.27 if act == "sigmoid" else 1.05)
            ax.set_title(f"{act}, {init}", fontsize=9)
            ax.set_xlabel("hidden layer l")
            ax.set_ylabel("f′(z^(l))")
    legend_below(fig, axes[0, 0], ncols=4)
    fig.suptitle(
        f"Where δ is lost: f′(z) per layer, depth {depth}, width {max(sweep.widths)}, seed {seed}"
    )
    return fig


def plot_tanh_power_law(grid: pd.DataFrame, sweep: Sweep) -> Figure | None:
    """tanh at σ_w² = 1, σ_b² = 0 (xavier_normal): δ falls as a power law of depth, the
    weight gradient does not; log-log against L − 2."""
    fit = tanh_power_law(grid, sweep)
    if fit is None:
        return None
    rows, exponent, theory_exponent = fit
    depths = np.arange(4, 2 * max(sweep.depths) + 1)
    theory = [meanfield.ratio_theory("tanh", 1.0, 0.0, int(d)) for d in depths]
    fig, axes = figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    for key, color in (("delta", "tab:orange"), ("grad", "tab:blue")):
        column, formula, what = RATIOS[key]
        ax.plot(
            rows.index - 2,
            rows[column],
            color=color,
            label=f"{what}: measured",
            **{**MEASURED, "ls": "none", "ms": 6},
        )
        ax.plot(
            depths - 2,
            [getattr(t, column) for t in theory],
            "-",
            color=color,
            lw=1,
            label=f"{what}: mean-field trajectory theory",
        )
    ref = -0.5 * np.log10(depths - 2) + (
        rows["delta_ratio_log10"].iloc[0] + 0.5 * np.log10(rows.index[0] - 2)
    )
    ax.plot(depths - 2, ref, ":", color="k", lw=1, label="slope −½: ratio ∝ (L − 2)^(−1/2)")
    ax.set_xscale("log")
    ax.set_xlabel("L − 2 (layers between the first and the last hidden one)")
    ax.set_ylabel("first over last hidden layer [decades]")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(
        f"tanh, σ_w² = 1, σ_b² = 0 (xavier_normal), width {max(sweep.widths)}\nfitted exponent "
        f"of the δ ratio: {signed(exponent, 3)} measured, {signed(theory_exponent, 3)} theory "
        "(same depths)",
        fontsize=9,
    )
    return fig
