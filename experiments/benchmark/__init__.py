"""Speed of the oracle against torch.autograd, measured so that the figures can be trusted.

    python -m experiments.benchmark [--out reports/benchmark] [--pairs 20] [--quick]

Everything runs in one process, float64 on both sides, after warm-up. A comparison is a
series of pairs: the oracle and its reference (autograd's `loss.backward()`, gradcheck, or
the same call at another thread count) run back to back, the order alternating from pair to
pair so neither side always follows the other's thread pools. Each side's time is the median
over the pairs; the ratio is the median of the per-pair ratios, and its spread the min–max
of them. The thread settings (torch's intra-op pool and NumPy's BLAS pool) are set per
section and printed with the BLAS libraries in use.

- goals: the MLP 784-512-512-10, the CNN, a CIFAR ResNet of 4 BasicBlocks with BatchNorm,
  a ViT encoder block and a GPT block, each at the machine's default threads and at one;
  manual_gradients against torch.autograd.gradcheck on a 1,893-parameter MLP;
  compare_gradients on a fresh 20-32-32-5 MLP per call (what a property test does), and
  where its time goes; peak memory on a CNN at batch 256 of 3×64×64 (a fresh process per
  side); the second core: an MLP of width 1024 at two threads over one;
- profiles: where manual_gradients' time goes (stages, then the NumPy pass layer by
  layer next to autograd's own profile), for every headline model;
- sweeps: batch, width and depth of an MLP and batch of the CNN, with the exponent of a
  power law fitted to each side's time;
- the convolution kernels: each benchmark convolution under the three ways the sum over
  kernel offsets can run (manual_bp.ops.conv), to show what the rule picks.

Writes README.md (the goals marked met or missed), benchmark.csv (every measurement),
stages.csv, layers.csv and scaling.png into --out. Timings are measurements: they differ
from run to run and from machine to machine; the README says where they come from.

The package, one module per measurement family:

| module      | what it measures or writes                                                 |
|-------------|----------------------------------------------------------------------------|
| `models`    | the models and batches timed (`Case`), and the goals                       |
| `timing`    | the machine, paired timing, the row every measurement writes               |
| `speed`     | the oracle against autograd per model, threads, a fresh model, the sweeps  |
| `profiles`  | where the time goes: stages of a call, the NumPy pass by layer, autograd's |
| `gradcheck` | manual_gradients against torch.autograd.gradcheck                          |
| `memory`    | peak memory of each side, in fresh processes                               |
| `kernels`   | manual_bp's convolution kernels under each plan                            |
| `readme`    | the goal table, the plot, README.md (one function per section)             |
| `cli`       | the whole benchmark (`run`) and its command line (`main`)                  |

What it needs from inside the oracle it reaches through torch_ref._bench (internal hooks
for the benchmark) and manual_bp.ops.conv.tuned; it patches nothing else.
"""

from experiments.benchmark.cli import main
from experiments.benchmark.gradcheck import gradcheck_speedup
from experiments.benchmark.kernels import conv_kernels
from experiments.benchmark.memory import peak_mb
from experiments.benchmark.models import GOALS, HEADLINE_GOALS, Case, cnn, headline_cases, mlp
from experiments.benchmark.profiles import layer_profile, stage_profile
from experiments.benchmark.readme import goal_rows, table, text_table
from experiments.benchmark.speed import fitted_exponents, headline, sweeps
from experiments.benchmark.timing import Pairs, flops, paired, row, threads

__all__ = [
    "GOALS",
    "HEADLINE_GOALS",
    "Case",
    "Pairs",
    "cnn",
    "conv_kernels",
    "fitted_exponents",
    "flops",
    "goal_rows",
    "gradcheck_speedup",
    "headline",
    "headline_cases",
    "layer_profile",
    "main",
    "mlp",
    "paired",
    "peak_mb",
    "row",
    "stage_profile",
    "sweeps",
    "table",
    "text_table",
    "threads",
]
