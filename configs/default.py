"""Default: a small byte-level decoder LM on the Python standard library's sources.

  python launch/train.py --workdir=runs/default                 # this config (a bare run uses it)
  python launch/train.py --config=configs/default.py:tiny --workdir=runs/tiny   # 1-minute smoke run

Pre-norm RMSNorm, RoPE, GQA attention, SwiGLU; d=128, 4 layers, seq 128, batch 16, 600 steps.
Measured: validation loss 1.676 nats/byte after 600 steps with packed documents masked (1.660 with the
old leaky packing, data.segment_ids=False; unigram entropy of the corpus: 3.25), in about 2-3 minutes
on a 2-core CPU; curve and throughput in docs/decoder.md.
bf16 compute (--config.model.precision.compute=bfloat16) is 13-17% slower on this CPU, same loss:
docs/realistic_shapes.md.
"""

from jaxformers.train.config_base import base_config, parse_config_arg

SIZES = {
    "tiny": dict(embed_dim=64, num_layers=2, num_heads=4, num_kv_heads=2),
    "small": dict(embed_dim=128, num_layers=4, num_heads=4, num_kv_heads=2),
    "base": dict(embed_dim=256, num_layers=6, num_heads=8, num_kv_heads=4),
}
STEPS = {"tiny": 60, "small": 600, "base": 2000}


def get_config(arg: str | None = None):
    args = parse_config_arg(arg, size="small")
    if args["size"] not in SIZES:
        raise ValueError(f"size={args['size']!r}; expected one of {sorted(SIZES)}")
    c = base_config()
    c.model.update(SIZES[args["size"]])
    c.model.max_len = 128
    c.data.seq_len = 128
    c.batch_size = 16
    c.num_steps = STEPS[args["size"]]
    c.warmup_steps = max(10, c.num_steps // 20)
    c.eval_every = max(20, c.num_steps // 6)
    c.checkpoint_every = max(20, c.num_steps // 6)
    c.learning_rate = 3e-3
    return c
