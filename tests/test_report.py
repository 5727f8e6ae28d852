"""The comparison behind every report row: the verdict rule, the worst entry, NaN, shapes."""

import _compare
import numpy as np
import pytest

from torch_ref.report import GradientReport, compare


def test_verdict_is_atol_plus_rtol_times_the_largest_reference():
    ref = np.array([[1.0, -4.0], [2.0, 0.5]])
    just_inside = ref.copy()
    just_inside[1, 1] += 1e-10 + 1e-7 * 4.0 * 0.999
    just_outside = ref.copy()
    just_outside[1, 1] += 1e-10 + 1e-7 * 4.0 * 1.001
    assert compare("param", "w", just_inside, ref, 1e-7, 1e-10).ok
    row = compare("param", "w", just_outside, ref, 1e-7, 1e-10)
    assert not row.ok and row.index == (1, 1)
    assert row.manual == just_outside[1, 1] and row.autograd == 0.5
    assert row.max_rel_err == pytest.approx(row.max_abs_err / 4.0)


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        (np.array([np.nan, 1.0]), np.array([0.0, 1.0]), False),
        (np.array([0.0, 1.0]), np.array([0.0, np.inf]), False),
        (np.zeros(3), np.zeros(3), True),
        (np.zeros((2, 3)), np.zeros((3, 2)), False),
        (np.zeros(0), np.zeros(0), True),
    ],
    ids=["nan_manual", "inf_reference", "all_zero", "shape_mismatch", "empty"],
)
def test_edge_cases(got, want, ok):
    assert compare("delta", "x", got, want, 1e-7, 1e-10).ok is ok


def test_failing_report_names_the_worst_entry_with_both_values():
    good = compare("param", "0.bias", np.ones(3), np.ones(3), 1e-7, 1e-10)
    bad = compare("param", "0.weight", np.array([[1.0, 2.5]]), np.array([[1.0, 2.0]]), 1e-7, 1e-10)
    report = GradientReport(1.0, 1.0, [good, bad], rtol=1e-7, atol=1e-10)
    text = str(report)
    assert not report.ok and report.failures() == [bad]
    assert "MISMATCH" in text and "0.weight[0, 1] manual 2.5 vs autograd 2" in text
    assert list(report.to_frame()["name"]) == ["0.bias", "0.weight"]


def test_a_loss_mismatch_alone_fails_the_report():
    report = GradientReport(1.0, 1.1, [], rtol=1e-7, atol=1e-10)
    assert not report.ok and "<-- MISMATCH" in str(report)


def test_the_layer_tests_helper_fails_with_the_index_and_both_values():
    message = r"dW \[case\] at index \(1,\): manual 3\.0, torch 2\.0"
    with pytest.raises(AssertionError, match=message):
        _compare.assert_close(
            "dW", "case", np.array([1.0, 3.0]), np.array([1.0, 2.0]), rtol=1e-10, atol=1e-12
        )
