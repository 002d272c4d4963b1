"""Flax Linen layers. Importing this package registers every token mixer, FFN and projection."""

from jaxformers.nn import (  # noqa: F401  (registration side effects)
    attention,
    linear,
    linear_attention,  # noqa: F401  (GLA + causal linear attention mixers)
    mlp,
    moe,  # noqa: F401  (SMoE-Dropout / learned-router MoE FFN, dense_mlp)
    mot,  # noqa: F401  (MoT grouped dispatch, QK-norm, validator)
    pattention,  # noqa: F401  (TokenFormer projection + FFN)
)
