"""The 2-2-2 network of Matt Mazur, "A Step by Step Backpropagation Example" (2015,
https://mattmazur.com/2015/03/17/a-step-by-step-backpropagation-example/): sigmoid on both
layers and E_total = Σ ½(target − out)², with the post's inputs, weights and targets.

    net_h = W1 · i + b1,  out_h = σ(net_h),  net_o = W2 · out_h + b2,  out_o = σ(net_o)

Weights in torch's layout (out, in): W1 = [[w1, w2], [w3, w4]], W2 = [[w5, w6], [w7, w8]].
"""

from __future__ import annotations

import numpy as np

from manual_bp.losses import HalfSquaredError
from manual_bp.network import Network, mlp

INPUTS = np.array([[0.05, 0.10]])  # i1, i2
TARGETS = np.array([[0.01, 0.99]])  # o1, o2
W1 = np.array([[0.15, 0.20], [0.25, 0.30]])  # w1 w2 / w3 w4
B1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.45], [0.50, 0.55]])  # w5 w6 / w7 w8
B2 = np.array([0.60, 0.60])
LEARNING_RATE = 0.5


def mazur_network() -> Network:
    """The post's network, layers named "1" (hidden h1, h2) and "2" (output o1, o2)."""
    return mlp(
        [W1.copy(), W2.copy()], [B1.copy(), B2.copy()], "sigmoid", output_activation="sigmoid"
    )


def mazur_loss() -> HalfSquaredError:
    """E_total = Σ ½ (target − out)²."""
    return HalfSquaredError()


# --- the RNN worked example: a 2-step, 2-unit tanh RNN -------------------------------------
#
#     z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh,   h_t = tanh(z_t),   h_0 = 0
#     E = Σ_t ½ ‖h_t − y_t‖²        (a loss at both steps: two routes into h_1)
#
# Layouts are torch's nn.RNN(1, 2): x (T, N, I) = (2, 1, 1), out (2, 1, 2). W_hh is 0.559 × a
# rotation, so both its singular values are √(0.5² + 0.25²) = 0.559017.

from manual_bp.ops.recurrent import RNN  # noqa: E402  (this section was appended)

RNN_X = np.array([[[1.0]], [[0.5]]])  # x_1, x_2
RNN_TARGETS = np.array([[[0.5, -0.5]], [[1.0, 0.0]]])  # y_1, y_2
RNN_W_IH = np.array([[0.5], [-0.25]])
RNN_W_HH = np.array([[0.5, -0.25], [0.25, 0.5]])
RNN_B_IH = np.array([0.1, 0.0])
RNN_B_HH = np.array([0.0, 0.0])


def rnn_example(*, initial_state: bool = False) -> RNN:
    """The worked example's nn.RNN(1, 2) (tanh, one layer) as a manual_bp layer; with
    initial_state it takes h_0 (give zeros) and returns ∂E/∂h_0 too."""
    params = {"weight_ih_l0": RNN_W_IH, "weight_hh_l0": RNN_W_HH, "bias_ih_l0": RNN_B_IH,
              "bias_hh_l0": RNN_B_HH}  # fmt: skip
    return RNN(1, 2, params={k: v.copy() for k, v in params.items()}, initial_state=initial_state)
