"""The oracle's typed errors."""

from __future__ import annotations


class UnsupportedModuleError(NotImplementedError):
    """A module, function or loss option the oracle has no explicit backward for.

    The message names the qualified module name (or graph node), its class, and what is
    supported, so that the user knows which layer to change.
    """


class NothingToDifferentiate(ValueError):
    """No output of a recorded run carries gradient (every output is a constant of it)."""


class NotCovered(UnsupportedModuleError):
    """A row's formula does not cover this form of a call (a weight computed in forward(), a
    target that carries gradient, a tensor where the row takes a number), though torch's
    lowering of the call may: the recorder then differentiates the call through the ATen
    ops torch runs for it (torch_ref.lowering), and refuses it, with this reason, only
    where that route cannot follow it either."""
