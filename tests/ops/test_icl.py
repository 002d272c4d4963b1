"""Claims about the in-context-regression baselines (ops/icl.py) and the LSA op."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops import icl, lsa

NONISO = (1.0, 1.0, 0.25, 0.0625, 1.0)


def test_closed_forms_match_the_papers():
    # ZFB isotropic: ½ d(d+1)/(N+d+1); d=5, N=20 -> 0.5769
    assert icl.lsa_optimal_loss(None, 5, 20) == pytest.approx(0.5 * 30 / 26, rel=1e-12)
    assert icl.lsa_optimal_loss(NONISO, 5, 20) == pytest.approx(0.34088, abs=1e-5)
    gamma_inv = np.diag(np.linalg.inv(icl.lsa_gamma(NONISO, 5, 20)))
    np.testing.assert_allclose(gamma_inv, [0.82262, 0.82262, 2.33577, 4.32432, 0.82262],
                               atol=1e-5)  # 1 / (1.05 λ + 3.3125 / 20)
    # vO setting, x ~ U(-0.5, 0.5), d = N = 10: eta* = 6.06, loss 0.2062
    eta, loss = icl.gd_optimal_rate_independent(10, 10, *icl.uniform_moments(0.5))
    assert eta == pytest.approx(6.0606, abs=1e-4) and loss == pytest.approx(0.20623, abs=1e-5)
    # isotropic Gaussian: the LSA optimum is one plain GD step (sigma² = 1, mu4 = 3)
    _, gd_loss = icl.gd_optimal_rate_independent(5, 20, 1.0, 3.0)
    assert gd_loss == pytest.approx(icl.lsa_optimal_loss(None, 5, 20), rel=1e-12)


@pytest.fixture(scope="module")
def noniso_tasks():
    t = icl.sample_tasks(jax.random.PRNGKey(0), 40_000, 5, 20, covariance=NONISO)
    return t["x"], t["y"]


def test_monte_carlo_agrees_with_closed_forms(noniso_tasks):
    x, y = noniso_tasks
    res = icl.baselines(x, y, covariance=NONISO, gd_steps=(1, 2))
    # 40k tasks: s.e. of a ½-MSE around 0.35 is ~0.003; 4% is > 4 s.e.
    assert res["preconditioned_gd"] == pytest.approx(0.3409, rel=0.04)
    assert res["gd1"] == pytest.approx(0.3768, rel=0.04)
    assert res["zero"] == pytest.approx(0.5 * sum(NONISO), rel=0.04)
    assert res["gd2"] < res["gd1"] and res["ols"] < 1e-6 and res["ridge"] < 1e-4


def test_fitted_one_layer_predictor_is_gamma_inverse(noniso_tasks):
    x, y = noniso_tasks
    fitted = np.asarray(icl.fit_preconditioner(x, y))
    gamma_inv = np.linalg.inv(icl.lsa_gamma(NONISO, 5, 20))
    rel = np.linalg.norm(fitted - gamma_inv) / np.linalg.norm(gamma_inv)
    # 25 coefficients from 40k tasks: the λ = 1/16 direction's coefficient has a standard error
    # of ~3% (its features are 16x smaller), so 10% in Frobenius norm is ~3 s.e.
    assert rel < 0.10, (rel, np.diag(fitted))


def test_gd_weight_construction_is_one_gd_step():
    t = icl.sample_tasks(jax.random.PRNGKey(1), 256, 10, 10, x_dist="uniform", x_range=0.5)
    x, y = t["x"], t["y"]
    lr = 6.06
    tokens = icl.to_tokens(x, y)
    out = lsa.linear_self_attention(tokens, lsa.gd_lsa_params(10, lr, 10))
    np.testing.assert_allclose(-out[:, -1, -1], icl.gd_predict(x, y, lr), rtol=1e-5, atol=1e-6)
    # context tokens' y-slots become the residual targets y_j - Δw·x_j (vO §3)
    dw = lr * jnp.einsum("bnd,bn->bd", x[:, :-1], y[:, :-1]) / 10
    np.testing.assert_allclose(out[:, :-1, -1], y[:, :-1] - jnp.einsum("bnd,bd->bn", x[:, :-1], dw),
                               rtol=1e-5, atol=1e-5)


def test_merged_lsa_is_preconditioned_gd():
    t = icl.sample_tasks(jax.random.PRNGKey(2), 128, 5, 20)
    a = jnp.asarray(np.random.default_rng(0).normal(size=(5, 5)), jnp.float32)
    kq = jnp.zeros((6, 6)).at[:5, :5].set(a.T)
    pv = jnp.zeros((6, 6)).at[5, 5].set(1.0)
    out = lsa.linear_self_attention(icl.to_tokens(t["x"], t["y"]), {"kq": kq, "pv": pv},
                                   normalize_by_context=True)
    np.testing.assert_allclose(out[:, -1, -1], icl.gd_predict(t["x"], t["y"], 1.0, 1, a),
                               rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="x_dist"):
        icl.sample_tasks(jax.random.PRNGKey(0), 2, 3, 4, x_dist="cauchy")
    with pytest.raises(ValueError, match="covariance"):
        icl.sample_tasks(jax.random.PRNGKey(0), 2, 3, 4, covariance=(1.0, 2.0))
    with pytest.raises(ValueError, match="params must have keys"):
        lsa.linear_self_attention(jnp.zeros((1, 3, 4)), {"w": jnp.eye(4)})
