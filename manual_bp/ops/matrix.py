"""Matrix functions and factorizations (torch.linalg), forward by NumPy/SciPy, the reverse-mode
formula written out beside it (Giles 2008, "An extended collection of matrix derivative
results for forward and reverse mode AD"; Seeger et al. 2017 and Murray 2016 for the
factorizations). Every layer works on a batch of matrices (leading dims), as torch's; Ā is
∂L/∂A, ·ᵀ the transpose of the last two dims.

    Inv            Z = A⁻¹                   Ā = −Zᵀ Z̄ Zᵀ
    Solve          X = A⁻¹ B                 B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ
    Det            d = det A                 Ā = d̄ · cof(A)   (cof(A) = d A⁻ᵀ, by the SVD)
    SlogDet        (sign, log|det A|)        Ā = l̄ A⁻ᵀ
    Cholesky       A = L Lᵀ                  Ā = ½ (S + Sᵀ), S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹
    QR             A = Q R                   (Q Φᵤ(M) + Q̄) R⁻ᵀ,  M = R̄ Rᵀ − Qᵀ Q̄
    SVD            A = U diag(s) Vᵀ          Ā = U [(skew(UᵀŪ) s + s skew(VᵀV̄))/E + diag(s̄)] Vᵀ…
    Eigh           A = V diag(λ) Vᵀ          Ā = V [skew(VᵀV̄)/2 / E + diag(λ̄)] Vᵀ
    Pinv           Z = A⁺                    Ā = −Zᵀ Z̄ Zᵀ + (I − A Z) Z̄ᵀ Z Zᵀ + Zᵀ Z Z̄ᵀ (I − Z A)
    MatrixExp      Z = e^A                   Ā = L(Aᵀ, Z̄), the Fréchet derivative at Aᵀ
    MatrixNorm     ‖A‖ (fro, nuc, ±1, ±2, ±inf)

Repeated singular values or eigenvalues make the singular vectors or eigenvectors
non-unique; their gradient is then inf or NaN in torch too (its docs warn of it): those
layers refuse a loss that reaches the vectors of a (nearly) degenerate spectrum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _axis


def _T(a: Array) -> Array:
    return np.swapaxes(a, -1, -2)


def _square(shape: Shape, what: str) -> None:
    shape = tuple(shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(
            f"{what}: expected a batch of square matrices (*, n, n), got shape {shape}"
        )


def _matrices(shape: Shape, what: str) -> None:
    if len(shape) < 2:
        raise ValueError(
            f"{what}: expected a batch of matrices (*, m, n), got shape {tuple(shape)}"
        )


def _diag(v: Array) -> Array:
    """A batch of vectors (*, k) as diagonal matrices (*, k, k)."""
    out = np.zeros((*v.shape, v.shape[-1]))
    k = np.arange(v.shape[-1])
    out[..., k, k] = v
    return out


def _degenerate(values: Array, what: str) -> None:
    """Refuse a (nearly) repeated value: the vectors are not unique there."""
    scale = float(np.max(np.abs(values), initial=0.0))
    gaps = np.abs(values[..., :, None] - values[..., None, :])
    k = values.shape[-1]
    gaps = np.where(np.eye(k, dtype=bool), np.inf, gaps)
    if np.any(gaps <= TIE_RTOL * max(scale, 1.0)):
        kind = "singular values" if what == "svd" else "eigenvalues"
        raise ValueError(
            f"{what}: the input has (nearly) repeated {kind} (gap {float(np.min(gaps)):.3g}); "
            "the vectors are not unique there and their gradient is not defined (torch's is "
            "inf or NaN)"
        )


# --- inverse, solve, determinants --------------------------------------------------------


class Inv(Layer):
    """Z = A⁻¹;  Ā = −Zᵀ Z̄ Zᵀ."""

    def shape(self, in_shape: Shape) -> Shape:
        _square(in_shape, "inv")
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        z = np.linalg.inv(a)
        return z, z

    def backward(self, delta: Array, z: Array) -> tuple[Array, dict]:
        zt = _T(z)
        return -(zt @ delta @ zt), {}


def _solve_shapes(a_shape: Shape, b_shape: Shape) -> tuple[bool, Shape]:
    """torch.linalg.solve's rule: B a batch of vectors when B is 1-d or B.shape = A.shape[:-1]
    (so B (*, n) with A (*, n, n)); the output shape."""
    _square(a_shape, "solve")
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    n = a_shape[-1]
    vector = len(b_shape) == 1 or (len(b_shape) == len(a_shape) - 1 and b_shape == a_shape[:-1])
    if vector:
        if b_shape[-1] != n:
            raise ValueError(
                f"solve: expected B of size {n} for A of shape {a_shape}, got {b_shape}"
            )
        batch = _broadcast_shape((a_shape[:-2], b_shape[:-1]))
        return True, (*batch, n)
    if len(b_shape) < 2 or b_shape[-2] != n:
        raise ValueError(f"solve: expected B of shape (*, {n}, k) or (*, {n}), got {b_shape}")
    batch = _broadcast_shape((a_shape[:-2], b_shape[:-2]))
    return False, (*batch, n, b_shape[-1])


class Solve(Layer):
    """X = A⁻¹ B (B a batch of vectors or matrices, batch dims broadcast);
    B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ (linalg_solve_backward), each summed over its broadcast dims."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _solve_shapes(a_shape, b_shape)[1]

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        vector, out = _solve_shapes(a.shape, b.shape)
        B = b[..., None] if vector else b
        batch = out[:-1] if vector else out[:-2]
        A = np.broadcast_to(a, (*batch, *a.shape[-2:]))
        B = np.broadcast_to(B, (*batch, *B.shape[-2:]))
        X = np.linalg.solve(A, B)
        return (X[..., 0] if vector else X), (A, X, vector, a.shape, b.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        A, X, vector, a_shape, b_shape = cache
        gX = delta[..., None] if vector else delta
        gB = np.linalg.solve(_T(A), gX)
        gA = -(gB @ _T(X))
        gB = gB[..., 0] if vector else gB
        return (unbroadcast(gA, a_shape), unbroadcast(gB, b_shape)), {}


def _cofactor(a: Array) -> Array:
    """cof(A) = det(A) A⁻ᵀ, formed from the SVD A = U diag(s) Vᵀ as
    det(U) det(V) U diag(Π_{j≠i} s_j) Vᵀ: defined for a singular A too (as torch's det backward)."""
    u, s, vt = np.linalg.svd(a)
    k = s.shape[-1]
    others = np.stack([np.prod(np.delete(s, i, axis=-1), axis=-1) for i in range(k)], -1)
    sign = np.linalg.det(u) * np.linalg.det(vt)
    return sign[..., None, None] * ((u * others[..., None, :]) @ vt)


class Det(Layer):
    """d = det A;  Ā = d̄ · cof(A) = d̄ d A⁻ᵀ (the cofactor from the SVD: a singular A too)."""

    def shape(self, in_shape: Shape) -> Shape:
        _square(in_shape, "det")
        return tuple(in_shape[:-2])

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        return np.linalg.det(a), a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict]:
        return np.asarray(delta)[..., None, None] * _cofactor(a), {}


class SlogDet(Layer):
    """(sign, log|det A|);  Ā = l̄ A⁻ᵀ (the sign carries no gradient). As `logdet`: z = log det A
    (NaN for det < 0, −inf for det = 0, as torch's), Ā = z̄ A⁻ᵀ."""

    def __init__(self, logdet: bool = False) -> None:
        super().__init__()
        self.logdet = bool(logdet)
        self.n_outputs = 1 if self.logdet else 2  # type: ignore[misc]

    def __repr__(self) -> str:
        return "LogDet" if self.logdet else "SlogDet"

    def shape(self, in_shape: Shape) -> Any:
        _square(in_shape, "slogdet")
        out = tuple(in_shape[:-2])
        return out if self.logdet else (out, out)

    def forward(self, a: Array) -> tuple[Any, Array]:
        self.shape(a.shape)
        sign, logabs = np.linalg.slogdet(a)
        if self.logdet:
            with np.errstate(invalid="ignore"):
                return np.where(sign < 0, np.nan, logabs), a
        return (sign, logabs), a

    def backward(self, delta: Any, a: Array) -> tuple[Array, dict]:
        g = delta if self.logdet else delta[1]
        if g is None:
            return np.zeros(a.shape), {}
        return np.asarray(g)[..., None, None] * _T(np.linalg.inv(a)), {}


# --- factorizations ---------------------------------------------------------------------


def _phi(x: Array) -> Array:
    """The lower triangle with the diagonal halved."""
    out = np.tril(x)
    k = np.arange(x.shape[-1])
    out[..., k, k] *= 0.5
    return out


class Cholesky(Layer):
    """A = L Lᵀ (upper: A = Uᵀ U, U = Lᵀ);  Ā = ½ (S + Sᵀ), S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹, Φ the lower
    triangle with the diagonal halved (Murray 2016; torch's cholesky_backward). A must be
    positive definite (only its lower triangle is read)."""

    def __init__(self, upper: bool = False) -> None:
        super().__init__()
        self.upper = bool(upper)

    def __repr__(self) -> str:
        return f"Cholesky(upper={self.upper})"

    def shape(self, in_shape: Shape) -> Shape:
        _square(in_shape, "cholesky")
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        try:
            L = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            raise ValueError(
                "cholesky: expected a positive-definite input (torch refuses it too)"
            ) from None
        return (_T(L) if self.upper else L), L

    def backward(self, delta: Array, L: Array) -> tuple[Array, dict]:
        gL = _T(delta) if self.upper else delta
        P = _phi(_T(L) @ gL)  # Φ(Lᵀ L̄)
        Y = np.linalg.solve(_T(L), P)  # L⁻ᵀ Φ
        S = _T(np.linalg.solve(_T(L), _T(Y)))  # L⁻ᵀ Φ L⁻¹
        return 0.5 * (S + _T(S)), {}


class QR(Layer):
    """A = Q R (mode 'reduced', or 'complete' with m ≤ n);  with M = R̄ Rᵀ − Qᵀ Q̄:
    m ≥ n:  Ā = (Q copyutl(M) + Q̄) R⁻ᵀ  (copyutl: the upper triangle mirrored below);
    m < n:  Ā = [Q tril(X − Xᵀ) R₁⁻ᵀ, 0] + Q R̄,  X = −M, R₁ the first m columns of R
    (torch's linalg_qr_backward)."""

    n_outputs = 2

    def __init__(self, mode: str = "reduced") -> None:
        super().__init__()
        if mode not in ("reduced", "complete"):
            raise ValueError(
                f"qr: mode {mode!r} is not differentiable; expected 'reduced' or 'complete'"
            )
        self.mode = mode

    def __repr__(self) -> str:
        return f"QR(mode={self.mode!r})"

    def shape(self, in_shape: Shape) -> Any:  # type: ignore[override]
        _matrices(in_shape, "qr")
        *batch, m, n = in_shape
        if self.mode == "complete" and m > n:
            raise ValueError(
                "qr: the QR decomposition is not differentiable when mode='complete' and "
                f"nrows > ncols (got {m} × {n}, as torch refuses it)"
            )
        k = min(m, n)
        return (*batch, m, k), (*batch, k, n)

    def forward(self, a: Array) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        self.shape(a.shape)
        q, r = np.linalg.qr(a, mode="reduced")
        return (q, r), (q, r)

    def backward(self, delta: Any, cache: tuple[Array, Array]) -> tuple[Array, dict]:
        Q, R = cache
        gQ, gR = delta
        m, n = Q.shape[-2], R.shape[-1]
        M = np.zeros(R.shape[:-2] + (Q.shape[-1], Q.shape[-1]))
        if gR is not None:
            M = M + gR @ _T(R)
        if gQ is not None:
            M = M - _T(Q) @ gQ
        if m >= n:
            sym = np.triu(M) + _T(np.triu(M, 1))
            gA = Q @ sym + (gQ if gQ is not None else 0.0)
            return _T(np.linalg.solve(R, _T(gA))), {}  # gA R⁻ᵀ = (R⁻¹ gAᵀ)ᵀ
        X = -M
        skew = np.tril(X - _T(X))
        gA = Q @ skew
        gA = _T(np.linalg.solve(R[..., :m], _T(gA)))
        gA = np.concatenate([gA, np.zeros((*gA.shape[:-1], n - m))], axis=-1)
        if gR is not None:
            gA = gA + Q @ gR
        return gA, {}


class SVD(Layer):
    """A = U diag(s) Vᵀ (k = min(m, n); full_matrices adds columns of U / rows of Vᵀ that carry
    no gradient, as torch narrows them away);  with E_ij = s_j² − s_i² (1 on the diagonal),
    Ā = U [(skew(UᵀŪ) s_j + s_i skew(VᵀV̄)) / E + diag(s̄)] Vᵀ, plus (I − U Uᵀ) Ū diag(1/s) Vᵀ
    when m > n, or U diag(1/s) V̄ᵀ (I − V Vᵀ) when m < n (torch's svd_backward).
    `values_only`: svdvals, Ā = U diag(s̄) Vᵀ."""

    def __init__(self, full_matrices: bool = True, values_only: bool = False) -> None:
        super().__init__()
        self.full_matrices, self.values_only = bool(full_matrices), bool(values_only)
        self.n_outputs = 1 if self.values_only else 3  # type: ignore[misc]

    def __repr__(self) -> str:
        return "SVDVals" if self.values_only else f"SVD(full_matrices={self.full_matrices})"

    def shape(self, in_shape: Shape) -> Any:
        _matrices(in_shape, "svd")
        *batch, m, n = in_shape
        k = min(m, n)
        if self.values_only:
            return (*batch, k)
        u, v = (m, n) if self.full_matrices else (k, k)
        return (*batch, m, u), (*batch, k), (*batch, v, n)

    def forward(self, a: Array) -> tuple[Any, Any]:
        self.shape(a.shape)
        U, s, Vh = np.linalg.svd(a, full_matrices=self.full_matrices)
        if self.values_only:
            return s, (U, s, Vh)
        return (U, s, Vh), (U, s, Vh)

    def backward(self, delta: Any, cache: Any) -> tuple[Array, dict]:
        U, s, Vh = cache
        k = s.shape[-1]
        U, Vh = U[..., :k], Vh[..., :k, :]
        if self.values_only:
            gU, gs, gVh = None, delta, None
        else:
            gU, gs, gVh = delta
            gU = None if gU is None else gU[..., :k]
            gVh = None if gVh is None else gVh[..., :k, :]
        m, n = U.shape[-2], Vh.shape[-1]
        if gU is None and gVh is None:
            g = np.zeros(s.shape) if gs is None else gs
            return (U * g[..., None, :]) @ Vh, {}
        _degenerate(s, "svd")
        s2 = s * s
        E = s2[..., None, :] - s2[..., :, None] + np.eye(k)
        UhgU = None if gU is None else (lambda x: x - _T(x))(_T(U) @ gU)
        VhgV = None if gVh is None else (lambda x: x - _T(x))(Vh @ _T(gVh))
        if UhgU is not None and VhgV is not None:
            gA = (UhgU * s[..., None, :] + s[..., :, None] * VhgV) / E
        elif UhgU is not None:
            gA = (UhgU / E) * s[..., None, :]
        else:
            gA = s[..., :, None] * (VhgV / E)
        if gs is not None:
            gA = gA + _diag(gs)
        if m > n and gU is not None:
            gA = U @ gA
            gUSinv = gU / s[..., None, :]
            gA = gA + gUSinv - U @ (_T(U) @ gUSinv)
            return gA @ Vh, {}
        if m < n and gVh is not None:
            gA = gA @ Vh
            SinvgVh = gVh / s[..., :, None]
            gA = gA + SinvgVh - (SinvgVh @ _T(Vh)) @ Vh
            return U @ gA, {}
        return U @ gA @ Vh, {}


class Eigh(Layer):
    """A = V diag(λ) Vᵀ for a symmetric A (its lower triangle read, UPLO='L', or the upper);
    Ā = V [ (skew(VᵀV̄)/2) / E + diag(λ̄) ] Vᵀ, E_ij = λ_j − λ_i (1 on the diagonal): torch's
    linalg_eig_backward for Hermitian input. `values_only`: eigvalsh, Ā = V diag(λ̄) Vᵀ."""

    def __init__(self, uplo: str = "L", values_only: bool = False) -> None:
        super().__init__()
        if uplo not in ("L", "U"):
            raise ValueError(f"eigh: expected UPLO 'L' or 'U', got {uplo!r}")
        self.uplo, self.values_only = uplo, bool(values_only)
        self.n_outputs = 1 if self.values_only else 2  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{'EigvalsH' if self.values_only else 'Eigh'}(UPLO={self.uplo!r})"

    def shape(self, in_shape: Shape) -> Any:
        _square(in_shape, "eigh")
        vals = tuple(in_shape[:-1])
        return vals if self.values_only else (vals, tuple(in_shape))

    def forward(self, a: Array) -> tuple[Any, Any]:
        self.shape(a.shape)
        lam, V = np.linalg.eigh(a, UPLO=self.uplo)
        return (lam if self.values_only else (lam, V)), (lam, V)

    def backward(self, delta: Any, cache: Any) -> tuple[Array, dict]:
        lam, V = cache
        gL, gV = (delta, None) if self.values_only else delta
        if gV is None:
            g = np.zeros(lam.shape) if gL is None else gL
            return (V * g[..., None, :]) @ _T(V), {}
        _degenerate(lam, "eigh")
        VhgV = _T(V) @ gV
        VhgV = 0.5 * (VhgV - _T(VhgV))
        k = lam.shape[-1]
        E = lam[..., None, :] - lam[..., :, None] + np.eye(k)
        gA = VhgV / E
        if gL is not None:
            idx = np.arange(k)
            gA[..., idx, idx] = gL
        return V @ gA @ _T(V), {}


class Pinv(Layer):
    """Z = A⁺ (singular values below max(atol, rtol·σ_max) dropped; rtol default max(m, n)·eps,
    as torch's);  Ā = −Zᵀ Z̄ Zᵀ + (I − A Z) Z̄ᵀ Z Zᵀ + Zᵀ Z Z̄ᵀ (I − Z A) (Golub & Pereyra 1973;
    the rank held fixed)."""

    def __init__(self, atol: float | None = None, rtol: float | None = None) -> None:
        super().__init__()
        self.atol, self.rtol = atol, rtol

    def __repr__(self) -> str:
        return f"Pinv(atol={self.atol}, rtol={self.rtol})"

    def shape(self, in_shape: Shape) -> Shape:
        _matrices(in_shape, "pinv")
        return (*in_shape[:-2], in_shape[-1], in_shape[-2])

    def forward(self, a: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a.shape)
        U, s, Vh = np.linalg.svd(a, full_matrices=False)
        m, n = a.shape[-2:]
        rtol = self.rtol
        if rtol is None:
            rtol = (
                0.0
                if self.atol is not None and self.atol > 0
                else max(m, n) * np.finfo(np.float64).eps
            )
        cut = np.maximum(self.atol or 0.0, rtol * np.max(s, axis=-1, initial=0.0))[..., None]
        with np.errstate(divide="ignore"):
            inv_s = np.where(s > cut, 1.0 / s, 0.0)
        z = (_T(Vh) * inv_s[..., None, :]) @ _T(U)
        return z, (a, z)

    def backward(self, delta: Array, cache: tuple[Array, Array]) -> tuple[Array, dict]:
        A, Z = cache
        Zt, Gt = _T(Z), _T(delta)
        m, n = A.shape[-2:]
        gA = -(Zt @ delta @ Zt)
        gA = gA + (np.eye(m) - A @ Z) @ Gt @ (Z @ Zt)
        gA = gA + (Zt @ Z) @ Gt @ (np.eye(n) - Z @ A)
        return gA, {}


class MatrixExp(Layer):
    """Z = e^A (scipy's Padé expm);  Ā = L(Aᵀ, Z̄), the Fréchet derivative of exp at Aᵀ in the
    direction Z̄, read off the upper-right block of exp([[Aᵀ, Z̄], [0, Aᵀ]]) (Higham; torch's
    backward_analytic_function_of_a_matrix)."""

    def shape(self, in_shape: Shape) -> Shape:
        _square(in_shape, "matrix_exp")
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        return scipy.linalg.expm(a), a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict]:
        n = a.shape[-1]
        block = np.zeros((*a.shape[:-2], 2 * n, 2 * n))
        block[..., :n, :n] = _T(a)
        block[..., n:, n:] = _T(a)
        block[..., :n, n:] = delta
        return scipy.linalg.expm(block)[..., :n, n:], {}


# --- matrix norms ---------------------------------------------------------------------------

MATRIX_ORDS = ("fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf)


class MatrixNorm(Layer):
    """‖A‖ over dims (d1, d2) (keepdim keeps them as size 1):
    fro: √Σ a²,  Ā = z̄ A / ‖A‖;   nuc: Σ σ,  Ā = z̄ U Vᵀ;   ±2: σ_max / σ_min,  Ā = z̄ u vᵀ;
    ±1: max / min over columns of Σ|a|,  Ā = z̄ sgn(A) on the chosen column; ±inf: the same over
    rows. A tied maximum (two columns, or two singular values) shares z̄ evenly (reported as
    a tie)."""

    def __init__(
        self, ord: Any = "fro", dim: tuple[int, int] = (-2, -1), keepdim: bool = False
    ) -> None:
        super().__init__()
        if ord not in MATRIX_ORDS:
            raise ValueError(f"matrix_norm: expected ord in {MATRIX_ORDS}, got {ord!r}")
        self.ord, self.dim, self.keepdim = ord, tuple(int(d) for d in dim), bool(keepdim)

    def __repr__(self) -> str:
        return f"MatrixNorm(ord={self.ord!r}, dim={self.dim}, keepdim={self.keepdim})"

    def _dims(self, in_shape: Shape) -> tuple[int, int]:
        _matrices(in_shape, "matrix_norm")
        d = tuple(_axis(k, len(in_shape), "dim", in_shape) for k in self.dim)
        if d[0] == d[1]:
            raise ValueError(f"matrix_norm: expected two different dims, got {self.dim}")
        return d  # type: ignore[return-value]

    def shape(self, in_shape: Shape) -> Shape:
        d = self._dims(in_shape)
        if self.keepdim:
            return tuple(1 if k in d else n for k, n in enumerate(in_shape))
        return tuple(n for k, n in enumerate(in_shape) if k not in d)

    def _moved(self, a: Array) -> Array:
        return np.moveaxis(a, self._dims(a.shape), (-2, -1))

    def _back(self, g: Array, a_shape: Shape) -> Array:
        """A gradient on the moved (…, m, n) layout, put back in a's layout."""
        return np.moveaxis(g, (-2, -1), self._dims(a_shape))

    def forward(self, a: Array) -> tuple[Array, Any]:
        A = self._moved(a)
        o = self.ord
        if o == "fro":
            z = np.sqrt(np.sum(A * A, axis=(-2, -1)))
        elif o in ("nuc", 2, -2):
            s = np.linalg.svd(A, compute_uv=False)
            z = s.sum(-1) if o == "nuc" else (s.max(-1) if o == 2 else s.min(-1))
        else:
            axis = -2 if abs(o) == 1 else -1  # 1: sums over rows (per column); inf: per row
            sums = np.abs(A).sum(axis=axis)
            z = sums.max(-1) if o > 0 else sums.min(-1)
        out = z
        if self.keepdim:
            d = sorted(self._dims(a.shape))
            out = np.expand_dims(z, tuple(d))
        return out, (a, z)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        a, z = cache
        A = self._moved(a)
        g = delta.reshape(z.shape)[..., None, None]
        o = self.ord
        if o == "fro":
            with np.errstate(invalid="ignore", divide="ignore"):
                gA = np.where(z[..., None, None] == 0, 0.0, g * A / z[..., None, None])
        elif o in ("nuc", 2, -2):
            U, s, Vh = np.linalg.svd(A, full_matrices=False)
            if o == "nuc":
                w = np.ones(s.shape)
            else:
                pick = s.max(-1, keepdims=True) if o == 2 else s.min(-1, keepdims=True)
                w = (s == pick).astype(np.float64)
                w = w / w.sum(-1, keepdims=True)
            gA = g * ((U * w[..., None, :]) @ Vh)
        else:
            axis = -2 if abs(o) == 1 else -1
            sums = np.abs(A).sum(axis=axis, keepdims=True)
            pick = (
                sums.max(-1 if axis == -2 else -2, keepdims=True)
                if o > 0
                else sums.min(-1 if axis == -2 else -2, keepdims=True)
            )
            chosen = (sums == pick).astype(np.float64)
            chosen = chosen / chosen.sum(axis=(-2, -1), keepdims=True)
            gA = g * np.sign(A) * chosen
        return self._back(gA, a.shape), {}

    def ties(self, a: Array) -> tuple[Array] | None:
        if self.ord == "fro":
            return None
        A = self._moved(a)
        tol = TIE_RTOL * float(np.max(np.abs(A), initial=0.0)) * max(A.shape[-2:])
        o = self.ord
        if o in ("nuc", 2, -2):
            s = np.linalg.svd(A, compute_uv=False)
            gaps = np.abs(s[..., :, None] - s[..., None, :])
            gaps = np.where(np.eye(s.shape[-1], dtype=bool), np.inf, gaps)
            near = np.any(gaps <= tol, axis=(-2, -1)) | (np.min(s, axis=-1) <= tol)
            mask = np.broadcast_to(near[..., None, None], A.shape)
        else:
            axis = -2 if abs(o) == 1 else -1
            sums = np.abs(A).sum(axis=axis, keepdims=True)
            other = -1 if axis == -2 else -2
            pick = sums.max(other, keepdims=True) if o > 0 else sums.min(other, keepdims=True)
            close = np.abs(sums - pick) <= tol
            tied = close & (close.sum(axis=other, keepdims=True) >= 2)
            mask = np.broadcast_to(tied, A.shape) | (np.abs(A) <= tol)
        return (self._back(np.array(mask), a.shape),)


# --- vector products ----------------------------------------------------------------------


class Cross(Layer):
    """z = a × b along dim (size 3; a and b broadcast);  ā = b × z̄,  b̄ = z̄ × a."""

    n_inputs = 2

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"Cross(dim={self.dim})"

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        out = _broadcast_shape((a_shape, b_shape))
        d = _axis(self.dim, len(out), "dim", out)
        if len(a_shape) != len(b_shape) or out[d] != 3 or a_shape[d] != 3 or b_shape[d] != 3:
            raise ValueError(
                f"cross: expected inputs of one rank with size 3 at dim {self.dim}, got shapes "
                f"{tuple(a_shape)} and {tuple(b_shape)}"
            )
        return out

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        out = self.shape(a.shape, b.shape)
        d = _axis(self.dim, len(out), "dim", out)
        return np.cross(a, b, axis=d), (a, b, d)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a, b, d = cache
        ga = np.cross(b, delta, axis=d)
        gb = np.cross(delta, a, axis=d)
        return (unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)), {}


class Cdist(Layer):
    """z_ij = ‖x1_i − x2_j‖_p over batches of row vectors x1 (*, P, M), x2 (*, R, M);
    with d = x1_i − x2_j:  x̄1_i = Σ_j z̄_ij ∂z/∂d,  x̄2_j = −Σ_i z̄_ij ∂z/∂d, where
    ∂z/∂d = d/z (p = 2), sgn d (p = 1), sgn d |d|^{p−1} / z^{p−1} (other p), sgn d on the
    largest |d| (p = inf), 0 (p = 0) — 0 wherever z = 0 (torch's _cdist_backward)."""

    n_inputs = 2

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        if not p >= 0:
            raise ValueError(f"cdist: expected p >= 0, got {p}")
        self.p = float(p)

    def __repr__(self) -> str:
        return f"Cdist(p={self.p})"

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        if len(a_shape) < 2 or len(b_shape) < 2 or a_shape[-1] != b_shape[-1]:
            raise ValueError(
                f"cdist: expected x1 (*, P, M) and x2 (*, R, M), got {tuple(a_shape)} and "
                f"{tuple(b_shape)}"
            )
        batch = _broadcast_shape((a_shape[:-2], b_shape[:-2]))
        return (*batch, a_shape[-2], b_shape[-2])

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        self.shape(a.shape, b.shape)
        d = a[..., :, None, :] - b[..., None, :, :]  # (*, P, R, M)
        ad = np.abs(d)
        p = self.p
        if p == 0:
            z = (ad != 0).sum(-1).astype(np.float64)
        elif p == np.inf:
            z = ad.max(-1)
        elif p == 1:
            z = ad.sum(-1)
        elif p == 2:
            z = np.sqrt((d * d).sum(-1))
        else:
            z = (ad**p).sum(-1) ** (1.0 / p)
        return z, (a.shape, b.shape, d, z)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a_shape, b_shape, d, z = cache
        p = self.p
        zz = z[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 0:
                dz = np.zeros(d.shape)
            elif p == 1:
                dz = np.sign(d)
            elif p == 2:
                dz = d / zz
            elif p == np.inf:
                ad = np.abs(d)
                dz = np.sign(d) * (ad == zz)
            elif p < 1:
                dz = np.sign(d) * np.abs(d) ** (p - 1) / zz ** (p - 1)
                dz = np.where(d == 0, 0.0, dz)
            else:
                dz = np.sign(d) * np.abs(d) ** (p - 1) / zz ** (p - 1)
        dz = np.where(zz == 0, 0.0, dz)
        g = delta[..., None] * dz  # (*, P, R, M)
        return (unbroadcast(g.sum(-2), a_shape), unbroadcast(-g.sum(-3), b_shape)), {}

    def ties(self, a: Array, b: Array) -> tuple[Array, Array]:
        """Where a distance is (nearly) 0, or (p = inf) two coordinates tie for the largest."""
        d = a[..., :, None, :] - b[..., None, :, :]
        scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        tol = TIE_RTOL * max(scale, 1e-300)
        near0 = np.all(np.abs(d) <= tol, axis=-1, keepdims=True)
        mask = np.broadcast_to(near0, d.shape) | (np.abs(d) <= tol if self.p <= 1 else False)
        if self.p == np.inf:
            ad = np.abs(d)
            close = np.abs(ad - ad.max(-1, keepdims=True)) <= tol
            mask = mask | (close & (close.sum(-1, keepdims=True) >= 2))
        ma = unbroadcast(mask.any(-2).astype(np.float64), a.shape) > 0
        mb = unbroadcast(mask.any(-3).astype(np.float64), b.shape) > 0
        return ma, mb


# --- Householder products -------------------------------------------------------------------


class HouseholderProduct(Layer):
    """Q = (H₁ H₂ ⋯ H_k)[:, :n], H_i = I − τ_i v_i v_iᵀ, v_i = (0, …, 0, 1, A[i+1:, i]) (the
    reflectors LAPACK's geqrf leaves below A's diagonal; torch.linalg.householder_product).

    With P_i = H₁ ⋯ H_{i−1}, S_i = H_{i+1} ⋯ H_k E (E the first n columns of I) and
    M_i = P_iᵀ Q̄ S_iᵀ = ∂L/∂H_i:  τ̄_i = −v_iᵀ M_i v_i,  v̄_i = −τ_i (M_i + M_iᵀ) v_i, whose
    entries below the diagonal are Ā's column i (the rest of Ā is 0)."""

    n_inputs = 2

    def shape(self, a_shape: Shape, tau_shape: Shape) -> Shape:
        _matrices(a_shape, "householder_product")
        *batch, m, n = a_shape
        if (
            n > m
            or tuple(tau_shape[:-1]) != tuple(batch)
            or len(tau_shape) < 1
            or tau_shape[-1] > n
        ):
            raise ValueError(
                f"householder_product: expected A (*, m, n) with m >= n and tau (*, k), k <= n, "
                f"got {tuple(a_shape)} and {tuple(tau_shape)}"
            )
        return tuple(a_shape)

    def _reflectors(self, a: Array, k: int) -> Array:
        """v_i as the columns of an (*, m, k) array."""
        m = a.shape[-2]
        V = np.tril(a[..., :, :k], -1)
        idx = np.arange(k)
        V[..., idx, idx] = 1.0
        return V[..., :m, :]

    def forward(self, a: Array, tau: Array) -> tuple[Array, Any]:
        self.shape(a.shape, tau.shape)
        m, n = a.shape[-2:]
        k = tau.shape[-1]
        V = self._reflectors(a, k)
        eye = np.broadcast_to(np.eye(m), (*a.shape[:-2], m, m))
        H = [
            eye - tau[..., i, None, None] * (V[..., :, i, None] * V[..., None, :, i])
            for i in range(k)
        ]
        Q = eye.copy()
        for h in H:  # NOTE: a loop over the k reflectors
            Q = Q @ h
        return Q[..., :n].copy(), (V, tau, H, m, n)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        V, tau, H, m, n = cache
        k = len(H)
        eye = np.broadcast_to(np.eye(m), (*V.shape[:-2], m, m))
        S = [None] * k
        s = eye[..., :n]
        for i in range(k - 1, -1, -1):
            S[i] = s
            s = H[i] @ s
        gA = np.zeros((*V.shape[:-2], m, n))
        gtau = np.zeros(tau.shape)
        P = eye
        for i in range(k):
            M = _T(P) @ delta @ _T(S[i])
            v = V[..., :, i]
            Mv, Mtv = (M @ v[..., None])[..., 0], (_T(M) @ v[..., None])[..., 0]
            gtau[..., i] = -np.sum(v * Mv, axis=-1)
            gv = -tau[..., i, None] * (Mv + Mtv)
            gA[..., i + 1 :, i] = gv[..., i + 1 :]
            P = P @ H[i]
        return (gA, gtau), {}


class SolveTriangular(Layer):
    """X = T⁻¹ B (left) or B T⁻¹ (right), T the upper or lower triangle of A (its diagonal 1
    when unitriangular; the rest of A is not read);  left: B̄ = T⁻ᵀ X̄, Ā = −B̄ Xᵀ;  right:
    B̄ = X̄ T⁻ᵀ, Ā = −Xᵀ B̄;  Ā kept on the triangle read (without its diagonal when
    unitriangular), each summed over broadcast batch dims."""

    n_inputs = 2

    def __init__(self, upper: bool, left: bool = True, unitriangular: bool = False) -> None:
        super().__init__()
        self.upper, self.left, self.unitriangular = bool(upper), bool(left), bool(unitriangular)

    def __repr__(self) -> str:
        return (
            f"SolveTriangular(upper={self.upper}, left={self.left}, "
            f"unitriangular={self.unitriangular})"
        )

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        _square(a_shape, "solve_triangular")
        n = a_shape[-1]
        if len(b_shape) < 2 or (b_shape[-2] if self.left else b_shape[-1]) != n:
            side = "(*, n, k)" if self.left else "(*, k, n)"
            raise ValueError(
                f"solve_triangular: expected B of shape {side} with n = {n}, got {tuple(b_shape)}"
            )
        return (*_broadcast_shape((a_shape[:-2], b_shape[:-2])), *b_shape[-2:])

    def _triangle(self, a: Array) -> tuple[Array, Array]:
        n = a.shape[-1]
        keep = np.triu(np.ones((n, n), bool)) if self.upper else np.tril(np.ones((n, n), bool))
        if self.unitriangular:
            keep &= ~np.eye(n, dtype=bool)
        T = np.where(keep, a, 0.0) + (np.eye(n) if self.unitriangular else 0.0)
        return T, keep

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        out = self.shape(a.shape, b.shape)
        T, keep = self._triangle(a)
        T = np.broadcast_to(T, (*out[:-2], *T.shape[-2:]))
        B = np.broadcast_to(b, out)
        X = np.linalg.solve(T, B) if self.left else _T(np.linalg.solve(_T(T), _T(B)))
        return X, (T, X, keep, a.shape, b.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        T, X, keep, a_shape, b_shape = cache
        if self.left:
            gB = np.linalg.solve(_T(T), delta)
            gA = -(gB @ _T(X))
        else:
            gB = _T(np.linalg.solve(T, _T(delta)))
            gA = -(_T(X) @ gB)
        return (unbroadcast(np.where(keep, gA, 0.0), a_shape), unbroadcast(gB, b_shape)), {}


class Lstsq(Layer):
    """torch.linalg.lstsq(A, B) for a full-rank A with torch's CPU default driver 'gelsy':
    (X, residuals, rank, singular_values) with X = A⁺ B, rank = min(m, n), and residuals and
    singular values empty (gelsy computes neither);  B̄ = A⁺ᵀ X̄,  Ā = pinv's backward at
    Z̄ = X̄ Bᵀ (torch's linalg_lstsq_backward)."""

    n_inputs = 2
    n_outputs = 4
    output_dtypes = ("float", "float", "int", "float")

    def shape(self, a_shape: Shape, b_shape: Shape) -> Any:  # type: ignore[override]
        _matrices(a_shape, "lstsq")
        *batch, m, n = a_shape
        if len(b_shape) != len(a_shape) or b_shape[-2] != m:
            raise ValueError(
                f"lstsq: expected B of shape (*, {m}, k) with A's rank, got {tuple(b_shape)}"
            )
        out_batch = _broadcast_shape((tuple(batch), tuple(b_shape[:-2])))
        return (*out_batch, n, b_shape[-1]), (0,), tuple(batch), (0,)

    def forward(self, a: Array, b: Array) -> tuple[Any, Any]:
        x_shape, _, rank_shape, _ = self.shape(a.shape, b.shape)
        m, n = a.shape[-2:]
        s = np.linalg.svd(a, compute_uv=False)
        tol = max(m, n) * np.finfo(np.float64).eps * s.max(-1, initial=0.0)
        if np.any(s.min(-1) <= tol):
            raise ValueError(
                "lstsq: a rank-deficient A is not supported (its solution depends on the "
                "driver's cut-off); the gradient here assumes full rank"
            )
        _, (_, Z) = Pinv().forward(a)
        X = np.broadcast_to(Z, (*x_shape[:-2], n, m)) @ b
        rank = np.full(rank_shape, min(m, n), dtype=np.int64)
        return (X, np.zeros((0,)), rank, np.zeros((0,))), (a, b, Z)

    def backward(self, delta: Any, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a, b, Z = cache
        gX = delta[0]
        if gX is None:
            return (np.zeros(a.shape), np.zeros(b.shape)), {}
        gZ = gX @ _T(b)
        A = np.broadcast_to(a, gZ.shape[:-2] + a.shape[-2:])
        gA, _ = Pinv().backward(gZ, (A, np.broadcast_to(Z, gZ.shape)))
        gB = _T(Z) @ gX
        return (unbroadcast(gA, a.shape), unbroadcast(gB, b.shape)), {}


class WithInfo(Layer):
    """torch.linalg.*_ex: (the layer's result, info), info 0 for each matrix of the batch (a
    singular or indefinite matrix is refused by the layer itself, where torch's info would
    say so);  δ_prev is the layer's (info carries none)."""

    n_outputs = 2
    output_dtypes = ("float", "int")

    def __init__(self, inner: Layer) -> None:
        super().__init__()
        self.inner = inner
        self.n_inputs = inner.n_inputs  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"WithInfo({self.inner!r})"

    def shape(self, *in_shapes: Shape) -> tuple[Shape, Shape]:  # type: ignore[override]
        return tuple(self.inner.shape(*in_shapes)), tuple(in_shapes[0][:-2])

    def forward(self, *a: Array) -> tuple[tuple[Array, Array], Any]:
        if isinstance(self.inner, Inv) and np.any(np.linalg.matrix_rank(a[0]) < a[0].shape[-1]):
            raise ValueError("inv_ex: a singular matrix is not supported (torch's info > 0)")
        z, cache = self.inner.forward(*a)
        return (z, np.zeros(a[0].shape[:-2], dtype=np.int64)), (cache, [x.shape for x in a])

    def backward(self, delta: tuple[Array | None, Array | None], cache: Any) -> tuple[Any, dict]:
        inner, shapes = cache
        if delta[0] is None:
            zeros = [np.zeros(s) for s in shapes]
            return (zeros[0] if len(zeros) == 1 else tuple(zeros)), {}
        return self.inner.backward(delta[0], inner)
