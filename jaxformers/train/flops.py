"""Matmul FLOPs of a traced computation, with loops counted once per iteration.

XLA's `compiled.cost_analysis()` counts the body of a `while` loop once, so a decoder whose layers
are stacked with `nn.scan` reports nearly the same FLOPs at every depth. This counter walks the
jaxpr instead: every `dot_general` contributes 2 * batch * M * N * K, a `scan` multiplies its body
by its length, a `pallas_call` its kernel body by its grid size and a `shard_map` its per-shard
body by the number of shards (devices over its manual axes). Only matmuls are counted (the
convention of MFU, e.g. PaLM appendix B): element-wise work and the optimizer update are not.
A `while_loop` whose trip count is not static is counted once.
"""

import math

import jax


def _as_jaxpr(value):
    """The open jaxpr inside `value` (a Jaxpr or ClosedJaxpr), else None."""
    if hasattr(value, "eqns"):
        return value
    inner = getattr(value, "jaxpr", None)
    return inner if hasattr(inner, "eqns") else None


def _dot_general_flops(eqn) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
    return 2 * math.prod(lhs) * math.prod(rhs_free)


def _loop_multiplier(eqn) -> int:
    if eqn.primitive.name == "scan":
        return int(eqn.params["length"])
    if eqn.primitive.name == "pallas_call":
        grid = getattr(eqn.params.get("grid_mapping"), "grid", ()) or ()
        return math.prod(int(g) for g in grid)
    if eqn.primitive.name == "shard_map":
        mesh = eqn.params["mesh"]
        axes = eqn.params.get("newly_manual_axes") or eqn.params.get("manual_axes") or ()
        return math.prod(int(mesh.shape[a]) for a in axes)
    return 1


def jaxpr_matmul_flops(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            total += _dot_general_flops(eqn)
            continue
        inner = 0
        for name, value in eqn.params.items():
            if name == "branches":  # lax.cond / switch: one branch runs
                inner += max((jaxpr_matmul_flops(_as_jaxpr(b)) for b in value), default=0)
            elif _as_jaxpr(value) is not None:
                inner += jaxpr_matmul_flops(_as_jaxpr(value))
        total += inner * _loop_multiplier(eqn)
    return total


def matmul_flops(fn, *args, **kwargs) -> int:
    """Matmul FLOPs of one call of `fn(*args, **kwargs)` (arrays or ShapeDtypeStructs)."""
    return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
