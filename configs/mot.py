"""Mixture-of-Transformers (Liang et al. 2025): K=2 modality-untied blocks, global attention.

  python launch/train.py --config=configs/mot.py --workdir=runs/mot
  python launch/train.py --config=configs/mot_dense_baseline.py --workdir=runs/mot_dense
  python experiments/mot_step_matching.py         # both runs + step-matching slopes + plot

Chameleon-style layout (norm after branch, QK-norm), d=128, 4 layers, 4 heads, seq 128, batch 16,
on "two_modality" synthetic text/image sequences (data.variant=mazes for description/path mazes).
Every non-embedding parameter has a modality axis; tokens use their modality's weights through
the grouped (sorted, tile-padded) dispatch, so per-step FLOPs match the dense baseline (XLA-counted
training FLOPs/step within 3%, measured: see docs/mixture_of_transformers.md).

Presets: `:size=small` (default, the experiment), `:size=tiny` (seconds, smoke); `dispatch=select`
for the simple compute-every-modality path (K times the projection FLOPs), `variant=mazes`,
`text=corpus` (real text as modality 0 instead of the Markov chain).
Measured (docs/mixture_of_transformers.md; experiments/results/mot_step_matching.json): the settled
result is `python experiments/mot_step_matching.py --steps=1000 --text=corpus --batch_size=64
--embed_dim=64` (d=64, real text, 2 seeds): step-matching slope text 0.84 / 0.83, image 0.665 / 0.57
(paper at 37M: 0.55 / 0.26). This config's own setting (d=128, Markov text, 300 steps, 2 seeds): text
0.90 / 0.87, image 0.80 / 0.69; at d=128 text is not clearly below 1 (real text, batch 64: 0.98).
"""

from jaxformers.train.config_base import base_config, parse_config_arg

SIZES = {
    "tiny": dict(embed_dim=32, num_layers=2, num_heads=2, num_kv_heads=2),
    "small": dict(embed_dim=128, num_layers=4, num_heads=4, num_kv_heads=4),
}
STEPS = {"tiny": 20, "small": 300}


def mot_config(arg: str | None, num_modalities: int):
    args = parse_config_arg(arg, size="small", dispatch="grouped", variant="synthetic",
                            text="markov", steps=0)
    if args["size"] not in SIZES:
        raise ValueError(f"size={args['size']!r}; expected one of {sorted(SIZES)}")
    if args["variant"] not in ("synthetic", "mazes"):
        raise ValueError(f"variant={args['variant']!r}; expected 'synthetic' or 'mazes'")
    c = base_config()
    c.model.update(SIZES[args["size"]])
    c.model.update(dict(
        vocab_size=264, max_len=128, num_modalities=num_modalities, norm_placement="after_branch",
        modality_dispatch=args["dispatch"], attention=dict(qk_norm=True),
        mot=dict(tile_size=64, groups=1),
    ))
    if args["variant"] == "synthetic":
        c.data = dict(name="two_modality", variant="synthetic", text_source=args["text"],
                      seq_len=128, num_validation=128)
    else:  # 5x5 mazes: 81-token description (modality 0) + path (modality 1), seq 112
        c.data = dict(name="two_modality", variant="mazes", grid_n=5, num_train=20_000,
                      num_validation=256)
    c.batch_size = 16
    c.num_steps = args["steps"] or STEPS[args["size"]]
    c.warmup_steps = max(5, c.num_steps // 20)
    c.learning_rate = 3e-3
    c.eval_every = max(4, c.num_steps // 20)
    c.eval_batches = 4
    c.checkpoint_every = 0
    c.log_every = 20
    return c


def get_config(arg: str | None = None):
    return mot_config(arg, num_modalities=2)
