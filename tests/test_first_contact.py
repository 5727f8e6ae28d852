"""Frictions a new user met, each fixed and kept fixed: names accepted the same way
everywhere, errors that list what is valid."""

import pytest

import manual_bp
from torch_ref import strategies
from torch_ref.strategies import cnn_models, mlp_models, mlp_specs, rnn_models


def test_torch_class_names_and_any_case_name_an_activation() -> None:
    spec = mlp_specs(activations=("ReLU", "LeakyReLU", "GELU", "relu"), losses=("mse",))
    assert repr(spec) == "mlp_specs(activations=('relu', 'leaky_relu', 'gelu'), losses=('mse',))"


@pytest.mark.parametrize(
    ("make", "limits", "unknown", "a_known_one"),
    [
        (mlp_models, {"activations": ("ReLUX",)}, "'ReLUX'", "leaky_relu"),
        (cnn_models, {"losses": ("hinge",)}, "'hinge'", "bce_with_logits"),
        (rnn_models, {"dtypes": ("float8",)}, "'float8'", "bfloat16"),
        (rnn_models, {"cells": ("transformer",)}, "'transformer'", "lstm"),
    ],
    ids=["activation", "loss", "dtype", "cell"],
)
def test_an_unknown_name_is_a_value_error_listing_the_known_ones(
    make, limits, unknown, a_known_one
) -> None:
    """Refused when the strategy is made (it was a bare KeyError: 'ReLU' at the first draw)."""
    with pytest.raises(ValueError, match="unknown") as info:
        make(**limits)
    assert unknown in str(info.value) and a_known_one in str(info.value)


def test_a_single_name_must_be_a_tuple() -> None:
    with pytest.raises(TypeError, match=r"\('relu',\)"):
        mlp_models(activations="relu")


def test_every_loss_name_of_the_strategies_and_the_cli_is_one_manual_bp_knows() -> None:
    """One set of names: `mse` for manual_bp as for the CLI and the strategies (get_loss('mse')
    said "unknown loss 'mse'"), and torch's functional names for the strategies as for
    manual_bp."""
    from torch_ref import cli

    names = {*strategies.LOSSES, *cli.LOSSES} - {"cross_entropy_probs"}
    for name in sorted(names):
        assert type(manual_bp.get_loss(name)).__name__ == strategies.LOSS_MODULES[name].__name__
    for short, functional in manual_bp.losses.SHORT_LOSS_NAMES.items():
        by_class = strategies.LOSS_MODULES[short].__name__
        assert repr(mlp_specs(losses=(functional, by_class))) == f"mlp_specs(losses=({short!r},))"
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*mse \(mse_loss\)"):
        manual_bp.get_loss("hinge")
