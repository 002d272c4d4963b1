"""ICL baselines against numpy definitions in float64; task samplers' statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops import icl_baselines as B
from jaxformers.ops import icl_tasks as T


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _prompts(b=3, n=9, d=5, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((b, n, d))
    ys = xs @ rng.standard_normal(d) + 0.3 * rng.standard_normal((b, n))
    return xs, ys


def test_ols_equals_numpy_minimum_norm_lstsq_at_every_prefix():
    xs, ys = _prompts()
    pred = np.asarray(B.ols_predict(jnp.asarray(xs), jnp.asarray(ys)))
    for b in range(xs.shape[0]):
        assert pred[b, 0] == 0.0
        for i in range(1, xs.shape[1]):
            w = np.linalg.lstsq(xs[b, :i], ys[b, :i], rcond=None)[0]  # minimum norm for i < d
            np.testing.assert_allclose(pred[b, i], xs[b, i] @ w, rtol=1e-9, atol=1e-9)


def test_ridge_solves_its_normal_equations():
    xs, ys = _prompts()
    lam = 0.7
    w = np.asarray(B.ridge_weights(jnp.asarray(xs), jnp.asarray(ys), lam))
    for b in range(xs.shape[0]):
        for i in range(xs.shape[1]):
            x, y = xs[b, :i], ys[b, :i]
            np.testing.assert_allclose((x.T @ x + lam * np.eye(5)) @ w[b, i], x.T @ y, atol=1e-10)


@pytest.mark.parametrize("lam", [0.01, 0.3])
def test_lasso_satisfies_kkt_conditions(lam):
    xs, ys = _prompts(n=12)
    w = np.asarray(B.lasso_weights(jnp.asarray(xs), jnp.asarray(ys), lam, iters=3000))
    for b in range(xs.shape[0]):
        for i in range(1, xs.shape[1]):
            x, y = xs[b, :i], ys[b, :i]
            g = x.T @ (y - x @ w[b, i]) / i  # subgradient condition: g_j ∈ λ ∂|w_j|
            active = np.abs(w[b, i]) > 1e-8
            np.testing.assert_allclose(g[active], lam * np.sign(w[b, i][active]), atol=1e-5)
            assert np.all(np.abs(g[~active]) <= lam + 1e-5)


def test_knn_and_averaging_match_their_definitions():
    xs, ys = _prompts()
    knn = np.asarray(B.knn_predict(jnp.asarray(xs), jnp.asarray(ys), 3))
    avg = np.asarray(B.averaging_predict(jnp.asarray(xs), jnp.asarray(ys)))
    for b in range(xs.shape[0]):
        for i in range(1, xs.shape[1]):
            dist = np.sum((xs[b, :i] - xs[b, i]) ** 2, -1)
            near = np.argsort(dist)[: min(3, i)]
            np.testing.assert_allclose(knn[b, i], ys[b, near].mean(), rtol=1e-12)
            w = (ys[b, :i, None] * xs[b, :i]).mean(0)
            np.testing.assert_allclose(avg[b, i], xs[b, i] @ w, rtol=1e-10)
    assert np.all(knn[:, 0] == 0) and np.all(avg[:, 0] == 0)


def test_noiseless_ols_error_is_zero_once_prefix_reaches_d():
    xs, ys = T.linear(jax.random.key(0), 64, 12, 5, dtype=jnp.float64)
    curve = np.asarray(B.squared_error_curve(B.ols_predict(xs, ys), ys, 5.0))
    assert np.all(curve[5:] < 1e-12) and curve[4] > 0.05


def test_disagreement_with_bayes_ridge_closes_the_error_gap():
    # the posterior mean f* is the L2 projection of y onto functions of the context, so for any
    # learner g: E(y - g)² = E(y - f*)² + E(f* - g)² (Akyürek et al.'s SPD is the last term)
    noise, tau = 0.5, 1.0
    xs, ys = T.linear(jax.random.key(3), 20000, 8, 3, noise_std=noise, dtype=jnp.float64)
    bayes = B.ridge_predict(xs, ys, B.bayes_ridge_lambda(noise, tau))
    ols = B.ols_predict(xs, ys)
    spd = np.asarray(B.disagreement_curve(ols, bayes, 3.0))
    gap = np.asarray(B.squared_error_curve(ols, ys, 3.0) - B.squared_error_curve(bayes, ys, 3.0))
    stable = [1, 2, 6, 7]  # at n = d, d+1 the OLS error has no finite variance (inverse Wishart)
    np.testing.assert_allclose(spd[stable], gap[stable], rtol=0.1, atol=0.01)
    assert spd[0] == 0.0 and spd[2] > 0.1  # OLS interpolates 2 points in d = 3: far from ridge
    np.testing.assert_allclose(B.disagreement_curve(ys, 2 * ys, 2.0), np.mean(ys**2, 0) / 2.0)


def test_linear_sampler_covariance_and_noise():
    cov = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.25]])
    xs, ys = T.linear(jax.random.key(1), 8000, 10, 3, covariance=cov, noise_std=0.5, dtype=jnp.float64)
    flat = np.asarray(xs).reshape(-1, 3)
    np.testing.assert_allclose(np.cov(flat.T), cov, atol=0.02)
    np.testing.assert_allclose(np.mean(np.asarray(ys) ** 2), np.trace(cov) + 0.25, rtol=0.04)


def test_sparse_linear_has_k_active_coordinates_and_power_k():
    xs, ys = T.sparse_linear(jax.random.key(2), 1000, 20, 8, k=3, dtype=jnp.float64)
    np.testing.assert_allclose(np.mean(np.asarray(ys) ** 2), 3.0, rtol=0.06)
    w = np.asarray(B.ols_weights(xs[:5, :20], ys[:5, :20]))[:, -1]  # exact recovery, n > d
    assert np.all(np.sum(np.abs(w) > 1e-8, axis=-1) == 3)


def test_relu_net_power_is_about_d_and_boolean_labels():
    _, ys = T.relu_net(jax.random.key(3), 300, 10, 6, dtype=jnp.float64)
    np.testing.assert_allclose(np.mean(np.asarray(ys) ** 2), 6.0, rtol=0.1)
    xs, yc = T.conjunction(jax.random.key(4), 200, 40, 10, dtype=jnp.float64)
    assert set(np.unique(np.asarray(xs))) == {-1.0, 1.0} and set(np.unique(np.asarray(yc))) <= {-1.0, 1.0}
    assert 0.3 < np.mean(np.asarray(yc) > 0) < 0.7  # forced satisfying examples balance labels
    xs, yp = T.sparse_parity(jax.random.key(5), 200, 40, 10, k=2, dtype=jnp.float64)
    assert abs(np.mean(np.asarray(yp))) < 0.03
    # y is the product of exactly two coordinates: some pair of columns reproduces it
    x0, y0 = np.asarray(xs[0]), np.asarray(yp[0])
    assert any(np.all(x0[:, a] * x0[:, c] == y0) for a in range(10) for c in range(a + 1, 10))


def test_representation_task_is_linear_in_a_fixed_nonlinear_feature_map():
    phi = T.Representation(5, depth=2, seed=0)
    xs, ys = T.representation_linear(jax.random.key(6), 2000, 12, 5, representation=phi, dtype=jnp.float64)
    np.testing.assert_allclose(np.mean(np.asarray(ys) ** 2), 5.0, rtol=0.06)  # E|Φ(x)|² = d
    # the same Φ for every prompt and every construction from the same seed; another seed differs
    x = jnp.asarray(np.random.default_rng(0).standard_normal((7, 5)))
    np.testing.assert_array_equal(T.Representation(5, 2, 0)(x), phi(x))
    assert T.Representation(5, 2, 0) == phi and hash(T.Representation(5, 2, 0)) == hash(phi)
    assert not np.allclose(T.Representation(5, 2, 1)(x), phi(x))
    # least squares on Φ(x) is exact from n = d on; on x itself it is not (Φ is not linear)
    on_phi = B.squared_error_curve(B.ols_predict(phi(xs), ys), ys, 5.0)
    on_x = B.squared_error_curve(B.ols_predict(xs, ys), ys, 5.0)
    assert np.max(np.asarray(on_phi)[6:]) < 1e-12 and np.min(np.asarray(on_x)[6:]) > 0.05


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="sparsity k=6 must satisfy 1 <= k <= d=5"):
        T.sparse_linear(jax.random.key(0), 2, 3, 5, k=6)
    with pytest.raises(ValueError, match="covariance must be symmetric positive definite"):
        T.linear(jax.random.key(0), 2, 3, 2, covariance=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="needs d >= 1 and depth >= 1; got d=5, depth=0"):
        T.Representation(5, depth=0)
    with pytest.raises(ValueError, match="representation is 4-dimensional; the prompts have d=5"):
        T.representation_linear(jax.random.key(0), 2, 3, 5, representation=T.Representation(4, 1))


def test_sign_accuracy_scores_a_zero_prediction_as_a_coin_flip():
    ys = jnp.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    pred = jnp.array([[0.0, -2.0, -0.5], [0.0, 0.3, 4.0]])  # ties, right / wrong, wrong / right
    np.testing.assert_array_equal(B.sign_accuracy_curve(pred, ys), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(B.sign_accuracy_curve(B.zero_predict(None, ys), ys), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(B.sign_accuracy_curve(ys, ys), [1.0, 1.0, 1.0])


def test_error_curve_of_the_representation_task_has_the_oracle_that_knows_phi():
    import ml_collections

    from jaxformers.data import icl_curves, icl_functions

    cfg = ml_collections.ConfigDict(dict(name="icl_functions", task="representation", dim=4, num_points=10,
                                         depth=1, noise_std=0.1))
    xs, ys = icl_functions.curve_prompts(cfg, 64)
    preds = icl_curves.baseline_predictions(xs, ys, cfg)
    assert {"ols", "knn3", "averaging", "ols_phi", "bayes_ridge_phi"} <= set(preds)
    err = {k: np.asarray(B.squared_error_curve(p, ys, 4.0)) for k, p in preds.items()}
    # with n > d examples, ridge on Φ(x) is at the noise floor; least squares on x is not
    assert np.mean(err["bayes_ridge_phi"][6:]) < 0.02 < np.mean(err["ols"][6:])
