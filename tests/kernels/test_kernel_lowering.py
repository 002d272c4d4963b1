"""The kernels lower for real hardware, checked on a CPU machine.

Interpret mode accepts kernels that Mosaic (TPU) or Triton (GPU) reject: a cumsum inside a TPU
kernel, value slices under Triton, blocks not aligned to (8, 128). Here every kernel, forward and
backward, is lowered at production shapes (head dim 128, T = 2048, bfloat16) under an abstract
TPU v5e / H100 device with `jax.jit(f).trace(...).lower(lowering_platforms=...)`. This checks the Pallas-level
lowering (each kernel becomes one `tpu_custom_call` / Triton custom call); the final Mosaic/PTX
compilation runs only on the device, so it is a strong smoke test, not a guarantee.
"""

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import pallas as pl
from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

from jaxformers.kernels import backend
from jaxformers.kernels.flash_attention import flash_attention
from jaxformers.kernels.gla import gla

DEVICES = {
    "tpu": AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu"),
    "cuda": AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=132, platform="gpu"),
}
CUSTOM_CALL = {"tpu": "tpu_custom_call", "cuda": "xla.gpu.triton"}  # Triton, not Mosaic GPU
B, T, H, KV_HEADS, D = 1, 2048, 8, 2, 128


def _lower(platform, fn, *args):
    mesh = AbstractMesh((1,), ("x",), abstract_device=DEVICES[platform])
    with use_abstract_mesh(mesh):
        assert backend.target_platform() == ("gpu" if platform == "cuda" else "tpu")
        return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()


def _sds(*shape, dtype=jnp.bfloat16):
    return jax.ShapeDtypeStruct(shape, dtype)


def _sum(x):
    return jnp.sum(x.astype(jnp.float32))


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
@pytest.mark.parametrize("segments", [False, True])
def test_flash_attention_forward_and_backward_lower(platform, segments):
    q, kv = _sds(B, T, H, D), _sds(B, T, KV_HEADS, D)
    seg = _sds(B, T, dtype=jnp.int32)

    def fwd(q, k, v, seg):
        return flash_attention(q, k, v, causal=True, segment_ids=seg if segments else None,
                               impl="pallas")

    text = _lower(platform, fwd, q, kv, kv, seg)
    assert CUSTOM_CALL[platform] in text
    grad = jax.grad(lambda *a: _sum(fwd(*a)), argnums=(0, 1, 2))
    text = _lower(platform, grad, q, kv, kv, seg)
    assert text.count(CUSTOM_CALL[platform]) >= 3  # forward, dQ, dK/dV kernels


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
@pytest.mark.parametrize("segments", [False, True])
def test_gla_forward_and_backward_lower(platform, segments):
    x, s0 = _sds(B, T, H // 2, D), _sds(B, H // 2, D, D, dtype=jnp.float32)
    seg = _sds(B, T, dtype=jnp.int32)

    def fwd(q, k, v, g, s0, seg):
        return gla(q, k, v, g, chunk_size=64, initial_state=s0, impl="pallas",
                   segment_ids=seg if segments else None)

    text = _lower(platform, fwd, x, x, x, x, s0, seg)
    assert CUSTOM_CALL[platform] in text
    grad = jax.grad(lambda *a: _sum(fwd(*a)[0]) + _sum(fwd(*a)[1]), argnums=(0, 1, 2, 3, 4))
    text = _lower(platform, grad, x, x, x, x, s0, seg)
    assert "gla_bwd" in text and CUSTOM_CALL[platform] in text


def test_tpu_loop_drivers_lower_too():
    """sequential_grid=False on TPU (whole sequence per program) is a supported option as well."""
    opts = backend.KernelOptions(sequential_grid=False)
    q, kv = _sds(B, T, H, D), _sds(B, T, KV_HEADS, D)
    flash = jax.grad(lambda q, k, v: _sum(flash_attention(q, k, v, causal=True, impl="pallas",
                                                          options=opts)), argnums=(0, 1, 2))
    assert CUSTOM_CALL["tpu"] in _lower("tpu", flash, q, kv, kv)
    x = _sds(B, T, H // 2, D)
    linear = jax.grad(lambda q, k, v, g: _sum(gla(q, k, v, g, impl="pallas", options=opts)[0]),
                      argnums=(0, 1, 2, 3))
    assert CUSTOM_CALL["tpu"] in _lower("tpu", linear, x, x, x, x)


def test_tpu_rejects_lane_blocks_that_are_not_multiples_of_128():
    q = _sds(B, T, H, D)
    with pytest.raises(ValueError, match="block_q"):
        _lower("tpu", lambda q: flash_attention(q, q, q, causal=True, block_q=64,
                                                impl="pallas"), q)


def test_the_check_has_teeth_cumsum_inside_a_tpu_kernel_is_rejected():
    """The failure the notes measured: interpret mode runs this kernel, Mosaic refuses it."""

    def kernel(x_ref, o_ref):
        o_ref[...] = jnp.cumsum(x_ref[...], axis=0)

    def fn(x):
        return pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                              **backend.pallas_params(0))(x)

    x = jnp.ones((8, 128), jnp.float32)
    assert bool((fn(x)[-1] == 8.0).all())  # interpret mode (CPU) accepts it
    with pytest.raises(Exception, match="cumsum"):
        _lower("tpu", fn, x)


def test_gpu_compiler_params_are_triton_and_tpu_params_are_mosaic():
    for platform, name in (("tpu", "CompilerParams"), ("cuda", "CompilerParams")):
        with use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=DEVICES[platform])):
            params = backend.pallas_params(3)
        assert params["interpret"] is False and type(params["compiler_params"]).__name__ == name
        module = type(params["compiler_params"]).__module__
        assert ("mosaic" in module) if platform == "tpu" else ("triton" in module)
    assert backend.pallas_params(3) == {"interpret": True}  # CPU
