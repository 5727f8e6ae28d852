"""Products of tensors: matmul (torch's full rules) and its strict forms, addmm/baddbmm,
einsum, outer and bilinear, forward and backward side by side.

Both operands of a product may be computed tensors or model tensors (a parameter used as an
operand enters the network as a leaf, see manual_bp.ops.graph), so these layers take both as
inputs; Bilinear holds its weight and bias as a layer does, in torch's layout.

    matmul    z = a b                  δ_a = δ bᵀ,  δ_b = aᵀ δ        (batch dims unbroadcast)
    addmm     z = β c + α a b          δ_c = β δ,   δ_a = α δ bᵀ,  δ_b = α aᵀ δ
    einsum    z = Σ ∏ᵢ aᵢ             δ_aₖ = the same einsum with aₖ's place taken by δ
    outer     z = a bᵀ                 δ_a = δ b,   δ_b = δᵀ a
    bilinear  z = a₁ᵀ W a₂ + b          δ_a₁ = W a₂ δ, δ_a₂ = Wᵀ a₁ δ, ∂L/∂W = δ ⊗ a₁ ⊗ a₂
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import Array, Layer, Shape

# --- matmul ---------------------------------------------------------------------------


def _as_matrices(a_shape: Shape, b_shape: Shape) -> tuple[Shape, Shape, Shape]:
    """torch.matmul's promotion: a 1-d a is a row (1, n), a 1-d b a column (n, 1); returns
    both promoted shapes and the output shape with the promoted dims removed again."""
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if not a_shape or not b_shape:
        raise ValueError(
            f"expected both operands of matmul to be at least 1-d, got shapes {a_shape} and "
            f"{b_shape}"
        )
    a2 = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b2 = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    if a2[-1] != b2[-2]:
        raise ValueError(
            f"cannot multiply shapes {a_shape} and {b_shape}: inner sizes {a2[-1]} and {b2[-2]} "
            "differ"
        )
    try:
        batch = _broadcast_shape((a2[:-2], b2[:-2]))
    except ValueError:
        raise ValueError(
            f"cannot multiply shapes {a_shape} and {b_shape}: batch dims {a2[:-2]} and "
            f"{b2[:-2]} do not broadcast"
        ) from None
    rows = a_shape[-2:-1]  # () for a 1-d a
    cols = b_shape[-1:] if len(b_shape) > 1 else ()
    return a2, b2, (*batch, *rows, *cols)


class MatMul(Layer):
    """z = a @ b by torch.matmul's rules (1-d·1-d a dot product, 1-d operands promoted to a row
    or a column and the promoted dim removed, batch dims broadcast);
    δ_a = δ bᵀ,  δ_b = aᵀ δ, each summed back over the batch dims it was broadcast along."""

    n_inputs = 2

    def __repr__(self) -> str:
        return type(self).__name__

    def _ranks(self, a_shape: Shape, b_shape: Shape) -> None:
        """The strict forms (mm, bmm, mv, dot) refuse ranks matmul accepts."""

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        self._ranks(tuple(a_shape), tuple(b_shape))
        return _as_matrices(a_shape, b_shape)[2]

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
        self._ranks(a.shape, b.shape)
        a2, b2, out = _as_matrices(a.shape, b.shape)
        return np.matmul(a.reshape(a2), b.reshape(b2)).reshape(out), (a, b)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b = cache
        a2, b2, _ = _as_matrices(a.shape, b.shape)
        A, B = a.reshape(a2), b.reshape(b2)
        batch = _broadcast_shape((a2[:-2], b2[:-2]))
        D = delta.reshape(*batch, a2[-2], b2[-1])  # the promoted dims put back
        delta_a = unbroadcast(D @ np.swapaxes(B, -1, -2), a2)
        delta_b = unbroadcast(np.swapaxes(A, -1, -2) @ D, b2)
        return (delta_a.reshape(a.shape), delta_b.reshape(b.shape)), {}


def _require_ranks(op: str, a_shape: Shape, b_shape: Shape, ranks: tuple[int, int]) -> None:
    if (len(a_shape), len(b_shape)) != ranks:
        raise ValueError(
            f"{op} expects a {ranks[0]}-d and a {ranks[1]}-d operand, got shapes "
            f"{tuple(a_shape)} and {tuple(b_shape)}"
        )


class Mm(MatMul):
    """z = torch.mm(a, b), both 2-d;  δ as matmul's."""

    def _ranks(self, a_shape: Shape, b_shape: Shape) -> None:
        _require_ranks("mm", a_shape, b_shape, (2, 2))


class Bmm(MatMul):
    """z = torch.bmm(a, b), both 3-d with one batch size (no broadcasting);  δ as matmul's."""

    def _ranks(self, a_shape: Shape, b_shape: Shape) -> None:
        _require_ranks("bmm", a_shape, b_shape, (3, 3))
        if a_shape[0] != b_shape[0]:
            raise ValueError(
                f"bmm expects one batch size, got shapes {tuple(a_shape)} and {tuple(b_shape)}"
            )


class Mv(MatMul):
    """z = torch.mv(a, v): a 2-d, v 1-d;  δ as matmul's."""

    def _ranks(self, a_shape: Shape, b_shape: Shape) -> None:
        _require_ranks("mv", a_shape, b_shape, (2, 1))


class Dot(MatMul):
    """z = torch.dot(a, b), both 1-d of one length: a 0-d sum of products;  δ as matmul's."""

    def _ranks(self, a_shape: Shape, b_shape: Shape) -> None:
        _require_ranks("dot", a_shape, b_shape, (1, 1))


class AddMatMul(Layer):
    """z = β·c + α·(a @ b): addmm (a, b 2-d) or baddbmm (a, b 3-d), c broadcast to the
    product's shape;  δ_c = β·unbroadcast(δ),  δ_a = α·δ bᵀ,  δ_b = α·aᵀ δ.

    With β = 0, c is ignored, nan and inf included, as torch ignores it."""

    n_inputs = 3

    def __init__(self, beta: float = 1.0, alpha: float = 1.0, batched: bool = False) -> None:
        super().__init__()
        self.beta, self.alpha, self.batched = float(beta), float(alpha), bool(batched)
        if not (np.isfinite(self.beta) and np.isfinite(self.alpha)):
            raise ValueError(f"expected finite beta and alpha, got {beta} and {alpha}")
        self.product = Bmm() if self.batched else Mm()

    def __repr__(self) -> str:
        op = "baddbmm" if self.batched else "addmm"
        return f"AddMatMul({op}, beta={self.beta}, alpha={self.alpha})"

    def shape(self, c_shape: Shape, a_shape: Shape, b_shape: Shape) -> Shape:
        out = self.product.shape(a_shape, b_shape)
        if len(c_shape) > len(out) or any(
            m not in (1, n) for m, n in zip(c_shape[::-1], out[::-1], strict=False)
        ):
            raise ValueError(
                f"expected an input that broadcasts to the product's shape {out}, got "
                f"{tuple(c_shape)}"
            )
        return out

    def forward(self, c: Array, a: Array, b: Array) -> tuple[Array, Any]:
        self.shape(c.shape, a.shape, b.shape)
        ab, cache = self.product.forward(a, b)
        z = self.alpha * ab
        if self.beta != 0:  # NOTE: β = 0 ignores c, nan and inf included, as torch
            z = z + self.beta * c
        return z, (c.shape, cache)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, ...], dict[str, Array]]:
        c_shape, product_cache = cache
        (delta_a, delta_b), _ = self.product.backward(self.alpha * delta, product_cache)
        return (self.beta * unbroadcast(delta, c_shape), delta_a, delta_b), {}


class Outer(Layer):
    """z = torch.outer(a, b) = a bᵀ, both 1-d;  δ_a = δ b,  δ_b = δᵀ a."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        _require_ranks("outer", a_shape, b_shape, (1, 1))
        return (a_shape[0], b_shape[0])

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a.shape, b.shape)
        return np.multiply.outer(a, b), (a, b)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b = cache
        return (delta @ b, delta.T @ a), {}


# --- einsum ---------------------------------------------------------------------------


def _einsum(subscripts: list[str], out: str, *operands: Array) -> Array:
    """np.einsum over single-letter subscripts (optimize: pairwise contractions by BLAS)."""
    eq = ",".join(subscripts) + "->" + out
    return np.einsum(eq, *operands, optimize=len(operands) > 1)


class Einsum(Layer):
    """z = torch.einsum(equation, *a): products of the operands' entries summed over the
    letters absent from the output;  δ_aₖ = the einsum of the other operands and δ into aₖ's
    letters (spread back over a repeated letter's diagonal, broadcast along a letter aₖ alone
    sums).

    torch's rules: letters a-z and A-Z, one '...' per operand (its dims broadcast across
    operands, right-aligned, and are summed when the output omits it), size-1 dims of a letter
    broadcast, implicit output (no '->'): '...' then the letters used once, sorted.
    """

    def __init__(self, equation: str, n_inputs: int | None = None) -> None:
        super().__init__()
        self.equation = equation.replace(" ", "")
        lhs, arrow, rhs = self.equation.partition("->")
        self.inputs_ = lhs.split(",")
        self.n_inputs = len(self.inputs_)  # type: ignore[misc]  # set per instance
        if n_inputs is not None and n_inputs != self.n_inputs:
            raise ValueError(
                f"einsum {equation!r} names {self.n_inputs} operands, got {n_inputs} tensors"
            )
        for sub in [*self.inputs_, rhs]:
            if sub.count("...") > 1 or not set(sub.replace("...", "", 1)) <= set(
                string.ascii_letters
            ):
                raise ValueError(
                    f"expected an einsum equation of letters a-z, A-Z, one '...' per operand, "
                    f"',' and '->', got {equation!r}"
                )
        if arrow:
            letters = rhs.replace("...", "")
            if len(set(letters)) != len(letters):
                raise ValueError(f"expected output letters used once each, got {rhs!r}")
            unknown = set(letters) - set(lhs)
            if unknown:
                raise ValueError(
                    f"output letters {sorted(unknown)} appear in no operand of {equation!r}"
                )
            self.output_ = rhs
        else:  # implicit: '...' first, then the letters used exactly once, sorted
            once = sorted(c for c in set(lhs) - {",", "."} if lhs.count(c) == 1)
            self.output_ = ("..." if "..." in lhs else "") + "".join(once)

    def __repr__(self) -> str:
        return f"Einsum({self.equation!r})"

    def _plan(self, *in_shapes: Shape) -> tuple[list[str], str, dict[str, int], list[Shape]]:
        """Each operand's letters ('...' spelt with spare letters, size-1 broadcast letters
        dropped), the output's letters, every letter's size, and the operands' shapes with the
        dropped letters squeezed out."""
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"einsum {self.equation!r} expects {self.n_inputs} operands")
        spare = [c for c in string.ascii_letters if c not in self.equation]
        ranks = []
        for k, (sub, shape) in enumerate(zip(self.inputs_, in_shapes, strict=True)):
            named = len(sub.replace("...", ""))
            if len(shape) < named or "..." not in sub and len(shape) != named:
                raise ValueError(
                    f"einsum {self.equation!r}: operand {k} has {len(shape)} dims (shape "
                    f"{tuple(shape)}) for subscripts {sub!r}"
                )
            ranks.append(len(shape) - named)
        ellipsis = spare[: max(ranks, default=0)]
        subs = []
        for sub, e in zip(self.inputs_, ranks, strict=True):
            subs.append(sub.replace("...", "".join(ellipsis[len(ellipsis) - e :])))
        out = self.output_.replace("...", "".join(ellipsis))
        sizes: dict[str, int] = {}
        for k, (sub, shape) in enumerate(zip(subs, in_shapes, strict=True)):
            mine: dict[str, int] = {}
            for c, n in zip(sub, shape, strict=True):
                if mine.setdefault(c, n) != n:
                    raise ValueError(
                        f"einsum {self.equation!r}: letter {c!r} repeats in operand {k} over "
                        f"dims of sizes {mine[c]} and {n} (shape {tuple(shape)})"
                    )
                m = sizes.get(c)
                if m is None or m == 1:
                    sizes[c] = n
                elif n not in (1, m):
                    raise ValueError(
                        f"einsum {self.equation!r}: operand {k} gives its dim {c!r} size {n}, "
                        f"another operand size {m} (only size 1 broadcasts)"
                    )
        squeezed, kept = [], []
        for sub, shape in zip(subs, in_shapes, strict=True):
            keep = [c for c, n in zip(sub, shape, strict=True) if n == sizes[c]]
            kept.append("".join(keep))
            squeezed.append(tuple(sizes[c] for c in keep))
        return kept, out, sizes, squeezed

    def shape(self, *in_shapes: Shape) -> Shape:
        _, out, sizes, _ = self._plan(*in_shapes)
        return tuple(sizes[c] for c in out)

    def forward(self, *a: Array) -> tuple[Array, Any]:
        subs, out, sizes, squeezed = self._plan(*(x.shape for x in a))
        ops = [x.reshape(s) for x, s in zip(a, squeezed, strict=True)]  # broadcast dims dropped
        return _einsum(subs, out, *ops), (ops, [x.shape for x in a], subs, out, sizes)

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        ops, shapes, subs, out, sizes = cache
        deltas = []
        for k, sub in enumerate(subs):
            others = [s for j, s in enumerate(subs) if j != k] + [out]
            arrays = [x for j, x in enumerate(ops) if j != k] + [delta]
            letters = "".join(dict.fromkeys(sub))  # sub's letters, once each
            reach = "".join(c for c in letters if any(c in s for s in others))
            g = _einsum(others, reach, *arrays)
            # a letter only aₖ has is summed in aₖ alone: its δ is the same along it
            g = np.broadcast_to(
                g.reshape([sizes[c] if c in reach else 1 for c in letters]),
                [sizes[c] for c in letters],
            )
            if len(letters) < len(sub):  # a repeated letter: δ lives on the diagonal
                full = np.zeros([sizes[c] for c in sub])
                pos = {c: np.arange(sizes[c]) for c in letters}
                grid = np.ix_(*(pos[c] for c in letters))
                where = {c: grid[i] for i, c in enumerate(letters)}
                full[tuple(where[c] for c in sub)] = g
                g = full
            deltas.append(np.ascontiguousarray(g).reshape(shapes[k]))
        return deltas[0] if self.n_inputs == 1 else tuple(deltas), {}


# --- bilinear ---------------------------------------------------------------------------


class Bilinear(Layer):
    """z = a₁ᵀ W a₂ + b, W of shape (out, in1, in2): z[…, o] = Σᵢⱼ a₁[…, i] W[o, i, j] a₂[…, j];
    δ_a₁ = Σₒⱼ δ W a₂,  δ_a₂ = Σₒᵢ δ W a₁,  ∂L/∂W = Σ_batch δ ⊗ a₁ ⊗ a₂,  ∂L/∂b = Σ_batch δ."""

    n_inputs = 2
    reports_delta = True

    def __init__(self, weight: Array, bias: Array | None = None) -> None:
        super().__init__()
        self.params["weight"] = np.asarray(weight, dtype=np.float64)
        if self.params["weight"].ndim != 3:
            raise ValueError(
                f"expected a weight of shape (out, in1, in2), got {self.params['weight'].shape}"
            )
        if bias is not None:
            self.params["bias"] = np.asarray(bias, dtype=np.float64)
            if self.params["bias"].shape != self.params["weight"].shape[:1]:
                raise ValueError(
                    f"expected a bias of shape {self.params['weight'].shape[:1]}, got "
                    f"{self.params['bias'].shape}"
                )

    def __repr__(self) -> str:
        out, in1, in2 = self.params["weight"].shape
        return f"Bilinear({in1} × {in2} → {out}, bias={'bias' in self.params})"

    def shape(self, a1_shape: Shape, a2_shape: Shape) -> Shape:
        out, in1, in2 = self.params["weight"].shape
        a1_shape, a2_shape = tuple(a1_shape), tuple(a2_shape)
        if (
            not a1_shape
            or not a2_shape
            or a1_shape[-1] != in1
            or a2_shape[-1] != in2
            or a1_shape[:-1] != a2_shape[:-1]
        ):
            raise ValueError(
                f"expected inputs (*, {in1}) and (*, {in2}) with one batch shape, got "
                f"{a1_shape} and {a2_shape}"
            )
        return (*a1_shape[:-1], out)

    def forward(self, a1: Array, a2: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a1.shape, a2.shape)
        W = self.params["weight"]
        A1, A2 = a1.reshape(-1, W.shape[1]), a2.reshape(-1, W.shape[2])  # (N·…, in): a batch
        z = np.einsum("ni,oij,nj->no", A1, W, A2, optimize=True)
        if "bias" in self.params:
            z += self.params["bias"]
        return z.reshape(*a1.shape[:-1], W.shape[0]), (A1, A2)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        A1, A2 = cache
        W = self.params["weight"]
        D = delta.reshape(-1, W.shape[0])
        delta_a1 = np.einsum("no,oij,nj->ni", D, W, A2, optimize=True)
        delta_a2 = np.einsum("no,oij,ni->nj", D, W, A1, optimize=True)
        batch = delta.shape[:-1]
        return (
            delta_a1.reshape(*batch, W.shape[1]),
            delta_a2.reshape(*batch, W.shape[2]),
        ), self.param_grads(delta, cache)

    def param_grads(self, delta: Array, cache: tuple[Array, Array]) -> dict[str, Array]:
        A1, A2 = cache
        D = delta.reshape(-1, self.params["weight"].shape[0])
        grads = {"weight": np.einsum("no,ni,nj->oij", D, A1, A2, optimize=True)}
        if "bias" in self.params:
            grads["bias"] = D.sum(axis=0)
        return grads
