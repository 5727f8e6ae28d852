"""Finite width (experiments.measure.finite_width): the per-example log ratios against a backward
pass written out here, Hanin's one-layer law, and the experiment's files."""

import numpy as np
import pytest

from experiments import finite_width as experiment
from experiments.measure import finite_width as fw
from experiments.measure import flow
from manual_bp.losses import CrossEntropyLoss


def test_hanin_law():
    assert fw.hanin_law([100, 100]) == pytest.approx((-0.05, 0.1))


def test_log_ratios_match_a_backward_pass_written_out_here():
    config = flow.Config("relu", "kaiming_normal", 5, 20, 3, 7)
    weights, biases = flow.parameters(config)
    x, target = flow.batch(config)
    zs, a = [], x
    for W, b in zip(weights, biases, strict=True):
        z = a @ W.T + b
        zs.append(z)
        a = np.maximum(z, 0.0)

    def back(v):
        delta = v
        for l in range(len(weights) - 1, 0, -1):  # δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1)
            delta = (delta @ weights[l]) * (zs[l - 1] > 0)
        return np.log(np.sum(delta**2, axis=1)) - np.log(np.sum(v**2, axis=1))

    logits = zs[-1]
    _, dL = CrossEntropyLoss()(logits, target)
    got = fw.log_ratios(config)
    np.testing.assert_allclose(got["loss"], back(dL), rtol=1e-12)
    rng_v = np.random.default_rng(
        [config.seed, config.width, config.depth, __import__("zlib").crc32(b"direction")]
    )
    np.testing.assert_allclose(got["random"], back(rng_v.normal(size=logits.shape)), rtol=1e-12)
    onehot = np.eye(10)[np.arange(config.batch) % 10]
    np.testing.assert_allclose(got["onehot"], back(onehot), rtol=1e-12)


def test_one_relu_layer_follows_the_law():
    """Depth 2: one backward step through n = 200 units, Var ln r ≈ 5/n, E ln r ≈ −2.5/n."""
    n = 200
    values = np.concatenate(
        [
            fw.log_ratios(flow.Config("relu", "kaiming_normal", 2, n, s, 10))["random"]
            for s in range(300)
        ]
    )
    assert values.var() == pytest.approx(5 / n, rel=0.12), values.var() * n
    assert values.mean() == pytest.approx(-2.5 / n, abs=4 * np.sqrt(5 / n / len(values)) + 1e-3)


@pytest.mark.filterwarnings("error")  # quiet: any warning fails the run
def test_the_experiment_writes_the_same_bytes_twice(tmp_path):
    for name in ("a", "b"):
        assert experiment.main(["--quick", "--out", str(tmp_path / name), "--jobs", "1"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [
        "README.md",
        "gelu_layers.csv",
        "gelu_residual.csv",
        "gelu_residual.png",
        "hanin.csv",
        "hanin.png",
        "hanin_cells.csv",
        "hanin_qq.png",
        "hanin_step.csv",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_hanins_coefficient_is_two_mu4_minus_one():
    """5 Σ 1/n_l is Gaussian weights' case (μ₄ = 3); uniform weights (μ₄ = 9/5) give 2.6."""
    assert fw.hanin_coefficient(fw.MU4["gaussian"]) == 5.0 == fw.HANIN
    assert fw.hanin_coefficient(fw.MU4["uniform"]) == pytest.approx(2.6, abs=1e-15)
    u = np.random.default_rng(0).uniform(-1, 1, 2_000_000)
    assert np.mean(u**4) / np.mean(u**2) ** 2 == pytest.approx(fw.MU4["uniform"], rel=2e-3)


def test_one_example_can_carry_the_batch_norm():
    """gelu + kaiming_normal, width 256, seed 1: one example holds 98.5 % of ‖δ^(1)‖², and the
    batch ratio (−3.65) lies far from the per-example median (−6.88) and the theory (−7.53)."""
    summary, _ = fw.measure_residual(flow.Config("gelu", "kaiming_normal", 64, 256, 1, 128))
    assert summary["top_example_share"] == pytest.approx(0.985, abs=5e-3)
    assert summary["delta_ratio_log10"] == pytest.approx(-3.65, abs=0.01)
    assert summary["delta_ratio_log10_median_example"] == pytest.approx(-6.885, abs=0.01)
    assert summary["delta_ratio_log10_theory"] == pytest.approx(-7.525, abs=1e-3)


def test_the_gaussian_step_is_a_scaled_chi_square():
    """Var ln r = E ψ′(K/2) + Var ψ(K/2) → 5/n (and −5/(2n)) as n grows; by Monte Carlo of
    (2/n)χ²_K at n = 32: 5.68/n."""
    mean, var = fw.gaussian_step_log_moments(32)
    rng = np.random.default_rng(0)
    k = rng.binomial(32, 0.5, 400_000)
    k = k[k > 0]
    r = np.log(2.0 / 32 * rng.chisquare(k))
    assert 32 * var == pytest.approx(5.680, abs=2e-3)
    assert var == pytest.approx(r.var(), rel=0.01) and mean == pytest.approx(r.mean(), abs=2e-3)
    big_mean, big_var = fw.gaussian_step_log_moments(4096)
    assert 4096 * big_var == pytest.approx(5.0, abs=0.01)
    assert 4096 * big_mean == pytest.approx(-2.5, abs=0.01)


@pytest.mark.parametrize("weights", ["gaussian", "uniform"])
def test_one_step_variance_depends_on_the_directions_localisation(weights):
    """n·Var(r) = 5 + 2(μ₄ − 3)ℓ: a one-hot direction (ℓ = 1) gives 2μ₄ − 1 (5 Gaussian, 2.6
    uniform), a random one in 10 classes (E ℓ = 1/4) gives 5 and 4.4."""
    n, init = 64, fw.WEIGHTS[weights]
    ratios = [fw.log_ratios(flow.Config("relu", init, 2, n, s, 10)) for s in range(500)]
    for key, ell in (("onehot", 1.0), ("random", fw.RANDOM_LOCALISATION)):
        r = np.exp(np.concatenate([x[key] for x in ratios]))
        expected = fw.step_variance(fw.MU4[weights], ell)
        assert n * r.var() == pytest.approx(expected, rel=0.08), (key, n * r.var(), expected)
    assert fw.step_variance(fw.MU4["uniform"], 1.0) == pytest.approx(2.6)
    assert fw.step_variance(fw.MU4["uniform"], 0.25) == pytest.approx(4.4)


def test_deep_uniform_nets_follow_five_not_two_point_six():
    """Depth 24, width 48 (β = 0.479), 48 networks × 8 examples: Var ln ratio / β near the
    finite-width value (≈ 5.2), far from 2μ₄ − 1 = 2.6."""
    values = np.concatenate(
        [
            fw.log_ratios(flow.Config("relu", "kaiming_uniform", 24, 48, s, 8))["random"]
            for s in range(48)
        ]
    )
    beta = 23 / 48
    predicted = fw.hanin_law_next_order([48] * 23, fw.MU4["uniform"]) / beta
    assert 4.9 < predicted < 5.3
    assert values.var() / beta == pytest.approx(predicted, rel=0.2)
    assert values.var() / beta > 1.4 * 2.6


def test_the_hanin_study_refuses_other_nets():
    with pytest.raises(ValueError, match="relu with kaiming_normal or kaiming_uniform, got tanh"):
        fw.measure_hanin(flow.Config("tanh", "kaiming_normal", 3, 8, 0, 2))


def test_slopes_recover_a_planted_constant():
    """Rows drawn N(0, C β) per cell: the fitted slope's interval holds C = 3, not 5."""
    import pandas as pd

    from experiments.report import hanin

    rng = np.random.default_rng(1)
    rows = [
        {
            "weights": w,
            "depth": d,
            "width": n,
            "seed": s,
            "example": e,
            "ln_ratio_random": rng.normal(0, np.sqrt(3 * (d - 1) / n)),
        }  # fmt: skip
        for w in ("gaussian", "uniform")
        for d, n in ((9, 32), (17, 64))
        for s in range(64)
        for e in range(8)
    ]
    fit = hanin.slopes(pd.DataFrame(rows)).set_index("weights")
    for w in ("gaussian", "uniform"):
        assert fit.loc[w, "lo"] < 3.0 < fit.loc[w, "hi"] < 5.0, fit.loc[w]
