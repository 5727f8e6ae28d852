"""The batch theory's hardest cells, network by network (experiments.batch_theory_cells
writes cells.csv): the gap measured − batch theory of the weight-gradient ratio with a
bootstrap interval over networks, and the gap split three ways, exactly:

    gap = (median example − single-example theory)      `typical`: one example's own ratio
        + (ratio of the batch's sums − median example)  `sums`: how the sums over the batch
                                                         weight their largest examples
        + (cross terms − the batch theory's)            `cross`

where an example's own ratio is ½ log10(‖δ_n^(1)‖²‖x_n‖² / (‖δ_n^(L−1)‖²‖a_n^(L−2)‖²)) and the
ratio of the sums is the δ, forward and weighting terms of `flow.example_terms` together.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.measure import flow
from experiments.measure.sweep import numeric
from experiments.report.common import figure, legend_below, signed
from experiments.theory.batch_gradient import batch_grad_ratio_log10_draws, logit_moments

CSV = "cells.csv"
CELL = ["activation", "init", "depth"]
#: the bootstrap over networks; fixed seed: the same intervals on every run
BOOTSTRAP, BOOTSTRAP_SEED = 2000, 20261206
PARTS = {"typical": "median example", "sums": "the batch's sums", "cross": "cross terms"}


def read(path: Path) -> pd.DataFrame | None:
    """The numeric rows of cells.csv, or None where there is none."""
    if not path.is_file():
        return None
    return numeric(pd.read_csv(path, dtype=str, keep_default_na=False))


def with_parts(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with `gap`, `gap_hidden_out` (against the batch theory that reads the hidden
    layers' σ_w² for the output layer) and the gap's three parts (module docstring)."""
    sums = rows["delta_term"] + rows["forward_term"] + rows["weighting_term"]
    return rows.assign(
        gap=rows["grad_ratio_log10"] - rows["batch_theory"],
        gap_hidden_out=rows["grad_ratio_log10"] - rows["batch_theory_hidden_out"],
        typical=rows["example_median_log10"] - rows["single_theory"],
        sums=sums - rows["example_median_log10"],
        cross=rows["cross_term"] - (rows["batch_theory"] - rows["single_theory"]),
    )


def interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval of the mean, networks resampled."""
    pick = rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))
    lo, hi = np.quantile(values[pick].mean(axis=1), [0.025, 0.975])
    return float(lo), float(hi)


def draws(activation: str, init: str, depth: int, width: int, batch: int) -> np.ndarray:
    """The batch theory's draws at N → ∞ for the cell (`batch_grad_ratio_log10_draws`), with
    the output layer's own σ_w², σ_b² at `width`."""
    config = flow.Config(activation, init, depth, width, 0, batch)
    sigma_w2, sigma_b2 = flow.layer_params(config, (width, width))
    sw_out, sb_out = flow.layer_params(config, (flow.CLASSES, width))
    return batch_grad_ratio_log10_draws(activation, sigma_w2, sigma_b2, depth, batch,
                                        sigma_w2_out=sw_out, sigma_b2_out=sb_out)  # fmt: skip


def hidden_logit_q(activation: str, init: str, depth: int, width: int) -> float:
    """q_out as the batch theory had it: the hidden layers' σ_w², σ_b² for the output layer."""
    config = flow.Config(activation, init, depth, width, 0, 1)
    return logit_moments(activation, *flow.layer_params(config, (width, width)), depth)[0]


def cell_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell and width: networks, the mean gap and its bootstrap interval, the median gap,
    the mean gap against the hidden-output theory (and its interval), the parts' means, the
    examples' spreads, the largest example's share of ‖δ^(1)‖², the logits' mean square
    measured (mean and interval) beside q_out, and the batch theory's draws at N → ∞: their
    mean less the theory (`draws_offset`, where one network's ratio sits on average) and their
    standard deviation (`floor`)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    r = with_parts(rows)
    out = []
    for key, part in r.groupby([*CELL, "width"], sort=True):
        gap = part["gap"].to_numpy()
        hidden = part["gap_hidden_out"].to_numpy()
        logit = part["logit_q"].to_numpy()
        lo, hi = interval(gap, rng)
        hlo, hhi = interval(hidden, rng)
        qlo, qhi = interval(logit, rng)
        theirs = draws(*key, int(part["batch"].iloc[0]))
        out.append(
            {
                **dict(zip([*CELL, "width"], key, strict=True)),
                "networks": len(part),
                "gap": gap.mean(),
                "gap_lo": lo,
                "gap_hi": hi,
                "gap_median": float(np.median(gap)),
                "hidden": hidden.mean(),
                "hidden_lo": hlo,
                "hidden_hi": hhi,
                **{p: part[p].mean() for p in PARTS},
                "delta_spread": part["delta_spread"].mean(),
                "act_spread": part["act_spread"].mean(),
                "top_share": float(part["top_share"].median()),
                "logit_q": logit.mean(),
                "logit_lo": qlo,
                "logit_hi": qhi,
                "logit_q_theory": part["logit_q_theory"].iloc[0],
                "logit_q_hidden": hidden_logit_q(*key),
                "theory": part["batch_theory"].iloc[0],
                "theory_hidden_out": part["batch_theory_hidden_out"].iloc[0],
                "draws_offset": float(np.mean(theirs)) - part["batch_theory"].iloc[0],
                "floor": float(np.std(theirs, ddof=1)),
            }
        )
    return pd.DataFrame(out)


def _gap(r: pd.Series, col: str = "gap", lo: str = "gap_lo", hi: str = "gap_hi") -> str:
    return f"{signed(r[col])} [{signed(r[lo])}, {signed(r[hi])}]"


def _holds(t: pd.DataFrame, col: str) -> int:
    """How many rows' interval of `col` holds the theory's draws offset."""
    lo, hi = t[f"{col}_lo"], t[f"{col}_hi"]
    return int(((lo <= t["draws_offset"]) & (t["draws_offset"] <= hi)).sum())


def _sigmoid_text(sig: pd.DataFrame) -> str:
    sig = sig.sort_values(["depth", "width"])
    return (
        "   - sigmoid + xavier_normal: the output layer. xavier's variance 2/(fan_in + "
        "fan_out) gives the (10, N) output layer σ_w² = 2N/(N + 10), about 2 where the hidden "
        "layers have 1, and the batch theory had read the hidden σ_w² for the logits. With "
        "c_out = 1 every example's logits are alike, so the outputs' common error, and with it "
        "the cross terms at W^(L−1), grow with the logits' q_out. The logits' mean square, "
        "measured, against q_out with the output layer's σ_w² (with the hidden one's): "
        + "; ".join(
            f"depth {r.depth}, width {r.width}: {r.logit_q:.3f} [{r.logit_lo:.3f}, "
            f"{r.logit_hi:.3f}] against {r.logit_q_theory:.3f} ({r.logit_q_hidden:.3f})"
            for r in sig.itertuples()
        )
        + ".\n"
        "   - Gap against the batch theory with the output layer's own σ_w² (with the hidden "
        "one's in brackets after it): "
        + "; ".join(
            f"depth {r['depth']}, width {r['width']}: {_gap(r)} "
            f"({_gap(r, 'hidden', 'hidden_lo', 'hidden_hi')})"
            for _, r in sig.iterrows()
        )
        + ". The theory's own draws at N → ∞ put the mean over networks "
        f"{signed(sig['draws_offset'].mean())} above it (`draws_offset`: the mean of the logs "
        "lies above the log of the mean norms); intervals that hold that offset: "
        f"{_holds(sig, 'gap')} of {len(sig)} with the output layer's σ_w², "
        f"{_holds(sig, 'hidden')} of {len(sig)} with the hidden one's. One network scatters "
        f"about it by the floor, {sig['floor'].max():.2f} decade, and a mean over n networks "
        "by floor/√n.\n"
    )


def _gelu_text(gelu: pd.DataFrame, agree: float) -> str:
    gelu = gelu.sort_values(["depth", "width"])
    text = (
        "   - gelu + kaiming_normal: the gap (median over networks after it) and its three "
        "parts, the median example against the single-example theory, the batch's sums over "
        "the median example, and the cross terms against the batch theory's: "
        + "; ".join(
            f"depth {r['depth']}, width {r['width']} ({r['networks']} networks): {_gap(r)} "
            f"(median {signed(r['gap_median'])}) = {signed(r['typical'])} + "
            f"{signed(r['sums'])} + {signed(r['cross'])}"
            for _, r in gelu.iterrows()
        )
        + ".\n"
        "   - The examples of one network spread: the standard deviation over the batch of "
        "log10 ‖δ_n^(1)‖ and of log10 ‖a_n^(L−2)‖ (mean over networks), and the largest "
        "example's share of ‖δ^(1)‖² (median over networks): "
        + "; ".join(
            f"depth {r.depth}, width {r.width}: {r.delta_spread:.2f} and {r.act_spread:.2f} "
            f"decades, {r.top_share:.2f}"
            for r in gelu.itertuples()
        )
        + ".\n"
    )
    verdicts = []
    for depth, part in gelu.groupby("depth", sort=True):
        gaps = part["gap"].to_numpy()
        last = part.iloc[-1]
        falls = (
            "falls at every step in width"
            if np.all(np.diff(gaps) < 0)
            else "does not fall at every step in width"
        )
        where = (
            f"its interval lies within {agree}"
            if last["gap_hi"] < agree
            else f"its interval lies above {agree}"
            if last["gap_lo"] > agree
            else f"its interval reaches both sides of {agree}"
        )
        spread = part["delta_spread"].to_numpy()
        verdicts.append(
            f"at depth {depth} the gap {falls}, to {_gap(last)} at width {last['width']}: "
            f"{where}; the examples' spread in log10 ‖δ_n^(1)‖ falls from {spread[0]:.2f} to "
            f"{spread[-1]:.2f} over the same widths (log10 of the ratio "
            f"{signed(math.log10(spread[-1] / spread[0]))}, where 1/√N gives "
            f"{signed(-0.5 * math.log10(part['width'].iloc[-1] / part['width'].iloc[0]))})"
        )
    same = gelu.groupby("width").filter(lambda g: g["depth"].nunique() > 1)
    overlap = [w for w, g in same.groupby("width") if g["gap_lo"].max() <= g["gap_hi"].min()]
    text += "   - Against width: " + "; ".join(verdicts) + "."
    if len(same):
        text += (
            f" At equal width the depths' intervals overlap at {len(overlap)} of "
            f"{same['width'].nunique()} widths ({', '.join(map(str, overlap)) or 'none'})."
        )
    return text + "\n"


def findings(t: pd.DataFrame, agree: float) -> list[str]:
    """The cells taken apart, worded by what the rows show."""
    if t.empty:
        return []
    networks = sorted(t["networks"].unique())
    text = (
        "**The cells that stayed off, taken apart** (`cells.csv`, "
        f"{' or '.join(map(str, networks))} networks per cell and width; in brackets the 95 % "
        "bootstrap interval of the mean over networks).\n"
    )
    sig = t[(t["activation"] == "sigmoid") & (t["init"] == "xavier_normal")]
    if len(sig):
        text += _sigmoid_text(sig)
    gelu = t[(t["activation"] == "gelu") & (t["init"] == "kaiming_normal")]
    if len(gelu):
        text += _gelu_text(gelu, agree)
    return [text.rstrip("\n")]


def summary_line(t: pd.DataFrame, agree: float) -> str:
    """One Summary bullet: the cells taken apart, at their widest width."""
    widest = t.loc[t.groupby(CELL)["width"].idxmax()].sort_values(CELL)
    parts = []
    sig = widest[widest["activation"] == "sigmoid"]
    if len(sig):
        parts.append(
            "sigmoid + xavier_normal's gap was the output layer's σ_w² (xavier's 2N/(N + 10), "
            "not the hidden 1) in the logits: with it, at depths "
            f"{', '.join(str(d) for d in sig['depth'])} and width {sig['width'].max()}, "
            + ", ".join(_gap(r) for _, r in sig.iterrows())
            + ", without it "
            + ", ".join(_gap(r, "hidden", "hidden_lo", "hidden_hi") for _, r in sig.iterrows())
        )
    rest = widest[widest["activation"] != "sigmoid"]
    if len(rest):
        parts.append(
            "; ".join(
                f"{r['activation']} + {r['init']} at depth {r['depth']}, width {r['width']}: "
                f"{_gap(r)}"
                for _, r in rest.iterrows()
            )
        )
    return (
        "- The cells that stayed off, network by network (mean gap over networks, 95 % "
        f"bootstrap interval; within {agree} at the widest width: "
        f"{int((widest['gap'].abs() < agree).sum())} of {len(widest)}): "
        + "; ".join(parts)
        + " (the finding on the cells)."
    )


def plot(rows: pd.DataFrame) -> Figure:
    """Left: sigmoid + xavier_normal's gap per network against both theories; right: gelu +
    kaiming_normal's mean gap (with its bootstrap interval) and its three parts' means."""
    t = cell_table(rows)
    fig, axes = figure(1, 2, width=5.6, height=4.4)
    a1, a2 = axes.flat
    r = with_parts(rows)
    rng = np.random.default_rng(BOOTSTRAP_SEED)  # jitter only
    sig = r[(r["activation"] == "sigmoid") & (r["init"] == "xavier_normal")]
    groups = list(sig.groupby(["depth", "width"], sort=True))
    for k, (_, part) in enumerate(groups):
        jitter = rng.uniform(-0.12, 0.12, len(part))
        a1.plot(k - 0.2 + jitter, part["gap_hidden_out"], "o", mfc="none", ms=4, color="tab:red",
                alpha=0.6, label="hidden layers' σ_w² for the output layer")  # fmt: skip
        a1.plot(k + 0.2 + jitter, part["gap"], "o", ms=4, color="tab:blue", alpha=0.6,
                label="the output layer's own σ_w²")  # fmt: skip
        for dx, col in ((-0.2, "gap_hidden_out"), (0.2, "gap")):
            a1.plot([k + dx - 0.18, k + dx + 0.18], [part[col].mean()] * 2, "k-", lw=1.5)
    offset = t.loc[(t["activation"] == "sigmoid") & (t["init"] == "xavier_normal"), "draws_offset"]
    if len(offset):
        a1.axhline(offset.mean(), color="tab:blue", ls="--", lw=1.0,
                   label="the theory's draws at N → ∞: their mean")  # fmt: skip
    a1.set_xticks(range(len(groups)), [f"L={d}\nN={w}" for (d, w), _ in groups], fontsize=8)
    a1.set_title("sigmoid + xavier_normal: measured − batch theory", fontsize=10)
    gel = t[(t["activation"] == "gelu") & (t["init"] == "kaiming_normal")]
    gel = gel.sort_values(["depth", "width"]).reset_index(drop=True)
    width = 0.22
    for j, (part, label) in enumerate(PARTS.items()):
        a2.bar(np.arange(len(gel)) + (j - 1) * width, gel[part], width, label=label)
    a2.errorbar(np.arange(len(gel)), gel["gap"], yerr=[gel["gap"] - gel["gap_lo"],
                gel["gap_hi"] - gel["gap"]], fmt="kD", ms=5, capsize=3,
                label="gap (mean, 95 % bootstrap)")  # fmt: skip
    a2.set_xticks(range(len(gel)), [f"L={r.depth}\nN={r.width}" for r in gel.itertuples()],
                  fontsize=8)  # fmt: skip
    a2.set_title("gelu + kaiming_normal: the gap and its three parts", fontsize=10)
    for ax in (a1, a2):
        ax.axhline(0.0, color="0.3", lw=0.8)
        for y in (-0.1, 0.1):
            ax.axhline(y, color="0.5", ls=":", lw=0.8)
        ax.set_ylabel("decades")
        ax.grid(alpha=0.3, axis="y")
    legend_below(fig, a1, ncols=3)
    a2.legend(fontsize=8, frameon=False)
    fig.suptitle("The batch theory's hardest cells, network by network (dotted: ±0.1 decade)")
    return fig
