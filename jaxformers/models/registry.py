"""Model families by name (`config.model_family`): each builds a Linen module from ModelConfig."""

from jaxformers.registry import Registry

MODELS = Registry("config.model_family", populate="jaxformers.models")
register_model = MODELS.register


def build_model(family: str, cfg):
    return MODELS.get(family)(cfg)
