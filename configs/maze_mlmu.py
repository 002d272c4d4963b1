"""MLM-U on DFS mazes (Nolte et al. 2024, arXiv 2412.05117): the encoder-decoder
trained to predict a uniform-rate random subset of the path from the maze and the rest of the path.

  python launch/train.py --config=configs/maze_mlmu.py:grid=5 --workdir=runs/maze_mlmu_5
  python launch/train.py --config=configs/maze_mlmu.py:grid=10 --workdir=runs/maze_mlmu_10

The next-token baseline with the same parameter count is configs/maze_ntp.py (same presets).
Presets: grid=5|10 (maze size), size=tiny|small (tiny: d=64, 2 layers per stack = 4-layer
decoder; small: d=128, the paper's 5x5 target "PAST 2x4 layers x d=128 vs GPT 8 layers").
Every evaluation greedily decodes `data.eval_mazes` held-out mazes (evaluator "maze_navigation":
nav_exact_match = the paper's navigation accuracy).
Measured (2-core shared CPU, tiny, grid=5, 1000 steps x batch 64, lr 3e-3): held-out greedy
exact match 0.00 (token acc 0.16) vs next token 0.18 (0.38); 3x3, 600 steps: 0.07 vs 0.62.
Paper size (size=small, lr 1e-3): 5x5 after 1500 steps 0.26 vs next token 0.645; 3x3 after 2000
steps 0.72 vs 0.93 (a PyTorch PAST, experiments/maze_torch_past.py, reaches 0.73 on the same data).
10x10 tiny at equal FLOPs (0.35 epochs): 0 vs 0. With only 1000 training mazes (5x5 small, 1500
steps = 96 epochs) the order flips: MLM-U 0.164 at best vs 0.039, as next token memorises
(experiments/maze_sample_efficiency.py; seed 1: 0.129 vs 0.020). Far below the paper's budget (~120
epochs on 5x5, 500+ on 10x10); see docs/mlm_u_mazes.md.
"""

from jaxformers.data import mazes
from jaxformers.train.config_base import base_config, parse_config_arg

SIZES = {
    "tiny": dict(embed_dim=64, num_heads=4, layers_per_stack=2),
    "small": dict(embed_dim=128, num_heads=4, layers_per_stack=4),
}
STEPS = {5: 3000, 10: 3000}


def maze_config(arg, objective: str):
    """Shared by maze_mlmu.py and maze_ntp.py so the two stay parameter-matched: the
    encoder-decoder has `layers_per_stack` encoder + decoder layers, the decoder twice as many."""
    args = parse_config_arg(arg, grid=5, size="tiny", steps=0)
    if not 2 <= args["grid"] <= 30 or args["size"] not in SIZES:
        raise ValueError(f"grid={args['grid']} / size={args['size']!r}; expected grid in "
                         f"2..30 (paper: 3, 5, 10, 15, 20, 30) and size in {sorted(SIZES)}")
    n, size = args["grid"], dict(SIZES[args["size"]])
    per_stack = size.pop("layers_per_stack")
    c = base_config()
    c.objective = objective
    c.model_family = "encdec" if objective == "mlm_u" else "decoder"
    c.model.update(size)
    c.model.num_layers = per_stack if objective == "mlm_u" else 2 * per_stack
    c.model.vocab_size = -(-mazes.vocab_size(n) // 8) * 8
    c.model.max_len = mazes.seq_len(n)
    c.data = dict(name="mazes", grid_n=n, num_train=100_000, num_validation=2000, maze_seed=42,
                  eval_mazes=256, eval_batch_size=128)
    c.batch_size = 64
    c.num_steps = args["steps"] or STEPS.get(n, 3000)
    # Optimiser of the released configs (configs/optim/optim.yaml): AdamW 1e-3, betas
    # (0.9, 0.999), weight decay 1e-4, clip 1, 5% warm-up then cosine.
    c.learning_rate = 1e-3
    c.adam_b2 = 0.999
    c.weight_decay = 1e-4
    c.warmup_steps = max(1, c.num_steps // 20)
    c.min_learning_rate_ratio = 1 / 25
    c.eval_every = max(50, c.num_steps // 15)
    c.eval_batches = 4
    c.checkpoint_every = c.eval_every * 3
    c.log_every = 25
    c.evaluators = ("maze_navigation",)
    return c


def get_config(arg: str | None = None):
    return maze_config(arg, "mlm_u")
