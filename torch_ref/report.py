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

One vocabulary: the code under test is "yours" (torch.autograd through your model, or the
gradients you hand to `check_grads`), the explicit float64 backprop is "the oracle". The
fields keep their names (`manual` is the oracle's value, `autograd` yours, in a comparison
of your model; `labels` says which side is which), the printout says yours and oracle. It
fits in 100 columns: the table holds one short row per tensor, and the worst entries, the
ties and the findings follow below it.

What is printed is the same on every machine. The last bits of a float64 sum depend on the
CPU (AVX2 or AVX-512 kernels, BLAS's blocking, the thread count), so an error at the level of
rounding (max_rel_err below `PRECISION[dtype][0]`, 1e-13 for float64) prints as `<1e-13`
rather than as digits that change from one CPU to the next; the exact values are in `rows`
and `to_frame()`.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from torch_ref.tolerances import ATOL, RTOL

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


#: the width of the printout; longer names are shortened in the middle in the table (in
#: full below it), longer sentences wrapped
WIDTH = 100
#: how many failing tensors the lines below the table name
SHOWN = 10


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class GradientReport:
    """Your gradients against the oracle's, both in float64, on the same data: by default
    torch.autograd through your model (yours) against the explicit backprop (oracle)."""

    loss_manual: float | None
    loss_autograd: float | None
    rows: list[Row] = field(default_factory=list)
    rtol: float = RTOL
    atol: float = ATOL
    #: the names of the two sides, (that of `Row.manual`, that of `Row.autograd`): the
    #: oracle's manual backprop against your autograd, or ("yours", "oracle") in check_grads
    labels: tuple[str, str] = ("oracle", "yours")
    #: one sentence per finding that is not in the rows (a custom backward that differs)
    notes: list[str] = field(default_factory=list)
    #: where rtol and atol came from, in words ("the defaults for float32 gradients")
    tolerances: str = ""
    #: what makes the report fail beyond its rows (a gradient missing from yours)
    errors: list[str] = field(default_factory=list)
    #: the dtype of the gradients under test, which sets what is rounding noise (`PRECISION`)
    dtype: str = "float64"
    #: what "yours" is, for the headline of a failure
    yours: str = "your model's gradients (torch.autograd)"

    @property
    def noise(self) -> float:
        """The relative error below which a difference is rounding noise."""
        return PRECISION.get(self.dtype, PRECISION["float64"])[0]

    def _value(self, x: float) -> str:
        return f"{x:.{PRECISION.get(self.dtype, PRECISION['float64'])[1]}g}"

    def _rel_err(self, row: Row) -> str:
        floor = f"{self.noise:.0e}".replace("e-0", "e-")  # 1e-05 → 1e-5
        return f"<{floor}" if row.max_rel_err < self.noise else f"{row.max_rel_err:.2e}"

    def _sides(self, manual: float, autograd: float, digits: str = "") -> str:
        """ "yours 0.25, oracle 0.5": both sides of one value, yours first."""
        fmt = (lambda x: f"{x:{digits}}") if digits else self._value
        pairs = [(self.labels[0], manual), (self.labels[1], autograd)]
        if pairs[1][0] == "yours":
            pairs.reverse()
        return ", ".join(f"{name} {fmt(x)}" for name, x in pairs)

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
        return (
            f"GradientReport: {verdict} ({_plural(len(self.rows), 'tensor')}, "
            f"rtol={self.rtol:g}, atol={self.atol:g}{source})"
        )

    def failure_message(self) -> str:
        """The message of the AssertionError a failed check raises: a headline that says
        whose gradients differ from whose, then the report."""
        return f"{self.yours} differ from the oracle's (explicit backprop in float64)\n{self}"

    def __str__(self) -> str:
        lines = [self.summary(), *self.errors]
        if self.loss_manual is not None and self.loss_autograd is not None:
            lines.append(
                f"loss: {self._sides(self.loss_manual, self.loss_autograd, '.12g')}"
                + ("" if self.loss_ok else "  <-- MISMATCH")
            )
        text = "\n".join(_wrap(line) for line in lines)
        if self.rows:
            text += "\n" + self._table()
        below = [*self.notes, *self._worst(), *self._tie_lines()]
        return "\n".join([text, *(_wrap(line, "    ") for line in below)])

    def _worst(self) -> list[str]:
        failing = self.failures()
        if not failing:
            return []
        lines = ["worst entry of each failing tensor:"]
        for r in failing[:SHOWN]:
            where = f"{r.kind} {r.name}{list(r.index)}"
            note = f" ({r.note})" if r.note else ""
            lines.append(f"  {where}: {self._sides(r.manual, r.autograd)}{note}")
        if len(failing) > SHOWN:
            lines.append(f"  ... and {_plural(len(failing) - SHOWN, 'more tensor')}")
        return lines

    def _tie_lines(self) -> list[str]:
        if not self.ties:
            return []
        layers = sorted({n for r in self.ties for n in r.layers})
        return [
            f"{_plural(len(self.ties), 'tensor')} differ only at kinks or ties that rounding "
            f"decided (in {', '.join(layers)}); replayed with torch's branch decisions there, "
            "they match (status 'tie'):",
            *(f"  {r.kind} {r.name}: {r.note}" for r in self.ties),
        ]

    def _table(self) -> str:
        columns = {
            "kind": [r.kind for r in self.rows],
            "name": [r.name for r in self.rows],
            "shape": [str(tuple(r.shape)) for r in self.rows],
            "scale": [f"{r.scale:.2e}" for r in self.rows],
            "max_rel_err": [self._rel_err(r) for r in self.rows],
            "status": [r.status if r.ok else "FAIL" for r in self.rows],
        }
        others = len(table({k: v for k, v in columns.items() if k != "name"}).splitlines()[0])
        room = max(WIDTH - others - 1, 16)
        columns["name"] = [_shorten(name, room) for name in columns["name"]]
        return table(columns)


def table(columns: dict[str, list[str]]) -> str:
    """Columns of text, right-aligned under their headers, one space apart."""
    widths = [max(len(h), *map(len, cells)) for h, cells in columns.items()]
    rows = [list(columns), *zip(*columns.values(), strict=True)]
    return "\n".join(
        " ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _shorten(name: str, width: int) -> str:
    """`name` in at most `width` characters: its start and its end, "…" between."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[: width - 1 - tail] + "…" + name[len(name) - tail :]


def _wrap(line: str, indent: str = "  ") -> str:
    """A sentence in lines of at most WIDTH characters (a word longer than that stays)."""
    if len(line) <= WIDTH:
        return line
    lead = line[: len(line) - len(line.lstrip())]
    return textwrap.fill(
        line,
        WIDTH,
        subsequent_indent=lead + indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
