"""Device mesh ('data', 'fsdp', 'tensor') and shardings from logical axis names."""

import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")


def maybe_initialize_distributed() -> None:
    """Call jax.distributed.initialize() on multi-host runs (TPU pods, SLURM, env-configured).

    Guarded so a single CPU host works: it only runs when the environment describes a cluster.
    """
    import os

    cluster_env = ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "SLURM_NTASKS",
                   "MEGASCALE_COORDINATOR_ADDRESS")
    if any(v in os.environ for v in cluster_env) and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, ...]:
    sizes = [int(mesh_config[a]) for a in MESH_AXES]
    if sum(s == -1 for s in sizes) > 1:
        raise ValueError(f"config.mesh={dict(zip(MESH_AXES, sizes))}: at most one axis may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes) or num_devices % known:
        raise ValueError(
            f"config.mesh={dict(zip(MESH_AXES, sizes, strict=True))} does not divide the "
            f"{num_devices} available devices"
        )
    sizes = [num_devices // known if s == -1 else s for s in sizes]
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"config.mesh={dict(zip(MESH_AXES, sizes, strict=True))} uses {math.prod(sizes)} "
            f"devices; {num_devices} are available"
        )
    return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
    devices = jax.devices() if devices is None else devices
    shape = mesh_shape(mesh_config, len(devices))
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types)
    return jax.sharding.Mesh(np.array(devices).reshape(shape), MESH_AXES, axis_types=axis_types)


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _fit_spec(spec: P, shape, mesh) -> P:
    """Drop mesh axes from dimensions they do not divide (e.g. vocab 264 over tensor=16)."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = math.prod(mesh.shape[n] for n in names)
        fitted.append(axes if names and dim % size == 0 else None)
    return P(*fitted)


def logical_shardings(abstract_boxed_tree, mesh, rules):
    """NamedShardings for a tree whose leaves may be nn.LogicallyPartitioned boxes."""
    specs = nn.get_partition_spec(abstract_boxed_tree)
    mesh_specs = nn.logical_to_mesh(specs, rules)
    shapes = nn.meta.unbox(abstract_boxed_tree)
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, _fit_spec(spec, x.shape, mesh)),
        mesh_specs,
        shapes,
        is_leaf=lambda s: isinstance(s, P),
    )


def global_batch(local_batch: dict, mesh) -> dict:
    """Per-host numpy batch -> global jax arrays sharded over ('data', 'fsdp')."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }
