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

Sequences of several lengths (`lengths`, one per sample, as a PackedSequence holds them): a
step t ≥ L_b leaves sample b's state as it was, h_t = v_t ⊙ h_new + (1 − v_t) ⊙ h_{t−1} with
v_t = [t < L_b] (c_t alike), and its output is 0; backprop through time splits ∂L/∂h_t the
same way. The reverse direction reads v flipped, so it starts at step L_b − 1.

What backprop through time saw inside the layer (δ and ∂L/∂h for every time step) is the
`BPTT` record that `backward_trace(delta, cache)` returns beside δ_prev and ∂L/∂θ, the layer
protocol's declared inner trace (manual_bp.ops.base.Layer.inner_trace; see `BPTT` for its
layout). A network run with a trace keeps it in `Gradients.traces`.

| module    | what lives there                                                          |
|-----------|---------------------------------------------------------------------------|
| `kernels` | one direction of one layer per cell: forward, BPTT, the table `CELLS`      |
| `layers`  | RNN, LSTM, GRU (layers × directions), the `BPTT` record, parameter checks |
| `cells`   | RNNCell, LSTMCell, GRUCell: one step                                      |
| `packed`  | PackedSequence's layout: pack, pad, and a layer run on packed data        |
"""

from manual_bp.ops.activations import get_activation
from manual_bp.ops.recurrent.cells import CellBase, CellCache, GRUCell, LSTMCell, RNNCell
from manual_bp.ops.recurrent.kernels import (
    CELLS,
    RNN_NONLINEARITIES,
    Cell,
    GRUTape,
    LSTMTape,
    RNNTape,
    State,
    gru_backward,
    gru_forward,
    lstm_backward,
    lstm_forward,
    rnn_backward,
    rnn_forward,
)
from manual_bp.ops.recurrent.layers import BPTT, GRU, LSTM, RNN, RecurrentCache, RNNBase
from manual_bp.ops.recurrent.packed import (
    PackedRNN,
    PackPadded,
    PadPacked,
    lengths_of,
    pack,
    pad,
)

__all__ = [
    "BPTT",
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "RNN_NONLINEARITIES",
    "Cell",
    "CellBase",
    "CellCache",
    "GRUCell",
    "GRUTape",
    "LSTMCell",
    "LSTMTape",
    "PackPadded",
    "PackedRNN",
    "PadPacked",
    "RNNBase",
    "RNNCell",
    "RNNTape",
    "RecurrentCache",
    "State",
    "get_activation",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lengths_of",
    "lstm_forward",
    "pack",
    "pad",
    "rnn_backward",
    "rnn_forward",
]
