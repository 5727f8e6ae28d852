"""Packed sequences (nn.utils.rnn): the rows of torch's packing ops, and the recurrent
modules' rule on a PackedSequence (manual_bp.ops.recurrent.packed holds the layers).

    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = self.lstm(packed, hx)
    y, lens = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)

torch._pack_padded_sequence is a gather of the padded batch (PackPadded), and
torch._pad_packed_sequence its scatter back (PadPacked); nn.RNN / nn.LSTM / nn.GRU on a
PackedSequence is the layer on the padded batch with each sample's steps past its length
frozen (PackedRNN), the sort and unsort of its states constants; `out.data` is a tensor like
any other. pack_sequence pads its sequences first (torch._C._nn.pad_sequence).

The lengths fix the packed data's shape, so they are constants: lengths that are an input of
the model (or computed from one) are refused, unless enforce_sorted=False sorts them (a sort
of what carries no gradient is a constant, as autograd sees it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from manual_bp.ops import recurrent as R
from manual_bp.ops.padding import Pad
from manual_bp.ops.shape import Stack
from torch_ref.errors import NotCovered, UnsupportedModuleError
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
    Refusal,
    Sample,
    fused,
    number,
    tensor,
)


def constant_ints(x: Any, what: str, name: str) -> np.ndarray:
    """Sequence lengths or batch sizes, which fix the packed shape: constants only."""
    if isinstance(x, Param):
        return x.array()
    if isinstance(x, Ref):
        raise UnsupportedModuleError(
            f"{what}: the {name} are an input of the model or computed from one, and the "
            "packed data's shape depends on their values; the oracle needs them constant: "
            "pass them as a list, or pack with enforce_sorted=False (its sort makes them so)"
        )
    return np.asarray(x, dtype=np.int64)


def _int_constant(name: str, values: np.ndarray) -> Param:
    """An integer output (batch sizes, lengths): a constant, it carries no gradient."""
    return Param(name, torch.as_tensor(values, dtype=torch.int64), False)


def pack_padded_sequence(input: Any, lengths: Any, batch_first: bool = False) -> tuple:
    """torch._pack_padded_sequence (nn.utils.rnn.pack_padded_sequence, pack_sequence): the
    padded batch, sorted by decreasing length, as (data, batch_sizes); data = x[t < L_b]."""
    what = "pack_padded_sequence"
    L = constant_ints(lengths, what, "lengths")
    layer = R.PackPadded(L, batch_first)
    batch_sizes = (L[None, :] > np.arange(L.max())[:, None]).sum(axis=1)  # #{b : L_b > t}
    return Op(layer, (tensor(input, what),)), _int_constant("batch_sizes", batch_sizes)


def pad_packed_sequence(
    data: Any,
    batch_sizes: Any,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple:
    """torch._pad_packed_sequence (nn.utils.rnn.pad_packed_sequence): packed data back to the
    padded batch, padding_value elsewhere (a constant), and the lengths."""
    what = "pad_packed_sequence"
    bs = constant_ints(batch_sizes, what, "batch sizes")
    value = number(padding_value, f"{what} (padding_value)", infinite=True)
    layer = R.PadPacked(bs, batch_first, value, total_length)
    return Op(layer, (tensor(data, what),)), _int_constant("lengths", layer.lengths)


def pad_sequence(
    sequences: Any,
    batch_first: bool = False,
    padding_value: float = 0.0,
    padding_side: str = "right",
) -> Op:
    """torch._C._nn.pad_sequence (nn.utils.rnn.pad_sequence, pack_sequence): each sequence
    (L_i, *) padded with padding_value along its first axis to the longest, then stacked
    (on dim 1, or on dim 0 with batch_first)."""
    what = "pad_sequence"
    xs = [tensor(x, what) for x in sequences]
    value = number(padding_value, f"{what} (padding_value)", infinite=True)
    if padding_side not in ("right", "left"):
        raise ValueError(f"{what}: expected padding_side 'right' or 'left', got {padding_side!r}")
    T = max(x.shape[0] for x in xs)

    def padded(x: Ref | Param) -> Op:
        grow = (0, T - x.shape[0]) if padding_side == "right" else (T - x.shape[0], 0)
        return Op(Pad((0, 0) * (x.ndim - 1) + grow, "constant", value), (x,))

    return Op(Stack(0 if batch_first else 1, len(xs)), tuple(padded(x) for x in xs))


# --- the modules on a PackedSequence -------------------------------------------------


def on_packed(cls: type[R.RNNBase], packed: PackedSequence, x: Ref | Param,
              states: tuple[Ref | Param, ...], options: dict[str, Any],
              params: dict[str, np.ndarray], weights: dict[str, Param],
              as_torch: dict[int, Callable[[tuple], Any]]) -> Op:  # fmt: skip
    """The module on a PackedSequence (data, batch_sizes, sorted_indices, unsorted_indices):
    the layer on the padded batch, sequence-first, each sample's steps past its length frozen;
    it returns a PackedSequence of the same batch sizes and indices, and (h_n, c_n) as torch."""
    what = f"nn.{cls.__name__} on a PackedSequence"
    batch_sizes, order, unorder = packed[1:]
    lengths = R.lengths_of(constant_ints(batch_sizes, what, "batch sizes"))
    sorted_indices = None if order is None else constant_ints(order, what, "sorted indices")
    layer = cls(**(options | {"batch_first": False}), params=params,
                initial_state=bool(states), lengths=lengths)  # fmt: skip
    arrange = as_torch[layer.n_outputs]
    return Op(
        R.PackedRNN(layer, sorted_indices),
        (x, *states),
        fused(**weights),
        outputs=lambda o: arrange(
            (PackedSequence._make((o[0], batch_sizes, order, unorder)), *o[1:])
        ),  # fmt: skip
    )


def functional_rnn(input: Any, *args: Any, **kwargs: Any) -> Any:
    """torch.lstm / gru / rnn_tanh / rnn_relu, the kernels a module runs when it is recorded op
    by op (its weights computed in forward: weight_norm, a parametrization): torch's lowering,
    except on packed data (the form `(data, batch_sizes, hx, …)`), refused."""
    if args and isinstance(args[0], (Ref, Param)) and args[0].ndim == 1:
        raise UnsupportedModuleError(
            "a recurrent module on a PackedSequence whose weights are computed in forward() "
            "(weight_norm, a parametrization) runs torch's packed kernel, which writes its "
            "states in place where the oracle cannot follow; keep the weights parameters, or "
            "pass the padded batch and mask the padded steps out of the loss"
        )
    raise NotCovered("torch's recurrent kernel on a padded batch: its lowering")


# --- samples and refusals ------------------------------------------------------------


class PackedUses(nn.Module):
    """`rnn` on x packed with these lengths (and hx from the inputs after x), the output
    padded back to x's length; it and the final states, flattened into one vector."""

    def __init__(self, rnn: nn.RNNBase, lengths: list[int], enforce_sorted: bool = False) -> None:
        super().__init__()
        self.rnn, self.lengths, self.enforce_sorted = rnn, lengths, enforce_sorted

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        bf = self.rnn.batch_first
        packed = nn.utils.rnn.pack_padded_sequence(
            x, self.lengths, batch_first=bf, enforce_sorted=self.enforce_sorted
        )
        hx = None if not states else states[0] if len(states) == 1 else tuple(states)
        out, h = self.rnn(packed, hx)
        T = x.shape[1 if bf else 0]
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=bf, total_length=T)
        return torch.cat([o.flatten() for o in (padded, *(h if isinstance(h, tuple) else (h,)))])


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _packed(name: str, make: Callable[[], nn.RNNBase], x_shape: tuple[int, ...],
            lengths: list[int], *, hx: bool = False, sorted: bool = False) -> Sample:  # fmt: skip
    """`make()` (torch's init, float64) on a packed batch of x_shape with these lengths, and
    random states with `hx`; everything drawn from the name."""
    seed = zlib.crc32(name.encode())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = make().double()
    N, LD = len(lengths), rnn.num_layers * (2 if rnn.bidirectional else 1)
    shapes = [(LD, N, rnn.proj_size or rnn.hidden_size), (LD, N, rnn.hidden_size)]
    states = [_randn(*s, seed=seed + 2 + k) for k, s in enumerate(shapes)] if hx else []
    states = states[: 2 if isinstance(rnn, nn.LSTM) else 1]
    inputs = (_randn(*x_shape, seed=seed + 1), *states)
    return Sample(name, inputs, module=PackedUses(rnn, lengths, sorted))


def packed_samples() -> dict[type[nn.Module], list[Sample]]:
    """Packed samples of each module row (torch_ref.registry.recurrent): unsorted lengths with
    a tie and a length 1, sorted ones, states given or zero."""
    return {
        nn.RNN: [
            _packed("packed, relu, 2 layers, bidirectional, h0 given",
                    lambda: nn.RNN(3, 4, 2, nonlinearity="relu", bidirectional=True),
                    (5, 3, 3), [3, 1, 3], hx=True),
            _packed("packed, tanh, batch_first, sorted", lambda: nn.RNN(2, 3, batch_first=True),
                    (3, 4, 2), [4, 2, 2], sorted=True),
        ],
        nn.LSTM: [
            _packed("packed, 2 layers, bidirectional, batch_first, (h0, c0) given",
                    lambda: nn.LSTM(3, 4, 2, batch_first=True, bidirectional=True),
                    (3, 5, 3), [2, 5, 1], hx=True),
            _packed("packed, proj_size, bidirectional", lambda: nn.LSTM(2, 3, proj_size=2,
                    bidirectional=True), (4, 3, 2), [1, 4, 3]),
        ],
        nn.GRU: [
            _packed("packed, 2 layers, bidirectional, h0 given",
                    lambda: nn.GRU(3, 4, 2, bidirectional=True), (5, 3, 3), [5, 1, 5], hx=True),
        ],
    }  # fmt: skip


def _pack_samples() -> list[Sample]:
    """Packing alone: its data, sorted or not, batch_first or not, the input longer than the
    longest sequence."""
    pack = nn.utils.rnn.pack_padded_sequence
    return [
        Sample("batch_first, sorted, .data", (_randn(3, 4, 2, seed=0),),
               fn=lambda x: pack(x, [4, 2, 2], batch_first=True).data),
        Sample("sequence-first, unsorted: a tie and a length 1, T longer than the longest",
               (_randn(5, 4, 2, seed=1),),
               fn=lambda x: pack(x, [3, 1, 4, 3], enforce_sorted=False).data),
        Sample("pack_sequence of three sequences", (_randn(4, 3, seed=2), _randn(2, 3, seed=3),
               _randn(3, 3, seed=4)),
               fn=lambda a, b, c: nn.utils.rnn.pack_sequence([a, b, c], enforce_sorted=False).data),
    ]  # fmt: skip


def _pad_samples() -> list[Sample]:
    """Packed, then padded back: padding_value, total_length, batch_first or not."""
    pack, pad = nn.utils.rnn.pack_padded_sequence, nn.utils.rnn.pad_packed_sequence
    return [
        Sample("batch_first, unsorted, padding_value -1, total_length", (_randn(3, 4, 2, seed=5),),
               fn=lambda x: pad(pack(x, [2, 4, 1], batch_first=True, enforce_sorted=False),
                                batch_first=True, padding_value=-1.0, total_length=6)[0]),
        Sample("sequence-first, sorted", (_randn(4, 3, 2, seed=6),),
               fn=lambda x: pad(pack(x, [4, 4, 2]))[0]),
    ]  # fmt: skip


def _pad_sequence_samples() -> list[Sample]:
    pad = nn.utils.rnn.pad_sequence
    xs = (_randn(4, 3, seed=7), _randn(2, 3, seed=8), _randn(4, 3, seed=9))
    return [
        Sample("sequence-first", xs, fn=lambda a, b, c: pad([a, b, c])),
        Sample("batch_first, padding_value 2, left", xs,
               fn=lambda a, b, c: pad([a, b, c], True, 2.0, padding_side="left")),
    ]  # fmt: skip


class _WeightNormed(nn.Module):
    """An LSTM with weight_hh_l0 weight-normalised (computed in forward), on x or x packed."""

    def __init__(self, packed: bool) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            lstm = nn.LSTM(3, 4, batch_first=True).double()
        self.lstm = nn.utils.parametrizations.weight_norm(lstm, "weight_hh_l0")
        self.packed = packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return self.lstm(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, [4, 2], True, enforce_sorted=False)
        return self.lstm(packed)[0].data


def _functional_samples() -> list[Sample]:
    return [Sample("weight_norm on weight_hh, padded batch", (_randn(2, 4, 3, seed=10),),
                   module=_WeightNormed(packed=False))]  # fmt: skip


def _functional_refusals() -> list[Refusal]:
    return [Refusal("weight_norm on weight_hh, packed batch", (_randn(2, 4, 3, seed=10),),
                    UnsupportedModuleError, "runs torch's packed kernel",
                    module=_WeightNormed(packed=True))]  # fmt: skip


class _PackWithLengths(nn.Module):
    """Lengths handed in as an input tensor, packed as they are (enforce_sorted=True)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True).data


def _pack_refusals() -> list[Refusal]:
    return [
        Refusal(
            "lengths an input of the model",
            (_randn(2, 4, 3, seed=0), torch.tensor([4, 2])),
            UnsupportedModuleError,
            "the lengths are an input of the model .* enforce_sorted=False",
            module=_PackWithLengths(),
        ),
        Refusal(
            "enforce_sorted with unsorted lengths",
            (_randn(2, 4, 3, seed=0),),
            ValueError,
            r"must be sorted in decreasing order, got \[2, 4\]",
            fn=lambda x: nn.utils.rnn.pack_padded_sequence(x, [2, 4], batch_first=True).data,
        ),
    ]


ROWS = [
    OpEntry(
        "pack_padded_sequence",
        "recurrent",
        pack_padded_sequence,
        functions=(torch._pack_padded_sequence,),
        linear=True,
        note="nn.utils.rnn.pack_padded_sequence, pack_sequence: sorted or not (enforce_sorted), "
        "batch_first or not; constant lengths; the PackedSequence to nn.RNN/LSTM/GRU, or its .data",
        samples=_pack_samples,
        refusals=_pack_refusals,
    ),
    OpEntry(
        "pad_packed_sequence",
        "recurrent",
        pad_packed_sequence,
        functions=(torch._pad_packed_sequence,),
        linear=True,
        note="nn.utils.rnn.pad_packed_sequence: batch_first or not, padding_value, total_length",
        samples=_pad_samples,
    ),
    OpEntry(
        "pad_sequence",
        "recurrent",
        pad_sequence,
        functions=(torch._C._nn.pad_sequence,),
        linear=True,
        note="nn.utils.rnn.pad_sequence (and pack_sequence): batch_first, padding_value, "
        "padding_side",
        samples=_pad_sequence_samples,
    ),
    OpEntry(
        "functional_rnn",
        "recurrent",
        functional_rnn,
        functions=(torch.lstm, torch.gru, torch.rnn_tanh, torch.rnn_relu),
        note="the kernels of a module recorded op by op (weights computed in forward): torch's "
        "lowering; on a PackedSequence refused (its kernel writes its states in place)",
        samples=_functional_samples,
        refusals=_functional_refusals,
    ),
]
