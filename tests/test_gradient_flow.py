"""The gradient-flow lab: the CLI's files and columns, the regimes, resume (whole and damaged
files), determinism, executors, errors, interrupts, overflow, the autograd cross-check, and
the physics the reports state."""

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import gradient_flow as gf
from experiments.measure import flow, sweep
from experiments.measure.flow import Config

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_SUMMARY = [
    "activation",
    "init",
    "depth",
    "width",
    "seed",
    "batch",
    "loss",
    "delta_ratio_log10",
    "delta_ratio_log10_theory",
    "grad_ratio_log10",
    "grad_ratio_log10_theory",
    "chi1_measured",
    "chi1_theory",
    "q_star",
    "regime",
    "delta_regime",
]
CONTRACT_LAYERS = [
    "activation",
    "init",
    "depth",
    "width",
    "seed",
    "layer",
    "delta_norm",
    "grad_w_norm",
    "grad_b_norm",
    "act_mean",
    "act_std",
    "deriv_mean",
    "saturated_frac",
    "dead_frac",
]
REPORT = [
    "summary.csv",
    "layers.csv",
    "README.md",
    "grad_norm_by_layer.png",
    "delta_norm_by_layer.png",
    "ratio_heatmap.png",
    "grad_ratio_vs_depth.png",
    "delta_ratio_vs_depth.png",
    "residuals.png",
    "sigma2_scan.png",
    "derivative_distribution.png",
]

# --quick with smaller sizes still: every activation and init, depths 2, 3, 5, and the scan.
SMALL = [
    "--quick",
    "--depths",
    "2",
    "3",
    "5",
    "--widths",
    "12",
    "--batch",
    "6",
    "--scan-sigma2",
    "0.5",
    "1.5",
    "2.5",
    "--scan-depth",
    "4",
    "--jobs",
    "1",
    "--no-progress",
]
N_GRID = 7 * 6 * 3  # activations × inits × depths, one seed


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
    assert not [p.name for p in first.iterdir() if p.name.startswith(".")], "temporary file left"


def test_columns_are_the_contracts(first):
    summary = pd.read_csv(first / "summary.csv")
    layers = pd.read_csv(first / "layers.csv")
    missing = [c for c in CONTRACT_SUMMARY if c not in summary.columns]
    assert not missing, f"summary.csv lacks {missing}"
    missing = [c for c in CONTRACT_LAYERS if c not in layers.columns]
    assert not missing, f"layers.csv lacks {missing}"
    assert len(summary) == N_GRID + 3, f"{len(summary)} summary rows"
    assert len(layers) == 7 * 6 * (2 + 3 + 5) + 3 * 4, f"{len(layers)} layer rows"


def test_values_are_finite_where_they_should_be(first):
    s = pd.read_csv(first / "summary.csv")
    for col in ("regime", "delta_regime"):
        assert set(s[col]) <= {"vanishing", "exploding", "stable", "overflow"}, col
    assert (s["regime"] != "overflow").all(), s[s["regime"] == "overflow"]
    deep = s[s["depth"] >= 3]
    for col in [
        "loss",
        "delta_ratio_log10",
        "delta_ratio_log10_theory",
        "grad_ratio_log10",
        "grad_ratio_log10_theory",
        "chi1_measured",
        "chi1_theory",
    ]:
        bad = deep[~np.isfinite(deep[col])]
        assert bad.empty, f"{col} not finite in {bad[['activation', 'init', 'depth']].values}"
    two = s[s["depth"] == 2]
    for col in (
        "delta_ratio_log10",
        "delta_ratio_log10_theory",
        "grad_ratio_log10",
        "grad_ratio_log10_theory",
    ):
        assert (two[col] == 0).all(), f"depth 2: {col} should be 0"
    assert two["chi1_measured"].isna().all(), "depth 2: chi1_measured should be NaN"
    layers = pd.read_csv(first / "layers.csv")
    for col in CONTRACT_LAYERS[6:]:
        assert np.isfinite(layers[col]).all(), f"layers.csv {col} not finite"
    assert (layers["delta_norm"] > 0).all()
    for col in ["saturated_frac", "dead_frac"]:
        assert layers[col].between(0, 1).all(), col


def _expected_regime(ratio: pd.Series, depth: pd.Series, scale: pd.Series) -> np.ndarray:
    """The rule as the report states it: ±0.05 decades per layer and ≥ 1 decade in all, or
    log10 max_l ‖∂L/∂W^(l)‖/‖W^(l)‖ outside [−4, +1]; exploding wins."""
    bound = np.maximum(1.0, 0.05 * (depth - 2))
    up = (ratio > bound) | (scale > 1.0)
    down = (ratio < -bound) | (scale < -4.0)
    return np.where(up, "exploding", np.where(down, "vanishing", "stable"))


def test_regime_is_decided_on_the_weight_gradient_and_delta_regime_on_delta(first):
    s = pd.read_csv(first / "summary.csv")
    scale = s["grad_scale_log10"]
    wrong = s[s["regime"] != _expected_regime(s["grad_ratio_log10"], s["depth"], scale)]
    assert wrong.empty, f"regime wrong for {wrong[['activation', 'init', 'depth']].values}"
    wrong = s[s["delta_regime"] != _expected_regime(s["delta_ratio_log10"], s["depth"], scale)]
    assert wrong.empty, f"delta_regime wrong for {wrong[['activation', 'init', 'depth']].values}"


@pytest.mark.parametrize(
    ("ratio", "depth", "scale", "want"),
    [
        (-0.39, 8, -0.9, "stable"),  # relu + kaiming at depth 8: −0.07 per layer, < 1 decade
        (-1.5, 8, -0.9, "vanishing"),  # 1.5 decades over 6 layers
        (-1.5, 64, -0.9, "stable"),  # over 62 layers: 0.024 per layer, below the rate
        (-4.0, 64, -0.9, "vanishing"),  # 0.065 per layer
        (0.1, 16, -14.5, "vanishing"),  # relu + small_normal: flat, but ‖∂L/∂W‖/‖W‖ ~ 1e-14.5
        (-0.75, 8, 6.0, "exploding"),  # relu + large_normal: flat, every step overshoots
        (0.0, 2, -1.0, "stable"),
        (-float("inf"), 16, -1.0, "overflow"),
        (0.0, 16, float("nan"), "overflow"),
        (0.0, 16, -float("inf"), "vanishing"),  # every weight gradient exactly 0
    ],
)
def test_the_regime_rule(ratio, depth, scale, want):
    assert flow.regime(ratio, depth, scale, 0) == want
    assert flow.regime(ratio, depth, scale, 3) == "overflow"


def test_q_star_is_exactly_zero_where_the_map_falls_to_zero(first):
    s = pd.read_csv(first / "summary.csv", dtype={"q_star": str})
    for act, init in (
        ("relu", "xavier_normal"),
        ("tanh", "xavier_normal"),
        ("gelu", "kaiming_normal"),
        ("relu", "small_normal"),
    ):
        cells = s[(s["activation"] == act) & (s["init"] == init)]["q_star"]
        assert (cells == "0").all(), f"{act} + {init}: q_star written as {set(cells)}"


@pytest.mark.filterwarnings("error")  # quiet: any warning fails the run
def test_same_arguments_same_bytes_for_every_file(first, tmp_path):
    """CSV, Markdown and PNG: byte-identical between two runs of the same command."""
    out = tmp_path / "run"  # the same name as `first`'s, so the README's command matches
    assert run(out, report=True) == 0
    for name in REPORT:
        assert (out / name).read_bytes() == (first / name).read_bytes(), name


def test_resume_measures_only_what_is_missing(first, tmp_path, capsys):
    shutil.copy(first / "layers.csv", tmp_path / "layers.csv")
    lines = (first / "summary.csv").read_text().splitlines(keepends=True)
    (tmp_path / "summary.csv").write_text("".join(lines[:-5]))
    capsys.readouterr()
    assert run(tmp_path, "--resume") == 0
    assert f"5 configurations measured ({N_GRID + 3 - 5} resumed)" in capsys.readouterr().out
    for name in ("summary.csv", "layers.csv"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name


@pytest.mark.parametrize("damaged", ["summary.csv", "layers.csv"])
def test_resume_over_a_file_cut_mid_line_recomputes_the_damaged_rows(
    first, tmp_path, capsys, damaged
):
    for name in ("summary.csv", "layers.csv"):
        shutil.copy(first / name, tmp_path / name)
    text = (first / damaged).read_text()
    (tmp_path / damaged).write_text(text[: len(text) - 25])  # the last line cut mid-field
    capsys.readouterr()
    assert run(tmp_path, "--resume") == 0
    assert "1 configurations measured" in capsys.readouterr().out
    for name in ("summary.csv", "layers.csv"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name


def test_resume_drops_a_row_with_a_missing_field(first, tmp_path, capsys):
    for name in ("summary.csv", "layers.csv"):
        shutil.copy(first / name, tmp_path / name)
    lines = (first / "summary.csv").read_text().splitlines(keepends=True)
    fields = lines[7].split(",")
    fields[10] = ""  # a number gone from an interior row
    lines[7] = ",".join(fields)
    (tmp_path / "summary.csv").write_text("".join(lines))
    capsys.readouterr()
    assert run(tmp_path, "--resume") == 0
    assert "1 configurations measured" in capsys.readouterr().out
    assert (tmp_path / "summary.csv").read_bytes() == (first / "summary.csv").read_bytes()


GARBAGE = {
    "binary": b"\x00\xff\xfe garbage \x81\n",
    "other columns": b"a,b,c\n1,2,3\n",
    "empty": b"",
}


@pytest.mark.parametrize("content", list(GARBAGE.values()), ids=list(GARBAGE))
def test_resume_over_a_garbage_csv_is_a_one_line_error(first, tmp_path, capsys, content):
    shutil.copy(first / "layers.csv", tmp_path / "layers.csv")
    (tmp_path / "summary.csv").write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, "--resume")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is not a summary.csv written by experiments.gradient_flow" in err, err
    assert len(err.strip().splitlines()) == 1, f"more than one line: {err!r}"
    assert (tmp_path / "summary.csv").read_bytes() == content, "the file was overwritten"


def test_a_narrow_sweep_measures_exactly_what_was_asked(tmp_path):
    """No scan, no default depths: depth 51, tanh, sigma2=0.5 at the default width and seeds."""
    assert (
        gf.main(
            [
                "--depths",
                "51",
                "--activations",
                "tanh",
                "--inits",
                "sigma2=0.5",
                "--out",
                str(tmp_path),
                "--jobs",
                "1",
                "--no-progress",
                "--no-report",
            ]
        )
        == 0
    )
    s = pd.read_csv(tmp_path / "summary.csv")
    got = sorted(map(tuple, s[["activation", "init", "depth", "width", "seed"]].values.tolist()))
    assert got == [("tanh", "sigma2=0.5", 51, 256, seed) for seed in (0, 1, 2)], got
    assert len(pd.read_csv(tmp_path / "layers.csv")) == 3 * 51


def test_the_scan_runs_in_a_narrow_sweep_only_when_asked(tmp_path):
    base = [
        "--quick",
        "--depths",
        "3",
        "--activations",
        "relu",
        "--inits",
        "xavier_normal",
        "--jobs",
        "1",
        "--no-progress",
        "--no-report",
    ]
    assert gf.main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert len(pd.read_csv(tmp_path / "plain" / "summary.csv")) == 1
    assert gf.main([*base, "--scan", "--out", str(tmp_path / "scan")]) == 0
    s = pd.read_csv(tmp_path / "scan" / "summary.csv")
    scan = s[s["init"].str.startswith("sigma2=")]
    assert len(scan) == len(gf.QUICK["scan_sigma2"]), s
    assert (scan["activation"] == "tanh").all() and (scan["sigma_b2"] == 0.05).all()


def test_the_default_sweep_includes_the_scan_at_sigma_b2_0_05():
    s = gf.settings(gf.parser().parse_args([]))
    assert s.scan is not None and s.scan.sigma_b2 == 0.05 and s.scan.activation == "tanh"
    assert min(s.scan.sigma2) <= 1.7 <= 1.8 <= max(s.scan.sigma2)
    quick = gf.settings(gf.parser().parse_args(["--quick"]))
    assert quick.scan is not None
    assert gf.settings(gf.parser().parse_args(["--no-scan"])).scan is None


def test_process_pool_and_dask_give_the_same_bytes(tmp_path):
    from distributed import LocalCluster

    args = ["--activations", "tanh", "relu", "--inits", "xavier_normal", "orthogonal", "--no-scan"]
    assert run(tmp_path / "serial", *args) == 0
    assert run(tmp_path / "pool", *args, "--jobs", "2") == 0
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        assert run(tmp_path / "dask", *args, "--dask", cluster.scheduler_address) == 0
    for name in ("summary.csv", "layers.csv"):
        ref = (tmp_path / "serial" / name).read_bytes()
        assert (tmp_path / "pool" / name).read_bytes() == ref, f"process pool: {name}"
        assert (tmp_path / "dask" / name).read_bytes() == ref, f"dask: {name}"


BAD_ARGS = [
    (["--activations", "swish"], "unknown activation 'swish'; valid choices: linear, sigmoid"),
    (["--inits", "he"], "unknown init 'he'; valid choices: small_normal"),
    (["--inits", "sigma2=-2"], "unknown init 'sigma2=-2'; valid choices"),
    (["--depths", "2"], "need depth ≥ 3"),
    (["--depths", "1", "4"], "every depth must be ≥ 2"),
    (["--scan-depth", "2"], "--scan-depth must be ≥ 3"),
    (["--jobs", "0"], "--jobs must be ≥ 1"),
    (["--check-autograd", "-1"], "--check-autograd must be ≥ 0"),
    (["--sigma-b2", "-1"], "--sigma-b2 must be a finite number ≥ 0"),
    (["--scan-sigma-b2", "nan"], "--scan-sigma-b2 must be a finite number ≥ 0"),
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


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        run(target)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is a file; expected a folder" in err and len(err.strip().splitlines()) == 1, err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_out_in_an_unwritable_place_is_a_one_line_error(tmp_path, capsys, where):
    if where == "under_a_file":
        (tmp_path / "f").write_text("")
        out = tmp_path / "f" / "report"
    else:
        out = Path("/proc/manual_bp_report")
    with pytest.raises(SystemExit) as exit_info:
        run(out)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and len(err.strip().splitlines()) == 1, err


def test_an_interrupted_run_leaves_no_partial_csv(tmp_path):
    """SIGINT while measuring: exit 130 with one line, nothing written but the empty folder."""
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "experiments.gradient_flow",
        "--depths",
        "64",
        "--activations",
        "tanh",
        "relu",
        "sigmoid",
        "--inits",
        "xavier_normal",
        "--seeds",
        *map(str, range(40)),
        "--jobs",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted; nothing written" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in out.iterdir()) == [], list(out.iterdir())


def test_overflow_is_recorded_not_raised():
    config = Config("linear", "sigma2=1e6", 120, 8, 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = flow.measure(config)
    assert m.summary["regime"] == "overflow" and m.summary["delta_regime"] == "overflow"
    assert m.summary["n_nan"] + m.summary["n_inf"] > 0, m.summary
    assert len(m.layers) == 120


def test_autograd_cross_check_passes_and_fails_loudly(monkeypatch):
    configs = [
        Config("gelu", "xavier_normal", 4, 10, 0, 5),
        Config("elu", "torch_default", 3, 10, 1, 5),
    ]
    lines = gf.check_autograd(configs, 2)
    assert len(lines) == 2 and all("ok=True" in line for line in lines), lines
    honest = flow.measure

    def doubled(config, params=None):
        m = honest(config, params)
        m.layers[0]["grad_w_norm"] *= 1 + 1e-6
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


def test_cross_terms_are_zero_for_one_example_and_grow_with_aligned_examples():
    rng = np.random.default_rng(0)
    delta, a = rng.normal(size=(1, 5)), rng.normal(size=(1, 7))
    g = float(np.linalg.norm(delta.T @ a))
    assert flow.cross_log10(delta, a, g) == pytest.approx(0.0, abs=1e-14)
    delta, a = np.tile(delta, (4, 1)), np.tile(a, (4, 1))  # four equal examples add coherently
    g = float(np.linalg.norm(delta.T @ a))
    assert flow.cross_log10(delta, a, g) == pytest.approx(0.5 * math.log10(4), abs=1e-14)


# --- physics, width 256 -------------------------------------------------------------------


def _measure(activation, init, depth):
    return flow.measure(Config(activation, init, depth, 256, 0, 128)).summary


def test_linear_orthogonal_is_an_isometry():
    s = _measure("linear", "orthogonal", 16)
    assert abs(s["delta_ratio_log10"]) < 1e-6 and abs(s["grad_ratio_log10"]) < 0.05, s


def test_relu_xavier_delta_vanishes_but_the_weight_gradient_does_not():
    """δ vanishes from top to bottom, the weight gradient does not; but every weight gradient
    is ~1e-5.7 of its weights (the output collapses), which the scale test calls vanishing."""
    s = _measure("relu", "xavier_normal", 32)
    assert s["delta_ratio_log10"] < -4 and s["delta_regime"] == "vanishing", s
    assert abs(s["grad_ratio_log10"]) < 0.5, s
    assert s["grad_scale_log10"] < -5 and s["regime"] == "vanishing", s
    k = _measure("relu", "kaiming_normal", 32)
    assert abs(k["grad_ratio_log10"]) < 0.5 and k["regime"] == "stable", k
    assert s["grad_ratio_log10_theory"] == pytest.approx(0.0, abs=1e-9)


def test_sigmoid_xavier_weight_gradient_truly_vanishes():
    s = _measure("sigmoid", "xavier_normal", 16)
    assert s["grad_ratio_log10"] < -5 and s["regime"] == "vanishing", s


def test_the_batch_theory_reads_the_output_layers_own_init():
    """xavier_normal's output layer (10, N) has σ_w² = 2N/(N + 10), not the hidden 1; the batch
    theory's logits read it, orthogonal's (σ_w² = 1 for every layer) is unchanged by it."""
    xavier = Config("sigmoid", "xavier_normal", 64, 256, 0, 128)
    assert flow.layer_params(xavier, (flow.CLASSES, 256)) == pytest.approx((512 / 266, 0.0))
    assert flow.layer_params(xavier, (256, 256)) == pytest.approx((1.0, 0.0))
    biased = Config("tanh", "sigma2=1.5", 8, 64, 0, 16, sigma_b2=0.05)
    assert flow.layer_params(biased, (flow.CLASSES, 64)) == pytest.approx((1.5, 0.05))
    got = flow.mean_field(xavier)["grad_ratio_log10_batch_theory"]
    ortho = flow.mean_field(Config("sigmoid", "orthogonal", 64, 256, 0, 128))
    assert got == pytest.approx(-39.070, abs=2e-3)
    assert ortho["grad_ratio_log10_batch_theory"] == pytest.approx(-38.955, abs=2e-3)


def test_tanh_large_normal_explodes():
    s = _measure("tanh", "large_normal", 16)
    assert s["regime"] == "exploding" and s["delta_regime"] == "exploding", s


THEORY_CASES = [
    (a, i)
    for a in ("relu", "tanh", "sigmoid")
    for i in ("xavier_normal", "kaiming_normal", "large_normal")
]


def test_measured_matches_theory_at_depth_32():
    configs = [Config(a, i, 32, 256, 0, 128) for a, i in THEORY_CASES]
    for m in flow.measure_all(configs):
        s = m.summary
        for col, tol in (("delta_ratio_log10", 0.3), ("grad_ratio_log10", 0.8)):
            gap = s[col] - s[f"{col}_theory"]
            assert abs(gap) < tol, (
                f"{s['activation']} + {s['init']}: {col} measured {s[col]:.3f}, "
                f"theory {s[f'{col}_theory']:.3f}"
            )


def test_sweep_resume_keeps_only_planned_whole_rows(first, tmp_path):
    for name in ("summary.csv", "layers.csv"):
        shutil.copy(first / name, tmp_path / name)
    configs = [
        Config("relu", "xavier_normal", 3, 12, 0, 6),
        Config("relu", "xavier_normal", 7, 12, 0, 6),
    ]
    todo, summary, layers = sweep.resume(tmp_path, configs)
    assert todo == [configs[1]] and len(summary) == 1 and len(layers) == 3
