"""`init_from` transforms: turn a trained checkpoint's variables into a (larger) model's.

Contract of a registered transform:

    transform(source_variables, *, source_cfg, target_cfg, target_init, rng, **options)
        -> target_variables

source_variables / target_init: {"params": ..., "constants": ...} plain pytrees (no logical
partitioning boxes); source_cfg / target_cfg: ModelConfig; options: `config.init_from.options`.
The result must have exactly target_init's tree structure, shapes and dtypes; a source that
cannot produce the target raises GrowthError saying why.

The transforms by name; to add one, write it in its own module and add a line here.
"""

from jaxformers.growth.depth import g_stack, g_zero, interleave_transform
from jaxformers.growth.structure import GrowthError, identity
from jaxformers.growth.tokens import tokenformer_grow
from jaxformers.registry import lookup

TRANSFORMS = {
    "identity": identity,
    "g_stack": g_stack,  # Du et al. 2024, App. A.3 Algorithm 1
    "interleave": interleave_transform,  # Du et al. 2024, App. H.2
    "g_zero": g_zero,  # Du et al. 2024, §3.1 (function preserving)
    "tokenformer_grow": tokenformer_grow,  # Wang et al. 2025, §3.3 eq. 11
}

__all__ = ["TRANSFORMS", "GrowthError", "get_transform"]


def get_transform(name: str):
    return lookup(TRANSFORMS, name, "config.init_from.transform")
