"""The recurrent kernels: one direction of one layer, forward over t = 0..T−1 and backprop
through time back, for each cell (RNN, LSTM, GRU), and the table of cells (`CELLS`). The
equations are in the package docstring (manual_bp.ops.recurrent); each kernel's docstring
carries its line of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from manual_bp.ops.activations import Activation, get_activation
from manual_bp.ops.activations import sigmoid as _sigmoid_activation
from manual_bp.ops.base import Array

State = tuple[Array, ...]  # (h,) or (h, c), each (N, ·)
_sigmoid = _sigmoid_activation().f  # σ(a) = 1/(1 + e^{−a}), no exponent overflows


def _bias(p: Mapping[str, Array], name: str) -> Array | float:
    return p[name] if name in p else 0.0


def _affine(a: Array, W: Array, b: Array | float = 0.0) -> Array:
    """a W + b over the last axis of a (T, N, ·) array, as one 2-d product (not T small ones)."""
    return (a.reshape(-1, a.shape[-1]) @ W + b).reshape(*a.shape[:-1], W.shape[-1])


def _zeros_if_none(x: Array | None, like: Array) -> Array:
    return np.zeros_like(like) if x is None else x


# --- variable lengths: a step past a sample's length leaves its state as it was ---------------
#
# `valid` (T, N, 1) bool, or None where every step counts: v_t = 1 while t < L_b (the reverse
# direction gets it flipped: its steps past L_b come first, and it starts at L_b − 1). Then
#     h_t = v_t ⊙ h_new + (1 − v_t) ⊙ h_{t−1}   (c_t alike),   out_t = v_t ⊙ h_t
# and backward splits ∂L/∂h_t into v_t ⊙ ∂L/∂h_t, into the step, and (1 − v_t) ⊙ ∂L/∂h_t,
# straight on to h_{t−1}.


def _kept(valid: Array | None, t: int, new: Array, old: Array) -> Array:
    """h_t = v_t ⊙ h_new + (1 − v_t) ⊙ h_{t−1}: a step past the sample's length keeps its state."""
    return new if valid is None else np.where(valid[t], new, old)


def _split(valid: Array | None, t: int, g: Array) -> tuple[Array, Array | float]:
    """(v_t ⊙ g, (1 − v_t) ⊙ g): ∂L/∂h_t into step t's new state, and on to h_{t−1} as it is."""
    if valid is None:
        return g, 0.0
    return np.where(valid[t], g, 0.0), np.where(valid[t], 0.0, g)


def _on(valid: Array | None, a: Array) -> Array:
    """v ⊙ a over every step: the outputs (and their δ) are zero past a sample's length."""
    return a if valid is None else np.where(valid, a, 0.0)


# --- one direction of one layer: forward over t = 0..T−1, then BPTT back -------------------
#
# Every kernel takes gx = x_t W_ihᵀ + b_ih for all t at once, (T, N, G·H) (the input side has
# no recurrence, so the layer forms it in one product), the initial state and the direction's
# parameters under their short names ("weight_hh", "bias_hh", "weight_hr"), and `valid` (see
# above; None: every step counts). It returns the hidden states h_1..h_T (T, N, H_out), 0 past
# each sample's length, the final state and a tape for backward.
#
# Backward takes ∂L/∂h_t from the layer's output (T, N, H_out), ∂L/∂(final state) (None
# where unused) and the same `valid`, and returns
#     δ      (T, N, G·H): ∂L/∂(x_t W_ihᵀ + b_ih), whence ∂L/∂W_ih, ∂L/∂b_ih and ∂L/∂x_t
#     ∂L/∂(initial state), ∂L/∂θ of the recurrent side, and the trace (see BPTT).


@dataclass
class RNNTape:
    z: Array  # (T, N, H) pre-activations
    h: Array  # (T + 1, N, H): h[0] = h0, h[t + 1] = h_t


def rnn_forward(
    gx: Array, state0: State, p: Mapping[str, Array], act: Activation, valid: Array | None = None
) -> tuple[Array, State, RNNTape]:
    """h_t = f(z_t),  z_t = gx_t + h_{t−1} W_hhᵀ + b_hh  (h_t = h_{t−1} past the length)."""
    (h0,) = state0
    W_hh, b_hh = p["weight_hh"], _bias(p, "bias_hh")
    T = len(gx)
    z = np.empty_like(gx)
    h = np.empty((T + 1, *h0.shape))
    h[0] = h0
    for t in range(T):
        z[t] = gx[t] + h[t] @ W_hh.T + b_hh
        h[t + 1] = _kept(valid, t, act(z[t]), h[t])
    return _on(valid, h[1:]), (h[T],), RNNTape(z, h)


def rnn_backward(
    dL_dh_out: Array, dL_dfinal: tuple[Array | None, ...], tape: RNNTape,
    p: Mapping[str, Array], act: Activation, valid: Array | None = None,
) -> tuple[Array, State, dict[str, Array], dict[str, Array]]:  # fmt: skip
    """δ_t = f′(z_t) ⊙ (W_hhᵀ δ_{t+1} + ∂L/∂h_t);  ∂L/∂W_hh = Σ_t δ_t h_{t−1}ᵀ, ∂L/∂b_hh = Σ δ_t."""
    W_hh = p["weight_hh"]
    z, h = tape.z, tape.h
    T, H = len(z), z.shape[-1]
    # NOTE: past a sample's length h_t is h_{t−1}, not f(z_t): f′ there is never used (v_t = 0)
    f_prime = act.derivative(z, h[1:])  # (T, N, H)
    delta, dL_dh = np.empty_like(z), np.empty_like(z)
    dL_dh_out = _on(valid, dL_dh_out)
    from_next = _zeros_if_none(dL_dfinal[0], h[0])  # W_hhᵀ δ_{t+1}; at t = T: ∂L/∂h_n
    for t in reversed(range(T)):
        dL_dh[t] = dL_dh_out[t] + from_next  # both routes into h_t
        dL_dh_new, kept = _split(valid, t, dL_dh[t])
        delta[t] = f_prime[t] * dL_dh_new
        from_next = delta[t] @ W_hh + kept  # W_hhᵀ δ_t, for step t − 1
    grads = {"weight_hh": delta.reshape(-1, H).T @ h[:-1].reshape(-1, H)}
    if "bias_hh" in p:
        grads["bias_hh"] = delta.sum(axis=(0, 1))
    return delta, (from_next,), grads, {"delta_hh": delta, "dL_dh": dL_dh}


@dataclass
class LSTMTape:
    gates: Array  # (T, N, 4H): i, f, g, o after their σ / tanh
    c: Array  # (T + 1, N, H): c[0] = c0
    tanh_c: Array  # (T, N, H)
    h: Array  # (T + 1, N, H_out): h[0] = h0
    m: Array | None  # (T, N, H): o ⊙ tanh(c), kept only with proj_size (for ∂L/∂W_hr)


def lstm_forward(
    gx: Array, state0: State, p: Mapping[str, Array], valid: Array | None = None
) -> tuple[Array, State, LSTMTape]:
    """[i f g o] = gx_t + h_{t−1} W_hhᵀ + b_hh; c_t = f⊙c_{t−1} + i⊙g; h_t = o⊙tanh(c_t) (W_hrᵀ)."""
    h0, c0 = state0
    W_hh, b_hh, W_hr = p["weight_hh"], _bias(p, "bias_hh"), p.get("weight_hr")
    T, H = len(gx), c0.shape[-1]
    gates = np.empty_like(gx)
    c = np.empty((T + 1, *c0.shape))
    h = np.empty((T + 1, *h0.shape))
    tanh_c = np.empty((T, *c0.shape))
    m = None if W_hr is None else np.empty((T, *c0.shape))
    c[0], h[0] = c0, h0
    for t in range(T):
        a = gx[t] + h[t] @ W_hh.T + b_hh  # (N, 4H) pre-activations
        gates[t] = _sigmoid(a)  # i, f, o: σ (and g's block, overwritten next)
        gates[t, :, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])  # g: tanh
        i, f, g, o = (gates[t, :, k * H : (k + 1) * H] for k in range(4))
        c_new = f * c[t] + i * g
        tanh_c[t] = np.tanh(c_new)
        if W_hr is None:
            h_new = o * tanh_c[t]
        else:
            m[t] = o * tanh_c[t]
            h_new = m[t] @ W_hr.T  # (N, H) → (N, P)
        c[t + 1], h[t + 1] = _kept(valid, t, c_new, c[t]), _kept(valid, t, h_new, h[t])
    return _on(valid, h[1:]), (h[T], c[T]), LSTMTape(gates, c, tanh_c, h, m)


def lstm_backward(
    dL_dh_out: Array, dL_dfinal: tuple[Array | None, ...], tape: LSTMTape,
    p: Mapping[str, Array], valid: Array | None = None,
) -> tuple[Array, State, dict[str, Array], dict[str, Array]]:  # fmt: skip
    """∂L/∂c_t = ∂L/∂c_{t+1} ⊙ f_{t+1} + ∂L/∂m_t ⊙ o_t ⊙ tanh′(c_t); δ = ∂L/∂(pre-[i f g o])."""
    W_hh, W_hr = p["weight_hh"], p.get("weight_hr")
    gates, c, tanh_c, h = tape.gates, tape.c, tape.tanh_c, tape.h
    T, H = len(gates), c.shape[-1]
    i, f, g, o = (gates[..., k * H : (k + 1) * H] for k in range(4))  # each (T, N, H)
    # the local derivatives, for every t at once (σ′ = σ(1 − σ), tanh′ = 1 − tanh²)
    dc_di = g * i * (1.0 - i)  # ∂c_t/∂(pre-i): ∂c_t/∂i = g
    dc_df = c[:-1] * f * (1.0 - f)  # ∂c_t/∂(pre-f): ∂c_t/∂f = c_{t−1}
    dc_dg = i * (1.0 - g**2)  # ∂c_t/∂(pre-g): ∂c_t/∂g = i
    dm_do = tanh_c * o * (1.0 - o)  # ∂m_t/∂(pre-o): ∂m_t/∂o = tanh(c_t)
    dm_dc = o * (1.0 - tanh_c**2)  # ∂m_t/∂c_t = o_t ⊙ tanh′(c_t)
    delta = np.empty_like(gates)
    dL_dh, dL_dc = np.empty_like(h[1:]), np.empty_like(c[1:])
    dL_dh_out = _on(valid, dL_dh_out)
    from_next = _zeros_if_none(dL_dfinal[0], h[0])  # W_hhᵀ δ_{t+1}; at t = T: ∂L/∂h_n
    from_next_c = _zeros_if_none(dL_dfinal[1], c[0])  # ∂L/∂c_t from step t + 1; at t = T: ∂L/∂c_n
    for t in reversed(range(T)):
        dL_dh[t] = dL_dh_out[t] + from_next
        dL_dh_new, kept_h = _split(valid, t, dL_dh[t])
        dL_dc_new, kept_c = _split(valid, t, from_next_c)
        dL_dm = dL_dh_new if W_hr is None else dL_dh_new @ W_hr  # h_t = m_t W_hrᵀ
        dL_dc[t] = dL_dc_new + dL_dm * dm_dc[t]
        delta[t, :, :H] = dL_dc[t] * dc_di[t]
        delta[t, :, H : 2 * H] = dL_dc[t] * dc_df[t]
        delta[t, :, 2 * H : 3 * H] = dL_dc[t] * dc_dg[t]
        delta[t, :, 3 * H :] = dL_dm * dm_do[t]
        from_next = delta[t] @ W_hh + kept_h
        # the constant error carousel: the cell state's own route back in time
        from_next_c = dL_dc[t] * f[t] + kept_c
    P = h.shape[-1]
    grads = {"weight_hh": delta.reshape(-1, 4 * H).T @ h[:-1].reshape(-1, P)}
    if "bias_hh" in p:
        grads["bias_hh"] = delta.sum(axis=(0, 1))
    if W_hr is not None:  # Σ_t ∂L/∂h_t m_tᵀ, over the steps inside each sample's length
        grads["weight_hr"] = _on(valid, dL_dh).reshape(-1, P).T @ tape.m.reshape(-1, H)
    trace = {"delta_hh": delta, "dL_dh": dL_dh, "dL_dc": dL_dc}
    return delta, (from_next, from_next_c), grads, trace


@dataclass
class GRUTape:
    r: Array  # (T, N, H)
    z: Array  # (T, N, H)
    n: Array  # (T, N, H)
    gh_n: Array  # (T, N, H): h_{t−1} W_hnᵀ + b_hn, the term the reset gate multiplies
    h: Array  # (T + 1, N, H): h[0] = h0


def gru_forward(
    gx: Array, state0: State, p: Mapping[str, Array], valid: Array | None = None
) -> tuple[Array, State, GRUTape]:
    """[r z] = σ(gx + h W_hhᵀ + b_hh); n = tanh(gx_n + r ⊙ (h W_hnᵀ + b_hn)); h′ = (1−z)⊙n + z⊙h."""
    (h0,) = state0
    W_hh, b_hh = p["weight_hh"], _bias(p, "bias_hh")
    T, H = len(gx), h0.shape[-1]
    r, z, n, gh_n = (np.empty((T, *h0.shape)) for _ in range(4))
    h = np.empty((T + 1, *h0.shape))
    h[0] = h0
    for t in range(T):
        gh = h[t] @ W_hh.T + b_hh  # (N, 3H): the hidden side of r, z, n
        rz = _sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H])  # (N, 2H)
        r[t], z[t] = rz[:, :H], rz[:, H:]
        gh_n[t] = gh[:, 2 * H :]
        n[t] = np.tanh(gx[t, :, 2 * H :] + r[t] * gh_n[t])  # NOTE: b_hn inside r ⊙ (·), as torch
        h[t + 1] = _kept(valid, t, (1.0 - z[t]) * n[t] + z[t] * h[t], h[t])
    return _on(valid, h[1:]), (h[T],), GRUTape(r, z, n, gh_n, h)


def gru_backward(
    dL_dh_out: Array, dL_dfinal: tuple[Array | None, ...], tape: GRUTape,
    p: Mapping[str, Array], valid: Array | None = None,
) -> tuple[Array, State, dict[str, Array], dict[str, Array]]:  # fmt: skip
    """∂L/∂h_{t−1} = ∂L/∂h_t ⊙ z_t + W_hhᵀ δ^hh_t; δ^hh = δ except its n block, r ⊙ δ_n."""
    W_hh = p["weight_hh"]
    r, z, n, gh_n, h = tape.r, tape.z, tape.n, tape.gh_n, tape.h
    T, H = len(r), r.shape[-1]
    # the local derivatives, for every t at once (σ′ = σ(1 − σ), tanh′ = 1 − tanh²)
    dh_dn = (1.0 - z) * (1.0 - n**2)  # ∂h_t/∂(pre-n): ∂h_t/∂n = 1 − z
    dh_dz = (h[:-1] - n) * z * (1.0 - z)  # ∂h_t/∂(pre-z): ∂h_t/∂z = h_{t−1} − n
    dn_dr = gh_n * r * (1.0 - r)  # ∂(pre-n)/∂(pre-r): ∂(pre-n)/∂r = h_{t−1} W_hnᵀ + b_hn
    delta = np.empty((T, *r.shape[1:-1], 3 * H))  # ∂L/∂(x W_ihᵀ + b_ih): r, z, n
    delta_hh = np.empty_like(delta)  # ∂L/∂(h W_hhᵀ + b_hh)
    dL_dh = np.empty_like(r)
    dL_dh_out = _on(valid, dL_dh_out)
    from_next = _zeros_if_none(dL_dfinal[0], h[0])
    for t in reversed(range(T)):
        dL_dh[t] = dL_dh_out[t] + from_next
        dL_dh_new, kept = _split(valid, t, dL_dh[t])
        delta_n = dL_dh_new * dh_dn[t]
        delta[t, :, :H] = delta_n * dn_dr[t]  # δ_r
        delta[t, :, H : 2 * H] = dL_dh_new * dh_dz[t]  # δ_z
        delta[t, :, 2 * H :] = delta_n
        delta_hh[t, :, : 2 * H] = delta[t, :, : 2 * H]
        delta_hh[t, :, 2 * H :] = r[t] * delta_n  # the reset gate multiplies the hidden side
        from_next = dL_dh_new * z[t] + delta_hh[t] @ W_hh + kept
    grads = {"weight_hh": delta_hh.reshape(-1, 3 * H).T @ h[:-1].reshape(-1, H)}
    if "bias_hh" in p:
        grads["bias_hh"] = delta_hh.sum(axis=(0, 1))
    return delta, (from_next,), grads, {"delta_hh": delta_hh, "dL_dh": dL_dh}


# --- the table of cells ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One kind of recurrent cell: its gate blocks and its two kernels."""

    name: str
    gates: int  # blocks of H rows in weight_ih / weight_hh (torch's gate order)
    n_states: int  # 1: h; 2: h and c
    forward: Callable[..., tuple[Array, State, Any]]
    backward: Callable[..., tuple[Array, State, dict[str, Array], dict[str, Array]]]


def _rnn_cell(nonlinearity: str) -> Cell:
    act = get_activation(nonlinearity)
    return Cell(
        f"RNN_{nonlinearity.upper()}", 1, 1,
        lambda gx, s, p, valid=None: rnn_forward(gx, s, p, act, valid),
        lambda d, df, tape, p, valid=None: rnn_backward(d, df, tape, p, act, valid),
    )  # fmt: skip


CELLS: dict[str, Cell] = {
    "RNN_TANH": _rnn_cell("tanh"),
    "RNN_RELU": _rnn_cell("relu"),
    "LSTM": Cell("LSTM", 4, 2, lstm_forward, lstm_backward),
    "GRU": Cell("GRU", 3, 1, gru_forward, gru_backward),
    # NOTE: no torch module has it; the lab's linear RNN, RNNBase("RNN_IDENTITY", …)
    "RNN_IDENTITY": _rnn_cell("identity"),
}


def _cell(mode: str) -> Cell:
    if mode not in CELLS:
        raise ValueError(f"unknown recurrent cell {mode!r}; known: {', '.join(CELLS)}")
    return CELLS[mode]


#: nn.RNN's `nonlinearity` → the cell.
RNN_NONLINEARITIES = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}


def _rnn_mode(nonlinearity: str) -> str:
    try:
        return RNN_NONLINEARITIES[nonlinearity]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown nonlinearity {nonlinearity!r}; expected one of "
            f"{', '.join(map(repr, RNN_NONLINEARITIES))}"
        ) from None
