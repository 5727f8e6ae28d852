"""The route of a call that has no registry row: the ops torch itself lowers it to.

A torch call without a row of its own (`F.cosine_similarity`, `torch.cartesian_prod`,
`F.poisson_nll_loss`, ...) is not refused when torch can say what it is made of. The call
is run as it is, under a `TorchDispatchMode` that sees each ATen op it executes below
autograd, with the values it saw; each op that carries gradient is looked up in the
registry (by the torch function or Tensor method of the same name and arguments, or by a
small table of ATen ops whose Python spelling differs) and its rule builds the manual
nodes, exactly as for a call the forward makes itself. An ATen op with no row either is
differentiated through its entry in `torch._decomp.decomposition_table` (torch's own
decomposition into simpler ATen ops, run on the same values), and so on down; an op with
neither is refused, naming the call, the ATen op and your line.

What carries gradient is decided as autograd decides it: an op's output carries gradient
when an input does, grad mode is on inside the call (a `NoGradGuard` region of a composite
makes constants) and the op is differentiable (detach, factories and `*_like` calls make
constants). After the call, every output is checked against autograd's own verdict
(`requires_grad`): where the two disagree the call is refused rather than guessed.

The report names each call that went through this route (`Recording.lowered`): the
formulas are torch's decomposition's, not a readable row of ours, and they cost more time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode

from torch_ref.aten_adapters import embedding_bag, loss, strided
from torch_ref.calls import _tensors
from torch_ref.capture import _ours, _user_line
from torch_ref.errors import NotCovered, UnsupportedModuleError
from torch_ref.registry import lookup_function, lookup_method
from torch_ref.registry.core import OpEntry

if TYPE_CHECKING:
    from torch_ref.record import _Recorder

aten = torch.ops.aten

#: ATen ops whose outputs carry no gradient whatever their inputs (autograd's verdict too)
_CONSTANT = {
    "detach",
    "lift_fresh",
    "lift_fresh_copy",
    "scalar_tensor",
    "empty_like",
    "zeros_like",
    "ones_like",
    "full_like",
    "rand_like",
    "randn_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
    "new_empty_strided",
    "empty_strided",
    "zeros",
    "ones",
    "full",
    "arange",
    "sym_size",
    "sym_stride",
    "sym_numel",
}


def _getitem_slice(x: Any, dim: int = 0, start: Any = None, end: Any = None, step: int = 1):
    index = (slice(None),) * (dim % max(len(x.shape), 1)) + (slice(start, end, step),)
    return (x, index), {}


def _copy(dst: Any, src: Any, non_blocking: bool = False) -> tuple[tuple, dict]:
    """dst.copy_(src): dst is src broadcast to dst's shape (the old dst gets no gradient)."""
    return (src, dst.shape), {}


def _index_tuple(indices: Any) -> tuple:
    return tuple(slice(None) if i is None else i for i in indices)


#: ATen ops spelt differently in Python: op name → (the torch callable, an argument adapter)
_SPELLING: dict[str, tuple[Callable[..., Any], Callable[..., tuple[tuple, dict]]]] = {
    "_unsafe_view": (torch.Tensor.view, lambda x, size: ((x, size), {})),
    "alias": (torch.Tensor.view_as, lambda x: ((x, x), {})),
    "alias_copy": (torch.Tensor.clone, lambda x: ((x,), {})),
    "unfold": (torch.Tensor.unfold, lambda x, dim, size, step: ((x, dim, size, step), {})),
    "slice": (operator.getitem, _getitem_slice),
    "_softmax": (F.softmax, lambda x, dim, half_to_float: ((x, dim), {})),
    "_log_softmax": (F.log_softmax, lambda x, dim, half_to_float: ((x, dim), {})),
    "expand": (torch.Tensor.expand, lambda x, size, implicit=False: ((x, size), {})),
    "_to_copy": (torch.Tensor.clone, lambda x, **kw: ((x,), {})),
    # x[i0, :, i2]: advanced indexing, None for a whole dimension (what x[...] lowers to)
    "index": (operator.getitem, lambda x, indices: ((x, _index_tuple(indices)), {})),
    "_unsafe_index": (operator.getitem, lambda x, indices: ((x, _index_tuple(indices)), {})),
    "copy_": (torch.Tensor.expand, _copy),
    "copy": (torch.Tensor.expand, _copy),  # (the out-of-place form: a new dst)
    "copy_to": (torch.Tensor.expand, _copy),  # (prims.copy_to, in torch's decompositions)
    "_adaptive_avg_pool2d": (F.adaptive_avg_pool2d, lambda x, size: ((x, size), {})),
    "_adaptive_avg_pool3d": (F.adaptive_avg_pool3d, lambda x, size: ((x, size), {})),
    "_cdist_forward": (torch.cdist, lambda a, b, p, mode=None: ((a, b, p), {})),
    "_pdist_forward": (torch.pdist, lambda x, p=2.0: ((x, p), {})),
    "_linalg_solve_ex": (  # (result, LU, pivots, info): the result is the value (_MULTI)
        torch.linalg.solve,
        lambda A, B, left=True, check_errors=False: ((A, B), {"left": left}),
    ),
    "native_layer_norm": (
        F.layer_norm,
        lambda x, shape, w, b, eps: ((x, shape, w, b, eps), {}),
    ),
    "mse_loss": (F.mse_loss, loss("reduction")),
    "l1_loss": (F.l1_loss, loss("reduction")),
    "smooth_l1_loss": (F.smooth_l1_loss, loss("reduction", "beta")),
    "huber_loss": (F.huber_loss, loss("reduction", "delta")),
    "binary_cross_entropy": (F.binary_cross_entropy, loss("weight", "reduction")),
    "binary_cross_entropy_with_logits": (
        F.binary_cross_entropy_with_logits,
        loss("weight", "pos_weight", "reduction"),
    ),
    "nll_loss": (F.nll_loss, loss("weight", "reduction", "ignore_index")),
    "as_strided": (torch.as_strided, strided),
    "as_strided_copy": (torch.as_strided, strided),
    "_embedding_bag": (F.embedding_bag, embedding_bag),
    "_embedding_bag_forward_only": (F.embedding_bag, embedding_bag),
}
_MULTI = {
    "native_layer_norm": 0,
    "_embedding_bag": 0,
    "_embedding_bag_forward_only": 0,
    "_linalg_solve_ex": 0,
}


def _convolution(
    x: Any,
    w: Any,
    b: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: int,
) -> tuple[Callable[..., Any], tuple, dict]:
    """aten.convolution as the F.conv*d / F.conv_transpose*d call it is."""
    n = len(x.shape) - 2
    if transposed:
        fn = getattr(F, f"conv_transpose{n}d", None)
        return fn, (x, w, b, stride, padding, output_padding, groups, dilation), {}
    return getattr(F, f"conv{n}d", None), (x, w, b, stride, padding, dilation, groups), {}


#: ATen ops whose torch function depends on their arguments: name → (fn, args, kwargs)
def _linalg_svd(
    A: Any, full_matrices: bool = False, compute_uv: bool = True, driver: Any = None
) -> tuple[Callable[..., Any], tuple, dict]:
    """aten._linalg_svd as torch.linalg.svd, or without the vectors (its U and Vh empty) as
    torch.linalg.svdvals, whose value is output 1 (_MULTI)."""
    if compute_uv:
        return torch.linalg.svd, (A, full_matrices), {}
    return torch.linalg.svdvals, (A,), {}


_CHOSEN: dict[str, Callable[..., tuple[Callable[..., Any], tuple, dict]]] = {
    "convolution": _convolution,
    "_linalg_svd": _linalg_svd,
}  # ops with auxiliary outputs: the index that is the value


def _entry(op: Any) -> tuple[OpEntry | None, Callable[..., tuple[tuple, dict]] | None]:
    """The registry row of an ATen op, with its argument adapter (None: as they are)."""
    name = op._schema.name.split("::", 1)[1]
    if name in _SPELLING:
        fn, adapt = _SPELLING[name]
        return _row_of(fn), adapt
    for space, prefix in ((torch.linalg, "linalg_"), (torch.special, "special_")):
        if name.startswith(prefix) and hasattr(space, name[len(prefix) :]):
            entry = lookup_function(getattr(space, name[len(prefix) :]))
            if entry is not None:
                return entry, None
    for space in (torch, F):
        fn = getattr(space, name, None)
        if fn is not None and (entry := lookup_function(fn)) is not None:
            return entry, None
    return lookup_method(name), None


def _row_of(fn: Any) -> OpEntry | None:
    """The row of a torch function or Tensor method."""
    entry = lookup_function(fn) if fn is not None else None
    if entry is None and getattr(fn, "__qualname__", "").startswith("TensorBase."):
        entry = lookup_method(fn.__name__)
    if entry is None and isinstance(fn, type(torch.Tensor.view)):
        entry = lookup_method(fn.__name__)
    return entry


def _view_index(name: str, args: tuple, kwargs: dict) -> tuple | None:
    """The index that makes an ATen view as `base[index]` (slice, select), or None."""
    if name == "slice":
        return _getitem_slice(*args, **kwargs)[0][1]
    if name == "select":
        x, dim, i = args[:3]
        return (slice(None),) * (dim % max(len(x.shape), 1)) + (i,)
    if name == "narrow":
        x, dim, start, length = args[:4]
        return (slice(None),) * (dim % len(x.shape)) + (slice(start, start + length),)
    if name == "diagonal":
        return _diagonal_index(*args, **kwargs)
    return None


def _diagonal_index(x: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> tuple:
    """x.diagonal(offset, dim1, dim2) as x[index]: an index array per dim, broadcast so that
    the other dims come first and the diagonal last, as the view lays them out."""
    n = len(x.shape)
    dim1, dim2 = dim1 % n, dim2 % n
    others = [d for d in range(n) if d not in (dim1, dim2)]
    k = max(0, min(x.shape[dim1] + min(offset, 0), x.shape[dim2] - max(offset, 0)))
    index: list[Any] = [None] * n
    for j, d in enumerate(others):
        index[d] = torch.arange(x.shape[d]).reshape((-1,) + (1,) * (len(others) - j))
    along = torch.arange(k)
    index[dim1], index[dim2] = along - min(offset, 0), along + max(offset, 0)
    return tuple(index)


def _mutates(op: Any) -> bool:
    """Whether an ATen op writes its first argument (an in-place op)."""
    args = op._schema.arguments
    alias = args[0].alias_info if args else None
    return alias is not None and alias.is_write


def _fresh_writes(func: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments with a copy of each tensor the op writes in place besides its result
    (native_batch_norm's running statistics: buffers, constants of the record)."""
    written = {a.name for a in func._schema.arguments if a.alias_info and a.alias_info.is_write}

    def copy(name: str, value: Any) -> Any:
        return value.clone() if name in written and isinstance(value, torch.Tensor) else value

    names = [a.name for a in func._schema.arguments]
    return (
        tuple(copy(n, v) for n, v in zip(names, args, strict=False)),
        {k: copy(k, v) for k, v in kwargs.items()},
    )


def _storage(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # (a tensor without storage)
        return None


def _float_tensors(value: Any, complex_too: bool = False) -> list[torch.Tensor]:
    return [t for t in _tensors(value) if t.is_floating_point() or (complex_too and t.is_complex())]


class Lowering(TorchDispatchMode):
    """The ATen ops of one call, recorded as manual nodes by the recorder's own rules."""

    def __init__(self, rec: _Recorder, what: str, grad: bool) -> None:
        super().__init__()
        self.rec = rec
        self.what = what
        self.grad = grad  # grad mode at the call: a region inside with it off makes constants
        #: inside a decomposition (ops called below autograd: no version bump after a write)
        self.inner = 0
        self.ops: list[str] = []
        #: id → (a value an op without a row or decomposition made, its refusal)
        self.poisoned: dict[int, tuple[torch.Tensor, Exception]] = {}
        #: id → (an output, whether the record made it live): the latest verdict on each tensor
        self.made: dict[int, tuple[torch.Tensor, bool]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = self.dispatch(func, args, kwargs)
        if self.inner and _mutates(func) and args and isinstance(args[0], torch.Tensor):
            self.aliases_written(args[0], func)
        return out

    def aliases_written(self, t: torch.Tensor, func: Any) -> None:
        """An in-place write inside a decomposition (below autograd: no version count tells a
        later read): every other tensor on t's storage, but the views the record writes back
        through (slice, select), is poisoned, refused where it leaves the call with gradient."""
        kept, u = {id(t)}, t
        while id(u) in self.rec.views and id(t) not in self.poisoned:  # (written back)
            u = self.rec.views[id(u)][0]
            kept.add(id(u))
        name = func._schema.name.split("::", 1)[1]
        refusal = _ours(
            UnsupportedModuleError(
                f"{self.what}{_user_line()} is not supported: torch's decomposition of it "
                f"writes in place (aten.{name}) through a view the oracle cannot follow"
            )
        )
        ptr = _storage(t)
        for u in [*self.rec.keep, *(v for v, _ in self.made.values())]:
            if id(u) not in kept and u.is_floating_point() and ptr and _storage(u) == ptr:
                self.poisoned[id(u)] = (u, refusal)

    def dispatch(self, func: Any, args: Any, kwargs: dict) -> Any:
        rec = self.rec
        name = func._schema.name.split("::", 1)[1]
        mutates = _mutates(func)
        poisoned = [t for t in _tensors((args, kwargs)) if id(t) in self.poisoned]
        live = (
            (rec.is_live((args, kwargs)) or bool(poisoned))
            and name not in _CONSTANT
            and (torch.is_grad_enabled() or not self.grad)
        )
        if live and poisoned:  # (a value the record could not follow: so is what it makes,
            out = func(*args, **kwargs)  # refused only if it leaves the call with gradient)
            refusal = self.poisoned[id(poisoned[0])][1]
            for t in _float_tensors(out, complex_too=True) + ([args[0]] if mutates else []):
                self.poisoned[id(t)] = (t, refusal)
            return out
        if not live:
            written = mutates and args and id(args[0]) in rec.live
            old = args[0].detach().clone() if written else None
            out = func(*args, **kwargs)
            if written:
                self.constant_write(args[0], old, name)
                return out
            self.note(_float_tensors(out), False)
            self.view(name, args, kwargs, out)
            return out
        if torch.Tag.nondeterministic_seeded in func.tags:  # (its decomposition draws anew)
            raise _ours(
                ValueError(
                    f"{self.what}{_user_line()} draws random numbers (aten.{name}) on values "
                    "that carry gradient: the manual pass and autograd would see different "
                    "draws, so no reference gradient exists"
                )
            )
        fn = None
        if name in _CHOSEN:  # (the torch function depends on the arguments)
            fn, vargs, vkwargs = _CHOSEN[name](*args, **kwargs)
            entry = _row_of(fn)
        else:
            entry, adapt = _entry(func)
            vargs, vkwargs = (args, kwargs) if adapt is None else adapt(*args, **kwargs)
        if entry is None:
            return self.decompose(func, name, args, kwargs)
        where = f"{self.what} (through torch's lowering: aten.{name})"
        node = rec.node_name(name)
        try:
            result = rec.conv.call(
                entry, where, _user_line, node, tuple(rec.values_of(vargs, where)),
                dict(rec.values_of(vkwargs, where)),
            )  # fmt: skip
        except NotCovered as refusal:  # (a form its row does not cover: its decomposition)
            return self.decompose(func, name, args, kwargs, refusal)
        out = func(*args, **kwargs)
        self.ops.append(name)
        if mutates:  # (autograd bumps the version after this returns)
            bump = 0 if self.inner else 1
            rec.bind_output(args[0], result, where, grad=False, copy=False, bump=bump)
            rec.write_back(args[0], where, bump=bump)
            self.note([args[0]], True)
            return out
        at = _MULTI.get(name)
        if name == "_linalg_svd" and fn is torch.linalg.svdvals:
            at = 1  # (S alone: U and Vh are empty)
        if at is not None:
            values = list(out)
            values[at] = rec.bind_output(out[at], result, where, False, False)
            for k, t in enumerate(values):
                self.note(_float_tensors(t), k == at)
            return type(out)(values)
        bound = rec.bind_output(out, result, where, grad=False, copy=False)
        self.note(_float_tensors(bound), True)
        self.view(name, args, kwargs, bound)
        return bound

    def view(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        """An ATen view as base[index]: a later in-place write through it rebinds the base
        (the recorder's write_back), as torch's CopySlices does."""
        index = _view_index(name, args, kwargs)
        if index is not None and isinstance(out, torch.Tensor):
            self.rec.views[id(out)] = (args[0], index)
            self.rec.keep.append(out)

    def decompose(
        self, func: Any, name: str, args: tuple, kwargs: dict, because: Exception | None = None
    ) -> Any:
        """An op without a row (or in a form its row does not cover: `because`): torch's
        decomposition of it, run on the same values under this mode (its ops are recorded),
        standing for the op's own output."""
        decomposition = decomposition_table.get(func)
        if decomposition is None and torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), "CompositeImplicitAutograd"
        ):  # (an op torch defines by other ops: that definition, as autograd runs it)
            decomposition = func.decompose
        if decomposition is None or _mutates(func):
            out = func(*args, **kwargs)  # (refused where a floating value of it flows on:
            written = [args[0]] if _mutates(func) else []  # an integer result is a constant)
            refusal = _ours(self.unfollowed(name, (out, args), because))
            for t in _float_tensors(out, complex_too=True) + written:
                self.poisoned[id(t)] = (t, refusal)
            return out
        fresh = _fresh_writes(func, args, kwargs)  # (the op writes those; so would its
        out = func(*args, **kwargs)  # decomposition, a second time: it writes copies)
        self.inner += 1
        try:
            with self:
                mine = decomposition(*fresh[0], **fresh[1])
        finally:
            self.inner -= 1
        theirs, ours = _float_tensors(out), _float_tensors(mine)
        if len(theirs) != len(ours):
            raise _ours(
                UnsupportedModuleError(
                    f"{self.what}{_user_line()}: torch's decomposition of aten.{name} returns "
                    f"{len(ours)} floating tensors where the op returns {len(theirs)}"
                )
            )
        for t, d in zip(theirs, ours, strict=True):
            if not _agrees(t, d):  # (torch's decomposition is not always its kernel)
                raise _ours(
                    UnsupportedModuleError(
                        f"{self.what}{_user_line()} is not supported: it has no registry row, "
                        f"and torch's decomposition of aten.{name}, which the oracle would "
                        "differentiate, computes other values than torch's kernel on these "
                        f"inputs (largest difference {_gap(t, d):.3g}): torch's decomposition "
                        "is wrong here"
                    )
                )
            if id(d) in self.poisoned:  # (made by an op the record cannot follow)
                self.poisoned[id(t)] = (t, self.poisoned[id(d)][1])
                continue
            found = self.rec.bound.get(id(d))
            if found is not None and id(d) in self.rec.live:
                self.rec.bind_output(t, found[0], self.what, grad=False, copy=False)
            self.note([t], found is not None and id(d) in self.rec.live)
        return out

    def unfollowed(self, name: str, values: Any, because: Exception | None) -> Exception:
        """Why aten.<name>, with neither a row that covers it nor a decomposition, is refused."""
        if because is not None:
            return NotCovered(
                f"{because}; and torch's lowering of it cannot be followed either: "
                f"aten.{name} has no decomposition in torch._decomp"
            )
        what = f"{self.what}{_user_line()} is not supported"
        if any(t.is_complex() for t in _tensors(values)):
            return UnsupportedModuleError(
                f"{what}: it has no registry row, and torch runs it as aten.{name}, on complex "
                "values; the oracle differentiates real float64 values only"
            )
        return UnsupportedModuleError(
            f"{what}: it has no registry row, and torch runs it as aten.{name}, which has no "
            "row and no decomposition in torch._decomp; see the README's 'What is supported' "
            "table"
        )

    def note(self, tensors: list[torch.Tensor], live: bool) -> None:
        for t in tensors:
            self.made[id(t)] = (t, live)

    def constant_write(self, t: torch.Tensor, old: torch.Tensor, name: str) -> None:
        """An in-place op that carries no gradient on a tensor that does (a composite's
        `NoGradGuard` clamp): autograd keeps the gradient path and uses the new value; so
        does the record, by rebinding the tensor to old + (new − old) as a constant."""
        rec = self.rec
        found = rec.bound.get(id(t))
        if found is None:
            return
        entry = lookup_function(torch.add)
        shift = rec.value(t.detach() - old, self.what)
        result = rec.conv.call(
            entry, self.what, _user_line, rec.node_name(name), (found[0], shift), {}
        )
        rec.bind(t, result, True, bump=0 if self.inner else 1)  # (autograd bumps it after)
        self.note([t], True)

    def check(self, outputs: list[torch.Tensor]) -> None:
        """Refuse where the record and autograd disagree on what carries gradient: an output
        of the call, or a value inside it that autograd differentiated (ops below an op
        with a derivative formula of its own carry no autograd metadata: not compared)."""
        if not self.grad:
            return  # (inside a custom Function's forward autograd records nothing)
        final = {id(t) for t in outputs}
        for t, live in self.made.values():
            seen = t.grad_fn is not None or id(t) in final
            if live and not t.requires_grad and id(t) in final:  # (an output autograd does not
                self.rec.bind(t, self.rec.constant(t), False)  # differentiate: a saved mean)
                continue
            if seen and live != t.requires_grad:
                said = "carries gradient" if t.requires_grad else "is a constant"
                raise _ours(
                    UnsupportedModuleError(
                        f"{self.what}{_user_line()} is not supported: it has no registry row, "
                        f"and in torch's lowering of it ({', '.join(self.ops) or 'no op'}) "
                        f"a value that autograd says {said} was read otherwise"
                    )
                )


def _agrees(kernel: torch.Tensor, decomposed: torch.Tensor) -> bool:
    """A decomposition's output is its op's, up to the rounding of another order of sums."""
    if kernel.shape != decomposed.shape:
        return False
    k, d = kernel.detach().to(torch.float64), decomposed.detach().to(torch.float64)
    scale = float(k.abs().nan_to_num(0.0, 0.0, 0.0).max()) if k.numel() else 0.0
    return bool(torch.isclose(k, d, rtol=1e-9, atol=1e-9 * scale, equal_nan=True).all())


def _gap(kernel: torch.Tensor, decomposed: torch.Tensor) -> float:
    if kernel.shape != decomposed.shape:
        return float("nan")
    return float(
        (kernel.detach().double() - decomposed.detach().double()).abs().nan_to_num(0.0).max()
    )


def lowered(
    rec: _Recorder,
    func: Any,
    name: str,
    args: tuple,
    kwargs: dict,
    frame: FrameType | None,
    because: NotCovered | None = None,
) -> Any:
    """A call without a row (or in a form its row does not cover: `because`, the row's
    refusal), recorded through the ATen ops torch runs for it."""
    if because is None:
        return _lowered(rec, func, name, args, kwargs, frame)
    try:
        return _lowered(rec, func, name, args, kwargs, frame, " (a form its row does not cover)")
    except UnsupportedModuleError as err:
        if isinstance(err, NotCovered):  # (the row's reason, met again inside)
            raise
        raise _ours(
            NotCovered(f"{because}; and torch's lowering of it cannot be followed either: {err}")
        ) from None


def _lowered(
    rec: _Recorder,
    func: Any,
    name: str,
    args: tuple,
    kwargs: dict,
    frame: FrameType | None,
    form: str = "",
) -> Any:
    what = f"{name}{rec.where()}"
    if "out" in kwargs and kwargs["out"] is not None:
        raise _ours(
            UnsupportedModuleError(
                f"{what}{_user_line()} writes into out=; use the returned tensor"
            )
        )
    before = len(rec.b.nodes)
    lowering = Lowering(rec, what, torch.is_grad_enabled())
    with lowering:
        out = rec.run(func, args, kwargs)
    if not rec.carries(out):
        return out
    for t in _tensors(out):
        if id(t) in lowering.poisoned:
            raise lowering.poisoned[id(t)][1]
        found = rec.bound.get(id(t))
        if found is not None and found[1] != t._version and id(t) in rec.live:
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{_user_line()} is not supported: it has no registry row, and "
                    "torch's lowering of it writes its result in place through a view the "
                    "oracle cannot follow"
                )
            )
    lowering.check(_tensors(out))
    for t in _tensors(out):
        if (t.requires_grad or not torch.is_grad_enabled()) and id(t) not in rec.live:
            if t.is_floating_point() and (t.requires_grad or rec.is_live((args, kwargs))):
                raise _ours(
                    UnsupportedModuleError(
                        f"{what}{_user_line()} is not supported: it has no registry row and "
                        "the oracle lost track of its output in torch's lowering of it"
                    )
                )
    rec.tag(frame, before)
    rec.lowered_calls.append(f"{name}{form}{_user_line()}")
    return out
