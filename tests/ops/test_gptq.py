"""ops.gptq: GPTQ (Frantar et al. 2023) against its definition, RTN and qwix's reference loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops import gptq


def _weights_and_inputs(rows=8, cols=32, n=256, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, cols)).astype(np.float32)
    mix = rng.normal(size=(cols, cols)) * np.logspace(0, -2, cols)  # anisotropic, correlated inputs
    x = (mix @ rng.normal(size=(cols, n))).astype(np.float32)
    return jnp.asarray(w), jnp.asarray(x)


@pytest.mark.parametrize("bits", [3, 4])
def test_rtn_is_within_half_a_step_per_row(bits):
    w, _ = _weights_and_inputs()
    q, scale = gptq.rtn(w, bits)
    assert q.min() >= -(2 ** (bits - 1)) and q.max() <= 2 ** (bits - 1) - 1
    bound = np.broadcast_to(0.5 * np.asarray(scale) * (1 + 1e-5), w.shape)
    np.testing.assert_array_less(np.abs(w - q * scale), bound)


def test_gptq_with_identity_hessian_is_round_to_nearest():
    # H = I: U = I, so no error is spread and every column is rounded on its own (OBQ eq. 3).
    w, _ = _weights_and_inputs()
    q, scale = gptq.gptq(w, jnp.eye(w.shape[1]), 4, damping=0.0)
    q_rtn, scale_rtn = gptq.rtn(w, 4)
    np.testing.assert_allclose(scale, scale_rtn, rtol=1e-6)
    ratio = np.asarray(w / scale_rtn)
    tie = np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) < 1e-4  # w/s on a rounding boundary
    np.testing.assert_array_equal(np.where(tie, 0, q), np.where(tie, 0, q_rtn))


def test_gptq_lowers_output_error_on_correlated_inputs():
    # The objective GPTQ minimises: ||W X - Q X||^2 (§3); RTN ignores X.
    w, x = _weights_and_inputs()
    errors = {}
    for name, (q, scale) in {"gptq": gptq.gptq(w, x @ x.T, 3), "rtn": gptq.rtn(w, 3)}.items():
        errors[name] = float(jnp.sum((w @ x - (q * scale) @ x) ** 2))
    assert errors["gptq"] < 0.7 * errors["rtn"], errors


def test_gptq_matches_qwix_reference_loop():
    qwix = pytest.importorskip("qwix")
    from qwix._src.core.qarray import HowToQuantize
    from qwix.contrib import gptq_core

    w, x = _weights_and_inputs(rows=4, cols=8, n=32)
    how = HowToQuantize(qtype="int4", channelwise_axes=[0], tiled_axes={}, calibration_method="absmax")
    reference = jax.jit(lambda w, h: gptq_core.quantize_weight(w, h, how, blocksize=4, percdamp=0.01)[0])
    ref = reference(w, x @ x.T)  # 2 lazy blocks of 4 columns
    q, scale = jax.jit(lambda w, h: gptq.gptq(w, h, 4))(w, x @ x.T)
    np.testing.assert_allclose(q * scale, qwix.dequantize(ref), rtol=1e-4, atol=1e-5)


def test_gptq_rejects_a_hessian_of_the_wrong_size():
    with pytest.raises(ValueError, match="does not match weight"):
        gptq.gptq(jnp.ones((4, 8)), jnp.eye(4), 4)
