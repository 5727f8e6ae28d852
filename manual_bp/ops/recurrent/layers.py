"""nn.RNN, nn.LSTM, nn.GRU as layers: L layers × D directions of one cell kind (the kernels in
manual_bp.ops.recurrent.kernels), in torch's layouts, and the record of backprop through time
(`BPTT`) that `backward_trace` returns beside δ_prev and ∂L/∂θ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.recurrent.kernels import _affine, _bias, _cell, _rnn_mode

# --- what backward_trace returns beside δ_prev and ∂L/∂θ ------------------------------------


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

    With `lengths`, δ and ∂L/∂c_t (of the step's new cell) are 0 past a sample's length, and
    ∂L/∂h_t there is what passes through the frozen state.
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
    valid: Array | None = None  # (T, N, 1): t < L_b, with `lengths`


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


class TracedLayer(Layer):
    """A layer whose backward is its `backward_trace` (the BPTT record of every step) without
    the record: the recurrent layers, the cells and the layer on packed data."""

    inner_trace = True

    def backward(self, delta: Any, cache: Any) -> tuple[Any, dict[str, Array]]:
        """(∂L/∂x [, ∂L/∂h0, ∂L/∂c0]), ∂L/∂θ: backward_trace without its record."""
        d_prev, grads, _ = self.backward_trace(delta, cache)
        return d_prev, grads

    def param_grads(self, delta: Any, cache: Any) -> dict[str, Array]:
        return self.backward_trace(delta, cache, input_grad=False)[1]


class RNNBase(TracedLayer):
    """nn.RNN / nn.LSTM / nn.GRU in eval mode: L layers × D directions of one cell kind.

    `params` maps torch's names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
    weight_hr_l0 with proj_size, `_reverse` for the second direction) to arrays in torch's
    layouts (copied as float64 when given in another dtype); the other arguments are the
    torch module's attributes of the same names, so converting a module m is

        LSTM(**{a: getattr(m, a) for a in LSTM.OPTIONS}, initial_state=…,
             params={n: p.detach().numpy() for n, p in m.named_parameters()})

    `initial_state`: forward takes h0 (LSTM: h0 and c0) after x, as torch's hx; otherwise the
    state starts at zero. `mode` (RNNBase only) is a key of CELLS.

    `lengths` (one per sample, batched input only): sample b's sequence is its first L_b steps,
    as a PackedSequence's (manual_bp.ops.recurrent.packed): the recurrence runs t = 0..L_b − 1
    (the reverse direction L_b − 1..0), h_n is the state after it, the outputs past L_b are 0.
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
        lengths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.cell = _cell(mode)
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
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
        if self.lengths is not None:
            L = self.lengths
            if not batched or L.shape != (N,) or L.min() < 1 or L.max() > T:
                raise ValueError(
                    f"expected lengths of the {N} samples, each in 1..{T}, for a batched input; "
                    f"got lengths {L.tolist()} for an input of shape {x}"
                )
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
        T, N = x.shape[:2]
        valid = None if self.lengths is None else self._valid(T)
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
                v = None if valid is None else valid[::-1] if d == 1 else valid
                h, final, tapes[s] = self.cell.forward(gx, state0, p, v)
                outs.append(h[::-1] if d == 1 else h)
                for j, v in enumerate(final):
                    finals[j].append(v)
            layer_in = np.concatenate(outs, axis=-1) if D == 2 else outs[0]  # (T, N, D·H_out)
            # NOTE: inter-layer dropout is the identity in eval mode
        out = self._from_time_major(layer_in, batched)
        final_states = [np.stack(f) if batched else np.stack(f)[:, 0] for f in finals]
        return (out, *final_states), RecurrentCache(inputs, tapes, batched, valid)

    def _valid(self, T: int) -> Array:
        """v[t, b] = t < L_b, (T, N, 1): the steps inside each sample's sequence."""
        return (np.arange(T)[:, None] < self.lengths[None, :])[..., None]

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
                v = cache.valid
                if d == 1:
                    dL_dh_out = dL_dh_out[::-1]
                    v = None if v is None else v[::-1]
                delta_k, d_state0, g_hh, trace = self.cell.backward(
                    dL_dh_out, d_final, cache.tapes[s], p, v
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
        lengths: Sequence[int] | None = None,
    ) -> None:
        self.nonlinearity = nonlinearity
        super().__init__(
            _rnn_mode(nonlinearity), input_size, hidden_size, num_layers, bias, batch_first,
            dropout, bidirectional, params=params, initial_state=initial_state,
            lengths=lengths,
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
        lengths: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, params=params, initial_state=initial_state,
            lengths=lengths,
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
        lengths: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, params=params, initial_state=initial_state,
            lengths=lengths,
        )  # fmt: skip
