"""The Jacobian-spectrum report: densities of s², var(s²) and s_max against depth beside the
free-probability prediction, the findings and the README."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.report.common import (
    MEASURED,
    THEORY,
    figure,
    findings_and_plots,
    glossary,
    legend_below,
    markdown_table,
)
from experiments.report.io import write_png

CASE_STYLE = {
    ("tanh", "orthogonal"): {"color": "tab:blue", "label": "tanh, orthogonal"},
    ("tanh", "gaussian"): {"color": "tab:orange", "label": "tanh, Gaussian"},
    ("relu", "orthogonal"): {"color": "tab:green", "label": "relu, orthogonal"},
    ("relu", "gaussian"): {"color": "tab:red", "label": "relu, Gaussian"},
}


THEORY_DASHES = {
    ("tanh", "gaussian"): {"ls": (0, (6, 3)), "marker": "^", "ms": 5},
    ("relu", "orthogonal"): {"ls": (3, (2, 2)), "marker": "v", "ms": 5},
}


def stats(spectrum: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, weights, depth): median, quartiles and mean over seeds of var(s²),
    mean s_max, mean E[s²], and the theory."""
    spectrum = spectrum.assign(var_norm=spectrum["var_s2"] / spectrum["mean_s2"] ** 2)
    g = spectrum.groupby(["activation", "weights", "depth"])
    out = pd.DataFrame(
        {
            "var_median": g["var_s2"].median(),
            "var_q25": g["var_s2"].quantile(0.25),
            "var_q75": g["var_s2"].quantile(0.75),
            "var_mean": g["var_s2"].mean(),
            "var_theory": g["var_s2_theory"].first(),
            "mean_s2": g["mean_s2"].mean(),
            "mean_min": g["mean_s2"].min(),
            "mean_max": g["mean_s2"].max(),
            "mean_theory": g["mean_s2_theory"].first(),
            "s_max": g["s_max"].mean(),
            "s_max_min": g["s_max"].min(),
            "s_max_max": g["s_max"].max(),
            "tiny_frac": g["tiny_frac"].mean(),
            "rank_loss_frac": g["rank_loss_frac"].mean(),
            "var_norm": g["var_norm"].median(),
            "var_norm_theory": g["normalised_var_theory"].first(),
            "min_s2": g["log10_min_s2"].median(),
            "min_s2_lo": g["log10_min_s2"].min(),
            "min_s2_hi": g["log10_min_s2"].max(),
            "radial_theory": g["radial_log10_s2_theory"].first(),
            "seeds": g["seed"].nunique(),
        }
    )
    return out.reset_index()


def _counts(density: pd.DataFrame, act: str, w: str, depth: int, bins: int) -> np.ndarray:
    """The pooled histogram of one case and depth, its empty bins restored."""
    rows = density[
        (density["activation"] == act) & (density["weights"] == w) & (density["depth"] == depth)
    ]
    counts = np.zeros(bins)
    counts[rows["bin"].to_numpy(int)] = rows["count"].to_numpy(float)
    return counts


def plot_densities(
    density: pd.DataFrame, theory: pd.DataFrame, table: pd.DataFrame, edges: np.ndarray
) -> Figure:
    """Histograms of log10(s²) pooled over seeds (a row per case, a column per depth) under
    the free-probability density, the radial mode's predicted s² marked."""
    cases = list(dict.fromkeys(zip(density["activation"], density["weights"], strict=True)))
    depths = sorted(density["depth"].unique())
    fig, axes = figure(len(cases), len(depths), width=3.3, height=2.3, sharex=True)
    widths = np.diff(edges)
    for i, (act, w) in enumerate(cases):
        color = CASE_STYLE.get((act, w), {}).get("color", "k")
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            counts = _counts(density, act, w, depth, len(widths))
            share = counts / max(counts.sum(), 1.0)
            # NOTE: the first bin holds everything below 10^edges[0]: told in words, not drawn
            ax.stairs(
                (share / widths)[1:],
                edges[1:],
                color=color,
                fill=True,
                alpha=0.45,
                label="measured (seeds pooled)",
            )
            curve = theory[
                (theory["activation"] == act)
                & (theory["weights"] == w)
                & (theory["depth"] == depth)
            ]
            ax.plot(
                curve["log10_s2"],
                curve["density"],
                color="k",
                lw=1.0,
                label="free probability (width → ∞)",
            )
            row = _row(table, act, w, depth)
            if w == "orthogonal" and row is not None and row["radial_theory"] < 0:
                ax.axvline(
                    row["radial_theory"],
                    color="tab:purple",
                    ls="--",
                    lw=1.0,
                    label="radial mode: s² = χ_q^(2L)",
                )
            zero = float(curve["zero_mass"].iloc[0]) if len(curve) else 0.0
            ax.text(
                0.03,
                0.95,
                f"below 1e{edges[0]:.0f}: {share[0]:.0%}\n(theory atom {zero:.0%})",
                transform=ax.transAxes,
                fontsize=7,
                va="top",
            )
            ax.set_yscale("log")
            ax.set_ylim(1e-3, 50.0)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"depth {depth}", fontsize=10)
            if j == 0:
                label = CASE_STYLE.get((act, w), {}).get("label", f"{act}, {w}")
                ax.set_ylabel(f"{label}\ndensity of log10 s²", fontsize=9)
            if i == len(cases) - 1:
                ax.set_xlabel("log10 s²")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=3, fontsize=9)
    fig.suptitle(
        "Spectrum of the input–output Jacobian at criticality: measured (width "
        f"{int(table['width'].iloc[0])}) under free probability",
        fontsize=10,
    )
    return fig


def plot_variance(table: pd.DataFrame) -> Figure:
    """var(s²) against depth: median over seeds with quartiles, and the free-probability
    prediction L(μ2/μ1² − 1 − s1)·E[s²]²."""
    fig, axes = figure(1, 1, width=6.4, height=4.4)
    ax = axes[0, 0]
    for (act, w), rows in table.groupby(["activation", "weights"], sort=False):
        style = CASE_STYLE.get((act, w), {"color": "k", "label": f"{act}, {w}"})
        ax.errorbar(
            rows["depth"],
            rows["var_median"],
            yerr=[rows["var_median"] - rows["var_q25"], rows["var_q75"] - rows["var_median"]],
            color=style["color"],
            label=f"{style['label']}: measured (median, quartiles)",
            capsize=2,
            **MEASURED,
        )
        # NOTE: tanh/Gaussian and relu/orthogonal predict the same line (L·E[s²]²): each
        # case gets its own dash pattern and marker so that both stay visible
        ax.plot(
            rows["depth"],
            rows["var_theory"],
            color=style["color"],
            alpha=0.8,
            label=f"{style['label']}: free probability",
            **{**THEORY, **THEORY_DASHES.get((act, w), {})},
        )
    ax.set(xscale="log", yscale="log", xlabel="depth L", ylabel="var(s²) over the spectrum")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3, which="both")
    legend_below(fig, ax, ncols=2)
    fig.suptitle(
        "Variance of the squared singular values of J against depth (width "
        f"{int(table['width'].iloc[0]) if 'width' in table else ''})",
        fontsize=10,
    )
    return fig


def plot_s_max(table: pd.DataFrame) -> Figure:
    """The largest singular value against depth, mean and range over seeds."""
    fig, axes = figure(1, 1, width=6.0, height=4.0)
    ax = axes[0, 0]
    for (act, w), rows in table.groupby(["activation", "weights"], sort=False):
        style = CASE_STYLE.get((act, w), {"color": "k", "label": f"{act}, {w}"})
        ax.errorbar(
            rows["depth"],
            rows["s_max"],
            yerr=[rows["s_max"] - rows["s_max_min"], rows["s_max_max"] - rows["s_max"]],
            color=style["color"],
            label=style["label"],
            capsize=2,
            **MEASURED,
        )
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":", label="isometry: s = 1")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="depth L", ylabel="s_max (mean, range over seeds)")
    ax.grid(alpha=0.3)
    legend_below(fig, ax, ncols=3)
    fig.suptitle("Largest singular value of J against depth", fontsize=10)
    return fig


def write_figures(
    out: Path,
    spectrum: pd.DataFrame,
    density: pd.DataFrame,
    theory: pd.DataFrame,
    edges: np.ndarray,
) -> list[Path]:
    table = stats(spectrum)
    table["width"] = int(spectrum["width"].iloc[0])
    figures = {
        "spectral_density.png": plot_densities(density, theory, table, edges),
        "variance_vs_depth.png": plot_variance(table),
        "s_max_vs_depth.png": plot_s_max(table),
    }
    return [write_png(out / name, fig) for name, fig in figures.items()]


def _row(table: pd.DataFrame, act: str, w: str, depth: int) -> pd.Series | None:
    rows = table[(table["activation"] == act) & (table["weights"] == w) & (table["depth"] == depth)]
    return None if rows.empty else rows.iloc[0]


def findings(spectrum: pd.DataFrame) -> list[str]:
    table = stats(spectrum)
    deep, shallow = int(table["depth"].max()), int(table["depth"].min())
    width = int(spectrum["width"].iloc[0])
    out = []
    to, tg = _row(table, "tanh", "orthogonal", deep), _row(table, "tanh", "gaussian", deep)
    if to is not None and tg is not None:
        out.append(
            f"At criticality (tanh, σ_w² = 1.05, σ_b² = 2.01e-5: χ1 = 1 within 2e-7) free "
            f"probability predicts the same mean squared singular value for both weights, "
            f"E[s²] = Π χ_l = {to['mean_theory']:.3f} at depth {deep}, and that mean is all a "
            f"Frobenius-norm ratio sees; measured: {to['mean_s2']:.3f} with orthogonal weights "
            f"(seeds {to['mean_min']:.3f} to {to['mean_max']:.3f}) and {tg['mean_s2']:.3f} with "
            f"Gaussian ones (seeds {tg['mean_min']:.2f} to {tg['mean_max']:.2f}). The spectra "
            f"differ: var(s²) = {to['var_median']:.3g} (median over {int(to['seeds'])} seeds; "
            f"free probability {to['var_theory']:.3g}) against {tg['var_median']:.3g} (free "
            f"probability {tg['var_theory']:.3g}), {tg['var_median'] / to['var_median']:.0f} "
            f"times larger, and s_max = {to['s_max']:.2f} against {tg['s_max']:.2f}. Normalised "
            f"by E[s²]² (what the free-probability sum predicts), var(s²)/E[s²]² = "
            f"{to['var_norm']:.3f} orthogonal (theory {to['var_norm_theory']:.3f}) and "
            f"{tg['var_norm']:.3g} Gaussian (theory {tg['var_norm_theory']:.3g}). Orthogonal "
            "weights make the deep tanh net nearly isometric (dynamical isometry); Gaussian "
            "ones do not."
        )
    radial = table[(table["activation"] == "tanh") & (table["weights"] == "orthogonal")]
    if len(radial):
        from experiments.theory import meanfield

        xi_q = meanfield.depth_scales("tanh", 1.05, 2.01e-5).xi_q
        parts = "; ".join(
            f"depth {int(r['depth'])}: {r['min_s2']:+.2f} (seeds {r['min_s2_lo']:+.2f} to "
            f"{r['min_s2_hi']:+.2f}), predicted {r['radial_theory']:+.2f}"
            for _, r in radial.iterrows()
        )
        out.append(
            "**The one outlying singular value of each tanh/orthogonal net is the radial "
            "mode.** Scaling the input moves its variance q, which relaxes back to q* by the "
            f"q-map's slope χ_q = e^(−1/ξ_q) = {math.exp(-1 / xi_q):.4f} per layer (ξ_q = "
            f"{xi_q:.1f}); so J shrinks that direction by χ_q^L, s² = χ_q^(2L). Smallest "
            f"log10 s², median over seeds: {parts}."
        )
    ro, rg = _row(table, "relu", "orthogonal", deep), _row(table, "relu", "gaussian", deep)
    if ro is not None and rg is not None:
        out.append(
            f"ReLU at σ_w² = 2 cannot be rescued by orthogonal weights: μ1 = μ2 = ½ makes "
            f"μ2/μ1² − 1 = 1 per layer, so var(s²) grows like L either way; measured at depth "
            f"{deep}: {ro['var_median']:.3g} orthogonal (theory {ro['var_theory']:.3g}) and "
            f"{rg['var_median']:.3g} Gaussian (theory {rg['var_theory']:.3g}). "
            f"{ro['tiny_frac']:.0%} of the orthogonal net's singular values lie below "
            f"1e-8·s_max; {ro['rank_loss_frac']:.0%} are zero for a structural reason: a unit "
            "with relu′ = 0 zeroes a column of every later product, and some layer has only "
            f"{1 - ro['rank_loss_frac']:.0%} of its units active, which bounds the rank. The "
            "rest are rounding noise of products of near-zero directions."
        )
        out.append(
            "**var(s²) is heavy-tailed over networks**: for relu/Gaussian at depth "
            f"{deep} its mean over seeds is {rg['var_mean']:.3g} against a median of "
            f"{rg['var_median']:.3g}; the tables give the median and quartiles."
        )
    rows = []
    for (act, w), part in table.groupby(["activation", "weights"], sort=False):
        a, b = part[part["depth"] == shallow].iloc[0], part[part["depth"] == deep].iloc[0]
        rows.append(
            f"{act}/{w} {a['var_median'] / a['var_theory']:.2f} at depth {shallow}, "
            f"{b['var_median'] / b['var_theory']:.2f} at depth {deep} (quartiles "
            f"{b['var_q25'] / b['var_theory']:.2f}–{b['var_q75'] / b['var_theory']:.2f})"
        )
    out.append(
        "Measured over predicted var(s²), median over seeds: " + "; ".join(rows) + ". "
        f"Free probability is the width → ∞ limit at fixed depth. At width {width} it holds "
        f"to a few percent while L/N is small; at L/N = {deep / width:.2g} one network's "
        "var(s²) is a heavy-tailed random variable whose quartiles span a factor of several "
        "for every case but the nearly isometric orthogonal tanh net (the finite-width "
        "fluctuations Hanin 2018 describes for gradient norms; see `reports/finite_width/`), "
        "so a single network can sit far from the prediction either way."
    )
    return out


def density_match(
    spectrum: pd.DataFrame, density: pd.DataFrame, theory: pd.DataFrame, edges: np.ndarray
) -> pd.DataFrame:
    """Per case at the deepest depth: the share of s² below 10^edges[0], measured and in the
    density (the zero atom counted below), the density's upper edge (log10 s² where it falls
    under 1e-3) and the range over seeds of the largest log10 s²."""
    deep = int(density["depth"].max())
    rows = []
    for (act, w), curve in theory[theory["depth"] == deep].groupby(
        ["activation", "weights"], sort=False
    ):
        counts = _counts(density, act, w, deep, len(edges) - 1)
        grid, rho = curve["log10_s2"].to_numpy(), curve["density"].to_numpy()
        top = spectrum[
            (spectrum["activation"] == act)
            & (spectrum["weights"] == w)
            & (spectrum["depth"] == deep)
        ]["s_max"]
        rows.append(
            {
                "activation": act,
                "weights": w,
                "depth": deep,
                "below": counts[0] / counts.sum(),
                "below_theory": max(1.0 - float(np.trapezoid(rho, grid)), 0.0),
                "edge": grid[rho > 1e-3].max(),
                "top_lo": np.log10(top.min() ** 2),
                "top_hi": np.log10(top.max() ** 2),
            }
        )
    return pd.DataFrame(rows)


def density_finding(
    spectrum: pd.DataFrame, density: pd.DataFrame, theory: pd.DataFrame, edges: np.ndarray
) -> str:
    """The measured histogram against the free-probability density at the deepest depth."""
    match = density_match(spectrum, density, theory, edges)
    seeds = int(spectrum["seed"].nunique())
    parts = [
        f"{r['activation']}/{r['weights']}: {r['below']:.0%} of the measured s² below "
        f"10^{edges[0]:.0f} against {r['below_theory']:.0%} of the density, the largest "
        f"log10 s² {r['top_lo']:+.2f} to {r['top_hi']:+.2f} over seeds against the density's "
        f"upper edge {r['edge']:+.2f}"
        for _, r in match.iterrows()
    ]
    return (
        f"**The free-probability density is the measured spectrum's shape** (the black lines "
        f"of the density plot over the histograms of {seeds} networks of width "
        f"{int(spectrum['width'].iloc[0])}); at depth {int(match['depth'].iloc[0])}: "
        + "; ".join(parts)
        + ". The density is the width → ∞ limit: single nets' largest s² fall on both sides of "
        "its upper edge, and the orthogonal tanh net's radial singular value sits alone below "
        "the bulk, where the density has no mass (one direction in N carries no weight as "
        "N → ∞)."
    )


def summary(spectrum: pd.DataFrame) -> list[str]:
    """The report's first lines, each with its numbers."""
    table = stats(spectrum)
    deep = int(table["depth"].max())
    seeds = int(table["seeds"].max())
    out = []
    to, tg = _row(table, "tanh", "orthogonal", deep), _row(table, "tanh", "gaussian", deep)
    if to is not None and tg is not None:
        out.append(
            f"- Critical tanh at depth {deep}: orthogonal weights keep var(s²) at "
            f"{to['var_median']:.3g}, Gaussian weights give {tg['var_median']:.3g} (medians over "
            f"{seeds} networks); both have E[s²] ≈ 1. Free probability predicts "
            f"{to['var_theory']:.3g} and {tg['var_theory']:.3g}."
        )
    ro = _row(table, "relu", "orthogonal", deep)
    if ro is not None:
        out.append(
            f"- ReLU's spectrum stays wide with orthogonal weights: var(s²) = "
            f"{ro['var_median']:.3g} at depth {deep} (theory {ro['var_theory']:.3g}, growing "
            "like the depth)."
        )
    if to is not None:
        out.append(
            "- The one small singular value of each orthogonal tanh net is the radial mode: "
            f"log10 s² = {to['min_s2']:+.2f} measured, {to['radial_theory']:+.2f} from the "
            "q-map's slope."
        )
    return out


def table_markdown(spectrum: pd.DataFrame) -> str:
    table = stats(spectrum)
    rows = [
        (
            r["activation"],
            r["weights"],
            int(r["depth"]),
            f"{r['mean_s2']:.3f}",
            f"{r['mean_theory']:.3f}",
            f"{r['var_median']:.3g}",
            f"[{r['var_q25']:.3g}, {r['var_q75']:.3g}]",
            f"{r['var_theory']:.3g}",
            f"{r['var_norm']:.3g}",
            f"{r['var_norm_theory']:.3g}",
            f"{r['s_max']:.2f}",
        )
        for _, r in table.iterrows()
    ]
    return markdown_table(
        [
            "activation",
            "weights",
            "depth",
            "E[s²]",
            "theory",
            "var(s²) median",
            "quartiles",
            "free probability",
            "var/E[s²]² median",
            "theory",
            "s_max",
        ],
        rows,
        "lllrrrrrrrr",
    )


def readme(
    spectrum: pd.DataFrame,
    figures: Sequence[Path],
    command: str,
    runtime: str,
    curves: tuple[pd.DataFrame, pd.DataFrame, np.ndarray],
) -> str:
    """The README; `curves` = (density, theory, edges): the histograms, the free-probability
    densities and the bins' edges."""
    width = int(spectrum["width"].iloc[0])
    seeds = spectrum["seed"].nunique()
    depths = sorted(spectrum["depth"].unique())
    lines = [
        "# The input–output Jacobian's spectrum: dynamical isometry, measured",
        "",
        "Generated by `experiments/jacobian_spectrum.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(spectrum),
        *(
            f"- The free-probability density drawn over the histograms: at depth "
            f"{int(r['depth'])}, {r['below']:.0%} of tanh/Gaussian s² lie below 1e-8 measured "
            f"and {r['below_theory']:.0%} in the density."
            for _, r in density_match(spectrum, *curves).iterrows()
            if (r["activation"], r["weights"]) == ("tanh", "gaussian")
        ),
        "",
        *glossary("σ_w², σ_b²", "q*", "χ1", "ξ", "edge of chaos")[:-1],
        "- **J, s**: J = ∂h^(L)/∂h^(0), the input–output Jacobian; s its singular values. "
        "Dynamical isometry: every s near 1, so that every direction of the input's change "
        "passes through the net unscaled.",
        "",
        "## What was run",
        "",
        f"    {command}",
        "",
        f"- Networks: depth up to {max(depths)} of square layers of width {width}, "
        "h^(l) = W_l φ(h^(l−1)) + b_l, the input pre-activation h^(0) ~ N(0, q*) (the variance "
        "fixed point: tanh q* = 0.02592; relu keeps any q, here 1). tanh at σ_w² = 1.05, "
        "σ_b² = 2.01e-5 (χ1 = 1 to 2e-7: criticality) and relu at σ_w² = 2, σ_b² = 0 (χ1 = 1); "
        "weights Gaussian N(0, σ_w²/N) or σ_w·Q with Q Haar-orthogonal (QR of a Gaussian, "
        "signs fixed); biases N(0, σ_b²).",
        f"- {seeds} seeds per case; the Jacobian at depths {', '.join(map(str, depths))} are "
        "the prefix products of one network per seed.",
        "- J = ∂h^(L)/∂h^(0) = W_L D_{L−1} ⋯ W_1 D_0, D_l = diag φ′(h^(l)), multiplied out "
        "factor by factor from the manual_bp network's weights and its forward tape (no "
        "autograd); singular values by `numpy.linalg.svd`. Values below 1e-8·s_max are "
        "rounding noise of the float64 product (`tiny_frac`).",
        "- Theory (`experiments.measure.jacobian.spectrum_theory`): "
        "Pennington, Schoenholz & Ganguli "
        '(2017), "Resurrecting the sigmoid in deep learning through dynamical isometry": '
        "E[s²] = Π χ_l and var(s²) = E[s²]² Σ_l (μ2/μ1² − 1 − s1), μ_k = E[φ′(√q z)^{2k}], "
        "s1 = −1 for Gaussian and 0 for orthogonal weights; at χ = 1 their L(μ2/μ1² − 1 − s1). "
        "The density: the S-transform equation (S_W S_{D²})^L m/(1 + m) = 1/(x + iε) of "
        'Pennington, Schoenholz & Ganguli (2018), "The emergence of spectral universality in '
        "deep networks\", solved for m by Newton's method continued down x (ε = 1e-9·x); "
        "its mass, mean and normalised variance are tested against the closed forms.",
        f"- Runtime: {runtime}",
        "",
        "## Numbers",
        "",
        table_markdown(spectrum),
        "",
    ]
    captions = {
        "spectral_density.png": "The density of log10 s² at three depths: the measured "
        "histograms (seeds pooled) under the free-probability density, the radial mode's "
        "predicted s² dashed.",
        "variance_vs_depth.png": "var(s²) against depth beside free probability.",
        "s_max_vs_depth.png": "The largest singular value against depth.",
    }
    lines += findings_and_plots(
        [density_finding(spectrum, *curves), *findings(spectrum)], figures, captions
    )
    lines += [
        "## Files",
        "",
        "- `spectrum.csv`: one row per case, seed and depth: `activation`, `weights`, "
        "`sigma_w2`, `sigma_b2`, `q_in`, `width`, `seed`, `depth`, `mean_s2`, `var_s2`, "
        "`s_max`, `median_s2`, `tiny_frac`, `log10_min_s2`, `rank_loss_frac` (1 − the rank "
        "bound over width), `mean_s2_theory`, `var_s2_theory`, `normalised_var_theory`, "
        "`radial_log10_s2_theory`.",
        "- `density.csv`: the histograms behind the density plot: `activation`, `weights`, "
        "`depth`, `bin`, `lo`, `hi` (log10 s² edges), `count` (pooled over seeds; empty bins "
        "left out).",
        "- `theory_density.csv`: the free-probability density of log10 s² "
        "(`experiments.theory.free_probability`, the S-transform equation solved by Newton's "
        "method): `activation`, `weights`, `depth`, `log10_s2`, `density` (points above "
        "1e-4), `zero_mass` (relu's atom at s² = 0).",
        "",
    ]
    return "\n".join(lines)
