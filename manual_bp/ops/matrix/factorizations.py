"""Factorizations and matrix functions (torch.linalg), the reverse-mode formula written out
beside each forward (Giles 2008, "An extended collection of matrix derivative results for
forward and reverse mode AD"; Seeger et al. 2017 and Murray 2016 for the factorizations).

    Cholesky       A = L Lᵀ                  Ā = ½ (S + Sᵀ), S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹
    QR             A = Q R                   (Q Φᵤ(M) + Q̄) R⁻ᵀ,  M = R̄ Rᵀ − Qᵀ Q̄
    SVD            A = U diag(s) Vᵀ          Ā = U [(skew(UᵀŪ) s + s skew(VᵀV̄))/E + diag(s̄)] Vᵀ…
    Eigh           A = V diag(λ) Vᵀ          Ā = V [skew(VᵀV̄)/2 / E + diag(λ̄)] Vᵀ
    Pinv           Z = A⁺                    Ā = −Zᵀ Z̄ Zᵀ + (I − A Z) Z̄ᵀ Z Zᵀ + Zᵀ Z Z̄ᵀ (I − Z A)
    MatrixExp      Z = e^A                   Ā = L(Aᵀ, Z̄), the Fréchet derivative at Aᵀ
    HouseholderProduct, Lstsq, WithInfo (the *_ex forms)

Singular vectors and eigenvectors are defined up to sign, and two LAPACKs may choose
differently: `signs=` (torch's vectors, from a recorded run) makes the forward take the
signs those chose, so that what follows them (a sign fixed by a determinant, a constant
taken from torch's run) sees the same vectors. Repeated singular values or eigenvalues make
the singular vectors or eigenvectors non-unique; their gradient is then inf or NaN in torch
too (its docs warn of it): those layers refuse a loss that reaches the vectors of a
(nearly) degenerate spectrum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.matrix.inverse import _T, Inv, _degenerate, _diag, _matrices, _square

# --- factorizations ---------------------------------------------------------------------


def _like(ref: Array | None, shape: tuple[int, ...]) -> Array | None:
    """ref as a reference for an array of `shape`: itself, or repeated along axis 0 (the
    forward of a batch tiled m times), or None where there is none or it does not fit."""
    if ref is None:
        return None
    ref = np.asarray(ref)
    if ref.shape == shape:
        return ref
    if ref.ndim == len(shape) > 0 and ref.shape[1:] == shape[1:] and ref.shape[0]:
        m, rest = divmod(shape[0], ref.shape[0])
        return np.concatenate([ref] * m, axis=0) if m and not rest else None
    return None


def _column_signs(X: Array, ref: Array | None) -> Array:
    """±1 per column of X (over its second-last axis): the sign that turns it towards the
    reference's column (1 where there is none, or they are orthogonal)."""
    if ref is None:
        return np.ones(X.shape[:-2] + X.shape[-1:])
    d = np.sign(np.sum(X * ref, axis=-2))
    return np.where(d == 0, 1.0, d)


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
    `values_only`: svdvals, Ā = U diag(s̄) Vᵀ. `signs`: (U, Vh) whose signs to take."""

    def __init__(
        self,
        full_matrices: bool = True,
        values_only: bool = False,
        signs: tuple[Array, Array] | None = None,
    ) -> None:
        super().__init__()
        self.full_matrices, self.values_only = bool(full_matrices), bool(values_only)
        self.n_outputs = 1 if self.values_only else 3  # type: ignore[misc]
        self.signs = signs

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
        if self.signs is not None:  # (u_i, v_i) turn together where s_i > 0; at s_i = 0 apart
            rU, rVh = (_like(r, x.shape) for r, x in zip(self.signs, (U, Vh), strict=True))
            U = U * _column_signs(U, rU)[..., None, :]
            Vh = Vh * _column_signs(_T(Vh), None if rVh is None else _T(rVh))[..., :, None]
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
    linalg_eig_backward for Hermitian input. `values_only`: eigvalsh, Ā = V diag(λ̄) Vᵀ.
    `signs`: the V whose column signs to take."""

    def __init__(
        self, uplo: str = "L", values_only: bool = False, signs: Array | None = None
    ) -> None:
        super().__init__()
        if uplo not in ("L", "U"):
            raise ValueError(f"eigh: expected UPLO 'L' or 'U', got {uplo!r}")
        self.uplo, self.values_only = uplo, bool(values_only)
        self.n_outputs = 1 if self.values_only else 2  # type: ignore[misc]
        self.signs = signs

    def __repr__(self) -> str:
        return f"{'EigvalsH' if self.values_only else 'Eigh'}(UPLO={self.uplo!r})"

    def shape(self, in_shape: Shape) -> Any:
        _square(in_shape, "eigh")
        vals = tuple(in_shape[:-1])
        return vals if self.values_only else (vals, tuple(in_shape))

    def forward(self, a: Array) -> tuple[Any, Any]:
        self.shape(a.shape)
        lam, V = np.linalg.eigh(a, UPLO=self.uplo)
        if self.signs is not None and not self.values_only:
            V = V * _column_signs(V, _like(self.signs, V.shape))[..., None, :]
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
