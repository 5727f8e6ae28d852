"""The comparison of gradients with a reference: one row per tensor, and a verdict.

A tensor is ok when

    max |manual − reference|  ≤  atol + rtol · scale

where `scale` is the magnitude the tensor is measured against: the largest |reference| entry
of the tensor itself, or, for a parameter's gradient, of every parameter gradient of the same
layer when that is larger. A gradient that is mathematically zero (a bias before a
training-mode BatchNorm) holds rounding noise on both sides; measured against itself that
noise is a 100% error, measured against the gradients its layer produces it is what it is,
noise. Every row prints the scale it was compared against.

A row's `status` is "ok", "tie" or "fail". "tie": the tensor differed, but only where a kink
or a tie was decided by rounding (a max-pool window of equal values, a ReLU input that is
0 on one side and 1e-17 on the other): replayed with torch's branch decisions at those
entries alone, the manual gradient matches (torch_ref.ties). A tie counts as ok.

What is printed is the same on every machine. The last bits of a float64 sum depend on the
CPU (AVX2 or AVX-512 kernels, BLAS's blocking, the thread count), so an error at the level of
rounding (max_rel_err below `PRECISION[dtype][0]`, 1e-13 for float64) prints as `<1e-13`
rather than as digits that change from one CPU to the next; the exact values are in `rows`
and `to_frame()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Row:
    """One compared tensor: a parameter's gradient, a layer's δ, or an input's gradient.

    `max_rel_err` is max|manual − reference| / scale, the quantity the verdict uses.
    `index`, `manual`, `autograd` locate the worst entry and give both values there.
    `note` says what a status other than "ok" rests on.
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
    scale: float = 0.0
    status: str = ""
    note: str = ""
    #: for a tie: the layers where torch's rounding chose the branch
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", "ok" if self.ok else "fail")


def compare(
    kind: str,
    name: str,
    manual: np.ndarray,
    reference: np.ndarray,
    rtol: float,
    atol: float,
    *,
    scale: float = 0.0,
) -> Row:
    """The row for one tensor, with the worst entry located; `scale` raises the magnitude the
    error is measured against (see the module docstring)."""
    manual, reference = np.asarray(manual, np.float64), np.asarray(reference, np.float64)
    if manual.shape != reference.shape:
        return Row(kind, name, manual.shape, np.inf, np.inf, False, (), np.nan, np.nan,
                   note=f"shapes differ: {manual.shape} and {reference.shape}")  # fmt: skip
    if manual.size == 0:
        return Row(kind, name, manual.shape, 0.0, 0.0, True, (), 0.0, 0.0)
    with np.errstate(invalid="ignore"):
        err = np.abs(manual - reference)
    # a NaN or Inf is the worst error unless both sides hold the same one at that entry
    same = (manual == reference) | (np.isnan(manual) & np.isnan(reference))
    err = np.where(same, 0.0, np.where(np.isnan(err), np.inf, err))
    flat = int(np.argmax(err))
    index = tuple(int(i) for i in np.unravel_index(flat, manual.shape))
    max_abs = float(err.flat[flat])
    scale = max(magnitude(reference), scale)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    ok = bool(max_abs <= atol + rtol * scale)
    return Row(kind, name, manual.shape, max_abs, max_rel, ok, index,
               float(manual.flat[flat]), float(reference.flat[flat]), scale)  # fmt: skip


def magnitude(a: np.ndarray) -> float:
    """The largest finite |entry| (0 for an empty or all-infinite tensor)."""
    a = np.asarray(a, np.float64)
    finite = np.abs(a[np.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


def as_tie(row: Row, entries: int, layers: list[str]) -> Row:
    """A failing row whose replay with torch's branch decisions matched."""
    where = ", ".join(layers)
    note = f"{entries} entr{'y' if entries == 1 else 'ies'} at kinks/ties in {where}"
    return replace(row, ok=True, status="tie", note=note, layers=tuple(layers))


#: by the dtype of the gradients under test: the relative error below which a difference is
#: rounding noise (a few hundred units in the last place of that dtype; printed `<1e-13`), and
#: the significant digits its values are printed with
PRECISION: dict[str, tuple[float, int]] = {
    "float64": (1e-13, 9),
    "float32": (1e-5, 6),
    "float16": (1e-2, 3),
    "bfloat16": (5e-2, 3),
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class GradientReport:
    """Gradients against a reference, both in float64, on the same data: by default the
    manual backprop against the user's own torch.autograd."""

    loss_manual: float | None
    loss_autograd: float | None
    rows: list[Row] = field(default_factory=list)
    rtol: float = 1e-7
    atol: float = 1e-10
    #: what the two sides are called in the printout ("manual"/"autograd", "yours"/"oracle")
    labels: tuple[str, str] = ("manual", "autograd")
    #: one sentence per finding that is not in the rows (a custom backward that differs)
    notes: list[str] = field(default_factory=list)
    #: where rtol and atol came from, in words ("the defaults for float32 gradients")
    tolerances: str = ""
    #: what makes the report fail beyond its rows (a gradient missing from yours)
    errors: list[str] = field(default_factory=list)
    #: the dtype of the gradients under test, which sets what is rounding noise (`PRECISION`)
    dtype: str = "float64"

    @property
    def noise(self) -> float:
        """The relative error below which a difference is rounding noise."""
        return PRECISION.get(self.dtype, PRECISION["float64"])[0]

    def _value(self, x: float) -> str:
        return f"{x:.{PRECISION.get(self.dtype, PRECISION['float64'])[1]}g}"

    def _rel_err(self, row: Row) -> str:
        floor = f"{self.noise:.0e}".replace("e-0", "e-")  # 1e-05 → 1e-5
        return f"<{floor}" if row.max_rel_err < self.noise else f"{row.max_rel_err:.2e}"

    @property
    def loss_ok(self) -> bool:
        if self.loss_manual is None or self.loss_autograd is None:
            return True
        return bool(
            abs(self.loss_manual - self.loss_autograd)
            <= self.atol + self.rtol * abs(self.loss_autograd)
        )

    @property
    def ok(self) -> bool:
        return self.loss_ok and not self.errors and all(r.ok for r in self.rows)

    @property
    def ties(self) -> list[Row]:
        return [r for r in self.rows if r.status == "tie"]

    def failures(self) -> list[Row]:
        """The failing rows, worst relative error first."""
        return sorted((r for r in self.rows if not r.ok), key=lambda r: -r.max_rel_err)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd  # NOTE: on first use only; pandas costs ~0.25 s to import

        columns = [f.name for f in Row.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(r) for r in self.rows], columns=columns)

    def summary(self) -> str:
        """The first line: the verdict, the count, the tolerances."""
        verdict = "OK" if self.ok else "MISMATCH"
        source = f": {self.tolerances}" if self.tolerances else ""
        mine, theirs = self.labels
        sides = (
            ""
            if self.labels == ("manual", "autograd")
            else (f"; {mine} against the {theirs}'s ∂L/∂θ")
        )
        return (
            f"GradientReport: {verdict} ({_plural(len(self.rows), 'tensor')}, "
            f"rtol={self.rtol:g}, atol={self.atol:g}{source}){sides}"
        )

    def __str__(self) -> str:
        mine, theirs = self.labels
        lines = [self.summary(), *self.errors]
        if self.loss_manual is not None and self.loss_autograd is not None:
            lines.append(
                f"loss: {mine} {self.loss_manual:.12g}, {theirs} {self.loss_autograd:.12g}"
                + ("" if self.loss_ok else "  <-- MISMATCH")
            )
        if self.ties:
            layers = sorted({n for r in self.ties for n in r.layers})
            lines.append(
                f"{_plural(len(self.ties), 'tensor')} differ only at kinks or ties that rounding "
                f"decided (in {', '.join(layers)}); replayed with torch's branch decisions "
                "there, they match (status 'tie')"
            )
        lines.extend(self.notes)
        if self.failures():
            lines.append(
                "worst: "
                + "; ".join(
                    f"{r.kind} {r.name}{list(r.index)} {mine} {self._value(r.manual)} vs "
                    f"{theirs} {self._value(r.autograd)}"
                    for r in self.failures()[:3]
                )
            )
        if self.rows:
            lines.append(self._table())
        return "\n".join(lines)

    def _table(self) -> str:
        mine, theirs = self.labels
        columns = {
            "kind": [r.kind for r in self.rows],
            "name": [r.name for r in self.rows],
            "shape": [str(tuple(r.shape)) for r in self.rows],
            "scale": [f"{r.scale:.2e}" for r in self.rows],
            "max_rel_err": [self._rel_err(r) for r in self.rows],
            "status": [r.status if r.ok else "FAIL" for r in self.rows],
            "worst": [
                ""
                if r.status == "ok"
                else r.note
                if r.status == "tie"
                else f"{list(r.index)}: {mine} {self._value(r.manual)}, {theirs} "
                f"{self._value(r.autograd)}" + (f" ({r.note})" if r.note else "")
                for r in self.rows
            ],
        }
        if all(r.status == "ok" for r in self.rows):
            del columns["worst"]
        return table(columns)


def table(columns: dict[str, list[str]]) -> str:
    """Columns of text, right-aligned under their headers, one space apart."""
    widths = [max(len(h), *map(len, cells)) for h, cells in columns.items()]
    rows = [list(columns), *zip(*columns.values(), strict=True)]
    return "\n".join(
        " ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
