"""The one place where the GPU (Triton) and TPU (Mosaic) Pallas back ends differ.

Every `pallas_call` in `jaxformers.kernels` takes its `interpret` flag and its compiler parameters
from `pallas_params`; nothing else in the kernels looks at the platform. Rules (measured on jax 0.10):

* CPU: the generic HLO interpreter (`interpret=True`); compiler params are irrelevant there.
* TPU: Mosaic, `pltpu.CompilerParams(dimension_semantics=...)`: grid axes are "parallel", except
  a last axis that carries state in VMEM scratch ("arbitrary"; `sequential_grid`: the TPU
  drivers of both kernels, so that VMEM holds one block / chunk, not the whole sequence).
* GPU: always pass `pltriton.CompilerParams` explicitly. Without them jax 0.10 silently routes a
  `pl.pallas_call` to the deprecated Mosaic-GPU path (which rejects our blocks on shared memory);
  jax 0.12 picks Triton. TPU params on a GPU lowering are an error, hence the switch.

The target platform is normally `jax.default_backend()`. Lowering tests on a CPU machine run under
`jax.sharding.use_abstract_mesh(AbstractMesh(..., abstract_device=AbstractDevice(platform=...)))`;
the abstract device's platform then wins, so the kernels emit real Mosaic / Triton calls.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

IMPLS = ("xla", "pallas", "auto")
SUPPORTED_DTYPES = ("float32", "bfloat16", "float16")


def target_platform() -> str:
    """'cpu' | 'gpu' | 'tpu': the abstract device of the current abstract mesh, else the default
    backend ('cuda'/'rocm' count as 'gpu')."""
    platform = None
    try:
        device = jax.sharding.get_abstract_mesh().abstract_device
        platform = None if device is None else device.platform
    except AttributeError:  # older/newer jax without abstract devices on the mesh
        platform = None
    platform = (platform or jax.default_backend()).lower()
    return "gpu" if platform in ("gpu", "cuda", "rocm") else platform


def resolve_impl(impl: str) -> str:
    """'xla' | 'pallas' | 'auto' -> 'xla' or 'pallas' ('auto': Pallas on GPU/TPU, XLA on CPU)."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}; expected one of {IMPLS}")
    if impl == "auto":
        return "pallas" if target_platform() in ("gpu", "tpu") else "xla"
    return impl


@dataclasses.dataclass(frozen=True)
class KernelOptions:
    """Per-platform knobs; the defaults suit H100 / TPU v5e at head dim 128."""

    num_warps: int = 4
    num_stages: int = 2
    vmem_limit_bytes: int | None = None
    # Carry state across a sequential ("arbitrary") last grid axis in VMEM scratch, so VMEM holds
    # one chunk at a time (TPU style; GPU grid programs run in parallel, so not there).
    # None = the platform's choice: True on TPU, False elsewhere. True on CPU tests the TPU path.
    sequential_grid: bool | None = None


def sequential_grid(options: KernelOptions = KernelOptions()) -> bool:
    platform = target_platform()
    if options.sequential_grid is None:
        return platform == "tpu"
    if options.sequential_grid and platform == "gpu":
        raise ValueError("options.sequential_grid=True is TPU-only: GPU grid programs run in "
                         "parallel and cannot carry state across grid steps")
    return options.sequential_grid


def block_bytes(*blocks) -> int:
    """Bytes of VMEM that (block_shape, dtype) pairs occupy (None dims count 1)."""
    total = 0
    for shape, dtype in blocks:
        n = 1
        for s in shape:
            n *= 1 if s is None else s
        total += n * jnp.dtype(dtype).itemsize
    return total


def tpu_vmem_limit(vmem_bytes: int, options: KernelOptions) -> int | None:
    """Scoped-VMEM limit: the option if set, else room for double-buffered blocks (2x + 4 MiB of
    headroom) when that exceeds the 16 MiB v5e default, capped at 64 MiB (all of a v7x core)."""
    if options.vmem_limit_bytes is not None:
        return options.vmem_limit_bytes
    need = 2 * vmem_bytes + (4 << 20)
    return None if need <= (16 << 20) else min(need, 64 << 20)


def pallas_params(num_grid_axes: int, options: KernelOptions = KernelOptions(), *,
                  vmem_bytes: int = 0, sequential_last: bool = False) -> dict:
    """kwargs `interpret` and `compiler_params` for `pl.pallas_call` on the target platform.

    vmem_bytes: the kernel's blocks (inputs + outputs, `block_bytes`), to size TPU VMEM.
    sequential_last: the last grid axis carries state ("arbitrary" on TPU).
    """
    platform = target_platform()
    if platform == "tpu":
        semantics = ("parallel",) * (num_grid_axes - sequential_last) + (
            ("arbitrary",) if sequential_last else ())
        params = pltpu.CompilerParams(
            dimension_semantics=semantics,
            vmem_limit_bytes=tpu_vmem_limit(vmem_bytes, options),
        )
        return dict(interpret=False, compiler_params=params)
    if platform == "gpu":
        params = pltriton.CompilerParams(num_warps=options.num_warps, num_stages=options.num_stages)
        return dict(interpret=False, compiler_params=params)
    return dict(interpret=True)  # CPU: generic interpreter, compiler params ignored


def check_dtype(name: str, x: jax.Array) -> None:
    if x.dtype.name not in SUPPORTED_DTYPES:
        raise ValueError(f"{name} has dtype {x.dtype}; the kernels support {SUPPORTED_DTYPES}")


def check_block(name: str, block: int) -> None:
    """Blocks are powers of two >= 8: Triton needs power-of-two value shapes, Mosaic needs the
    sublane dimension of a block to be a multiple of 8 (and of 128 when it is a lane dimension,
    which holds at the production default 128)."""
    if not isinstance(block, int) or block < 8 or block & (block - 1):
        raise ValueError(f"{name}={block!r}; expected a power of two >= 8")


def next_pow2(n: int, minimum: int = 1) -> int:
    return max(minimum, 1 << max(0, (n - 1).bit_length()))
