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
