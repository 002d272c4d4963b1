"""Name -> Linen module tables through which the decoder is composed from its config.

A method adds its layer by decorating the class in its own file and importing that file from
`jaxformers/nn/__init__.py`; the decoder and the training loop never change.

Every registered module is constructed as `Module(cfg=model_config, name=...)` (projections take
extra fields, see `nn.linear.Projection`) and called as `module(x, ctx)` with `x: [B, T, d]` and a
`nn.context.Context`.
"""

TOKEN_MIXERS: dict[str, type] = {}
FEED_FORWARDS: dict[str, type] = {}
PROJECTIONS: dict[str, type] = {}
# Callables ModelConfig -> None raising ConfigError; methods register their cross-field checks.
VALIDATORS: list = []


def _register(table, name):
    def wrap(cls):
        if name in table and table[name] is not cls:
            raise ValueError(f"{name!r} is already registered as {table[name].__name__}")
        table[name] = cls
        return cls

    return wrap


def register_token_mixer(name: str):
    return _register(TOKEN_MIXERS, name)


def register_feed_forward(name: str):
    return _register(FEED_FORWARDS, name)


def register_projection(name: str):
    return _register(PROJECTIONS, name)


def register_validator(fn):
    VALIDATORS.append(fn)
    return fn
