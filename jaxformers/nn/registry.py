"""Name -> Linen module tables through which the decoder is composed from its config.

A method adds its layer by decorating the class in its own file and importing that file from
`jaxformers/nn/__init__.py`; the decoder and the training loop never change.

Every registered module is constructed as `Module(cfg=model_config, name=...)` (projections take
extra fields, see `nn.linear.Projection`) and called as `module(x, ctx)` with `x: [B, T, d]` and a
`nn.context.Context`.
"""

from jaxformers.registry import Registry

TOKEN_MIXERS = Registry("model.token_mixer")
FEED_FORWARDS = Registry("model.feed_forward")
PROJECTIONS = Registry("model.projections")
# Callables ModelConfig -> None raising ConfigError; methods register their cross-field checks.
VALIDATORS: list = []

register_token_mixer = TOKEN_MIXERS.register
register_feed_forward = FEED_FORWARDS.register
register_projection = PROJECTIONS.register


def register_validator(fn):
    VALIDATORS.append(fn)
    return fn
