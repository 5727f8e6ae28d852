"""The benchmark's measuring pieces (timings themselves are never asserted: speed goals live
in `make bench`, not in tests)."""

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from experiments import benchmark


def test_flops_counts_linear_and_conv_multiply_adds():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).double()
    x = torch.zeros(2, 2, 6, 6, dtype=torch.float64)
    conv = 2 * (2 * 3 * 4 * 4) * (2 * 3 * 3)  # 2 · outputs · (C_in · kH · kW)
    linear = 2 * (2 * 5) * 48
    assert benchmark.flops(model, x) == pytest.approx(3 * (conv + linear))


def test_central_differences_agree_with_autograd():
    model, loss_fn, x, t = benchmark.Case(
        "tiny", "gradcheck", benchmark.tiny_cnn, (2, 1, 8, 8), 3
    ).problem()
    fd = benchmark.central_differences(model, loss_fn, x, t)
    exact = torch.autograd.grad(loss_fn(model(x), t), list(model.parameters()))
    for (name, _), d, g in zip(model.named_parameters(), fd, exact, strict=True):
        err = float((d - g).abs().max() / g.abs().max())
        assert err < 1e-6, f"{name}: central differences off by {err:.1e} relative"


def test_median_ms_times_every_function():
    calls = {"a": 0, "b": 0}

    def bump(key):
        calls[key] += 1

    ms = benchmark.median_ms({"a": lambda: bump("a"), "b": lambda: bump("b")}, runs=5, warmup=2)
    assert set(ms) == {"a", "b"} and all(v >= 0 and math.isfinite(v) for v in ms.values())
    assert calls == {"a": 7, "b": 7}


def test_quick_run_writes_the_csv_plot_and_readme(tmp_path):
    benchmark.main(["--quick", "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "benchmark.csv")
    assert list(frame.columns) == benchmark.COLUMNS
    assert set(frame["sweep"]) == {"gradcheck", "batch", "width", "depth"}
    assert (frame["manual_max_rel_err"] < 1e-12).all(), frame[["model", "manual_max_rel_err"]]
    gradcheck = frame[frame["sweep"] == "gradcheck"]
    assert (gradcheck["gradcheck_ms"] > 0).all()
    assert (gradcheck["gradcheck_fd_max_rel_err"] < 1e-4).all()
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    text = (tmp_path / "README.md").read_text()
    assert "| model | params |" in text and "faster than gradcheck" in text
    assert "NumPy forward + backward" in text
    parts = pd.read_csv(tmp_path / "breakdown.csv")
    assert (parts[["fx_capture_ms", "numpy_forward_backward_ms"]] > 0).all().all()


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--threads", "0"])
    assert "--threads must be ≥ 1" in capsys.readouterr().err
