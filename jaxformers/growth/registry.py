"""`init_from` transforms: turn a trained checkpoint's variables into a (larger) model's.

Contract of a registered transform:

    transform(source_variables, *, source_cfg, target_cfg, target_init, rng, **options)
        -> target_variables

source_variables / target_init: {"params": ..., "constants": ...} plain pytrees (no logical
partitioning boxes); source_cfg / target_cfg: ModelConfig; options: `config.init_from.options`.
The result must have exactly target_init's tree structure, shapes and dtypes; a source that
cannot produce the target raises GrowthError saying why.
"""

import jax

from jaxformers.registry import Registry

TRANSFORMS = Registry("config.init_from.transform", populate="jaxformers.growth")
register_transform = TRANSFORMS.register
get_transform = TRANSFORMS.get


class GrowthError(ValueError):
    """The checkpoint does not fit the growth requested."""


def check_same_structure(result, target_init, transform: str):
    """Raise GrowthError unless result matches target_init leaf for leaf (shape and dtype)."""
    got, got_def = jax.tree_util.tree_flatten_with_path(result)
    want, want_def = jax.tree_util.tree_flatten_with_path(target_init)
    if got_def != want_def:
        raise GrowthError(
            f"transform {transform!r} produced a tree that does not match the target model:\n"
            f"  got  {[jax.tree_util.keystr(p) for p, _ in got]}\n"
            f"  want {[jax.tree_util.keystr(p) for p, _ in want]}"
        )
    for (path, g), (_, w) in zip(got, want, strict=True):
        if (g.shape, g.dtype) != (w.shape, w.dtype):
            raise GrowthError(
                f"transform {transform!r}: {jax.tree_util.keystr(path)} is {g.shape} {g.dtype}; "
                f"the target model needs {w.shape} {w.dtype}"
            )
    return result


@register_transform("identity")
def identity(source_variables, *, source_cfg, target_cfg, target_init, rng, **options):
    """Continue from the checkpoint's weights unchanged (fresh optimizer and warm-up)."""
    del source_cfg, target_cfg, rng
    if options:
        raise ValueError(f"transform 'identity' takes no options; got {sorted(options)}")
    return check_same_structure(source_variables, target_init, "identity")
