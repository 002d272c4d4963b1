"""Compiled model functions that outlive the call that needs them.

Evaluators run at every evaluation of a training run. A `jax.jit(model.apply)` built inside one is a
new function each time (a bound method is a fresh object), so jax traces the model again and XLA
compiles it again at every evaluation. Linen modules are frozen dataclasses, hashable and equal when
their fields are, so one compiled function per model (and per function of it) is kept here instead.
"""

import functools

import jax


@functools.lru_cache(maxsize=64)
def jitted_apply(model):
    """`jax.jit(model.apply)`, the same object for every equal `model`."""
    return jax.jit(model.apply)


@functools.lru_cache(maxsize=64)
def jitted(fn, model):
    """`jax.jit(functools.partial(fn, model))` for a module-level `fn(model, *arrays)`, kept per
    (fn, model)."""
    return jax.jit(functools.partial(fn, model))
