"""The comparison of manual gradients with torch.autograd: one row per tensor, and a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Row:
    """One compared tensor: a parameter's gradient or a layer's δ.

    `max_rel_err` is max|manual − autograd| / max|autograd|, the quantity the verdict uses:
    a tensor is ok when max|manual − autograd| ≤ atol + rtol · max|autograd|.
    `index`, `manual`, `autograd` locate the worst entry and give both values there.
    """

    kind: str
    name: str
    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    ok: bool
    index: tuple[int, ...]
    manual: float
    autograd: float


def compare(
    kind: str, name: str, manual: np.ndarray, autograd: np.ndarray, rtol: float, atol: float
) -> Row:
    """The row for one tensor, with the worst entry located."""
    manual, autograd = np.asarray(manual, np.float64), np.asarray(autograd, np.float64)
    if manual.shape != autograd.shape:
        return Row(kind, name, manual.shape, np.inf, np.inf, False, (), np.nan, np.nan)
    if manual.size == 0:
        return Row(kind, name, manual.shape, 0.0, 0.0, True, (), 0.0, 0.0)
    with np.errstate(invalid="ignore"):
        err = np.abs(manual - autograd)
    # a NaN or Inf is the worst error unless both sides hold the same one at that entry
    same = (manual == autograd) | (np.isnan(manual) & np.isnan(autograd))
    err = np.where(same, 0.0, np.where(np.isnan(err), np.inf, err))
    flat = int(np.argmax(err))
    index = tuple(int(i) for i in np.unravel_index(flat, manual.shape))
    max_abs = float(err.flat[flat])
    finite_ref = np.abs(autograd[np.isfinite(autograd)])
    scale = float(finite_ref.max()) if finite_ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    ok = bool(max_abs <= atol + rtol * scale)
    return Row(
        kind,
        name,
        manual.shape,
        max_abs,
        max_rel,
        ok,
        index,
        float(manual.flat[flat]),
        float(autograd.flat[flat]),
    )


@dataclass
class GradientReport:
    """Manual backprop against torch.autograd, both in float64, on the same data."""

    loss_manual: float
    loss_autograd: float
    rows: list[Row] = field(default_factory=list)
    rtol: float = 1e-7
    atol: float = 1e-10

    @property
    def loss_ok(self) -> bool:
        return bool(
            abs(self.loss_manual - self.loss_autograd)
            <= self.atol + self.rtol * abs(self.loss_autograd)
        )

    @property
    def ok(self) -> bool:
        return self.loss_ok and all(r.ok for r in self.rows)

    def failures(self) -> list[Row]:
        """The failing rows, worst relative error first."""
        return sorted((r for r in self.rows if not r.ok), key=lambda r: -r.max_rel_err)

    def to_frame(self) -> pd.DataFrame:
        columns = [f.name for f in Row.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(r) for r in self.rows], columns=columns)

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        lines = [
            f"GradientReport: {verdict} ({len(self.rows)} tensors, rtol={self.rtol:g}, "
            f"atol={self.atol:g})",
            f"loss: manual {self.loss_manual:.12g}, autograd {self.loss_autograd:.12g}"
            + ("" if self.loss_ok else "  <-- MISMATCH"),
        ]
        frame = pd.DataFrame(
            {
                "kind": [r.kind for r in self.rows],
                "name": [r.name for r in self.rows],
                "shape": [str(tuple(r.shape)) for r in self.rows],
                "max_abs_err": [f"{r.max_abs_err:.2e}" for r in self.rows],
                "max_rel_err": [f"{r.max_rel_err:.2e}" for r in self.rows],
                "ok": ["ok" if r.ok else "FAIL" for r in self.rows],
                "worst": [
                    ""
                    if r.ok
                    else f"{list(r.index)}: manual {r.manual:.9g}, autograd {r.autograd:.9g}"
                    for r in self.rows
                ],
            }
        )
        if not self.ok:
            lines.append(
                "worst: "
                + "; ".join(
                    f"{r.kind} {r.name}{list(r.index)} manual {r.manual:.9g} vs autograd "
                    f"{r.autograd:.9g}"
                    for r in self.failures()[:3]
                )
            )
        else:
            frame = frame.drop(columns="worst")
        if len(frame):
            lines.append(frame.to_string(index=False))
        return "\n".join(lines)
