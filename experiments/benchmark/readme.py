"""The benchmark's outputs: the goal table, the plot, and README.md, one function per section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.benchmark.models import (
    GOALS,
    HEADLINE_GOALS,
)
from experiments.benchmark.timing import (
    HEADLINE_SECONDS,
    MOST_PAIRS,
    WARMUP,
)
from experiments.report.io import write_png
from manual_bp.ops import conv as conv_ops


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """The same rows as aligned plain text, for the terminal."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def spread(r: Any, fmt: str = ".2f", suffix: str = "×") -> str:
    return f"{r.ratio:{fmt}}{suffix} ({r.ratio_min:{fmt}}–{r.ratio_max:{fmt}})"


def goal_rows(frame: pd.DataFrame, drop_in: pd.DataFrame | None = None) -> list[list[str]]:
    """One row per goal: the case, the figure before, the goal, what was measured (median
    and the min–max over pairs), met or missed (by the median). `drop_in`: the rows of
    experiments.bench_gradcheck (best of repeats), for the torch_ref.gradcheck goals."""
    heads = frame[frame["section"] == "headline"]
    by_goal = dict(zip(HEADLINE_GOALS, heads["case"].drop_duplicates(), strict=False))
    out = []
    for key, (label, before, goal, sense) in GOALS.items():
        if key.startswith("drop-in"):
            rows = None if drop_in is None else _drop_in_rows(drop_in, key)
            if rows is None or rows.empty:
                out.append([label, before, f"{sense} {goal:g}", "not measured", "—"])
                continue
            if key == "drop-in-overhead":
                values = rows["ours_ms"].tolist()
                measured = f"{values[0]:.2f} ms (best of repeats)"
            else:
                values = [float(rows["speedup_vs_slow"].median())]
                what = "median of" if key == "drop-in-median" else "best of repeats,"
                measured = f"{values[0]:,.1f}× ({what} {len(rows)} check(s), slow mode)"
                if "speedup_bound" in rows:
                    bound = float(rows["speedup_bound"].median())
                    measured += f"; your side alone bounds it at {bound:,.0f}×"
            ok = all(v <= goal for v in values) if sense == "≤" else all(v >= goal for v in values)
            unit = " ms" if key == "drop-in-overhead" else "×"
            out.append(
                [label, before, f"{sense} {goal:g}{unit}", measured, "met" if ok else "missed"]
            )
            continue
        if key in by_goal:
            rows = heads[heads["case"] == by_goal[key]]
            measured = "; ".join(f"{spread(r)} at {r.setting}" for r in rows.itertuples())
            values = rows["ratio"].tolist()
        elif key == "gradcheck":
            r = next(frame[frame["section"] == "gradcheck"].itertuples())
            measured = f"{r.speedup:,.0f}× ({r.speedup_min:,.0f}–{r.speedup_max:,.0f})"
            values = [r.speedup]
        elif key == "fresh":
            rows = frame[frame["section"] == "fresh-model"]
            measured = "; ".join(
                f"{r.a_ms:.2f} ms ({r.a_min:.2f}–{r.a_max:.2f}) at {r.setting}"
                for r in rows.itertuples()
            )
            values = rows["a_ms"].tolist()
        elif key == "memory":
            r = next(frame[frame["section"] == "memory"].itertuples())
            measured = f"{spread(r)} ({r.a_mb:.0f} MB against {r.b_mb:.0f} MB)"
            values = [r.ratio]
        else:
            r = next(
                frame[
                    (frame["section"] == "second-core") & frame["a"].str.startswith("manual")
                ].itertuples()
            )
            measured = spread(r, suffix="")
            values = [r.ratio]
        ok = all(v <= goal for v in values) if sense == "≤" else all(v >= goal for v in values)
        unit = " ms" if key == "fresh" else "" if key == "second-core" else "×"
        out.append([label, before, f"{sense} {goal:g}{unit}", measured, "met" if ok else "missed"])
    return out


def plot(frame: pd.DataFrame, exponents: pd.DataFrame, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(frame[frame["section"].str.startswith("sweep")].groupby("section", sort=False))
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 4.2))
    for ax, (section, part) in zip(np.atleast_1d(axes), parts, strict=True):
        sweep = section.removeprefix("sweep: ")
        fit = exponents[exponents["sweep"] == sweep].iloc[0]
        ax.plot(
            part["x"], part["a_ms"], "o-", label=f"manual_gradients (k = {fit.manual_exponent:.2f})"
        )
        ax.plot(
            part["x"],
            part["b_ms"],
            "s--",
            label=f"loss.backward() (k = {fit.autograd_exponent:.2f})",
        )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(sweep.split()[-1])
        ax.set_ylabel("median ms per forward + backward")
        ax.set_title(f"{sweep}: time ∝ x^k, fitted k")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("How the cost grows (float64, one thread)")
    fig.tight_layout()
    write_png(path, fig, dpi=100)
    plt.close(fig)


def _ms(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def bounds(
    frame: pd.DataFrame, stages: pd.DataFrame, layers: pd.DataFrame, ops: pd.DataFrame
) -> list[str]:
    """For each headline goal missed, one line from the profiles: how much of the call is the
    NumPy pass, its costliest layer types, and autograd's costliest ops, all at one thread."""
    marks = dict(zip(GOALS, (r[-1] for r in goal_rows(frame)), strict=True))
    heads = frame[frame["section"] == "headline"]["case"].drop_duplicates().tolist()
    lines = []
    for key, case in zip(HEADLINE_GOALS, heads, strict=False):
        if marks[key] != "missed":
            continue
        st = stages[stages["case"] == case].iloc[0]
        mine = layers[layers["case"] == case].head(3)
        theirs = ops[ops["case"] == case].head(3)
        top = ", ".join(f"{r.layer} {r.total_ms:.1f} ms" for r in mine.itertuples())
        ref = ", ".join(f"{r.op} {r.self_ms:.1f} ms" for r in theirs.itertuples())
        lines.append(
            f"- **{GOALS[key][0]}**: at one thread the NumPy pass is {st.numpy_pass:.1f} ms of "
            f"{st.total:.1f} ms ({st.numpy_pass / st.total:.0%}); capture, conversion and "
            f"checks {st.capture + st.convert_and_checks:.1f} ms. Costliest layers: {top}. "
            f"Autograd's costliest ops: {ref} (of {ops[ops['case'] == case]['self_ms'].sum():.1f}"
            " ms)."
        )
    return lines


def readme(
    env: dict[str, Any],
    frame: pd.DataFrame,
    stages: pd.DataFrame,
    layers: pd.DataFrame,
    ops: pd.DataFrame,
    exponents: pd.DataFrame,
    kernels: pd.DataFrame,
    pairs: int,
    drop_in: pd.DataFrame | None = None,
) -> str:
    """README.md: its sections, in order, each written by its own function below."""
    sections = [
        provenance(env, pairs),
        goals_section(frame, stages, layers, ops, drop_in),
        headline_section(frame),
        stages_section(stages, layers, ops, pairs),
        fresh_section(frame),
        gradcheck_section(frame),
        drop_in_section(drop_in),
        memory_section(frame),
        threads_section(frame),
        growth_section(frame, exponents, pairs),
        kernels_section(kernels),
    ]
    return "\n\n".join(sections) + "\n"


def provenance(env: dict[str, Any], pairs: int) -> str:
    """The title, the machine and libraries the figures come from, and how they were taken."""
    blas = [
        f"{p['internal_api']} {p.get('version') or ''} ({p.get('threading_layer') or 'n/a'} "
        f"threading, {p.get('architecture') or 'n/a'}, {Path(p['filepath']).name}), "
        f"{p['num_threads']} threads by default"
        for p in env["numpy_blas"]
    ]
    machine = table(
        ["", ""],
        [
            ["machine", f"{env['cpu']}, {env['cores']} cores, shared with other work"],
            [
                "load average (1, 5, 15 min)",
                f"{env['load_start']} at the start, {env['load_end']} at the end",
            ],
            ["Python, torch, NumPy", f"{env['python']}, {env['torch']}, {env['numpy']}"],
            [
                "torch's BLAS, intra-op threads",
                f"{env['torch_blas']}, {env['torch_threads']} by default",
            ],
            *[["NumPy's BLAS" if i == 0 else "(also loaded)", p] for i, p in enumerate(blas)],
        ],
    )
    return f"""# Benchmark: the oracle against torch.autograd

Generated by `python -m experiments.benchmark` (`make bench`; part of `make report`).
Timings are measurements: they change from run to run and from machine to machine.

**Where these figures come from.**

{machine}

"defaults" are the thread counts the libraries pick on this machine; "1 thread" sets both
torch's and NumPy's to one.

**How.** float64 on both sides, in one process, after {WARMUP} warm-up calls. A comparison
is {pairs} pairs of calls run back to back (a headline model's, as many as
{HEADLINE_SECONDS:g} s of pairs hold, at most {MOST_PAIRS}: "pairs" in its table), the order
alternating from pair to pair; a time is the median over the pairs, a ratio the median of the
per-pair ratios, with the min–max of those ratios in brackets. "CPU ratio" is the same median
over process CPU time, which other work on a shared machine disturbs less at one thread.
Garbage collection runs between pairs, never inside a timer. The oracle's thread arrangement
is as it ships: NumPy's BLAS at one thread per call during the NumPy pass, its convolutions
split over as many threads of its own as the caller gave BLAS (see "Threads" below)."""


def goals_section(
    frame: pd.DataFrame,
    stages: pd.DataFrame,
    layers: pd.DataFrame,
    ops: pd.DataFrame,
    drop_in: pd.DataFrame | None = None,
) -> str:
    """The goal table, and what bounds each goal missed."""
    goals = table(
        ["case", "before", "goal", "measured: median (min–max)", ""], goal_rows(frame, drop_in)
    )
    missed = bounds(frame, stages, layers, ops)
    return f"""## The goals

A goal is met when the median meets it at every thread setting measured.

{goals}

{"### What bounds the goals missed" if missed else ""}

{chr(10).join(missed)}"""


def headline_section(frame: pd.DataFrame) -> str:
    """manual_gradients against loss.backward() on each headline model."""
    heads = frame[frame["section"] == "headline"]
    rows = [
        [r.case, f"{int(r.params):,}", int(r.batch), r.setting, _ms(r.a_ms), _ms(r.b_ms),
         spread(r), int(r.pairs), f"{r.cpu_ratio:.2f}×", f"{r.max_rel_err:.1e}"]
        for r in heads.itertuples()
    ]  # fmt: skip
    headers = ["model", "params", "batch", "threads", "manual ms", "autograd ms",
               "ratio (min–max)", "pairs", "CPU ratio", "max rel. err"]  # fmt: skip
    return f"""## The headline models

`manual_gradients` (everything a user pays for: capture, conversion, checks, the NumPy pass,
the gradients cast back) against `model.zero_grad(); loss_fn(model(x), t).backward()`.
"max rel. err" is the largest relative difference of a parameter gradient from autograd's.

{table(headers, rows)}"""


def stages_section(
    stages: pd.DataFrame, layers: pd.DataFrame, ops: pd.DataFrame, pairs: int
) -> str:
    """The stages of each call, then the NumPy pass by layer type beside autograd's profile."""
    rows = [
        [r.case, r.call, _ms(r.total), _ms(r.capture), _ms(r.convert_and_checks),
         _ms(r.numpy_pass), _ms(r.autograd_reference), _ms(r.rest)]
        for r in stages.itertuples()
    ]  # fmt: skip
    headers = ["case", "call", "total", "capture", "convert + checks", "NumPy pass",
               "autograd reference", "rest"]  # fmt: skip
    profiles = []
    for case, part in layers.groupby("case", sort=False):
        theirs = ops[ops["case"] == case].head(6)
        mine = [
            [r.layer, _ms(r.forward_ms), _ms(r.backward_ms), _ms(r.total_ms)]
            for r in part.head(6).itertuples()
        ]
        profiles.append(
            f"**{case}**: the NumPy pass by layer type (and outside its layers), "
            f"{part['total_ms'].sum():.1f} ms in all; autograd by aten op (self CPU time), "
            f"{ops[ops['case'] == case]['self_ms'].sum():.1f} ms in all. Top six of each.\n\n"
            + table(["layer", "forward ms", "backward ms", "total ms"], mine)
            + "\n\n"
            + table(["aten op", "self ms"], [[r.op, _ms(r.self_ms)] for r in theirs.itertuples()])
        )
    return f"""## Where the time goes

Each stage timed inside the same calls (median over {pairs} calls, ms): capture (the recorded
run of the float64 twin and its loss, autograd's graph built with it), building the twin and
checking everything (the rest of preparing), the NumPy forward and backward, the autograd reference
(compare_gradients only), and the rest (the loss's checks, the gradients collected and cast
back, the report): the call less its stages, never negative.

{table(headers, rows)}

### The NumPy pass layer by layer, beside autograd's profile (one thread)

{(chr(10) * 2).join(profiles)}"""


def fresh_section(frame: pd.DataFrame) -> str:
    """compare_gradients on a new small model each call."""
    rows = frame[frame["section"] == "fresh-model"]
    text = "; ".join(
        f"{r.a_ms:.2f} ms per call at {r.setting} (min {r.a_min:.2f}, max {r.a_max:.2f}, "
        f"{int(r.pairs)} calls)"
        for r in rows.itertuples()
    )
    return f"""## A fresh small model per call

compare_gradients on a new {rows.iloc[0].case} each call (batch 16), as a property test calls it:
{text}. Where it goes: the compare_gradients rows of "Where the time goes"."""


def _drop_in_rows(drop_in: pd.DataFrame, key: str) -> pd.DataFrame:
    kind = {"drop-in-mlp": "model", "drop-in-median": "function", "drop-in-overhead": "overhead"}
    return drop_in[drop_in["kind"] == kind[key]]


def drop_in_section(drop_in: pd.DataFrame | None) -> str:
    """torch_ref.gradcheck against torch.autograd.gradcheck, case by case."""
    if drop_in is None or drop_in.empty:
        return (
            "## torch_ref.gradcheck against torch.autograd.gradcheck\n\nNot measured in this run."
        )
    rows = [
        [r.case.replace("|", "\\|"), f"{r.torch_slow_ms:,.2f}", f"{r.ours_ms:.2f}",
         f"{r.speedup_vs_slow:,.1f}×", f"{r.torch_fast_ms:.2f}", f"{r.ours_fast_ms:.2f}",
         f"{r.speedup_vs_fast:.2f}×", f"{getattr(r, 'yours_ms', float('nan')):.2f}",
         f"{getattr(r, 'speedup_bound', float('nan')):,.0f}×"]
        for r in drop_in.itertuples()
    ]  # fmt: skip
    functions = drop_in[drop_in["kind"] == "function"]
    median = (
        f"Over the {len(functions)} function-level checks the median speed-up is "
        f"{functions['speedup_vs_slow'].median():.1f}× against torch's slow mode and "
        f"{functions['speedup_vs_fast'].median():.2f}× against its fast mode."
        if not functions.empty
        else ""
    )
    head = ["case", "torch slow, ms", "ours, ms", "×", "torch fast, ms", "ours fast, ms", "×",
            "your side, ms", "bound"]  # fmt: skip
    return f"""## torch_ref.gradcheck against torch.autograd.gradcheck

`python -m experiments.bench_gradcheck`: each check as a test suite calls it, one thread, the
best of a few repeats (the least disturbed by other load); slow mode against slow mode, fast
against fast. Our slow mode is the exact Jacobian (one VJP per output entry, batched), our
fast mode three full input-gradient vectors for seeded cotangents; torch's columns are its
own gradcheck with its defaults. Both include the checks torch runs beside the Jacobian
(re-entrancy, undefined gradients), which run your backward again. "Your side" is that part
alone, your code as torch runs it: your forward once, your VJPs (the whole Jacobian, batched
as ours is) and torch's own checks (`experiments.bench_gradcheck.yours_only`). No check that
keeps torch's checks can take less, so torch's slow time over it ("bound") is the largest
speed-up any exact gradcheck could reach on that case, whatever its oracle costs.

{table(head, rows)}

{median}"""


def gradcheck_section(frame: pd.DataFrame) -> str:
    """manual_gradients against torch.autograd.gradcheck."""
    grad = frame[frame["section"] == "gradcheck"].iloc[0]
    return f"""## Speed-up over gradcheck

On the {int(grad.params):,}-parameter {grad.case} (batch {int(grad.batch)}, one thread),
`manual_gradients` takes {grad.a_ms:.2f} ms and `torch.autograd.gradcheck` over every
parameter {grad.b_ms:,.0f} ms: {grad.speedup:,.0f}× faster
({grad.speedup_min:,.0f}–{grad.speedup_max:,.0f}× over {int(grad.pairs)} pairs), and exact
where gradcheck's finite differences are not (largest relative difference from autograd
{grad.max_rel_err:.1e}). Both sides run one after the other, so each starts with caches the
other has just used."""


def memory_section(frame: pd.DataFrame) -> str:
    """Peak memory of each side."""
    mem = frame[frame["section"] == "memory"].iloc[0]
    return f"""## Peak memory

{mem.case}, each side alone in a fresh process ({int(mem.pairs)} processes per side), the
growth of the resident set during the second call (the first warms up; the kernel's
high-water mark is reset between them; malloc returns freed memory at once):
`manual_gradients` {mem.a_mb:.0f} MB, `loss.backward()` {mem.b_mb:.0f} MB, ratio
{spread(mem)}."""


def threads_section(frame: pd.DataFrame) -> str:
    """Two threads over one, and the oracle's thread arrangement switched off."""
    cores = frame[frame["section"] == "second-core"]
    core_rows = [[r.a, r.b, spread(r, suffix="")] for r in cores.itertuples()]
    arranged = frame[frame["section"].isin(["headline", "no arrangement"])]
    shown = set(frame[frame["section"] == "no arrangement"]["case"])
    arrangement_rows = [
        [r.case, "one BLAS thread, own threads" if r.section == "headline" else "BLAS as set",
         _ms(r.a_ms), _ms(r.b_after_a_ms), _ms(r.b_after_b_ms), spread(r)]
        for r in arranged.itertuples()
        if r.case in shown and r.setting != "1 thread"
    ]  # fmt: skip
    headers = ["model", "NumPy pass", "manual ms", "autograd ms right after manual",
               "autograd ms right after autograd", "ratio (min–max)"]  # fmt: skip
    return f"""## Threads

Each call at two threads over itself at one thread (pairs of the two settings):

{table(["time of", "over", "ratio (min–max)"], core_rows)}

Why the pass runs NumPy's BLAS at one thread: OpenBLAS's idle threads spin for ~0.1 s after
every threaded call, and torch's OpenMP threads want the same cores. The same comparison at
the default threads with that arrangement switched off (BLAS left as the caller set it), with
autograd's time split by what ran just before it. Where autograd right after the oracle is
slower than autograd right after autograd, the oracle has left a spinning pool behind: the
user's next torch step pays for it, and a per-pair ratio flatters the oracle.

{table(headers, arrangement_rows)}"""


def growth_section(frame: pd.DataFrame, exponents: pd.DataFrame, pairs: int) -> str:
    """The sweeps and the exponents fitted to them."""
    exp_rows = [
        [r.sweep, f"{r.manual_exponent:.2f}", f"{r.autograd_exponent:.2f}",
         f"{r.manual_exponent_upper:.2f}", f"{r.autograd_exponent_upper:.2f}"]
        for r in exponents.itertuples()
    ]  # fmt: skip
    sweep_rows = [
        [r.section.removeprefix("sweep: "), int(r.x), _ms(r.a_ms), _ms(r.b_ms), spread(r)]
        for r in frame[frame["section"].str.startswith("sweep")].itertuples()
    ]
    exp_headers = ["sweep", "manual k", "autograd k", "manual k (upper half)",
                   "autograd k (upper half)"]  # fmt: skip
    return f"""## How the cost grows

One thread, {max(3, pairs // 2)} pairs per point. The exponent k of time ∝ xᵏ, fitted by
least squares on log–log over the whole sweep and over its upper half (where fixed per-call
costs matter least): 2 for the width of an MLP means the products dominate, 1 for batch and
depth.

{table(exp_headers, exp_rows)}

![cost against batch, width and depth](scaling.png)

{table(["sweep", "x", "manual ms", "autograd ms", "ratio (min–max)"], sweep_rows)}"""


def kernels_section(kernels: pd.DataFrame) -> str:
    """The convolution kernels under each plan, and the raw files."""
    plans = ["im2col, per sample", "im2col, batch folded"]
    rows = [
        [r["convolution"], f"{r['columns_mb']:.1f}", r["pixels"],
         *(_ms(r[p]) for p in [*plans, "the rule", "torch F.conv2d"])]
        for r in kernels.to_dict("records")
    ]  # fmt: skip
    headers = ["convolution", "columns MB", "pixels", *plans, "the rule", "torch F.conv2d"]
    return f"""## The convolution kernels

`manual_bp.ops.conv.correlate` on the benchmark's convolutions (forward, and the CNN's
δ_prev, the same correlation over δ padded by the kernel's reach), one thread, median ms:
one GEMM over the whole im2col, each sample its own; the same with the batch folded into
the GEMM's columns; what the rule picks (the batch in parts whose columns fit COLUMN_BYTES =
{conv_ops.COLUMN_BYTES // 2**20} MiB, one GEMM per sample from PER_SAMPLE_PIXELS =
{conv_ops.PER_SAMPLE_PIXELS} output pixels, the batch folded below); torch's own float64
convolution beside them. (For comparison: the kernel this replaced, one matmul per kernel
offset with inner dimension C_in, measured 7.1 ms and 5.5 ms on the CNN's two convolutions
on this machine, one thread.)

{table(headers, rows)}

Raw numbers: [`benchmark.csv`](benchmark.csv), [`stages.csv`](stages.csv),
[`layers.csv`](layers.csv)."""
