"""The comparison behind every report row: the verdict rule, the worst entry, NaN, shapes."""

import _compare
import numpy as np
import pytest

from torch_ref.report import GradientReport, as_tie, compare


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
    assert "MISMATCH" in text and "param 0.weight[0, 1]: yours 2, oracle 2.5" in text
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


def test_a_given_scale_measures_a_mathematically_zero_gradient_against_its_layer():
    noise = np.array([3e-12, -2e-12])  # both sides rounding noise around an exact 0
    alone = compare("param", "0.bias", noise, -noise, 1e-7, 1e-14)
    in_layer = compare("param", "0.bias", noise, -noise, 1e-7, 1e-14, scale=50.0)
    assert not alone.ok and alone.max_rel_err > 1  # against itself: a 100% error
    assert in_layer.ok and in_layer.scale == 50.0 and in_layer.max_rel_err == pytest.approx(1e-13)
    real = compare("param", "0.bias", np.array([1e-3, 0.0]), np.zeros(2), 1e-7, 1e-14, scale=50.0)
    assert not real.ok  # a real difference is still one


def test_a_tie_row_is_ok_and_says_where():
    bad = compare("param", "0.weight", np.array([1.0, 2.5]), np.array([1.0, 2.0]), 1e-7, 1e-10)
    tie = as_tie(bad, 3, ["1", "4"])
    assert tie.ok and tie.status == "tie" and tie.layers == ("1", "4")
    report = GradientReport(1.0, 1.0, [tie], rtol=1e-7, atol=1e-10)
    text = str(report)
    assert report.ok and report.ties == [tie]
    assert text.splitlines()[0] == "GradientReport: OK (1 tensor, rtol=1e-07, atol=1e-10)"
    assert "differ only at kinks or ties that rounding decided (in 1, 4)" in text
    assert "3 entries at kinks/ties in 1, 4" in text and "FAIL" not in text


def test_labels_errors_and_tidy_tables():
    rows = [compare("param", "w", np.ones(3), np.ones(3), 1e-7, 1e-10)]
    report = GradientReport(None, None, rows, labels=("yours", "oracle"),
                            tolerances="given to the call", errors=["missing: b"])  # fmt: skip
    text = str(report)
    assert not report.ok and "missing: b" in text and "loss:" not in text
    assert text.splitlines()[0] == (
        "GradientReport: MISMATCH (1 tensor, rtol=1e-07, atol=1e-10: given to the call)"
    )
    assert all(line == line.rstrip() for line in text.splitlines())
    assert list(report.to_frame().columns)[:7] == [
        "kind", "name", "shape", "max_abs_err", "max_rel_err", "ok", "index"
    ]  # fmt: skip
    assert "status" in report.to_frame().columns


def test_rounding_noise_prints_as_below_the_floor_and_a_real_error_as_digits():
    """Errors at the level of rounding print as `<1e-13` (their digits differ between CPUs);
    the exact values stay in the rows, and an error above the floor prints its digits."""
    ref = np.array([1.0, -2.0])
    noise = compare("param", "w", ref + np.array([2.2e-16, 0.0]), ref, 1e-7, 1e-10)
    real = compare("param", "b", ref + np.array([0.0, 4e-12]), ref, 1e-7, 1e-10)
    report = GradientReport(1.0, 1.0, [noise, real], rtol=1e-7, atol=1e-10)
    lines = str(report).splitlines()
    assert lines[-2].split()[-2:] == ["<1e-13", "ok"], lines
    assert lines[-1].split()[-2:] == ["2.00e-12", "ok"], lines
    assert noise.max_rel_err == pytest.approx(1.1e-16) and report.to_frame()["max_abs_err"][0] > 0


def test_the_noise_floor_and_the_digits_follow_the_dtype_under_test():
    ref = np.array([0.123456789123])
    off = ref * (1 + 3e-6)  # float32 rounding: a float64 error, noise for float32
    as64 = str(GradientReport(None, None, [compare("param", "w", off, ref, 1e-7, 1e-10)]))
    assert "3.00e-06" in as64 and "yours 0.123456789, oracle 0.123457159" in as64  # 9 digits
    as32 = str(GradientReport(None, None, [compare("param", "w", off, ref, 1e-4, 1e-6)],
                              rtol=1e-4, atol=1e-6, dtype="float32"))  # fmt: skip
    assert as32.splitlines()[-1].split()[-2:] == ["<1e-5", "ok"], as32
    wrong = compare("param", "w", ref * 1.001, ref, 1e-4, 1e-6)
    as32 = str(GradientReport(None, None, [wrong], rtol=1e-4, atol=1e-6, dtype="float32"))
    assert "yours 0.123457, oracle 0.12358" in as32, as32  # 6 digits


def test_one_vocabulary_yours_first_and_a_headline_that_says_whose():
    """In a comparison of your model the manual side is the oracle and autograd is yours; in
    check_grads the sides are the other way round; both print "yours ..., oracle ..."."""
    row = compare("param", "w", np.array([2.5]), np.array([2.0]), 1e-7, 1e-10)
    model = GradientReport(1.0, 1.0, [row])
    given = GradientReport(None, None, [row], labels=("yours", "oracle"), yours="your gradients")
    assert "param w[0]: yours 2, oracle 2.5" in str(model)
    assert "param w[0]: yours 2.5, oracle 2" in str(given)
    assert "loss: yours 1, oracle 1" in str(model)
    assert model.failure_message().splitlines()[0] == (
        "your model's gradients (torch.autograd) differ from the oracle's "
        "(explicit backprop in float64)"
    )
    assert given.failure_message().startswith("your gradients differ from the oracle's")
    for text in (str(model), str(given), model.failure_message()):
        assert "manual" not in text and "autograd " not in text, text


def test_a_failing_table_fits_100_columns_with_the_details_below():
    long = "encoder.layers.11.self_attention.output_projection.weight"
    rows = [
        compare("param", long, np.full((64, 64), 2.0), np.ones((64, 64)), 1e-7, 1e-10),
        compare("function", "MyFunction#0 input 0", np.ones((8, 16, 32, 32)),
                np.zeros((8, 16, 32, 32)), 1e-7, 1e-10),
    ]  # fmt: skip
    report = GradientReport(1.0, 1.0, rows, notes=["a finding " * 20])
    lines = report.failure_message().splitlines()
    assert max(map(len, lines)) <= 100, "\n".join(lines)
    table_end = next(i for i, line in enumerate(lines) if line.startswith("a finding"))
    assert all(line.endswith("FAIL") for line in lines[table_end - 2 : table_end])
    assert any(long in line for line in lines[table_end:])  # in full below the table
    assert any("…" in line for line in lines[:table_end])  # shortened in it
