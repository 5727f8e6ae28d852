"""The product layers (matmul and its strict forms, addmm/baddbmm, einsum, outer, bilinear)
against torch.autograd in float64: named cases, exact products of integers, the adjoint
identity per operand, hypothesis properties over matmul shapes and einsum equations,
refusals as data, and planted bugs that must fail."""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _layer_check import TOL, adjoint, check_layer
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.base import Layer
from manual_bp.ops.linalg import (
    AddMatMul,
    Bilinear,
    Bmm,
    Dot,
    Einsum,
    MatMul,
    Mm,
    Mv,
    Outer,
)


@dataclass(frozen=True)
class Case:
    id: str
    layer: Callable[..., Layer]  # called with the params' arrays
    in_shapes: tuple[tuple[int, ...], ...]
    torch_fn: Callable[..., Any]
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    nan_input: int | None = None  # an input filled with nan (β = 0 must ignore it)


def es(eq: str) -> Callable[..., Any]:
    return lambda *t: torch.einsum(eq, *t)


CASES = [
    # --- matmul's rules ---
    Case("dot_1d_1d", MatMul, ((4,), (4,)), torch.matmul),
    Case("vec_mat_1d_2d", MatMul, ((3,), (3, 5)), torch.matmul),
    Case("mat_vec_2d_1d", MatMul, ((2, 3), (3,)), torch.matmul),
    Case("mat_mat", MatMul, ((2, 3), (3, 4)), torch.matmul),
    Case("batched", MatMul, ((5, 2, 3), (5, 3, 4)), torch.matmul),
    Case("batch_broadcast", MatMul, ((2, 1, 3, 4), (5, 4, 2)), torch.matmul),
    Case("vec_batched_1d_3d", MatMul, ((3,), (2, 3, 4)), torch.matmul),
    Case("batched_vec_3d_1d", MatMul, ((2, 4, 3), (3,)), torch.matmul),
    Case("linear_weight_4d_2d", MatMul, ((2, 3, 4, 5), (5, 6)), torch.matmul),
    Case("attention_scores", MatMul, ((2, 3, 4, 5), (2, 3, 5, 6)), lambda q, k: q @ k),
    Case("empty_inner", MatMul, ((2, 0), (0, 3)), torch.matmul),
    Case("mm", Mm, ((2, 3), (3, 4)), torch.mm),
    Case("bmm", Bmm, ((4, 2, 3), (4, 3, 2)), torch.bmm),
    Case("mv", Mv, ((2, 3), (3,)), torch.mv),
    Case("dot", Dot, ((5,), (5,)), torch.dot),
    # --- addmm, baddbmm ---
    Case("addmm_bias_row", AddMatMul, ((4,), (2, 3), (3, 4)), torch.addmm),
    Case(
        "addmm_beta_alpha",
        lambda: AddMatMul(0.5, -2.0),
        ((2, 4), (2, 3), (3, 4)),
        lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=-2.0),
    ),
    Case(
        "addmm_0d_input",
        lambda: AddMatMul(2.0),
        ((), (2, 3), (3, 4)),
        lambda c, a, b: torch.addmm(c, a, b, beta=2.0),
    ),
    Case(
        "addmm_beta_0_ignores_nan",
        lambda: AddMatMul(0.0, 3.0),
        ((2, 1), (2, 3), (3, 4)),
        lambda c, a, b: torch.addmm(c, a, b, beta=0.0, alpha=3.0),
        nan_input=0,
    ),
    Case(
        "baddbmm",
        lambda: AddMatMul(1.5, 0.5, batched=True),
        ((3, 1), (2, 3, 4), (2, 4, 5)),
        lambda c, a, b: torch.baddbmm(c, a, b, beta=1.5, alpha=0.5),
    ),
    # --- einsum ---
    Case("einsum_mm", lambda: Einsum("ij,jk->ik"), ((2, 3), (3, 4)), es("ij,jk->ik")),
    Case(
        "einsum_attention",
        lambda: Einsum("bhqd,bhkd->bhqk"),
        ((2, 3, 4, 5), (2, 3, 6, 5)),
        es("bhqd,bhkd->bhqk"),
    ),
    Case("einsum_diagonal", lambda: Einsum("ii->i"), ((3, 3),), es("ii->i")),
    Case("einsum_trace", lambda: Einsum("ii"), ((3, 3),), es("ii")),
    Case("einsum_diag_3", lambda: Einsum("iij->ji"), ((3, 3, 2),), es("iij->ji")),
    Case("einsum_sum_all", lambda: Einsum("ij->"), ((2, 3),), es("ij->")),
    Case("einsum_row_sums", lambda: Einsum("ij->i"), ((2, 3),), es("ij->i")),
    Case("einsum_outer", lambda: Einsum("i,j->ij"), ((2,), (3,)), es("i,j->ij")),
    Case("einsum_transpose", lambda: Einsum("ijk->kji"), ((2, 3, 4),), es("ijk->kji")),
    Case("einsum_hadamard", lambda: Einsum("ij,ij->ij"), ((2, 3), (2, 3)), es("ij,ij->ij")),
    Case(
        "einsum_ellipsis_broadcast",
        lambda: Einsum("...ij,...jk->...ik"),
        ((2, 1, 3, 4), (5, 4, 2)),
        es("...ij,...jk->...ik"),
    ),
    Case("einsum_ellipsis_summed", lambda: Einsum("...ij->ij"), ((2, 3, 4),), es("...ij->ij")),
    Case(
        "einsum_ellipsis_middle",
        lambda: Einsum("i...j->j...i"),
        ((2, 3, 4, 5),),
        es("i...j->j...i"),
    ),
    Case("einsum_implicit", lambda: Einsum("ij,jk"), ((2, 3), (3, 4)), es("ij,jk")),
    Case("einsum_implicit_upper_first", lambda: Einsum("aB"), ((2, 3),), es("aB")),
    Case("einsum_implicit_ellipsis", lambda: Einsum("...i,...i"), ((3, 2), (2,)), es("...i,...i")),
    Case(
        "einsum_three_operands",
        lambda: Einsum("bij,bjk,bkl->bil"),
        ((2, 3, 4), (2, 4, 2), (2, 2, 3)),
        es("bij,bjk,bkl->bil"),
    ),
    Case(
        "einsum_repeated_with_other", lambda: Einsum("ii,ij->j"), ((3, 3), (3, 2)), es("ii,ij->j")
    ),
    Case("einsum_label_broadcast", lambda: Einsum("ij,jk->ik"), ((2, 1), (3, 4)), es("ij,jk->ik")),
    Case("einsum_summed_alone", lambda: Einsum("ij,k->k"), ((2, 3), (4,)), es("ij,k->k")),
    Case("einsum_empty_dim", lambda: Einsum("i,i->"), ((0,), (1,)), es("i,i->")),
    Case(
        "einsum_spaces",
        lambda: Einsum("b i d, b j d -> b i j"),
        ((2, 3, 4), (2, 5, 4)),
        es("bid,bjd->bij"),
    ),
    Case("einsum_0d_operand", lambda: Einsum(",ij->ij"), ((), (2, 3)), es(",ij->ij")),
    # --- outer, bilinear ---
    Case("outer", Outer, ((3,), (4,)), torch.outer),
    Case(
        "bilinear",
        Bilinear,
        ((2, 3, 4), (2, 3, 5)),
        F.bilinear,
        params={"weight": (6, 4, 5), "bias": (6,)},
    ),
    Case(
        "bilinear_1d_no_bias",
        Bilinear,
        ((4,), (2,)),
        lambda a, b, weight: F.bilinear(a, b, weight),
        params={"weight": (3, 4, 2)},
    ),
]


def _make(case: Case, seed: int = 0, integers: bool = False):
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-3, 4, shape).astype(float) if integers else rng.standard_normal(shape)

    inputs = [draw(s) for s in case.in_shapes]
    if case.nan_input is not None:
        inputs[case.nan_input] = np.full(case.in_shapes[case.nan_input], np.nan)
    params = {k: draw(s) for k, s in case.params.items()}
    return case.layer(**params), inputs, {k: torch.tensor(v) for k, v in params.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_product_matches_torch(case: Case) -> None:
    layer, inputs, params = _make(case)
    check_layer(case.id, layer, inputs, case.torch_fn, params=params, tol=TOL)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_product_of_integers_is_exact(case: Case) -> None:
    """Integer entries: every product and sum is exact in float64, whatever the order."""
    layer, inputs, params = _make(case, seed=1, integers=True)
    check_layer(
        case.id,
        layer,
        inputs,
        case.torch_fn,
        params=params,
        tol={"rtol": 0, "atol": 0},
        integer_delta=True,
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.nan_input is None], ids=lambda c: c.id)
def test_product_adjoint_per_operand(case: Case) -> None:
    """Each product is linear in each operand with the others held: ⟨J v, u⟩ = ⟨v, Jᵀ u⟩."""
    layer, inputs, _ = _make(case)
    for k in range(len(inputs)):
        adjoint(f"{case.id} operand {k}", layer, inputs, vary=[k])


# --- properties: random matmul shapes, random einsum equations ------------------------------


@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes matmul accepts: ranks 1-4, inner sizes equal, batch dims that broadcast."""
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    a_batch = tuple(1 if draw(st.booleans()) else b for b in batch)[
        draw(st.integers(0, len(batch))) :
    ]
    b_batch = tuple(1 if draw(st.booleans()) else b for b in batch)[
        draw(st.integers(0, len(batch))) :
    ]
    a = (k,) if draw(st.booleans()) and not a_batch else (*a_batch, m, k)
    b = (k,) if draw(st.booleans()) and not b_batch else (*b_batch, k, n)
    return a, b


@given(shapes=matmul_shapes(), seed=st.integers(0, 2**16))
def test_matmul_property(shapes: tuple[tuple[int, ...], tuple[int, ...]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(s) for s in shapes]
    check_layer(f"matmul{shapes}", MatMul(), inputs, torch.matmul, seed=seed)


@st.composite
def einsum_cases(draw: st.DrawFn) -> tuple[str, list[tuple[int, ...]]]:
    """An equation of 1-3 operands over up to 4 letters (repeats within an operand, letters
    summed away, size-1 broadcasting, an optional '...') and shapes that fit it."""
    letters = draw(st.lists(st.sampled_from("abcdXY"), min_size=1, max_size=4, unique=True))
    size = {c: draw(st.integers(1, 3)) for c in letters}
    ell = tuple(draw(st.lists(st.integers(1, 3), max_size=2))) if draw(st.booleans()) else None
    subs, shapes = [], []
    for _ in range(draw(st.integers(1, 3))):
        sub = draw(st.lists(st.sampled_from(letters), min_size=1, max_size=3))
        shape = [1 if draw(st.integers(0, 5)) == 0 else size[c] for c in sub]
        for c in set(sub):  # a repeated letter spans dims of one size
            pos = [i for i, x in enumerate(sub) if x == c]
            for i in pos:
                shape[i] = shape[pos[0]]
        text = "".join(sub)
        if ell is not None and draw(st.booleans()):
            e = ell[draw(st.integers(0, len(ell))) :]
            at = draw(st.integers(0, len(sub)))
            text = text[:at] + "..." + text[at:]
            shape = shape[:at] + list(e) + shape[at:]
        subs.append(text)
        shapes.append(tuple(shape))
    used = sorted(set("".join(subs)) - {"."})
    out = draw(st.permutations(used))[: draw(st.integers(0, len(used)))]
    ellipsis_out = "..." if any("..." in s for s in subs) and draw(st.booleans()) else ""
    return ",".join(subs) + "->" + ellipsis_out + "".join(out), shapes


@given(case=einsum_cases(), seed=st.integers(0, 2**16))
def test_einsum_property(case: tuple[str, list[tuple[int, ...]]], seed: int) -> None:
    eq, shapes = case
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(s) for s in shapes]
    check_layer(f"einsum {eq} {shapes}", Einsum(eq), inputs, es(eq), seed=seed)


# --- refusals --------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    layer: Callable[[], Layer]
    in_shapes: tuple[tuple[int, ...], ...] | None  # None: the constructor raises
    match: str
    torch_fn: Callable[..., Any] | None = None  # torch refuses it too (on zeros of in_shapes)


REFUSALS = [
    Refusal("matmul_0d", MatMul, ((), (3,)), "at least 1-d", torch.matmul),
    Refusal("matmul_inner", MatMul, ((2, 3), (4, 2)), "inner sizes 3 and 4", torch.matmul),
    Refusal("matmul_batch", MatMul, ((2, 2, 3), (3, 3, 2)), "batch dims", torch.matmul),
    Refusal("mm_rank", Mm, ((2, 3), (3,)), "2-d and a 2-d", torch.mm),
    Refusal("bmm_batch", Bmm, ((2, 2, 3), (1, 3, 2)), "one batch size", torch.bmm),
    Refusal("dot_rank", Dot, ((2, 3), (3,)), "1-d and a 1-d", torch.dot),
    Refusal("mv_rank", Mv, ((3,), (3,)), "2-d and a 1-d", torch.mv),
    Refusal("addmm_input", AddMatMul, ((3, 4), (2, 3), (3, 4)), "broadcasts to", torch.addmm),
    Refusal("addmm_nan_alpha", lambda: AddMatMul(1.0, float("nan")), None, "finite beta and alpha"),
    Refusal("outer_rank", Outer, ((2, 1), (3,)), "1-d and a 1-d", torch.outer),
    Refusal("einsum_chars", lambda: Einsum("i1,j->ij"), None, "letters a-z", es("i1,j->ij")),
    Refusal("einsum_two_ellipses", lambda: Einsum("......"), None, "one '...'", es("......")),
    Refusal("einsum_output_twice", lambda: Einsum("ij->ii"), None, "used once", es("ij->ii")),
    Refusal(
        "einsum_output_unknown", lambda: Einsum("ij->k"), None, "appear in no operand", es("ij->k")
    ),
    Refusal("einsum_count", lambda: Einsum("ij,jk->ik", 3), None, "names 2 operands"),
    Refusal("einsum_rank", lambda: Einsum("ij->i"), ((2, 3, 4),), "has 3 dims", es("ij->i")),
    Refusal(
        "einsum_sizes", lambda: Einsum("ij,jk->ik"), ((2, 3), (2, 4)), "size 2", es("ij,jk->ik")
    ),
    Refusal(
        "einsum_diagonal_sizes",
        lambda: Einsum("ii->i"),
        ((1, 3),),
        "repeats in operand 0",
        es("ii->i"),
    ),
    Refusal(
        "bilinear_batch",
        lambda: Bilinear(np.zeros((2, 3, 4))),
        ((2, 3), (1, 4)),
        "one batch shape",
        lambda a, b: F.bilinear(a, b, torch.zeros(2, 3, 4)),
    ),
    Refusal("bilinear_weight_rank", lambda: Bilinear(np.zeros((2, 3))), None, r"\(out, in1, in2\)"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_refusals(case: Refusal) -> None:
    if case.torch_fn is not None:
        shapes = case.in_shapes or ((2, 2),)
        with pytest.raises((RuntimeError, ValueError, IndexError)):
            case.torch_fn(*(torch.zeros(s) for s in shapes))
    if case.in_shapes is None:
        with pytest.raises(ValueError, match=case.match):
            case.layer()
        return
    layer = case.layer()
    with pytest.raises(ValueError, match=case.match):
        layer.shape(*case.in_shapes)
    with pytest.raises(ValueError, match=case.match):  # forward checks before arithmetic
        layer.forward(*(np.zeros(s) for s in case.in_shapes))


# --- planted bugs: the checks above must catch each ---------------------------------------


def _addmm_beta_forgotten(self: AddMatMul, delta: np.ndarray, cache: Any) -> Any:
    (dc, da, db), g = _ORIGINAL["AddMatMul.backward"](self, delta, cache)
    return (dc / self.beta, da, db), g  # BUG: δ_c = δ, as if β were 1


def _einsum_alone_letter_zero(self: Einsum, delta: np.ndarray, cache: Any) -> Any:
    ops, shapes, subs, out, sizes = cache
    deltas, g = _ORIGINAL["Einsum.backward"](self, delta, cache)
    deltas = deltas if isinstance(deltas, tuple) else (deltas,)
    bad = tuple(d * 1.01 if k == 0 else d for k, d in enumerate(deltas))  # BUG: 1% off
    return (bad[0] if len(bad) == 1 else bad), g


def _diagonal_assigned_everywhere(self: Einsum, delta: np.ndarray, cache: Any) -> Any:
    ops, shapes, subs, out, sizes = cache
    deltas, g = _ORIGINAL["Einsum.backward"](self, delta, cache)
    return np.broadcast_to(np.diagonal(deltas), shapes[0]).copy(), g  # BUG: off the diagonal too


def _matmul_transposed_b(self: MatMul, delta: np.ndarray, cache: Any) -> Any:
    (da, db), g = _ORIGINAL["MatMul.backward"](self, delta, cache)
    a, b = cache
    return (da, db * 1.01), g  # BUG: a derivative 1% off


def _bilinear_weight_swapped(self: Bilinear, delta: np.ndarray, cache: Any) -> Any:
    A1, A2 = cache
    grads = _ORIGINAL["Bilinear.param_grads"](self, delta, cache)
    D = delta.reshape(-1, grads["weight"].shape[0])
    grads["weight"] = np.einsum("no,ni,nj->oij", D, A1[:, ::-1], A2)  # BUG: in1 reversed
    return grads


_ORIGINAL = {
    "AddMatMul.backward": AddMatMul.backward,
    "Einsum.backward": Einsum.backward,
    "MatMul.backward": MatMul.backward,
    "Bilinear.param_grads": Bilinear.param_grads,
}


@pytest.mark.parametrize(
    "case_id, cls, method, bug",
    [
        ("batch_broadcast", MatMul, "backward", _matmul_transposed_b),
        ("addmm_beta_alpha", AddMatMul, "backward", _addmm_beta_forgotten),
        ("einsum_summed_alone", Einsum, "backward", _einsum_alone_letter_zero),
        ("einsum_diagonal", Einsum, "backward", _diagonal_assigned_everywhere),
        ("bilinear", Bilinear, "param_grads", _bilinear_weight_swapped),
    ],
)
def test_planted_bug_fails(
    case_id: str, cls: type, method: str, bug: Callable, monkeypatch
) -> None:
    case = next(c for c in CASES if c.id == case_id)
    monkeypatch.setattr(cls, method, bug)
    layer, inputs, params = _make(case)
    with pytest.raises(AssertionError):
        check_layer(case.id, layer, inputs, case.torch_fn, params=params, tol=TOL)


def test_einsum_letters_left_for_ellipsis() -> None:
    """'...' is spelt with letters the equation leaves free: 50 named letters leave two."""
    first, second = string.ascii_letters[:26], string.ascii_letters[26:50]
    eq = f"...{first},{second}->{second[0]}...{first[0]}"
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((2, 3) + (1,) * 26), rng.standard_normal((1,) * 24)]
    check_layer("50 letters", Einsum(eq), x, es(eq), seed=0)
