"""Hanin's law as a falsifiable test: the per-example log ratio ln(‖δ^(1)‖²/‖δ^(L)‖²) of ReLU
nets with Gaussian and uniform weights, its variance against β = Σ 1/n_l, the fitted slope
with bootstrap intervals beside the candidate constants 5 and 2μ₄ − 1, the one-step law
n·Var(r) = 5 + 2(μ₄ − 3)ℓ, QQ plots of the log-normality, and the batch norm beside the
per-example median (the tables, figures and findings of reports/finite_width/)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from experiments.measure.finite_width import (
    HANIN,
    MU4,
    RANDOM_LOCALISATION,
    hanin_coefficient,
    hanin_law_next_order,
    step_variance,
)
from experiments.report.common import MEASURED, figure, legend_below, signed

#: the bootstrap over networks (examples of one network share its weights, so networks are
#: the resampled unit); fixed seed: the same intervals on every run
BOOTSTRAP, BOOTSTRAP_SEED = 400, 20180111
WEIGHT_STYLE = {"gaussian": ("tab:blue", "o"), "uniform": ("tab:red", "s")}
VARIANTS = {"ln_ratio_random": "δ^(L) = v ~ N(0, I)", "ln_ratio_loss": "cross-entropy δ^(L)"}


def _by_network(part: pd.DataFrame, col: str) -> np.ndarray:
    """The column as an array (networks, examples), networks in seed order."""
    part = part.sort_values(["seed", "example"])
    return part[col].to_numpy().reshape(part["seed"].nunique(), -1)


def _boot_var(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BOOTSTRAP variances of `values` (networks, examples), networks resampled."""
    pick = rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))
    return values[pick].reshape(BOOTSTRAP, -1).var(axis=1, ddof=1)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (weights, depth, width): β = (L − 1)/n, the mean and variance of each log ratio over
    networks and examples, the laws, and per network the batch ratio ln(Σ_n ‖δ_n^(1)‖² /
    Σ_n ‖δ_n^(L)‖²) beside the median example's ln ratio (means over networks)."""
    out = []
    for (weights, depth, width), part in rows.groupby(["weights", "depth", "width"]):
        beta = (depth - 1) / width
        first = part["ln_ratio_random"] + part["ln_last_random"]
        g = part.assign(first=np.exp(first), last=np.exp(part["ln_last_random"])).groupby("seed")
        batch = np.log(g["first"].sum() / g["last"].sum())
        median = part.groupby("seed")["ln_ratio_random"].median()
        row = {
            "weights": weights,
            "depth": depth,
            "width": width,
            "beta": beta,
            "networks": part["seed"].nunique(),
            "examples": len(part),
            "law_var": HANIN * beta,
            "law_mean": -0.5 * HANIN * beta,
            "next_order_var": hanin_law_next_order([width] * (depth - 1), MU4[weights]),
            "batch_mean": batch.mean(),
            "median_mean": median.mean(),
        }
        for col in VARIANTS:
            row[f"mean_{col}"] = part[col].mean()
            row[f"var_{col}"] = part[col].var(ddof=1)
        out.append(row)
    return pd.DataFrame(out)


def slopes(rows: pd.DataFrame, col: str = "ln_ratio_random") -> pd.DataFrame:
    """Per weights: C = the mean over (depth, width) cells of Var/β, its 95 % bootstrap
    interval (networks resampled in every cell), and the candidates: the law's 5, its
    finite-width value on the same cells (`hanin_law_next_order`), and 2μ₄ − 1."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    out = []
    for weights, part in rows.groupby("weights"):
        point, boot, finite = [], [], []
        for (depth, width), cell in part.groupby(["depth", "width"]):
            beta = (depth - 1) / width
            finite.append(hanin_law_next_order([width] * (depth - 1), MU4[weights]) / beta)
            values = _by_network(cell, col)
            point.append(values.var(ddof=1) / beta)
            boot.append(_boot_var(values, rng) / beta)
        boot_c = np.mean(boot, axis=0)
        out.append(
            {
                "weights": weights,
                "slope": float(np.mean(point)),
                "lo": float(np.quantile(boot_c, 0.025)),
                "hi": float(np.quantile(boot_c, 0.975)),
                "cells": len(point),
                "law": HANIN,
                "finite_width": float(np.mean(finite)),
                "two_mu4_minus_one": hanin_coefficient(MU4[weights]),
            }
        )
    return pd.DataFrame(out)


def step_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One backward step (depth 2): n·Var(r), r = ‖δ^(1)‖²/‖δ^(2)‖², per weights and
    direction, with its 95 % bootstrap interval and the exact 5 + 2(μ₄ − 3)ℓ."""
    rng = np.random.default_rng(BOOTSTRAP_SEED + 1)
    out = []
    for (weights, width), part in rows.groupby(["weights", "width"]):
        for direction, col, ell in (
            ("one-hot e_k (ℓ = 1)", "ln_ratio_onehot", 1.0),
            ("v ~ N(0, I_10) (E ℓ = 1/4)", "ln_ratio_random", RANDOM_LOCALISATION),
        ):
            r = np.exp(_by_network(part, col))
            boot = width * _boot_var(r, rng)
            out.append(
                {
                    "weights": weights,
                    "width": width,
                    "direction": direction,
                    "samples": r.size,
                    "n_var": width * r.var(ddof=1),
                    "lo": float(np.quantile(boot, 0.025)),
                    "hi": float(np.quantile(boot, 0.975)),
                    "predicted": step_variance(MU4[weights], ell),
                }
            )
    return pd.DataFrame(out)


# --- figures ---------------------------------------------------------------------------------


def plot_law(cells: pd.DataFrame) -> Figure:
    """Variance, −mean, and the batch ratio beside the median example, against β."""
    fig, axes = figure(1, 3, width=4.4, height=3.9)
    a1, a2, a3 = axes.flat
    beta = np.linspace(0, cells["beta"].max() * 1.05, 50)
    for weights, part in cells.groupby("weights"):
        color, marker = WEIGHT_STYLE[weights]
        style = {**MEASURED, "ls": "none", "marker": marker, "color": color}
        label = f"{weights} weights (μ₄ = {MU4[weights]:g})"
        a1.plot(part["beta"], part["var_ln_ratio_random"], **style, label=label)
        a2.plot(part["beta"], -part["mean_ln_ratio_random"], **style)
        a3.plot(part["beta"], part["median_mean"], **style)
        a3.plot(part["beta"], part["batch_mean"], **{**style, "mfc": "none"})
    a1.plot(beta, HANIN * beta, "k--", lw=1, label="law for an example's δ: 5 Σ 1/n_l")
    two = hanin_coefficient(MU4["uniform"])
    a1.plot(beta, two * beta, "r:", lw=1.2, label=f"(2μ₄ − 1) Σ 1/n_l = {two:g} Σ 1/n_l (uniform)")
    a2.plot(beta, 0.5 * HANIN * beta, "k--", lw=1)
    a3.plot(beta, -0.5 * HANIN * beta, "k--", lw=1)
    a3.axhline(0.0, color="0.5", lw=0.8, ls=":")
    a1.set(xlabel="β = Σ_l 1/n_l", ylabel="variance over examples and nets",
           title="Var ln(‖δ^(1)‖²/‖δ^(L)‖²)")  # fmt: skip
    a2.set(xlabel="β = Σ_l 1/n_l", ylabel="−mean", title="−E ln(‖δ^(1)‖²/‖δ^(L)‖²)")
    a3.set(xlabel="β = Σ_l 1/n_l", ylabel="mean over networks",
           title="filled: median example; open: batch ‖·‖_F²")  # fmt: skip
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    legend_below(fig, a1, ncols=2)
    fig.suptitle("ReLU, σ_w² = 2, per example, v ~ N(0, I) at the output: finite-width "
                 "fluctuations of ‖δ‖² (Hanin 2018)", fontsize=10)  # fmt: skip
    return fig


def qq_cells(cells: pd.DataFrame) -> list[tuple[int, int]]:
    """The (depth, width) cells the QQ plot shows: the largest and the smallest β."""
    by_beta = cells.drop_duplicates(["depth", "width"]).sort_values("beta")
    return [tuple(map(int, by_beta.iloc[k][["depth", "width"]])) for k in (-1, 0)]


def plot_qq(rows: pd.DataFrame, cells: pd.DataFrame) -> Figure:
    """Standardised ln ratio (v ~ N(0, I)) against normal quantiles, per weights, at the
    largest and the smallest β."""
    shown = qq_cells(cells)
    fig, axes = figure(1, len(shown), width=4.2, height=4.0)
    for ax, (depth, width) in zip(axes.flat, shown, strict=True):
        for weights, part in rows[(rows["depth"] == depth) & (rows["width"] == width)].groupby(
            "weights"
        ):
            x = np.sort(part["ln_ratio_random"].to_numpy())
            z = (x - x.mean()) / x.std(ddof=1)
            p = (np.arange(1, len(z) + 1) - 0.5) / len(z)
            color, marker = WEIGHT_STYLE[weights]
            ax.plot(stats.norm.ppf(p), z, marker, color=color, ms=2.5, alpha=0.6, ls="none",
                    label=f"{weights} weights")  # fmt: skip
        ax.plot([-3.5, 3.5], [-3.5, 3.5], "k--", lw=1, label="Gaussian")
        beta = (depth - 1) / width
        ax.set(xlabel="normal quantile", ylabel="standardised ln ratio",
               title=f"depth {depth}, width {width} (β = {beta:.3f})")  # fmt: skip
        ax.grid(alpha=0.3)
    legend_below(fig, axes[0, 0], ncols=3)
    fig.suptitle("QQ plot of ln(‖δ^(1)‖²/‖δ^(L)‖²) per example: log-normality", fontsize=10)
    return fig


def figures(rows: pd.DataFrame) -> dict[str, Figure]:
    cells = table(rows)
    return {"hanin.png": plot_law(cells), "hanin_qq.png": plot_qq(rows, cells)}


# --- words ----------------------------------------------------------------------------------


def _interval(r: pd.Series, key: str = "slope") -> str:
    return f"{r[key]:.2f} (95 % bootstrap interval {r['lo']:.2f}–{r['hi']:.2f})"


def _inside(r: pd.Series, key: str) -> str:
    verdict = "inside" if r["lo"] <= r[key] <= r["hi"] else "outside"
    return f"the {r.name} value {verdict} its interval"


def skew_kurtosis(rows: pd.DataFrame, depth: int, width: int) -> pd.DataFrame:
    part = rows[(rows["depth"] == depth) & (rows["width"] == width)]
    g = part.groupby("weights")["ln_ratio_random"]
    return pd.DataFrame({"skew": g.apply(stats.skew), "kurtosis": g.apply(stats.kurtosis)})


def findings(rows: pd.DataFrame, step: pd.DataFrame) -> list[str]:
    cells, fit, one = table(rows), slopes(rows), step_table(step)
    nets = int(cells["networks"].max())
    per_ex = int(cells["examples"].max()) // nets
    f = fit.set_index("weights")
    out = [
        "**What is predicted.** One backward ReLU step at σ_w² = 2 multiplies an example's "
        "‖δ‖² by r with n·Var(r) = 5 + 2(μ₄ − 3)ℓ exactly, μ₄ = E[w⁴]/E[w²]² and ℓ = Σ_k v̂_k⁴ "
        "the localisation of the direction it receives. (2μ₄ − 1), the fourth-moment constant "
        "of Hanin (2018), is the case ℓ = 1 (a coordinate direction: one entry of the "
        "Jacobian). An example's δ below the top is spread over its ~n/2 active units (ℓ ≈ "
        "6/n), so the law for Var ln(‖δ^(1)‖²/‖δ^(L)‖²) is 5 Σ 1/n_l for Gaussian and uniform "
        "weights alike; 2.6 Σ 1/n_l is not a prediction for it."
    ]
    inside = int(((one["lo"] <= one["predicted"]) & (one["predicted"] <= one["hi"])).sum())
    parts = "; ".join(
        f"{r['weights']} weights, {r['direction']}: {r['n_var']:.2f} ({r['lo']:.2f}–"
        f"{r['hi']:.2f}), exact {r['predicted']:.2f}"
        for _, r in one.iterrows()
    )
    out.append(
        f"**One step: the fourth moment shows where the direction is a coordinate.** "
        f"{inside} of {len(one)} intervals hold the exact value (depth 2, width "
        f"{int(one['width'].iloc[0])}, {int(one['samples'].iloc[0])} examples from "
        f"{step['seed'].nunique()} networks per row; n·Var(r) with its 95 % bootstrap "
        f"interval): {parts}. So uniform weights do give 2μ₄ − 1 = 2.6, but only for a "
        "one-hot direction."
    )
    g, u = f.loc["gaussian"], f.loc["uniform"]
    out.append(
        f"**Deep nets: one slope for both distributions, 5 at leading order; 2.6 is rejected.** "
        f"Var ln"
        f"(‖δ^(1)‖²/‖δ^(L)‖²) / Σ 1/n_l, mean over {int(g['cells'])} (depth, width) cells "
        f"({nets} networks × {per_ex} examples each, v ~ N(0, I)): Gaussian "
        f"{_interval(g)}, uniform {_interval(u)}. The law's leading order is 5; on these "
        f"cells (widths {int(cells['width'].min())}–{int(cells['width'].max())}) its "
        "finite-width value is "
        f"{g['finite_width']:.2f} for Gaussian weights (each step exactly (2/n)χ²_K, Var ln r "
        f"= 5/n + O(1/n²)) and {u['finite_width']:.2f} for uniform ones (the fourth moment's "
        "2(μ₄ − 3)ℓ/n added, ℓ = 1/4 at the top and ≈ 6/n below; `hanin_law_next_order`): "
        f"{_inside(g, 'finite_width')} and {_inside(u, 'finite_width')}. "
        f"2μ₄ − 1 = {u['two_mu4_minus_one']:.1f} lies "
        f"{u['lo'] / u['two_mu4_minus_one']:.1f}× below the uniform interval's lower end."
    )
    ratio = cells["var_ln_ratio_random"] / cells["law_var"]
    mean_ratio = (cells["mean_ln_ratio_random"] / cells["var_ln_ratio_random"]).median()
    loss = cells["var_ln_ratio_loss"] / cells["law_var"]
    out.append(
        f"Per cell the measured variance is {ratio.min():.2f}–{ratio.max():.2f} × 5β, and "
        f"the mean is {signed(mean_ratio)} × the variance (median over cells; the law says "
        f"−½). With the cross-entropy's own δ^(L) = p − y the variance is {loss.min():.2f}–"
        f"{loss.max():.2f} × 5β: p was computed by the same W_L that sends δ back, so the "
        "first step is not an independent projection."
    )
    shapes, worst = [], 0.0
    n = nets * per_ex
    for depth, width in qq_cells(cells):
        sk = skew_kurtosis(rows, depth, width)
        worst = max(worst, *(sk["skew"].abs() / np.sqrt(6 / n)),
                    *(sk["kurtosis"].abs() / np.sqrt(24 / n)))  # fmt: skip
        shapes.append(
            f"depth {depth}, width {width} (β = {(depth - 1) / width:.3f}): "
            + ", ".join(
                f"{w} skewness {signed(r['skew'])}, excess kurtosis {signed(r['kurtosis'])}"
                for w, r in sk.iterrows()
            )
        )
    head = "Log-normal within the sampling noise" if worst < 2 else "Not quite log-normal"
    out.append(
        f"**{head}.** Standardised ln ratio over {n} examples "
        f"per distribution: {'; '.join(shapes)}. For {n} independent Gaussian draws the "
        f"standard errors are {np.sqrt(6 / n):.2f} and {np.sqrt(24 / n):.2f} (the examples of "
        "one network share its weights, so these are lower bounds); the QQ plot's points lie "
        "on the line out to about ±3 standard deviations."
    )
    big = cells.loc[cells["beta"].idxmax()]
    gap = (cells["batch_mean"] - cells["median_mean"]).agg(["min", "max"])
    out.append(
        f"**A batch norm is not a typical example.** Per network, the batch ratio "
        f"ln(Σ_n ‖δ_n^(1)‖² / Σ_n ‖δ_n^(L)‖²) over its {per_ex} examples lies above the "
        f"median example's ln ratio by {gap['min']:.2f} to {gap['max']:.2f} nats (mean over "
        f"networks, per cell): at depth {int(big['depth'])}, width {int(big['width'])} "
        f"({big['weights']}) the batch gives {signed(big['batch_mean'])}, the median example "
        f"{signed(big['median_mean'])}, the law's mean {signed(big['law_mean'])}. The sum "
        "over the batch is weighted towards the examples whose δ grew, the caveat of the "
        "gelu rows below."
    )
    return out


def summary(rows: pd.DataFrame) -> str:
    f = slopes(rows).set_index("weights")
    g, u = f.loc["gaussian"], f.loc["uniform"]
    return (
        f"- Hanin's law, tested: Var ln(‖δ^(1)‖²/‖δ^(L)‖²) per example grows as C·Σ 1/n_l "
        f"with C = {_interval(g)} for Gaussian weights and {_interval(u)} for uniform ones "
        f"(finite-width predictions {g['finite_width']:.2f} and {u['finite_width']:.2f}; 5 at "
        "leading order for both); the fourth-moment constant 2μ₄ − 1 = 2.6 is rejected for an "
        "example's δ and shows only in one step from a one-hot direction."
    )


def markdown_rows(rows: pd.DataFrame) -> list[tuple]:
    return [
        (
            r.weights,
            int(r.depth),
            int(r.width),
            f"{r.beta:.4f}",
            int(r.networks),
            f"{r.var_ln_ratio_random:.3f}",
            f"{r.mean_ln_ratio_random:+.3f}",
            f"{r.var_ln_ratio_loss:.3f}",
            f"{r.law_var:.3f}",
            f"{r.next_order_var:.3f}",
            f"{r.law_mean:+.3f}",
            f"{r.median_mean:+.3f}",
            f"{r.batch_mean:+.3f}",
        )
        for r in table(rows).itertuples()
    ]


HEADER = ["weights", "depth", "width", "β = Σ 1/n_l", "networks", "var (v ~ N(0, I))",
          "mean (v)", "var (cross-entropy δ)", "law: var 5β", "finite width", "law: mean",
          "median example", "batch ratio"]  # fmt: skip
