"""What the record refuses before torch or NumPy would fail on it, each with its reason: a
mixin of the recorder (torch_ref.record)."""

from __future__ import annotations

from typing import Any

import torch

from torch_ref.capture import _ours, _user_line
from torch_ref.errors import UnsupportedModuleError

#: calls that differentiate inside the forward: the forward is then a second-order program
SECOND_ORDER = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)


class Refusals:
    """The recorder's refusals of programs it cannot follow."""

    def refuse_leaf_write(self, t: torch.Tensor, what: str) -> None:
        """An in-place op on a tensor autograd cannot let change (torch's own rule: a leaf
        that requires grad, an input or a parameter), refused before torch refuses it."""
        if not (t.is_leaf and t.requires_grad and torch.is_grad_enabled()):
            return
        found = self.bound.get(id(t))
        name = found[0].name if found is not None else self.conv.names.get(id(t), "a leaf tensor")
        raise _ours(
            UnsupportedModuleError(
                f"{what}{self.where()}{_user_line()} modifies {name!r} in place (an input or a "
                "tensor of the model); use the out-of-place form"
            )
        )

    def refuse_second_order(self, func: Any, args: tuple, kwargs: dict) -> None:
        """torch.autograd.grad (or backward) on values that carry gradient, inside the forward:
        MAML's inner step, a gradient penalty. The gradient it makes is a function of the
        parameters too, and the oracle differentiates the forward's ops once."""
        if not self.is_live((args, kwargs)):
            return
        raise _ours(
            UnsupportedModuleError(
                f"{_name(func)}{self.where()}{_user_line()} differentiates inside the forward "
                "(a second-order program: a MAML inner step, a gradient penalty): the oracle "
                "differentiates the forward's ops once, not a gradient computed in it; check "
                "the function without it, or its first-order part"
            )
        )

    def refuse_transformed(self, t: torch.Tensor, what: str) -> None:
        """A tensor of a torch.func transform (vmap's batched tensors, grad's wrappers) met
        as an operand: the record sees one sample's view of a batch it cannot follow."""
        if torch._C._functorch.is_functorch_wrapped_tensor(t):
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{_user_line()} runs under a torch.func transform (vmap, grad, "
                    "jacrev, ...), whose tensors stand for a batch the record cannot follow; "
                    "write the batched computation with ordinary batched ops for the check"
                )
            )


def _name(func: Any) -> str:
    if func is torch.Tensor.backward:
        return "Tensor.backward"
    return f"torch.autograd.{func.__name__}"
