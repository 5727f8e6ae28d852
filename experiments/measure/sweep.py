"""The gradient-flow sweep's tables: summary.csv and layers.csv, and resuming from them.

Rows are kept as text, exactly as the CSV holds them, so that a resumed row is written back
byte for byte; `numeric` turns a text frame into numbers for plots and findings.

Resuming trusts only whole rows. The files are written atomically and end with a newline,
so a file that does not was cut short: its last line is dropped. A summary row with a
missing or unreadable field is dropped, and a configuration counts as done only when its
summary row is whole and layers.csv holds all of its `depth` layer rows; everything else
is measured again.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby, product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.measure import flow
from experiments.report.io import csv_text

SUMMARY_FORMAT = "%.7g"
LAYERS_FORMAT = "%.4g"  # ~20k rows in the default sweep: 4 digits keep the file small

SUMMARY_COLUMNS = [
    *flow.SUMMARY_KEYS,
    "loss",
    "delta_ratio_log10",
    "delta_ratio_log10_theory",
    "grad_ratio_log10",
    "grad_ratio_log10_theory",
    "grad_ratio_log10_batch_theory",
    "chi1_measured",
    "chi1_theory",
    "cross_first_log10",
    "cross_last_log10",
    "grad_scale_log10",
    "regime",
    "delta_regime",
    "sigma_w2",
    "sigma_b2",
    "q1",
    "q_star",
    "n_nan",
    "n_inf",
]
LAYER_COLUMNS = [
    *flow.LAYER_KEYS,
    "delta_norm",
    "grad_w_norm",
    "grad_b_norm",
    "weight_norm",
    "act_mean",
    "act_std",
    "deriv_mean",
    "deriv_p05",
    "deriv_p50",
    "deriv_p95",
    "saturated_frac",
    "dead_frac",
]
INT_COLUMNS = ("depth", "width", "seed", "batch", "layer", "n_nan", "n_inf")
TEXT_COLUMNS = ("activation", "init", "bias_init", "regime", "delta_regime")


@dataclass(frozen=True)
class Scan:
    """The σ_w² scan: `activation` at `depth`, init sigma2=X for X in `sigma2`, biases
    N(0, sigma_b2), at the sweep's largest width."""

    activation: str
    depth: int
    sigma2: tuple[float, ...]
    sigma_b2: float

    def inits(self) -> list[str]:
        return [scan_init(x) for x in self.sigma2]


@dataclass(frozen=True)
class Sweep:
    """The grid (every activation × init × depth × width × seed) and the optional scan."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    activations: tuple[str, ...]
    inits: tuple[str, ...]
    seeds: tuple[int, ...]
    batch: int
    sigma_b2: float | None = None
    scan: Scan | None = None

    def grid(self) -> list[flow.Config]:
        return [
            flow.Config(a, i, d, w, seed, self.batch, self.sigma_b2)
            for a, i, d, w, seed in product(
                self.activations, self.inits, self.depths, self.widths, self.seeds
            )
        ]

    def scan_configs(self) -> list[flow.Config]:
        if self.scan is None:
            return []
        s = self.scan
        return [
            flow.Config(
                s.activation, scan_init(x), s.depth, max(self.widths), seed, self.batch, s.sigma_b2
            )
            for x in s.sigma2
            for seed in self.seeds
        ]

    def configs(self) -> list[flow.Config]:
        """Every configuration, each once: the grid's, then the scan's."""
        return list(dict.fromkeys(self.grid() + self.scan_configs()))


def scan_init(sigma2: float) -> str:
    return f"sigma2={sigma2:g}"


def select(summary: pd.DataFrame, sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(grid rows, scan rows with a `sigma2` column) of a numeric summary."""
    base = (summary["batch"] == sweep.batch) & summary["seed"].isin(sweep.seeds)
    grid_bias = {c.bias_init for c in sweep.grid()}
    grid = summary[
        base
        & summary["activation"].isin(sweep.activations)
        & summary["init"].isin(sweep.inits)
        & summary["depth"].isin(sweep.depths)
        & summary["width"].isin(sweep.widths)
        & summary["bias_init"].isin(grid_bias)
    ]
    scan = summary.iloc[:0].copy()
    scan_configs = sweep.scan_configs()
    if scan_configs:
        s = sweep.scan
        scan = summary[
            base
            & (summary["activation"] == s.activation)
            & summary["init"].isin(s.inits())
            & (summary["depth"] == s.depth)
            & (summary["width"] == max(sweep.widths))
            & (summary["bias_init"] == scan_configs[0].bias_init)
        ].copy()
    scan["sigma2"] = scan["init"].str.slice(len("sigma2=")).astype(float)
    return grid.reset_index(drop=True), scan.reset_index(drop=True)


def groups(configs: Iterable[flow.Config]) -> list[list[flow.Config]]:
    """Configurations that differ only in the activation (they share weights), one task each."""

    def weights_key(c: flow.Config) -> tuple[Any, ...]:
        return (c.init, c.depth, c.width, c.seed, c.batch, c.bias_init)

    ordered = sorted(configs, key=lambda c: (weights_key(c), c.activation))
    return [list(g) for _, g in groupby(ordered, key=weights_key)]


def as_text(rows: list[dict[str, Any]], columns: Sequence[str], float_format: str) -> pd.DataFrame:
    """Rows formatted as the CSV will hold them, every cell a string."""
    text = csv_text(pd.DataFrame(rows, columns=list(columns)), float_format)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def tables(measurements: Iterable[flow.Measurement]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, layers) text frames of the measurements."""
    measurements = list(measurements)
    summary = as_text([m.summary for m in measurements], SUMMARY_COLUMNS, SUMMARY_FORMAT)
    layers = as_text([r for m in measurements for r in m.layers], LAYER_COLUMNS, LAYERS_FORMAT)
    return summary, layers


def sort(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows in key order, the integer keys compared as numbers."""
    order = frame[list(keys)].copy()
    for k in INT_COLUMNS:
        if k in order:
            order[k] = order[k].astype(int)
    index = order.sort_values(list(keys), kind="stable").index
    return frame.loc[index].reset_index(drop=True)


def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """The text frame with numbers as numbers, for plots and findings."""
    out = frame.copy()
    for col in out.columns:
        if col in INT_COLUMNS:
            out[col] = out[col].astype(int)
        elif col not in TEXT_COLUMNS:
            out[col] = out[col].astype(float)
    return out


# --- resuming ---------------------------------------------------------------------------


def _read(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The whole rows of a CSV this sweep wrote; ValueError (one line) for anything else."""
    what = f"--resume: {path} is not a {path.name} written by experiments.gradient_flow"
    try:
        raw = path.read_bytes().decode("utf-8")
        frame = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{what} ({reason})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} (missing columns: {', '.join(missing)})")
    frame = frame[list(columns)]
    if len(frame) and not raw.endswith("\n"):  # cut short mid-line: the last row is damaged
        frame = frame.iloc[:-1]
    whole = frame.notna().all(axis=1) & (frame != "").all(axis=1)
    for col in columns:
        if col in TEXT_COLUMNS or col not in frame:
            continue
        parsed = pd.to_numeric(frame[col], errors="coerce").astype(float)
        if col in INT_COLUMNS:
            whole &= np.isfinite(parsed) & (parsed == parsed.round())
        else:
            whole &= parsed.notna() | (frame[col] == "nan")
    return frame[whole].reset_index(drop=True)


def _keys_in(frame: pd.DataFrame, keys: list[str], chosen: set[tuple[str, ...]]) -> pd.Series:
    return pd.Series(
        [k in chosen for k in frame[keys].itertuples(index=False, name=None)],
        index=frame.index,
        dtype=bool,
    )


def resume(
    out: Path, configs: Sequence[flow.Config]
) -> tuple[list[flow.Config], pd.DataFrame, pd.DataFrame]:
    """(configurations still to measure, whole summary rows, their layer rows) from an
    earlier run in `out`; rows of configurations not in `configs` are left out."""
    summary_path, layers_path = out / "summary.csv", out / "layers.csv"
    empty = (
        pd.DataFrame(columns=SUMMARY_COLUMNS, dtype=str),
        pd.DataFrame(columns=LAYER_COLUMNS, dtype=str),
    )
    if not (summary_path.is_file() and layers_path.is_file()):
        return list(configs), *empty
    summary = _read(summary_path, SUMMARY_COLUMNS)
    layers = _read(layers_path, LAYER_COLUMNS)
    keys = list(flow.SUMMARY_KEYS)
    n_layers = layers.groupby(keys).size()
    planned = {c.key(): c for c in configs}
    done = set()
    for key in summary[keys].itertuples(index=False, name=None):
        config = planned.get(key)
        if config is not None and n_layers.get(key, 0) == config.depth:
            done.add(key)
    summary = summary[_keys_in(summary, keys, done)].drop_duplicates(subset=keys)
    layers = layers[_keys_in(layers, keys, done)]
    todo = [c for c in configs if c.key() not in done]
    return todo, summary.reset_index(drop=True), layers.reset_index(drop=True)
