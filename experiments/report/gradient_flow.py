"""The gradient-flow report: one function per figure, the headline tables, the findings and
the README, from the sweep's numeric summary and layer frames (experiments.measure.sweep).

Every finding is written only where the rows it needs were measured, and worded by what the
numbers say, so a narrow sweep gets a short, true README.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from experiments.measure import flow
from experiments.measure.sweep import LAYER_COLUMNS, SUMMARY_COLUMNS, Sweep
from experiments.report import gradient_flow_cells as cells_report
from experiments.report import gradient_flow_widths as widths_report
from experiments.report.common import (
    findings_and_plots,
    glossary,
    signed,
)
from experiments.report.gradient_flow_figures import (
    plot_derivative_distribution,
    plot_norm_by_layer,
    plot_ratio_heatmap,
    plot_ratio_vs_depth,
    plot_residuals,
    plot_sigma2_scan,
    plot_tanh_power_law,
)
from experiments.report.gradient_flow_numbers import (  # noqa: F401 (the report's names)
    AGREE,
    RATIOS,
    batch_theory_findings,
    batch_theory_table,
    critical_line,
    findings,
    forward_moment_residual,
    headline,
    summary,
    tanh_power_law,
)
from experiments.report.io import write_png

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
    "widths.png": "The batch theory's missed cells at larger widths, against depth/width.",
    "cells.png": "The cells that stayed off, network by network.",
}


def write_figures(
    out: Path,
    grid: pd.DataFrame,
    scan: pd.DataFrame,
    layers: pd.DataFrame,
    sweep: Sweep,
    widths: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
) -> list[Path]:
    """Every figure the rows allow, as PNG files in `out`; `widths` is the missed cells'
    table against width (`gradient_flow_widths.width_table`) or None, `cells` the rows of
    cells.csv (experiments.batch_theory_cells) or None."""
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
        "widths.png": None if widths is None else widths_report.plot(widths),
        "cells.png": None if cells is None else cells_report.plot(cells),
    }
    return [write_png(out / name, fig) for name, fig in figures.items() if fig is not None]


def _with_widths(
    found: list[str], sweep: Sweep, t: pd.DataFrame | None, ct: pd.DataFrame | None = None
) -> list[str]:
    """The findings, the widths finding and the cells' (`ct`, the cells' table) right after
    the batch theory's."""
    if t is None or t.empty:
        return found
    c2 = widths_report.linear_correlations(t, sweep.batch)
    extra = widths_report.findings(t, max(sweep.widths), len(sweep.seeds), c2, ct)
    extra += [] if ct is None else cells_report.findings(ct, AGREE)
    at = next((k + 1 for k, f in enumerate(found) if f.startswith("**The batch theory")), None)
    return found + extra if at is None else found[:at] + extra + found[at:]


def readme(
    grid: pd.DataFrame,
    scan: pd.DataFrame,
    layers: pd.DataFrame,
    sweep: Sweep,
    command: str,
    figures: Sequence[Path],
    checks: Sequence[str],
    runtime: str,
    widths: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
) -> str:
    """The README; `widths` is the missed cells' table against width
    (`gradient_flow_widths.width_table` of experiments.batch_theory_widths' CSV) or None,
    `cells` the rows of experiments.batch_theory_cells' CSV or None."""
    depth, width = max(sweep.depths), max(sweep.widths)
    t = widths
    ct = None if cells is None else cells_report.cell_table(cells)
    lines = [
        "# Gradient flow: δ and the weight gradients SGD uses, measured and predicted",
        "",
        "Generated by `experiments/gradient_flow.py`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(grid, sweep),
        *([] if t is None or t.empty else [widths_report.summary_line(t)]),
        *([] if ct is None else [cells_report.summary_line(ct, AGREE)]),
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
    found = _with_widths(findings(grid, scan, layers, sweep), sweep, t, ct)
    lines += findings_and_plots(found, figures, CAPTIONS)
    if t is not None and not t.empty:
        lines += [
            "## The batch theory's misses against width",
            "",
            "Measured − batch theory of `grad_ratio_log10` (mean ± the seeds' standard "
            "deviation, decades) per missed cell and width; in brackets the finite-width law's "
            "prediction from the first width, gap·N0/N. `floor`: the standard deviation one "
            "network's ratio keeps at infinite width, where the batch's logits and labels are "
            "still drawn once per network (`batch_gradient.batch_grad_ratio_log10_draws`). "
            "Regenerate `widths.csv` (about 30 min of CPU, not part of `make report`) with",
            "",
            "    python -m experiments.batch_theory_widths",
            "",
            widths_report.table(t),
            "",
        ]
        if cells is not None:
            lines += [
                "`cells.csv`, the cells that stayed off network by network (about 12 min of "
                "CPU, not part of `make report`):",
                "",
                "    python -m experiments.batch_theory_cells",
                "",
            ]
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
        *(
            []
            if t is None
            else [
                "- `widths.csv`: the missed cells at larger widths, summary.csv's columns "
                "(written by `python -m experiments.batch_theory_widths`)."
            ]
        ),
        *(
            []
            if cells is None
            else [
                "- `cells.csv`: one row per network of the cells that stayed off: the "
                "weight-gradient ratio's four terms (`flow.example_terms`), the examples' "
                "spread, the logits' mean square, and the theories beside them (written by "
                "`python -m experiments.batch_theory_cells`)."
            ]
        ),
        "",
    ]
    return "\n".join(lines)
