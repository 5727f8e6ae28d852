"""Hugging Face transformers models, handed to the oracle as users hold them.

    python -m experiments.transformers_models [--only NAME ...] [--out docs/transformers_models.md]

Each model is built from a tiny random config (no download), seeded, in float32 unless its
case says otherwise, and checked as a user checks it: the model itself, keyword inputs with
a padded attention mask, `use_cache` at its default, a loss read from the `ModelOutput`
(`out.logits`, `out.last_hidden_state`, or the model's own `out.loss` given `labels`), at
rtol 1e-9 and atol 1e-12 (the reference is float64 end to end). A few cases are idioms
rather than architectures: gradient checkpointing in training mode, a half-precision model,
a frozen base with a trained head, rotary scaling, sliding windows, logit soft-capping.

Each case ends as `match`, `mismatch` (the report is not ok), `refused` (an error the oracle
raised for a reason it names) or `crash` (any other exception: a bug of ours). Writes the
table to --out (Markdown, deterministic: no timings) and prints it. Needs transformers (the
`dev` extra); not part of `make report`. The CI checks a subset of these
(tests/test_transformers_models.py).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import torch_ref
from experiments.acceptance.transformers import Case, V, cases
from experiments.report.io import atomic_write

OUT = Path("docs/transformers_models.md")
RTOL, ATOL = 1e-9, 1e-12


def _token_loss(out: Any, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), t.flatten())


def _hidden_loss(out: Any, _: Any) -> torch.Tensor:
    return out.last_hidden_state.pow(2).mean()


def _everything_loss(out: Any, t: torch.Tensor) -> torch.Tensor:
    hidden = sum(h.pow(2).mean() for h in out.hidden_states)
    return _token_loss(out, t) + hidden + sum(a.mean() for a in out.attentions)


def _data(kind: str) -> tuple[dict[str, Any], Any, Callable[..., torch.Tensor]]:
    """Inputs as keyword arguments, the target, and the loss over the ModelOutput."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, V, (2, 6), generator=g)
    left = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # (padded on the left)
    right = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    own_loss = lambda out, _: out.loss  # noqa: E731
    if kind == "lm":
        return {"input_ids": ids, "attention_mask": left}, ids, _token_loss
    if kind == "labels":
        labels = ids.masked_fill(left == 0, -100)
        return {"input_ids": ids, "attention_mask": left, "labels": labels}, None, own_loss
    if kind == "everything":
        extra = {"output_hidden_states": True, "output_attentions": True}
        return {"input_ids": ids, "attention_mask": left, **extra}, ids, _everything_loss
    if kind == "mlm":
        return {"input_ids": ids, "attention_mask": right}, ids, _token_loss
    if kind == "classes":
        inputs = {"input_ids": ids, "attention_mask": right, "labels": torch.tensor([0, 2])}
        return inputs, None, own_loss
    if kind == "s2s":
        inputs = {"input_ids": ids, "attention_mask": right, "decoder_input_ids": ids[:, :4]}
        return inputs, ids[:, 1:5], _token_loss
    if kind == "audio_s2s":
        features = torch.randn(2, 8, 16, generator=g)
        return {"input_features": features, "labels": ids[:, :4]}, None, own_loss
    if kind == "image":
        return {"pixel_values": pixels, "labels": torch.tensor([0, 2])}, None, own_loss
    if kind == "image_hidden":
        return {"pixel_values": pixels}, None, _hidden_loss
    if kind == "text_hidden":
        return {"input_ids": ids, "attention_mask": right}, None, _hidden_loss
    audio = torch.randn(2, 400, generator=g)
    if kind == "audio_ctc":
        return {"input_values": audio}, None, lambda out, _: out.logits.logsumexp(-1).mean()
    return {"input_values": audio}, None, _hidden_loss


def check(case: Case, transformers: Any) -> tuple[str, str]:
    """(verdict, detail) for one case."""
    torch.manual_seed(0)
    model = case.build(transformers).train(case.train)
    if case.setup is not None:
        case.setup(model)
    inputs, target, loss = _data(case.data)
    try:
        report = torch_ref.compare_gradients(model, loss, inputs, target, rtol=RTOL, atol=ATOL)
    except (torch_ref.UnsupportedModuleError, ValueError, TypeError) as err:
        return "refused", str(err).split("\n")[0][:200]
    except Exception as err:  # noqa: BLE001 (a crash is a finding: reported, not raised)
        return "crash", f"{type(err).__name__}: {str(err)[:200]}"
    compared = sum(r.kind == "param" for r in report.rows)
    if not report.ok:
        bad = [r.name for r in report.rows if not r.ok]
        return "mismatch", f"{len(bad)} of {len(report.rows)} tensors differ: {', '.join(bad[:4])}"
    return "match", f"{compared} parameters and {len(report.rows) - compared} other tensors"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.transformers_models",
        description="Check transformers models as users hold them; write the table.",
    )
    p.add_argument("--only", nargs="*", help="case names to run (default: all; no file written)")
    p.add_argument("--out", type=Path, default=OUT, help=f"the Markdown table (default {OUT})")
    args = p.parse_args(argv)
    import transformers

    transformers.logging.set_verbosity_error()
    chosen = [c for c in cases() if not args.only or c.name in args.only]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in chosen:
            verdict, detail = check(case, transformers)
            rows.append((case.name, verdict, detail))
            print(f"{case.name:52s} {verdict:8s} {detail}", flush=True)
    counts = {v: sum(r[1] == v for r in rows) for v in ("match", "mismatch", "refused", "crash")}
    lines = [
        "# transformers models, as users hold them",
        "",
        f"Generated by `python -m experiments.transformers_models` (transformers "
        f"{transformers.__version__}, torch {torch.__version__.split('+')[0]}): each model "
        "from a tiny random config, called with keyword inputs and a padded attention mask, "
        f"its loss read from the `ModelOutput`, compared at rtol {RTOL:g}, atol {ATOL:g}. "
        "How the run is recorded and what is refused: [oracle.md](oracle.md); the CI checks "
        "a subset ([test_transformers_models.py](../tests/test_transformers_models.py)).",
        "",
        f"{len(rows)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
        "",
        "| case | verdict | detail |",
        "|---|---|---|",
        *(f"| {n} | {v} | {d} |" for n, v, d in rows),
        "",
    ]
    if not args.only:
        atomic_write(args.out, "\n".join(lines))
    return 0 if counts["mismatch"] == counts["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
