"""Pure pytree -> pytree growth transforms, registered for `config.init_from`."""

from jaxformers.growth import registry  # noqa: F401
