"""Pallas flash attention (interpret mode on CPU) equals ops.attention in values and gradients.

Tolerances: float32 kernels vs the float32 reference differ only by summation order (online
softmax, tiled dQ/dK/dV), so 1e-5 relative to the largest entry. bfloat16: the kernel must be at
least as close to the float32 answer as the reference run in bfloat16 is (plus 2x slack for a
different rounding path).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.kernels import flash_attention as fa
from jaxformers.kernels.backend import KernelOptions
from jaxformers.ops.attention import dot_product_attention


def _inputs(b, t, h, kvh, d, dtype=np.float32, seed=0, s=None):
    """Drawn in numpy: jax.random compiles its sampler at every new shape."""
    rng = np.random.default_rng(seed)
    s = t if s is None else s
    shapes = ((b, t, h, d), (b, s, kvh, d), (b, s, kvh, d), (b, t, h, d))
    return tuple(rng.standard_normal(shape, np.float32).astype(dtype) for shape in shapes)


@functools.partial(jax.jit, static_argnames=("fn",))
def _value_and_grads(fn, q, k, v, do):
    out, vjp = jax.vjp(fn, q, k, v)
    return out, vjp(do.astype(out.dtype))


def _rel(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


CASES = {  # name: (b, t, h, kvh, d, causal, segments, block_q, block_kv, sequential_grid)
    # GPU driver (in-kernel loop over blocks)
    "causal_gqa_ragged": (2, 40, 4, 2, 32, True, False, 16, 16, False),
    # TPU driver (block axis in the grid, statistics in VMEM scratch)
    "noncausal_segments_ragged_uneven_blocks_tpu_driver": (1, 37, 2, 1, 16, False, True, 16, 32,
                                                           True),
    "causal_segments_mqa_tpu_driver": (1, 64, 4, 1, 64, True, True, 32, 16, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_all_gradients_equal_reference_float32(name):
    b, t, h, kvh, d, causal, segments, bq, bkv, seq = CASES[name]
    q, k, v, do = _inputs(b, t, h, kvh, d)
    seg = np.broadcast_to(np.arange(t, dtype=np.int32) // 13, (b, t)) if segments else None
    kernel = functools.partial(fa.flash_attention, causal=causal, segment_ids=seg, block_q=bq,
                               block_kv=bkv, impl="pallas",
                               options=KernelOptions(sequential_grid=seq))
    ref = functools.partial(dot_product_attention, causal=causal, segment_ids=seg)
    out, grads = _value_and_grads(kernel, q, k, v, do)
    ref_out, ref_grads = _value_and_grads(ref, q, k, v, do)
    assert _rel(out, ref_out) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-5


def test_bfloat16_within_the_references_own_bfloat16_error():
    q, k, v, do = _inputs(1, 48, 2, 2, 32)
    kernel = functools.partial(fa.flash_attention, causal=True, block_q=16, block_kv=16,
                               impl="pallas")
    ref = functools.partial(dot_product_attention, causal=True)
    exact_out, exact_grads = _value_and_grads(ref, q, k, v, do)
    bf = [x.astype(jnp.bfloat16) for x in (q, k, v, do)]
    out, grads = _value_and_grads(kernel, *bf)
    ref_out, ref_grads = _value_and_grads(ref, *bf)
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    assert _rel(out, exact_out) <= 2 * _rel(ref_out, exact_out)
    for got, ref_bf, exact in zip(grads, ref_grads, exact_grads):
        assert _rel(got, exact) <= 2 * _rel(ref_bf, exact)


def test_large_logits_stay_finite_and_match():
    q, k, v, do = _inputs(1, 32, 1, 1, 16)
    q = q * 300.0  # scores ~ 1e3: exp overflows without the running max
    kernel = functools.partial(fa.flash_attention, causal=True, block_q=16, block_kv=16,
                               impl="pallas")
    out, grads = _value_and_grads(kernel, q, k, v, do)
    ref_out, _ = _value_and_grads(functools.partial(dot_product_attention, causal=True),
                                  q, k, v, do)
    assert all(bool(np.isfinite(x).all()) for x in (out, *grads))
    assert _rel(out, ref_out) < 1e-5


@pytest.mark.parametrize("sequential_grid", [False, True])
def test_interpreter_poisons_outputs_so_every_element_must_be_written(sequential_grid):
    """The CPU interpreter starts every output buffer as NaN; a kernel that skips an element
    (e.g. a padded row or a causal block it never visits) leaves a NaN behind. The raw kernel
    outputs - O and the LSE on padded lengths, dQ, dK, dV - are all finite."""
    from jax.experimental import pallas as pl

    def half_kernel(o_ref):
        o_ref[:4, :] = jnp.zeros((4, 128), jnp.float32)

    poisoned = pl.pallas_call(half_kernel, out_shape=jax.ShapeDtypeStruct((8, 128), jnp.float32),
                              interpret=True)()
    assert bool(jnp.isnan(poisoned[4:]).all())  # the claim the test relies on

    b, t, h, d = 1, 40, 2, 16
    q, k, v, do = _inputs(b, t, h, 1, d)
    st = fa._Static(causal=True, scale=d**-0.5, block_q=16, block_kv=32, q_len=48, kv_len=64,
                    kv_valid=t, group=2, grid_carry=sequential_grid)
    to = lambda x, n: np.pad(x, ((0, 0), (0, n - t), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
    qp, kp, vp, dop = to(q, 48), to(k, 64), to(v, 64), to(do, 48)
    out, lse = fa._forward(qp, kp, vp, None, None, st)
    grads = fa._backward(qp, kp, vp, None, None, out, lse, dop, st)
    for x in (out, lse, *grads):
        assert bool(np.isfinite(x).all())


def test_auto_is_xla_on_cpu_and_pallas_runs_interpreted():
    q, k, v, _ = _inputs(1, 16, 2, 2, 16)
    # Jitted (eagerly, every op would compile on its own): one XLA program each, bit-identical.
    auto = jax.jit(functools.partial(fa.flash_attention, causal=True, impl="auto"))(q, k, v)
    ref = jax.jit(functools.partial(dot_product_attention, causal=True))(q, k, v)
    np.testing.assert_array_equal(auto, ref)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(block_q=48), "block_q"),
        (dict(block_kv=4), "block_kv"),
        (dict(impl="cuda"), "impl"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, match):
    q, k, v, _ = _inputs(1, 16, 2, 2, 16)
    with pytest.raises(ValueError, match=match):
        fa.flash_attention(q, k, v, causal=True, **{"impl": "pallas", **kwargs})


def test_bad_shapes_and_dtypes_raise_before_tracing():
    q, k, v, _ = _inputs(1, 16, 3, 2, 16)
    with pytest.raises(ValueError, match="multiple of k/v heads"):
        fa.flash_attention(q, k, v, causal=True, impl="pallas")
    q, k, v, _ = _inputs(1, 16, 2, 2, 16)
    with pytest.raises(ValueError, match="dtype"):
        fa.flash_attention(q.astype(jnp.int32), k, v, causal=True, impl="pallas")
    with pytest.raises(ValueError, match="head_dim"):
        big = jnp.zeros((1, 8, 1, 512))
        fa.flash_attention(big, big, big, causal=True, impl="pallas")
    with pytest.raises(ValueError, match="segment_ids"):
        fa.flash_attention(q, k, v, causal=True, segment_ids=jnp.zeros((1, 15), jnp.int32),
                           impl="pallas")


def test_runs_per_shard_under_shard_map_for_multi_device_meshes():
    """Pallas calls carry no sharding rule, so on a mesh the kernel runs per shard inside
    jax.shard_map (check_vma=False, no GSPMD rule for a pallas_call); values and gradients still match."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((2,), ("data",))
    q, k, v, do = _inputs(2, 32, 2, 1, 16)
    spec = P("data")
    kernel = jax.shard_map(
        functools.partial(fa.flash_attention, causal=True, block_q=16, block_kv=16,
                          impl="pallas"),
        mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)
    args = [jax.device_put(x, NamedSharding(mesh, spec)) for x in (q, k, v, do)]
    out, grads = _value_and_grads(kernel, *args)
    ref_out, ref_grads = _value_and_grads(
        functools.partial(dot_product_attention, causal=True), q, k, v, do)
    assert _rel(out, ref_out) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5
