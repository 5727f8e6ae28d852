"""experiments.coverage on three ops of torch's op_db: the verdicts and the report it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import coverage


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("coverage") / "coverage.md"
    coverage.main(["--ops", "--only", "tanh", "linalg.eigh", "ormqr", "--out", str(out)])
    return Path(out).read_text()


def test_three_ops_get_their_verdicts(written: str) -> None:
    assert "3 entries: 0 crash, 0 mismatch, 1 refused, 2 match, 0 no sample." in written
    refusal = "| `ormqr` | UnsupportedModuleError: torch.ormqr is not supported: it has no registry"
    assert refusal in written
    assert "aten.ormqr, which has no row and no decomposition" in written


def test_a_wrong_backward_is_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement can fail: tanh's derivative off by 1% is a mismatch, not a match."""
    from dataclasses import replace

    from manual_bp.ops import activations

    right = activations.tanh()
    wrong = replace(right, grad_from_output=lambda a: 1.01 * right.grad_from_output(a))
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", lambda: wrong)
    op_db, _ = coverage._databases()
    (op,) = [o for o in coverage.op_entries(op_db) if o.name == "tanh"]
    assert coverage.run_op(op, 1).verdict == "mismatch"


def test_core_aten_is_closed_but_for_what_is_refused_by_design(written: str) -> None:
    """Every Core ATen overload has a route; the refused ones are draws, backward ops and the
    complex FFTs, nothing else (a row or decomposition lost would land here)."""
    from experiments import core_aten

    routes = {str(op): core_aten.route(op) for op in core_aten.core_overloads()}
    refused = {op for op, r in routes.items() if r.endswith("(refused)")}
    assert refused == {
        "aten.rand.default", "aten.randperm.default", "aten._fft_r2c.default",
        "aten._fft_c2r.default", "aten.convolution_backward.default",
        "aten.avg_pool2d_backward.default", "aten._adaptive_avg_pool2d_backward.default",
    }  # fmt: skip
    assert routes["aten.as_strided.default"] == "registry row"
    assert routes["aten.convolution.default"] == "row chosen by its arguments"
    assert "## Core ATen" in written and "| complex values (refused) | 2 |" in written


def test_an_overload_without_a_route_is_said_to_be(monkeypatch: pytest.MonkeyPatch) -> None:
    """(planted: as_strided's row gone, it is no longer counted as reached by a row)"""
    import torch

    from experiments import core_aten

    monkeypatch.setattr(core_aten, "_entry", lambda op: (None, None))
    assert core_aten.route(torch.ops.aten.as_strided.default) != "registry row"
