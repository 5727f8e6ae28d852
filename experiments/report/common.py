"""What every report shares: figures without pyplot's global state, legends outside the
axes, the measured/theory line styles, Markdown tables and number formats."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: measured: solid with filled dots; theory: dashed with open markers, visible where the
#: two coincide.
MEASURED = {"ls": "-", "marker": "o", "ms": 3.5, "lw": 1.4}
THEORY = {"ls": "--", "marker": "x", "ms": 6, "lw": 1.0, "mew": 1.2}


def figure(
    nrows: int = 1, ncols: int = 1, *, width: float = 4.0, height: float = 3.2, **kw: Any
) -> tuple[Figure, np.ndarray]:
    """A Figure (constrained layout, no pyplot) and its axes as a 2-d array."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def panels(n: int, max_cols: int = 4, **kw: Any) -> tuple[Figure, list[Axes]]:
    """n panels on a grid of at most max_cols columns; the spare axes switched off."""
    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = figure(nrows, ncols, **kw)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def colors(names: Sequence[str]) -> dict[str, Any]:
    """One tab10 colour per name, in order."""
    cmap = colormaps["tab10"]
    return {name: cmap(k % 10) for k, name in enumerate(names)}


def legend_below(fig: Figure, ax: Axes | None = None, ncols: int = 4, **kw: Any) -> None:
    """The legend of `ax` (default: the first axes) under the figure, never over a curve."""
    ax = ax or fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(
        unique.values(),
        unique.keys(),
        loc="outside lower center",
        ncols=ncols,
        fontsize=8,
        frameon=False,
        **kw,
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A Markdown table; `align` a string of 'l'/'r' per column (default: all left)."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(map(str, header)) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def signed(x: float, digits: int = 2) -> str:
    """+1.23 / −1.23 with a true minus sign; 'nan', '+inf' as such."""
    if math.isnan(x):
        return "nan"
    text = f"{x:+.{digits}f}"
    return text.replace("-", "−")


def pow10(x: float, digits: int = 2) -> str:
    """10^−4.21 with a true minus sign."""
    return "10^" + f"{x:.{digits}f}".replace("-", "−")


def crossing(x: Sequence[float], y: Sequence[float]) -> float | None:
    """The first x where y changes sign, by linear interpolation; None if it never does."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    flips = np.nonzero(np.diff(np.sign(y)) != 0)[0]
    if not len(flips):
        return None
    k = flips[0]
    return float(x[k] - y[k] * (x[k + 1] - x[k]) / (y[k + 1] - y[k]))


#: options that change where or how fast a run goes, not what it writes: left out of the
#: command a README quotes, so that the same sweep gives the same README wherever it ran.
NOT_QUOTED = {"--out": 1, "--jobs": 1, "--dask": 1, "--no-progress": 0}


def command_line(module: str, argv: Sequence[str]) -> str:
    """`python -m module args…` as a README quotes it (without NOT_QUOTED options)."""
    words, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in NOT_QUOTED:
            skip = NOT_QUOTED[name] if "=" not in arg else 0
            continue
        words.append(arg)
    return " ".join(["python -m", module, *words])


# --- plain words: one explanation per term, shared by every report -------------------------

GLOSSARY = {
    "decades": "a decade is a factor of 10; a ratio of −3 decades means the first layer's "
    "value is 10⁻³ of the last one's (the log10 of the ratio).",
    "δ": "δ^(l) = ∂L/∂z^(l), the gradient of the loss with respect to layer l's "
    "pre-activation z^(l); backpropagation computes it from the top layer down. The weight "
    "gradient SGD applies is ∂L/∂W^(l) = Σ_n δ_n^(l) a_n^(l−1)ᵀ over the batch.",
    "q*": "q^(l) is the mean square of layer l's pre-activations for a very wide random "
    "network; one layer maps q^(l) to q^(l+1) (the variance map), and q* is the value it "
    "settles at, its fixed point.",
    "χ1": "χ1 = σ_w² E[φ′(√q* z)²], the factor by which one layer multiplies ‖δ‖² on average "
    "once q has settled. Below 1, gradients shrink towards the input (the ordered phase); "
    "above 1 they grow (the chaotic phase).",
    "c-map": "the correlation map: how the correlation c between two inputs' pre-activations "
    "changes from one layer to the next. Its fixed point c* is 1 in the ordered phase (all "
    "inputs end up alike) and below 1 in the chaotic phase.",
    "ξ": "depth scales ξ_q and ξ_c: the number of layers over which q, or the correlation c, "
    "relaxes to its fixed point by a factor e. Two inputs stay distinguishable for about ξ_c "
    "layers.",
    "edge of chaos": "the critical line χ1 = 1 between the ordered and the chaotic phase. "
    "There ξ_c is infinite and signals cross many layers (Poole et al. 2016, Schoenholz et "
    "al. 2017).",
    "σ_w², σ_b²": "the variances of the weights (times fan-in) and of the biases: "
    "W_ij ~ N(0, σ_w²/fan_in), b_i ~ N(0, σ_b²). Every init in the lab is read as a pair.",
    "seeds": "each seed draws its own weights, data and batches. A claim here holds for "
    "every seed, or its count of seeds says for how many; a range is min to max over seeds.",
}


def glossary(*terms: str) -> list[str]:
    """A "Words used here" section: the plain explanation of each term, in order."""
    unknown = [t for t in terms if t not in GLOSSARY]
    if unknown:
        raise ValueError(f"no explanation for {unknown}; known: {', '.join(GLOSSARY)}")
    return ["## Words used here", "", *[f"- **{t}**: {GLOSSARY[t]}" for t in terms], ""]


# --- findings in short lines -----------------------------------------------------------------

#: a finding's line longer than this is split into its lead sentence and sub-bullets
LINE_LIMIT = 400
_NOT_AN_END = ("al", "Fig", "e.g", "i.e", "vs", "cf", "Eq", "Sec")


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence: a '.' followed by a space and a capital or '(',
    unless the word before is an abbreviation (et al., Fig., e.g.)."""
    out, start = [], 0
    for m in re.finditer(r"\.\s+(?=[A-Z(*])", text):
        word = re.search(r"(\S+)$", text[start : m.start()])
        if word and word.group(1).split("(")[-1] in _NOT_AN_END:
            continue
        out.append(text[start : m.start() + 1])
        start = m.end()
    out.append(text[start:])
    return [s for s in out if s]


def _split_line(line: str, limit: int) -> list[str]:
    """One line of a finding: itself if short, else its lead and sub-bullets of whole
    sentences, each up to `limit` characters where the sentences allow."""
    indent = re.match(r"(\s*-\s+)?", line).group(0)
    body = line[len(indent) :]
    if len(line) <= limit:
        return [line]
    parts = sentences(body)
    groups: list[str] = []
    for s in parts[1:]:
        if groups and len(groups[-1]) + 1 + len(s) <= limit:
            groups[-1] += " " + s
        else:
            groups.append(s)
    return [indent + parts[0]] + [f"   - {g}" for g in groups]


def findings_and_plots(
    findings: Sequence[str], figures: Sequence[Any], captions: Mapping[str, str]
) -> list[str]:
    """A report's "Findings" (numbered, see `numbered`) and "Plots" (each figure under its
    caption, by file name)."""
    lines = ["## Findings", "", *numbered(findings), "", "## Plots", ""]
    for f in figures:
        lines += [f"**{captions.get(f.name, f.name)}**", "", f"![{f.stem}]({f.name})", ""]
    return lines


def numbered(findings: Sequence[str], limit: int = LINE_LIMIT) -> list[str]:
    """Findings as a numbered Markdown list; a line over `limit` characters becomes its lead
    sentence and sub-bullets of whole sentences, so no finding is one long paragraph."""
    out = []
    for k, text in enumerate(findings, start=1):
        lines = [part for line in text.split("\n") for part in _split_line(line, limit)]
        out += [f"{k}. {lines[0]}", *lines[1:]]
    return out
