"""The batch theory's hardest cells (experiments.batch_theory_cells and
experiments.report.gradient_flow_cells): the weight-gradient ratio is exactly the sum of its
four terms, the gap exactly the sum of its three parts, the committed CSVs carry the theory
the code computes now, and the numbers the report prints hold on the committed cells.csv."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import batch_theory_cells as bc
from experiments.measure import flow
from experiments.measure.sweep import numeric
from experiments.report import gradient_flow_cells as cells_report
from experiments.report import gradient_flow_widths as widths_report

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "gradient_flow"

TERMS_CASES = {
    "relu, kaiming, depth 5": flow.Config("relu", "kaiming_normal", 5, 24, 0, 8),
    "sigmoid, xavier, depth 4": flow.Config("sigmoid", "xavier_normal", 4, 32, 1, 16),
    "gelu, kaiming, depth 8": flow.Config("gelu", "kaiming_normal", 8, 16, 2, 6),
    "tanh, biased, depth 3": flow.Config("tanh", "sigma2=1.5", 3, 12, 0, 5, sigma_b2=0.05),
}


@pytest.mark.parametrize("name", TERMS_CASES)
def test_the_four_terms_add_up_to_the_measured_ratio(name):
    config = TERMS_CASES[name]
    terms = flow.example_terms(config)
    measured = flow.measure(config).summary
    assert terms["grad_ratio_log10"] == pytest.approx(measured["grad_ratio_log10"], abs=1e-12)
    total = sum(terms[t] for t in flow.EXAMPLE_TERMS[1:])
    assert total == pytest.approx(terms["grad_ratio_log10"], abs=1e-12), (name, terms)
    assert terms["delta_term"] == pytest.approx(measured["delta_ratio_log10"], abs=1e-12)
    cross = measured["cross_first_log10"] - measured["cross_last_log10"]
    assert terms["cross_term"] == pytest.approx(cross, abs=1e-12)
    assert 1.0 / config.batch <= terms["top_share"] <= 1.0


def test_one_example_is_its_own_median_and_has_no_cross_terms():
    terms = flow.example_terms(flow.Config("tanh", "xavier_normal", 6, 20, 3, 1))
    assert terms["weighting_term"] == pytest.approx(0.0, abs=1e-12)
    assert terms["cross_term"] == pytest.approx(0.0, abs=1e-12)
    assert terms["example_median_log10"] == pytest.approx(terms["grad_ratio_log10"], abs=1e-12)
    assert terms["top_share"] == 1.0 and terms["delta_spread"] == 0.0
    with pytest.raises(ValueError, match="depth ≥ 3"):
        flow.example_terms(flow.Config("tanh", "xavier_normal", 2, 20, 3, 1))


def test_the_cli_writes_one_row_per_network_and_the_same_bytes_twice(tmp_path):
    argv = ["--widths", "12", "--seeds", "2", "--wide-width", "16", "--wide-seeds", "1"]
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert bc.main([*argv, "--out", str(first)]) == 0
    assert bc.main([*argv, "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    rows = pd.read_csv(first)
    assert len(rows) == len(bc.CELLS) * 2 + len(bc.WIDE)
    assert list(rows.columns) == [*bc.KEYS, *bc.MEASURED, *bc.THEORY]
    assert set(rows["width"]) == {12, 16}
    xavier = rows[rows["init"] == "xavier_normal"]
    assert np.all(xavier["batch_theory"] < xavier["batch_theory_hidden_out"])  # sigmoid: c = 1


def test_the_gap_is_the_sum_of_its_three_parts():
    rows = pd.read_csv(REPORT / cells_report.CSV).pipe(numeric)
    r = cells_report.with_parts(rows)
    np.testing.assert_allclose(r[list(cells_report.PARTS)].sum(axis=1), r["gap"], atol=1e-5)


def _theory_now(rows: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The CSV's batch theory and the one flow.mean_field computes now, per distinct cell."""
    keys = ["activation", "init", "depth", "width", "batch"]
    cells = rows.drop_duplicates(keys)
    now = [flow.mean_field(flow.Config(r.activation, r.init, int(r.depth), int(r.width), 0,
                                       int(r.batch)))["grad_ratio_log10_batch_theory"]
           for r in cells.itertuples()]  # fmt: skip
    return cells[column].to_numpy(dtype=float), np.array(now)


@pytest.mark.parametrize("name", ["summary.csv", "widths.csv", "cells.csv"])
def test_the_committed_csvs_carry_the_batch_theory_the_code_computes(name):
    """Every committed file that carries the batch theory carries today's (7 digits): a change
    to the theory regenerates all three (experiments.gradient_flow, batch_theory_widths,
    batch_theory_cells)."""
    rows = pd.read_csv(REPORT / name, dtype=str, keep_default_na=False).pipe(numeric)
    if "bias_init" in rows:
        rows = rows[rows["bias_init"].isin(["zeros", "torch_default"])]
    column = "batch_theory" if name == "cells.csv" else "grad_ratio_log10_batch_theory"
    stored, now = _theory_now(rows, column)
    finite = np.isfinite(now)
    np.testing.assert_allclose(stored[finite], now[finite], rtol=2e-6, atol=1e-12)


@pytest.fixture(scope="module")
def table():
    rows = pd.read_csv(REPORT / cells_report.CSV, dtype=str, keep_default_na=False)
    return cells_report.cell_table(numeric(rows))


def test_sigmoid_xavier_agrees_once_the_output_layer_reads_its_own_sigma_w2(table):
    """The numbers the report prints for sigmoid + xavier_normal (24 networks per depth and
    width): the logits' mean square is the output layer's q_out, not the hidden layers'; the
    gap's interval holds the theory's own draws offset at every depth and width with the
    output layer's σ_w², at none with the hidden one's."""
    sig = table[(table["activation"] == "sigmoid") & (table["init"] == "xavier_normal")]
    assert len(sig) == 6 and set(sig["depth"]) == {4, 32, 64} and set(sig["networks"]) == {24}
    held = (sig["logit_lo"] < sig["logit_q_theory"]) & (sig["logit_q_theory"] < sig["logit_hi"])
    assert held.all() and (sig["logit_lo"] > sig["logit_q_hidden"]).all(), sig
    assert (sig["gap"].abs() < 0.1).all(), sig[["depth", "width", "gap"]]
    offset = sig["draws_offset"]
    assert ((sig["gap_lo"] <= offset) & (offset <= sig["gap_hi"])).all()
    assert (sig["hidden_hi"] < 0.0).all(), sig[["depth", "width", "hidden", "hidden_hi"]]
    (text,) = cells_report.findings(table, 0.1)
    assert "intervals that hold that offset: 6 of 6 with the output layer's σ_w², 0 of 6" in text


def test_gelu_kaiming_closes_with_width(table):
    """The numbers the report prints for gelu + kaiming_normal: the mean gap falls with the
    width at both depths, from an interval beyond 0.1 decade at width 256 to a mean within it
    at 2048 (depth 32: the whole interval), as the examples' spread falls; the three parts add
    up to the gap."""
    gelu = table[table["activation"] == "gelu"]
    for depth, part in gelu.groupby("depth"):
        part = part.sort_values("width")
        assert list(part["width"]) == [256, 1024, 2048], depth
        assert np.all(np.diff(part["gap"]) < 0) and np.all(np.diff(part["delta_spread"]) < 0)
        assert part["gap_lo"].iloc[0] > 0.1 and part["gap"].iloc[-1] < 0.1, part
        parts = part[list(cells_report.PARTS)].sum(axis=1)
        np.testing.assert_allclose(parts, part["gap"], atol=1e-5)
    assert gelu.set_index(["depth", "width"]).loc[(32, 2048), "gap_hi"] < 0.1


def test_the_stays_bullet_names_the_cells_taken_apart():
    rows = pd.DataFrame([{"activation": "gelu", "init": "kaiming_normal", "depth": 32,
                          "first": 0.2, "last": 0.2, "error": 0.05, "width": 1024,
                          "spread": 0.1, "floor": 0.07, "verdict": "stays"}])  # fmt: skip
    cells = pd.DataFrame([{"activation": "gelu", "init": "kaiming_normal", "depth": 32,
                           "width": w, "networks": n, "gap": g, "gap_lo": g - 0.02,
                           "gap_hi": g + 0.03} for w, n, g in ((1024, 24, 0.15),
                                                               (2048, 12, 0.05))])  # fmt: skip
    text = widths_report._stays_text(rows, cells)
    assert (
        "takes gelu + kaiming_normal at depth 32 apart with 12 networks: at width 2048 its "
        "mean gap is +0.05 [+0.03, +0.08]" in text
    )
    assert "do not establish why" in widths_report._stays_text(rows, None)
