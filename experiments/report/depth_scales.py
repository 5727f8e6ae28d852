"""The depth-scales report: ξ_q and ξ_c over σ_w² with the critical line, ξ_c fitted in
finite nets against the theory (with dropout and without), the trainable frontier at three
budgets with 6ξ_c drawn over it, the findings and the README."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure

from experiments.measure import depth_scales as probes
from experiments.measure.trainability import Frontier
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


def dropout_frame(
    activation: str, sigma_w2: Sequence[float], sigma_b2: float, keeps: Sequence[float]
) -> pd.DataFrame:
    """scales_frame for every keep probability ρ, with a `keep` column (ρ = 1 first)."""
    frames = []
    for k in keeps:
        rows = []
        for s in sigma_w2:
            d = meanfield.depth_scales(activation, float(s), sigma_b2, k)
            rows.append({"keep": k, "sigma_w2": float(s), "sigma_b2": sigma_b2,
                         "q_star": d.q_star, "chi1": d.chi1, "c_star": d.c_star,
                         "chi_c": d.chi_c, "xi_q": d.xi_q, "xi_c": d.xi_c})  # fmt: skip
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True)


def fits_frame(propagation: pd.DataFrame, sigma_b2: float) -> pd.DataFrame:
    """Per net (activation, σ_w², ρ, seed): ξ_c fitted to c^(l) − c* and the theory's ξ_c."""
    rows = []
    keys = ["activation", "sigma_w2", "keep", "seed"]
    for (act, s, k, seed), g in propagation.groupby(keys, sort=True):
        c_star = float(g["c_star"].iloc[0])
        fit = probes.fit_depth_scale(g["layer"].to_numpy(), (1.0 - c_star) - g["one_minus_c"])
        theory = meanfield.depth_scales(act, float(s), sigma_b2, float(k))
        q_floor = probes.noise_floor(g["q"].to_numpy() - theory.q_star) / theory.q_star
        rows.append({"activation": act, "sigma_w2": s, "keep": k, "seed": seed,
                     "xi_c_fit": fit.xi, "first": fit.first, "last": fit.last,
                     "points": fit.points, "xi_c_theory": theory.xi_c,
                     "c_star": c_star, "q_floor": q_floor})  # fmt: skip
    return pd.DataFrame(rows)


def fit_spread(fits: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, σ_w², ρ): median, min and max of the fitted ξ_c over the seeds that
    gave a fit, how many did, and the theory."""
    g = fits.groupby(["activation", "sigma_w2", "keep"], sort=True)
    return pd.DataFrame(
        {
            "median": g["xi_c_fit"].median(),
            "lo": g["xi_c_fit"].min(),
            "hi": g["xi_c_fit"].max(),
            "fitted": g["xi_c_fit"].count(),
            "seeds": g["seed"].nunique(),
            "theory": g["xi_c_theory"].first(),
        }
    ).reset_index()


def plot_measured(fits: pd.DataFrame, scales: pd.DataFrame, sigma_b2: float) -> Figure:
    """Fitted ξ_c (median and range over seeds) against the theory, per activation; and tanh
    with dropout (ρ < 1), theory lines and measured points."""
    spread = fit_spread(fits)
    acts = list(dict.fromkeys(spread["activation"]))
    fig, axes = figure(1, len(acts) + 1, width=4.6, height=3.9)
    colors = {1.0: "tab:blue", 0.99: "tab:orange", 0.95: "tab:green"}
    for ax, act in zip(axes.flat, acts, strict=False):
        s = spread[(spread["activation"] == act) & (spread["keep"] == 1.0)]
        grid = np.linspace(s["sigma_w2"].min(), s["sigma_w2"].max(), 120)
        grid = grid[np.abs(grid - _critical_or_none(act, sigma_b2, grid)) > 1e-3]
        theory = [meanfield.depth_scales(act, float(x), sigma_b2).xi_c for x in grid]
        ax.semilogy(grid, theory, color="k", lw=1.2, label="theory −1/ln χ_c(c*)")
        _points(ax, s, "tab:blue", "fitted in finite nets")
        ax.set(xlabel=f"σ_w² (σ_b² = {sigma_b2:g})", ylabel="ξ_c (layers)", title=act)
        ax.set_ylim(0.7, 300)
    ax = axes.flat[-1]
    for k, color in colors.items():
        t = scales[scales["keep"] == k]
        ax.semilogy(t["sigma_w2"], t["xi_c"], color=color, lw=1.2, label=f"theory ρ = {k:g}")
        s = spread[(spread["activation"] == "tanh") & (spread["keep"] == k)]
        _points(ax, s, color, None)
    ax.set(xlabel=f"σ_w² (σ_b² = {sigma_b2:g})", ylabel="ξ_c (layers)",
           title="tanh with dropout (keep ρ)")  # fmt: skip
    ax.set_ylim(0.7, 300)
    for a in axes.flat:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7, loc="upper right")
    seeds = int(spread["seeds"].max())
    fig.suptitle(f"ξ_c fitted to c^(l) − c* in random nets (points: median, bars: range over "
                 f"{seeds} seeds) against the mean-field theory", fontsize=10)  # fmt: skip
    return fig


def _critical_or_none(act: str, sigma_b2: float, grid: np.ndarray) -> float:
    try:
        return meanfield.critical_sigma_w2(act, sigma_b2, lo=float(grid[0]), hi=float(grid[-1]))
    except ValueError:
        return -1.0


def _points(ax, s: pd.DataFrame, color: str, label: str | None) -> None:
    ok = s[s["fitted"] > 0]
    yerr = [ok["median"] - ok["lo"], ok["hi"] - ok["median"]]
    ax.errorbar(ok["sigma_w2"], ok["median"], yerr=yerr, fmt="o", color=color, ms=4,
                capsize=2, label=label)  # fmt: skip


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
    cells: pd.DataFrame, scales: pd.DataFrame, critical: float, frontier: Frontier
) -> Figure:
    """Per budget, the share of seeds reaching TRAINED accuracy over (σ_w², depth), 6ξ_c and ξ_c
    drawn over it."""
    budgets = sorted(cells["budget"].unique())
    fig, axes = figure(1, len(budgets), width=4.4, height=4.4)
    levels = np.linspace(0.0, 1.0, 5) if cells["seed"].nunique() == 3 else np.linspace(0, 1, 11)
    curve = scales[scales["keep"] == 1.0]
    all_depths = sorted(cells["depth"].unique())
    for ax, budget in zip(axes.flat, budgets, strict=True):
        at = cells[cells["budget"] == budget]
        grid = (at["test_acc"] >= TRAINED).groupby([at["depth"], at["sigma_w2"]]).mean().unstack()
        grid = grid.reindex(all_depths)  # NaN rows: not run at this budget (drawn grey)
        depths, sigmas = grid.index.to_numpy(), grid.columns.to_numpy()
        ax.set_facecolor("0.8")
        if grid.isna().any().any():
            ax.text(0.97, 0.985, "grey: not run at this budget", transform=ax.transAxes,
                    ha="right", va="top", fontsize=7)  # fmt: skip
        x_edges, y_edges = _edges(sigmas), _edges(np.log2(depths))
        image = ax.pcolormesh(x_edges, 2.0**y_edges, grid.to_numpy(), cmap="viridis",
                              norm=BoundaryNorm(levels, 256), shading="flat")  # fmt: skip
        bad = at[at["diverged"] == 1]
        if len(bad):
            ax.plot(bad["sigma_w2"], bad["depth"], "rx", ms=6, label="diverged")
        c = curve[(curve["sigma_w2"] >= x_edges[0]) & (curve["sigma_w2"] <= x_edges[-1])]
        ax.plot(c["sigma_w2"], 6 * c["xi_c"], color="w", lw=2.0, label="6 ξ_c")
        ax.plot(c["sigma_w2"], c["xi_c"], color="w", lw=1.2, ls="--", label="ξ_c")
        ax.axvline(critical, color="r", ls=":", lw=1.2, label=f"critical σ_w² = {critical:.3f}")
        ax.set_yscale("log", base=2)
        ax.set_ylim(2.0 ** y_edges[0], 2.0 ** y_edges[-1])
        ax.set_xlim(x_edges[0], x_edges[-1])
        ax.set(xlabel=f"σ_w² (σ_b² = {frontier.sigma_b2:g})", ylabel="depth (Linear layers)",
               title=f"after {budget} SGD steps")  # fmt: skip
    axes.flat[0].legend(fontsize=7, loc="upper left", facecolor="0.85", framealpha=0.9)
    seeds = cells["seed"].nunique()
    fig.colorbar(
        image, ax=list(axes.flat), label=f"share of {seeds} seeds with test acc ≥ {TRAINED}"
    )
    fig.suptitle(
        f"Trainable frontier of {frontier.activation} MLPs on the 8×8 digits: width "
        f"{frontier.width}, lr {frontier.lr}, batch {frontier.batch}",
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
    out: Path,
    cells: pd.DataFrame,
    scales: pd.DataFrame,
    fits: pd.DataFrame,
    critical: float,
    frontier: Frontier,
) -> list[Path]:
    figures = {
        "depth_scales.png": plot_scales(scales[scales["keep"] == 1.0], critical),
        "measured.png": plot_measured(fits, scales, frontier.sigma_b2),
        "trainability.png": plot_phase_diagram(cells, scales, critical, frontier),
    }
    return [write_png(out / name, fig) for name, fig in figures.items()]


# --- numbers and the README --------------------------------------------------------------


def deepest_trained(cells: pd.DataFrame, share: float = 0.5) -> pd.Series:
    """Per σ_w²: the largest depth where more than `share` of the seeds reach TRAINED
    accuracy (0 if none); share = 0 asks for any seed."""
    ok = (cells["test_acc"] >= TRAINED).groupby([cells["sigma_w2"], cells["depth"]]).mean()
    ok = ok[ok > share].reset_index()
    return (
        ok.groupby("sigma_w2")["depth"]
        .max()
        .reindex(sorted(cells["sigma_w2"].unique()), fill_value=0)
    )


def agreement(cells: pd.DataFrame, xi_c: pd.Series) -> dict[str, int]:
    """How many runs below / above 6ξ_c trained (accuracy ≥ TRAINED)."""
    limit = cells["sigma_w2"].map(6 * xi_c)
    trained = cells["test_acc"] >= TRAINED
    below = cells["depth"] < limit
    return {
        "below": int(below.sum()),
        "below_trained": int((below & trained).sum()),
        "above": int((~below).sum()),
        "above_trained": int((~below & trained).sum()),
    }


#: a fitted ξ_c is set against the theory where the theory's ξ_c < depth / this: the net is
#: deep enough for the deviation to fall by e this many times
E_FOLDS = 4


def fit_ratios(
    fits: pd.DataFrame, activation: str, keep: float, depth: int
) -> tuple[pd.DataFrame, int]:
    """Per σ_w² where every seed gave a fit and the theory's ξ_c < depth/E_FOLDS: the median
    and range of fitted/theory ξ_c; and the number of σ_w² left out."""
    s = fit_spread(fits)
    s = s[(s["activation"] == activation) & (s["keep"] == keep)]
    full = s[(s["fitted"] == s["seeds"]) & (s["theory"] < depth / E_FOLDS)].copy()
    for col in ("median", "lo", "hi"):
        full[col] = full[col] / full["theory"]
    return full, len(s) - len(full)


def _ratio_line(fits: pd.DataFrame, activation: str, keep: float, depth: int) -> str:
    r, left = fit_ratios(fits, activation, keep, depth)
    if not len(r):
        return f"{activation}, ρ = {keep:g}: no σ_w² where every seed gave a fit"
    seeds = int(fit_spread(fits)["seeds"].max())
    text = (
        f"{activation}, ρ = {keep:g}: fitted/theory ξ_c has medians {r['median'].min():.2f} to "
        f"{r['median'].max():.2f} over {len(r)} σ_w² (every one of {seeds} seeds ranging "
        f"{r['lo'].min():.2f} to {r['hi'].max():.2f})"
    )
    return text + (
        f"; {left} σ_w² left out (theory ξ_c ≥ depth/{E_FOLDS}, or a seed without a fit)"
        if left
        else ""
    )


def summary(
    cells: pd.DataFrame, fits: pd.DataFrame, scales: pd.DataFrame, grid_scales: pd.DataFrame,
    critical: float, depth: int,
) -> list[str]:  # fmt: skip
    """The report's first lines, each with its numbers."""
    xi = grid_scales.set_index("sigma_w2")["xi_c"]
    seeds = cells["seed"].nunique()
    peaks = scales[scales["keep"] < 1].groupby("keep")["xi_c"].max().sort_index(ascending=False)
    budgets = sorted(cells["budget"].unique())
    counts = [agreement(cells[cells["budget"] == b], xi) for b in budgets]
    parts = [
        f"{a['below_trained']}/{a['below']} after {b}" for a, b in zip(counts, budgets, strict=True)
    ]
    return [
        f"- tanh at σ_b² = {grid_scales['sigma_b2'].iloc[0]:g}: the edge of chaos is at σ_w² = "
        f"{critical:.4f}, where the mean-field ξ_c diverges.",
        f"- ξ_c fitted in finite random nets follows the theory away from the edge: "
        f"{_ratio_line(fits, 'tanh', 1.0, depth)}.",
        "- Dropout removes the divergence: the largest ξ_c over σ_w² is "
        + ", ".join(f"{v:.1f} at ρ = {k:g}" for k, v in peaks.items())
        + " (theory; the fitted points follow, see Findings).",
        f"- Runs shallower than 6ξ_c that train (test acc ≥ {TRAINED}, {seeds} seeds per cell): "
        + ", ".join(parts)
        + f" steps ({budgets[-1]} steps only up to depth "
        f"{int(cells[cells['budget'] == budgets[-1]]['depth'].max())}); the frontier moves "
        "out with the budget (Findings).",
    ]


def findings(
    cells: pd.DataFrame, fits: pd.DataFrame, scales: pd.DataFrame, grid_scales: pd.DataFrame,
    critical: float, depth: int,
) -> list[str]:  # fmt: skip
    out = []
    c_lo = grid_scales.iloc[(grid_scales["sigma_w2"] - 1.0).abs().argmin()]
    c_hi = grid_scales.iloc[(grid_scales["sigma_w2"] - 3.5).abs().argmin()]
    out.append(
        f"The critical line at σ_b² = {grid_scales['sigma_b2'].iloc[0]:g} sits at σ_w² = "
        f"{critical:.4f}: ξ_c diverges there (∝ 1/|σ_w² − σ_w²*|) and falls to "
        f"{c_lo['xi_c']:.2f} layers at σ_w² = {c_lo['sigma_w2']:g} (ordered) and "
        f"{c_hi['xi_c']:.2f} at σ_w² = {c_hi['sigma_w2']:g} (chaotic, c* = "
        f"{c_hi['c_star']:.3f}); ξ_q stays between {grid_scales['xi_q'].min():.2f} and "
        f"{grid_scales['xi_q'].max():.2f} layers."
    )
    for act, keep in (("tanh", 1.0), ("relu", 1.0), ("tanh", 0.99), ("tanh", 0.95)):
        if ((fits["activation"] == act) & (fits["keep"] == keep)).any():
            out.append(f"Fitted against theory, {_ratio_line(fits, act, keep, depth)}.")
    floor = fits["q_floor"]
    out.append(
        f"ξ_q is not fitted: in theory 1 to 2 layers, so q^(l), started at 3q*, falls within a "
        f"few layers to the finite nets' noise floor (largest |q^(l) − q*|/q* over the last "
        f"quarter of the layers: median {floor.median():.3f}, range {floor.min():.3f} to "
        f"{floor.max():.3f} over {len(fits)} nets), too few clean layers for a line."
    )
    near = fit_spread(fits)
    near = near[(near["activation"] == "tanh") & (near["keep"] == 1.0)]
    near = near.iloc[(near["sigma_w2"] - critical).abs().argmin()]
    out.append(
        f"Near the edge (σ_w² = {near['sigma_w2']:g}, theory ξ_c = {near['theory']:.0f}) the fit "
        f"gives {near['median']:.1f} (range {near['lo']:.1f} to {near['hi']:.1f}): a net of "
        "finite depth and width shows a long but finite ξ_c there."
    )
    budgets = sorted(cells["budget"].unique())
    xi = grid_scales.set_index("sigma_w2")["xi_c"]
    seeds = cells["seed"].nunique()
    for b in budgets:
        at = cells[cells["budget"] == b]
        most, anyone = deepest_trained(at), deepest_trained(at, 0.0)
        parts = [f"{s:g}: {int(most[s])} ({int(anyone[s])})" for s in most.index]
        out.append(
            f"After {b} steps (depths up to {int(at['depth'].max())} run), the deepest cell "
            f"where most of {seeds} seeds reach test acc {TRAINED} (any seed), per σ_w²: "
            + "; ".join(parts)
            + "."
        )
    out.append("For comparison, 6ξ_c per σ_w²: "
               + "; ".join(f"{s:g}: {6 * v:.0f}" for s, v in xi.items()) + ".")  # fmt: skip
    last = cells[cells["budget"] == budgets[-1]]
    most = deepest_trained(last)
    past = [s for s in most.index if most[s] > 6 * xi[s]]
    if past:
        out.append(
            f"After {budgets[-1]} steps the frontier lies beyond 6ξ_c at σ_w² ∈ "
            f"{{{', '.join(f'{s:g}' for s in past)}}} ("
            + ", ".join(f"{int(most[s])} layers against {6 * xi[s]:.0f}" for s in past)
            + f"): with a long budget, ordered nets this deep still reach test acc {TRAINED}; "
            "6ξ_c marks where a short budget stops, not a hard limit."
        )
    div = cells[cells["diverged"] == 1]
    if len(div):
        out.append(f"{len(div)} runs diverged (loss not finite), all at σ_w² ≥ "
                   f"{div['sigma_w2'].min():g}.")  # fmt: skip
    return out


def readme(
    cells: pd.DataFrame,
    scales: pd.DataFrame,
    grid_scales: pd.DataFrame,
    fits: pd.DataFrame,
    critical: float,
    frontier: Frontier,
    probe: probes.Probe,
    n_train: int,
    figures: Sequence[Path],
    command: str,
    runtime: str,
) -> str:
    sigmas = sorted(cells["sigma_w2"].unique())
    depths = sorted(cells["depth"].unique())
    budgets = sorted(cells["budget"].unique())
    deep = cells.groupby("budget")["depth"].max()
    spread = fit_spread(fits)
    seeds_p = int(spread["seeds"].max())
    lines = [
        "# Depth scales and trainability: ξ_q, ξ_c, dropout and how deep SGD can go",
        "",
        "Generated by `experiments/depth_scales.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(cells, fits, scales, grid_scales, critical, probe.depth),
        "",
        *glossary("σ_w², σ_b²", "q*", "χ1", "c-map", "ξ", "edge of chaos"),
        "## What was run",
        "",
        f"    {command}",
        "",
        f"- Theory: q*, χ1, c*, ξ_q, ξ_c for {frontier.activation} at σ_b² = "
        f"{frontier.sigma_b2:g}, dropout keep ρ ∈ {{1, 0.99, 0.95}} (Schoenholz et al. 2017).",
        f"- Finite nets: width {probe.width}, depth {probe.depth}, {probe.pairs} input pairs, "
        f"{seeds_p} seeds; ξ_c fitted to log|c^(l) − c*| over the clean layers.",
        f"- Trainability: width {frontier.width}, batch {frontier.batch}, lr {frontier.lr}, "
        f"{cells['seed'].nunique()} seeds; σ_w² ∈ {{{', '.join(f'{s:g}' for s in sigmas)}}}, "
        f"depth ∈ {{{', '.join(map(str, depths))}}}; test accuracy after "
        + ", ".join(f"{b}" for b in budgets)
        + f" steps ({budgets[-1]} only up to depth {int(deep[budgets[-1]])}).",
        f"- Runtime: {runtime}",
        "",
        "## ξ_c fitted in finite nets",
        "",
        f"Median and range over {seeds_p} seeds; `–` where a seed gave no clean range.",
        "",
        markdown_table(
            ["activation", "ρ", "σ_w²", "theory ξ_c", "fitted ξ_c", "range", "seeds fitted"],
            [
                (
                    r.activation,
                    f"{r.keep:g}",
                    f"{r.sigma_w2:g}",
                    f"{r.theory:.2f}",
                    f"{r.median:.2f}" if r.fitted else "–",
                    f"{r.lo:.2f} – {r.hi:.2f}" if r.fitted else "–",
                    f"{int(r.fitted)}/{int(r.seeds)}",
                )
                for r in spread.itertuples()
            ],
            "llrrrrr",
        ),
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
                )  # fmt: skip
                for r in grid_scales.itertuples()
            ],
            "rrrrrrr",
        ),
        "",
    ]
    captions = {
        "depth_scales.png": "ξ_q, ξ_c, χ1 and c* against σ_w², with the critical line.",
        "measured.png": "ξ_c fitted in finite nets against the theory; with dropout, right.",
        "trainability.png": "Share of seeds that train, per budget, with 6ξ_c drawn over it.",
    }
    lines += findings_and_plots(
        findings(cells, fits, scales, grid_scales, critical, probe.depth), figures, captions
    )
    lines += [
        "## Files",
        "",
        "- `depth_scales.csv`: the theory per `keep` and `sigma_w2`: `q_star`, `chi1`, "
        "`c_star`, `chi_c`, `xi_q`, `xi_c`.",
        "- `propagation.csv`: per net and layer: `q` (mean z² of the length inputs) and "
        "`one_minus_c` (mean over the pairs), with the theory's `q_star`, `c_star`.",
        "- `fits.csv`: per net: `xi_c_fit`, the clean range `first`..`last` (`points`), "
        "`xi_c_theory`, `q_floor` (q's noise floor over q*).",
        "- `trainability.csv`: per cell, seed and `budget`: `steps`, `test_loss`, `test_acc`, "
        "`diverged`.",
        "",
    ]
    return "\n".join(lines)


def critical_line(activation: str, sigma_b2: float) -> float:
    return meanfield.critical_sigma_w2(activation, sigma_b2)
