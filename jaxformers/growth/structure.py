"""What every growth transform shares: its error type, the result check, the identity transform."""

import jax

from jaxformers.errors import UserError


class GrowthError(UserError, ValueError):
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


def identity(source_variables, *, source_cfg, target_cfg, target_init, rng, **options):
    """Continue from the checkpoint's weights unchanged (fresh optimizer and warm-up)."""
    del source_cfg, target_cfg, rng
    if options:
        raise ValueError(f"transform 'identity' takes no options; got {sorted(options)}")
    return check_same_structure(source_variables, target_init, "identity")
