"""The training report: the runs, their tables, one function per figure, the findings and
the README, from the snapshots experiments.measure.train.train returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.measure.train import Dataset, Snapshot
from experiments.report.common import (
    findings_and_plots,
    markdown_table,
    pow10,
)
from experiments.report.training_figures import write_figures  # noqa: F401
from experiments.report.training_runs import (  # noqa: F401 (the report's names)
    BATCH,
    CHANCE_LOSS,
    COMPARISONS,
    GRADIENT_RUNS,
    HISTORY_COLUMNS,
    LAYER_COLUMNS,
    LR,
    N_CLASSES,
    PROBE,
    RUNS,
    STYLES,
    TEST_FRACTION,
    WIDTH,
    RunSpec,
    divergence,
    escape_epoch,
    geomean,
    history_frame,
    layers_frame,
    ratio_log10,
    relative_step,
)

# --- the README -----------------------------------------------------------------------------


def seeds_frame(by_seed: dict[int, dict[str, list[Snapshot]]]) -> pd.DataFrame:
    """One row per seed, run and epoch: the curves, ‖W‖ and ‖∂L/∂W‖ (geometric means over
    layers) and the logits' scale, for every seed."""
    rows = [
        (run, seed, s.epoch, s.train_loss, s.test_loss, s.test_acc,
         geomean(s.weight_norm.values()), geomean(s.grad_w_norm.values()), s.logit_scale)
        for seed, histories in by_seed.items()
        for run, history in histories.items()
        for s in history
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(SEED_COLUMNS))


SEED_COLUMNS = ("run", "seed", "epoch", "train_loss", "test_loss", "test_acc",
                "weight_norm_geomean", "grad_w_norm_geomean", "logit_scale")  # fmt: skip
#: "reaches" test accuracy: the first epoch at or above this
GOOD_ACC = 0.9
#: the final loss is the mean over the last TAIL epochs: one epoch's value can be a spike
TAIL = 10


def first_epoch(history: list[Snapshot], test_acc: float = GOOD_ACC) -> int | None:
    return next((s.epoch for s in history if s.test_acc >= test_acc), None)


def tail_loss(history: list[Snapshot]) -> float:
    return float(np.mean([s.train_loss for s in history[-TAIL:]]))


def rises(history: list[Snapshot]) -> list[tuple[int, float]]:
    """(epoch, rise) for every epoch ≥ 2 whose training loss is above the epoch before's."""
    return [
        (b.epoch, b.train_loss - a.train_loss)
        for a, b in zip(history[1:], history[2:], strict=False)
        if b.train_loss > a.train_loss
    ]


def _median(values: Sequence[float], fmt: str) -> str:
    """The median in `fmt`; of integers, ".5" where it falls between two."""
    m = float(np.median(values))
    return f"{m:g}" if fmt == "d" else f"{m:{fmt}}"


def spread(values: Sequence[float | None], fmt: str = ".3f") -> str:
    """ "median m (range a to b, n seeds)", or how many seeds had no value."""
    have = sorted(v for v in values if v is not None and not math.isnan(v))
    n = len(values)
    if not have:
        return f"— (in none of {n} seeds)" if n else "— (no seed)"
    if len(have) == n:
        return f"{_median(have, fmt)} (range {have[0]:{fmt}} to {have[-1]:{fmt}}, {n} seeds)"
    values = ", ".join(f"{v:{fmt}}" for v in have)
    return f"{values} in {len(have)} of {n} seeds (the other {n - len(have)}: never)"


def _exact_epochs(a: list[Snapshot], b: list[Snapshot]) -> int:
    """The last epoch through which the two test losses agree to 1e-12 nats."""
    diff = divergence(a, b)
    return next((i for i, d in enumerate(diff) if d > 1e-12), len(diff)) - 1


def _runs(by_seed: dict[int, dict[str, list[Snapshot]]], run: str) -> list[list[Snapshot]]:
    return [histories[run] for histories in by_seed.values()]


def findings(
    histories: dict[str, list[Snapshot]], by_seed: dict[int, dict[str, list[Snapshot]]]
) -> list[str]:
    """Findings, each a short lead and its numbers; trained numbers over every seed."""
    out = []
    n = len(by_seed)
    kai, xav = histories["relu30_kaiming"], histories["relu30_xavier"]
    kais, xavs = _runs(by_seed, "relu30_kaiming"), _runs(by_seed, "relu30_xavier")
    g_ratio, d_ratio = ratio_log10(xav[0], "grad_w_norm"), ratio_log10(xav[0], "delta_norm")
    step_ratio = relative_step(xav[0]) / relative_step(kai[0])
    cross_k = float(np.mean(list(kai[0].cross_log10.values())[1:]))
    cross_x = float(np.mean(list(xav[0].cross_log10.values())[1:]))
    loss_gap = max(abs(h[0].train_loss - CHANCE_LOSS) for h in xavs)
    out.append(
        "**At initialisation the Xavier ReLU-30 net's output collapses; its gradients do not "
        "vanish from top to bottom.**\n"
        f"   - ‖∂L/∂W^(1)‖/‖∂L/∂W^(29)‖ = "
        f"{spread([ratio_log10(h[0], 'grad_w_norm') for h in xavs], '+.2f')} decades, while "
        f"‖δ^(1)‖/‖δ^(29)‖ = {pow10(d_ratio)} (seed {next(iter(by_seed))}; 2^(−28/2) = "
        f"{pow10(-14 * math.log10(2))} predicted): the activations shrink as fast going up, "
        f"so ∂L/∂W^(l) = Σ_n δ_n a_nᵀ stays flat (seed {next(iter(by_seed))}: "
        f"{pow10(g_ratio)}).\n"
        f"   - The initial loss is ln 10 = {CHANCE_LOSS:.6f} to within {loss_gap:.0e} in every "
        f"seed (Kaiming: {spread([h[0].train_loss for h in kais], '.2f')}).\n"
        "   - Why: a bias-free ReLU net is positively homogeneous, and xavier_normal is "
        "kaiming_normal with each square layer scaled by 1/√2 and the output layer by "
        "√(64/74). The logits are 2^−14.5·√(64/74) = 2^−14.6 of Kaiming's.\n"
        "   - One step's relative size α‖∂L/∂W‖/‖W‖ would be 2^−13.6 of Kaiming's at equal "
        "∂L/∂(logits); measured (geometric mean over layers, seed 0) it is 2^"
        + f"{math.log2(step_ratio):.1f}".replace("-", "−")
        + f". Kaiming's examples add coherently: the cross terms add {cross_k:+.2f} decades "
        f"to ‖∂L/∂W^(l)‖ there against {cross_x:+.2f} in the Xavier net (layers 2–30)."
    )
    ress = _runs(by_seed, "relu30_xavier_rescaled")
    exact, apart = [], []
    for res, k in zip(ress, kais, strict=True):
        exact.append(_exact_epochs(res, k))
        apart.append(next((i for i, d in enumerate(divergence(res, k)) if d > 1e-3), None))
    out.append(
        "**Homogeneity: the rescaled Xavier net trains as the Kaiming net.** The Xavier "
        "weights, logits multiplied by 1/Π c_l = 2^14.6, each parameter at the rate α·c_p² "
        "(½ for the square weights, 64/74 for the output weight, Π_{k≤l} c_k² for layer l's "
        "biases).\n"
        f"   - Test losses agree to 1e-12 nats through epoch {spread(exact, 'd')}: the same "
        "run up to rounding.\n"
        f"   - Rounding, amplified by 30-layer SGD, parts them by more than 1e-3 nats from "
        f"epoch {spread(apart, 'd')}. When exactly depends on how the BLAS rounds, so it "
        "varies between machines; the agreement before it does not.\n"
        f"   - Best test accuracy: rescaled {spread([max(s.test_acc for s in h) for h in ress])}"
        f", Kaiming {spread([max(s.test_acc for s in h) for h in kais])}."
    )
    escapes = [escape_epoch(h) for h in xavs]
    weight_change, logit_growth, grad_growth = [], [], []
    for h, e in zip(xavs, escapes, strict=True):
        if e is not None:
            weight_change.append(
                100 * (geomean(h[e].weight_norm.values()) / geomean(h[0].weight_norm.values()) - 1)
            )
            logit_growth.append(math.log10(h[e].logit_scale / h[0].logit_scale))
            grad_growth.append(
                math.log10(geomean(h[e].grad_w_norm.values()) / geomean(h[0].grad_w_norm.values()))
            )
    k90, x90 = [first_epoch(h) for h in kais], [first_epoch(h) for h in xavs]
    late = [x - k for x, k in zip(x90, k90, strict=True) if x is not None and k is not None]
    out.append(
        "**Trained as it is, the Xavier ReLU-30 net sits on a plateau, then learns.** This is "
        'the small-initialisation plateau of Saxe et al. (2014, "Exact solutions to the '
        'nonlinear dynamics of learning in deep linear neural networks").\n'
        f"   - Its loss stays within 0.05 nats of ln 10 until epoch {spread(escapes, 'd')}.\n"
        "   - Over the plateau the weights barely change: the geometric mean of ‖W^(l)‖_F "
        f"moves by {spread(weight_change, '+.2f')} %. What grows is the end-to-end gain: the "
        f"logits' scale on the probe grows by {spread(logit_growth, '.2f')} decades, and the "
        f"weight gradients by {spread(grad_growth, '.2f')} decades (geometric mean over "
        "layers). Small changes that line the layers up along the task's directions multiply "
        "through 30 layers (Saxe et al.'s growing mode strengths).\n"
        f"   - Test accuracy first reaches {GOOD_ACC} at epoch {spread(x90, 'd')} (of "
        f"{xav[-1].epoch}); Kaiming at epoch {spread(k90, 'd')}: "
        + (f"{spread(late, 'd')} epochs late." if late else "no seed reaches it in both.")
        + "\n"
        f'   - He et al. (2015, "Delving deep into rectifiers", Fig. 3) report their 30-layer '
        f"Xavier ReLU net as not converging; here "
        f"{sum(x is not None for x in x90)} of {n} seeds reach test accuracy {GOOD_ACC} within "
        f"{xav[-1].epoch} epochs, on a much smaller problem."
    )
    sigs, rels = _runs(by_seed, "sigmoid10_xavier"), _runs(by_seed, "relu10_xavier")
    out.append(
        "**At depth 10 with xavier_normal, sigmoid's weight gradients vanish; relu's do "
        "not.**\n"
        f"   - sigmoid: ‖∂L/∂W^(1)‖/‖∂L/∂W^(9)‖ = "
        f"{spread([ratio_log10(h[0], 'grad_w_norm') for h in sigs], '+.2f')} decades at "
        f"initialisation, {spread([ratio_log10(h[-1], 'grad_w_norm') for h in sigs], '+.2f')} "
        f"after {sigs[0][-1].epoch} epochs (σ′ ≤ ¼; the activations' mean ½ keeps the forward "
        "signal from shrinking along).\n"
        f"   - relu loses δ (‖δ^(1)‖/‖δ^(9)‖ = "
        f"{spread([ratio_log10(h[0], 'delta_norm') for h in rels], '+.2f')} decades; "
        f"2^(−8/2) = {pow10(-4 * math.log10(2))} predicted) but not its weight gradients "
        f"({spread([ratio_log10(h[0], 'grad_w_norm') for h in rels], '+.2f')}).\n"
        f"   - Best test accuracy: sigmoid {spread([max(s.test_acc for s in h) for h in sigs])}, "
        f"relu {spread([max(s.test_acc for s in h) for h in rels])}."
    )
    ups = [rises(h) for h in kais]
    worst = [max(d for _, d in r) if r else 0.0 for r in ups]
    out.append(
        "**Plain SGD at depth 30 is bumpy even with the right init.** The Kaiming net's epoch "
        f"training loss rose in {spread([len(r) for r in ups], 'd')} of "
        f"{kai[-1].epoch - 1} epochs, by up to {spread(worst, '.2f')} "
        "nats. How many and which epochs depend on rounding (they differ between machines); "
        "that there are some does not. This is why the tables report the mean loss of the "
        f"last {TAIL} epochs, not the last epoch's."
    )
    return out


def summary(by_seed: dict[int, dict[str, list[Snapshot]]]) -> list[str]:
    """The report's first lines: what the runs show, each with its spread over seeds."""
    kais, xavs = _runs(by_seed, "relu30_kaiming"), _runs(by_seed, "relu30_xavier")
    sigs, ress = _runs(by_seed, "sigmoid10_xavier"), _runs(by_seed, "relu30_xavier_rescaled")
    return [
        f"- A 30-layer ReLU MLP with kaiming_normal reaches test accuracy {GOOD_ACC} at epoch "
        f"{spread([first_epoch(h) for h in kais], 'd')}; with xavier_normal it first sits on "
        f"a plateau at chance loss and reaches {GOOD_ACC} at epoch "
        f"{spread([first_epoch(h) for h in xavs], 'd')}.",
        "- Xavier's plateau comes from the output's scale, 2^−14.6 of Kaiming's, not from "
        "gradients vanishing towards the input: with its logits and rates rescaled the "
        "Xavier net's test loss equals the Kaiming net's to 1e-12 nats for the first "
        f"{spread([_exact_epochs(r, k) for r, k in zip(ress, kais, strict=True)], 'd')} "
        "epochs, until rounding parts them.",
        f"- A 10-layer sigmoid net with xavier_normal does not train in "
        f"{sigs[0][-1].epoch} epochs (best test accuracy "
        f"{spread([max(s.test_acc for s in h) for h in sigs])}): log10 of its first layer's "
        "weight gradient over the last hidden layer's is "
        f"{spread([ratio_log10(h[0], 'grad_w_norm') for h in sigs], '+.2f')} at init.",
        f"- Every trained number is given over {len(by_seed)} seeds (split, init and batch "
        "order all change with the seed) as median and range.",
    ]


CAPTIONS = {
    "curves_init_depth30.png": "30-layer ReLU MLP: kaiming_normal, xavier_normal, and the "
    "rescaled xavier_normal (×) on top of kaiming_normal.",
    "curves_activation_depth10.png": "10-layer MLP, xavier_normal: sigmoid against relu.",
    "homogeneity.png": "The rescaled Xavier run against the Kaiming run.",
    "plateau.png": "The Xavier ReLU-30 run's plateau: its gradients grow before its loss moves.",
    "grad_norms_heatmap.png": "log10 ‖∂L/∂W^(l)‖ over epochs and layers.",
    "grad_norms_by_layer.png": "‖∂L/∂W^(l)‖ and ‖δ^(l)‖ by layer at initialisation and at the end.",
}


FINAL_COLUMNS = (
    (tail_loss, ".4f"),
    (lambda h: h[-1].test_acc, ".3f"),
    (lambda h: max(s.test_acc for s in h), ".3f"),
    (first_epoch, "d"),
    (lambda h: ratio_log10(h[0], "grad_w_norm"), "+.2f"),
)


def _cell(values: Sequence[float | None], fmt: str) -> str:
    """median [min, max] over seeds, — where none has a value."""
    have = sorted(v for v in values if v is not None and not math.isnan(v))
    if not have:
        return "—"
    text = f"{_median(have, fmt)} [{have[0]:{fmt}}, {have[-1]:{fmt}}]"
    return text + (f" ({len(values) - len(have)} never)" if len(have) < len(values) else "")


def readme(
    histories: dict[str, list[Snapshot]],
    by_seed: dict[int, dict[str, list[Snapshot]]],
    data: Dataset,
    epochs: int,
    seed: int,
    argv_text: str,
    figures: Sequence[Path],
    runtime: str,
) -> str:
    n_train, n_test = len(data.y_train), len(data.y_test)
    lines = [
        "# Training a deep MLP with manual_bp: init, homogeneity and activation",
        "",
        "Generated by `python -m experiments.training"
        + (f" {argv_text}" if argv_text else "")
        + "`; do not edit by hand.",
        "",
        "## Summary",
        "",
        *summary(by_seed),
        "",
        "## What was run",
        "",
        f"- Data: scikit-learn's 8×8 digits (`load_digits`, shipped with the package), a "
        f"seeded random split into {n_train} training and {n_test} test images per seed "
        f"(seeds {', '.join(map(str, by_seed))}; the plots show seed {seed}), "
        "each pixel standardised with the training set's mean and std (constant pixels left "
        "at 0).",
        f"- Model: MLP, `depth` Linear layers, hidden width {WIDTH}, the activation after every "
        f"hidden layer, {N_CLASSES} logits; biases start at zero. Runs of one depth draw their "
        "weights from the same standard normals (a stream seeded by seed and depth), so "
        "xavier_normal and kaiming_normal differ only by each layer's scale.",
        "- Loss: cross-entropy (mean over the batch), `manual_bp.losses.CrossEntropyLoss`.",
        f"- Optimiser: plain SGD, θ ← θ − α∇θL, α = {LR}, minibatches of {BATCH}, reshuffled "
        f"every epoch (the same order for every run), {epochs} epochs ("
        + ", ".join(f"`{r}` {s.epochs(epochs)}" for r, s in RUNS.items() if s.length != 1.0)
        + "). Every gradient comes "
        "from manual_bp's explicit δ backprop; no autograd. BLAS on one thread.",
        "- One learning rate and batch size for all runs, chosen once in trial runs of the "
        "30-layer Kaiming net: at lr 0.05 (batch 32) and at 0.1, 0.05 and 0.02 (batch 64) its "
        "loss jumped by more than 0.5 nats between epochs; at 0.01 (batch 32) it fell mostly "
        "steadily. Not tuned per arm.",
        "- `relu30_xavier_rescaled`: the Xavier weights, the logits multiplied by "
        "1/Π c_l, every parameter p at the rate α·c_p², where c_l² = E[W_l²] of xavier_normal "
        "over kaiming_normal (`experiments.measure.train.reparametrisation`).",
        f"- Measured each epoch: training loss/accuracy (epoch 0: the whole training set at "
        f"init; later: the mean over that epoch's minibatches as seen), test loss/accuracy "
        f"(whole test set), and per layer ‖∂L/∂W^(l)‖_F, ‖δ^(l)‖_F and ‖W^(l)‖_F on a fixed "
        f"probe of {PROBE} training rows (no update; δ carries the mean's 1/{PROBE}).",
        f"- Runtime: {runtime}",
        "",
        markdown_table(
            ["run", "depth", "activation", "init", "trained as"],
            [
                (
                    f"`{r}`",
                    s.depth,
                    s.activation,
                    s.init,
                    f"in {s.reference} coordinates" if s.reference else "itself",
                )
                for r, s in RUNS.items()
            ],
            "lrlll",
        ),
        "",
        "## Final numbers",
        "",
        f"Over {len(by_seed)} seeds: the median, and the range in brackets. Final train loss: "
        f"the mean over the last {TAIL} epochs (one epoch's can be a spike). Epoch to "
        f"{GOOD_ACC}: the first epoch with test accuracy ≥ {GOOD_ACC} (— where no seed "
        "reaches it). The gradient ratio: log10 ‖∂L/∂W^(1)‖/‖∂L/∂W^(L−1)‖ at initialisation.",
        "",
        markdown_table(
            [
                "run",
                "final train loss",
                "final test acc",
                "best test acc",
                f"epoch to {GOOD_ACC}",
                "gradient ratio",
            ],
            [
                (
                    f"`{run}`",
                    *(_cell([f(h) for h in _runs(by_seed, run)], fmt) for f, fmt in FINAL_COLUMNS),
                )
                for run in RUNS
            ],
            "lrrrrr",
        ),  # fmt: skip
        "",
    ]
    lines += findings_and_plots(findings(histories, by_seed), figures, CAPTIONS)
    lines += [
        "## Files",
        "",
        "- `history.csv`: " + ", ".join(HISTORY_COLUMNS) + " (one row per run and epoch).",
        "- `layers.csv`: " + ", ".join(LAYER_COLUMNS) + " (one row per run, epoch and layer; "
        "layer 1 is next to the input).",
        "- `seeds.csv`: " + ", ".join(SEED_COLUMNS) + " (one row per run, seed and epoch; "
        "geometric means over layers, on the probe).",
        "",
    ]
    return "\n".join(lines)
