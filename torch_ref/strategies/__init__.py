"""Hypothesis strategies for random torch problems, public so users can property-test their
own gradient code against ours.

    from hypothesis import given
    from torch_ref.strategies import cnn_models, mlp_models

    @given(mlp_models(max_depth=4) | cnn_models(max_blocks=2))
    def test_my_backward(problem):
        model, loss_fn, inputs, target = problem
        ...

Each strategy draws a printable *spec* (`mlp_specs()`, `cnn_specs()`), and the `*_models()`
form builds it into `(model, loss_fn, inputs, target)`, a tuple that prints as the spec that
made it, so a failing example reads as one line of code. Building uses its own seed and
leaves torch's global random state as it was.

| module      | what lives there                                                      |
|-------------|-----------------------------------------------------------------------|
| `common`    | the names a spec may use (activations, losses, dtypes), `Problem`      |
| `mlp`       | `mlp_specs`, `mlp_models`                                             |
| `cnn`       | `cnn_specs`, `cnn_models`                                             |
| `recurrent` | `rnn_specs`, `rnn_models`                                             |
"""

try:  # before any submodule: each one imports hypothesis
    import hypothesis  # noqa: F401
except ImportError as err:  # hypothesis is an optional dependency of manual-bp
    raise ImportError(
        "torch_ref.strategies needs hypothesis, which is not installed; install it with "
        "the extra: pip install 'manual-bp[hypothesis]'",
        name="hypothesis",
    ) from err

from torch_ref.strategies.cnn import (
    EXACT_ACTIVATIONS,
    EXACT_POOLS,
    PADDING_MODES,
    POOL_KINDS,
    CNNSpec,
    ConvBlockSpec,
    PoolSpec,
    cnn_models,
    cnn_specs,
    pool_output_size,
)
from torch_ref.strategies.common import (
    ACTIVATION_MODULES,
    ACTIVATION_OPTIONS,
    DTYPES,
    LOSS_ALIASES,
    LOSS_MODULES,
    LOSSES,
    Problem,
    build_loss,
    build_target,
    known_names,
)
from torch_ref.strategies.mlp import MLPSpec, mlp_models, mlp_specs
from torch_ref.strategies.recurrent import (
    RNN_CELLS,
    RNN_HEADS,
    RNN_INITIAL_STATES,
    RNNModel,
    RNNSpec,
    rnn_models,
    rnn_specs,
)

__all__ = [
    "ACTIVATION_MODULES",
    "ACTIVATION_OPTIONS",
    "DTYPES",
    "EXACT_ACTIVATIONS",
    "EXACT_POOLS",
    "LOSSES",
    "LOSS_ALIASES",
    "LOSS_MODULES",
    "PADDING_MODES",
    "POOL_KINDS",
    "RNN_CELLS",
    "RNN_HEADS",
    "RNN_INITIAL_STATES",
    "CNNSpec",
    "ConvBlockSpec",
    "MLPSpec",
    "PoolSpec",
    "Problem",
    "RNNModel",
    "RNNSpec",
    "build_loss",
    "build_target",
    "cnn_models",
    "cnn_specs",
    "known_names",
    "mlp_models",
    "mlp_specs",
    "pool_output_size",
    "rnn_models",
    "rnn_specs",
]
