"""Every learned matrix of a block goes through `Projection`, so that Mixture-of-Transformers
(untied per modality) and TokenFormer (`model.projections="pattention"`) apply to all of them.

    model.projections   class
    "dense"             nn.linear.DenseProjection       y = x W
    "pattention"        nn.pattention.PattentionProjection  y = Θ(x K_P^T) V_P (TokenFormer eq. 4)
"""

import flax.linen as nn

from jaxformers.config import ModelConfig
from jaxformers.nn.linear import DenseProjection
from jaxformers.nn.pattention import PattentionProjection

PROJECTIONS = {
    "dense": DenseProjection,
    "pattention": PattentionProjection,
}


def Projection(cfg: ModelConfig, features: int, *, axes=("embed", "mlp"), name: str,  # noqa: N802
               init_scale: float = 1.0, role: str = "") -> nn.Module:
    """The projection module the config asks for. `role` (q, k, v, o, ffn_up, ffn_down, ...)
    lets a projection family size itself (TokenFormer: attention vs FFN token counts)."""
    cls = PROJECTIONS[cfg.projections]
    return cls(cfg=cfg, features=features, axes=axes, init_scale=init_scale, role=role, name=name)
