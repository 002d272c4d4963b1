"""In-context function learning with a transformer over (x_i, y_i) tokens (Garg et al. 2022).

  python launch/train.py --config=configs/icl_functions.py:linear --workdir=runs/icl_linear
  python launch/train.py --config=configs/icl_functions.py:linear,mixer=gla --workdir=runs/icl_gla

Presets (task, d, n = 2d+5 points): linear (d=5), sparse_linear (d=8, k=3), noisy_linear
(d=5, σ=0.5), relu_net (d=5), representation (d=5, y = w·Φ(x) with Φ a fixed 2-layer residual ReLU
MLP, Guo et al. 2024), conjunction and sparse_parity (d=10, 30 points). `mixer=` picks
model.token_mixer (attention | gla | linear_attention) at equal depth and width. `curriculum=K`
turns on Garg et al.'s dimension / prompt-length curriculum, grown every K steps; `dim=`, `points=`,
`sparsity=` override the preset's d, n and k; `gla_feature_map=` sets model.gla.feature_map
(identity | elu_plus_one | relu). The evaluator prints the error curve of the model and the
baselines (OLS, 3-NN, averaging, lasso, Bayes ridge) on the same 512 fresh prompts.
Measured (linear, attention, 512 prompts, docs/icl.md):
  nice -n 19 python experiments/icl_functions.py --preset=linear --mixers=attention \
      --steps=8000 --curriculum=500
squared error / d at n = 0..4 is 0.88, 0.87, 0.71, 0.50, 0.44 (ratio to OLS 1.00-2.08), then 0.31 at
n = d = 5 falling to 0.063 at n = 14 (OLS 0; 3-NN 0.53, averaging 0.39): near, not on, least squares.
--steps=16000 --curriculum=1000: ratio to OLS 1.01-1.76 for n < d, 0.245 at n = 5, 0.044 at n = 14.
  nice -n 19 python experiments/icl_functions.py --preset=sparse_linear --mixers=attention \
      --steps=2000 --curriculum=100
squared error / k at n = 1..7 is 0.90 0.66 0.64 0.64 0.55 0.51 0.48 (OLS 0.88 ... 0.10, lasso 1.06
... 0.012): model / OLS 1.02-4.88 and model / lasso 0.85-40 for n < d; above least squares, so the
sparse result is not reproduced at 2000 steps (a step-budget limit). At --steps=24000 --curriculum=1200:
model / OLS 1.00 0.99 0.97 0.99 1.04 1.07 1.37 2.28 at n = 0..7, closer to OLS than to lasso:
still least squares.
  nice -n 19 python experiments/icl_functions.py --preset=noisy_linear --mixers=attention \
      --steps=2000 --curriculum=100
mean squared disagreement / E y² of the model with Bayes ridge (λ = σ²/τ² = 0.25) is 0.03-0.26, with OLS
0.04-69 (ratio 0.003-0.88 at n = 1..14): closer to Bayes ridge than to least squares at every n ≥ 1.
  nice -n 19 python experiments/icl_functions.py --preset=conjunction --steps=1500 --curriculum=75
  nice -n 19 python experiments/icl_functions.py --preset=sparse_parity --steps=1500 --curriculum=75
accuracy at n = 29: conjunction 0.94 (mean 0.92 for n ≥ 20; OLS 0.74, 3-NN 0.84), sparse parity 0.58
(0.50-0.59 at every n, chance): conjunctions are learned in context, parities are not.
With --steps=6000 --curriculum=300 the conjunction model reaches 0.958 mean for n >= 20 (0.969 at n = 29).
  nice -n 19 python experiments/icl_functions.py --preset=conjunction \
      --mixers=attention,linear_attention,gla --steps=400 --curriculum=20
mean accuracy for n >= 20 after 400 steps: softmax attention 0.635, causal linear attention 0.738,
GLA 0.633 (OLS 0.74, 3-NN 0.79-0.84): an early-training snapshot of result 6 on task 4.
  nice -n 19 python experiments/icl_functions.py --preset=conjunction \
      --mixers=attention,linear_attention,gla --steps=1500 --curriculum=75
after 1500 steps: softmax attention 0.923, GLA 0.833, causal linear attention 0.800 (OLS 0.73,
3-NN 0.82): at equal, longer steps softmax attention learns conjunctions in context best.
  nice -n 19 python experiments/icl_functions.py --preset=linear \
      --mixers=attention,linear_attention,gla,gla:elu_plus_one --steps=3000 --curriculum=180
mean squared error / d for n >= 5 after 3000 steps: softmax attention 0.221, causal linear attention
0.509, GLA 1.007 (the zero predictor), GLA with gla_feature_map=elu_plus_one 0.222. Identity-φ GLA
is almost even in the labels at init (a y token after RMSNorm is ±a fixed vector, so k vᵀ drops its
sign) while the target is odd in them; a positive φ breaks that (conjunctions, 1500 steps: 0.907).
  taskset -c 0 nice -n 10 python experiments/icl_functions.py --preset=representation \
      --steps=12000 --curriculum=720
squared error / d at n = 1..4 is 0.50, 0.33, 0.25, 0.13 (least squares on Φ(x) 0.48, 0.28, 0.12,
0.05), then 0.04-0.11 for n >= 5 where that oracle is exact; least squares on x 0.77-89, 3-NN
0.28-1.18: the model predicts like a learner that knows Φ (Guo et al. 2024), not yet exactly.
"""

from jaxformers.ops.icl_tasks import CURRICULUM_DIM_TASKS
from jaxformers.train.config_base import base_config, parse_config_arg

PRESETS = {
    "linear": dict(task="linear", dim=5, num_points=15),
    "noisy_linear": dict(task="linear", dim=5, num_points=15, noise_std=0.5),
    "sparse_linear": dict(task="sparse_linear", dim=8, num_points=21, sparsity=3),
    "relu_net": dict(task="relu_net", dim=5, num_points=30, hidden=100),
    # Guo et al. 2024 (arXiv 2310.10616): y = w·Φ(x), Φ a fixed 2-layer residual ReLU MLP
    "representation": dict(task="representation", dim=5, num_points=15, depth=2),
    "conjunction": dict(task="conjunction", dim=10, num_points=30),
    "sparse_parity": dict(task="sparse_parity", dim=10, num_points=30, sparsity=2),
}


def get_config(arg=None):
    args = parse_config_arg(
        arg, preset="linear", steps=2000, mixer="attention", size="small", curriculum=0, dim=0, points=0,
        gla_feature_map="identity", sparsity=0,
    )
    preset = args["preset"]
    if preset not in PRESETS:
        raise ValueError(f"config arg {preset!r}; expected one of {sorted(PRESETS)}")
    data = dict(name="icl_functions") | PRESETS[preset]
    data["dim"] = args["dim"] or data["dim"]  # dim=, points= override the preset's d and n
    data["num_points"] = args["points"] or data["num_points"]
    if args["sparsity"]:  # sparsity= overrides the sparse presets' k (non-zero weights / parity bits)
        if "sparsity" not in data:
            raise ValueError(f"sparsity={args['sparsity']}: preset {preset!r} has no sparsity k")
        data["sparsity"] = args["sparsity"]
    c = base_config()
    c.model_family = "icl_transformer"
    c.objective = "icl_boolean" if data["task"] in ("conjunction", "sparse_parity") else "icl_functions"
    width, layers = (64, 3) if args["size"] == "small" else (256, 12)  # Garg et al.'s tiny / standard
    c.model.update(
        dict(
            embed_dim=width,
            num_layers=layers,
            num_heads=2 if width == 64 else 8,
            max_len=2 * data["num_points"],
            token_mixer=args["mixer"],
            feed_forward="swiglu",
            init_std=0.02,
        )
    )
    # one chunk holds the 2n = 30 tokens of the d = 5 presets (the chunked scan is the slow part on CPU)
    c.model.gla.chunk_size = 32
    c.model.gla.feature_map = args["gla_feature_map"]
    c.model.linear_attention.chunk_size = 32
    c.data.update(data)
    # Garg et al.'s curriculum, scaled to the preset: from ~d/2 dimensions and ~n/3 points, +1 / +2
    # every `curriculum` steps (0: off); boolean and representation tasks grow the prompt length only
    d, n = data["dim"], data["num_points"]
    grows_dims = data["task"] in CURRICULUM_DIM_TASKS
    c.data.curriculum = dict(
        dims_start=max(2, d // 2) if grows_dims else d,
        dims_increment=1,
        points_start=max(2, n // 3),
        points_increment=2,
        every=args["curriculum"],
    )
    c.batch_size = 64
    c.num_steps = args["steps"]
    c.learning_rate = 1e-3
    c.warmup_steps = 100
    c.weight_decay = 0.0
    c.adam_b2 = 0.999
    c.eval_every = max(args["steps"] // 4, 1)
    c.eval_batches = 4
    c.evaluators = ("icl_curve",)
    # a killed run resumes from its last quarter (exactly: every batch is a function of its step)
    c.checkpoint_every = c.eval_every
    c.log_every = 100
    c.progress_bar = False
    return c
