"""The op registry: one row per op, every torch name that reaches it, grouped by family.

Each family module here (`activations`, `affine`, `convolution`, ...) defines `ROWS`, a list
of `OpEntry` (see torch_ref.registry.core): the op's rule (its functional form, written
against the manual network), the functions, Tensor methods and module types that reach it,
how a module's attributes map onto the rule's arguments, and the samples and refusals the
generic tests run over every row. Family modules are found by name: adding an op is adding
a row to its family's ROWS (or a new family module).

    entry = lookup_module(nn.Conv2d)        # module → row
    entry = lookup_function(F.conv2d)       # function (or operator.add, torch.cat) → row
    entry = lookup_method("view")           # Tensor method → row
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from torch_ref.registry.core import OpEntry

__all__ = ["OpEntry", "registry", "lookup_function", "lookup_method", "lookup_module"]


@functools.cache
def registry() -> tuple[OpEntry, ...]:
    """Every row of every family, in family-name order; duplicate claims fail here."""
    entries: list[OpEntry] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "core":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        entries.extend(getattr(module, "ROWS", ()))
    _tables(tuple(entries))  # raises on a name claimed twice
    return tuple(entries)


@functools.cache
def _tables(
    entries: tuple[OpEntry, ...],
) -> tuple[dict[Any, OpEntry], dict[str, OpEntry], dict[type, OpEntry]]:
    functions: dict[Any, OpEntry] = {}
    methods: dict[str, OpEntry] = {}
    modules: dict[type, OpEntry] = {}
    for entry in entries:
        for table, keys in (
            (functions, entry.functions),
            (methods, entry.methods),
            (modules, entry.modules),
        ):
            for key in keys:
                if key in table and table[key] is not entry:
                    raise RuntimeError(
                        f"{key!r} is claimed by two registry rows: {table[key].name!r} and "
                        f"{entry.name!r}"
                    )
                table[key] = entry
    return functions, methods, modules


def lookup_function(fn: Any) -> OpEntry | None:
    try:
        return _tables(registry())[0].get(fn)
    except TypeError:  # an unhashable callable
        return None


def lookup_method(name: str) -> OpEntry | None:
    return _tables(registry())[1].get(name)


def lookup_module(cls: type) -> OpEntry | None:
    return _tables(registry())[2].get(cls)
