"""The batch theory's misses against width: the cells where the weight-gradient ratio misses
the batch theory at the sweep's width, measured again at larger widths N
(experiments.batch_theory_widths writes widths.csv), set against the finite-width law.

Mean-field theory is the N → ∞ limit at fixed depth L. At finite width the log-norms of a
product of L random layers are Gaussian with mean and variance shifted by O(Σ_l 1/n_l) =
O(L/N) (Hanin & Nica 2019, "Products of many large random matrices and gradients in deep
neural networks", CMP 376), so a gap that is a finite-width effect shrinks like L/N,

    gap(N) = gap(N0) · N0/N,        seed spread(N) = spread(N0) · √(N0/N),

and a gap that does not shrink so is something the theory leaves out at every width. Part of
the seeds' spread does not shrink at all: at N → ∞ the K = 10 logits and the labels are still
drawn once per network (`batch_gradient.batch_grad_ratio_log10_draws`), the `floor` here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from experiments.measure import flow
from experiments.measure.sweep import numeric
from experiments.report.common import figure, legend_below, markdown_table, signed
from experiments.report.gradient_flow_numbers import AGREE
from experiments.theory import free_probability
from experiments.theory.batch_gradient import batch_grad_ratio_log10_draws

CSV = "widths.csv"
KEYS = ["activation", "init", "depth"]
#: the linear nets' input correlations are measured in the report up to this width (cost)
C2_MAX_WIDTH, C2_SEEDS = 512, (0, 1, 2)


def read(path: Path) -> pd.DataFrame | None:
    """The numeric rows of widths.csv, or None where there is none."""
    if not path.is_file():
        return None
    return numeric(pd.read_csv(path, dtype=str, keep_default_na=False))


def width_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell and width: the gap measured − batch theory of the weight-gradient ratio (mean
    over seeds), the seeds' standard deviation, their count, L/N, and the finite-width law's
    prediction of both from the cell's smallest width."""
    rows = rows.assign(gap=rows["grad_ratio_log10"] - rows["grad_ratio_log10_batch_theory"])
    g = rows.groupby([*KEYS, "width"])["gap"]
    t = pd.concat([g.mean(), g.std(ddof=1), g.count()], axis=1, keys=["gap", "spread", "seeds"])
    t = t.reset_index()
    t["depth_over_width"] = t["depth"] / t["width"]
    base = t.loc[t.groupby(KEYS)["width"].idxmin()].set_index(KEYS)
    ref = base.reindex(pd.MultiIndex.from_frame(t[KEYS]))
    shrink = ref["width"].to_numpy() / t["width"].to_numpy()
    t["gap_law"] = ref["gap"].to_numpy() * shrink
    t["spread_law"] = ref["spread"].to_numpy() * np.sqrt(shrink)
    first = rows.groupby(KEYS)[["sigma_w2", "sigma_b2", "batch", "width"]].first()
    floor = {key: _floor(key, r) for key, r in first.iterrows()}
    t["floor"] = [floor[k] for k in t[KEYS].itertuples(index=False, name=None)]
    return t


def _floor(key: tuple[str, str, int], r: pd.Series) -> float:
    """The standard deviation of the batch theory's draws for the cell (its first width's
    output layer)."""
    config = flow.Config(key[0], key[1], int(key[2]), int(r.width), 0, int(r.batch))
    sw_out, sb_out = flow.layer_params(config, (flow.CLASSES, config.width))
    draws = batch_grad_ratio_log10_draws(key[0], r.sigma_w2, r.sigma_b2, key[2], int(r.batch),
                                         sigma_w2_out=sw_out, sigma_b2_out=sb_out)  # fmt: skip
    return float(np.std(draws, ddof=1))


def counts(t: pd.DataFrame) -> pd.DataFrame:
    """Per width: cells measured, cells within AGREE decades, the median |gap| and the
    median |gap| the finite-width law predicts from the smallest width, seeds."""
    g = t.groupby("width")
    return pd.DataFrame(
        {
            "cells": g.size(),
            "within": g["gap"].agg(lambda s: int((s.abs() < AGREE).sum())),
            "median_gap": g["gap"].agg(lambda s: float(s.abs().median())),
            "median_law": g["gap_law"].agg(lambda s: float(s.abs().median())),
            "seeds": g["seeds"].min(),
        }
    )


def summary_line(t: pd.DataFrame) -> str:
    """One Summary bullet: the missed cells' agreement and median gap at each width."""
    c = counts(t)
    first = c.index[0]
    v = verdicts(t)
    return (
        f"- The batch theory's {len(v)} misses, measured again at larger widths: "
        f"{int((v['last'].abs() < AGREE).sum())} of {len(v)} come within {AGREE} at the "
        f"widest width each was run at, {_stay_off(int((v['verdict'] == 'stays').sum()))}; "
        + "; ".join(
            f"width {w}: {int(r.within)} of {int(r.cells)} within {AGREE}, median |gap| "
            f"{r.median_gap:.2f}"
            + ("" if w == first else f" (finite-width law {r.median_law:.2f})")
            for w, r in c.iterrows()
        )
        + " (the finding on widths)."
    )


def verdicts(t: pd.DataFrame) -> pd.DataFrame:
    """Per cell at its widest width: the gap there and at the first width, the seeds' standard
    error, and the verdict: `shrinks` (|gap| falls at every doubling, to at most half its
    first value), `shrinks slowly` (falls at every doubling, to more than half), `within
    scatter` (otherwise, but within 2 standard errors of 0, or within AGREE), or `stays`
    (none of these: a gap the theory leaves out at every width measured)."""
    rows = []
    for key, part in t.groupby(KEYS, sort=False):
        part = part.sort_values("width")
        gaps = part["gap"].abs().to_numpy()
        last = part.iloc[-1]
        error = float(last["spread"] / math.sqrt(last["seeds"]))
        falls = bool(np.all(np.diff(gaps) < 0))
        if falls and gaps[-1] <= gaps[0] / 2:
            verdict = "shrinks"
        elif falls:
            verdict = "shrinks slowly"
        elif gaps[-1] < max(AGREE, 2.0 * error):
            verdict = "within scatter"
        else:
            verdict = "stays"
        rows.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                **{"first": part["gap"].iloc[0], "last": last["gap"], "error": error},
                **{"width": int(last["width"]), "spread": last["spread"], "floor": last["floor"]},
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def _cells(v: pd.DataFrame) -> str:
    return "; ".join(
        f"{r.activation} + {r.init} at depth {r.depth} ({signed(r.first)} → {signed(r.last)} "
        f"± {r.error:.2f} at width {r.width})"
        for r in v.sort_values("last", key=abs, ascending=False).itertuples()
    )


def linear_correlations(t: pd.DataFrame, batch: int) -> pd.DataFrame:
    """For the deepest linear cell (kaiming_normal where missed): per width, the mean c² over
    the batch's pairs of examples at the last hidden layer the weight gradient sees, measured
    (mean, min, max over seeds) and by free probability, E[c²] = (1 + var(s²)/E[s²]²)/N
    with var(s²)/E[s²]² = L for a product of L Gaussian layers (the c-map says c = 0)."""
    linear = t[t["activation"] == "linear"]
    if linear.empty:
        return pd.DataFrame()
    depth = int(linear["depth"].max())
    inits = set(linear.loc[linear["depth"] == depth, "init"])
    init = "kaiming_normal" if "kaiming_normal" in inits else sorted(inits)[0]
    layers = depth - 2  # a^(L−2), what ∂L/∂W^(L−1) sees: the product of L − 2 layers
    spread = free_probability.jacobian_spectrum("linear", "gaussian", 1.0, 1.0, layers)
    rows = []
    for width in sorted(w for w in linear["width"].unique() if w <= C2_MAX_WIDTH):
        c2 = [flow.pair_correlation2(flow.Config("linear", init, depth, int(width), seed, batch),
                                     layers) for seed in C2_SEEDS]  # fmt: skip
        rows.append({"init": init, "depth": depth, "width": int(width), "c2": float(np.mean(c2)),
                     "c2_min": min(c2), "c2_max": max(c2),
                     "theory": (1.0 + spread.normalised_variance()) / width})  # fmt: skip
    return pd.DataFrame(rows)


def _stays_text(part: pd.DataFrame, cells: pd.DataFrame | None) -> str:
    """What is known of the cells that stay off: the cells finding's, where it has them."""
    lead = (
        "   - For these the batch theory is off at every width measured, beyond the seeds' scatter"
    )
    if cells is None or cells.empty:
        return lead + "; these runs do not establish why.\n"
    have = set(map(tuple, cells[KEYS].to_numpy().tolist()))
    taken = [r for r in part.itertuples() if (r.activation, r.init, r.depth) in have]
    if not taken:
        return lead + "; these runs do not establish why.\n"
    widest = cells.loc[cells.groupby(KEYS)["width"].idxmax()].set_index(KEYS)
    named = []
    for r in taken:
        w = widest.loc[(r.activation, r.init, r.depth)]
        named.append(
            f"{r.activation} + {r.init} at depth {r.depth} apart with {int(w['networks'])} "
            f"networks: at width {int(w['width'])} its mean gap is {signed(w['gap'])} "
            f"[{signed(w['gap_lo'])}, {signed(w['gap_hi'])}]"
        )
    return lead + "; the next finding takes " + "; ".join(named) + ".\n"


def _stay_off(n: int) -> str:
    return f"{n} stays off" if n == 1 else f"{n} stay off"


def _linear_text(c2: pd.DataFrame) -> str:
    if c2.empty:
        return ""
    r0 = c2.iloc[0]
    return (
        "   - Why the linear cells miss: the c-map keeps independent inputs uncorrelated in a "
        "linear net (c = 0, so the batch theory has no cross terms), but a product of L "
        "Gaussian layers of width N correlates them, E[c²] = (1 + L)/N by free probability "
        "(the product's var(s²)/E[s²]² = L; Pennington, Schoenholz & Ganguli 2017). For "
        f"linear + {r0['init']} at depth {r0['depth']} (layer {r0['depth'] - 2}), mean c² "
        f"over the batch's pairs, {len(C2_SEEDS)} seeds: "
        + "; ".join(
            f"width {r.width}: {r.c2:.3f} [{r.c2_min:.3f}, {r.c2_max:.3f}] against {r.theory:.3f}"
            for r in c2.itertuples()
        )
        + ". These correlations reach the logits, so the examples' errors share a part too, "
        "and the cross terms add to ‖∂L/∂W^(L−1)‖ (the negative gap); they fall like 1/N.\n"
    )


def findings(
    t: pd.DataFrame,
    sweep_width: int,
    sweep_seeds: int,
    c2: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
) -> list[str]:
    """The batch theory's misses against width, worded by what the rows show; `cells` is
    `gradient_flow_cells.cell_table` of the cells measured network by network, or None."""
    if t.empty:
        return []
    c = counts(t)
    widths = list(c.index)
    per_width = "; ".join(
        f"width {w}: {int(r.within)} of {int(r.cells)} within {AGREE} (median |gap| "
        f"{r.median_gap:.3f}"
        + (f", the law {r.median_law:.3f}" if w != widths[0] else "")
        + f"; {int(r.seeds)} seeds)"
        for w, r in c.iterrows()
    )
    n_cells = t.groupby(KEYS).ngroups
    widest_depths = sorted(t.loc[t["width"] == widths[-1], "depth"].unique())
    only = (
        f"; width {widths[-1]} only at depth {', '.join(map(str, widest_depths))}"
        if len(widest_depths) < t["depth"].nunique()
        else ""
    )
    text = (
        f"**Are the batch theory's misses finite-width effects?** The {n_cells} cells it misses "
        f"at width {sweep_width} ({sweep_seeds} seeds) were measured again at widths "
        f"{', '.join(map(str, widths))} (`widths.csv`{only}): {per_width}.\n"
        f"   - The law is gap(N) = gap({widths[0]})·{widths[0]}/N, predicted from each cell's "
        f"width-{widths[0]} gap alone (Hanin & Nica 2019: the log-norms' finite-width shift "
        "grows like L/N).\n"
    )
    v = verdicts(t)
    words = {
        "shrinks": "The gap shrinks at every doubling of the width, to at most half",
        "shrinks slowly": "The gap shrinks at every doubling of the width, more slowly than "
        "L/N (to more than half)",
        "within scatter": "Within 2 standard errors (spread/√seeds) or 0.1 of the theory at "
        "the widest width, though not shrinking at every doubling",
        "stays": "The gap stays: beyond 2 standard errors and 0.1 at the widest width",
    }
    for verdict, lead in words.items():
        part = v[v["verdict"] == verdict]
        if len(part):
            text += f"   - {lead} ({len(part)} cells, gap first → widest): {_cells(part)}.\n"
        if verdict == "stays" and len(part):
            text += _stays_text(part, cells)
    text += _linear_text(pd.DataFrame() if c2 is None else c2)
    noisy = v[v["floor"] >= AGREE / 2].sort_values("floor", ascending=False)
    if len(noisy):
        text += (
            "   - Part of the seeds' spread is not finite-width: at N → ∞ the batch's K = 10 "
            "logits and its labels are still drawn once per network, and the batch theory's "
            "draws of them put a floor under one network's scatter (`floor`). At the widest "
            "width, spread against floor: "
            + "; ".join(
                f"{r.activation} + {r.init} at depth {r.depth} {r.spread:.2f} against {r.floor:.2f}"
                for r in noisy.head(6).itertuples()
            )
            + ". A mean over n seeds scatters by floor/√n about the theory at any width: "
            f"{noisy['floor'].max() / math.sqrt(sweep_seeds):.2f} decades for "
            f"{sweep_seeds} seeds in the noisiest cell.\n"
        )
    return [text.rstrip("\n")]


def table(t: pd.DataFrame) -> str:
    """A Markdown table: per cell, the gap ± seed spread at each width, the law beside it."""
    widths = sorted(t["width"].unique())
    rows = []
    for key, part in t.groupby(KEYS, sort=False):
        by = part.set_index("width")
        cells = [f"{key[0]} + {key[1]}", str(key[2])]
        for w in widths:
            if w not in by.index:
                cells.append("–")
                continue
            r = by.loc[w]
            law = "" if w == by.index.min() else f" ({signed(r['gap_law'])})"
            cells.append(f"{signed(r['gap'])} ± {r['spread']:.2f}{law}")
        cells.append(f"{part['floor'].iloc[0]:.2f}")
        rows.append(cells)
    rows.sort(key=lambda r: (-int(r[1]), r[0]))
    header = ["cell", "depth", *(f"width {w}" for w in widths), "floor"]
    return markdown_table(header, rows, "lr" + "r" * (len(widths) + 1))


def plot(t: pd.DataFrame) -> Figure:
    """|gap| and the seeds' spread against L/N, one line per cell, with the law's slopes."""
    fig, axes = figure(1, 2, width=5.4, height=4.4)
    a1, a2 = axes.flat
    depths = sorted(t["depth"].unique())
    colors = dict(zip(depths, ("tab:green", "tab:purple", "tab:blue", "tab:red", "tab:orange"),
                      strict=False))  # fmt: skip
    for _, part in t.groupby(KEYS):
        part = part.sort_values("width")
        color = colors.get(part["depth"].iloc[0], "0.4")
        label = f"depth {part['depth'].iloc[0]}"
        a1.plot(part["depth_over_width"], part["gap"].abs(), "o-", ms=3, lw=0.9, alpha=0.7,
                color=color, label=label)  # fmt: skip
        a2.plot(part["depth_over_width"], part["spread"], "o-", ms=3, lw=0.9, alpha=0.7,
                color=color, label=label)  # fmt: skip
        if part["floor"].iloc[0] > 1e-3:  # linear and saturated nets: no floor (0 to rounding)
            a2.plot(part["depth_over_width"], part["floor"], ":", lw=1.0, color=color, alpha=0.7)
    x = np.geomspace(t["depth_over_width"].min(), t["depth_over_width"].max(), 20)
    top = t[t["width"] == t["width"].min()]
    for ax, column, power, name in ((a1, "gap", 1.0, "∝ L/N"), (a2, "spread", 0.5, "∝ √(L/N)")):
        level = float(np.median(top[column].abs() / top["depth_over_width"] ** power))
        ax.plot(x, level * x**power, "k--", lw=1.2, label=f"finite-width law {name}")
        ax.set(xscale="log", yscale="log", xlabel="depth / width  L/N")
        ax.xaxis.set_major_locator(FixedLocator([2.0**-k for k in range(2, 7)]))
        ax.xaxis.set_major_formatter(FixedFormatter([f"1/{2**k}" for k in range(2, 7)]))
        ax.xaxis.set_minor_locator(NullLocator())  # (minor labels of a log axis overlap here)
        ax.grid(alpha=0.3, which="both")
    a1.axhline(AGREE, color="0.5", ls=":", lw=1.0, label=f"{AGREE} decade")
    a1.set_ylabel("|measured − batch theory| [decades], mean over seeds")
    a2.set_ylabel("seeds' standard deviation [decades]")
    a1.set_title("the gap", fontsize=10)
    a2.set_title("the seed spread (dotted: each cell's floor at N → ∞)", fontsize=10)
    legend_below(fig, a1, ncols=len(depths) + 2)
    fig.suptitle("The batch theory's missed cells at larger widths (one line per cell)")
    return fig
