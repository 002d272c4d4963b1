"""The backend switch: impl resolution, target platform, TPU VMEM sizing, input checks."""

import jax.numpy as jnp
import pytest
from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

from jaxformers.kernels import backend


def test_auto_resolves_to_xla_on_cpu_and_pallas_on_accelerators():
    assert backend.target_platform() == "cpu"
    assert backend.resolve_impl("auto") == "xla"
    assert backend.resolve_impl("pallas") == "pallas" and backend.resolve_impl("xla") == "xla"
    tpu = AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    with use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=tpu)):
        assert backend.target_platform() == "tpu" and backend.resolve_impl("auto") == "pallas"
    with pytest.raises(ValueError, match="impl"):
        backend.resolve_impl("triton")


def test_tpu_vmem_limit_grows_with_the_blocks_and_is_capped():
    opts = backend.KernelOptions()
    assert backend.tpu_vmem_limit(1 << 20, opts) is None  # fits the 16 MiB default
    assert backend.tpu_vmem_limit(10 << 20, opts) == 24 << 20
    assert backend.tpu_vmem_limit(1 << 30, opts) == 64 << 20
    assert backend.tpu_vmem_limit(1 << 30, backend.KernelOptions(vmem_limit_bytes=5)) == 5
    assert backend.block_bytes(((None, 128, 64), jnp.bfloat16), ((8, 128), jnp.float32)) == (
        128 * 64 * 2 + 8 * 128 * 4)


@pytest.mark.parametrize("block", [0, 4, 12, 96, 128.0])
def test_blocks_must_be_powers_of_two_at_least_8(block):
    with pytest.raises(ValueError, match="block_q"):
        backend.check_block("block_q", block)


def test_sequential_grid_is_the_tpu_default_and_refused_on_gpu():
    assert backend.sequential_grid() is False  # CPU default: the GPU-style loop driver
    assert backend.sequential_grid(backend.KernelOptions(sequential_grid=True)) is True
    tpu = AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    gpu = AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=132, platform="gpu")
    with use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=tpu)):
        assert backend.sequential_grid() is True
        params = backend.pallas_params(4, sequential_last=True)["compiler_params"]
        assert params.dimension_semantics == ("parallel",) * 3 + ("arbitrary",)
    with use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=gpu)):
        with pytest.raises(ValueError, match="sequential_grid"):
            backend.sequential_grid(backend.KernelOptions(sequential_grid=True))
