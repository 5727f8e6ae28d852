"""The gradient-flow report: one function per figure, the headline tables, the findings and
the README, from the sweep's numeric summary and layer frames (experiments.measure.sweep).

Every finding is written only where the rows it needs were measured, and worded by what the
numbers say, so a narrow sweep gets a short, true README.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from experiments.measure import flow
from experiments.measure.sweep import LAYER_COLUMNS, SUMMARY_COLUMNS, Sweep
from experiments.report.common import (
    MEASURED,
    THEORY,
    colors,
    crossing,
    figure,
    findings_and_plots,
    glossary,
    legend_below,
    markdown_table,
    panels,
    pow10,
    signed,
)
from experiments.report.io import write_png
from experiments.theory import meanfield

#: line styles per init, so that coinciding curves (orthogonal on xavier_normal) stay visible
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
#: the two ratios, each with its label: weight gradients (what SGD uses) first.
RATIOS = {
    "grad": ("grad_ratio_log10", "log10(‖∂L/∂W^(1)‖/‖∂L/∂W^(L−1)‖)", "weight gradient ∂L/∂W"),
    "delta": ("delta_ratio_log10", "log10(‖δ^(1)‖/‖δ^(L−1)‖)", "δ = ∂L/∂z"),
}


def _deep(layers: pd.DataFrame, sweep: Sweep) -> pd.DataFrame:
    depth, width = max(sweep.depths), max(sweep.widths)
    return layers[
        (layers["depth"] == depth)
        & (layers["width"] == width)
        & (layers["batch"] == sweep.batch)
        & layers["seed"].isin(sweep.seeds)
        & layers["init"].isin(sweep.inits)
        & layers["activation"].isin(sweep.activations)
    ]


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


# --- numbers the README states ---------------------------------------------------------------


def critical_line(activation: str, sigma_b2: float) -> float | None:
    try:
        return meanfield.critical_sigma_w2(activation, sigma_b2)
    except ValueError:
        return None


def tanh_power_law(grid: pd.DataFrame, sweep: Sweep) -> tuple[pd.DataFrame, float, float] | None:
    """(per-depth means, fitted exponent of ‖δ^(1)‖/‖δ^(L−1)‖ in L − 2, the theory's over the
    same depths) for tanh + xavier_normal at depths ≥ 8; None where not measured."""
    width = max(sweep.widths)
    rows = grid[
        (grid["activation"] == "tanh")
        & (grid["init"] == "xavier_normal")
        & (grid["width"] == width)
        & (grid["depth"] >= 8)
    ]
    means = rows.groupby("depth")[
        [
            "delta_ratio_log10",
            "delta_ratio_log10_theory",
            "grad_ratio_log10",
            "grad_ratio_log10_theory",
        ]
    ].mean()
    if len(means) < 2:
        return None
    x = np.log10(means.index.to_numpy() - 2.0)
    exponent = float(np.polyfit(x, means["delta_ratio_log10"], 1)[0])
    theory = float(np.polyfit(x, means["delta_ratio_log10_theory"], 1)[0])
    return means, exponent, theory


def forward_moment_residual(
    layers: pd.DataFrame,
    activation: str,
    init: str,
    depth: int,
    width: int,
    sigma_w2: float,
    sigma_b2: float,
) -> float:
    """½ log10 of the measured E[a^(depth−2)²] over the mean-field E[φ(√q^(depth−2) z)²]
    (mean over seeds): how far the forward signal the last hidden weight sees has drifted."""
    rows = layers[
        (layers["activation"] == activation)
        & (layers["init"] == init)
        & (layers["depth"] == depth)
        & (layers["width"] == width)
        & (layers["layer"] == depth - 2)
    ]
    if rows.empty or depth < 3:
        return math.nan
    q = meanfield.trajectory(activation, sigma_w2, sigma_b2, sigma_w2 + sigma_b2, depth - 2)
    theory = meanfield.moments(activation, q[-1])[0]
    measured = rows["act_std"] ** 2 + rows["act_mean"] ** 2
    return float(np.mean(0.5 * np.log10(measured / theory)))


def _cell(grid: pd.DataFrame, act: str, init: str, depth: int) -> dict[str, float] | None:
    rows = grid[(grid["activation"] == act) & (grid["init"] == init) & (grid["depth"] == depth)]
    if rows.empty:
        return None
    numbers = [c for c in SUMMARY_COLUMNS if rows[c].dtype.kind == "f"]
    out = rows[numbers].mean().to_dict()
    out["seeds_min_grad"] = float(rows["grad_ratio_log10"].min())
    out["seeds_max_grad"] = float(rows["grad_ratio_log10"].max())
    out["seeds_min_delta"] = float(rows["delta_ratio_log10"].min())
    out["seeds_max_delta"] = float(rows["delta_ratio_log10"].max())
    out["delta_gap_sign"] = float(
        np.sign(rows["delta_ratio_log10"] - rows["delta_ratio_log10_theory"]).mean()
    )
    return out


def headline(grid: pd.DataFrame, sweep: Sweep, key: str) -> str:
    """A Markdown table over activation × init at the deepest depth: measured (theory) and
    the regime of that ratio."""
    column = RATIOS[key][0]
    regime_column = "regime" if key == "grad" else "delta_regime"
    depth, width = max(sweep.depths), max(sweep.widths)
    at = grid[(grid["depth"] == depth) & (grid["width"] == width)]
    rows = []
    for act in sweep.activations:
        cells = [act]
        for init in sweep.inits:
            part = at[(at["activation"] == act) & (at["init"] == init)]
            if part.empty:
                cells.append("–")
                continue
            cells.append(
                f"{signed(part[column].mean())} ({signed(part[f'{column}_theory'].mean())})"
                f" {part[regime_column].mode().iloc[0]}"
            )
        rows.append(cells)
    return markdown_table(["activation", *sweep.inits], rows)


#: "agree": measured (mean over seeds) and predicted within this many decades
AGREE = 0.1


def batch_theory_table(grid: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, init, depth ≥ 3, width): the mean measured weight-gradient ratio and
    both theories' errors, where both are finite."""
    deep = grid[grid["depth"] >= 3]
    cols = ["grad_ratio_log10", "grad_ratio_log10_theory", "grad_ratio_log10_batch_theory"]
    g = deep.groupby(["activation", "init", "depth", "width"])[cols].mean().reset_index()
    g = g[np.isfinite(g[cols]).all(axis=1)]
    g["single_err"] = g["grad_ratio_log10"] - g["grad_ratio_log10_theory"]
    g["batch_err"] = g["grad_ratio_log10"] - g["grad_ratio_log10_batch_theory"]
    g["depth_over_width"] = g["depth"] / g["width"]
    return g


def batch_theory_findings(grid: pd.DataFrame) -> list[str]:
    """How far the single-example and the batch theory of the weight gradient get."""
    g = batch_theory_table(grid)
    if g.empty:
        return []
    n = len(g)
    single, batch = (
        int((g["single_err"].abs() < AGREE).sum()),
        int((g["batch_err"].abs() < AGREE).sum()),
    )
    misses = g[g["batch_err"].abs() >= AGREE].sort_values("batch_err", key=abs, ascending=False)
    worst = "; ".join(
        f"{r.activation} + {r.init} at depth {r.depth} ({signed(r.batch_err)}, L/N = "
        f"{r.depth_over_width:.2g})"
        for r in misses.head(6).itertuples()
    )
    relu = g[(g["activation"] == "relu") & (g["init"] == "kaiming_normal")]
    relu_text = ", ".join(
        f"depth {r.depth}: {signed(r.grad_ratio_log10)} measured, "
        f"{signed(r.grad_ratio_log10_batch_theory)} batch theory"
        for r in relu.itertuples()
    )
    out = [
        "**The batch theory of the weight gradient.** ‖∂L/∂W^(l)‖² = Σ_{b,b′} ⟨δ_b, δ_b′⟩"
        "⟨a_b, a_b′⟩ over the batch. The single-example theory keeps only b = b′. The batch "
        "theory (`grad_ratio_log10_batch_theory`) adds the B(B − 1) cross terms: forward, "
        "⟨a_b, a_b′⟩ follows the correlation map (c-map) from independent inputs; backward, "
        "⟨δ_b, δ_b′⟩ starts from the output's error Gram (softmax of logits with the c-map's "
        "correlation, random labels) and shrinks by σ_w² E[φ′(u1)φ′(u2)] per layer.\n"
        f"   - Cells within {AGREE} decade of the measured mean (depth ≥ 3, mean over seeds): "
        f"single-example theory {single} of {n}, batch theory {batch} of {n}.\n"
        + (f"   - relu + kaiming_normal: {relu_text}.\n" if len(relu) else ""),
    ]
    if len(misses):
        ratios = misses["depth_over_width"]
        share = float((ratios >= ratios.max() / 2).mean())
        lin = g[(g["activation"] == "linear") & (g["init"] == "kaiming_normal")]
        lin_text = ", ".join(
            f"{signed(r.grad_ratio_log10)} at depth {r.depth}" for r in lin.itertuples()
        )
        out[0] += (
            f"   - The {len(misses)} cells it misses by ≥ {AGREE}, largest first: {worst}. "
            f"{share:.0%} of them sit at the two largest depth-over-width ratios L/N. There "
            "one network's log-norms fluctuate by O(L/N): the log-normal corrections Hanin "
            "(2018) describes, measured in `reports/finite_width/`. Mean-field theory is the "
            "N → ∞ limit at fixed L and leaves them out."
            + (
                f" Even the linear net with kaiming_normal, whose theory (0 decades) has no "
                f"cross terms, measures {lin_text}."
                if len(lin)
                else ""
            )
            + "\n"
        )
    return [out[0].rstrip("\n")]


def summary(grid: pd.DataFrame, sweep: Sweep) -> list[str]:
    """The report's first lines, each with its numbers."""
    depth, width = max(sweep.depths), max(sweep.widths)
    grid = grid[grid["width"] == width]
    out = []
    at = grid[grid["depth"] == depth]
    if len(at):
        mode = at.groupby(["activation", "init"])["regime"].agg(lambda r: r.mode().iloc[0])
        d_mode = at.groupby(["activation", "init"])["delta_regime"].agg(lambda r: r.mode().iloc[0])
        counts = mode.value_counts()
        both = int(((d_mode == "vanishing") & (mode == "stable")).sum())
        out.append(
            f"- At depth {depth}, of {len(mode)} (activation, init) pairs, the weight "
            "gradients are "
            + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("vanishing", "exploding", "stable"))
            + " (the rule: under What was run)."
            + (
                f" In {both} pairs δ vanishes towards the input while the weight gradients "
                "SGD applies stay stable."
                if both
                else ""
            )
        )
    deep = grid[grid["depth"] >= 3]
    cells = deep.groupby(["activation", "init", "depth"])[
        ["delta_ratio_log10", "delta_ratio_log10_theory"]
    ].mean()
    cells = cells[np.isfinite(cells).all(axis=1)]
    if len(cells):
        gap = (cells["delta_ratio_log10"] - cells["delta_ratio_log10_theory"]).abs()
        out.append(
            f"- Mean-field theory predicts the δ ratio within {AGREE} decade in "
            f"{int((gap < AGREE).sum())} of {len(cells)} cells (depth ≥ 3, mean over "
            f"{len(sweep.seeds)} seeds)."
        )
    g = batch_theory_table(grid)
    if len(g):
        out.append(
            f"- The weight-gradient ratio: within {AGREE} decade in "
            f"{int((g['single_err'].abs() < AGREE).sum())} of {len(g)} cells by the "
            f"single-example theory, {int((g['batch_err'].abs() < AGREE).sum())} by the batch "
            "theory that adds the examples' cross terms through the c-map; its misses gather "
            "where depth over width is largest (the finding on the batch theory)."
        )
    return out


def findings(
    grid: pd.DataFrame, scan: pd.DataFrame, layers: pd.DataFrame, sweep: Sweep
) -> list[str]:
    """Sentences with their numbers, each written only where its rows were measured."""
    depth, width = max(sweep.depths), max(sweep.widths)
    grid = grid[grid["width"] == width]
    out: list[str] = []

    def cell(act: str, init: str) -> dict[str, float] | None:
        return _cell(grid, act, init, depth)

    flat = [
        (a, i, c)
        for a, i in (
            ("relu", "xavier_normal"),
            ("gelu", "xavier_normal"),
            ("relu", "small_normal"),
            ("tanh", "small_normal"),
        )
        if (c := cell(a, i))
    ]
    if flat:
        out.append(
            "δ is not the gradient SGD uses. At depth "
            f"{depth}, "
            + "; ".join(
                f"{a} + {i} has a δ ratio of {signed(c['delta_ratio_log10'])} decades but a "
                f"weight-gradient ratio of {signed(c['grad_ratio_log10'])} (theory "
                f"{signed(c['delta_ratio_log10_theory'])} and "
                f"{signed(c['grad_ratio_log10_theory'])})"
                for a, i, c in flat
            )
            + ". The forward activations shrink in step with δ (q^(l) → 0), so "
            "‖∂L/∂W^(l)‖ = ‖Σ_n δ_n^(l) a_n^(l−1)ᵀ‖ stays flat: the point Glorot & Bengio "
            '(2010, "Understanding the difficulty of training deep feedforward neural '
            'networks") make about back-propagated gradients and weight gradients. `regime` '
            "is therefore decided on the weight gradients; `delta_regime` keeps the δ verdict."
        )
        small = layers[
            (layers["activation"] == "relu")
            & (layers["init"] == "small_normal")
            & (layers["depth"] == depth)
            & (layers["width"] == width)
        ]
        if len(small):
            g = np.log10(small["grad_w_norm"])
            out.append(
                "Flat is not healthy, though: the ratio says nothing about the size. With "
                f"relu + small_normal every ‖∂L/∂W^(l)‖ at depth {depth} lies between "
                f"{pow10(g.min(), 0)} and {pow10(g.max(), 0)}, because the output has "
                "collapsed with the forward signal (the training report shows the same "
                "mechanism, and what it does to SGD, for Xavier's ReLU net at depth 30)."
            )
    real = [
        (a, i, c)
        for a, i in (
            ("sigmoid", "xavier_normal"),
            ("tanh", "torch_default"),
            ("relu", "torch_default"),
        )
        if (c := cell(a, i))
    ]
    if real:
        out.append(
            "Weight gradients truly vanish only where the forward signal cannot shrink with δ: "
            + "; ".join(
                f"{a} + {i} {signed(c['grad_ratio_log10'], 1)} decades (theory "
                f"{signed(c['grad_ratio_log10_theory'], 1)}, q* = {c['q_star']:.3g})"
                for a, i, c in real
            )
            + ". Sigmoid's activations have mean ½ whatever q is; torch_default's bias "
            "variance σ_b² = 1/(3·fan_in) floors q at q* > 0, so a^(l) stops shrinking while "
            "δ keeps falling by χ1 < 1 per layer."
        )
    if c := cell("sigmoid", "xavier_normal"):
        sat = layers[
            (layers["depth"] == depth) & (layers["width"] == width) & (layers["layer"] == depth - 1)
        ]
        parts = []
        for act, init in (
            ("sigmoid", "xavier_normal"),
            ("sigmoid", "large_normal"),
            ("tanh", "large_normal"),
        ):
            rows = sat[(sat["activation"] == act) & (sat["init"] == init)]
            if not rows.empty:
                parts.append(
                    f"{act} + {init} {rows['saturated_frac'].mean():.0%} saturated "
                    f"(median f′ = {rows['deriv_p50'].mean():.3g})"
                )
        out.append(
            f"sigmoid + xavier_normal: each layer multiplies ‖δ‖² by χ1 = "
            f"{c['chi1_measured']:.4f} measured (theory {c['chi1_theory']:.4f}), under the cap "
            f"σ_w²·max σ′² = 1/16 that σ′ ≤ ¼ sets; the units are not saturated"
            + (f" (in hidden layer {depth - 1}: " + "; ".join(parts) + ")" if parts else "")
            + f". The weight-gradient ratio is {signed(c['grad_ratio_log10'])} against "
            f"{signed(c['grad_ratio_log10_theory'])} predicted: the theory's "
            "uncorrelated-examples assumption is off by "
            f"{abs(c['grad_ratio_log10'] - c['grad_ratio_log10_theory']):.2f} decades here, "
            "because every example shares the activations' common mean."
        )
    fit = tanh_power_law(grid, sweep)
    if fit is not None and (c := cell("tanh", "xavier_normal")):
        means, exponent, theory = fit
        out.append(
            f"tanh + xavier_normal (σ_w² = 1, σ_b² = 0) sits at the edge of chaos with q* = "
            f"{c['q_star']:g} exactly and χ1 = {c['chi1_theory']:.4f}, so the fixed point alone "
            f"predicts no loss; yet q^(l) ≈ 1/(2l) makes χ_l ≈ 1 − 1/l and δ decays as a power "
            f"law, ‖δ^(1)‖/‖δ^(L−1)‖ ∝ (L − 2)^(−1/2): the fitted exponent over depths "
            f"{', '.join(map(str, means.index))} is {signed(exponent, 3)} measured, "
            f"{signed(theory, 3)} by "
            f"the trajectory theory (the asymptote −½ is approached slowly, with a log "
            f"correction). At depth {depth}: δ {signed(c['delta_ratio_log10'])} decades "
            f"(theory {signed(c['delta_ratio_log10_theory'])}), weight gradient "
            f"{signed(c['grad_ratio_log10'])} (theory {signed(c['grad_ratio_log10_theory'])}): "
            "a^(l) shrinks like √q^(l) ∝ l^(−1/2) too, and the two cancel."
        )
    relu = {i: cell("relu", i) for i in ("kaiming_normal", "xavier_normal", "large_normal")}
    if c := relu["kaiming_normal"]:
        text = (
            f"ReLU with kaiming_normal (σ_w² = 2, χ1 = {c['chi1_theory']:.2f}) keeps both: δ "
            f"{signed(c['delta_ratio_log10'])}, weight gradient {signed(c['grad_ratio_log10'])} "
            f"decades at depth {depth}"
        )
        if x := relu["large_normal"]:
            text += (
                f"; large_normal (σ_w² = {x['sigma_w2']:.0f}) makes δ grow by "
                f"{x['delta_ratio_log10']:.1f} decades "
                f"(theory {x['delta_ratio_log10_theory']:.1f}) "
                f"while the weight-gradient ratio stays at {signed(x['grad_ratio_log10'])}: the "
                "activations grow by as much going up, and what goes wrong there is the "
                "absolute scale (the loss and logits), not the ratio"
            )
        out.append(text + ".")
    if c := cell("gelu", "kaiming_normal"):
        sign = c["delta_gap_sign"]
        out.append(
            f"gelu + kaiming_normal is the theory's worst δ row: {signed(c['delta_ratio_log10'])} "
            f"decades measured against {signed(c['delta_ratio_log10_theory'])} predicted at depth "
            f"{depth} (seeds from {signed(c['seeds_min_delta'])} to "
            f"{signed(c['seeds_max_delta'])}"
            + (", every one above the theory" if sign == 1.0 else "")
            + "). That is not seed scatter but a finite-width effect: q* = 0 attracts with "
            "χ1 = σ_w²·gelu′(0)² = ½, but from q^(1) = 2, where gelu looks like relu, the "
            f"drift of q towards 0 is weak, and at width {width} the layers' sample "
            "variances wander above the mean-field trajectory, where χ_l is larger; "
            "`reports/finite_width/` measures the gap against width."
        )
    pairs = [(a, cell(a, "orthogonal"), cell(a, "xavier_normal")) for a in sweep.activations]
    pairs = [(a, o, x) for a, o, x in pairs if o and x]
    if pairs:
        worst = max(abs(o["delta_ratio_log10"] - x["delta_ratio_log10"]) for _, o, x in pairs)
        worst_g = max(abs(o["grad_ratio_log10"] - x["grad_ratio_log10"]) for _, o, x in pairs)
        worst_act = max(
            pairs, key=lambda p: abs(p[1]["grad_ratio_log10"] - p[2]["grad_ratio_log10"])
        )[0]
        out.append(
            "Orthogonal and xavier_normal weights (both σ_w² = 1) agree in every row to "
            f"{worst:.2f} decades in δ: a Frobenius ratio measures the mean squared singular "
            "value of the layer-to-layer Jacobian only, and that mean is the same. (Their "
            f"weight-gradient ratios differ by up to {worst_g:.2f} decades, for {worst_act}, "
            "through the examples' cross terms, below.) Their Jacobian spectra differ by two "
            "orders of magnitude in variance; `reports/jacobian_spectrum/` measures that "
            '(Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep '
            'learning through dynamical isometry").'
        )
    if len(scan) and sweep.scan is not None:
        s = sweep.scan
        agg = scan.groupby("sigma2")[
            [
                "delta_ratio_log10",
                "grad_ratio_log10",
                "delta_ratio_log10_theory",
                "grad_ratio_log10_theory",
            ]
        ].mean()
        critical = critical_line(s.activation, s.sigma_b2)
        text = f"The {s.activation} σ_w² scan at σ_b² = {s.sigma_b2:g}, depth {s.depth}: " + (
            f"mean-field theory puts the critical line χ1 = 1 at σ_w² = {critical:.3f}; "
            if critical is not None
            else ""
        )
        parts = []
        for col, what in (("delta_ratio_log10", "δ"), ("grad_ratio_log10", "weight-gradient")):
            m, t = crossing(agg.index, agg[col]), crossing(agg.index, agg[f"{col}_theory"])
            if m is not None:
                parts.append(
                    f"the measured {what} ratio crosses 0 at σ_w² ≈ {m:.2f}"
                    + (f" (trajectory theory {t:.2f})" if t is not None else "")
                )
        text += ("; ".join(parts) if parts else "no ratio changes sign over the scan") + (
            ". At finite depth the trajectory starts at q^(1) = σ_w² + σ_b², above q*, where "
            "tanh′ is smaller, so the crossing of δ sits above the fixed-point criterion."
        )
        out.append(text)
    out += batch_theory_findings(grid)
    deep = grid[grid["depth"] >= 3]
    for key in ("grad", "delta"):
        column, _, what = RATIOS[key]
        gap = (deep[column] - deep[f"{column}_theory"]).abs()
        gap = gap[np.isfinite(gap)]
        if len(gap):
            worst = deep.loc[gap.idxmax()]
            out.append(
                f"Residuals ({what}): over {len(gap)} runs with depth ≥ 3, |measured − theory| "
                f"has median {gap.median():.2f} decades and 90th percentile "
                f"{gap.quantile(0.9):.2f}; the largest, {gap.max():.2f}, is "
                f"{worst['activation']} + {worst['init']} at depth {int(worst['depth'])}."
            )
    cross = [
        (a, i, c)
        for a, i in (
            ("relu", "kaiming_normal"),
            ("sigmoid", "xavier_normal"),
            ("linear", "xavier_normal"),
            ("relu", "small_normal"),
        )
        if (c := cell(a, i))
    ]
    if cross:
        parts = []
        for a, i, c in cross:
            fwd = forward_moment_residual(layers, a, i, depth, width, c["sigma_w2"], c["sigma_b2"])
            resid = c["grad_ratio_log10"] - c["grad_ratio_log10_theory"]
            delta = c["delta_ratio_log10"] - c["delta_ratio_log10_theory"]
            first, last = c["cross_first_log10"], c["cross_last_log10"]
            parts.append(
                f"{a} + {i}: residual {signed(resid)} = δ {signed(delta)} + forward "
                f"{signed(-fwd)} + cross terms {signed(first - last)} ({signed(first)} at "
                f"W^(1), {signed(last)} at W^(L−1))"
            )
        out.append(
            "Where the weight-gradient theory is off, one of its inputs is: the δ ratio, the "
            "forward second moment E[a^(L−2)²] (its residual enters with the opposite sign), "
            "or the assumption that the examples' contributions δ_n a_nᵀ add as uncorrelated "
            "terms, which `cross_first_log10` and `cross_last_log10` measure. At depth "
            f"{depth}, in decades (mean over seeds): " + "; ".join(parts) + ". At layer 1 the "
            "inputs are independent and the cross terms vanish; deep in the net the examples' "
            "activations are nearly parallel (the c-map drives correlations to c* = 1) or share "
            "a mean (sigmoid), and the outputs' mean prediction differs from the batch's label "
            "frequencies, so their δ share a part that adds coherently. The forward residual is "
            "the finite-width drift of one network's activations (its backward twin is measured "
            "in `reports/finite_width/`)."
        )
    at = grid[grid["depth"] == depth]
    if len(at):

        def tally(col: str) -> str:
            counts = at.groupby(["activation", "init"])[col].agg(lambda r: r.mode().iloc[0])
            n = counts.value_counts()
            return ", ".join(
                f"{n.get(k, 0)} {k}" for k in ("vanishing", "exploding", "stable", "overflow")
            )

        pairs_n = at.groupby(["activation", "init"]).ngroups
        out.append(
            f"At depth {depth}, of {pairs_n} (activation, init) pairs: on the weight gradient "
            f"{tally('regime')}; on δ {tally('delta_regime')} (the rule: below)."
        )
    return out


# --- the README --------------------------------------------------------------------------------

CAPTIONS = {
    "grad_norm_by_layer.png": "‖∂L/∂W^(l)‖ by layer at the deepest depth: what SGD uses.",
    "delta_norm_by_layer.png": "‖δ^(l)‖ by layer at the deepest depth.",
    "ratio_heatmap.png": "Both ratios over activation × init at the deepest depth.",
    "grad_ratio_vs_depth.png": "The weight-gradient ratio against depth (dashed, ×: theory).",
    "delta_ratio_vs_depth.png": "The δ ratio against depth (dashed, ×: theory).",
    "residuals.png": "Measured minus theory, both ratios.",
    "sigma2_scan.png": "The σ_w² scan at σ_b² > 0 across the critical line.",
    "tanh_power_law.png": "tanh at σ_w² = 1: the δ power law and the flat weight gradient.",
    "derivative_distribution.png": "f′(z) per layer for sigmoid and tanh (saturation).",
}


def write_figures(
    out: Path, grid: pd.DataFrame, scan: pd.DataFrame, layers: pd.DataFrame, sweep: Sweep
) -> list[Path]:
    """Every figure the rows allow, as PNG files in `out`."""
    figures: dict[str, Figure | None] = {
        "grad_norm_by_layer.png": plot_norm_by_layer(layers, sweep, "grad_w_norm"),
        "delta_norm_by_layer.png": plot_norm_by_layer(layers, sweep, "delta_norm"),
        "ratio_heatmap.png": plot_ratio_heatmap(grid, sweep),
        "grad_ratio_vs_depth.png": plot_ratio_vs_depth(grid, sweep, "grad"),
        "delta_ratio_vs_depth.png": plot_ratio_vs_depth(grid, sweep, "delta"),
        "residuals.png": plot_residuals(grid, sweep),
        "sigma2_scan.png": plot_sigma2_scan(scan, sweep) if len(scan) else None,
        "tanh_power_law.png": plot_tanh_power_law(grid, sweep),
        "derivative_distribution.png": plot_derivative_distribution(layers, sweep),
    }
    return [write_png(out / name, fig) for name, fig in figures.items() if fig is not None]


def readme(
    grid: pd.DataFrame,
    scan: pd.DataFrame,
    layers: pd.DataFrame,
    sweep: Sweep,
    command: str,
    figures: Sequence[Path],
    checks: Sequence[str],
    runtime: str,
) -> str:
    depth, width = max(sweep.depths), max(sweep.widths)
    lines = [
        "# Gradient flow: δ and the weight gradients SGD uses, measured and predicted",
        "",
        "Generated by `experiments/gradient_flow.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(grid, sweep),
        "",
        *glossary("decades", "δ", "σ_w², σ_b²", "q*", "χ1", "c-map", "edge of chaos", "seeds"),
        "## What was run",
        "",
        f"    {command}",
        "",
        f"- Grid: depths {list(sweep.depths)}, widths {list(sweep.widths)}, activations "
        f"{', '.join(sweep.activations)}; inits {', '.join(sweep.inits)}; seeds "
        f"{list(sweep.seeds)}, batch {sweep.batch}: {len(grid)} runs.",
    ]
    if sweep.scan is not None:
        s = sweep.scan
        lines.append(
            f"- σ_w² scan: {s.activation} at depth {s.depth}, width {width}, biases "
            f"N(0, {s.sigma_b2:g}), σ_w² from {min(s.sigma2):g} to {max(s.sigma2):g} "
            f"({len(s.sigma2)} values, init `sigma2=X`): {len(scan)} runs."
        )
    lines += [
        f"- Runtime: {runtime}",
        "- Network: `depth` Linear layers, `depth − 1` hidden layers of `width` units with the "
        "activation, a last Linear to 10 classes, cross-entropy on random labels, inputs "
        "x ~ N(0, 1) of dimension `width`; biases zero except torch_default's U(±1/√fan_in)"
        + (f", here N(0, {sweep.sigma_b2:g}) for all" if sweep.sigma_b2 is not None else "")
        + ".",
        "- δ^(l) = ∂L/∂z^(l) from manual_bp's explicit recursion δ^(l) = f′(z^(l)) ⊙ "
        "(W^(l+1))ᵀ δ^(l+1); ∂L/∂W^(l) = Σ_n δ_n^(l) a_n^(l−1)ᵀ, the gradient SGD applies. "
        'Theory from `experiments.theory.meanfield` (Poole et al. 2016, "Exponential '
        'expressivity in deep neural networks through transient chaos"; Schoenholz et al. '
        '2017, "Deep information propagation").',
        "- `delta_ratio_log10` = log10(‖δ^(1)‖/‖δ^(L−1)‖), theory ½ Σ_{l=1}^{L−2} log10 χ_l "
        "along the variance trajectory from q^(1) = σ_w² + σ_b². `grad_ratio_log10` = "
        "log10(‖∂L/∂W^(1)‖/‖∂L/∂W^(L−1)‖), theory the same plus ½ log10(Var(x) / "
        "E[φ(√q^(L−2) z)²]): ∂L/∂W^(1) sees the input, ∂L/∂W^(L−1) the activations a^(L−2), "
        "with the examples' δ taken as uncorrelated; `cross_first_log10` and "
        "`cross_last_log10` measure what the examples' cross terms add to ‖∂L/∂W^(1)‖ and "
        "‖∂L/∂W^(L−1)‖ (log10 of ‖Σ_n δ_n a_nᵀ‖ over √Σ_n ‖δ_n‖²‖a_n‖²). `chi1_theory` at the "
        "fixed point q* "
        "(exactly 0 where the iterates fall to 0, inf where they grow without bound).",
        "- `regime` is decided on the weight gradients, by two tests. (1) A per-layer rate: "
        f"`grad_ratio_log10` beyond ±{flow.RATE} decades per layer over the depth − 2 layers "
        f"between, and at least ±{flow.MIN_DECADES:g} decade in all (at depth 8: ±1 decade, "
        f"at depth {depth}: ±{flow.trend_threshold(depth):.1f}). (2) A scale test: "
        "`grad_scale_log10` = log10 max_l ‖∂L/∂W^(l)‖/‖W^(l)‖, the largest relative step per "
        f"unit learning rate; below {signed(flow.SCALE_LOW, 0)} no layer can move "
        f"(vanishing), above +{flow.SCALE_HIGH:g} a step at lr 0.1 moves some layer by more "
        "than its own norm "
        "(exploding). Exploding if either says so, else vanishing if either says so, else "
        "stable; overflow when any value is NaN or Inf. `delta_regime`: the same rule with "
        "`delta_ratio_log10` in (1).",
        "- Depth 2 has one hidden layer, so both ratios are exactly 0 and `chi1_measured` is "
        "NaN; a request whose depths are all < 3 is refused.",
        "- kaiming_* use torch's defaults (gain √2 whatever the activation), xavier_* gain 1. "
        "For orthogonal weights the theory uses σ_w² = gain² = 1; it is exact for the mean "
        "squared singular value, not for the spectrum.",
        "",
        f"## Headline numbers (depth {depth}, width {width}, mean over {len(sweep.seeds)} seed(s))",
        "",
        "Each cell: measured (mean-field theory) in decades, then the regime. Negative = "
        "smaller at the first hidden layer than at the last.",
        "",
        "### Weight gradients ∂L/∂W (what SGD uses; `grad_ratio_log10`, `regime`)",
        "",
        headline(grid, sweep, "grad"),
        "",
        "### δ = ∂L/∂z (`delta_ratio_log10`, `delta_regime`)",
        "",
        headline(grid, sweep, "delta"),
        "",
    ]
    lines += findings_and_plots(findings(grid, scan, layers, sweep), figures, CAPTIONS)
    if checks:
        lines += ["## Cross-check with torch.autograd", "", *[f"- {c}" for c in checks], ""]
    lines += [
        "## Files",
        "",
        "- `summary.csv`: one row per configuration and seed: "
        + ", ".join(f"`{c}`" for c in SUMMARY_COLUMNS)
        + ".",
        "- `layers.csv`: one row per configuration, seed and layer (1..depth; the last is the "
        "output Linear), 4 significant digits: "
        + ", ".join(f"`{c}`" for c in LAYER_COLUMNS)
        + ". `saturated_frac` is the fraction of entries with f′(z) < 0.01, `dead_frac` the "
        "fraction of units with f′ = 0 for the whole batch.",
        "",
    ]
    return "\n".join(lines)
