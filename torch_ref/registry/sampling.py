"""Sampling at points (manual_bp.ops.sampling): F.grid_sample (bilinear, nearest, bicubic;
zeros, border, reflection padding; align_corners; 2-d, and 3-d but bicubic) and
F.affine_grid (2-d and 3-d)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from manual_bp.ops.sampling import MODES, PADDINGS, AffineGrid, GridSample
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor


def grid_sample(
    input: Any,
    grid: Any,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = None,
) -> Op:
    """F.grid_sample: align_corners None is False (torch's default, with its warning)."""
    if mode not in MODES:
        raise UnsupportedModuleError(
            f"grid_sample: mode={mode!r} is not supported; expected {MODES}"
        )
    if padding_mode not in PADDINGS:
        raise UnsupportedModuleError(
            f"grid_sample: padding_mode={padding_mode!r} is not supported; expected {PADDINGS}"
        )
    x, g = tensor(input, "grid_sample"), tensor(grid, "grid_sample (grid)")
    return Op(GridSample(mode, padding_mode, bool(align_corners)), (x, g))


def affine_grid(theta: Any, size: Any, align_corners: bool | None = None) -> Op:
    """F.affine_grid(θ, size): 2-d (size (N, C, H, W)) or 3-d (size (N, C, D, H, W))."""
    return Op(AffineGrid(tuple(size), bool(align_corners)), (tensor(theta, "affine_grid"),))


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _grid_samples() -> list[Sample]:
    x = _randn(0, 2, 3, 5, 6)
    g = 1.1 * torch.rand(
        2, 4, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    g = 2.4 * g - 1.3  # some points outside [−1, 1]
    out = []
    for mode in MODES:
        for pad in PADDINGS:
            for ac in (False, True):
                out.append(
                    Sample(
                        f"{mode}, {pad}, align_corners={ac}",
                        (x, g),
                        fn=lambda x, g, m=mode, p=pad, a=ac: F.grid_sample(x, g, m, p, a),
                    )
                )
    theta = torch.tensor([[0.9, 0.2, 0.1], [-0.1, 1.1, 0.05]], dtype=torch.float64)
    out.append(
        Sample(
            "a spatial transformer: affine_grid then grid_sample",
            (x,),
            fn=lambda x, t: F.grid_sample(
                x, F.affine_grid(t.expand(2, 2, 3), [2, 3, 4, 4], False), align_corners=False
            ),
            params={"t": theta},
        )
    )
    return out  # fmt: skip


def _affine_samples() -> list[Sample]:
    t = _randn(2, 3, 2, 3)
    return [
        Sample("align_corners False", (t,), fn=lambda t: F.affine_grid(t, [3, 1, 4, 5], False)),
        Sample("align_corners, one row", (t,), fn=lambda t: F.affine_grid(t, [3, 2, 1, 5], True)),
        Sample("3-d", (_randn(6, 2, 3, 4),), fn=lambda t: F.affine_grid(t, [2, 1, 2, 3, 4], False)),
    ]  # fmt: skip


def _grid3d_samples() -> list[Sample]:
    x = _randn(4, 2, 2, 3, 4, 5)
    g = (
        2.4
        * torch.rand(2, 2, 3, 2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        - 1.2
    )
    out = []
    for mode in ("bilinear", "nearest"):
        for pad in PADDINGS:
            out.append(
                Sample(
                    f"3-d {mode}, {pad}",
                    (x, g),
                    fn=lambda x, g, m=mode, p=pad: F.grid_sample(
                        x, g, m, p, align_corners=p == "border"
                    ),
                )
            )
    return out


def _grid_refusals() -> list[Refusal]:
    x = _randn(3, 1, 2, 3, 3, 3)
    g = torch.zeros(1, 2, 2, 2, 3, dtype=torch.float64)
    return [
        Refusal(
            "bicubic in 3-d",
            (x, g),
            ValueError,
            "bicubic interpolation is 2-d only",
            fn=lambda x, g: F.grid_sample(x, g, "bicubic", align_corners=False),
        )
    ]


ROWS = [
    OpEntry(
        "grid_sample",
        "resample",
        grid_sample,
        functions=(F.grid_sample,),
        note="2-d and 3-d; bilinear (trilinear), nearest, bicubic (2-d, as torch); zeros, "
        "border, reflection; align_corners; points on a pixel edge reported as ties",
        samples=lambda: _grid_samples() + _grid3d_samples(),
        refusals=_grid_refusals,
    ),
    OpEntry(
        "affine_grid",
        "resample",
        affine_grid,
        functions=(F.affine_grid,),
        note="2-d and 3-d; align_corners",
        linear=True,
        samples=_affine_samples,
    ),
]
