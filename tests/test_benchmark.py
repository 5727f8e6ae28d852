"""The benchmark's measuring pieces. Timings themselves are never asserted (speed goals live
in `make bench`, not in tests): these check that what is measured is what the README says."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from experiments import benchmark
from torch_ref import oracle


def test_flops_counts_linear_and_conv_multiply_adds():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).double()
    x = torch.zeros(2, 2, 6, 6, dtype=torch.float64)
    conv = 2 * (2 * 3 * 4 * 4) * (2 * 3 * 3)  # 2 · outputs · (C_in · kH · kW)
    linear = 2 * (2 * 5) * 48
    assert benchmark.flops(model, x) == pytest.approx(3 * (conv + linear))


def test_pairs_alternate_the_order_and_keep_every_time():
    calls: list[str] = []
    p = benchmark.paired(lambda: calls.append("a"), lambda: calls.append("b"), pairs=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(p.a) == len(p.b) == 4 and len(p.a_cpu) == 4
    s = p.summary()
    assert s["pairs"] == 4 and s["ratio_min"] <= s["ratio"] <= s["ratio_max"]


def test_summary_is_the_median_of_per_pair_ratios_not_the_ratio_of_medians():
    p = benchmark.Pairs(a=[1.0, 2.0, 9.0], b=[1.0, 4.0, 3.0], a_cpu=[1, 1, 1], b_cpu=[1, 1, 1])
    s = p.summary()
    assert s["a_ms"] == 2.0 and s["b_ms"] == 3.0
    assert s["ratio"] == 1.0  # ratios 1, 0.5, 3: median 1 (the ratio of medians is 0.67)
    assert (s["ratio_min"], s["ratio_max"]) == (0.5, 3.0)


def test_setup_wraps_each_call_outside_the_timer():
    entered: list[str] = []

    @contextlib.contextmanager
    def setup(tag: str):
        entered.append(tag)
        yield

    benchmark.paired(lambda: None, lambda: None, 2, 0, lambda: setup("a"), lambda: setup("b"))
    assert entered == ["a", "b", "b", "a"]


def test_threads_are_set_and_restored():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    with benchmark.threads(1):
        assert torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == blas_before


def test_stages_are_nested_inside_the_call_and_the_rest_is_never_negative():
    model = benchmark.mlp((4, 5, 3)).double()
    x, t = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
    loss = nn.CrossEntropyLoss()
    stages = benchmark.stage_profile(lambda: oracle.manual_gradients(model, loss, x, t), runs=3)
    assert stages["capture"] > 0 and stages["numpy_pass"] > 0
    assert stages["autograd_reference"] == 0.0  # manual_gradients runs no reference
    parts = ["capture", "convert_and_checks", "numpy_pass", "autograd_reference", "rest"]
    assert all(stages[k] >= 0 for k in parts), stages
    # (medians of parts need not add up to the median total, but each is below it)
    assert all(stages[k] <= stages["total"] for k in parts)
    # and the wrappers are gone afterwards
    assert oracle._prepare.__name__ == "_prepare"


def test_stage_profile_sees_the_reference_in_compare_gradients():
    model = benchmark.mlp((4, 5, 3)).double()
    x, t = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
    stages = benchmark.stage_profile(
        lambda: oracle.compare_gradients(model, nn.CrossEntropyLoss(), x, t), runs=2
    )
    assert stages["autograd_reference"] > 0


def test_fitted_exponents_recover_a_power_law():
    xs = [8, 16, 32, 64]
    frame = pd.DataFrame(
        {
            "section": ["sweep: mlp width"] * 4,
            "x": xs,
            "a_ms": [3.0 * x**2 for x in xs],
            "b_ms": [0.5 * x for x in xs],
        }
    )
    fit = benchmark.fitted_exponents(frame).iloc[0]
    assert fit["sweep"] == "mlp width"
    assert fit["manual_exponent"] == pytest.approx(2.0)
    assert fit["autograd_exponent"] == pytest.approx(1.0)
    assert fit["manual_exponent_upper"] == pytest.approx(2.0)


def test_every_benchmark_model_matches_autograd():
    """The models the benchmark times are ones the oracle gets right (small versions)."""
    for case in benchmark.headline_cases(quick=True):
        model, loss_fn, x, t = case.problem()
        report = oracle.compare_gradients(model, loss_fn, x, t)
        assert report.ok, f"{case.name}\n{report}"


def test_tables_read_as_markdown_and_as_text():
    md = benchmark.table(["a", "bb"], [[1, "x"], [22, "y"]])
    assert md.splitlines() == ["| a | bb |", "|---|---|", "| 1 | x |", "| 22 | y |"]
    text = benchmark.text_table(["a", "bb"], [[1, "x"], [22, "y"]])
    assert text.splitlines() == ["a   bb", "--  --", "1   x", "22  y"]


def test_goal_rows_mark_met_and_missed_by_the_median():
    rows = []
    for key, ratio in zip(benchmark.HEADLINE_GOALS, [0.9, 1.3, 1.2, 1.4, 2.0, 2.5], strict=True):
        for setting in ("2 threads", "1 thread"):
            rows.append(
                benchmark.row(
                    "headline", key, setting, "m", "a", ratio=ratio, ratio_min=0.5, ratio_max=3.0
                )  # fmt: skip
            )
    rows.append(
        benchmark.row(
            "gradcheck", "g", "", "m", "g", speedup=1200.0, speedup_min=900.0, speedup_max=1500.0
        )  # fmt: skip
    )
    rows.append(benchmark.row("fresh-model", "f", "", "c", "", a_ms=3.5, a_min=2.0, a_max=9.0))
    rows.append(
        benchmark.row(
            "memory",
            "m",
            "",
            "m",
            "a",
            ratio=1.2,
            ratio_min=1.2,
            ratio_max=1.2,
            a_mb=120.0,
            b_mb=100.0,
        )  # fmt: skip
    )
    rows.append(
        benchmark.row(
            "second-core",
            "w",
            "",
            "manual_gradients at 2",
            "1",
            ratio=0.7,
            ratio_min=0.6,
            ratio_max=0.9,
        )  # fmt: skip
    )
    drop_in = pd.DataFrame(
        [
            {"kind": "model", "ours_ms": 2.0, "speedup_vs_slow": 800.0},
            {"kind": "function", "ours_ms": 3.0, "speedup_vs_slow": 8.0},
            {"kind": "function", "ours_ms": 3.0, "speedup_vs_slow": 14.0},
            {"kind": "function", "ours_ms": 3.0, "speedup_vs_slow": 12.0},
            {"kind": "overhead", "ours_ms": 1.2, "speedup_vs_slow": 3.0},
        ]
    )
    marks = [r[-1] for r in benchmark.goal_rows(pd.DataFrame(rows), drop_in)]
    #        mlp     cnn       resnet vit    gpt       lm
    want = ["met", "missed", "met", "met", "missed", "met"]
    #        gradcheck fresh     memory second-core
    want += ["met", "missed", "met", "missed"]
    #        drop-in: MLP, median of functions, small-function overhead
    want += ["missed", "met", "met"]
    assert marks == want
    unmeasured = [r[-2:] for r in benchmark.goal_rows(pd.DataFrame(rows))[-3:]]
    assert unmeasured == [["not measured", "—"]] * 3


def test_peak_worker_reports_a_positive_growth():
    mb = benchmark.peak_mb("manual", quick=True)
    assert np.isfinite(mb) and mb > 0


@pytest.mark.parametrize("bad", [["--pairs", "0"], ["--pairs", "-3"]])
def test_bad_arguments_are_refused(capsys, bad):
    with pytest.raises(SystemExit):
        benchmark.main(bad)
    assert "--pairs must be ≥ 1" in capsys.readouterr().err


def test_quick_run_writes_every_file_and_a_goal_row_per_goal(tmp_path, capsys):
    benchmark.main(["--quick", "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "benchmark.csv")
    sections = set(frame["section"])
    assert {"headline", "gradcheck", "fresh-model", "memory", "second-core"} <= sections
    assert {"sweep: mlp batch", "sweep: mlp width", "sweep: mlp depth"} <= sections
    timed = frame.dropna(subset=["ratio"])
    assert (timed["ratio_min"] <= timed["ratio"]).all() and (
        timed["ratio"] <= timed["ratio_max"]
    ).all()
    heads = frame[frame["section"] == "headline"]
    assert (heads["max_rel_err"] < 1e-12).all(), heads[["case", "max_rel_err"]]
    stages = pd.read_csv(tmp_path / "stages.csv")
    parts = ["capture", "convert_and_checks", "numpy_pass", "autograd_reference", "rest"]
    assert (stages[parts] >= 0).all().all()
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    layers = pd.read_csv(tmp_path / "layers.csv")
    assert {"Conv2d", "BatchNorm2d", "Linear"} <= set(layers["layer"])
    text = (tmp_path / "README.md").read_text()
    for key, (label, *_) in benchmark.GOALS.items():
        line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        quick_skips = key == "drop-in-mlp"  # (--quick leaves the 1,893-parameter MLP out)
        assert line.rstrip(" |").endswith(("—",) if quick_skips else ("met", "missed")), line
    drop_in = pd.read_csv(tmp_path / "gradcheck.csv")
    assert {"function", "overhead"} <= set(drop_in["kind"]) and (drop_in["ours_ms"] > 0).all()
    assert (drop_in["yours_ms"] > 0).all() and (drop_in["speedup_bound"] > 0).all()
    assert "## torch_ref.gradcheck against torch.autograd.gradcheck" in text
    assert "thread" in text and "openblas" in text.lower()
    out = capsys.readouterr().out
    assert "USDT" not in out and "DataFrame" not in out
    assert "measured: median (min–max)" in out  # the goal table, printed as text


# --- what the benchmark reaches inside: torch_ref._bench and conv.tuned, nothing else -----------


def test_every_internal_the_hooks_name_exists():
    """Renaming an oracle internal must fail here, not leave the benchmark timing nothing."""
    from torch_ref import _bench

    for name, (owner, attr) in _bench.STAGES.items():
        assert callable(getattr(owner, attr, None)), f"stage {name}: {owner!r}.{attr} is gone"
    owner, attr = _bench.ARRANGEMENT
    assert callable(getattr(owner, attr, None)), f"{owner!r}.{attr} is gone"


def test_the_hooks_restore_what_they_replace():
    from torch_ref import _bench

    before = {name: getattr(owner, attr) for name, (owner, attr) in _bench.STAGES.items()}
    arrangement = oracle._one_blas_thread
    with _bench.timed_stages() as ms, _bench.without_thread_arrangement():
        assert oracle._one_blas_thread is contextlib.nullcontext
        model = benchmark.mlp((4, 5, 3)).double()
        x, t = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
        oracle.manual_gradients(model, nn.CrossEntropyLoss(), x, t)
    assert ms["prepare"] >= ms["capture"] > 0 and ms["numpy_pass"] > 0
    assert oracle._one_blas_thread is arrangement
    assert {n: getattr(o, a) for n, (o, a) in _bench.STAGES.items()} == before


INTERNALS = ("torch_ref.oracle", "torch_ref.problem", "from torch_ref import oracle",
             "_one_blas_thread", "oracle._prepare", "conv_ops.COLUMN_BYTES =",
             "conv_ops.COLUMN_BYTES, conv_ops.PER_SAMPLE_PIXELS =")  # fmt: skip


def test_the_benchmark_patches_no_internals():
    """The package reaches inside the oracle and the kernels only through the two hooks."""
    from pathlib import Path

    package = Path(benchmark.__file__).parent
    for path in package.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for internal in INTERNALS:
            assert internal not in text, f"{path.name} reaches {internal!r} directly"
