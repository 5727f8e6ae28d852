"""The registry's vocabulary: the values a rule sees, the Op it returns, and one row per op.

A rule is an op's functional form written against the manual network under construction,
with torch's own signature: `conv2d(x, weight, bias=None, stride=1, padding=0, ...)`. Its
arguments arrive as

- `Ref`: a tensor computed from the model's inputs (a value of the manual network);
- `Param`: a tensor of the model itself, a parameter or buffer, by its qualified name;
- plain Python values: ints, floats, tuples, sizes read off a Ref (`x.size(0)`), None.

and it returns an `Op` (a manual_bp layer or activation with its inputs), a plain value
(`x.size(1) // 2`), a Ref (an op that changes nothing, such as `x.contiguous()`), or a
structure of Refs (chunk's tuple). A module is the same rule called with the module's
attributes (`OpEntry.module_args`), so each op is written once.

A row (`OpEntry`) names the rule, the torch names that reach it (functions, Tensor methods,
module types), how module attributes map onto the rule's arguments, and the samples and
refusals the generic tests run over every row (tests/test_registry.py), in the spirit of
torch's OpInfo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from manual_bp.ops.activations import Activation
from manual_bp.ops.base import Layer
from torch_ref.errors import NotCovered, UnsupportedModuleError

Shape = tuple[int, ...]


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A tensor computed from the inputs: the manual network's value `name`, of `shape`.

    `dtype` is "float" for values that carry gradient, "int" or "bool" for token ids, indices
    and masks computed from integer inputs (they carry none)."""

    name: str
    shape: Shape
    dtype: str = "float"

    def __init__(self, name: str, shape: Shape, dtype: str = "float") -> None:
        # (frozen: the fields are set once, here, through __dict__, at half the cost of a
        # frozen dataclass's own object.__setattr__ per field; one Ref is made per node)
        self.__dict__.update(name=name, shape=shape, dtype=dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, eq=False)
class Param:
    """A tensor of the model: a parameter or buffer by its qualified name, as
    named_parameters() / named_buffers() spell it (the first name of a tied tensor), or a
    constant tensor attribute. `trainable`: a parameter that requires grad."""

    name: str
    tensor: torch.Tensor
    trainable: bool

    def __init__(self, name: str, tensor: torch.Tensor, trainable: bool) -> None:
        # (frozen, set through __dict__ as Ref is: one Param is made per use of a model tensor)
        self.__dict__.update(name=name, tensor=tensor, trainable=trainable)

    @property
    def shape(self) -> Shape:
        return tuple(self.tensor.shape)

    @property
    def ndim(self) -> int:
        return self.tensor.ndim

    def array(self) -> np.ndarray:
        """The tensor as a float64 (or integer/bool, as stored) NumPy array that cannot write
        into the caller's tensor: a read-only view of a float64 CPU tensor (no copy), a copy
        of anything else."""
        t = self.tensor
        if t.dtype is torch.float64 and t.is_cpu:  # (real: no conjugate bit)
            # (force: detached in one call, still a view on the CPU; a new array object)
            view = t.numpy(force=True)
            view.setflags(write=False)
            return view
        t = t.detach()
        if not t.is_cpu:  # (to("cpu") of a CPU tensor returns it, after parsing the device)
            t = t.to("cpu")
        if t.is_floating_point():
            t = t.to(torch.float64)
        return np.array(t.numpy(), copy=True)

    def __repr__(self) -> str:
        return f"Param({self.name!r}, shape={self.shape})"


@dataclass
class Op:
    """What a rule returns: a manual layer (or activation) and its inputs.

    An input may be a Ref, a Param (a model tensor used as an operand: it becomes a leaf of
    the network, and its gradient is the δ that reaches it) or another Op, built first. The
    same Op object used twice is built once. `params` maps the layer's parameter names onto
    the model's qualified names (`{"weight": "features.0.weight"}`): the layer holds a
    float64 copy, and its gradient is that parameter's. `outputs` arranges the Refs of a
    layer with several outputs as torch returns them (an LSTM's `(out, (h, c))`). Inside a
    composite (nn.MultiheadAttention), `name` and `probe` mark the weighted nodes a trace
    reports δ for."""

    layer: Layer | Activation
    inputs: tuple[Ref | Param | Op, ...]
    params: dict[str, str] = field(default_factory=dict)
    outputs: Callable[[tuple[Ref, ...]], Any] | None = None
    #: inside a composite: the node's name under the module the call sits in ("out_proj")
    name: str | None = None
    #: inside a composite: this op's value is output k of the call, up to a reshape (the
    #: autograd side can take its δ there)
    probe: int | None = None
    #: that output permuted by these dims is this op's value, up to a reshape
    #: (nn.MultiheadAttention(batch_first=True)'s output against its out_proj)
    probe_dims: tuple[int, ...] | None = None


# --- argument helpers for rules -----------------------------------------------------


def tensor(x: Any, what: str) -> Ref | Param:
    """x as a tensor operand: a computed Ref, or a model tensor used as an operand."""
    if isinstance(x, (Ref, Param)):
        return x
    if isinstance(x, torch.Tensor):
        raise UnsupportedModuleError(
            f"{what}: a tensor created inside forward() (shape {tuple(x.shape)}) is not "
            "supported as an operand; register it as a buffer (self.register_buffer) or "
            "compute it from the input"
        )
    raise UnsupportedModuleError(f"{what}: expected a tensor, got {x!r}")


def computed(x: Any, what: str) -> Ref:
    """x as a tensor computed from the input (an op that needs no model tensor there)."""
    x = tensor(x, what)
    if isinstance(x, Param):
        raise UnsupportedModuleError(
            f"{what}: expected a tensor computed from the input, got the model tensor {x.name!r}"
        )
    return x


def number(c: Any, what: str, *, infinite: bool = False) -> float:
    """c as a finite Python number, or ±inf too where `infinite` (a comparison with −inf, a
    fill value); a tensor or NaN is refused, naming it."""
    if type(c) is int or (type(c) is float and math.isfinite(c)):  # (nearly every call)
        return c
    if isinstance(c, (bool, np.bool_)):
        return c
    if isinstance(c, (int, float, np.integer, np.floating)) and (
        np.isfinite(c) or (infinite and not np.isnan(c))
    ):
        return c
    if isinstance(c, (Ref, Param, torch.Tensor)):
        raise UnsupportedModuleError(f"{what}: expected a Python number, got a tensor")
    kind = "a Python number other than NaN" if infinite else "a finite Python number"
    raise UnsupportedModuleError(f"{what}: expected {kind}, got {c!r}")


def param_arg(w: Any, what: str, name: str, *, optional: bool = False) -> Param | None:
    """A weight handed to a layer rule: a tensor of the model (self.weight), fused into the
    layer as a float64 copy."""
    if w is None and optional:
        return None
    if isinstance(w, Param):
        return w
    got = "a tensor computed in forward()" if isinstance(w, Ref) else repr(w)
    refusal = NotCovered if isinstance(w, Ref) else UnsupportedModuleError  # (torch's lowering)
    raise refusal(
        f"{what}: the {name} must be a parameter or buffer of the model (self.<name>), got {got}"
    )


def weighted(
    make: Callable[[np.ndarray, np.ndarray | None], Layer],
    what: str,
    inputs: tuple[Any, ...],
    weight: Any,
    bias: Any = None,
) -> Op:
    """The Op of a weighted layer: `make(weight, bias)` holding copies of the model's tensors
    (their gradients are the parameters'), or, where the weight or bias was computed in
    forward() (a pruning mask, a merged LoRA update, a standardised weight), the layer with
    both as inputs (manual_bp.ops.graph.WeightInputs), so the gradient flows to what made them."""
    if isinstance(weight, Ref) or isinstance(bias, Ref):
        from manual_bp.ops.graph import WeightInputs

        w = tensor(weight, f"{what} (weight)")
        b = None if bias is None else tensor(bias, f"{what} (bias)")
        layer = WeightInputs(make, b is not None, what, len(inputs))
        return Op(layer, (*inputs, w, *(() if b is None else (b,))))
    w = param_arg(weight, what, "weight")
    b = param_arg(bias, what, "bias", optional=True)
    return Op(make(array(w), array(b)), inputs, fused(weight=w, bias=b))


def fused(**params: Param | None) -> dict[str, str]:
    """`Op.params` for a layer holding copies of these model tensors (None: absent)."""
    return {k: p.name for k, p in params.items() if p is not None}


def array(p: Param | None) -> np.ndarray | None:
    return None if p is None else p.array()


def is_plain(*values: Any) -> bool:
    """No tensor among the values: sizes and numbers, computed here (x.size(1) // 2)."""
    for v in values:
        if isinstance(v, (Ref, Param, torch.Tensor)):
            return False
    return True


# --- the row -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One call of an op for the generic tests: `fn(*inputs, **params)` on float64 tensors.

    `params` become nn.Parameters of a small wrapper module (so a weight is a model tensor,
    as users write it); `inputs` are the model's inputs (floating ones get ∂L/∂x). For a
    module row, `module` is called on the inputs instead of fn."""

    name: str
    inputs: tuple[torch.Tensor, ...]
    fn: Callable[..., Any] | None = None
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    module: nn.Module | None = None
    #: compare in training mode too (BatchNorm's batch statistics)
    train: bool = False


@dataclass(frozen=True)
class Refusal:
    """A call the oracle must refuse, with the error type and a regex of its message."""

    name: str
    inputs: tuple[torch.Tensor, ...]
    error: type[Exception]
    match: str
    fn: Callable[..., Any] | None = None
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    module: nn.Module | None = None


@dataclass(frozen=True)
class OpEntry:
    """One op: its rule, the torch names that reach it, and the cases every row is tested on.

    - `rule(*args, **kwargs)` has the functional form's signature and returns an Op, a plain
      value, a Ref or a structure of Refs;
    - `functions` (F.relu, torch.relu, operator.add), `methods` (Tensor method names) and
      `modules` (module types, matched exactly) all reach the same rule;
    - `module_args` maps a module onto the rule's keyword arguments: attribute names taken
      as they are (`("negative_slope",)`), or a function of the module;
    - `linear`: the op is linear in its inputs, so the generic tests check the adjoint
      identity ⟨J v, u⟩ = ⟨v, Jᵀ u⟩ of its backward;
    - `view`: torch returns a view of the input (in-place ops on aliases are refused);
    - `samples()` / `refusals()`: the generic tests' cases.
    """

    name: str
    family: str
    rule: Callable[..., Any]
    functions: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()
    modules: tuple[type, ...] = ()
    module_args: tuple[str, ...] | Callable[[nn.Module], dict[str, Any]] = ()
    note: str = ""
    linear: bool = False
    #: the op returns a view of its input, as torch's does (reshape, transpose, slicing):
    #: an in-place op on either is refused, since the manual values do not alias
    view: bool = False
    samples: Callable[[], Iterable[Sample]] = field(default=lambda: ())
    refusals: Callable[[], Iterable[Refusal]] = field(default=lambda: ())

    def module_kwargs(self, module: nn.Module) -> dict[str, Any]:
        if callable(self.module_args):
            return self.module_args(module)
        # (a parameter straight from module._parameters: getattr reaches it only through
        # nn.Module.__getattr__, a Python call, after missing the instance and its class,
        # neither of which holds a registered parameter's name)
        params = module._parameters
        return {a: params[a] if a in params else getattr(module, a) for a in self.module_args}


def rows(*entries: OpEntry | Sequence[OpEntry]) -> list[OpEntry]:
    """A family's rows, flattened."""
    out: list[OpEntry] = []
    for e in entries:
        out.extend(e if isinstance(e, (list, tuple)) else [e])
    return out
