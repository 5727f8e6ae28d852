"""The oracle's typed errors."""

from __future__ import annotations


class UnsupportedModuleError(NotImplementedError):
    """A module, function or loss option the oracle has no explicit backward for.

    The message names the qualified module name (or graph node), its class, and what is
    supported, so that the user knows which layer to change.
    """


class NothingToDifferentiate(ValueError):
    """No output of a recorded run carries gradient (every output is a constant of it)."""
