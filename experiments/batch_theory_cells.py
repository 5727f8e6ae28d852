"""The batch theory's hardest cells, taken apart network by network, with more seeds.

    python -m experiments.batch_theory_cells [--widths 256 1024] [--seeds N]
        [--wide-width 2048] [--wide-seeds N] [--out PATH]

For sigmoid + xavier_normal at depths 4, 32, 64 and gelu + kaiming_normal at depths 32 and
64 (the cells experiments.batch_theory_widths left off the batch theory at every width), at
widths 256 and 1024 with seeds 0..N−1 (default 24), and gelu + kaiming_normal (WIDE) also
at width 2048 with seeds 0..--wide-seeds−1 (default 12): one row per network,
the weight-gradient ratio split into the four terms of `flow.example_terms` (δ, forward,
weighting, cross terms), how its examples spread, the logits' mean square, and the theories
beside them: the batch theory, the batch theory with the hidden layers' σ_w² for the output
layer (what it read before), the single-example theory and its δ part, and the logits'
q_out. Writes --out (default reports/gradient_flow/cells.csv), which the gradient-flow
report reads.

Not part of `make report` (about 12 min of CPU time on one core with the defaults); the
committed cells.csv is what the report reads, and this command regenerates it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd

from experiments.measure import flow
from experiments.report.io import write_csv
from experiments.theory import batch_gradient, meanfield

OUT = Path("reports/gradient_flow/cells.csv")
CELLS = (("sigmoid", "xavier_normal", 4), ("sigmoid", "xavier_normal", 32),
         ("sigmoid", "xavier_normal", 64), ("gelu", "kaiming_normal", 32),
         ("gelu", "kaiming_normal", 64))  # fmt: skip
WIDTHS, SEEDS = (256, 1024), 24
WIDE = (("gelu", "kaiming_normal", 32), ("gelu", "kaiming_normal", 64))
WIDE_WIDTH, WIDE_SEEDS = 2048, 12
BATCH = 128
KEYS = ("activation", "init", "depth", "width", "seed", "batch")
THEORY = ("batch_theory", "batch_theory_hidden_out", "single_theory", "delta_theory",
          "logit_q_theory")  # fmt: skip
MEASURED = (*flow.EXAMPLE_TERMS, "example_median_log10", "delta_spread", "act_spread",
            "top_share", "logit_q")  # fmt: skip
FORMAT = "%.7g"


def configs(
    widths: Sequence[int] = WIDTHS,
    seeds: int = SEEDS,
    wide_width: int = WIDE_WIDTH,
    wide_seeds: int = WIDE_SEEDS,
) -> list[flow.Config]:
    """Every cell at `widths` with seeds 0..seeds−1, the WIDE cells also at `wide_width`."""
    out = [flow.Config(a, i, d, w, s, BATCH) for a, i, d in CELLS for w in widths
           for s in range(seeds)]  # fmt: skip
    out += [flow.Config(a, i, d, wide_width, s, BATCH) for a, i, d in WIDE
            for s in range(wide_seeds)]  # fmt: skip
    return list(dict.fromkeys(out))


@lru_cache(maxsize=64)
def _theory(activation: str, init: str, depth: int, width: int) -> dict[str, float]:
    config = flow.Config(activation, init, depth, width, 0, BATCH)
    hidden = flow.layer_params(config, (width, width))
    sw_out, sb_out = flow.layer_params(config, (flow.CLASSES, width))
    mf = flow.mean_field(config)
    return {
        "batch_theory": mf["grad_ratio_log10_batch_theory"],
        "batch_theory_hidden_out": batch_gradient.batch_grad_ratio_log10_theory(
            activation, *hidden, depth, BATCH
        ),
        "single_theory": mf["grad_ratio_log10_theory"],
        "delta_theory": meanfield.ratio_theory(activation, *hidden, depth).delta_ratio_log10,
        "logit_q_theory": batch_gradient.logit_moments(
            activation, *hidden, depth, sigma_w2_out=sw_out, sigma_b2_out=sb_out
        )[0],
    }


def row(config: flow.Config) -> dict[str, object]:
    """One network's row: its keys, `flow.example_terms` and the theories."""
    keys = {k: getattr(config, k) for k in KEYS}
    theory = _theory(config.activation, config.init, config.depth, config.width)
    return {**keys, **flow.example_terms(config), **theory}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.batch_theory_cells",
        description="The batch theory's hardest cells, network by network, with more seeds.",
    )
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS),
                   help="widths for every cell (default 256 1024)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=SEEDS,
                   help=f"networks per cell and width (default {SEEDS})")  # fmt: skip
    p.add_argument("--wide-width", type=int, default=WIDE_WIDTH,
                   help=f"the width for the WIDE cells (default {WIDE_WIDTH})")  # fmt: skip
    p.add_argument("--wide-seeds", type=int, default=WIDE_SEEDS,
                   help=f"networks at the wide width (default {WIDE_SEEDS})")  # fmt: skip
    p.add_argument("--out", type=Path, default=OUT, help=f"the CSV to write (default {OUT})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.seeds < 2 or args.wide_seeds < 0 or min(args.widths + [args.wide_width]) < 1:
        p.exit(2, f"{p.prog}: error: --seeds must be ≥ 2, --wide-seeds ≥ 0, widths ≥ 1\n")
    todo = configs(args.widths, args.seeds, args.wide_width, args.wide_seeds)
    table = pd.DataFrame([row(c) for c in todo], columns=[*KEYS, *MEASURED, *THEORY])
    write_csv(args.out, table, FORMAT)
    print(f"{len(todo)} networks; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
