"""The batch theory's misses against width: the cells where the weight-gradient ratio misses
the batch theory at the sweep's width, measured again at larger widths N
(experiments.batch_theory_widths writes widths.csv), set against the finite-width law.

Mean-field theory is the N → ∞ limit at fixed depth L. At finite width the log-norms of a
product of L random layers are Gaussian with mean and variance shifted by O(Σ_l 1/n_l) =
O(L/N) (Hanin & Nica 2019, "Products of many large random matrices and gradients in deep
neural networks", CMP 376), so a gap that is a finite-width effect shrinks like L/N,

    gap(N) = gap(N0) · N0/N,        seed spread(N) = spread(N0) · √(N0/N),

and a gap that does not shrink so is something the theory leaves out at every width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.measure.sweep import numeric
from experiments.report.common import figure, legend_below, markdown_table, signed
from experiments.report.gradient_flow_numbers import AGREE

CSV = "widths.csv"
KEYS = ["activation", "init", "depth"]


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
    return t


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


def findings(t: pd.DataFrame, sweep_width: int, sweep_seeds: int) -> list[str]:
    """The batch theory's misses against width, worded by what the rows show."""
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
    deepest = int(t["depth"].max())
    last = t[t["width"] == widths[-1]]
    miss = last[last["gap"].abs() >= AGREE]
    text = (
        f"**Are the batch theory's misses finite-width effects?** The {n_cells} cells it misses "
        f"at width {sweep_width} ({sweep_seeds} seeds) were measured again at widths "
        f"{', '.join(map(str, widths))} (`widths.csv`; the widest only at depth {deepest}): "
        f"{per_width}.\n"
        f"   - The law is gap(N) = gap({widths[0]})·{widths[0]}/N, predicted from each cell's "
        f"width-{widths[0]} gap alone (Hanin & Nica 2019: the log-norms' finite-width shift "
        "grows like L/N).\n"
    )
    if len(miss):
        text += (
            f"   - Still ≥ {AGREE} at width {widths[-1]}: "
            + "; ".join(
                f"{r.activation} + {r.init} at depth {r.depth} ({signed(r.gap)} ± "
                f"{r.spread:.2f}, law {signed(r.gap_law)})"
                for r in miss.sort_values("gap", key=abs, ascending=False).itertuples()
            )
            + ".\n"
        )
    else:
        text += f"   - At width {widths[-1]} every cell is within {AGREE} decade.\n"
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
        rows.append(cells)
    rows.sort(key=lambda r: (-int(r[1]), r[0]))
    header = ["cell", "depth", *(f"width {w}" for w in widths)]
    return markdown_table(header, rows, "lr" + "r" * len(widths))


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
    x = np.geomspace(t["depth_over_width"].min(), t["depth_over_width"].max(), 20)
    top = t[t["width"] == t["width"].min()]
    for ax, column, power, name in ((a1, "gap", 1.0, "∝ L/N"), (a2, "spread", 0.5, "∝ √(L/N)")):
        level = float(np.median(top[column].abs() / top["depth_over_width"] ** power))
        ax.plot(x, level * x**power, "k--", lw=1.2, label=f"finite-width law {name}")
        ax.set(xscale="log", yscale="log", xlabel="depth / width  L/N")
        ax.grid(alpha=0.3, which="both")
    a1.axhline(AGREE, color="0.5", ls=":", lw=1.0, label=f"{AGREE} decade")
    a1.set_ylabel("|measured − batch theory| [decades], mean over seeds")
    a2.set_ylabel("seeds' standard deviation [decades]")
    a1.set_title("the gap", fontsize=10)
    a2.set_title("the seed spread", fontsize=10)
    legend_below(fig, a1, ncols=len(depths) + 2)
    fig.suptitle("The batch theory's missed cells at larger widths (one line per cell)")
    return fig
