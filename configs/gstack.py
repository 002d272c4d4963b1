"""G_stack depth growth (Du et al. 2024): a 2-layer base grown x4 to an 8-layer target, d=128.

  # 1. the base (2 layers) for d tokens = steps * batch_size * seq_len
  python launch/train.py --config=configs/gstack.py:base --workdir=runs/gstack_base \
      --config.num_steps=100
  # 2a. grow inside the training run (fresh AdamW, restarted warm-up, another data order)
  python launch/train.py --config=configs/gstack.py:target --workdir=runs/gstack_grown \
      --config.init_from.workdir=runs/gstack_base --config.init_from.transform=g_stack
  # 2b. or grow offline into a step-0 checkpoint, then train it (same result)
  python launch/grow.py --source=runs/gstack_base --config=configs/gstack.py:target \
      --transform=g_stack --workdir=runs/gstack_grown
  python launch/train.py --config=configs/gstack.py:target --workdir=runs/gstack_grown
  # 3. the scratch baseline: the same target config without init_from
  python launch/train.py --config=configs/gstack.py:target --workdir=runs/gstack_scratch

Transforms (config.init_from.transform): g_stack (options: noise=0.2 for App. I.2's blending,
start/stop for partial stacking), interleave, g_zero (function preserving). The whole comparison
at equal total FLOPs: `python experiments/gstack_growth.py --steps=200` (docs/gstack.md). Measured (one seed,
2-core CPU): scratch 2.385 after 200 steps; G_stack from the 100-step base reaches it with +46% speed-up
(final 2.253 at equal FLOPs), from the 50-step base +57%, G_zero +65%, interleave +28% (paper: 49-55%).

Guidelines (`jaxformers.growth.guidelines`): grow by g = RECOMMENDED_GROWTH_FACTOR = 4 (the base is
target depth / 4), after d = growth_tokens(N, C) base tokens with C = training_flops(N, D). That
fit only holds at LLM scale (N ~ 1e9, C ~ 1e21); for this CPU size it asks for more tokens than
the whole budget, so here d is a fraction of the target's tokens (the benchmark uses 1/4 and 1/2).

Base and target/scratch use different data seeds (0 and 1): the grown model trains on a data order
the base did not see, and the scratch run sees exactly the grown run's order.
"""

from jaxformers.train.config_base import base_config, parse_config_arg

MODEL = dict(embed_dim=128, num_heads=4, num_kv_heads=2, max_len=128)
LAYERS = {"base": 2, "target": 8}


def get_config(arg: str | None = None):
    """Presets: base (2 layers, seed 0), target (8 layers, seed 1; add init_from to grow)."""
    args = parse_config_arg(arg, stage="target", steps=200)
    if args["stage"] not in LAYERS:
        raise ValueError(f"stage={args['stage']!r}; expected one of {sorted(LAYERS)}")
    c = base_config()
    c.model.update(MODEL)
    c.model.num_layers = LAYERS[args["stage"]]
    c.data.seq_len = 128
    c.batch_size = 16
    c.seed = 0 if args["stage"] == "base" else 1
    c.num_steps = args["steps"]
    c.learning_rate = 3e-3
    c.warmup_steps = max(10, c.num_steps // 20)
    c.eval_every = 20
    c.eval_batches = 4
    c.checkpoint_every = max(20, c.num_steps // 4)
    c.keep_checkpoints = 4
    c.log_every = 10
    return c
