"""The gradient-flow lab: the CLI's files and columns, resume and determinism, executors,
errors, overflow, the autograd cross-check, and the physics the issue names."""

import math
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from experiments import gradient_flow as gf
from manual_bp.lab import flow
from manual_bp.lab.flow import Config

CONTRACT_SUMMARY = ["activation", "init", "depth", "width", "seed", "batch", "loss",
                    "delta_ratio_log10", "delta_ratio_log10_theory", "grad_ratio_log10",
                    "chi1_measured", "chi1_theory", "regime"]  # fmt: skip
CONTRACT_LAYERS = ["activation", "init", "depth", "width", "seed", "layer", "delta_norm",
                   "grad_w_norm", "grad_b_norm", "act_mean", "act_std", "deriv_mean",
                   "saturated_frac", "dead_frac"]  # fmt: skip
REPORT = ["summary.csv", "layers.csv", "README.md", "delta_norm_by_layer.png",
          "ratio_heatmap.png", "ratio_vs_depth.png", "measured_vs_theory.png",
          "sigma2_scan.png", "derivative_distribution.png"]  # fmt: skip

# --quick with smaller sizes still: every activation and init, depths 2, 3, 5.
SMALL = ["--quick", "--depths", "2", "3", "5", "--widths", "12", "--batch", "6",
         "--scan-sigma2", "0.5", "1.5", "2.5", "--scan-depth", "4", "--jobs", "1",
         "--no-progress"]  # fmt: skip


def run(out, *extra, report=False):
    return gf.main([*SMALL, "--out", str(out), *extra, *([] if report else ["--no-report"])])


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("gf") / "run"
    assert run(out, report=True) == 0
    return out


def test_files_exist(first):
    for name in REPORT:
        path = first / name
        assert path.is_file() and path.stat().st_size > 0, f"missing or empty: {name}"


def test_columns_are_the_contracts(first):
    summary = pd.read_csv(first / "summary.csv")
    layers = pd.read_csv(first / "layers.csv")
    missing = [c for c in CONTRACT_SUMMARY if c not in summary.columns]
    assert not missing, f"summary.csv lacks {missing}"
    missing = [c for c in CONTRACT_LAYERS if c not in layers.columns]
    assert not missing, f"layers.csv lacks {missing}"
    n_grid = 7 * 6 * 3  # activations × inits × depths, one seed
    assert len(summary) == n_grid + 3, f"{len(summary)} summary rows"
    assert len(layers) == 7 * 6 * (2 + 3 + 5) + 3 * 4, f"{len(layers)} layer rows"


def test_values_are_finite_where_they_should_be(first):
    s = pd.read_csv(first / "summary.csv")
    assert set(s["regime"]) <= {"vanishing", "exploding", "stable", "overflow"}
    assert (s["regime"] != "overflow").all(), s[s["regime"] == "overflow"]
    deep = s[s["depth"] >= 3]
    for col in ["loss", "delta_ratio_log10", "delta_ratio_log10_theory", "grad_ratio_log10",
                "chi1_measured", "chi1_theory"]:  # fmt: skip
        bad = deep[~np.isfinite(deep[col])]
        assert bad.empty, f"{col} not finite in {bad[['activation', 'init', 'depth']].values}"
    two = s[s["depth"] == 2]
    assert (two["delta_ratio_log10"] == 0).all() and (two["delta_ratio_log10_theory"] == 0).all()
    assert two["chi1_measured"].isna().all(), "depth 2: chi1_measured should be NaN"
    layers = pd.read_csv(first / "layers.csv")
    for col in CONTRACT_LAYERS[6:]:
        assert np.isfinite(layers[col]).all(), f"layers.csv {col} not finite"
    assert (layers["delta_norm"] > 0).all()
    for col in ["saturated_frac", "dead_frac"]:
        assert layers[col].between(0, 1).all(), col


def test_regime_follows_the_thresholds(first):
    s = pd.read_csv(first / "summary.csv")
    want = np.where(s["delta_ratio_log10"] < -2, "vanishing",
                    np.where(s["delta_ratio_log10"] > 2, "exploding", "stable"))  # fmt: skip
    wrong = s[s["regime"] != want]
    assert wrong.empty, f"regime wrong for {wrong[['activation', 'init', 'depth']].values}"


def test_same_arguments_same_bytes(first, tmp_path):
    assert run(tmp_path) == 0
    for name in ("summary.csv", "layers.csv"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name


def test_resume_measures_only_what_is_missing(first, tmp_path, capsys):
    shutil.copy(first / "layers.csv", tmp_path / "layers.csv")
    lines = (first / "summary.csv").read_text().splitlines(keepends=True)
    (tmp_path / "summary.csv").write_text("".join(lines[:-5]))
    capsys.readouterr()
    assert run(tmp_path, "--resume") == 0
    assert "5 configurations measured (124 resumed)" in capsys.readouterr().out
    for name in ("summary.csv", "layers.csv"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name


def test_process_pool_and_dask_give_the_same_bytes(tmp_path):
    from distributed import LocalCluster

    args = ["--activations", "tanh", "relu", "--inits", "xavier_normal", "orthogonal",
            "--no-scan"]  # fmt: skip
    assert run(tmp_path / "serial", *args) == 0
    assert run(tmp_path / "pool", *args, "--jobs", "2") == 0
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      host="127.0.0.1",
                      dashboard_address=None) as cluster:  # fmt: skip
        assert run(tmp_path / "dask", *args, "--dask", cluster.scheduler_address) == 0
    for name in ("summary.csv", "layers.csv"):
        ref = (tmp_path / "serial" / name).read_bytes()
        assert (tmp_path / "pool" / name).read_bytes() == ref, f"process pool: {name}"
        assert (tmp_path / "dask" / name).read_bytes() == ref, f"dask: {name}"


BAD_ARGS = [
    (["--activations", "swish"], "unknown activation 'swish'; valid choices: linear, sigmoid"),
    (["--inits", "he"], "unknown init 'he'; valid choices: small_normal"),
    (["--inits", "sigma2=-2"], "unknown init 'sigma2=-2'; valid choices"),
    (["--depths", "2"], "needs depth ≥ 3"),
    (["--depths", "1", "4"], "every depth must be ≥ 2"),
    (["--scan-depth", "2"], "--scan-depth must be ≥ 3"),
    (["--jobs", "0"], "--jobs must be ≥ 1"),
]


@pytest.mark.parametrize("extra, message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_give_one_line(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, f"stderr was: {err!r}"
    assert len(err.strip().splitlines()) == 1, f"more than one line: {err!r}"
    assert not (tmp_path / "summary.csv").exists()


def test_overflow_is_recorded_not_raised():
    config = Config("linear", "sigma2=1e6", 120, 8, 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = flow.measure(config)
    assert m.summary["regime"] == "overflow"
    assert m.summary["n_nan"] + m.summary["n_inf"] > 0, m.summary
    assert len(m.layers) == 120


def test_autograd_cross_check_passes_and_fails_loudly(tmp_path, monkeypatch):
    configs = [Config("gelu", "xavier_normal", 4, 10, 0, 5), Config("elu", "torch_default", 3, 10,
                                                                   1, 5)]  # fmt: skip
    lines = gf.check_autograd(configs, 2)
    assert len(lines) == 2 and all("ok=True" in line for line in lines), lines
    honest = flow.measure

    def doubled(config, params=None):
        m = honest(config, params)
        m.layers[0]["delta_norm"] *= 1 + 1e-6
        return m

    monkeypatch.setattr(flow, "measure", doubled)
    with pytest.raises(SystemExit, match="autograd cross-check FAILED"):
        gf.check_autograd(configs, 1)


def test_recorded_derivative_is_backwards_own():
    config = Config("sigmoid", "large_normal", 4, 16, 0, 8)
    net = flow.network(config)
    x, _ = flow.batch(config)
    _, tape = net.forward(x)
    m = flow.measure(config)
    deriv = net.nodes[1].act.grad(tape.z["2"])
    assert m.layers[1]["deriv_mean"] == pytest.approx(float(deriv.mean()), rel=1e-15)
    assert m.layers[1]["saturated_frac"] == pytest.approx(float((deriv < 0.01).mean()))


# --- physics, width 256 -------------------------------------------------------------------


def _measure(activation, init, depth):
    return flow.measure(Config(activation, init, depth, 256, 0, 128)).summary


def test_linear_orthogonal_is_an_isometry():
    s = _measure("linear", "orthogonal", 16)
    assert abs(s["delta_ratio_log10"]) < 1e-6, s["delta_ratio_log10"]


def test_relu_kaiming_keeps_the_gradient():
    s = _measure("relu", "kaiming_normal", 32)
    assert abs(s["delta_ratio_log10"]) < 0.5, s["delta_ratio_log10"]


def test_sigmoid_xavier_vanishes():
    s = _measure("sigmoid", "xavier_normal", 16)
    assert s["delta_ratio_log10"] < -5 and s["regime"] == "vanishing", s["delta_ratio_log10"]


def test_tanh_large_normal_explodes():
    s = _measure("tanh", "large_normal", 16)
    assert s["regime"] == "exploding", (s["delta_ratio_log10"], s["regime"])


THEORY_CASES = [(a, i) for a in ("relu", "tanh", "sigmoid")
                for i in ("xavier_normal", "kaiming_normal", "large_normal")]  # fmt: skip


def test_measured_matches_theory_at_depth_32():
    configs = [Config(a, i, 32, 256, 0, 128) for a, i in THEORY_CASES]
    for m in flow.measure_all(configs):
        s = m.summary
        gap = s["delta_ratio_log10"] - s["delta_ratio_log10_theory"]
        assert abs(gap) < 0.3, (
            f"{s['activation']} + {s['init']}: measured {s['delta_ratio_log10']:.3f}, "
            f"theory {s['delta_ratio_log10_theory']:.3f}"
        )
        assert math.isfinite(s["chi1_theory"])
