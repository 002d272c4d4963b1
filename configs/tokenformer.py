"""TokenFormer on the byte-level text data, and its growth by parameter tokens (Wang et al. 2025).

  # 1. the small model (4 layers, d=128, 64 attention / 256 FFN parameter tokens)
  python launch/train.py --config=configs/tokenformer.py:small --workdir=runs/tf_small
  # 2. grow 4x in tokens (zero new keys, frozen tau: the function is preserved) and continue
  python launch/train.py --config=configs/tokenformer.py:large --workdir=runs/tf_grown \
      --config.init_from.workdir=runs/tf_small --config.init_from.transform=tokenformer_grow \
      --config.num_steps=200
  # 3. the large model from scratch, for comparison
  python launch/train.py --config=configs/tokenformer.py:large --workdir=runs/tf_large

Every Q/K/V/O projection is a Pattention and the FFN is one Pattention (paper eqs. 4-10); token
counts keep the paper's attention : FFN = 1 : 4 (Table 9); norms are non-parametric. "large" has
4x the tokens of "small" at the same width and depth (the paper's "parameter reusing" growth).
Options of the growth transform: --config.init_from.options.key_init=zeros|normal,
.value_init=normal|zeros, .tau=frozen|recompute (defaults: the exact, function-preserving growth).

Measured (experiments/tokenformer_growth.py --small_steps=300 --grow_steps=150; docs/tokenformer.md):
small 300 steps -> val loss 2.0152; right after growth 2.0152 (bitwise equal); grown +150 steps ->
1.8107 vs the large model from scratch for the same 150 steps 2.2878, and vs the large model from
scratch at equal total FLOPs (241 steps) 2.0973 (2-core CPU, 13 min for all four runs).
"""

from jaxformers.train.config_base import base_config, parse_config_arg

SIZES = {
    # name: (embed_dim, num_layers, num_heads, attn_tokens, ffn_tokens)
    "tiny": (64, 2, 4, 16, 64),
    "tiny_large": (64, 2, 4, 64, 256),
    "small": (128, 4, 4, 64, 256),
    "large": (128, 4, 4, 256, 1024),
}
STEPS = {"tiny": 60, "tiny_large": 60, "small": 400, "large": 600}


def get_config(arg: str | None = None):
    args = parse_config_arg(arg, size="small", norm="l2_norm_gelu")
    if args["size"] not in SIZES:
        raise ValueError(f"size={args['size']!r}; expected one of {sorted(SIZES)}")
    d, layers, heads, attn_tokens, ffn_tokens = SIZES[args["size"]]
    assert ffn_tokens == 4 * attn_tokens  # the paper's 1 : 4 ratio
    c = base_config()
    c.model.update(dict(embed_dim=d, num_layers=layers, num_heads=heads, max_len=128,
                        projections="pattention", feed_forward="pattention"))
    c.model.pattention = dict(attn_tokens=attn_tokens, ffn_tokens=ffn_tokens, norm=args["norm"])
    c.data.seq_len = 128
    c.batch_size = 16
    c.num_steps = STEPS[args["size"]]
    c.warmup_steps = max(10, c.num_steps // 20)
    c.eval_every = max(20, c.num_steps // 8)
    c.checkpoint_every = max(20, c.num_steps // 4)
    c.learning_rate = 3e-3
    # Used only when --config.init_from.workdir is set (with transform=tokenformer_grow).
    c.init_from.options = dict(key_init="zeros", value_init="normal", tau="frozen")
    return c
