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
def _lookup_tables() -> tuple[dict[Any, OpEntry], dict[str, OpEntry], dict[type, OpEntry]]:
    """The tables of registry() (the very same dicts), by a cache with no argument: looking
    them up as _tables(registry()) hashes every frozen row on every call."""
    return _tables(registry())


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
        return _lookup_tables()[0].get(fn)
    except TypeError:  # an unhashable callable
        return None


def lookup_method(name: str) -> OpEntry | None:
    return _lookup_tables()[1].get(name)


def lookup_module(cls: type) -> OpEntry | None:
    return _lookup_tables()[2].get(cls)


# --- the README's table of what is supported ----------------------------------------------

#: families in the order a reader looks for them, with their titles
FAMILIES = {
    "affine": "affine",
    "convolution": "convolution",
    "pooling": "pooling",
    "normalization": "normalisation",
    "recurrent": "recurrent",
    "attention": "attention",
    "embedding": "embedding",
    "activation": "activations",
    "elementwise": "elementwise math",
    "arithmetic": "arithmetic",
    "comparison": "comparison",
    "reduction": "reductions",
    "scan": "cumulative",
    "sorting": "sorting and selection",
    "softmax": "softmax",
    "linalg": "products",
    "matrix": "linear algebra",
    "shape": "shape and indexing",
    "indexing": "writes by index (scatter)",
    "resample": "resampling",
    "padding": "padding",
    "dropout": "dropout",
    "quantize": "fake quantisation",
    "sizes": "sizes (evaluated on known shapes)",
}


@functools.cache
def _public_names() -> dict[int, str]:
    """id(function) → how users write it, first namespace wins: F.conv2d over torch.conv2d."""
    import operator

    import torch
    import torch.nn.functional as F

    names: dict[int, str] = {}
    for prefix, namespace in (
        ("F", F),
        ("torch", torch),
        ("torch.linalg", torch.linalg),
        ("torch.special", torch.special),
        ("torch.fft", torch.fft),
        ("operator", operator),
    ):
        for name, obj in vars(namespace).items():
            if callable(obj) and not (name.startswith("__") and name.endswith("__")):
                names.setdefault(id(obj), f"{prefix}.{name}")
    return names


def torch_name(target: Any) -> str:
    """How users write a function, method or module: F.relu, torch.cat, Tensor.view, nn.ReLU."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    if isinstance(target, type):
        return f"nn.{target.__name__}"
    known = _public_names().get(id(target))
    if known is not None:
        return known
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__qualname__', repr(target))}".lstrip(".")


def supported_modules() -> str:
    """Every module type with a row, as users write them: "nn.AdaptiveAvgPool1d, ..."."""
    return ", ".join(sorted({torch_name(m) for e in registry() for m in e.modules}))


def supported_markdown() -> str:
    """The table of every registry row, family by family (docs/ops.md, `make readme`)."""
    entries = registry()
    known = [f for f in FAMILIES if any(e.family == f for e in entries)]
    others = sorted({e.family for e in entries} - set(FAMILIES))
    lines = [
        f"{len(entries)} ops, reached by "
        f"{sum(len(e.functions) + len(e.methods) + len(e.modules) for e in entries)} torch names.",
        "",
        "| family | op | torch | notes |",
        "|---|---|---|---|",
    ]
    for family in known + others:
        for e in (e for e in entries if e.family == family):
            names = [torch_name(t) for t in (*e.modules, *e.functions)]
            names += [torch_name(m) for m in e.methods if not m.startswith("__")]
            names = list(dict.fromkeys(names))
            cell = ", ".join(f"`{n}`" for n in names) or "—"
            note = e.note.replace("|", "\\|")
            lines.append(f"| {FAMILIES.get(family, family)} | {e.name} | {cell} | {note} |")
    return "\n".join(lines)


SUPPORTED_BEGIN = (
    "<!-- the table below is generated from the op registry "
    "(torch_ref.registry.supported_markdown); `make readme` rewrites it -->"
)
SUPPORTED_END = "<!-- end of the generated table -->"


def with_supported_table(markdown: str) -> str:
    """`markdown` with the text between the two markers replaced by supported_markdown()."""
    start = markdown.index(SUPPORTED_BEGIN) + len(SUPPORTED_BEGIN)
    end = markdown.index(SUPPORTED_END)
    return markdown[:start] + "\n" + supported_markdown() + "\n" + markdown[end:]
