"""Pattention op (TokenFormer eq. 4, Θ of App. A): the oracles the layers and growth rely on."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf
from jax.test_util import check_grads

from jaxformers.ops.pattention import NORMS, default_tau, pattention, theta


def _inputs(n=16, d_in=8, d_out=12, seed=0, dtype=jnp.float32):
    kx, kk, kv = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (2, 5, d_in), dtype)
    keys = jax.random.normal(kk, (n, d_in), dtype) * 0.5
    values = jax.random.normal(kv, (n, d_out), dtype)
    return x, keys, values


def test_shapes_and_jit_equals_no_jit():
    x, keys, values = _inputs()
    for norm in NORMS:
        out = pattention(x, keys, values, norm=norm)
        chex.assert_shape(out, (2, 5, 12))
        jitted = jax.jit(lambda *a, norm=norm: pattention(*a, norm=norm))(x, keys, values)
        np.testing.assert_allclose(jitted, out, rtol=1e-6, atol=1e-6)


def test_softmax_variant_is_softmax_times_n():
    """exp(A) / ||exp(A)||_1 * n  ==  jax.nn.softmax(A) * n (float64: an algebraic identity)."""
    with jax.enable_x64(True):
        x, keys, values = _inputs(dtype=jnp.float64)
        scores = x @ keys.T
        np.testing.assert_allclose(theta(scores, norm="softmax"),
                                   jax.nn.softmax(scores, axis=-1) * 16, rtol=1e-12)
        np.testing.assert_allclose(pattention(x, keys, values, norm="softmax"),
                                   (jax.nn.softmax(scores, axis=-1) * 16) @ values, rtol=1e-12)


def test_l2_variants_follow_their_definitions():
    """l2_norm_gelu = GeLU(sqrt(n) A/||A||); gelu_l2_norm = sqrt(n) g/||g||, g = GeLU(A);
    GeLU is the exact erf form (PyTorch F.gelu in the released code)."""
    with jax.enable_x64(True):
        x, keys, _ = _inputs(dtype=jnp.float64)
        a = x @ keys.T
        gelu = lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2)))  # noqa: E731
        tau = np.sqrt(16)
        want = gelu(tau * a / jnp.linalg.norm(a, axis=-1, keepdims=True))
        np.testing.assert_allclose(theta(a, norm="l2_norm_gelu", eps=0.0), want, rtol=1e-12)
        g = gelu(a)
        want = tau * g / jnp.linalg.norm(g, axis=-1, keepdims=True)
        np.testing.assert_allclose(theta(a, norm="gelu_l2_norm", eps=0.0), want, rtol=1e-12)


def test_default_tau():
    assert default_tau("l2_norm_gelu", 64) == 8.0
    assert default_tau("gelu_l2_norm", 256) == 16.0
    assert default_tau("softmax", 64) == 64.0
    with pytest.raises(ValueError, match="norm='relu'"):
        default_tau("relu", 4)


@pytest.mark.parametrize("norm", NORMS)
def test_theta_gradients_match_finite_differences(norm):
    """check_grads (float64, forward and reverse mode) of Θ and of the whole op."""
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.PRNGKey(3), (3, 7), jnp.float64)
        check_grads(lambda s: theta(s, norm=norm), (a,), order=1, modes=("fwd", "rev"))
        x, keys, values = _inputs(dtype=jnp.float64)
        check_grads(lambda *args: pattention(*args, norm=norm), (x, keys, values), order=1,
                    modes=("rev",))


def test_l2_norm_gelu_jacobian_matches_the_closed_form():
    """dS_i/dA_j = GeLU'(z_i) τ (δ_ij / ||A|| - A_i A_j / ||A||^3), z = τ A / ||A||
    (the chain rule through the L2 normalisation, App. B eq. 25)."""
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.PRNGKey(4), (6,), jnp.float64)
        tau = 2.5
        jac = jax.jacobian(lambda s: theta(s, tau=tau, eps=0.0))(a)
        r = jnp.linalg.norm(a)
        z = tau * a / r
        gelu_prime = 0.5 * (1 + erf(z / np.sqrt(2))) + z * jnp.exp(-z * z / 2) / np.sqrt(2 * np.pi)
        want = gelu_prime[:, None] * tau * (jnp.eye(6) / r - jnp.outer(a, a) / r**3)
        np.testing.assert_allclose(jac, want, rtol=1e-10, atol=1e-12)


def test_zero_keys_give_zero_output_and_finite_gradients():
    """All-zero scores: the eps in the squared norm keeps Θ smooth (Wang et al. 2025)."""
    x, keys, values = _inputs()
    zero = jnp.zeros_like(keys)
    out = pattention(x, zero, values)
    np.testing.assert_array_equal(out, 0.0)
    grads = jax.grad(lambda k: jnp.sum(pattention(x, k, values) ** 2))(zero)
    assert np.all(np.isfinite(grads))


@pytest.mark.parametrize("norm", ["l2_norm_gelu", "gelu_l2_norm"])
def test_zero_key_tokens_preserve_output_only_with_frozen_tau(norm):
    """Appending m tokens with zero keys: same output with τ = sqrt(n) frozen; different with
    τ = sqrt(n + m) (the caveat of Wang et al. 2025). Tolerance 1e-6 relative: float32
    reassociation of the 16- vs 64-term sums moves outputs of size ~4 by a few ulp."""
    x, keys, values = _inputs(n=16)
    new_values = jax.random.normal(jax.random.PRNGKey(9), (48, 12))
    big_keys = jnp.concatenate([keys, jnp.zeros((48, 8))])
    big_values = jnp.concatenate([values, new_values])
    before = pattention(x, keys, values, norm=norm)
    frozen = pattention(x, big_keys, big_values, norm=norm, tau=default_tau(norm, 16))
    np.testing.assert_allclose(frozen, before, atol=1e-6, rtol=1e-6)
    recomputed = pattention(x, big_keys, big_values, norm=norm)
    assert np.max(np.abs(recomputed - before)) > 1e-2


def test_bad_shapes_name_the_argument():
    x, keys, values = _inputs()
    with pytest.raises(ValueError, match="value_tokens has 15"):
        pattention(x, keys, values[:15])
    with pytest.raises(ValueError, match="feature dim"):
        pattention(x[..., :4], keys, values)
    with pytest.raises(ValueError, match="norm='l1'"):
        pattention(x, keys, values, norm="l1")
