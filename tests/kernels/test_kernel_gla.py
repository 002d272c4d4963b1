"""Pallas chunked GLA (interpret mode on CPU) equals the ops/ references in values and gradients.

The oracle is `gla_recurrent` (the token-by-token definition) for float32; the kernel differs
only by summation order, so 1e-5 relative to the largest entry. Gradients cover q, k, v, the gate
log_alpha and the initial state, through both outputs (out and final_state). Packed documents
(segment_ids) are checked the same way against the recurrence with its state resets.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.kernels import gla as gla_kernel
from jaxformers.kernels.backend import KernelOptions
from jaxformers.ops.linear_attention import gla_chunked, gla_recurrent


def _inputs(b, t, h, dk, dv, *, gate_scale, init, dtype=np.float32, seed=0):
    """Drawn in numpy: jax.random compiles its sampler at every new shape."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.standard_normal(shape, np.float32)

    q, k = (normal(b, t, h, dk).astype(dtype) for _ in range(2))
    v = normal(b, t, h, dv).astype(dtype)
    g = (-np.logaddexp(0.0, -normal(b, t, h, dk)) * gate_scale).astype(dtype)  # log_sigmoid
    s0 = normal(b, h, dk, dv) if init else None
    do, ds = normal(b, t, h, dv).astype(dtype), normal(b, h, dk, dv)
    return (q, k, v, g, s0), (do, ds)


@functools.partial(jax.jit, static_argnames=("fn",))
def _value_and_grads(fn, args, cotangents):
    out, vjp = jax.vjp(fn, *args)
    do, ds = cotangents
    return out, vjp((do.astype(out[0].dtype), ds.astype(out[1].dtype)))


def _rel(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


CASES = {  # name: (b, t, h, dk, dv, chunk, gate_scale, init, block_v, sequential_grid)
    # weak gates (alpha ~ 0.96, the fla init), two sub-chunks per chunk, ragged T, two value
    # tiles; the TPU driver (chunk axis in the grid, state in scratch)
    "weak_gate_ragged_two_value_tiles_tpu_driver": (1, 45, 2, 16, 32, 32, 1 / 16, True, 16, True),
    # strong gates (log alpha down to ~ -15 per token), odd head dims padded to 16; GPU driver
    "strong_gate_padded_dims_initial_state": (2, 32, 1, 12, 20, 16, 5.0, True, 128, False),
    # no initial state, one chunk of four sub-chunks; TPU driver
    "no_initial_state_four_sub_chunks_tpu_driver": (1, 64, 1, 16, 16, 64, 1.0, False, 128, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_all_gradients_equal_recurrence_float32(name):
    b, t, h, dk, dv, chunk, gate_scale, init, bv, seq = CASES[name]
    options = KernelOptions(sequential_grid=seq)
    args, cts = _inputs(b, t, h, dk, dv, gate_scale=gate_scale, init=init)
    if not init:
        args, cts = args[:4], cts

    def kernel(*a):
        return gla_kernel.gla(*a[:4], initial_state=a[4] if init else None, chunk_size=chunk,
                              impl="pallas", block_v=bv, options=options)

    def ref(*a):
        return gla_recurrent(*a[:4], initial_state=a[4] if init else None)

    (out, final), grads = _value_and_grads(kernel, args, cts)
    (ref_out, ref_final), ref_grads = _value_and_grads(ref, args, cts)
    assert final.dtype == jnp.float32 and final.shape == ref_final.shape
    assert _rel(out, ref_out) < 1e-5
    assert _rel(final, ref_final) < 1e-5
    assert len(grads) == len(args)
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-5


def _packed(b, t, starts):
    """[b, t] segment ids: row i's documents begin at starts[i] (ids need not start at 0)."""
    ids = np.zeros((b, t), np.int32)
    for i, row in enumerate(starts):
        ids[i, list(row)] = 1
    return jnp.asarray(np.cumsum(ids, axis=1) + 7)


@pytest.mark.parametrize("sequential_grid", [False, True], ids=["gpu_driver", "tpu_driver"])
def test_packed_documents_values_and_all_gradients_equal_recurrence_with_resets(sequential_grid):
    """Boundaries inside sub-chunks, on a chunk's first row, two in one sub-chunk, a document of
    one token, a chunk entirely inside one document; an initial state for the first document;
    ragged T and two value tiles."""
    b, t, h, dk, dv, chunk = 2, 45, 2, 16, 32, 32
    segment_ids = _packed(b, t, [(5, 20, 21, 32, 40), (16, 17)])
    args, cts = _inputs(b, t, h, dk, dv, gate_scale=1.0, init=True, seed=1)

    def kernel(*a):
        return gla_kernel.gla(*a[:4], initial_state=a[4], segment_ids=segment_ids,
                              chunk_size=chunk, impl="pallas", block_v=16,
                              options=KernelOptions(sequential_grid=sequential_grid))

    def ref(*a):
        return gla_recurrent(*a[:4], initial_state=a[4], segment_ids=segment_ids)

    (out, final), grads = _value_and_grads(kernel, args, cts)
    (ref_out, ref_final), ref_grads = _value_and_grads(ref, args, cts)
    assert _rel(out, ref_out) < 1e-5 and _rel(final, ref_final) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5
    unpacked = jax.jit(gla_recurrent)(*args[:4], initial_state=args[4])[0]
    assert _rel(out, unpacked) > 0.1  # the resets matter: the test can fail


def test_bfloat16_within_the_references_own_bfloat16_error():
    args, cts = _inputs(1, 32, 1, 16, 16, gate_scale=1.0, init=False)
    exact = functools.partial(gla_recurrent)
    (exact_out, _), exact_grads = _value_and_grads(exact, args[:4], cts)
    bf = tuple(x.astype(jnp.bfloat16) for x in args[:4])
    kernel = functools.partial(gla_kernel.gla, chunk_size=16, impl="pallas")
    ref = functools.partial(gla_chunked, chunk_size=16)
    (out, _), grads = _value_and_grads(kernel, bf, cts)
    (ref_out, _), ref_grads = _value_and_grads(ref, bf, cts)
    assert out.dtype == jnp.bfloat16
    assert _rel(out, exact_out) <= 2 * _rel(ref_out, exact_out)
    for got, ref_bf, want in zip(grads, ref_grads, exact_grads):
        assert _rel(got, want) <= 2 * _rel(ref_bf, want)


def test_very_strong_decay_has_no_nan_and_matches():
    """log alpha = -40 per token: any positive exponent (an anchor on the diagonal block) would be
    exp(40 * 15) = inf in fp32; the kernel's exponents are all <= 0.

    Oracle: gla_chunked, the same cumulative-gate arithmetic in XLA. Against a float64 recurrence
    both are off by ~1.6e-5: the within-chunk cumulative gate reaches ~-800, where one fp32 ulp is
    6e-5, so differences L_r - L_j of nearby tokens carry that absolute error (a property of the
    chunked form, not of the kernel; the token-by-token recurrence is at 1.4e-7)."""
    args, cts = _inputs(1, 32, 1, 16, 16, gate_scale=1.0, init=True)
    q, k, v, _, s0 = args
    g = np.full(q.shape, -40.0, np.float32)
    g[:, ::3] = -1e-3
    fn = functools.partial(gla_kernel.gla, chunk_size=32, impl="pallas")
    (out, final), grads = _value_and_grads(
        lambda *a: fn(*a[:4], initial_state=a[4]), (q, k, v, g, s0), cts)
    (ref_out, ref_final), _ = _value_and_grads(
        lambda *a: gla_chunked(*a[:4], initial_state=a[4], chunk_size=32), (q, k, v, g, s0), cts)
    assert all(bool(np.isfinite(x).all()) for x in (out, final, *grads))
    assert _rel(out, ref_out) < 1e-5 and _rel(final, ref_final) < 1e-5


@pytest.mark.parametrize("sequential_grid", [False, True])
def test_every_raw_kernel_output_is_written(sequential_grid):
    """The CPU interpreter fills output buffers with NaN (see test_kernel_flash_attention); all raw
    outputs of both kernels, including per-chunk states, partial gradients and the outputs the
    TPU driver writes only at its last grid step, are finite."""
    b, h, t, dk, dv, c = 1, 1, 32, 16, 32, 16
    st = gla_kernel._Static(chunk=c, scale=0.25, block_v=16, num_chunks=t // c,
                            grid_carry=sequential_grid)
    rng = np.random.default_rng(3)  # numpy: jax.random compiles its sampler at every shape
    q, k = (rng.standard_normal((b, h, t, dk), np.float32) for _ in range(2))
    v = rng.standard_normal((b, h, t, dv), np.float32)
    g = -rng.uniform(size=(b, h, t // c, c, dk)).astype(np.float32)
    cum = np.cumsum(g, axis=3)
    gam, cum = cum[:, :, :, -1:], cum.reshape(b, h, t, dk)
    s0 = np.zeros((b, h, dv, dk), np.float32)
    out, sfin, states = gla_kernel._forward(q, k, v, cum, gam, s0, None, None, st)
    grads = gla_kernel._backward(q, k, v, cum, gam, None, None, states, sfin, v, s0 + 1.0, st)
    for x in (out, sfin, states, *grads):
        assert bool(np.isfinite(x).all())


def test_auto_is_xla_on_cpu():
    args, _ = _inputs(1, 16, 1, 8, 8, gate_scale=1.0, init=False)
    # Jitted (eagerly, every op would compile on its own): one XLA program each, bit-identical.
    out, final = jax.jit(functools.partial(gla_kernel.gla, chunk_size=16, impl="auto"))(*args[:4])
    ref_out, ref_final = jax.jit(functools.partial(gla_chunked, chunk_size=16))(*args[:4])
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(final, ref_final)


def test_bad_input_raises_naming_the_argument():
    args, _ = _inputs(1, 16, 1, 8, 8, gate_scale=1.0, init=False)
    with pytest.raises(ValueError, match="chunk_size"):
        gla_kernel.gla(*args[:4], chunk_size=8, impl="auto")  # the kernel's rule, checked on CPU
    with pytest.raises(ValueError, match="block_v"):
        gla_kernel.gla(*args[:4], block_v=24, impl="pallas")
    with pytest.raises(ValueError, match="initial_state"):
        gla_kernel.gla(*args[:4], initial_state=jnp.zeros((1, 1, 8, 9)), impl="pallas")
    with pytest.raises(ValueError, match="log_alpha"):
        gla_kernel.gla(*args[:3], args[3][..., :4], impl="pallas")
    with pytest.raises(ValueError, match="dtype"):
        gla_kernel.gla(*args[:3], args[3].astype(jnp.int32), impl="pallas")
    with pytest.raises(ValueError, match=r"segment_ids must be \[batch, time\]"):
        gla_kernel.gla(*args[:4], segment_ids=jnp.zeros((1, 15), jnp.int32), impl="pallas")
    with pytest.raises(ValueError, match="segment_ids must be integers"):
        gla_kernel.gla(*args[:4], segment_ids=jnp.zeros((1, 16)), impl="pallas")
    with pytest.raises(ValueError, match="key dim"):
        big = jnp.zeros((1, 16, 1, 512))
        gla_kernel.gla(big, big, big, big, impl="pallas")
