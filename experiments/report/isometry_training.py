"""The isometry-training report: loss curves of deep critical nets, orthogonal against
Gaussian weights, and the loss after the budget against the Jacobian's spectral variance."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from experiments.report.common import MEASURED, figure, findings_and_plots, legend_below, panels
from experiments.report.io import write_png

WEIGHT_STYLE = {"orthogonal": {"color": "tab:blue"}, "gaussian": {"color": "tab:orange"}}
KEYS = ["depth", "activation", "sigma_b2", "weights"]


def _cell(activation: str, q_star: float, depth: int | None = None) -> str:
    where = "" if depth is None else f"depth {depth}, "
    return f"{where}{activation}, q* = {q_star:.3g}"


def summarise(
    curves: pd.DataFrame, spread: Mapping[tuple[int, str, str, float], float], threshold: float
) -> pd.DataFrame:
    """Per cell: the theory's normalised spectral variance, the loss after the budget (median,
    min, max over seeds) and the first evaluated step with loss ≤ threshold (median, min, max
    over the seeds that reach it; `reached` counts them)."""
    rows = []
    for (depth, act, sigma_b2, weights), part in curves.groupby(KEYS, sort=False):
        final = part.sort_values("step").groupby("seed")["loss"].last()
        hit = part[part["loss"] <= threshold].groupby("seed")["step"].min()
        rows.append(
            {
                "depth": depth,
                "activation": act,
                "weights": weights,
                "sigma_w2": part["sigma_w2"].iloc[0],
                "sigma_b2": sigma_b2,
                "q_star": part["q_star"].iloc[0],
                "normalised_var": spread[(depth, act, weights, sigma_b2)],
                "seeds": part["seed"].nunique(),
                "steps": int(part["step"].max()),
                "final_median": final.median(),
                "final_min": final.min(),
                "final_max": final.max(),
                "reached": len(hit),
                "steps_to_median": hit.median() if len(hit) else math.nan,
                "steps_to_min": hit.min() if len(hit) else math.nan,
                "steps_to_max": hit.max() if len(hit) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, threshold: float) -> Figure:
    """A panel per (depth, activation, q*): the normalised loss against step, median over
    seeds and the range, orthogonal against Gaussian."""
    groups = list(
        dict.fromkeys(zip(curves["depth"], curves["activation"], curves["q_star"], strict=True))
    )
    fig, flat = panels(len(groups), max_cols=4, width=3.2, height=3.0, sharey=True)
    for ax, (depth, act, q) in zip(flat, groups, strict=True):
        part = curves[
            (curves["depth"] == depth) & (curves["activation"] == act) & (curves["q_star"] == q)
        ]
        for weights, rows in part.groupby("weights", sort=False):
            g = rows.groupby("step")["loss"]
            steps = np.array(sorted(rows["step"].unique()))
            color = WEIGHT_STYLE[weights]["color"]
            ax.fill_between(steps, g.min(), g.max(), color=color, alpha=0.25, lw=0)
            ax.plot(steps, g.median(), color=color, lw=1.4, label=f"{weights} (median, range)")
        ax.axhline(threshold, color="0.5", lw=0.8, ls=":", label=f"threshold {threshold:g}")
        ax.set_title(_cell(act, q, depth), fontsize=10)
        ax.set_xlabel("SGD step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    for ax in flat[:: min(4, len(flat))]:
        ax.set_ylabel("evaluation MSE / Var y")
    legend_below(fig, flat[0], ncols=3)
    fig.suptitle("Training a deep critical net on a linear teacher", fontsize=10)
    return fig


def plot_speed(summary: pd.DataFrame) -> Figure:
    """The loss after the budget against the Jacobian's normalised spectral variance."""
    fig, axes = figure(1, 1, width=5.6, height=4.2)
    ax = axes[0, 0]
    groups = list(dict.fromkeys(zip(summary["activation"], summary["q_star"], strict=True)))
    markers = dict(zip(groups, "o^Dsv<>", strict=False))
    fills = _depth_fills(summary)
    for _, r in summary.iterrows():
        ax.errorbar(
            [r["normalised_var"]],
            [r["final_median"]],
            yerr=[[r["final_median"] - r["final_min"]], [r["final_max"] - r["final_median"]]],
            color=WEIGHT_STYLE[r["weights"]]["color"],
            capsize=2,
            **{**MEASURED, "marker": markers[(r["activation"], r["q_star"])], "ms": 6},
            **fills[r["depth"]],
        )
    for weights, style in WEIGHT_STYLE.items():
        ax.plot([], [], ls="-", lw=6, alpha=0.6, color=style["color"], label=weights)
    for (act, q), marker in markers.items():
        ax.plot([], [], ls="", marker=marker, color="0.3", label=_cell(act, q))
    for depth, fill in fills.items():
        ax.plot([], [], ls="", marker="o", color="0.3", label=f"depth {depth}", **fill)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="var(s²)/E[s²]² of JJᵀ (free probability)",
        ylabel="loss after the budget (median, range)",
    )
    ax.grid(alpha=0.3, which="both")
    legend_below(fig, ax, ncols=3)
    fig.suptitle(
        "Loss after the budget against the Jacobian's spectral spread\n(filled: the shallowest "
        "depth; hollow, then half-filled: deeper)",
        fontsize=10,
    )
    return fig


#: marker faces by depth, shallowest first: filled, hollow, half-filled
FILLS = ({}, {"mfc": "white"}, {"fillstyle": "bottom", "mfcalt": "white"})


def _depth_fills(summary: pd.DataFrame) -> dict[int, dict[str, str]]:
    depths = sorted(int(d) for d in summary["depth"].unique())
    return {d: FILLS[min(k, len(FILLS) - 1)] for k, d in enumerate(depths)}


def write_figures(
    out: Path, curves: pd.DataFrame, summary: pd.DataFrame, threshold: float
) -> list[Path]:
    figures = {
        "loss_curves.png": plot_curves(curves, threshold),
        "speed_vs_spread.png": plot_speed(summary),
    }
    return [write_png(out / name, fig) for name, fig in figures.items()]


def _steps(r: pd.Series) -> str:
    if r["reached"] == 0:
        return f"none of {int(r['seeds'])} within {int(r['steps'])}"
    return (
        f"{r['steps_to_median']:.0f} [{r['steps_to_min']:.0f}, {r['steps_to_max']:.0f}] "
        f"({int(r['reached'])} of {int(r['seeds'])})"
    )


def _loss(r: pd.Series) -> str:
    return f"{r['final_median']:.3f} [{r['final_min']:.3f}, {r['final_max']:.3f}]"


def _order(values: Sequence[pd.Series]) -> str:
    """'rises', 'falls' or '' for cells in depth order, by disjoint seed ranges only."""
    pairs = list(zip(values[:-1], values[1:], strict=True))
    if all(a["final_max"] < b["final_min"] for a, b in pairs):
        return "rises"
    if all(a["final_min"] > b["final_max"] for a, b in pairs):
        return "falls"
    return ""


def depth_trend(summary: pd.DataFrame) -> list[str]:
    """The loss after the budget against depth, for the cells run at every depth."""
    depths = sorted(int(d) for d in summary["depth"].unique())
    if len(depths) < 3:
        return []
    parts, moves = [], []
    for (act, q, weights), part in summary.groupby(["activation", "q_star", "weights"]):
        if sorted(int(d) for d in part["depth"]) != depths:
            continue
        rows = [r for _, r in part.sort_values("depth").iterrows()]
        word = _order(rows)
        parts.append(
            f"{act}/{weights}, q* = {q:.3g}: "
            + ", ".join(
                f"{int(r['depth'])}: {_loss(r)} (spectral variance {r['normalised_var']:.3g})"
                for r in rows
            )
            + (f" — {word} with depth (ranges disjoint)" if word else " — ranges overlap")
        )
        change = rows[-1]["final_median"] - rows[0]["final_median"]
        moves.append(
            f"{act}/{weights} {'+' if change >= 0 else '−'}{abs(change):.3f} (spread "
            f"{rows[0]['normalised_var']:.3g} → {rows[-1]['normalised_var']:.3g})"
        )
    if not parts:
        return []
    return [
        f"**Depth {', '.join(map(str, depths))}** (Pennington et al.'s headline depth is 200), "
        "loss after the budget, median [range over seeds]: "
        + "; ".join(parts)
        + f". From depth {depths[0]} to {depths[-1]} the median moves by "
        + ", ".join(moves)
        + "; the free-probability spread var(s²)/E[s²]² grows ∝ L in every cell."
    ]


def findings(summary: pd.DataFrame, threshold: float) -> list[str]:
    """Claims made only where the seeds' ranges support them."""
    out = []
    seeds, steps = int(summary["seeds"].min()), int(summary["steps"].max())
    tanh = summary[summary["activation"] == "tanh"]
    wins, losses = [], []
    for (depth, q), part in tanh.groupby(["depth", "q_star"]):
        o = part[part["weights"] == "orthogonal"].iloc[0]
        g = part[part["weights"] == "gaussian"].iloc[0]
        text = (
            f"depth {depth}, q* = {q:.3g}: orthogonal {_loss(o)} "
            f"(spectral variance {o['normalised_var']:.3g}) "
            f"against Gaussian {_loss(g)} ({g['normalised_var']:.3g})"
        )
        (wins if o["final_max"] < g["final_min"] else losses).append(text)
    if wins:
        out.append(
            "**Orthogonal weights train the critical tanh net faster where every seed says "
            f"so**: loss after {steps} steps, median [range over {seeds} seeds], where the "
            "orthogonal range lies wholly below the Gaussian one: " + "; ".join(wins) + "."
        )
    if losses:
        out.append("Where the ranges overlap no ordering is claimed: " + "; ".join(losses) + ".")
    rows = "; ".join(
        f"{r['activation']}/{r['weights']} at depth {r['depth']}, q* = {r['q_star']:.3g}: "
        f"{_steps(r)}"
        for _, r in summary.iterrows()
    )
    out.append(
        f"Steps to a loss ≤ {threshold:g} (median [range] over the seeds that reach it, "
        f"evaluated every 10 steps): {rows}."
    )
    shallow = int(summary["depth"].min())
    ortho = tanh[(tanh["weights"] == "orthogonal") & (tanh["depth"] == shallow)]
    ortho = ortho.sort_values("q_star")
    if len(ortho) >= 2:
        pairs = []
        rows = [r for _, r in ortho.iterrows()]
        for a, b in zip(rows[:-1], rows[1:], strict=True):
            if a["final_max"] < b["final_min"]:
                word = "below"
            elif a["final_min"] > b["final_max"]:
                word = "above"
            else:
                word = "overlapping"
            pairs.append(
                f"q* = {a['q_star']:.3g} ends {word} q* = {b['q_star']:.3g}"
                + ("" if word == "overlapping" else " (ranges disjoint)")
            )
        out.append(
            f"Among orthogonal tanh nets of depth {shallow}, loss after the budget by q*: "
            + "; ".join(
                f"{r['q_star']:.3g}: {_loss(r)} (spectral variance {r['normalised_var']:.3g})"
                for _, r in ortho.iterrows()
            )
            + ". "
            + "; ".join(pairs)
            + "."
            + (
                " At this one rate the narrowest spectrum is not the fastest net."
                if any(" above " in p for p in pairs)
                else " The loss after the budget rises with q*, as the spectral variance does."
                if all(" below " in p for p in pairs)
                else ""
            )
        )
    for depth in sorted(summary["depth"].unique()):
        relu = summary[(summary["activation"] == "relu") & (summary["depth"] == depth)]
        here = tanh[tanh["depth"] == depth]
        if not len(relu) or not len(here):
            continue
        best = here.loc[here["final_median"].idxmin()]
        if relu["final_min"].min() > best["final_max"]:
            out.append(
                f"**At depth {depth} ReLU trails the best tanh cell with either weights**: "
                "loss after the budget "
                + "; ".join(f"{r['weights']} {_loss(r)}" for _, r in relu.iterrows())
                + f" against {best['weights']} tanh at q* = {best['q_star']:.3g}, "
                f"{_loss(best)}; its spectral variance is {relu['normalised_var'].min():.3g} or "
                "more whatever the weights. One rate serves every cell: ReLU at its own best "
                "rate is not studied here."
            )
    out += depth_trend(summary)
    rho = stats.spearmanr(summary["normalised_var"], summary["final_median"]).statistic
    out.append(
        f"Across the {len(summary)} cells the median loss after the budget rises with the "
        f"Jacobian's normalised spectral variance: Spearman ρ = {rho:.2f} (one value per "
        "cell; a rank summary, not a fitted law)."
        if rho > 0
        else f"Across the {len(summary)} cells Spearman ρ between the spectral variance and "
        f"the median loss is {rho:.2f}: no rise with the variance is claimed."
    )
    return out


def readme(
    summary: pd.DataFrame, figures: Sequence[Path], command: str, setup: Mapping[str, object]
) -> str:
    found = findings(summary, float(setup["threshold"]))
    table = [
        "| depth | activation | weights | σ_w² | σ_b² | q* | var(s²)/E[s²]² | loss after "
        "budget [range] | steps to threshold [range] |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['depth']} | {r['activation']} | {r['weights']} | {r['sigma_w2']:.4g} "
            f"| {r['sigma_b2']:.3g} "
            f"| {r['q_star']:.3g} | {r['normalised_var']:.3g} | {_loss(r)} | {_steps(r)} |"
            for _, r in summary.iterrows()
        ),
    ]
    lead = found[0].split(":", 1)[0].replace("**", "")
    shallow = int(summary["depth"].min())
    first = summary[(summary["activation"] == "tanh") & (summary["depth"] == shallow)]
    first = first.sort_values("q_star")
    if len(first) >= 2:
        o, g = (first[first["weights"] == w].iloc[0] for w in ("orthogonal", "gaussian"))
        lead += (
            f"; at depth {shallow}, q* = {o['q_star']:.3g} the loss after {int(o['steps'])} "
            "steps is "
            f"{_loss(o)} orthogonal against {_loss(g)} Gaussian"
        )
    deepest = int(summary["depth"].max())
    last = summary[(summary["activation"] == "tanh") & (summary["depth"] == deepest)]
    deep_line = []
    if deepest != shallow and set(last["weights"]) == {"orthogonal", "gaussian"}:
        last = last[last["q_star"] == last["q_star"].min()]
        o, g = (last[last["weights"] == w].iloc[0] for w in ("orthogonal", "gaussian"))
        deep_line = [
            f"- At depth {deepest}, q* = {o['q_star']:.3g}: {_loss(o)} orthogonal against "
            f"{_loss(g)} Gaussian; the depth trend is in the Findings."
        ]
    lines = [
        "# Training speed at criticality: orthogonal against Gaussian weights",
        "",
        "Generated by `experiments/isometry_training.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        f"- {lead} (see Findings 1; {int(summary['seeds'].min())} seeds per cell).",
        *deep_line,
        "- The free-probability spectral variance of JJᵀ: "
        f"{summary['normalised_var'].min():.3g} (orthogonal tanh, smallest q*) to "
        f"{summary['normalised_var'].max():.3g} (Gaussian relu).",
        "",
        "## What was run",
        "",
        f"    {command}",
        "",
        f"- Nets: {setup['depth']} square layers of width {setup['width']} (and "
        + " and ".join(map(str, setup["deep"]))
        + " for the smallest q* and relu), "
        "h^(l) = W_l φ(h^(l−1)) + b_l, and a linear readout N(0, 1/N) to 4 outputs; tanh on "
        "the critical line χ1 = 1 at σ_b² = "
        + ", ".join(f"{b:g}" for b in setup["sigma_b2"])
        + " (σ_w² from `experiments.theory.meanfield.critical_sigma_w2`, q* its fixed point), "
        "relu at σ_w² = 2, σ_b² = 0; weights Gaussian N(0, σ_w²/N) or σ_w·Q, Q Haar; the "
        "input scaled so that h^(1) sits at q*.",
        f"- Task: a linear teacher y = A x with Var y = 1, fresh minibatches of 32 every step; "
        f"plain SGD at rate {setup['lr']} for {setup['steps']} steps on the MSE; the loss on "
        "a fixed evaluation set of 256, divided by Var y, every 10 steps. Seeds "
        f"0–{int(setup['seeds']) - 1} per cell (weights, teacher and data drawn from the seed).",
        "- Theory: var(s²)/E[s²]² = L (μ2/μ1² − 1 − s1) of Pennington, Schoenholz & Ganguli "
        '(2017), "Resurrecting the sigmoid in deep learning through dynamical isometry", '
        "arXiv:1711.04735 (`experiments.theory.free_probability`).",
        f"- Runtime: {setup['runtime']}",
        "",
        "## Numbers",
        "",
        *table,
        "",
    ]
    captions = {
        "loss_curves.png": "The evaluation loss against step, median and range over seeds.",
        "speed_vs_spread.png": "Loss after the budget against the spectral variance.",
    }
    lines += findings_and_plots(found, figures, captions)
    lines += [
        "## Files",
        "",
        "- `curves.csv`: `depth`, `activation`, `weights`, `sigma_w2`, `sigma_b2`, `q_star`, "
        "`seed`, `step`, `loss` (evaluation MSE / Var y).",
        "- `summary.csv`: one row per cell, the table's numbers.",
        "",
    ]
    return "\n".join(lines)
