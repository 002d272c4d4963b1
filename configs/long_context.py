"""Long context: a GLA LM against a softmax-attention LM with equal parameters at T=2048 bytes.

  python launch/train.py --config=configs/long_context.py:mixer=gla,steps=N --workdir=runs/long_gla
  python launch/train.py --config=configs/long_context.py:mixer=attention,steps=N \
      --workdir=runs/long_attention
  python experiments/long_context.py --gla=runs/long_gla --attention=runs/long_attention
  python benchmarks/long_context_step.py     # step time and memory against T, both mixers

The block of configs/gla_lm.py (pre-norm RMSNorm, SwiGLU, d=128, 4 layers, 4 heads) on the default
byte-level corpus, packed documents masked, windows of `seq` bytes, batch 1. Equal parameters: GLA
has 859,648; softmax attention (MHA, RoPE) with the SwiGLU hidden widened from 336 to 344 has
859,264 (0.04% fewer). `block` sets model.attention.causal_block_size for the softmax model (the
library's causal fast path; 0 computes the full T x T square). Each model trains for the number of
steps it runs in equal wall-clock on this CPU (`steps`, from benchmarks/long_context_step.py), so
both cosine schedules finish. Measured (docs/realistic_shapes.md, long context): launched side by side
on the shared 2-core CPU, GLA steps=600 and attention steps=240 both finished in ~43 min; final
validation loss GLA 1.996, softmax attention 2.618 nats/byte; GLA's step ~2.5x faster at T=2048;
XLA temp memory 397 vs 880 MiB.
"""

from jaxformers.train.config_base import base_config, parse_config_arg

MIXERS = ("gla", "attention")
# SwiGLU hidden width that gives the softmax model GLA's parameter count (GLA's gates and norm
# hold 3,168 more parameters per layer than MHA's four projections; +8 hidden = +3,072)
ATTENTION_MLP_DIM = 344


def get_config(arg: str | None = None):
    args = parse_config_arg(arg, mixer="gla", seq=2048, batch=1, steps=240, block=128)
    if args["mixer"] not in MIXERS:
        raise ValueError(f"mixer={args['mixer']!r}; expected one of {MIXERS}")
    c = base_config()
    c.model.update(
        dict(embed_dim=128, num_layers=4, num_heads=4, max_len=args["seq"], token_mixer=args["mixer"])
    )
    c.model.gla = dict(chunk_size=64)
    if args["mixer"] == "attention":
        c.model.mlp_dim = ATTENTION_MLP_DIM
        c.model.attention = dict(causal_block_size=args["block"])
    c.data.seq_len = args["seq"]
    c.batch_size = args["batch"]
    c.num_steps = args["steps"]
    c.warmup_steps = max(10, c.num_steps // 20)
    c.eval_every = max(20, c.num_steps // 6)
    c.eval_batches = 8
    c.checkpoint_every = c.eval_every
    c.learning_rate = 3e-3
    return c
