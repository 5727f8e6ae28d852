"""From a torch model to a manual_bp Network: torch.fx capture, then tables of converters.

The model is traced with torch.fx (torch.nn modules stay whole; the user's own modules are
traced through), and each graph node is looked up in a table:

- `MODULE_CONVERTERS[type(module)](module, name) -> Layer | Activation` for call_module nodes;
- `FUNCTION_CONVERTERS[fn](*args, **kwargs) -> Op | value` for call_function nodes and
  `METHOD_CONVERTERS[name](self, *args, **kwargs)` for Tensor methods.

Adding a layer is adding a row. Tensor arguments arrive as `Ref`s, a value of the manual
network together with its shape; everything else (ints, tuples, parameters fetched by
get_attr) is a plain value. `x.size(0)` and `x.shape` are read off the Ref, so a forward
written as `x.view(x.size(0), -1)` converts to a Reshape of known sizes, and every shape is
checked before any arithmetic.

An Op's inputs may themselves be Ops: `torch.add(x, y, alpha=2)` is Add(x, Scale(2)(y)).
Converted parameters are float64 NumPy copies: nothing the caller owns is touched.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import operator
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.network import INPUT, Network, Node
from manual_bp.ops import (
    Add,
    AddConstant,
    Cat,
    Div,
    Flatten,
    Identity,
    Layer,
    Linear,
    LogSoftmax,
    Mean,
    Mul,
    Permute,
    Reshape,
    Scale,
    Softmax,
    Sub,
    Sum,
    Transpose,
)
from manual_bp.ops.activations import Activation, get_activation
from manual_bp.ops.conv import Conv1d, Conv2d
from manual_bp.ops.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from manual_bp.ops.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from torch_ref.errors import UnsupportedModuleError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Ref:
    """A tensor value of the manual network under construction: a node's output, its shape."""

    name: str
    shape: Shape


@dataclass
class Op:
    """What a function converter returns: the layer, its tensor inputs, its parameters' origins.

    An input may be another Op, built first (as a node of its own) and fed in.
    """

    layer: Layer | Activation
    inputs: tuple[Ref | Op, ...]
    origins: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Converted:
    """A manual Network and how its pieces map back onto the torch model."""

    network: Network
    #: (node, param) → the torch tensor the parameter was copied from
    origins: dict[tuple[str, str], torch.Tensor]
    #: leaf-module qualified name → ("z" | "a", node): where its forward output lives
    module_outputs: dict[str, tuple[str, str]]
    #: nodes whose δ = ∂L/∂z a trace reports (Linear and Conv), in graph order
    delta_nodes: list[str]
    #: manual node name → fx node name (to find the same value in torch)
    fx_names: dict[str, str]
    graph: fx.Graph
    shapes: dict[str, Shape]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of a parameter or buffer (the oracle checks them finite first)."""
    return np.array(t.detach().to(device="cpu", dtype=torch.float64).numpy(), copy=True)


def _optional(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else to_numpy(t)


def _no_indices(what: str, return_indices: bool) -> None:
    if return_indices:
        raise UnsupportedModuleError(
            f"{what} with return_indices=True is not supported (its second output is not "
            "differentiable); expected return_indices=False"
        )


# --- module converters ---------------------------------------------------------------


def _linear(m: nn.Linear, name: str) -> Layer:
    return Linear(to_numpy(m.weight), _optional(m.bias))


def _conv(cls: type[Conv1d | Conv2d]) -> Callable[[Any, str], Layer]:
    def convert(m: nn.Conv1d | nn.Conv2d, name: str) -> Layer:
        return cls(
            to_numpy(m.weight),
            _optional(m.bias),
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            padding_mode=m.padding_mode,
        )

    return convert


def _max_pool(cls: type[MaxPool1d | MaxPool2d]) -> Callable[[Any, str], Layer]:
    def convert(m: nn.MaxPool1d | nn.MaxPool2d, name: str) -> Layer:
        _no_indices(type(m).__name__, m.return_indices)
        return cls(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)

    return convert


def _avg_pool1d(m: nn.AvgPool1d, name: str) -> Layer:
    return AvgPool1d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)


def _avg_pool2d(m: nn.AvgPool2d, name: str) -> Layer:
    return AvgPool2d(
        m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
    )


def _adaptive(cls: type[Layer]) -> Callable[[Any, str], Layer]:
    def convert(m: nn.Module, name: str) -> Layer:
        _no_indices(type(m).__name__, getattr(m, "return_indices", False))
        return cls(m.output_size)

    return convert


def _batch_norm(cls: type[BatchNorm1d | BatchNorm2d]) -> Callable[[Any, str], Layer]:
    """Eval mode with running statistics: those; training, or track_running_stats=False: the
    batch's. Copies: the caller's running statistics are read, never updated."""

    def convert(m: nn.modules.batchnorm._BatchNorm, name: str) -> Layer:
        return cls(
            weight=_optional(m.weight),
            bias=_optional(m.bias),
            running_mean=_optional(m.running_mean),
            running_var=_optional(m.running_var),
            eps=m.eps,
            training=m.training,
        )

    return convert


def _layer_norm(m: nn.LayerNorm, name: str) -> Layer:
    return LayerNorm(m.normalized_shape, _optional(m.weight), _optional(m.bias), eps=m.eps)


def _dropout(m: nn.Module, name: str) -> Layer:
    if m.training and m.p > 0:
        raise ValueError(
            f"{type(m).__name__} {name!r} is in training mode (p={m.p}): its mask is random, so "
            "no reference gradient exists; expected model.eval() (or p=0)"
        )
    return Identity()


def _activation(act_name: str, *options: str) -> Callable[[nn.Module, str], Activation]:
    def convert(m: nn.Module, name: str) -> Activation:
        return get_activation(act_name, **{o: getattr(m, o) for o in options})

    return convert


MODULE_CONVERTERS: dict[type, Callable[[Any, str], Layer | Activation]] = {
    # affine
    nn.Linear: _linear,
    nn.Conv1d: _conv(Conv1d),
    nn.Conv2d: _conv(Conv2d),
    # pooling
    nn.MaxPool1d: _max_pool(MaxPool1d),
    nn.MaxPool2d: _max_pool(MaxPool2d),
    nn.AvgPool1d: _avg_pool1d,
    nn.AvgPool2d: _avg_pool2d,
    nn.AdaptiveAvgPool1d: _adaptive(AdaptiveAvgPool1d),
    nn.AdaptiveAvgPool2d: _adaptive(AdaptiveAvgPool2d),
    nn.AdaptiveMaxPool1d: _adaptive(AdaptiveMaxPool1d),
    nn.AdaptiveMaxPool2d: _adaptive(AdaptiveMaxPool2d),
    # normalisation
    nn.BatchNorm1d: _batch_norm(BatchNorm1d),
    nn.BatchNorm2d: _batch_norm(BatchNorm2d),
    nn.LayerNorm: _layer_norm,
    # shape and identity
    nn.Identity: lambda m, name: Identity(),
    nn.Flatten: lambda m, name: Flatten(m.start_dim, m.end_dim),
    nn.Dropout: _dropout,
    nn.Dropout1d: _dropout,
    nn.Dropout2d: _dropout,
    # along a dim
    nn.LogSoftmax: lambda m, name: LogSoftmax(m.dim),
    nn.Softmax: lambda m, name: Softmax(m.dim),
    # elementwise activations (fused into the layer that feeds them)
    nn.ReLU: _activation("relu"),
    nn.LeakyReLU: _activation("leaky_relu", "negative_slope"),
    nn.Sigmoid: _activation("sigmoid"),
    nn.Tanh: _activation("tanh"),
    nn.ELU: _activation("elu", "alpha"),
    nn.GELU: _activation("gelu", "approximate"),
    nn.SiLU: _activation("silu"),
    nn.Softplus: _activation("softplus", "beta", "threshold"),
    nn.Hardtanh: _activation("hardtanh", "min_val", "max_val"),
    nn.ReLU6: _activation("relu6"),
}


# --- function and method converters: layers --------------------------------------------


def _act_fn(act_name: str, **defaults: Any) -> Callable[..., Op]:
    """F.relu(x), torch.tanh(x), x.sigmoid(), F.leaky_relu(x, 0.2), ... as an activation."""
    names = list(defaults)

    def convert(x: Ref, *args: Any, inplace: bool = False, **kwargs: Any) -> Op:
        options = dict(defaults)
        options.update(zip(names, args, strict=False))
        options.update({k: v for k, v in kwargs.items() if k in defaults})
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise UnsupportedModuleError(f"{act_name}: unsupported option(s) {sorted(unknown)}")
        return Op(get_activation(act_name, **options), (_tensor(x, act_name),))

    return convert


def _param(what: str, name: str, t: Any, *, optional: bool = False) -> torch.Tensor | None:
    """A weight or bias handed to a functional layer: a parameter or buffer of the model."""
    if t is None and optional:
        return None
    if not isinstance(t, torch.Tensor):
        raise UnsupportedModuleError(
            f"{what}: the {name} must be a parameter or buffer of the model (self.<name>), "
            f"got {'a tensor computed in forward()' if isinstance(t, Ref) else type(t).__name__}"
        )
    return t


def _origins(**tensors: torch.Tensor | None) -> dict[str, torch.Tensor]:
    return {name: t for name, t in tensors.items() if t is not None}


def _f_linear(x: Ref, weight: Any, bias: Any = None) -> Op:
    weight = _param("F.linear", "weight", weight)
    bias = _param("F.linear", "bias", bias, optional=True)
    layer = Linear(to_numpy(weight), _optional(bias))
    return Op(layer, (_tensor(x, "F.linear"),), _origins(weight=weight, bias=bias))


def _f_conv(cls: type[Conv1d | Conv2d]) -> Callable[..., Op]:
    what = f"F.{cls.__name__.lower()}"

    def convert(
        x: Ref,
        weight: Any,
        bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
    ) -> Op:
        weight = _param(what, "weight", weight)
        bias = _param(what, "bias", bias, optional=True)
        layer = cls(to_numpy(weight), _optional(bias), stride, padding, dilation, groups)
        return Op(layer, (_tensor(x, what),), _origins(weight=weight, bias=bias))

    return convert


def _f_max_pool(cls: type[MaxPool1d | MaxPool2d]) -> Callable[..., Op]:
    what = f"F.{cls.__name__.lower().replace('pool', '_pool')}"

    def convert(
        x: Ref,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> Op:
        _no_indices(what, return_indices)
        # NOTE: torch's stride=[] means stride = kernel_size, as None does
        layer = cls(kernel_size, stride or None, padding, dilation, ceil_mode)
        return Op(layer, (_tensor(x, what),))

    return convert


def _f_avg_pool1d(
    x: Ref,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Op:
    layer = AvgPool1d(kernel_size, stride or None, padding, ceil_mode, count_include_pad)
    return Op(layer, (_tensor(x, "F.avg_pool1d"),))


def _f_avg_pool2d(
    x: Ref,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Op:
    layer = AvgPool2d(
        kernel_size, stride or None, padding, ceil_mode, count_include_pad, divisor_override
    )
    return Op(layer, (_tensor(x, "F.avg_pool2d"),))


def _f_adaptive(cls: type[Layer], what: str) -> Callable[..., Op]:
    def convert(x: Ref, output_size: Any, return_indices: bool = False) -> Op:
        _no_indices(what, return_indices)
        return Op(cls(output_size), (_tensor(x, what),))

    return convert


def _f_layer_norm(
    x: Ref, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> Op:
    weight = _param("F.layer_norm", "weight", weight, optional=True)
    bias = _param("F.layer_norm", "bias", bias, optional=True)
    layer = LayerNorm(tuple(normalized_shape), _optional(weight), _optional(bias), eps=eps)
    return Op(layer, (_tensor(x, "F.layer_norm"),), _origins(weight=weight, bias=bias))


def _f_dropout(x: Ref, p: float = 0.5, training: bool = True, inplace: bool = False) -> Op:
    if training and p > 0:
        raise ValueError(
            f"dropout is called with training=True (p={p}): its mask is random, so no "
            "reference gradient exists; expected training=False (e.g. training=self.training "
            "and model.eval())"
        )
    return Op(Identity(), (_tensor(x, "dropout"),))


def _softmax_fn(cls: type[Layer]) -> Callable[..., Op]:
    def convert(x: Ref, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Op:
        if dtype is not None:
            raise UnsupportedModuleError(f"{cls.__name__}: the dtype option is not supported")
        return Op(cls(dim), (_tensor(x, cls.__name__),))

    return convert


# --- function and method converters: arithmetic ----------------------------------------


def _tensor(x: Any, what: str) -> Ref:
    """x as a tensor of the network; a parameter, buffer or constant is refused."""
    if isinstance(x, Ref):
        return x
    if isinstance(x, torch.Tensor):
        raise UnsupportedModuleError(
            f"{what}: a tensor not computed from the input (a parameter, buffer or constant of "
            f"shape {tuple(x.shape)}) is not supported as an operand; supported operands are "
            "tensors computed from the input, and Python numbers"
        )
    raise UnsupportedModuleError(f"{what}: expected a tensor computed from the input, got {x!r}")


def _number(c: Any, what: str) -> float:
    if isinstance(c, (int, float)) and np.isfinite(c):
        return c
    if isinstance(c, torch.Tensor):
        _tensor(c, what)  # raises, naming it
    raise UnsupportedModuleError(f"{what}: expected a finite Python number, got {c!r}")


def _plain(*values: Any) -> bool:
    """No tensor among the operands: sizes and numbers, computed here (x.size(1) // 2)."""
    return not any(isinstance(v, (Ref, torch.Tensor)) for v in values)


def _scaled(y: Ref, alpha: float) -> Ref | Op:
    return y if alpha == 1 else Op(Scale(alpha), (y,))


def _add(a: Any, b: Any, *, alpha: float = 1) -> Any:
    """a + α·b: Add of two tensors, AddConstant of a tensor and a number."""
    if _plain(a, b):
        return a + alpha * b
    alpha = _number(alpha, "add (alpha)")
    if isinstance(a, Ref) and isinstance(b, Ref):
        return Op(Add(2), (a, _scaled(b, alpha)))
    if isinstance(a, Ref):
        return Op(AddConstant(alpha * _number(b, "add")), (a,))
    return Op(AddConstant(_number(a, "add")), (_scaled(_tensor(b, "add"), alpha),))


def _sub(a: Any, b: Any, *, alpha: float = 1) -> Any:
    """a − α·b: Sub of two tensors; a tensor minus c is AddConstant(−c); c − x is c + (−1)·x."""
    if _plain(a, b):
        return a - alpha * b
    alpha = _number(alpha, "sub (alpha)")
    if isinstance(a, Ref) and isinstance(b, Ref):
        return Op(Sub(), (a, _scaled(b, alpha)))
    if isinstance(a, Ref):
        return Op(AddConstant(-alpha * _number(b, "sub")), (a,))
    return Op(AddConstant(_number(a, "sub")), (Op(Scale(-alpha), (_tensor(b, "sub"),)),))


def _mul(a: Any, b: Any) -> Any:
    """a·b: Mul of two tensors (broadcast), Scale of a tensor by a number."""
    if _plain(a, b):
        return a * b
    if isinstance(a, Ref) and isinstance(b, Ref):
        return Op(Mul(), (a, b))
    x, c = (a, b) if isinstance(a, Ref) else (b, a)
    return Op(Scale(_number(c, "mul")), (_tensor(x, "mul"),))


def _div(a: Any, b: Any, *, rounding_mode: str | None = None) -> Any:
    """a / c for a number c: Div. Division by a tensor is not supported."""
    if _plain(a, b) and rounding_mode is None:
        return a / b
    if rounding_mode is not None:
        raise UnsupportedModuleError(f"div: rounding_mode={rounding_mode!r} is not supported")
    if isinstance(b, Ref):
        raise UnsupportedModuleError(
            "div: division by a tensor is not supported; only by a Python number (x / c)"
        )
    return Op(Div(_number(b, "div")), (_tensor(a, "div"),))


def _neg(a: Any) -> Any:
    return -a if _plain(a) else Op(Scale(-1), (_tensor(a, "neg"),))


def _plain_only(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """An operator on sizes and numbers only (x.size(1) // 2); on tensors it is refused."""

    def convert(*args: Any) -> Any:
        if not _plain(*args):
            raise UnsupportedModuleError(f"{what} of tensors is not supported")
        return fn(*args)

    return convert


# --- function and method converters: joining, reducing, shapes --------------------------


def _cat(tensors: Sequence[Any], dim: int = 0) -> Op:
    refs = tuple(_tensor(t, "cat") for t in tensors)
    if not refs:
        raise ValueError("cat: expected at least one tensor, got an empty list")
    return Op(Cat(dim, n_inputs=len(refs)), refs)


def _reduce(cls: type[Sum]) -> Callable[..., Op]:
    what = cls.__name__.lower()

    def convert(x: Ref, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Op:
        if dtype is not None:
            raise UnsupportedModuleError(f"{what}: the dtype option is not supported")
        return Op(cls(dim, keepdim), (_tensor(x, what),))

    return convert


def _sizes(what: str, sizes: tuple[Any, ...]) -> tuple[int, ...]:
    """view(2, -1), view((2, -1)), view(x.size()): the sizes as ints."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        raise UnsupportedModuleError(f"{what}: expected sizes as ints, got {sizes!r}")
    return sizes


def _reshape_method(what: str) -> Callable[..., Op]:
    def convert(x: Ref, *shape: Any) -> Op:
        return Op(Reshape(_sizes(what, shape)), (_tensor(x, what),))

    return convert


def _reshape_fn(x: Ref, shape: Sequence[int]) -> Op:
    return Op(Reshape(_sizes("reshape", (shape,))), (_tensor(x, "reshape"),))


def _flatten_fn(x: Ref, start_dim: int = 0, end_dim: int = -1) -> Op:
    return Op(Flatten(start_dim, end_dim), (_tensor(x, "flatten"),))


def _wrap(dim: Any, ndim: int, what: str, shape: Shape) -> int:
    """torch's dim wrapping, d in [−ndim, ndim), as a ValueError for people."""
    if not isinstance(dim, int) or not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{what}: dim {dim!r} is out of range for a tensor of shape {shape}")
    return dim % max(ndim, 1)


def _unsqueeze(x: Ref, dim: int) -> Op:
    x = _tensor(x, "unsqueeze")
    d = _wrap(dim, len(x.shape) + 1, "unsqueeze", x.shape)
    return Op(Reshape((*x.shape[:d], 1, *x.shape[d:])), (x,))


def _squeeze(x: Ref, dim: Any = None) -> Op:
    """Drops the given dims (all when dim is None) that have size 1, as torch does."""
    x = _tensor(x, "squeeze")
    if dim is None:
        dims = set(range(len(x.shape)))
    else:
        dims = {
            _wrap(d, len(x.shape), "squeeze", x.shape)
            for d in (dim if isinstance(dim, (tuple, list)) else (dim,))
        }
    return Op(Reshape(tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))), (x,))


def _permute(x: Ref, *dims: Any) -> Op:
    return Op(Permute(_sizes("permute", dims)), (_tensor(x, "permute"),))


def _transpose(x: Ref, dim0: int, dim1: int) -> Op:
    return Op(Transpose(dim0, dim1), (_tensor(x, "transpose"),))


def _identity(what: str) -> Callable[..., Op]:
    """x.contiguous(), x.clone(): the same values, as an Identity node of its own."""

    def convert(x: Ref, *args: Any, **kwargs: Any) -> Op:
        return Op(Identity(), (_tensor(x, what),))

    return convert


# --- function and method converters: sizes (plain values, read off the Ref) -------------


def _size(x: Ref, dim: int | None = None) -> torch.Size | int:
    x = _tensor(x, "size")
    if dim is None:
        return torch.Size(x.shape)
    return x.shape[_wrap(dim, len(x.shape), "size", x.shape)]


def _getattr(obj: Any, attr: str) -> Any:
    """x.shape and x.ndim of a tensor; other attributes of tensors are refused.

    NOTE: a parameter's derived tensors (self.weight.T) are refused too: a weight that is
    not the parameter itself would not key back to named_parameters().
    """
    if isinstance(obj, torch.Tensor) and attr in ("shape", "ndim"):
        return getattr(obj, attr)
    if not isinstance(obj, (Ref, torch.Tensor)):
        return getattr(obj, attr)
    if attr == "shape":
        return torch.Size(obj.shape)
    if attr == "ndim":
        return len(obj.shape)
    raise UnsupportedModuleError(
        f"the tensor attribute .{attr} is not supported; supported: .shape, .ndim"
    )


def _getitem(obj: Any, index: Any) -> Any:
    """An entry of a size (x.shape[0]); indexing or slicing a tensor is refused."""
    if isinstance(obj, (Ref, torch.Tensor)):
        raise UnsupportedModuleError(
            "indexing or slicing a tensor (x[...]) is not supported; supported: indexing a "
            "size (x.shape[0], x.size()[1])"
        )
    return obj[index]


FUNCTION_CONVERTERS: dict[Any, Callable[..., Any]] = {
    # elementwise activations
    F.relu: _act_fn("relu"),
    torch.relu: _act_fn("relu"),
    F.sigmoid: _act_fn("sigmoid"),
    torch.sigmoid: _act_fn("sigmoid"),
    F.tanh: _act_fn("tanh"),
    torch.tanh: _act_fn("tanh"),
    F.leaky_relu: _act_fn("leaky_relu", negative_slope=0.01),
    F.elu: _act_fn("elu", alpha=1.0),
    F.gelu: _act_fn("gelu", approximate="none"),
    F.silu: _act_fn("silu"),
    F.softplus: _act_fn("softplus", beta=1.0, threshold=20.0),
    F.hardtanh: _act_fn("hardtanh", min_val=-1.0, max_val=1.0),
    F.relu6: _act_fn("relu6"),
    # layers
    F.linear: _f_linear,
    F.conv1d: _f_conv(Conv1d),
    F.conv2d: _f_conv(Conv2d),
    F.max_pool1d: _f_max_pool(MaxPool1d),
    F.max_pool2d: _f_max_pool(MaxPool2d),
    F.avg_pool1d: _f_avg_pool1d,
    F.avg_pool2d: _f_avg_pool2d,
    F.adaptive_avg_pool1d: _f_adaptive(AdaptiveAvgPool1d, "F.adaptive_avg_pool1d"),
    F.adaptive_avg_pool2d: _f_adaptive(AdaptiveAvgPool2d, "F.adaptive_avg_pool2d"),
    F.adaptive_max_pool1d: _f_adaptive(AdaptiveMaxPool1d, "F.adaptive_max_pool1d"),
    F.adaptive_max_pool2d: _f_adaptive(AdaptiveMaxPool2d, "F.adaptive_max_pool2d"),
    F.layer_norm: _f_layer_norm,
    F.dropout: _f_dropout,
    F.dropout1d: _f_dropout,
    F.dropout2d: _f_dropout,
    F.log_softmax: _softmax_fn(LogSoftmax),
    F.softmax: _softmax_fn(Softmax),
    # arithmetic
    operator.add: _add,
    torch.add: _add,
    operator.sub: _sub,
    torch.sub: _sub,
    operator.mul: _mul,
    torch.mul: _mul,
    operator.truediv: _div,
    torch.div: _div,
    operator.neg: _neg,
    torch.neg: _neg,
    operator.floordiv: _plain_only(operator.floordiv, "floor division"),
    # joining, reducing, shapes
    torch.cat: _cat,
    torch.concat: _cat,
    torch.mean: _reduce(Mean),
    torch.sum: _reduce(Sum),
    torch.flatten: _flatten_fn,
    torch.reshape: _reshape_fn,
    torch.squeeze: _squeeze,
    torch.unsqueeze: _unsqueeze,
    torch.permute: _permute,
    torch.transpose: _transpose,
    # sizes
    builtins.getattr: _getattr,
    operator.getitem: _getitem,
}

METHOD_CONVERTERS: dict[str, Callable[..., Any]] = {
    # elementwise activations
    "relu": _act_fn("relu"),
    "sigmoid": _act_fn("sigmoid"),
    "tanh": _act_fn("tanh"),
    "log_softmax": _softmax_fn(LogSoftmax),
    "softmax": _softmax_fn(Softmax),
    # arithmetic
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "neg": _neg,
    # reducing and shapes
    "mean": _reduce(Mean),
    "sum": _reduce(Sum),
    "flatten": _flatten_fn,
    "view": _reshape_method("view"),
    "reshape": _reshape_method("reshape"),
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "permute": _permute,
    "transpose": _transpose,
    "contiguous": _identity("contiguous"),
    "clone": _identity("clone"),
    # sizes
    "size": _size,
    "dim": lambda x: len(_tensor(x, "dim").shape),
}


def _supported() -> str:
    return ", ".join(sorted(f"nn.{t.__name__}" for t in MODULE_CONVERTERS))


@functools.cache
def _public_names() -> dict[int, str]:
    """id(fn) → how users write it (F.max_pool2d, torch.cat, operator.add), first name wins."""
    names: dict[int, str] = {}
    for prefix, namespace in (("F", F), ("torch", torch), ("operator", operator), ("", builtins)):
        for name, obj in vars(namespace).items():
            if callable(obj) and not name.startswith("_"):
                names.setdefault(id(obj), f"{prefix}.{name}".lstrip("."))
    return names


def _fn_name(target: Any) -> str:
    if id(target) in _public_names():
        return _public_names()[id(target)]
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__qualname__', repr(target))}".lstrip(".")


_TORCH_DIR = os.path.dirname(torch.__file__)


def _where(node: fx.Node) -> str:
    """' at File "model.py", line 12, in forward: return torch.exp(x)' where fx recorded it."""
    lines = (node.stack_trace or "").splitlines()
    frames = [
        (line.strip(), lines[i + 1].strip() if i + 1 < len(lines) else "")
        for i, line in enumerate(lines)
        if line.strip().startswith("File ")
    ]
    users = [(f, code) for f, code in frames if not f.startswith(f'File "{_TORCH_DIR}')]
    if not users:
        return ""
    frame, code = users[-1]
    return f" at {frame}: {code}" if code and not code.startswith("File ") else f" at {frame}"


def _what(node: fx.Node) -> str:
    """How the user wrote the node: 'call_function F.relu', 'call_method Tensor.view'."""
    if node.op == "call_method":
        return f"call_method Tensor.{node.target}"
    if node.op == "call_module":
        return f"call_module {node.target}"
    return f"{node.op} {_fn_name(node.target)}"


# --- the tracer and the builder ------------------------------------------------------


class _Tracer(fx.Tracer):
    """torch.nn modules stay whole (supported or not); the user's own modules are traced."""

    def __init__(self, *, stack_traces: bool) -> None:
        super().__init__()
        self.record_stack_traces = stack_traces

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m) in MODULE_CONVERTERS or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, *, stack_traces: bool = False) -> fx.Graph:
    """The fx graph of `model`, or UnsupportedModuleError saying why it cannot be traced.

    With stack_traces, every node records the user's line of code (a third of the cost of
    tracing: `convert` asks for it only to word an error)."""
    try:
        return _Tracer(stack_traces=stack_traces).trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ...
        raise UnsupportedModuleError(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(err).__name__}: {err}); "
            "the oracle needs a forward() without data-dependent control flow"
        ) from err


class _Builder:
    """Collects manual nodes, checking each one's shape as it is added."""

    def __init__(self, input_shape: Shape) -> None:
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
        self.origins: dict[tuple[str, str], torch.Tensor] = {}
        self.module_outputs: dict[str, tuple[str, str]] = {}
        self.fx_names: dict[str, str] = {}
        self.last_fx: dict[str, fx.Node] = {}  # manual node → fx node holding its output

    def unique(self, name: str) -> str:
        taken = {n.name for n in self.nodes} | {INPUT}
        candidate, k = name, 1
        while candidate in taken:
            candidate, k = f"{name}#{k}", k + 1
        return candidate

    def add(self, name: str, layer: Layer, inputs: tuple[Ref, ...], fx_node: fx.Node) -> Ref:
        name = self.unique(name)
        try:
            shape = tuple(layer.shape(*(r.shape for r in inputs)))
        except ValueError as err:
            raise ValueError(f"layer {name!r} ({layer!r}){_where(fx_node)}: {err}") from None
        self.shapes[name] = shape
        self.nodes.append(Node(name, layer, tuple(r.name for r in inputs)))
        self.fx_names[name] = fx_node.name
        self.last_fx[name] = fx_node
        return Ref(name, shape)

    def activate(self, x: Ref, act: Activation, name: str, fx_node: fx.Node) -> Ref:
        """Fuse f into the node that made x when x feeds f alone; else a node of its own."""
        i = next((k for k, n in enumerate(self.nodes) if n.name == x.name), None)
        if i is not None:
            node = self.nodes[i]
            producer = self.last_fx[node.name]
            if node.act_name is None and node.act.name == "identity" and len(producer.users) == 1:
                self.nodes[i] = dataclasses.replace(node, act=act, act_name=name)
                self.last_fx[node.name] = fx_node
                return x
        ref = self.add(name, Identity(), (x,), fx_node)
        self.nodes[-1] = dataclasses.replace(self.nodes[-1], act=act, act_name=ref.name)
        return ref

    def emit(self, op: Op, name: str, fx_node: fx.Node) -> Ref:
        """The Op as a node (its Op inputs first, as nodes "<name>.<k>"), with its origins."""
        inputs = tuple(
            self.emit(i, f"{name}.{k}", fx_node) if isinstance(i, Op) else i
            for k, i in enumerate(op.inputs)
        )
        if isinstance(op.layer, Activation):
            return self.activate(inputs[0], op.layer, name, fx_node)
        ref = self.add(name, op.layer, inputs, fx_node)
        for p, t in op.origins.items():
            self.origins[(ref.name, p)] = t
        return ref


def convert(model: nn.Module, input_shape: Shape) -> Converted:
    """The manual twin of `model` for inputs of `input_shape`.

    Raises UnsupportedModuleError for a module, function or method with no converter,
    and ValueError for a shape that does not fit a layer, naming the layer and the line of
    the user's code (traced a second time, with stack traces, to find it).
    """
    _refuse_hooks(model)
    try:
        return _convert(model, input_shape, trace(model))
    except (UnsupportedModuleError, ValueError):
        _convert(model, input_shape, trace(model, stack_traces=True))  # raises, with the line
        raise


_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


def _refuse_hooks(model: nn.Module) -> None:
    """A hook can change what a module computes or what its backward returns, and torch.fx
    capture does not run hooks: the oracle would answer for another function. Refuse."""
    import torch.nn.modules.module as module_globals

    for kind in _HOOKS:
        if getattr(module_globals, f"_global{kind}"):
            raise UnsupportedModuleError(
                f"a global module hook is registered ({kind.strip('_').replace('_', ' ')}); "
                "the oracle cannot see what hooks do: remove it for the check"
            )
    for name, m in model.named_modules():
        for kind in _HOOKS:
            if getattr(m, kind, None):
                raise UnsupportedModuleError(
                    f"module {name or type(model).__name__!r} ({type(m).__name__}) has "
                    f"{kind.strip('_').replace('_', ' ')}; the oracle cannot see what hooks do: "
                    "remove them for the check"
                )


def _convert(model: nn.Module, input_shape: Shape, graph: fx.Graph) -> Converted:
    modules = dict(model.named_modules())
    b = _Builder(input_shape)
    env: dict[fx.Node, Any] = {}
    output: Any = None
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModuleError(
            f"{type(model).__name__}.forward takes {len(placeholders)} inputs "
            f"({', '.join(p.name for p in placeholders)}); the oracle supports exactly one"
        )

    def value(arg: Any) -> Any:
        return fx.node.map_arg(arg, lambda n: env[n])

    for node in graph.nodes:
        if node.op == "placeholder":
            env[node] = Ref(INPUT, tuple(input_shape))
        elif node.op == "get_attr":
            env[node] = _get_attr(model, node.target)
        elif node.op == "call_module":
            env[node] = _call_module(
                b, modules[node.target], node, value(node.args), value(node.kwargs)
            )
        elif node.op in ("call_function", "call_method"):
            env[node] = _call_function(b, node, value(node.args), value(node.kwargs))
        elif node.op == "output":
            output = value(node.args[0])
    if not isinstance(output, Ref) or output.name == INPUT:
        raise UnsupportedModuleError(
            f"{type(model).__name__}.forward must return one tensor computed from its input, "
            f"got {type(output).__name__}"
        )
    network = Network(b.nodes, output=output.name)
    delta_nodes = [n.name for n in network.nodes if n.layer.reports_delta]
    return Converted(network, b.origins, b.module_outputs, delta_nodes, b.fx_names, graph, b.shapes)


def _get_attr(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _call_module(b: _Builder, module: nn.Module, node: fx.Node, args: tuple, kwargs: dict) -> Ref:
    name, cls = node.target, type(module).__name__
    convert_module = MODULE_CONVERTERS.get(type(module))
    if convert_module is None:
        raise UnsupportedModuleError(
            f"module {name!r} ({cls}){_where(node)} is not supported; "
            f"supported modules: {_supported()}"
        )
    if len(args) != 1 or kwargs or not isinstance(args[0], Ref):
        raise UnsupportedModuleError(
            f"module {name!r} ({cls}){_where(node)} must be called on one tensor computed "
            "from the input"
        )
    try:
        converted = convert_module(module, name)
    except UnsupportedModuleError as err:
        raise UnsupportedModuleError(f"module {name!r} ({cls}){_where(node)}: {err}") from None
    if isinstance(converted, Activation):
        ref = b.activate(args[0], converted, name, node)
        b.module_outputs[name] = ("a", ref.name)
        return ref
    ref = b.add(name, converted, (args[0],), node)
    for p in converted.params:
        b.origins[(ref.name, p)] = getattr(module, p)
    b.module_outputs[name] = ("z", ref.name)
    return ref


def _call_function(b: _Builder, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    table = METHOD_CONVERTERS if node.op == "call_method" else FUNCTION_CONVERTERS
    convert_fn = table.get(node.target)
    here = f"node {node.name!r} ({_what(node)}){_where(node)}"
    if convert_fn is None:
        raise UnsupportedModuleError(
            f"{here} is not supported; supported functions: "
            f"{', '.join(sorted({_fn_name(f) for f in FUNCTION_CONVERTERS}))}; "
            f"Tensor methods: {', '.join(sorted(METHOD_CONVERTERS))}"
        )
    try:
        result = convert_fn(*args, **kwargs)
    except (TypeError, UnsupportedModuleError) as err:  # TypeError: an option we do not take
        raise UnsupportedModuleError(f"{here}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{here}: {err}") from None
    if not isinstance(result, Op):
        return result  # a plain value: a size, a shape, a number
    return b.emit(result, node.name, node)
