"""Losses as ops: `F.cross_entropy(logits, t)` or `nn.MSELoss()(y, t)` met in the recorded
program (a loss_fn, a sum of losses, a loss inside the model) is a node of the network,
z = ℓ(y, t), whose backward is the manual_bp loss's ∂ℓ/∂y (manual_bp.ops.loss.LossNode).

One row per loss; the options a module or a call carries are torch's keywords, converted by
torch_ref.losses (class weights, ignore_index, label_smoothing, beta, delta, pos_weight).
The target is a constant of the run (a tensor that does not require grad); its dtype and
shape are checked as torch's loss checks them, before any arithmetic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn._reduction import legacy_get_string

import manual_bp.losses as L
from manual_bp.ops.loss import LossNode
from torch_ref.errors import NotCovered
from torch_ref.losses import FUNCTIONAL_LOSSES, MODULE_CONVERTERS, _convert_function
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Refusal, Sample, tensor

#: the losses whose target is integer labels only, and the dtypes torch takes for them
_LABEL_TARGETS = {
    L.MultiLabelMarginLoss: (torch.int64,),
    L.CTCLoss: (torch.int32, torch.int64),
}


def check_target(loss: L.Loss, target: torch.Tensor, input_ndim: int = 2) -> None:
    """The target's dtype as torch's loss takes it: class indices int64 (or uint8, for an
    input of at most 2 dims: torch's K-dimensional kernel takes int64 only),
    probabilities and regression targets floating (we refuse the integer targets torch
    would promote for MSE and friends, as we refuse the shapes it would broadcast), labels
    of the label losses integer."""
    name = type(loss).__name__
    labels = _LABEL_TARGETS.get(type(loss))
    if labels is not None:
        if target.dtype not in labels:
            raise ValueError(
                f"{name}: expected a target of labels of dtype "
                f"{' or '.join(str(d) for d in labels)}, got dtype {target.dtype}"
            )
        return
    indices = "a target of class indices (int64 or uint8)"
    if isinstance(loss, L.NLLLoss):
        wanted = indices
    elif isinstance(loss, L.CrossEntropyLoss):
        wanted = f"{indices} or of probabilities (floating)"
    else:
        wanted = "a floating-point target"
    integer_ok = isinstance(loss, (L.CrossEntropyLoss, L.NLLLoss))
    if integer_ok and target.dtype == torch.uint8 and input_ndim > 2:
        raise ValueError(
            f"{name}: expected class indices of dtype int64 for an input of {input_ndim} dims "
            "(torch takes uint8 indices for (N, C) inputs only), got dtype torch.uint8"
        )
    if target.dtype in (torch.int64, torch.uint8) if integer_ok else target.is_floating_point():
        return
    if isinstance(loss, L.CrossEntropyLoss) and target.is_floating_point():
        return
    raise ValueError(f"{name}: expected {wanted}, got dtype {target.dtype}")


def _node(what: str, loss: L.Loss, input: Any, target: Any) -> Op:
    y = tensor(input, what)
    if isinstance(target, Ref):  # (torch's lowering differentiates the target too)
        raise NotCovered(
            f"{what}: this row takes a constant target, got one computed in the run"
            + (" that carries gradient" if target.dtype == "float" else "")
        )
    if not isinstance(target, Param):
        err = TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
        err.oracle = True  # type: ignore[attr-defined]
        raise err
    check_target(loss, target.tensor, len(y.shape))
    loss.check(y.shape, target.array())
    return Op(LossNode(loss), (y, target))


def _options(fn: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's options by name (input and target aside), tensors as tensors."""
    try:
        bound = inspect.signature(fn).bind(None, None, *args, **kwargs)
    except TypeError as err:
        raise TypeError(f"F.{fn.__name__}: {err}") from None
    return {
        k: v.tensor if isinstance(v, Param) else v
        for k, v in bound.arguments.items()
        if k not in ("input", "target")
    }


def _functional(fn: Callable[..., Any]) -> Callable[..., Any]:
    def rule(
        input: Any,
        target: Any,
        *args: Any,
        _loss: L.Loss | None = None,
        _what: str = "",
        **kwargs: Any,
    ) -> Op:
        if _loss is not None:  # a module: its options are its attributes
            return _node(_what, _loss, input, target)
        what = f"F.{fn.__name__}"
        options = _options(fn, args, kwargs)
        if any(isinstance(v, Ref) for v in options.values()):
            raise NotCovered(f"{what}: this row takes constant options, got a computed weight")
        if fn in _CLASS and options.get("reduction") == "none":
            raise NotCovered(f"{what}: this row takes reduction 'mean' or 'sum'")
        return _node(what, _convert_function(fn, (), options), input, target)

    rule.__name__ = fn.__name__
    return rule


_MODULE_OF = {
    F.mse_loss: nn.MSELoss,
    F.l1_loss: nn.L1Loss,
    F.smooth_l1_loss: nn.SmoothL1Loss,
    F.huber_loss: nn.HuberLoss,
    F.cross_entropy: nn.CrossEntropyLoss,
    F.nll_loss: nn.NLLLoss,
    F.binary_cross_entropy: nn.BCELoss,
    F.binary_cross_entropy_with_logits: nn.BCEWithLogitsLoss,
}


_CLASS = (F.cross_entropy, F.nll_loss)  # (their LossNode reduces over the batch)


def _module_loss(m: nn.Module) -> dict[str, Any]:
    """A loss module's options as the rule's keywords."""
    if isinstance(m, (nn.CrossEntropyLoss, nn.NLLLoss)) and m.reduction == "none":
        raise NotCovered(f"nn.{type(m).__name__}: this row takes reduction 'mean' or 'sum'")
    return {"_loss": MODULE_CONVERTERS[type(m)](m), "_what": f"nn.{type(m).__name__}"}


_WEIGHTS = torch.linspace(0.5, 2, 5, dtype=torch.float64)


def _samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(3)
        y = torch.randn(4, 5, generator=g, dtype=torch.float64)
        classes = torch.tensor([0, 3, 1, 4])
        if fn in (F.cross_entropy, F.nll_loss):
            t, opts = classes, {"reduction": "sum"}
        elif fn is F.binary_cross_entropy:
            y = torch.rand(4, 5, generator=g, dtype=torch.float64) * 0.8 + 0.1
            t, opts = torch.rand(4, 5, generator=g, dtype=torch.float64), {}
        else:
            t, opts = torch.randn(4, 5, generator=g, dtype=torch.float64), {}
        module = _MODULE_OF[fn]
        samples = [
            Sample("function", (y,), fn=lambda y, t=t, o=opts: fn(y, t, **o)),
            Sample("module", (y,), fn=lambda y, t=t, o=opts, m=module: m(**o)(y, t)),
        ]
        samples.append(
            Sample(  # (a class-index loss: through torch's lowering, NotCovered)
                "reduction='none', then weighted and summed",
                (y,),
                fn=lambda y, t=t, w=_WEIGHTS[:4] if fn in _CLASS else _WEIGHTS: (
                    fn(y, t, reduction="none") * w
                ).sum(),
            )
        )
        if fn not in _CLASS:  # (through torch's lowering, NotCovered)
            samples.append(
                Sample("a target that carries gradient", (y,),
                       fn=lambda y, t=t: fn(y, 0.5 * y.flip(0).sigmoid() + 0.5 * t)),
            )  # fmt: skip
        return samples

    return samples


def _refusals(fn: Callable[..., Any]) -> Callable[[], list[Refusal]]:
    def refusals() -> list[Refusal]:
        y = torch.randn(4, 5, dtype=torch.float64)
        if fn not in (F.cross_entropy, F.nll_loss):
            t = torch.randn(4, 3, dtype=torch.float64)
            return [Refusal("a target of another shape", (y,), ValueError, "target",
                            fn=lambda y: fn(y.sigmoid(), t))]  # fmt: skip
        t = torch.tensor([0, 3, 1, 5])
        return [
            Refusal(
                "a class index out of range",
                (y,),
                ValueError,
                r"class indices in \[0, 5\)",
                fn=lambda y: fn(y, t, reduction="sum"),
            )
        ]

    return refusals


# --- losses over labels: multi-label margin, CTC (their own rules: torch's signatures) ----


def multilabel_margin_loss(
    input: Any,
    target: Any,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Op:
    """ℓ = Σ_{j target} Σ_{i not} max(0, 1 − x[y_j] + x[i]) / C (manual_bp.losses.margin)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce, emit_warning=False)
    loss = L.MultiLabelMarginLoss(reduction)
    return _node("F.multilabel_margin_loss", loss, input, target)


def _lengths(what: str, lengths: Any) -> tuple[int, ...]:
    """CTC's input_lengths / target_lengths, constants of the run: a tensor or a sequence."""
    if isinstance(lengths, Ref):
        raise NotCovered(f"F.ctc_loss: {what} computed in the run (this row takes constants)")
    if isinstance(lengths, Param):
        if lengths.tensor.is_floating_point() or lengths.tensor.dtype == torch.bool:
            raise ValueError(f"expected integer {what}, got dtype {lengths.tensor.dtype}")
        return tuple(int(v) for v in lengths.tensor.reshape(-1).tolist())
    if isinstance(lengths, (tuple, list)):
        return tuple(_lengths(what, v)[0] if isinstance(v, (Ref, Param)) else v for v in lengths)
    return (lengths,)


def ctc_loss(
    log_probs: Any,
    targets: Any,
    input_lengths: Any,
    target_lengths: Any,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Op:
    """−log Σ over the alignments of each target (manual_bp.losses.sequence); the lengths
    are read as the constants they are."""
    loss = L.CTCLoss(
        _lengths("input_lengths", input_lengths),
        _lengths("target_lengths", target_lengths),
        blank=blank,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    return _node("F.ctc_loss", loss, log_probs, targets)


class _WithTarget(nn.Module):
    """A loss module called on the sample's input and fixed label arguments."""

    def __init__(self, loss: nn.Module, *args: Any) -> None:
        super().__init__()
        self.loss, self.args = loss, args

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loss(x, *self.args)


def _label_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    # (a duplicate label, a row with no label, every class a label, a label after the −1)
    t = torch.tensor([[1, 1, 3, -1, 0], [-1, 2, 0, 0, 0], [4, 3, 2, 1, 0], [2, -1, 4, 0, 0]])
    f = F.multilabel_margin_loss
    return [
        Sample("function", (x,), fn=lambda x: f(x, t)),
        Sample(
            "module, sum", (x,), module=_WithTarget(nn.MultiLabelMarginLoss(reduction="sum"), t)
        ),
        Sample("reduction='none'", (x,), fn=lambda x: f(x, t, reduction="none")),
        Sample("one sample (C,)", (x[0],), fn=lambda x: f(x, t[0])),
    ]


def _ctc_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(6)
    u = torch.randn(7, 3, 5, generator=g, dtype=torch.float64)
    padded = torch.tensor([[1, 1, 2], [3, 2, 0], [4, 0, 0]])  # (a repeated label)
    joined = torch.tensor([1, 1, 2, 3, 2, 0])
    lengths = (torch.tensor([7, 5, 6]), torch.tensor([3, 2, 1]))
    f = F.ctc_loss
    return [
        Sample("log_softmax, padded targets", (u,),
               fn=lambda u: f(u.log_softmax(-1), padded, *lengths)),
        Sample("module, concatenated targets, blank=C-1, sum", (u,),
               module=_WithTarget(nn.CTCLoss(blank=4, reduction="sum"), joined,
                                  (7, 5, 6), (3, 2, 1))),
        Sample("log_probs not normalised (torch's convention), reduction='none'", (u,),
               fn=lambda u: f(u, padded, (7, 7, 4), (3, 2, 0), reduction="none")),
        Sample("zero_infinity, one impossible sample", (u,),
               fn=lambda u: f(u.log_softmax(-1), padded, (7, 1, 6), (3, 2, 1),
                              zero_infinity=True)),
        Sample("unbatched (T, C)", (u[:, 0],),
               fn=lambda u: f(u.log_softmax(-1), padded[0], (6,), (3,))),
    ]  # fmt: skip


def _ctc_refusals() -> list[Refusal]:
    u = torch.randn(4, 2, 5, dtype=torch.float64)
    t = torch.tensor([[1, 2, 3], [1, 1, 0]])
    return [
        Refusal("an infinite loss (a repeated label in too few frames)", (u,), ValueError,
                r"infinite for sample 1: .* no finite gradient",
                fn=lambda u: F.ctc_loss(u.log_softmax(-1), t, (4, 2), (3, 2))),
        Refusal("a label out of range", (u,), ValueError, r"target labels in \[0, 5\)",
                fn=lambda u: F.ctc_loss(u.log_softmax(-1), t + 4, (4, 4), (1, 1))),
        Refusal("a label that is the blank", (u,), ValueError, r"other than blank=0, got 0",
                fn=lambda u: F.ctc_loss(u.log_softmax(-1), t - 1, (4, 4), (1, 1))),
    ]  # fmt: skip


ROWS = [
    OpEntry(
        fn.__name__,
        "loss",
        _functional(fn),
        functions=(fn,),
        modules=(module,),
        module_args=_module_loss,
        note="z = ℓ(y, t), a scalar; the target is a constant",
        samples=_samples(fn),
        refusals=_refusals(fn),
    )
    for fn, module in _MODULE_OF.items()
] + [
    OpEntry(
        "multilabel_margin_loss",
        "loss",
        multilabel_margin_loss,
        functions=(F.multilabel_margin_loss,),
        modules=(nn.MultiLabelMarginLoss,),
        module_args=("reduction",),
        note="ℓ = Σ hinge(target − other) / C per sample; the target is a constant",
        samples=_label_samples,
    ),
    OpEntry(
        "ctc_loss",
        "loss",
        ctc_loss,
        functions=(F.ctc_loss,),
        modules=(nn.CTCLoss,),
        module_args=("blank", "reduction", "zero_infinity"),
        note="α/β recursions; torch's gradient convention (exp(lp) − posterior); "
        "an infinite loss without zero_infinity refused",
        samples=_ctc_samples,
        refusals=_ctc_refusals,
    ),
]
assert set(_MODULE_OF) == set(FUNCTIONAL_LOSSES)
