"""Run a Pallas kernel on each device's shard of a multi-device mesh.

A `pallas_call` has no GSPMD sharding rule, so under `jit` on a mesh XLA would gather its operands
onto every device and run the whole kernel there. The train loop traces
its steps inside `jax.sharding.use_abstract_mesh(mesh)`; `per_shard` reads that mesh and calls the
kernel inside `jax.shard_map(..., check_vma=False)` (a pallas_call inside shard_map needs it),
with the batch split over ('data', 'fsdp') and heads over 'tensor' wherever they divide: the
layout of the default `config.sharding_rules`. Attention is independent per sequence and per
head, so no collective is needed. With no mesh in context, or a mesh of one device, the kernel
runs directly.
"""

import math

import jax
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")
HEAD_AXIS = "tensor"


def _dividing(mesh, names, sizes) -> tuple[str, ...]:
    """The axes among `names` with more than one device, if their product divides every size."""
    axes = tuple(a for a in names if a in mesh.axis_names and mesh.shape[a] > 1)
    n = math.prod(mesh.shape[a] for a in axes)
    return axes if axes and all(s % n == 0 for s in sizes) else ()


def per_shard(kernel, *arrays, head_dims, out_head_dims):
    """kernel(*arrays) run per shard; every array and output has its batch in dimension 0.

    head_dims[i]: the head dimension of arrays[i] (None: no head dimension, e.g. segment ids);
    arrays may be None (passed through as None). out_head_dims: the same for the kernel's
    output (an int, or a tuple matching a tuple output).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return kernel(*arrays)
    present = [i for i, a in enumerate(arrays) if a is not None]
    batch = _dividing(mesh, BATCH_AXES, [arrays[i].shape[0] for i in present])
    heads = _dividing(mesh, (HEAD_AXIS,), [arrays[i].shape[head_dims[i]] for i in present
                                           if head_dims[i] is not None])
    if not batch and not heads:
        return kernel(*arrays)

    def spec(ndim, head_dim):
        parts = [None] * ndim
        parts[0] = batch or None
        if head_dim is not None:
            parts[head_dim] = heads or None
        return P(*parts)

    def on_present(*shards):
        full = [None] * len(arrays)
        for i, shard in zip(present, shards):
            full[i] = shard
        return kernel(*full)

    out_shapes = jax.eval_shape(kernel, *arrays)
    out_specs = jax.tree.map(lambda s, d: spec(s.ndim, d), out_shapes, out_head_dims)
    in_specs = tuple(spec(arrays[i].ndim, head_dims[i]) for i in present)
    return jax.shard_map(on_present, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)(*(arrays[i] for i in present))
