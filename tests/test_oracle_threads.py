"""The oracle's thread arrangement: NumPy's BLAS at one thread during the NumPy pass (its
idle threads spin and fight torch's OpenMP pool), and the caller's settings as they were
afterwards, whatever happened in between."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn as nn
from threadpoolctl import threadpool_info, threadpool_limits

from manual_bp.network import Network
from torch_ref import compare_gradients, manual_gradients, manual_trace, oracle


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def settings() -> tuple[int, list[int]]:
    return torch.get_num_threads(), blas_threads()


def _problem() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, nn.CrossEntropyLoss(), torch.randn(5, 6, dtype=torch.float64), torch.arange(5) % 3


@contextlib.contextmanager
def user_settings(torch_threads: int, blas: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with threadpool_limits(limits=blas, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


CALLS = {
    "manual_gradients": lambda m, l, x, t: manual_gradients(m, l, x, t),
    "manual_trace": lambda m, l, x, t: manual_trace(m, l, x, t),
    "compare_gradients": lambda m, l, x, t: compare_gradients(m, l, x, t),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("torch_threads, blas", [(2, 2), (1, 1), (1, 2), (2, 1)])
def test_the_callers_thread_settings_are_kept(call: str, torch_threads: int, blas: int) -> None:
    with user_settings(torch_threads, blas):
        before = settings()
        CALLS[call](*_problem())
        assert settings() == before


def test_the_numpy_pass_runs_blas_at_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[int]] = []
    original = Network.loss_and_gradients

    def spy(self: Network, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(blas_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Network, "loss_and_gradients", spy)
    with user_settings(2, 2):
        manual_gradients(*_problem())
        assert blas_threads() == [2] * len(blas_threads())
    assert seen and all(n == 1 for threads in seen for n in threads), seen


def test_settings_come_back_when_the_pass_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Network, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("planted failure inside the pass")

    monkeypatch.setattr(Network, "loss_and_gradients", broken)
    with user_settings(2, 2):
        before = settings()
        with pytest.raises(RuntimeError, match="planted failure"):
            manual_gradients(*_problem())
        assert settings() == before


def test_planted_arrangement_that_forgets_the_setting_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @contextlib.contextmanager
    def leaky() -> Iterator[None]:
        threadpool_limits(limits=1, user_api="blas")  # (not restored)
        yield

    monkeypatch.setattr(oracle, "_one_blas_thread", leaky)
    with user_settings(2, 2):
        before = settings()
        manual_gradients(*_problem())
        assert settings() != before
