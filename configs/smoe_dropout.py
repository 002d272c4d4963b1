"""SMoE-Dropout (Chen et al. 2023, arXiv 2303.01610) and its two baselines: same model, data, budget.

  python launch/train.py --config=configs/smoe_dropout.py --workdir=runs/smoe
  python launch/train.py --config=configs/smoe_dropout.py:variant=learned --workdir=runs/moe_learned
  python launch/train.py --config=configs/smoe_dropout.py:variant=dense --workdir=runs/dense_ffn
  python launch/evaluate.py --workdir=runs/smoe --active_experts=1,2,4,8

Byte-level text LM (dataset "text"), d=128, 2 layers, seq 128, batch 16. The FFN is a ReLU MLP
with biases of total hidden width 512, either dense ("dense") or split into N=8 experts of width 64:
  dense:        feed_forward="dense_mlp"
  learned:      learned router, top-2 (Switch/GShard-style baseline; balancing loss off by default,
                `--config.model.moe.load_balance_weight=0.01` turns it on)
  smoe_dropout: frozen random router (constants collection), k linear N/2 -> N over training

Measured (600 steps, seed 0, validation nats/byte at k = 1/2/4/8; `experiments/smoe_slimmable.py`,
docs/smoe_dropout.md): dense 1.672; learned top-2 1.722/1.646/1.670/1.694 (best at its training k);
SMoE-Dropout 2.318/1.914/1.723/1.685 (monotone in k; k=8 ties dense within seed noise: seed 1
gives 1.622 vs dense 1.643). About 8-16 min per run on the shared 2-core CPU.
"""

from jaxformers.train.config_base import base_config, parse_config_arg

NUM_EXPERTS = 8
HIDDEN = 512
VARIANTS = ("dense", "learned", "smoe_dropout")


def get_config(arg: str | None = None):
    """Presets: variant=dense|learned|smoe_dropout, steps=<int>, dispatch=masked|dispatch."""
    args = parse_config_arg(arg, variant="smoe_dropout", steps=600, dispatch="masked")
    variant = args["variant"]
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; expected one of {VARIANTS}")
    c = base_config()
    c.model.update(dict(embed_dim=128, num_layers=2, num_heads=4, num_kv_heads=2, max_len=128,
                        mlp_dim=HIDDEN))
    c.data.seq_len = 128
    c.batch_size = 16
    c.num_steps = args["steps"]
    c.warmup_steps = max(10, c.num_steps // 20)
    c.eval_every = max(20, c.num_steps // 6)
    c.checkpoint_every = max(20, c.num_steps // 6)
    c.eval_batches = 16
    c.learning_rate = 3e-3
    moe = dict(num_experts=NUM_EXPERTS, activation="relu", use_bias=True,
               dispatch=args["dispatch"])
    if variant == "dense":
        c.model.feed_forward = "dense_mlp"
    elif variant == "learned":
        c.model.feed_forward = "moe"
        moe.update(router="learned", k_schedule="fixed", k=2)
    else:
        c.model.feed_forward = "moe"
        moe.update(router="random_frozen", k_schedule="linear", k_min=NUM_EXPERTS // 2,
                   k_max=NUM_EXPERTS)
    c.model.moe = moe
    # The k schedule spans the whole run, also when --config.num_steps is overridden.
    c.model.moe.total_steps = c.get_ref("num_steps")
    return c
