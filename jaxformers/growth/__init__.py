"""Pure pytree -> pytree growth transforms, registered for `config.init_from`."""

# Importing registers the transforms: g_stack, g_zero, interleave (depth), tokenformer_grow (tokens).
from jaxformers.growth import depth, guidelines, registry, tokens  # noqa: F401
