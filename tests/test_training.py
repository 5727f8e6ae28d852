"""The SGD loop of experiments.measure.train and the training experiment's files.

Checks: one SGD step is θ − α·∇θL exactly; the loop lowers the loss on a tiny problem;
measuring changes nothing; the homogeneity reparametrisation follows the reference run;
`--quick` writes the files with their columns; the same command writes byte-identical CSV,
Markdown and PNG; bad flags fail with one line naming the flag.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments import training
from experiments.measure.train import (
    Dataset,
    Snapshot,
    init_mlp,
    layer_norms,
    reparametrisation,
    scaled,
    sgd_epoch,
    split,
    standardize,
    train,
)
from experiments.report import training as report
from manual_bp.losses import CrossEntropyLoss
from manual_bp.optim import SGD


def blobs(n: int = 90, n_classes: int = 3, dim: int = 4, seed: int = 0) -> Dataset:
    """Three well-separated Gaussian blobs: a problem any working loop learns."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = 3.0 * rng.normal(size=(n_classes, dim))
    x = centres[y] + rng.normal(size=(n, dim))
    return split(x, y, 0.25, np.random.default_rng(seed + 1))


def small_net(seed: int = 0, activation: str = "relu"):
    return init_mlp([4, 8, 8, 3], activation, "kaiming_normal", np.random.default_rng(seed))


# --- the step and the loop -------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.5, 0.1, 1e-3])
def test_sgd_step_is_theta_minus_lr_times_grad_exactly(lr: float) -> None:
    data = blobs()
    net = small_net()
    before = {k: v.copy() for k, v in net.named_parameters().items()}
    grads = net.loss_and_gradients(data.x_train, data.y_train, CrossEntropyLoss()).grads
    SGD(lr).step(net, grads)
    for name, theta in net.named_parameters().items():
        expected = before[name] - lr * grads[name]
        assert np.array_equal(theta, expected), (
            f"{name}: max |θ − (θ₀ − α g)| = {np.max(np.abs(theta - expected)):.3e}"
        )


@pytest.mark.parametrize("lr", [0.5, 0.1, 1e-3])
def test_an_epoch_of_one_full_batch_is_one_sgd_step(lr: float) -> None:
    data = blobs()
    net = small_net()
    before = {k: v.copy() for k, v in net.named_parameters().items()}
    # one batch holding every row: sgd_epoch takes exactly one step, on the rows in the
    # order of its permutation (the same order, so the same sums to the last bit)
    order = np.random.default_rng(0).permutation(len(data.x_train))
    x, y = data.x_train[order], data.y_train[order]
    grads = net.loss_and_gradients(x, y, CrossEntropyLoss()).grads
    sgd_epoch(net, data.x_train, data.y_train, CrossEntropyLoss(), SGD(lr),
              batch_size=len(data.x_train), rng=np.random.default_rng(0))  # fmt: skip
    after = net.named_parameters()
    assert set(after) == set(grads) == set(before)
    for name, theta in after.items():
        expected = before[name] - lr * grads[name]
        assert np.array_equal(theta, expected), (
            f"{name}: max |θ − (θ₀ − α g)| = {np.max(np.abs(theta - expected)):.3e}"
        )
        assert not np.array_equal(theta, before[name]), f"{name} did not move"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_loop_lowers_the_loss_on_a_tiny_problem(activation: str) -> None:
    data = standardize(blobs())
    history = train(small_net(activation=activation), data, CrossEntropyLoss(), lr=0.1,
                    epochs=30, batch_size=16, rng=np.random.default_rng(0))  # fmt: skip
    assert [s.epoch for s in history] == list(range(31))
    first, last = history[0], history[-1]
    assert last.train_loss < 0.3 * first.train_loss, (first.train_loss, last.train_loss)
    assert last.test_loss < 0.3 * first.test_loss, (first.test_loss, last.test_loss)
    assert last.train_acc >= 0.95 and last.test_acc >= 0.9, (last.train_acc, last.test_acc)


def test_the_loop_at_lr_too_small_to_matter_barely_moves() -> None:
    """Guards the test above: a loop that did not step would pass neither."""
    data = standardize(blobs())
    history = train(small_net(), data, CrossEntropyLoss(), lr=1e-9, epochs=3, batch_size=16,
                    rng=np.random.default_rng(0))  # fmt: skip
    assert abs(history[-1].test_loss - history[0].test_loss) < 1e-6


def test_measuring_changes_no_parameter_and_gives_the_norms_of_the_gradients() -> None:
    data = blobs()
    net = small_net()
    before = {k: v.copy() for k, v in net.named_parameters().items()}
    grad_w_norm, delta_norm, cross = layer_norms(net, data.x_train, data.y_train,
                                                 CrossEntropyLoss())  # fmt: skip
    assert list(cross) == ["1", "2", "3"] and all(np.isfinite(list(cross.values())))
    for name, theta in net.named_parameters().items():
        assert np.array_equal(theta, before[name]), f"measuring changed {name}"
    result = net.loss_and_gradients(data.x_train, data.y_train, CrossEntropyLoss())
    assert list(grad_w_norm) == list(delta_norm) == ["1", "2", "3"]
    for layer in grad_w_norm:
        assert grad_w_norm[layer] == np.linalg.norm(result.grads[f"{layer}.weight"])
        assert delta_norm[layer] == np.linalg.norm(result.deltas[layer])


def test_split_is_a_partition_and_standardize_uses_the_training_set() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 3.0, size=(50, 3))
    x[:, 2] = 7.0  # a constant feature, as digits' border pixels
    data = split(x, np.arange(50), 0.2, np.random.default_rng(0))
    assert len(data.y_test) == 10
    assert sorted(np.concatenate([data.y_train, data.y_test]).tolist()) == list(range(50))
    std = standardize(data)
    np.testing.assert_allclose(std.x_train[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std.x_train[:, :2].std(axis=0), 1.0, rtol=1e-12)
    assert np.all(std.x_train[:, 2] == 0.0) and np.all(std.x_test[:, 2] == 0.0)
    mu, sigma = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    np.testing.assert_allclose(std.x_test[:, :2], (data.x_test[:, :2] - mu[:2]) / sigma[:2])


# --- the experiment ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("training_quick")
    training.main(["--quick", "--out", str(out)])
    return out


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_quick_writes_every_file_with_its_columns(quick_run: Path) -> None:
    names = {p.name for p in quick_run.iterdir()}
    pngs = {"grad_norms_heatmap.png", "grad_norms_by_layer.png", "homogeneity.png",
            "plateau.png"}  # fmt: skip
    pngs |= {f"curves_{name}.png" for name in report.COMPARISONS}
    expected = {"history.csv", "layers.csv", "seeds.csv", "README.md"} | pngs
    assert names == expected, f"missing {expected - names}, unexpected {names - expected}"

    header, rows = _rows(quick_run / "history.csv")
    assert header == list(report.HISTORY_COLUMNS)
    for run, spec in report.RUNS.items():
        epochs = list(range(spec.epochs(training.QUICK_EPOCHS) + 1))
        assert [int(r["epoch"]) for r in rows if r["run"] == run] == epochs, run
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)

    header, rows = _rows(quick_run / "layers.csv")
    assert header == list(report.LAYER_COLUMNS)
    for run, spec in report.RUNS.items():
        layers = [int(r["layer"]) for r in rows if r["run"] == run and r["epoch"] == "0"]
        assert layers == list(range(1, spec.depth + 1)), run
    assert all(float(r["grad_w_norm"]) > 0 and float(r["delta_norm"]) > 0 for r in rows)

    header, rows = _rows(quick_run / "seeds.csv")
    assert header == list(report.SEED_COLUMNS)
    assert {r["seed"] for r in rows} == {str(s) for s in range(training.QUICK_SEEDS)}
    assert len(rows) == training.QUICK_SEEDS * sum(
        spec.epochs(training.QUICK_EPOCHS) + 1 for spec in report.RUNS.values()
    )

    text = (quick_run / "README.md").read_text(encoding="utf-8")
    assert "## Findings" in text and "| `relu30_kaiming` |" in text
    for png in pngs:
        assert f"]({png})" in text, f"README does not show {png}"


@pytest.mark.filterwarnings("error")  # quiet: any warning fails the run
def test_same_command_writes_byte_identical_files(quick_run: Path, tmp_path: Path) -> None:
    """Every file, PNG included, on one process and on two."""
    training.main(["--quick", "--out", str(tmp_path), "--jobs", "1"])
    for name in sorted(p.name for p in quick_run.iterdir()):
        first, again = (quick_run / name).read_bytes(), (tmp_path / name).read_bytes()
        assert first == again, f"{name} differs between two identical runs"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left"


@pytest.mark.parametrize(
    "argv, flag",
    [(["--epochs", "0"], "--epochs"), (["--seed", "-1"], "--seed"),
     (["--epochs", "many"], "--epochs"), (["--jobs", "0"], "--jobs")],
)  # fmt: skip
def test_bad_flags_fail_with_one_line_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        training.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err, err


# --- positive homogeneity --------------------------------------------------------------------


def test_reparametrisation_rates_are_the_layers_scales_squared() -> None:
    sizes = [64, 64, 64, 10]
    scale, rates = reparametrisation(sizes, "relu", "xavier_normal", "kaiming_normal")
    assert rates["1.weight"] == pytest.approx(0.5) and rates["2.weight"] == pytest.approx(0.5)
    assert rates["3.weight"] == pytest.approx(64 / 74)
    assert rates["3.bias"] == pytest.approx(0.25 * 64 / 74)
    assert scale == pytest.approx(1 / np.sqrt(0.25 * 64 / 74))
    with pytest.raises(ValueError, match="positively homogeneous"):
        reparametrisation(sizes, "tanh", "xavier_normal", "kaiming_normal")
    with pytest.raises(ValueError, match="zero initial biases"):
        reparametrisation(sizes, "relu", "torch_default", "kaiming_normal")


def test_a_rescaled_xavier_relu_net_follows_the_kaiming_one() -> None:
    """Same standard normals, logits × 1/Π c_l, rates α·c_p²: the same SGD in other
    coordinates, so the losses agree to rounding over the first steps; the unscaled Xavier
    net starts near chance (ln 3), far closer than the Kaiming one."""
    data = standardize(blobs(n=120, n_classes=3, dim=8))
    sizes = [8, 16, 16, 16, 16, 3]
    runs = {}
    for init, rescale in (("kaiming_normal", False), ("xavier_normal", True),
                          ("xavier_normal", False)):  # fmt: skip
        net = init_mlp(sizes, "relu", init, np.random.default_rng([5, 1]))
        loss, rates = CrossEntropyLoss(), None
        if rescale:
            s, rates = reparametrisation(sizes, "relu", init, "kaiming_normal")
            loss = scaled(loss, s)
        runs[(init, rescale)] = train(net, data, loss, lr=0.05, epochs=3, batch_size=16,
                                      rng=np.random.default_rng(0), lr_scale=rates)  # fmt: skip
    kai, res = runs[("kaiming_normal", False)], runs[("xavier_normal", True)]
    for a, b in zip(kai, res, strict=True):
        assert b.test_loss == pytest.approx(a.test_loss, rel=1e-10), (a.epoch, b.test_loss)
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-10)
    assert kai[-1].train_loss < 0.9 * kai[0].train_loss, "the reference run did not learn"
    xav = runs[("xavier_normal", False)]  # its logits are 2^−2·√(16/19) of Kaiming's
    assert abs(xav[0].train_loss - np.log(3)) < 0.2 * abs(kai[0].train_loss - np.log(3))


def _history(losses: list[float], accs: list[float]) -> list[Snapshot]:
    return [
        Snapshot(e, loss, 0.0, loss, acc, {}, {}, {}, {})
        for e, (loss, acc) in enumerate(zip(losses, accs, strict=True))
    ]


def test_claims_over_seeds_are_median_and_range_and_count_the_never() -> None:
    assert report.spread([3.0, 1.0, 2.0]) == "2.000 (range 1.000 to 3.000, 3 seeds)"
    assert report.spread([10, 20], "d") == "15 (range 10 to 20, 2 seeds)"
    assert report.spread([126, None, 145, None], "d") == (
        "126, 145 in 2 of 4 seeds (the other 2: never)"
    )
    assert report.spread([None, None], "d") == "— (in none of 2 seeds)"
    assert report._cell([0.5, 0.7, 0.6], ".1f") == "0.6 [0.5, 0.7]"
    assert report._cell([None, 3], "d") == "3 [3, 3] (1 never)"


def test_the_final_loss_is_a_mean_over_the_last_epochs_not_one_spike() -> None:
    h = _history([2.3] + [0.02] * 20 + [0.47], [0.1] * 22)
    assert report.tail_loss(h) == pytest.approx((9 * 0.02 + 0.47) / 10)
    assert report.rises(h) == [(21, pytest.approx(0.45))]
    h = _history([2.3, 2.0, 1.0, 0.5], [0.1, 0.5, 0.91, 0.95])
    assert report.first_epoch(h) == 2 and report.first_epoch(h, 0.99) is None
