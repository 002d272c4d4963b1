"""Model families by name (`config.model_family`): each builds a Linen module from ModelConfig."""

MODELS: dict = {}


def register_model(name: str):
    def wrap(fn):
        MODELS[name] = fn
        return fn

    return wrap


def build_model(family: str, cfg):
    import jaxformers.models  # noqa: F401  (registers the built-in families)

    if family not in MODELS:
        raise ValueError(f"config.model_family={family!r}; expected one of {sorted(MODELS)}")
    return MODELS[family](cfg)
