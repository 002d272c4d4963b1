"""Clipped softmax (Bondarenko et al. 2023 eq. 4.1) and the outlier statistics, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops import outliers
from jaxformers.ops.attention import clipped_softmax, dot_product_attention


def _definition(x, gamma, zeta):
    e = np.exp(x - x.max(-1, keepdims=True))
    return np.clip((zeta - gamma) * e / e.sum(-1, keepdims=True) + gamma, 0.0, 1.0)


def test_clipped_softmax_matches_definition_in_float64():
    x = np.random.default_rng(0).normal(size=(3, 7)) * 4
    with jax.enable_x64(True):
        for gamma, zeta in [(-0.025, 1.0), (-0.1, 1.2), (0.0, 1.5)]:
            got = clipped_softmax(jnp.asarray(x), gamma=gamma, zeta=zeta)
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(got), _definition(x, gamma, zeta), rtol=1e-13, atol=0)


def test_clipped_softmax_reaches_exact_zero_and_one_and_rows_need_not_sum_to_one():
    x = jnp.array([[10.0, 0.0, 0.0, 0.0], [0.3, 0.1, 0.0, -0.2]])
    with jax.enable_x64(True):
        p = np.asarray(clipped_softmax(x.astype(jnp.float64), gamma=-0.1, zeta=1.1))
    assert p[0, 0] == 1.0 and np.all(p[0, 1:] == 0.0)  # exact, with finite logits
    assert abs(p[1].sum() - 1.0) > 1e-3  # (zeta - gamma) p + gamma does not preserve the sum


def test_clipped_softmax_identity_parameters_are_softmax():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 9), jnp.float32)
    np.testing.assert_array_equal(clipped_softmax(x, gamma=0.0, zeta=1.0), jax.nn.softmax(x, -1))
    assert clipped_softmax(x.astype(jnp.bfloat16), gamma=-0.02, zeta=1.0).dtype == jnp.float32


@pytest.mark.parametrize("gamma,zeta", [(0.1, 1.0), (0.0, 0.9)])
def test_clipped_softmax_rejects_bad_parameters_in_one_line(gamma, zeta):
    with pytest.raises(ValueError, match="gamma <= 0 and zeta >= 1") as e:
        clipped_softmax(jnp.zeros((2, 3)), gamma=gamma, zeta=zeta)
    assert "\n" not in str(e.value)


def test_attention_with_clipped_softmax_matches_naive_causal_reference():
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(1), 3)
    with jax.enable_x64(True):
        q = jax.random.normal(kq, (1, 5, 2, 4), jnp.float64) * 3
        k = jax.random.normal(kk, (1, 5, 1, 4), jnp.float64) * 3
        v = jax.random.normal(kv, (1, 5, 1, 4), jnp.float64)
        out = dot_product_attention(q, k, v, causal=True, gamma=-0.05, zeta=1.0)
        s = np.einsum("bthd,bshd->bhts", np.asarray(q), np.repeat(np.asarray(k), 2, 2)) / 2.0
        s = np.where(np.tril(np.ones((5, 5), bool)), s, -np.inf)
        p = np.where(np.tril(np.ones((5, 5), bool)), _definition(s, -0.05, 1.0), 0.0)  # no leak to future
        want = np.einsum("bhts,bshd->bthd", p, np.repeat(np.asarray(v), 2, 2))
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12, atol=1e-12)


def test_kurtosis_and_inf_norm_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_t(df=3, size=(4, 16, 8))
    x[1, 3, 2] = 80.0  # one outlier: kurtosis in the hundreds
    flat = x.reshape(4, -1)
    c = flat - flat.mean(1, keepdims=True)
    want = (c**4).mean(1) / (flat.std(1, ddof=1) ** 4 + 1e-6)
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(outliers.kurtosis(jnp.asarray(x))), want, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(outliers.inf_norm(jnp.asarray(x))), np.abs(flat).max(1))
    assert want[1] > 100 > want[0]
    gauss = outliers.kurtosis(jnp.asarray(rng.normal(size=(2, 200_000)), jnp.float32))
    np.testing.assert_allclose(gauss, 3.0, atol=0.1)  # Pearson, not excess


def test_outlier_statistics_reject_unbatched_input():
    with pytest.raises(ValueError, match="at least 2 dims"):
        outliers.kurtosis(jnp.ones(5))


@pytest.mark.parametrize("gamma", [0.0, -0.05])
def test_attention_probabilities_reproduce_dot_product_attention_with_gqa(gamma):
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(3), 3)
    with jax.enable_x64(True):
        q = jax.random.normal(kq, (2, 6, 4, 8), jnp.float64) * 2
        k = jax.random.normal(kk, (2, 6, 2, 8), jnp.float64) * 2
        v = jax.random.normal(kv, (2, 6, 2, 8), jnp.float64)
        probs = outliers.attention_probabilities(q, k, gamma=gamma)
        assert probs.shape == (2, 4, 6, 6) and probs.dtype == jnp.float64
        assert np.all(np.asarray(probs)[:, :, np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0)
        mixed = jnp.einsum("bhts,bshd->bthd", probs, jnp.repeat(v, 2, axis=2))
        want = dot_product_attention(q, k, v, causal=True, gamma=gamma, zeta=1.0)
        np.testing.assert_allclose(np.asarray(mixed), np.asarray(want), rtol=1e-12, atol=1e-12)


def test_delimiter_attention_mass_per_head():
    t = 5
    is_delim = np.array([[True, False, False, True, False]])
    on_delims = np.zeros((1, 1, t, t))
    on_delims[0, 0, :, 0] = 1.0  # every query reads the first token, a delimiter: a no-op head
    uniform = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
    probs = np.concatenate([on_delims, uniform[None, None]], axis=1)
    mass = np.asarray(outliers.delimiter_attention_mass(jnp.asarray(probs), jnp.asarray(is_delim)))
    want_uniform = np.mean([(is_delim[0, : i + 1]).sum() / (i + 1) for i in range(t)])
    np.testing.assert_allclose(mass, [1.0, want_uniform], rtol=1e-6)
    with pytest.raises(ValueError, match="is_delimiter") as e:
        outliers.delimiter_attention_mass(jnp.asarray(probs), jnp.asarray(is_delim[:, :3]))
    assert "\n" not in str(e.value)


def test_uniform_attention_spreads_over_the_masked_keys_even_where_clipped_softmax_gives_zero():
    seg = np.array([[0, 0, 0, 1, 1, 1]])
    got = np.asarray(outliers.uniform_attention(1, 6, segment_ids=jnp.asarray(seg)))
    visible = np.tril(np.ones((6, 6), bool)) & (seg[0][:, None] == seg[0][None, :])
    np.testing.assert_allclose(got[0, 0], visible / visible.sum(-1, keepdims=True), rtol=1e-6)
    x = jax.random.normal(jax.random.PRNGKey(4), (1, 6, 1, 4)) * 4
    clipped = np.asarray(outliers.attention_probabilities(x, x, segment_ids=jnp.asarray(seg), gamma=-0.3))
    assert np.sum((clipped[0, 0] == 0) & visible) > 0  # so probs > 0 would undercount visible keys
    causal = np.asarray(outliers.uniform_attention(2, 5))
    assert causal.shape == (2, 1, 5, 5)
    np.testing.assert_allclose(causal[1, 0], np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None], rtol=1e-6)
