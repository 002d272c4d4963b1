"""The layers a model config can name: `model.token_mixer` and `model.feed_forward`.

Every module here is constructed as `Module(cfg=model_config, name=...)` and called as
`module(x, ctx)` with `x: [B, T, d]` and an `nn.context.Context`. To add a layer, write it in its own
file and add one line to the table (and its name to the field's `Literal` in `jaxformers/config.py`;
a test checks that the two agree). Projections (`model.projections`) are in `nn/projection.py`.
"""

from jaxformers.nn.attention import Attention
from jaxformers.nn.linear_attention import GatedLinearAttention, LinearAttention
from jaxformers.nn.mlp import SwiGLU
from jaxformers.nn.moe import DenseMLP, MoEFeedForward
from jaxformers.nn.pattention import PattentionFFN

TOKEN_MIXERS = {
    "attention": Attention,  # softmax attention: GQA, RoPE, QK-norm, KV cache, flash kernel
    "gla": GatedLinearAttention,  # Yang et al. 2024
    "linear_attention": LinearAttention,  # Katharopoulos et al. 2020
}

FEED_FORWARDS = {
    "swiglu": SwiGLU,  # Shazeer 2020
    "moe": MoEFeedForward,  # learned-router MoE and SMoE-Dropout (Chen et al. 2023)
    "dense_mlp": DenseMLP,  # the MoE's dense twin (one expert of width hidden_dim)
    "pattention": PattentionFFN,  # TokenFormer FFN (Wang et al. 2025, eqs. 9-10)
}
