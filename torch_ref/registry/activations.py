"""Elementwise functions: one row each, f and f′ in manual_bp.ops.activations.

Every form reaches the same rule: `nn.LeakyReLU(0.2)(x)`, `F.leaky_relu(x, 0.2)`,
`torch.nn.functional.leaky_relu(x, negative_slope=0.2, inplace=True)`. The rule's options
are the functional form's keyword arguments, in torch's positional order, with torch's
defaults; a module passes its attributes of the same names.

The activations (family "activation") come first, then PReLU (a learned slope), then torch's
elementwise math (family "elementwise": exp, log, sqrt, clamp, abs, round, ...). x ** c is in
the arithmetic family, with the other powers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.activations import PReLU, get_activation
from manual_bp.ops.arithmetic import Where
from manual_bp.ops.comparison import Compare
from torch_ref.errors import NotCovered, UnsupportedModuleError
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
    Refusal,
    Sample,
    number,
    tensor,
    weighted,
)

#: an option torch requires (no default): F.threshold(input, threshold, value)
REQUIRED: Any = object()


def activation_rule(act: str, **defaults: Any) -> Callable[..., Op]:
    """f(x, *options, inplace=False) as the activation `act` of manual_bp, options in torch's
    positional order (`defaults` gives names, order and torch's default values; REQUIRED for
    an option without one)."""
    names = [*defaults, "inplace"]
    known = frozenset(names)

    def rule(input: Any, *args: Any, **kwargs: Any) -> Op:
        if len(args) > len(names):
            raise UnsupportedModuleError(f"{act}: expected at most {len(names)} options")
        options = dict(defaults)
        if args:
            options.update(zip(names, args, strict=False))
        if kwargs:
            unknown = kwargs.keys() - known
            if unknown:
                raise UnsupportedModuleError(f"{act}: unsupported option(s) {sorted(unknown)}")
            options.update(kwargs)
        options.pop("inplace", None)  # in-place or not, the value is the same (see capture)
        missing = [k for k, v in options.items() if v is REQUIRED]
        if missing:
            raise UnsupportedModuleError(f"{act}: missing option(s) {missing}")
        for k, v in options.items():
            if isinstance(v, (Ref, Param, torch.Tensor)):  # (torch's lowering, NotCovered)
                raise NotCovered(f"{act}: this row takes a number as {k}, got a tensor")
        return Op(get_activation(act, **options), (tensor(input, act),))

    return rule


def _samples(
    fn: Callable[..., Any], module: nn.Module | None, domain: str = "real"
) -> Callable[[], list[Sample]]:
    """The function and the module on 3·N(0, 1) inputs, and on integer-valued inputs from −7
    to 7 that sit on the kinks (0, ±1, ±3, 6, ...): torch's branch is taken there without any
    replay. domain "positive": inputs in [0.25, 4.25) (log, sqrt, ...); "open unit": (−1, 1)
    (asin, erfinv); "probability": (0, 1) (logit); "above one": [1.6, 4.6) (acosh)."""

    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(0)
        if domain == "positive":
            x = 0.25 + 4 * torch.rand(4, 7, generator=g, dtype=torch.float64)
            ints = torch.randint(1, 6, (3, 5), generator=g).double()
        elif domain == "open unit":  # (−1, 1): asin, atanh, erfinv; the ints are 0
            x = 1.9 * torch.rand(4, 7, generator=g, dtype=torch.float64) - 0.95
            ints = torch.zeros(3, 5, dtype=torch.float64)
        elif domain == "probability":  # (0, 1): logit; the ints are ½ and its kin
            x = 0.05 + 0.9 * torch.rand(4, 7, generator=g, dtype=torch.float64)
            ints = torch.randint(1, 4, (3, 5), generator=g).double() / 4
        elif domain == "above one":  # acosh; mvlgamma with p ≤ 4
            x = 1.6 + 3 * torch.rand(4, 7, generator=g, dtype=torch.float64)
            ints = torch.randint(2, 6, (3, 5), generator=g).double()
        else:
            x = 3 * torch.randn(4, 7, generator=g, dtype=torch.float64)
            ints = torch.randint(-7, 8, (3, 5), generator=g).double()
        cases = [Sample("function", (x,), fn=fn), Sample("integer-valued", (ints,), fn=fn)]
        if module is not None:
            cases.append(Sample("module", (x,), module=module))
        return cases

    return samples


def activation(
    name: str,
    functions: tuple[Any, ...],
    methods: tuple[str, ...] = (),
    module: type[nn.Module] | None = None,
    sample: Callable[..., Any] | None = None,
    note: str = "",
    *,
    family: str = "activation",
    domain: str = "real",
    module_instance: nn.Module | None = None,
    module_args: Any = None,
    rule: Callable[..., Any] | None = None,
    refusals: Callable[[], list[Refusal]] | None = None,
    more: Callable[[], list[Sample]] = list,
    **defaults: Any,
) -> OpEntry:
    """The row of activation `name` (its manual_bp table name) with torch's option defaults;
    `more`: samples beside the standard ones."""
    instance = module_instance or (module() if module else None)
    standard = _samples(sample or functions[0], instance, domain)
    return OpEntry(
        name=name,
        family=family,
        rule=rule or activation_rule(name, **defaults),
        functions=functions,
        methods=methods,
        modules=(module,) if module else (),
        module_args=module_args if module_args is not None else tuple(defaults),
        note=note,
        samples=lambda: [*standard(), *more()],
        refusals=refusals or (lambda: []),
    )


def math(
    name: str, functions: tuple[Any, ...], methods: tuple[str, ...], note: str = "", **kw: Any
) -> OpEntry:
    """A row of torch's elementwise math: torch.<name>, Tensor.<name> and <name>_."""
    return activation(name, functions, methods, family="elementwise", note=note, **kw)


# --- rules with more than options --------------------------------------------------------


def rrelu(
    input: Any,
    lower: float = 1.0 / 8.0,
    upper: float = 1.0 / 3.0,
    training: bool = False,
    inplace: bool = False,
) -> Op:
    """F.rrelu in evaluation mode: leaky_relu with slope (lower + upper)/2."""
    if training:
        raise ValueError(
            "rrelu is in training mode: its slopes are random, so no reference gradient "
            "exists; expected model.eval() (or training=False)"
        )
    return Op(get_activation("rrelu", lower=lower, upper=upper), (tensor(input, "rrelu"),))


def prelu(input: Any, weight: Any) -> Op:
    """F.prelu(x, weight): a PReLU layer holding a copy of the model's slopes (C,) or (1,)."""
    return weighted(lambda w, b: PReLU(w), "prelu", (tensor(input, "prelu"),), weight)


def clamp(input: Any, min: Any = None, max: Any = None) -> Op:  # noqa: A002  (torch's names)
    """torch.clamp / clip with numbers as bounds (at least one), or tensors (`_clamp_by`)."""
    if isinstance(min, (Ref, Param)) or isinstance(max, (Ref, Param)):
        return _clamp_by(tensor(input, "clamp"), min, max)
    bounds = {}
    for k, v in (("min", min), ("max", max)):
        bounds[k] = None if v is None else number(v, f"clamp ({k})")
    return Op(get_activation("clamp", **bounds), (tensor(input, "clamp"),))


def _clamp_by(x: Any, lo: Any, hi: Any) -> Op:
    """clamp(x, lo, hi) with a tensor bound: where(x ≤ hi, where(x ≥ lo, x, lo), hi), so
    δx = δ on lo ≤ x ≤ hi, δlo = δ where x < lo, δhi = δ where x > hi (torch's clamp_backward;
    a number bound stays a number)."""
    for bound, op, k in ((lo, "ge", "min"), (hi, "le", "max")):
        if isinstance(bound, (Ref, Param)):
            x = Op(Where(), (Op(Compare(op), (x, bound)), x, bound))
        elif bound is not None:
            c = number(bound, f"clamp ({k})")
            x = Op(Where(y=c), (Op(Compare(op, 1, c), (x,)), x))
    return x


def clamp_min(input: Any, min: Any) -> Op:  # noqa: A002
    return clamp(input, min=min)


def clamp_max(input: Any, max: Any) -> Op:  # noqa: A002
    return clamp(input, max=max)


def _prelu_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    ints = torch.randint(-2, 3, (4, 3), generator=g).double()
    w = torch.tensor([0.25, -0.1, 0.5], dtype=torch.float64)
    per_channel = nn.PReLU(3).double()
    with torch.no_grad():
        per_channel.weight.copy_(w)
    return [
        Sample("module, one slope", (x,), module=nn.PReLU().double()),
        Sample("module, a slope per channel", (x,), module=per_channel),
        Sample("function, integer-valued", (ints,), fn=F.prelu, params={"weight": w}),
        Sample("a slope computed in forward", (x,), fn=lambda x, w: F.prelu(x, w.sigmoid()),
               params={"w": w}),
        Sample("a 0-d slope", (x,), fn=F.prelu,
               params={"weight": torch.tensor(0.25, dtype=torch.float64)}),
    ]  # fmt: skip


def _refusals(name: str, fn: Callable[..., Any], match: str) -> Callable[[], list[Refusal]]:
    def refusals() -> list[Refusal]:
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return [Refusal(name, (x,), ValueError, match, fn=fn)]

    return refusals


def _clamp_samples() -> list[Sample]:
    """Tensor bounds: a model tensor, tensors computed in forward, one bound or both."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    lo, hi = -0.5 * torch.rand(4, generator=g, dtype=torch.float64), torch.rand(4, generator=g)
    return [
        Sample("a tensor as min", (x,), fn=lambda x, lo: torch.clamp(x, lo), params={"lo": lo}),
        Sample(
            "tensors as min and max, both carrying gradient",
            (x,),
            fn=lambda x, lo, hi: x.clamp(lo.sin(), hi.double().cos()),
            params={"lo": lo, "hi": hi.double()},
        ),
        Sample("a computed min (clamp_min)", (x,), fn=lambda x: x.clamp_min(x.mean(0))),
        Sample(
            "computed bounds",
            (x,),
            fn=lambda x, lo: x.clamp(lo.exp() - 1.5, x.flip(0).abs()),
            params={"lo": lo},
        ),
        Sample("a tensor as max", (x,), fn=lambda x: torch.clamp_max(x, x.flip(1) + 0.1)),
    ]


ROWS = [
    activation("relu", (F.relu, torch.relu, F.relu_, torch.relu_), ("relu", "relu_"), nn.ReLU),
    activation(
        "sigmoid",
        (F.sigmoid, torch.sigmoid, torch.special.expit),
        ("sigmoid", "sigmoid_"),
        nn.Sigmoid,
    ),
    activation("tanh", (F.tanh, torch.tanh), ("tanh", "tanh_"), nn.Tanh),
    activation(
        "leaky_relu",
        (F.leaky_relu, F.leaky_relu_),
        module=nn.LeakyReLU,
        sample=lambda x: F.leaky_relu(x, 0.2),
        negative_slope=0.01,
    ),
    activation(
        "rrelu",
        (F.rrelu, F.rrelu_, torch.rrelu, torch.rrelu_),
        module=nn.RReLU,
        module_instance=nn.RReLU(0.1, 0.3).eval(),
        module_args=lambda m: {"lower": m.lower, "upper": m.upper, "training": m.training},
        rule=rrelu,
        note="evaluation mode: slope (lower + upper)/2",
        refusals=_refusals("training mode", lambda x: F.rrelu(x, training=True), "random"),
    ),
    activation("elu", (F.elu, F.elu_), module=nn.ELU, alpha=1.0),
    activation("selu", (F.selu, torch.selu, F.selu_, torch.selu_), module=nn.SELU),
    activation(
        "celu",
        (F.celu, torch.celu, F.celu_, torch.celu_),
        module=nn.CELU,
        sample=lambda x: F.celu(x, 0.5),
        refusals=_refusals("alpha 0", lambda x: F.celu(x, 0.0), "alpha must be nonzero"),
        alpha=1.0,
    ),
    activation(
        "gelu",
        (F.gelu,),
        module=nn.GELU,
        note="approximate 'none' and 'tanh'",
        approximate="none",
    ),
    activation("silu", (F.silu,), module=nn.SiLU),
    activation("mish", (F.mish,), module=nn.Mish),
    activation("softplus", (F.softplus,), module=nn.Softplus, beta=1.0, threshold=20.0),
    activation("logsigmoid", (F.logsigmoid,), module=nn.LogSigmoid),
    activation("softsign", (F.softsign,), module=nn.Softsign),
    activation("tanhshrink", (F.tanhshrink,), module=nn.Tanhshrink),
    activation(
        "hardtanh",
        (F.hardtanh, F.hardtanh_),
        module=nn.Hardtanh,
        min_val=-1.0,
        max_val=1.0,
        more=lambda: [  # (min = max: a constant, zero gradient, as torch)
            Sample(
                "min = max",
                (torch.linspace(-2, 2, 9, dtype=torch.float64),),
                fn=lambda x: x * F.hardtanh(x, 0.5, 0.5),
            )
        ],  # fmt: skip
    ),
    activation("relu6", (F.relu6,), module=nn.ReLU6),
    activation("hardsigmoid", (F.hardsigmoid,), module=nn.Hardsigmoid),
    activation("hardswish", (F.hardswish,), module=nn.Hardswish),
    activation(
        "softshrink",
        (F.softshrink,),
        module=nn.Softshrink,
        sample=lambda x: F.softshrink(x, 1.0),
        lambd=0.5,
    ),
    activation(
        "hardshrink",
        (F.hardshrink, torch.hardshrink),
        ("hardshrink",),
        module=nn.Hardshrink,
        sample=lambda x: F.hardshrink(x, 1.0),
        lambd=0.5,
    ),
    activation(
        "threshold",
        (F.threshold, F.threshold_, torch.threshold, torch.threshold_),
        module=nn.Threshold,
        module_instance=nn.Threshold(1.0, -2.0),
        sample=lambda x: F.threshold(x, 0.0, 3.0),
        threshold=REQUIRED,
        value=REQUIRED,
    ),
    OpEntry(
        "prelu",
        "activation",
        prelu,
        functions=(F.prelu, torch.prelu),
        methods=("prelu",),
        modules=(nn.PReLU,),
        module_args=("weight",),
        note="one slope, or one per channel (dim 1)",
        samples=_prelu_samples,
    ),
    # elementwise math
    math("exp", (torch.exp,), ("exp", "exp_")),
    math("expm1", (torch.expm1, torch.special.expm1), ("expm1", "expm1_")),
    math("erf", (torch.erf, torch.special.erf), ("erf", "erf_")),
    math("log", (torch.log,), ("log", "log_"), domain="positive", note="inf/NaN for x ≤ 0 refused"),
    math("log1p", (torch.log1p, torch.special.log1p), ("log1p", "log1p_"), domain="positive"),
    math("log2", (torch.log2,), ("log2", "log2_"), domain="positive"),
    math("log10", (torch.log10,), ("log10", "log10_"), domain="positive"),
    math("sqrt", (torch.sqrt,), ("sqrt", "sqrt_"), domain="positive", note="inf at 0 refused"),
    math("rsqrt", (torch.rsqrt,), ("rsqrt", "rsqrt_"), domain="positive"),
    math("reciprocal", (torch.reciprocal,), ("reciprocal", "reciprocal_"), domain="positive"),
    math("square", (torch.square,), ("square", "square_")),
    math(
        "abs",
        (torch.abs, torch.absolute, operator.abs),
        ("abs", "abs_", "absolute", "absolute_", "__abs__"),
        note="abs′(0) = 0",
    ),
    math("sin", (torch.sin,), ("sin", "sin_")),
    math("cos", (torch.cos,), ("cos", "cos_")),
    math(
        "clamp",
        (torch.clamp, torch.clip),
        ("clamp", "clamp_", "clip", "clip_"),
        rule=clamp,
        sample=lambda x: torch.clamp(x, -1.0, 2.0),
        note="numbers or tensors as min and/or max; clamp′ = 1 on the bounds",
        more=_clamp_samples,
    ),
    math(
        "clamp_min",
        (torch.clamp_min,),
        ("clamp_min", "clamp_min_"),
        rule=clamp_min,
        sample=lambda x: torch.clamp_min(x, 0.0),
    ),
    math(
        "clamp_max",
        (torch.clamp_max,),
        ("clamp_max", "clamp_max_"),
        rule=clamp_max,
        sample=lambda x: x.clamp_max(1.0),
    ),
    math("sign", (torch.sign, torch.sgn), ("sign", "sign_", "sgn", "sgn_"), note="zero gradient"),
    math(
        "angle",
        (torch.angle,),
        ("angle",),
        note="of a real input: π below 0, else 0; zero gradient",
    ),
    math(
        "round",
        (torch.round, torch.special.round),
        ("round", "round_"),
        note="decimals too; zero gradient",
        decimals=0,
    ),
    math("floor", (torch.floor,), ("floor", "floor_"), note="zero gradient"),
    math("ceil", (torch.ceil,), ("ceil", "ceil_"), note="zero gradient"),
    math(
        "trunc", (torch.trunc, torch.fix), ("trunc", "trunc_", "fix", "fix_"), note="zero gradient"
    ),
]


def polygamma(n: Any, input: Any) -> Op:
    """torch.polygamma(n, input): the order first."""
    return activation_rule("polygamma", n=REQUIRED)(input, n)


def polygamma_method(input: Any, n: Any) -> Op:
    """x.polygamma(n)."""
    return activation_rule("polygamma", n=REQUIRED)(input, n)


def _polygamma_samples() -> list[Sample]:
    x = 0.25 + 4 * torch.rand(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Sample(
            "n = 0, 1, 2",
            (x,),
            fn=lambda x: (
                torch.polygamma(0, x) + torch.polygamma(1, x) * torch.special.polygamma(2, x)
            ),
        ),
        Sample("method, n = 3", (x,), fn=lambda x: x.polygamma(3)),
    ]


SPECIAL = [
    math("tan", (torch.tan,), ("tan", "tan_")),
    math(
        "asin",
        (torch.asin, torch.arcsin),
        ("asin", "asin_", "arcsin", "arcsin_"),
        domain="open unit",
    ),
    math(
        "acos",
        (torch.acos, torch.arccos),
        ("acos", "acos_", "arccos", "arccos_"),
        domain="open unit",
    ),
    math("atan", (torch.atan, torch.arctan), ("atan", "atan_", "arctan", "arctan_")),
    math("sinh", (torch.sinh,), ("sinh", "sinh_")),
    math("cosh", (torch.cosh,), ("cosh", "cosh_")),
    math("asinh", (torch.asinh, torch.arcsinh), ("asinh", "asinh_", "arcsinh", "arcsinh_")),
    math(
        "acosh",
        (torch.acosh, torch.arccosh),
        ("acosh", "acosh_", "arccosh", "arccosh_"),
        domain="above one",
    ),
    math(
        "atanh",
        (torch.atanh, torch.arctanh),
        ("atanh", "atanh_", "arctanh", "arctanh_"),
        domain="open unit",
    ),
    math("exp2", (torch.exp2, torch.special.exp2), ("exp2", "exp2_")),
    math("erfc", (torch.erfc, torch.special.erfc), ("erfc", "erfc_")),
    math("erfinv", (torch.erfinv, torch.special.erfinv), ("erfinv", "erfinv_"), domain="open unit"),
    math(
        "lgamma",
        (torch.lgamma, torch.special.gammaln),
        ("lgamma", "lgamma_"),
        domain="positive",
        note="poles (0, −1, ...) give inf: refused",
    ),
    math(
        "digamma",
        (torch.digamma, torch.special.digamma, torch.special.psi),
        ("digamma", "digamma_"),
        domain="positive",
    ),
    OpEntry(
        "polygamma",
        "elementwise",
        polygamma,
        functions=(torch.polygamma, torch.special.polygamma),
        note="torch.polygamma(n, x): any order n ≥ 0",
        samples=_polygamma_samples,
    ),
    OpEntry(
        "polygamma (method)",
        "elementwise",
        polygamma_method,
        methods=("polygamma", "polygamma_"),
        note="x.polygamma(n)",
        samples=lambda: _polygamma_samples()[1:],
    ),
    math(
        "mvlgamma",
        (torch.mvlgamma, torch.special.multigammaln),
        ("mvlgamma", "mvlgamma_"),
        domain="above one",
        sample=lambda x: (
            torch.mvlgamma(x, 1) + torch.special.multigammaln(x + 0.5, 3) * x.mvlgamma(p=2)
        ),
        note="p ≥ 1; entries ≤ (p − 1)/2 refused, as torch refuses them",
        p=REQUIRED,
    ),
    math("i0", (torch.i0, torch.special.i0), ("i0", "i0_")),
    math("i0e", (torch.special.i0e,), ()),
    math("i1", (torch.special.i1,), (), note="i1′(0) = ½"),
    math("i1e", (torch.special.i1e,), (), note="i1e′(0) = ½"),
    math(
        "logit",
        (torch.logit, torch.special.logit),
        ("logit", "logit_"),
        domain="probability",
        sample=lambda x: torch.logit(x) + torch.logit(x, eps=0.3) * x.logit(0.1),
        note="eps clamps (f′ = 0 outside [eps, 1 − eps])",
        eps=None,
    ),
    math("sinc", (torch.sinc, torch.special.sinc), ("sinc", "sinc_"), note="sinc′(0) = 0"),
    math("frac", (torch.frac,), ("frac", "frac_"), note="frac′ = 1; jumps at integers ≠ 0"),
    math("ndtr", (torch.special.ndtr,), ()),
    math("ndtri", (torch.special.ndtri,), (), domain="probability"),
    math("log_ndtr", (torch.special.log_ndtr,), ()),
    math("erfcx", (torch.special.erfcx,), ()),
    math("entr", (torch.special.entr,), (), domain="positive"),
]
ROWS += SPECIAL


def activation_modules() -> dict[str, type[nn.Module]]:
    """manual_bp activation name → the torch module of its row, for every activation row with
    a module that takes no required argument ("identity" and "linear" are nn.Identity): what
    the public strategies and the lab's torch twin draw from. RReLU is left out: in training
    mode, every module's default, its slope is random."""
    import inspect

    from manual_bp.ops.activations import ACTIVATIONS

    table: dict[str, type[nn.Module]] = {"identity": nn.Identity, "linear": nn.Identity}
    for row in ROWS:
        if row.modules and row.name in ACTIVATIONS and row.name != "rrelu":
            init = inspect.signature(row.modules[0].__init__).parameters.values()
            if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                   or p.name == "self" for p in init):  # fmt: skip
                table.setdefault(row.name, row.modules[0])
    return table
