"""Recurrent layers: RNN (tanh, relu), LSTM, GRU and their cells, with backprop through time.

Equations, gate orders and layouts are torch's (row vectors, x_t of shape (N, I)):

    RNN   h_t = f(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh),        f = tanh or relu

    LSTM  [i f g o] = x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh     (weight_ih: (4H, I))
          i, f, o = σ(·),  g = tanh(·)
          c_t = f ⊙ c_{t−1} + i ⊙ g,   m_t = o ⊙ tanh(c_t),   h_t = m_t (W_hrᵀ with proj_size)

    GRU   [r z] = σ(x_t W_ih[r z]ᵀ + b_ih[r z] + h_{t−1} W_hh[r z]ᵀ + b_hh[r z])
          n = tanh(x_t W_inᵀ + b_in + r ⊙ (h_{t−1} W_hnᵀ + b_hn))    # b_hn inside the product
          h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

Backprop through time, the same three written once each below (`*_backward`):

    RNN   δ_t = f′(z_t) ⊙ (W_hhᵀ δ_{t+1} + ∂L/∂h_t)          ∂L/∂W_hh = Σ_t δ_t h_{t−1}ᵀ
    LSTM  ∂L/∂c_t = ∂L/∂c_{t+1} ⊙ f_{t+1} + ∂L/∂m_t ⊙ o_t ⊙ tanh′(c_t)  (the constant error
          carousel of Hochreiter & Schmidhuber 1997: along c the only factor is the forget gate)
    GRU   ∂L/∂h_{t−1} = ∂L/∂h_t ⊙ z_t + W_hhᵀ δ^hh_t

Here ∂L/∂h_t on the right of the RNN line is what the layer's output at t receives; the
recursion adds the route through step t + 1. In row-vector code W_hhᵀ δ is `δ @ W_hh`.

Layer protocol (manual_bp.ops.base). `RNN`, `LSTM`, `GRU` take x, and h0 (h0, c0 for the
LSTM) when built with `initial_state=True`, else the state starts at zero. They return
(out, h_n) and (out, h_n, c_n) like torch (`n_outputs` = 2 or 3), and backward takes a tuple
of δ with None for an output the loss does not use. Shapes, as torch's:

    x    (T, N, I), or (N, T, I) with batch_first, or (T, I) unbatched
    out  (T, N, D·H_out) (batch_first: (N, T, D·H_out); unbatched: (T, D·H_out))
    h0, h_n  (L·D, N, H_out),  c0, c_n  (L·D, N, H)   (unbatched: no N; never batch_first)

with D = 2 if bidirectional else 1, L = num_layers, H_out = proj_size or hidden_size. Layer
k > 0 reads the concatenation [forward, reverse] of layer k − 1's outputs; the state of
layer k, direction d sits at index k·D + d of h0/h_n. Inter-layer dropout is applied in
training only: these layers are the eval-mode function, where it is the identity.

What backprop through time saw inside the layer (δ and ∂L/∂h for every time step) is the
`BPTT` record that backward leaves in the cache, `cache.bptt` (see `BPTT` for its layout).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.activations import Activation, get_activation
from manual_bp.ops.activations import sigmoid as _sigmoid_activation
from manual_bp.ops.base import Array, Layer, Shape, _one_or_tuple

State = tuple[Array, ...]  # (h,) or (h, c), each (N, ·)
_sigmoid = _sigmoid_activation().f  # σ(a) = 1/(1 + e^{−a}), no exponent overflows


def _bias(p: Mapping[str, Array], name: str) -> Array | float:
    return p[name] if name in p else 0.0


def _affine(a: Array, W: Array, b: Array | float = 0.0) -> Array:
    """a W + b over the last axis of a (T, N, ·) array, as one 2-d product (not T small ones)."""
    return (a.reshape(-1, a.shape[-1]) @ W + b).reshape(*a.shape[:-1], W.shape[-1])


def _zeros_if_none(x: Array | None, like: Array) -> Array:
    return np.zeros_like(like) if x is None else x


# --- one direction of one layer: forward over t = 0..T−1, then BPTT back -------------------
#
# Every kernel takes gx = x_t W_ihᵀ + b_ih for all t at once, (T, N, G·H) (the input side has
# no recurrence, so the layer forms it in one product), the initial state and the direction's
# parameters under their short names ("weight_hh", "bias_hh", "weight_hr"). It returns the
# hidden states h_1..h_T (T, N, H_out), the final state and a tape for backward.
#
# Backward takes ∂L/∂h_t from the layer's output (T, N, H_out) and ∂L/∂(final state) (None
# where unused) and returns
#     δ      (T, N, G·H): ∂L/∂(x_t W_ihᵀ + b_ih), whence ∂L/∂W_ih, ∂L/∂b_ih and ∂L/∂x_t
#     ∂L/∂(initial state), ∂L/∂θ of the recurrent side, and the trace (see BPTT).


@dataclass
class RNNTape:
    z: Array  # (T, N, H) pre-activations
    h: Array  # (T + 1, N, H): h[0] = h0, h[t + 1] = h_t


def rnn_forward(
    gx: Array, state0: State, p: Mapping[str, Array], act: Activation
) -> tuple[Array, State, RNNTape]:
    """h_t = f(z_t),  z_t = gx_t + h_{t−1} W_hhᵀ + b_hh."""
    (h0,) = state0
    W_hh, b_hh = p["weight_hh"], _bias(p, "bias_hh")
    T = len(gx)
    z = np.empty_like(gx)
    h = np.empty((T + 1, *h0.shape))
    h[0] = h0
    for t in range(T):
        z[t] = gx[t] + h[t] @ W_hh.T + b_hh
        h[t + 1] = act(z[t])
    return h[1:], (h[T],), RNNTape(z, h)


def rnn_backward(
    dL_dh_out: Array, dL_dfinal: tuple[Array | None, ...], tape: RNNTape,
    p: Mapping[str, Array], act: Activation,
) -> tuple[Array, State, dict[str, Array], dict[str, Array]]:  # fmt: skip
    """δ_t = f′(z_t) ⊙ (W_hhᵀ δ_{t+1} + ∂L/∂h_t);  ∂L/∂W_hh = Σ_t δ_t h_{t−1}ᵀ, ∂L/∂b_hh = Σ δ_t."""
    W_hh = p["weight_hh"]
    z, h = tape.z, tape.h
    T, H = len(z), z.shape[-1]
    f_prime = act.derivative(z, h[1:])  # (T, N, H)
    delta, dL_dh = np.empty_like(z), np.empty_like(z)
    from_next = _zeros_if_none(dL_dfinal[0], h[0])  # W_hhᵀ δ_{t+1}; at t = T: ∂L/∂h_n
    for t in reversed(range(T)):
        dL_dh[t] = dL_dh_out[t] + from_next  # both routes into h_t
        delta[t] = f_prime[t] * dL_dh[t]
        from_next = delta[t] @ W_hh  # W_hhᵀ δ_t, for step t − 1
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


def lstm_forward(gx: Array, state0: State, p: Mapping[str, Array]) -> tuple[Array, State, LSTMTape]:
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
        c[t + 1] = f * c[t] + i * g
        tanh_c[t] = np.tanh(c[t + 1])
        if W_hr is None:
            h[t + 1] = o * tanh_c[t]
        else:
            m[t] = o * tanh_c[t]
            h[t + 1] = m[t] @ W_hr.T  # (N, H) → (N, P)
    return h[1:], (h[T], c[T]), LSTMTape(gates, c, tanh_c, h, m)


def lstm_backward(
    dL_dh_out: Array, dL_dfinal: tuple[Array | None, ...], tape: LSTMTape, p: Mapping[str, Array]
) -> tuple[Array, State, dict[str, Array], dict[str, Array]]:
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
    from_next = _zeros_if_none(dL_dfinal[0], h[0])  # W_hhᵀ δ_{t+1}; at t = T: ∂L/∂h_n
    dL_dc_n = _zeros_if_none(dL_dfinal[1], c[0])
    for t in reversed(range(T)):
        dL_dh[t] = dL_dh_out[t] + from_next
        dL_dm = dL_dh[t] if W_hr is None else dL_dh[t] @ W_hr  # h_t = m_t W_hrᵀ
        # the constant error carousel: the cell state's own route back in time
        dL_dc_next = dL_dc[t + 1] * f[t + 1] if t + 1 < T else dL_dc_n
        dL_dc[t] = dL_dc_next + dL_dm * dm_dc[t]
        delta[t, :, :H] = dL_dc[t] * dc_di[t]
        delta[t, :, H : 2 * H] = dL_dc[t] * dc_df[t]
        delta[t, :, 2 * H : 3 * H] = dL_dc[t] * dc_dg[t]
        delta[t, :, 3 * H :] = dL_dm * dm_do[t]
        from_next = delta[t] @ W_hh
    dL_dc0 = dL_dc[0] * f[0]  # the carousel's last step, into c0
    P = h.shape[-1]
    grads = {"weight_hh": delta.reshape(-1, 4 * H).T @ h[:-1].reshape(-1, P)}
    if "bias_hh" in p:
        grads["bias_hh"] = delta.sum(axis=(0, 1))
    if W_hr is not None:
        grads["weight_hr"] = dL_dh.reshape(-1, P).T @ tape.m.reshape(-1, H)  # Σ_t ∂L/∂h_t m_tᵀ
    trace = {"delta_hh": delta, "dL_dh": dL_dh, "dL_dc": dL_dc}
    return delta, (from_next, dL_dc0), grads, trace


@dataclass
class GRUTape:
    r: Array  # (T, N, H)
    z: Array  # (T, N, H)
    n: Array  # (T, N, H)
    gh_n: Array  # (T, N, H): h_{t−1} W_hnᵀ + b_hn, the term the reset gate multiplies
    h: Array  # (T + 1, N, H): h[0] = h0


def gru_forward(gx: Array, state0: State, p: Mapping[str, Array]) -> tuple[Array, State, GRUTape]:
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
        h[t + 1] = (1.0 - z[t]) * n[t] + z[t] * h[t]
    return h[1:], (h[T],), GRUTape(r, z, n, gh_n, h)


def gru_backward(
    dL_dh_out: Array, dL_dfinal: tuple[Array | None, ...], tape: GRUTape, p: Mapping[str, Array]
) -> tuple[Array, State, dict[str, Array], dict[str, Array]]:
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
    from_next = _zeros_if_none(dL_dfinal[0], h[0])
    for t in reversed(range(T)):
        dL_dh[t] = dL_dh_out[t] + from_next
        delta_n = dL_dh[t] * dh_dn[t]
        delta[t, :, :H] = delta_n * dn_dr[t]  # δ_r
        delta[t, :, H : 2 * H] = dL_dh[t] * dh_dz[t]  # δ_z
        delta[t, :, 2 * H :] = delta_n
        delta_hh[t, :, : 2 * H] = delta[t, :, : 2 * H]
        delta_hh[t, :, 2 * H :] = r[t] * delta_n  # the reset gate multiplies the hidden side
        from_next = dL_dh[t] * z[t] + delta_hh[t] @ W_hh
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
        lambda gx, s, p: rnn_forward(gx, s, p, act),
        lambda d, df, tape, p: rnn_backward(d, df, tape, p, act),
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


# --- what backward leaves for a trace ------------------------------------------------------


@dataclass
class BPTT:
    """What backprop through time computed inside one recurrent layer, for a trace.

    Keyed by torch's parameter suffix: "l0", "l0_reverse", "l1", … for RNN/LSTM/GRU (δ under
    "l1_reverse" is the δ of weight_ih_l1_reverse), "" for a cell. Every array is time-major,
    (T, N, ·) whatever batch_first says, t in the sequence's own order (the reverse
    direction's step t is input position t), N = 1 kept for unbatched input. Cells, one step,
    have no time axis: (N, ·).

    - `delta`    (T, N, G·H), G = 1, 4, 3: ∂L/∂(x_t W_ihᵀ + b_ih), the gate pre-activations,
      gates in torch's order (LSTM i, f, g, o; GRU r, z, n). ∂L/∂W_ih = Σ_t δ_tᵀ x_t.
    - `delta_hh` (T, N, G·H): ∂L/∂(h_{t−1} W_hhᵀ + b_hh); the same array as `delta` except a
      GRU's n block, r_t ⊙ δ_n (the reset gate multiplies the hidden side of n).
    - `dL_dh`    (T, N, H_out): ∂L/∂h_t, h_t this layer-direction's output at step t, summed
      over both routes (the layer's output at t, and step t + 1 through W_hh; the last step
      also gets ∂L/∂h_n). For a loss at the last step only, this is the gradient flowing
      back in time.
    - `dL_dc`    (T, N, H), LSTM only: ∂L/∂c_t, the constant error carousel.
    """

    delta: dict[str, Array] = field(default_factory=dict)
    delta_hh: dict[str, Array] = field(default_factory=dict)
    dL_dh: dict[str, Array] = field(default_factory=dict)
    dL_dc: dict[str, Array] = field(default_factory=dict)

    def ordered(self, keys: list[str]) -> BPTT:
        """The same record with its keys in `keys`' order (backward fills it top layer first)."""
        return BPTT(*({k: d[k] for k in keys if k in d} for d in
                      (self.delta, self.delta_hh, self.dL_dh, self.dL_dc)))  # fmt: skip

    def add(self, key: str, delta: Array, trace: Mapping[str, Array]) -> None:
        self.delta[key] = delta
        self.delta_hh[key] = trace["delta_hh"]
        self.dL_dh[key] = trace["dL_dh"]
        if "dL_dc" in trace:
            self.dL_dc[key] = trace["dL_dc"]


@dataclass
class RecurrentCache:
    """Forward's tape: each layer's input (time-major) and each direction's kernel tape."""

    inputs: list[Array]  # layer k's input, (T, N, in_k)
    tapes: dict[str, Any]  # by suffix "l{k}[_reverse]"
    batched: bool
    #: filled by backward: δ and ∂L/∂h of every step (see BPTT); None until backward ran.
    bptt: BPTT | None = None


# --- checks, before any arithmetic ---------------------------------------------------------


def _positive_int(what: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_params(
    owner: str, given: Mapping[str, Any], expected: dict[str, Shape]
) -> dict[str, Array]:
    """The parameters as float64 arrays in torch's order; names and shapes as `expected`."""
    missing = [k for k in expected if k not in given]
    extra = sorted(k for k in given if k not in expected)
    if missing or extra:
        raise ValueError(
            f"{owner}: expected parameters {list(expected)}; missing {missing}, unexpected {extra}"
        )
    params = {}
    for name, shape in expected.items():
        value = np.asarray(given[name], dtype=np.float64)
        if value.shape != shape:
            raise ValueError(f"{owner}: {name} must have shape {shape}, got {value.shape}")
        params[name] = value
    return params


def _check_state(what: str, got: Shape, want: Shape) -> None:
    if tuple(got) != want:
        raise ValueError(f"expected {what} of shape {want}, got {tuple(got)}")


# --- the layers ------------------------------------------------------------------------------


class RNNBase(Layer):
    """nn.RNN / nn.LSTM / nn.GRU in eval mode: L layers × D directions of one cell kind.

    `params` maps torch's names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
    weight_hr_l0 with proj_size, `_reverse` for the second direction) to arrays in torch's
    layouts (copied as float64 when given in another dtype); the other arguments are the
    torch module's attributes of the same names, so converting a module m is

        LSTM(**{a: getattr(m, a) for a in LSTM.OPTIONS}, initial_state=…,
             params={n: p.detach().numpy() for n, p in m.named_parameters()})

    `initial_state`: forward takes h0 (LSTM: h0 and c0) after x, as torch's hx; otherwise the
    state starts at zero. `mode` (RNNBase only) is a key of CELLS.
    """

    reports_delta = True
    decayed = ()  # NOTE: the contract's L2 covers Linear and Conv weights only
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
        "bidirectional",
    )  # fmt: skip

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__()
        self.cell = _cell(mode)
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.proj_size = _positive_int("proj_size", proj_size, minimum=0)
        if self.proj_size and mode != "LSTM":
            raise ValueError("proj_size is only supported for LSTM, not RNN or GRU")
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size {proj_size} "
                f"and hidden_size {hidden_size}"
            )
        if isinstance(dropout, bool) or not (
            isinstance(dropout, (int, float)) and 0 <= dropout <= 1
        ):
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout!r}")
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.initial_state = bool(initial_state)
        self.n_inputs = 1 + (self.cell.n_states if self.initial_state else 0)
        self.n_outputs = 1 + self.cell.n_states
        self.params = _check_params(type(self).__name__, params, self._expected_params())

    # the names, in torch's order, and shapes of the parameters
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj_size or self.hidden_size

    def suffixes(self) -> list[str]:
        """The layer-direction keys of params and of BPTT: "l0", "l0_reverse", "l1", …."""
        dirs = ("", "_reverse")[: self.num_directions]
        return [f"l{k}{d}" for k in range(self.num_layers) for d in dirs]

    def _expected_params(self) -> dict[str, Shape]:
        G, H = self.cell.gates, self.hidden_size
        shapes: dict[str, Shape] = {}
        for s in self.suffixes():
            k = int(s[1:].split("_")[0])
            in_k = self.input_size if k == 0 else self.num_directions * self.h_out
            shapes[f"weight_ih_{s}"] = (G * H, in_k)
            shapes[f"weight_hh_{s}"] = (G * H, self.h_out)
            if self.bias:
                shapes[f"bias_ih_{s}"] = (G * H,)
                shapes[f"bias_hh_{s}"] = (G * H,)
            if self.proj_size:
                shapes[f"weight_hr_{s}"] = (self.proj_size, H)
        return shapes

    def _direction_params(self, suffix: str) -> dict[str, Array]:
        """The parameters of one layer-direction under their short names ("weight_hh", …)."""
        tail = f"_{suffix}"
        return {n[: -len(tail)]: v for n, v in self.params.items() if n.endswith(tail)}

    def __repr__(self) -> str:
        opts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            opts.append(f"num_layers={self.num_layers}")
        for name in ("bias", "batch_first", "bidirectional", "initial_state"):
            if getattr(self, name) != (name == "bias"):
                opts.append(f"{name}={getattr(self, name)}")
        if self.proj_size:
            opts.append(f"proj_size={self.proj_size}")
        return f"{type(self).__name__}({', '.join(opts)})"

    # --- shapes ---

    def _state_shapes(self, batch: int | None) -> tuple[Shape, ...]:
        n = () if batch is None else (batch,)
        LD = self.num_layers * self.num_directions
        return ((LD, *n, self.h_out), (LD, *n, self.hidden_size))[: self.cell.n_states]

    def shape(self, *in_shapes: Shape) -> tuple[Shape, ...]:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input(s), got {len(in_shapes)}")
        x = tuple(in_shapes[0])
        if len(x) not in (2, 3) or x[-1] != self.input_size:
            layout = "(N, T, I)" if self.batch_first else "(T, N, I)"
            raise ValueError(
                f"expected input {layout} or unbatched (T, I) with I = {self.input_size}, "
                f"got shape {x}"
            )
        batched = len(x) == 3
        T, N = (x[1], x[0]) if batched and self.batch_first else (x[0], x[1] if batched else None)
        if T < 1:
            raise ValueError(f"expected sequence length to be larger than 0, got shape {x}")
        names = ("h0", "c0")
        for name, got, want in zip(names, in_shapes[1:], self._state_shapes(N), strict=False):
            _check_state(name, got, want)
        out_feat = self.num_directions * self.h_out
        if not batched:
            out: Shape = (T, out_feat)
        else:
            out = (N, T, out_feat) if self.batch_first else (T, N, out_feat)
        return (out, *self._state_shapes(N))

    # --- layouts: everything inside is time-major and batched, (T, N, ·) ---

    def _to_time_major(self, a: Array, batched: bool) -> Array:
        if not batched:
            return a[:, None]  # (T, I) → (T, 1, I)
        return a.transpose(1, 0, 2) if self.batch_first else a

    def _from_time_major(self, a: Array, batched: bool) -> Array:
        if not batched:
            return a[:, 0]
        return a.transpose(1, 0, 2) if self.batch_first else a

    # --- the pair ---

    def forward(self, *a_prev: Array) -> tuple[tuple[Array, ...], RecurrentCache]:
        a_prev = tuple(np.asarray(a, dtype=np.float64) for a in a_prev)
        self.shape(*(a.shape for a in a_prev))
        batched = a_prev[0].ndim == 3
        x = self._to_time_major(a_prev[0], batched)  # (T, N, I)
        N = x.shape[1]
        states0 = [s if batched else s[:, None] for s in a_prev[1:]]  # (L·D, N, ·) each
        if not states0:
            states0 = [np.zeros(s) for s in self._state_shapes(N)]
        D = self.num_directions
        inputs, tapes, finals = [], {}, [[] for _ in range(self.cell.n_states)]
        layer_in = x
        for k in range(self.num_layers):
            inputs.append(layer_in)
            outs = []
            for d in range(D):
                s = self.suffixes()[k * D + d]
                p = self._direction_params(s)
                gx = _affine(layer_in, p["weight_ih"].T, _bias(p, "bias_ih"))  # (T, N, G·H)
                if d == 1:
                    gx = gx[::-1]  # the reverse direction reads t = T−1 … 0
                state0 = tuple(s0[k * D + d] for s0 in states0)
                h, final, tapes[s] = self.cell.forward(gx, state0, p)
                outs.append(h[::-1] if d == 1 else h)
                for j, v in enumerate(final):
                    finals[j].append(v)
            layer_in = np.concatenate(outs, axis=-1) if D == 2 else outs[0]  # (T, N, D·H_out)
            # NOTE: inter-layer dropout is the identity in eval mode
        out = self._from_time_major(layer_in, batched)
        final_states = [np.stack(f) if batched else np.stack(f)[:, 0] for f in finals]
        return (out, *final_states), RecurrentCache(inputs, tapes, batched)

    def backward_trace(
        self, delta: tuple[Array | None, ...], cache: RecurrentCache, *, input_grad: bool = True
    ) -> tuple[Any, dict[str, Array], BPTT]:
        """BPTT over every layer, top to bottom; ∂L/∂x = Σ_d Σ_t δ_t W_ih, ∂L/∂W_ih = Σ_t δ_tᵀ x_t.

        Returns (δ_prev, grads, BPTT): δ_prev is ∂L/∂x, or (∂L/∂x, ∂L/∂h0[, ∂L/∂c0]) with
        initial_state; grads by torch's names. With input_grad=False ∂L/∂x is not formed.
        """
        if not isinstance(delta, tuple) or len(delta) != self.n_outputs:
            raise ValueError(
                f"{type(self).__name__} has {self.n_outputs} outputs; backward expects a tuple "
                f"of {self.n_outputs} δ (None for an unused output), got {type(delta).__name__}"
            )
        batched, D = cache.batched, self.num_directions
        T, N = cache.inputs[0].shape[:2]
        out_shape = (T, N, D * self.h_out)
        d_out = delta[0]
        d_layer = (
            np.zeros(out_shape)
            if d_out is None
            else self._to_time_major(np.asarray(d_out), batched)
        )
        d_finals = [
            None if d is None else (np.asarray(d) if batched else np.asarray(d)[:, None])
            for d in delta[1:]
        ]  # each (L·D, N, ·) or None
        grads: dict[str, Array] = {}
        d_states0: list[list[Array]] = [[] for _ in range(self.cell.n_states)]
        bptt = BPTT()
        for k in reversed(range(self.num_layers)):
            x_k = cache.inputs[k]  # (T, N, in_k)
            d_x_k = None
            for d in range(D):
                s = self.suffixes()[k * D + d]
                p = self._direction_params(s)
                dL_dh_out = d_layer[..., d * self.h_out : (d + 1) * self.h_out]
                d_final = tuple(None if f is None else f[k * D + d] for f in d_finals)
                if d == 1:
                    dL_dh_out = dL_dh_out[::-1]
                delta_k, d_state0, g_hh, trace = self.cell.backward(
                    dL_dh_out, d_final, cache.tapes[s], p
                )
                if d == 1:  # back to the sequence's own time order
                    delta_k = delta_k[::-1]
                    trace = {name: a[::-1] for name, a in trace.items()}
                bptt.add(s, delta_k, trace)
                G_H = delta_k.shape[-1]
                x_rows = x_k.reshape(-1, x_k.shape[-1])  # (T·N, in_k)
                grads[f"weight_ih_{s}"] = delta_k.reshape(-1, G_H).T @ x_rows  # Σ_t δ_tᵀ x_t
                grads[f"weight_hh_{s}"] = g_hh["weight_hh"]
                if self.bias:
                    grads[f"bias_ih_{s}"] = delta_k.sum(axis=(0, 1))
                    grads[f"bias_hh_{s}"] = g_hh["bias_hh"]
                if self.proj_size:
                    grads[f"weight_hr_{s}"] = g_hh["weight_hr"]
                for j, v in enumerate(d_state0):
                    d_states0[j].append(v)
                if k > 0 or input_grad:
                    g = _affine(delta_k, p["weight_ih"])  # (T, N, in_k): Σ over directions
                    d_x_k = g if d_x_k is None else d_x_k + g
            d_layer = d_x_k  # NOTE: eval-mode dropout between layers passes δ unchanged
        grads = {name: grads[name] for name in self.params}  # torch's order
        # states were collected top layer first: put them back in torch's k·D + d order
        d_states = []
        for per in d_states0:
            per_layer = [per[i * D : (i + 1) * D] for i in range(self.num_layers)][::-1]
            stacked = np.stack([v for layer in per_layer for v in layer])  # (L·D, N, ·)
            d_states.append(stacked if batched else stacked[:, 0])
        d_x = None if d_layer is None else self._from_time_major(d_layer, batched)
        bptt = bptt.ordered(self.suffixes())
        if not self.initial_state:
            return d_x, grads, bptt
        return (d_x, *d_states), grads, bptt

    def backward(
        self, delta: tuple[Array | None, ...], cache: RecurrentCache
    ) -> tuple[Any, dict[str, Array]]:
        """(∂L/∂x [, ∂L/∂h0, ∂L/∂c0]), ∂L/∂θ; leaves the per-step trace in cache.bptt."""
        d_prev, grads, cache.bptt = self.backward_trace(delta, cache)
        return d_prev, grads

    def param_grads(
        self, delta: tuple[Array | None, ...], cache: RecurrentCache
    ) -> dict[str, Array]:
        _, grads, cache.bptt = self.backward_trace(delta, cache, input_grad=False)
        return grads


class RNN(RNNBase):
    """nn.RNN: h_t = f(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh), f = tanh or relu."""

    OPTIONS = (*RNNBase.OPTIONS, "nonlinearity")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        self.nonlinearity = nonlinearity
        super().__init__(
            _rnn_mode(nonlinearity), input_size, hidden_size, num_layers, bias, batch_first,
            dropout, bidirectional, params=params, initial_state=initial_state,
        )  # fmt: skip

    def __repr__(self) -> str:
        text = super().__repr__()
        return text if self.nonlinearity == "tanh" else f"{text[:-1]}, nonlinearity='relu')"


class LSTM(RNNBase):
    """nn.LSTM: gates i, f, g, o; c_t = f ⊙ c_{t−1} + i ⊙ g; h_t = o ⊙ tanh(c_t) (W_hrᵀ)."""

    OPTIONS = (*RNNBase.OPTIONS, "proj_size")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, params=params, initial_state=initial_state,
        )  # fmt: skip


class GRU(RNNBase):
    """nn.GRU: gates r, z, n; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1−z) n + z h."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, params=params, initial_state=initial_state,
        )  # fmt: skip


# --- the cells: one step, the kernels above with T = 1 ------------------------------------


@dataclass
class CellCache:
    """Forward's tape for one step: the kernel's tape (T = 1) and the input x (N, I)."""

    tape: Any
    x: Array
    batched: bool
    #: filled by backward: δ (N, G·H) and ∂L/∂h′ (N, H) under key "" (see BPTT)
    bptt: BPTT | None = None


class CellBase(Layer):
    """nn.RNNCell / nn.LSTMCell / nn.GRUCell: one step of the kernels above.

    Takes x (N, I) or unbatched (I,), and h (LSTM: h and c) of shape (N, H) / (H,) when
    built with `initial_state=True` (else zero). Returns h′ (LSTM: the pair (h′, c′),
    n_outputs = 2). Parameters: weight_ih, weight_hh, bias_ih, bias_hh (torch's names).
    The trace (cache.bptt, key "") has no time axis: δ (N, G·H), ∂L/∂h′ (N, H).
    """

    reports_delta = True
    decayed = ()
    OPTIONS: ClassVar[tuple[str, ...]] = ("input_size", "hidden_size", "bias")

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__()
        self.cell = _cell(mode)
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.bias, self.initial_state = bool(bias), bool(initial_state)
        self.n_inputs = 1 + (self.cell.n_states if self.initial_state else 0)
        self.n_outputs = self.cell.n_states
        GH, H = self.cell.gates * self.hidden_size, self.hidden_size
        expected: dict[str, Shape] = {"weight_ih": (GH, self.input_size), "weight_hh": (GH, H)}
        if self.bias:
            expected |= {"bias_ih": (GH,), "bias_hh": (GH,)}
        self.params = _check_params(type(self).__name__, params, expected)

    def __repr__(self) -> str:
        opts = f"{self.input_size}, {self.hidden_size}"
        opts += "" if self.bias else ", bias=False"
        opts += ", initial_state=True" if self.initial_state else ""
        return f"{type(self).__name__}({opts})"

    def shape(self, *in_shapes: Shape) -> Shape | tuple[Shape, ...]:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input(s), got {len(in_shapes)}")
        x = tuple(in_shapes[0])
        if len(x) not in (1, 2) or x[-1] != self.input_size:
            raise ValueError(
                f"expected input (N, {self.input_size}) or unbatched ({self.input_size},), "
                f"got shape {x}"
            )
        h_shape = (*x[:-1], self.hidden_size)
        for name, got in zip(("h", "c"), in_shapes[1:], strict=False):
            _check_state(name, got, h_shape)
        return h_shape if self.n_outputs == 1 else (h_shape, h_shape)

    def forward(self, *a_prev: Array) -> tuple[Any, CellCache]:
        a_prev = tuple(np.asarray(a, dtype=np.float64) for a in a_prev)
        self.shape(*(a.shape for a in a_prev))
        batched = a_prev[0].ndim == 2
        x = a_prev[0] if batched else a_prev[0][None]  # (N, I)
        states = [s if batched else s[None] for s in a_prev[1:]]
        if not states:
            states = [np.zeros((len(x), self.hidden_size))] * self.cell.n_states
        p = self.params
        gx = (x @ p["weight_ih"].T + _bias(p, "bias_ih"))[None]  # (1, N, G·H)
        h, final, tape = self.cell.forward(gx, tuple(states), p)
        outs = [v if batched else v[0] for v in final]  # h′ (, c′), each (N, H)
        return _one_or_tuple(outs), CellCache(tape, x, batched)

    def backward_trace(
        self, delta: Any, cache: CellCache, *, input_grad: bool = True
    ) -> tuple[Any, dict[str, Array], BPTT]:
        """One step of the layer's BPTT: ∂L/∂x = δ W_ih, ∂L/∂W_ih = δᵀ x, plus the kernel's."""
        tape, x, batched = cache.tape, cache.x, cache.batched
        deltas = (delta,) if self.n_outputs == 1 else delta
        if not isinstance(deltas, tuple) or len(deltas) != self.n_outputs:
            raise ValueError(
                f"{type(self).__name__} has {self.n_outputs} output(s); backward expects "
                f"{'a tuple of 2 δ' if self.n_outputs == 2 else 'one δ'}, "
                f"got {type(delta).__name__}"
            )
        deltas = tuple(
            None if d is None else (np.asarray(d) if batched else np.asarray(d)[None])
            for d in deltas
        )
        H = self.hidden_size
        # the new state h′ is the kernel's final state; its "output sequence" gets no δ
        zero_out = np.zeros((1, len(x), H))
        delta_k, d_state0, g_hh, trace = self.cell.backward(zero_out, deltas, tape, self.params)
        delta_k = delta_k[0]  # (N, G·H)
        grads = {"weight_ih": delta_k.T @ x, "weight_hh": g_hh["weight_hh"]}
        if self.bias:
            grads |= {"bias_ih": delta_k.sum(axis=0), "bias_hh": g_hh["bias_hh"]}
        grads = {name: grads[name] for name in self.params}
        bptt = BPTT()
        bptt.add("", delta_k, {name: a[0] for name, a in trace.items()})
        d_x = delta_k @ self.params["weight_ih"] if input_grad else None
        unbatch = (lambda a: a) if batched else (lambda a: None if a is None else a[0])
        if not self.initial_state:
            return unbatch(d_x), grads, bptt
        return tuple(unbatch(a) for a in (d_x, *d_state0)), grads, bptt

    def backward(self, delta: Any, cache: CellCache) -> tuple[Any, dict[str, Array]]:
        """(∂L/∂x [, ∂L/∂h, ∂L/∂c]), ∂L/∂θ; leaves the step's trace in cache.bptt."""
        d_prev, grads, cache.bptt = self.backward_trace(delta, cache)
        return d_prev, grads

    def param_grads(self, delta: Any, cache: CellCache) -> dict[str, Array]:
        _, grads, cache.bptt = self.backward_trace(delta, cache, input_grad=False)
        return grads


class RNNCell(CellBase):
    """nn.RNNCell: h′ = f(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)."""

    OPTIONS = (*CellBase.OPTIONS, "nonlinearity")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        self.nonlinearity = nonlinearity
        super().__init__(
            _rnn_mode(nonlinearity), input_size, hidden_size, bias, params=params,
            initial_state=initial_state,
        )  # fmt: skip


class LSTMCell(CellBase):
    """nn.LSTMCell: (h′, c′) from one LSTM step."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, bias, params=params, initial_state=initial_state
        )


class GRUCell(CellBase):
    """nn.GRUCell: h′ from one GRU step."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, bias, params=params, initial_state=initial_state
        )
