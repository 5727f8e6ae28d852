"""torch_ref.gradcheck on a real library's differentiable functions, as its own tests call
torch.autograd.gradcheck: the verdict must be torch's, with no foreign exception."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch

import torch_ref

K = pytest.importorskip("kornia")
_torch_gradcheck = sys.modules["torch.autograd.gradcheck"].gradcheck


def _img(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).requires_grad_()


def _homography() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    noise = 0.01 * torch.randn(1, 3, 3, generator=g, dtype=torch.float64)
    return (torch.eye(3, dtype=torch.float64)[None] + noise).requires_grad_()


CASES: dict[str, Callable[[], tuple[Callable[..., Any], tuple[torch.Tensor, ...]]]] = {
    "rgb_to_grayscale": lambda: (K.color.rgb_to_grayscale, (_img(1, 3, 5, 5),)),
    "rgb_to_hsv": lambda: (K.color.rgb_to_hsv, (_img(1, 3, 4, 4),)),
    "sobel": lambda: (K.filters.sobel, (_img(1, 1, 6, 6),)),
    "gaussian_blur2d": lambda: (
        lambda x: K.filters.gaussian_blur2d(x, (3, 3), (1.5, 1.5)),
        (_img(1, 1, 6, 6),),
    ),
    "warp_perspective": lambda: (
        lambda x, h: K.geometry.transform.warp_perspective(x, h, (5, 5)),
        (_img(1, 1, 5, 5), _homography()),
    ),
    "convert_points_from_homogeneous": lambda: (
        K.geometry.conversions.convert_points_from_homogeneous,
        ((_img(2, 4, 3).detach() + 1).requires_grad_(),),
    ),
    "ssim_loss": lambda: (
        lambda a, b: K.losses.ssim_loss(a, b, 3),
        (_img(1, 1, 6, 6), _img(1, 1, 6, 6, seed=2)),
    ),
    "adjust_brightness": lambda: (
        lambda x: K.enhance.adjust_brightness(x, 0.2),
        (_img(1, 3, 4, 4),),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_verdict_is_torchs(name: str) -> None:
    fn, inputs = CASES[name]()
    theirs = _torch_gradcheck(fn, inputs, raise_exception=False)
    ours = torch_ref.gradcheck(fn, inputs, raise_exception=False)
    assert theirs is True and ours is True


@pytest.mark.parametrize("name", ["rgb_to_grayscale", "sobel", "convert_points_from_homogeneous"])
def test_forward_mode_and_gradgradcheck_verdicts_are_torchs(name: str) -> None:
    fn, inputs = CASES[name]()
    torch_module = sys.modules["torch.autograd.gradcheck"]
    assert torch_module.gradcheck(fn, inputs, check_forward_ad=True, raise_exception=False)
    assert torch_ref.gradcheck(fn, inputs, check_forward_ad=True, raise_exception=False)
    assert torch_module.gradgradcheck(fn, inputs, raise_exception=False)
    assert torch_ref.gradgradcheck(fn, inputs, raise_exception=False)
