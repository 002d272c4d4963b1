"""GD++ (von Oswald et al. 2023): the pure predictor, its LSA weight construction, the rate fit."""

import jax
import numpy as np
import pytest

from jaxformers.ops import icl, lsa


@pytest.fixture(scope="module")
def tasks():
    t = icl.sample_tasks(jax.random.PRNGKey(4), 512, 10, 10, x_dist="uniform", x_range=0.5)
    return t["x"], t["y"]


def test_gd_plus_plus_without_gamma_is_k_steps_of_gd(tasks):
    x, y = tasks
    ours = icl.gd_plus_plus_predict(x, y, [3.0, 3.0, 3.0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(ours, icl.gd_predict(x, y, 3.0, steps=3), rtol=1e-4, atol=1e-5)


def test_stacked_lsa_layers_with_the_construction_are_gd_plus_plus(tasks):
    x, y = tasks
    lrs, gammas = [5.0, 2.0, 4.0], [1.5, 0.0, 3.0]
    tokens = icl.to_tokens(x, y)
    for lr, gamma in zip(lrs, gammas):
        tokens = lsa.linear_self_attention(tokens, lsa.gd_plus_plus_lsa_params(10, lr, gamma, 10))
    expected = icl.gd_plus_plus_predict(x, y, lrs, gammas)
    np.testing.assert_allclose(-tokens[:, -1, -1], expected, rtol=1e-4, atol=1e-5)
    # the query's inputs were transformed too: dropping γ changes the prediction
    assert np.max(np.abs(expected - icl.gd_plus_plus_predict(x, y, lrs, [0.0] * 3))) > 1e-2


def test_fitted_gd_plus_plus_beats_tuned_gd(tasks):
    x, y = tasks
    _, gd_loss = icl.tune_gd_rate(x, y, 2)
    lrs, gammas, loss = icl.fit_gd_plus_plus(x, y, 2, iters=100)  # 0.74x GD at 100, 0.68x at 300
    assert loss < 0.97 * gd_loss, (loss, gd_loss)
    # curvature correction before the last step; the last layer's γ cannot change the prediction
    assert gammas[0] > 0 and gammas[1] == 0, gammas
