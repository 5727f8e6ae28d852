"""The batch theory's misses against width (experiments.batch_theory_widths and
experiments.report.gradient_flow_widths): the missed cells are the sweep's, re-measured at the
sweep's width they are the sweep's rows, and the finite-width law gap(N) = gap(N0)·N0/N is
what the report sets the larger widths against."""

import math

import numpy as np
import pandas as pd
import pytest

from experiments import batch_theory_widths as bw
from experiments import gradient_flow as gf
from experiments.measure import flow
from experiments.report import gradient_flow_widths as widths_report
from experiments.theory import batch_gradient
from experiments.theory import meanfield as mf

SMALL = ["--quick", "--depths", "3", "5", "--widths", "12", "--batch", "6",
         "--activations", "relu", "linear", "--inits", "kaiming_normal", "xavier_normal",
         "--no-scan", "--jobs", "1", "--no-progress", "--no-report"]  # fmt: skip


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gf")
    assert gf.main([*SMALL, "--out", str(out)]) == 0
    return out


def test_the_missed_cells_at_the_sweeps_width_are_the_sweeps_rows(sweep_dir):
    out = sweep_dir / "widths.csv"
    argv = [
        "--summary",
        str(sweep_dir / "summary.csv"),
        "--out",
        str(out),
        "--widths",
        "12",
        "24",
        "--seeds",
        "0",
        "--wide-widths",
        "48",
        "--wide-seeds",
        "0",
        "--jobs",
        "1",
    ]
    assert bw.main(argv) == 0
    summary = pd.read_csv(sweep_dir / "summary.csv", dtype=str, keep_default_na=False)
    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    cells = bw.missed_cells(gf.sweep.numeric(summary))
    assert len(cells), "width 12 should leave the batch theory some misses"
    keys = ["activation", "init", "depth"]
    measured = rows[keys].astype({"depth": int}).drop_duplicates()
    assert sorted(map(tuple, measured.to_numpy())) == sorted(map(tuple, cells[keys].to_numpy()))
    at_12 = rows[rows["width"] == "12"].set_index([*keys, "seed"])
    sweep = summary.set_index([*keys, "seed"]).loc[at_12.index]
    pd.testing.assert_frame_equal(at_12[sweep.columns], sweep)  # byte for byte, as text
    deepest = str(cells["depth"].max())
    assert set(rows.loc[rows["width"] == "48", "depth"]) == {deepest}  # wide: deepest only
    assert set(rows["width"]) == {"12", "24", "48"}


def test_a_cell_within_the_threshold_is_not_a_miss():
    rows = []
    for act, measured in (("relu", -0.5), ("tanh", -0.25)):
        rows.append(
            {
                "activation": act,
                "init": "kaiming_normal",
                "depth": 64,
                "width": 256,
                "seed": 0,
                "batch": 128,
                "bias_init": "zeros",
                "grad_ratio_log10": measured,
                "grad_ratio_log10_theory": 0.0,
                "grad_ratio_log10_batch_theory": -0.3,
            }
        )
    cells = bw.missed_cells(pd.DataFrame(rows))
    assert list(cells["activation"]) == ["relu"]  # |−0.5 + 0.3| ≥ 0.1 > |−0.25 + 0.3|
    rows[1]["grad_ratio_log10"] = -0.05  # now 0.25 from the batch theory
    assert sorted(bw.missed_cells(pd.DataFrame(rows))["activation"]) == ["relu", "tanh"]


def _rows(gap_at, widths, seeds=(0, 1, 2), depth=64, spread=0.1):
    """Synthetic widths.csv rows whose gap at width N is gap_at(N), ± spread·√(256/N)."""
    out = []
    for w in widths:
        for s, sign in zip(seeds, (-1.0, 0.0, 1.0), strict=True):
            out.append({"activation": "relu", "init": "kaiming_normal", "depth": depth,
                        "width": w, "seed": s,
                        "grad_ratio_log10": gap_at(w) + sign * spread * math.sqrt(256 / w),
                        "grad_ratio_log10_batch_theory": 0.0, "sigma_w2": 2.0, "sigma_b2": 0.0,
                        "batch": 128})  # fmt: skip
    return pd.DataFrame(out)


def test_the_law_predicts_a_gap_that_shrinks_like_depth_over_width():
    t = widths_report.width_table(_rows(lambda w: 0.48 * 256 / w, (256, 512, 1024)))
    np.testing.assert_allclose(t["gap"], [0.48, 0.24, 0.12], atol=1e-12)
    np.testing.assert_allclose(t["gap_law"], t["gap"], atol=1e-12)
    np.testing.assert_allclose(t["spread_law"], t["spread"], atol=1e-12)
    np.testing.assert_allclose(t["depth_over_width"], [0.25, 0.125, 0.0625])
    assert list(t["seeds"]) == [3, 3, 3]
    assert t["floor"].iloc[0] == pytest.approx(0.12, abs=0.02)  # relu + kaiming at depth 64
    (text,) = widths_report.findings(t, 256, 3)
    assert "width 1024: 0 of 1 within 0.1" in text
    assert "the law 0.120" in text
    assert "to at most half (1 cells" in text and "(+0.48 → +0.12 ± 0.03 at width 1024)" in text
    assert list(widths_report.verdicts(t)["verdict"]) == ["shrinks"]


def test_a_gap_that_does_not_shrink_is_not_read_as_finite_width():
    t = widths_report.width_table(_rows(lambda w: 0.4, (256, 512, 1024)))
    law = t.set_index("width")["gap_law"]
    assert law[1024] == pytest.approx(0.1, abs=1e-12) and t["gap"].iloc[-1] == pytest.approx(0.4)
    (text,) = widths_report.findings(t, 256, 3)
    assert "The gap stays" in text and "at depth 64 (+0.40 → +0.40 ± 0.03 at width 1024)" in text
    assert list(widths_report.verdicts(t)["verdict"]) == ["stays"]
    slow = widths_report.width_table(_rows(lambda w: 0.4 * (256 / w) ** 0.3, (256, 512, 1024)))
    assert list(widths_report.verdicts(slow)["verdict"]) == ["shrinks slowly"]
    small = widths_report.width_table(_rows(lambda w: 0.4 - 0.33 * (w > 256), (256, 512, 1024)))
    assert list(widths_report.verdicts(small)["verdict"]) == [
        "within scatter"
    ]  # 0.07 < AGREE, not falling at every doubling


def test_the_table_and_the_plot_cover_every_cell_and_width():
    rows = pd.concat([_rows(lambda w: 0.3 * 256 / w, (256, 512, 1024, 2048)),
                      _rows(lambda w: -0.2 * 256 / w, (256, 512, 1024), depth=32)])  # fmt: skip
    t = widths_report.width_table(rows)
    text = widths_report.table(t)
    assert text.count("\n") == 3  # header, rule, two cells
    assert "| relu + kaiming_normal | 32 | −0.20 ± 0.10 |" in text and text.rstrip().endswith("|")
    assert "–" in text.splitlines()[3]  # depth 32 not run at 2048
    fig = widths_report.plot(t)
    assert len(fig.axes) == 2


def test_the_floor_is_the_batch_theorys_scatter_over_the_logits_and_labels_drawn():
    """At N → ∞ one network's ratio is still random through its K logits and its labels: a
    batch of one has no cross terms (every draw is the single-example theory), linear nets
    keep c = 0 (no cross terms forward: no scatter), relu + kaiming at depth 64 scatters by
    about 0.12 decades, and the draws' mean sits near the batch theory (the log of the mean
    norms) but not on it."""
    one = batch_gradient.batch_grad_ratio_log10_draws("tanh", 1.0, 0.0, 16, 1, draws=50)
    np.testing.assert_allclose(one, mf.grad_ratio_log10_theory("tanh", 1.0, 0.0, 16), atol=1e-12)
    linear = batch_gradient.batch_grad_ratio_log10_draws("linear", 2.0, 0.0, 64, 128)
    assert np.all(np.abs(linear) < 1e-12)
    relu = batch_gradient.batch_grad_ratio_log10_draws("relu", 2.0, 0.0, 64, 128)
    theory = batch_gradient.batch_grad_ratio_log10_theory("relu", 2.0, 0.0, 64, 128)
    assert 0.09 < np.std(relu, ddof=1) < 0.15
    assert 0.01 < np.mean(relu) - theory < 0.08  # Jensen: E log < log E on the last layer
    again = batch_gradient.batch_grad_ratio_log10_draws("relu", 2.0, 0.0, 64, 128)
    np.testing.assert_array_equal(relu, again)  # seeded


def test_pair_correlation_is_kept_by_orthogonal_layers_and_grown_by_gaussian_ones():
    """Orthogonal linear layers keep every inner product, so the examples' mean c² at any
    layer is the inputs' (about 1/N); a product of Gaussian layers correlates them, E[c²] ≈
    (1 + L)/N by free probability."""
    ortho = flow.Config("linear", "orthogonal", 10, 64, 0, 16)
    x = flow.batch(ortho)[0]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = unit @ unit.T
    inputs = (np.sum(c * c) - 16) / (16 * 15)
    assert flow.pair_correlation2(ortho, 8) == pytest.approx(inputs, rel=1e-9)
    gauss = [flow.pair_correlation2(flow.Config("linear", "kaiming_normal", 18, 256, s, 32), 16)
             for s in range(3)]  # fmt: skip
    assert np.mean(gauss) == pytest.approx((1 + 16) / 256, rel=0.3)
    assert np.mean(gauss) > 3 * inputs * 64 / 256
