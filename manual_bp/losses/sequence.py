"""Connectionist temporal classification (Graves et al., ICML 2006): the loss of a label
sequence l under per-frame log-probabilities, summed over every alignment, by the forward
(α) and backward (β) recursions over l′ = (blank, l_1, blank, l_2, …, l_S, blank).

    log α_t(s) = log Σ_{r ∈ {s, s−1, s−2 if l′_s ≠ l′_{s−2}}} α_{t−1}(r) + lp[t, l′_s]
    ℓ = −log(α_{T−1}(2S) + α_{T−1}(2S − 1))

Vectorised over the batch and the positions s; the loops run over time only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.losses.base import Array, Loss, Shape, _input, _numeric

_NEG_INF = -np.inf


def _logsumexp(a: Array) -> Array:
    """log Σ_k e^{a[k]} along axis 0, the largest term taken out (0 where all are −∞), as
    torch's kernel does."""
    m = a.max(axis=0)
    m = np.where(m == _NEG_INF, 0.0, m)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m).sum(axis=0)) + m


def _shift(a: Array, k: int) -> Array:
    """a moved k places along the last axis (right for k > 0, left for k < 0), −∞ let in."""
    out = np.full_like(a, _NEG_INF)
    if k > 0:
        out[..., k:] = a[..., :-k]
    else:
        out[..., :k] = a[..., -k:]
    return out


def _lengths(what: str, values: Any) -> tuple[int, ...]:
    arr = _numeric("CTCLoss", what, values).reshape(-1)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"CTCLoss: expected integer {what}, got dtype {arr.dtype}")
    return tuple(int(v) for v in arr)


class CTCLoss(Loss):
    """ℓ_n = −log p(l_n | lp[:T_n, n]) by the α recursion above (l′ over S_n labels);
    mean: Σ_n ℓ_n / max(S_n, 1) / N.

    ∂ℓ_n/∂lp[t, n, c] = e^{lp[t, n, c]} − e^{log Σ_{s: l′_s = c} α_t(s) β_t(s) + ℓ_n − lp[t, n, c]}
    for t < T_n, 0 after: torch's convention (aten ctc_loss_backward), which is the derivative
    with respect to the logits u of lp = log_softmax(u) written on lp: the e^{lp} term is
    what log_softmax's backward takes out again, so it is not ∂ℓ/∂lp unless lp is normalised.
    β_t(s) includes lp[t, l′_s] as α_t(s) does.

    An alignment that is impossible (a target longer than its input) makes ℓ_n = +∞: with
    zero_infinity that sample's loss and gradient are 0, as torch's; without, it is refused
    (torch's gradient is NaN there).
    """

    name = "ctc_loss"
    per_element = True  # reduction='none': one loss per sample

    def __init__(
        self,
        input_lengths: Any,
        target_lengths: Any,
        blank: int = 0,
        reduction: str = "mean",
        zero_infinity: bool = False,
    ) -> None:
        super().__init__(reduction)
        self.input_lengths = _lengths("input_lengths", input_lengths)
        self.target_lengths = _lengths("target_lengths", target_lengths)
        if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)):
            raise ValueError(f"CTCLoss: expected an integer blank, got {blank!r}")
        self.blank = int(blank)
        self.zero_infinity = bool(zero_infinity)

    def options(self) -> dict[str, Any]:
        return {
            "input_lengths": self.input_lengths,
            "target_lengths": self.target_lengths,
            "blank": self.blank,
            **super().options(),
            "zero_infinity": self.zero_infinity,
        }

    # -- validation --

    def check(self, y_shape: Shape, target: Any) -> None:
        loss = type(self).__name__
        y_shape = tuple(y_shape)
        if len(y_shape) not in (2, 3) or 0 in y_shape:
            raise ValueError(
                f"{loss}: expected log_probs of shape (T, N, C) or (T, C), none empty, got "
                f"shape {y_shape}"
            )
        T, N, C = y_shape if len(y_shape) == 3 else (y_shape[0], 1, y_shape[1])
        if not 0 <= self.blank < C:
            raise ValueError(f"{loss}: expected blank in [0, {C}), got {self.blank}")
        for what, lengths in (("input", self.input_lengths), ("target", self.target_lengths)):
            if len(lengths) != N:
                raise ValueError(
                    f"{loss}: expected {N} {what}_lengths, one per sample, got {len(lengths)}"
                )
            if min(lengths) < 0:
                raise ValueError(f"{loss}: expected {what}_lengths ≥ 0, got {lengths}")
        if max(self.input_lengths) > T:
            raise ValueError(f"{loss}: expected input_lengths ≤ T = {T}, got {self.input_lengths}")
        t = _numeric(loss, "targets", target)
        if t.dtype.kind not in "iu":
            raise ValueError(f"{loss}: expected integer targets, got dtype {t.dtype}")
        self._padded(t, N)  # (its shape checks)
        labels = self._labels(t, N)
        used = np.arange(labels.shape[1]) < np.array(self.target_lengths)[:, None]
        for bad, why in (
            ((labels < 0) | (labels >= C), "torch reads out of bounds there"),
            (labels == self.blank, "a label cannot be the blank, torch's documentation says; "
             "its gradient then counts one of the two last positions only"),
        ):  # fmt: skip
            if (used & bad).any():
                n, k = (int(i) for i in np.argwhere(used & bad)[0])
                raise ValueError(
                    f"{loss}: expected target labels in [0, {C}) other than blank={self.blank}, "
                    f"got {labels[n, k]} as label {k} of sample {n} ({why})"
                )

    def _padded(self, t: Array, N: int) -> None:
        loss = type(self).__name__
        S = max(self.target_lengths)
        if t.ndim == 1:
            if t.size != sum(self.target_lengths):
                raise ValueError(
                    f"{loss}: expected concatenated targets of sum(target_lengths) = "
                    f"{sum(self.target_lengths)} labels, got shape {t.shape}"
                )
        elif t.ndim != 2 or t.shape[0] != N or t.shape[1] < S:
            raise ValueError(
                f"{loss}: expected targets of shape ({N}, S ≥ {S}) padded, or 1-d concatenated, "
                f"got shape {t.shape}"
            )

    def _labels(self, t: Array, N: int) -> Array:
        """The targets as (N, S_max), S_max = max S_n, blank past each sample's length."""
        S = max(self.target_lengths)
        lengths = np.array(self.target_lengths)
        used = np.arange(S) < lengths[:, None]  # (N, S)
        if t.ndim == 1:  # concatenated: sample n's labels start at Σ_{m<n} S_m
            start = np.cumsum(lengths) - lengths
            t = t[np.where(used, start[:, None] + np.arange(S), 0)]
        return np.where(used, t[:, :S], self.blank).astype(np.int64)

    # -- the recursions --

    def _extended(self, labels: Array) -> tuple[Array, Array, Array]:
        """l′ (N, 2S+1), the positions s < 2S_n + 1 in use, and where the skip s−2 → s is
        allowed (l′_s ≠ l′_{s−2}, torch's test: a blank is never skipped)."""
        N, S = labels.shape
        ext = np.full((N, 2 * S + 1), self.blank, dtype=np.int64)
        ext[:, 1::2] = labels
        s = np.arange(2 * S + 1)
        in_use = s < 2 * np.array(self.target_lengths)[:, None] + 1
        skip = np.zeros_like(in_use)
        skip[:, 2:] = ext[:, 2:] != ext[:, :-2]
        return ext, in_use, skip

    def _alpha(self, lpe: Array, in_use: Array, skip: Array) -> Array:
        """log α (T, N, 2S+1), lpe[t, n, s] = lp[t, n, l′_s]."""
        alpha = np.full(lpe.shape, _NEG_INF)
        alpha[0, :, :2] = np.where(in_use[:, :2], lpe[0, :, :2], _NEG_INF)
        for t in range(1, lpe.shape[0]):
            a = alpha[t - 1]
            from_r = _logsumexp(np.stack([a, _shift(a, 1), np.where(skip, _shift(a, 2), _NEG_INF)]))
            alpha[t] = np.where(in_use, from_r + lpe[t], _NEG_INF)
        return alpha

    def _beta(self, lpe: Array, in_use: Array, skip: Array) -> Array:
        """log β (T, N, 2S+1), from each sample's last frame T_n − 1 back; −∞ from T_n on."""
        T = lpe.shape[0]
        last = np.array(self.input_lengths) - 1  # (N,)
        ends = 2 * np.array(self.target_lengths)[:, None] - np.arange(lpe.shape[2])  # 2S_n − s
        start = np.where((ends == 0) | (ends == 1), lpe[np.maximum(last, 0), np.arange(len(last))],
                         _NEG_INF)  # fmt: skip
        skip_back = np.zeros_like(skip)
        skip_back[:, :-2] = skip[:, 2:]  # s → s+2 allowed where l′_{s+2} ≠ l′_s
        beta = np.full(lpe.shape, _NEG_INF)
        nxt = np.full(lpe.shape[1:], _NEG_INF)
        for t in range(T - 1, -1, -1):
            after = np.where(skip_back, _shift(nxt, -2), _NEG_INF)
            to_r = _logsumexp(np.stack([nxt, _shift(nxt, -1), after]))
            here = np.where(in_use, to_r + lpe[t], _NEG_INF)
            here = np.where(
                (t == last)[:, None], start, np.where((t < last)[:, None], here, _NEG_INF)
            )
            beta[t] = nxt = here
        return beta

    def _nll(self, alpha: Array) -> Array:
        """ℓ_n = −log(α_{T_n−1}(2S_n) + α_{T_n−1}(2S_n − 1)) (the first alone for S_n = 0);
        T_n = 0: 0 for an empty target, +∞ else."""
        T_n, S_n = np.array(self.input_lengths), np.array(self.target_lengths)
        n = np.arange(len(T_n))
        final = alpha[np.maximum(T_n - 1, 0), n]  # (N, 2S+1)
        end = final[n, 2 * S_n]
        before = np.where(S_n > 0, final[n, np.maximum(2 * S_n - 1, 0)], _NEG_INF)
        log_p = _logsumexp(np.stack([end, before]))
        return np.where(T_n > 0, -log_p, np.where(S_n == 0, 0.0, np.inf))

    def _gradient(self, lp: Array, ext: Array, log_ab: Array, nll: Array, kept: Array) -> Array:
        """∂ℓ_n/∂lp[t, n, c] = e^{lp} − e^{log Σ_{s: l′_s = c} α_t(s) β_t(s) + ℓ_n − lp} for
        t < T_n, 0 after and for a sample zero_infinity dropped (log_ab: log α β, (T, N, 2S+1))."""
        T, N, C = lp.shape
        per_class = np.where(ext[None, :, :, None] == np.arange(C), log_ab[..., None], _NEG_INF)
        collected = _logsumexp(np.moveaxis(per_class, 2, 0))  # (T, N, C)
        grad = np.exp(lp) - np.exp(collected + np.where(kept, nll, 0.0)[:, None] - lp)
        live = (np.arange(T)[:, None] < np.array(self.input_lengths)) & kept  # (T, N)
        return np.where(live[:, :, None], grad, 0.0)

    def __call__(self, y: Array, target: Array) -> tuple[Any, Array]:
        lp = _input(type(self).__name__, y)
        self.check(lp.shape, target)
        lp3 = lp if lp.ndim == 3 else lp[:, None, :]  # (T, N, C)
        N = lp3.shape[1]
        ext, in_use, skip = self._extended(self._labels(np.asarray(target), N))
        lpe = lp3[:, np.arange(N)[:, None], ext]  # (T, N, 2S+1)
        alpha = self._alpha(lpe, in_use, skip)
        nll = self._nll(alpha)
        infinite = np.isinf(nll)
        if infinite.any() and not self.zero_infinity:
            n = int(np.argmax(infinite))
            raise ValueError(
                f"CTCLoss: the CTC loss is infinite for sample {n}: no alignment of its "
                f"{self.target_lengths[n]} target labels to its {self.input_lengths[n]} input "
                f"frames has nonzero probability, so there is no finite gradient (torch's is NaN); "
                f"pass zero_infinity=True to count such a sample as 0"
            )
        kept = ~infinite  # (zero_infinity: the infinite samples give 0 and no gradient)
        grad = self._gradient(lp3, ext, self._beta(lpe, in_use, skip) + alpha, nll, kept)
        terms = np.where(kept, nll, 0.0)  # (N,)
        weight = np.ones(N)  # ∂(reduction)/∂ℓ_n
        if self.reduction == "mean":
            weight = 1.0 / (N * np.maximum(np.array(self.target_lengths), 1))
        grad = (grad * weight[:, None]).reshape(lp.shape)
        if self.reduction == "none":
            return terms.reshape(self.output_shape(lp.shape)), grad
        return float((terms * weight).sum()), grad

    def output_shape(self, y_shape: Shape) -> Shape:
        return (y_shape[1],) if self.reduction == "none" and len(y_shape) == 3 else ()

    def chain(self, delta: Array, dL_dy: Array) -> Array:
        """δ_lp = δ_n ∂ℓ_n/∂lp[:, n] (reduction='none', batched), else δ ∂ℓ/∂lp."""
        if self.reduction == "none" and dL_dy.ndim == 3:
            return np.asarray(delta)[None, :, None] * dL_dy
        return delta * dL_dy
