"""MLM-U with the paper's PAST encoder-decoder written in plain PyTorch, on jaxformers' maze data.

  python experiments/maze_torch_past.py --grid=3 --steps=2000 --jax_run=runs/maze_mlmu_3_small
  python experiments/maze_torch_past.py --grid=5 --steps=1500 --stop_after=750 --num_train=100000 \
      --jax_run=runs/maze_mlmu_5_small

A fidelity check of models/encdec.py + objectives/mlm_u.py (the PyTorch model: _torch_past.py).
Sizes, data and optimiser come from configs/maze_mlmu.py (the same preset the JAX run used): the
same maze splits, AdamW with the config's learning-rate schedule (`train.state.learning_rate_schedule`),
clip 1, weight decay on matrices only. It scores held-out mazes the same way (greedy, one token per
forward pass, left to right; exact match of the path region). If this model learns much faster than
the JAX one at the same budget, the JAX implementation or its architecture choices are at fault.
Records variant "<n>x<n>_d<d>_l<layers>_<last>of<steps>" of experiments/results/maze_torch_past.json
and redraws maze_torch_past.png. Needs PyTorch, which is not a jaxformers dependency.
"""

import json
import time

import _results
import numpy as np
import torch
import torch.nn.functional as F
from _torch_past import PAST, greedy_exact_match, mlm_u_batch
from absl import app, flags
from torch import nn

from jaxformers.data import mazes
from jaxformers.train.state import learning_rate_schedule

NAME = "maze_torch_past"

flags.DEFINE_integer("grid", 3, "Maze size n (n x n).")
flags.DEFINE_string("size", "small", "configs/maze_mlmu.py size preset.")
flags.DEFINE_integer("steps", 2000, "Length of the learning-rate schedule.")
flags.DEFINE_integer("stop_after", 0, "End early (0: at --steps).")
flags.DEFINE_integer("batch_size", 64, "Mazes per step.")
flags.DEFINE_float("lr", 1e-3, "Peak learning rate.")
flags.DEFINE_integer("num_train", 20_000, "Training mazes.")
flags.DEFINE_integer("eval_every", 250, "Steps between held-out evaluations.")
flags.DEFINE_integer("eval_mazes", 256, "Held-out mazes per evaluation.")
flags.DEFINE_integer("seed", 0, "Torch and batch seed.")
flags.DEFINE_integer("threads", 1, "torch.set_num_threads.")
flags.DEFINE_string("jax_run", "", "A jaxformers MLM-U workdir to tabulate beside.")
FLAGS = flags.FLAGS


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.4), squeeze=False)
    for ax, (name, result) in zip(axes.flat, results.items()):
        for key, label in (("torch_past", "PyTorch PAST"), ("jaxformers", "jaxformers encdec")):
            curve = result.get(key, [])
            ax.plot([r["step"] for r in curve], [r["exact_match"] for r in curve], "o-", label=label)
        ax.set(title=name, xlabel="step", ylabel="held-out exact match", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    args = FLAGS
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = _results.config("maze_mlmu", f"grid={args.grid},size={args.size},steps={args.steps}")
    config.learning_rate, config.data.num_train = args.lr, args.num_train
    o = mazes.data_options(config.data)
    n, length, rng = o["n"], o["length"], np.random.default_rng(args.seed)
    splits = mazes.maze_splits(n, o["num_train"], o["num_validation"], o["seed"])
    train = mazes.MazeSource(splits["train"], n, length).tokens
    held_out = mazes.MazeSource(splits["validation"][: args.eval_mazes], n, length).tokens
    m = config.model
    model = PAST(m.vocab_size, m.embed_dim, m.num_heads, m.num_layers)
    learning_rates = np.asarray(learning_rate_schedule(config)(np.arange(args.steps)))
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 1e-4},
                             {"params": others, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, 0.999))
    query = torch.arange(mazes.prefix_len(n), length)
    curve, start = [], time.perf_counter()
    last = args.stop_after or args.steps
    for step in range(1, last + 1):
        tokens = train[rng.integers(0, len(train), args.batch_size)]
        visible, predict = mlm_u_batch(tokens, n, rng)
        logits = model(torch.as_tensor(tokens.astype(np.int64)), torch.as_tensor(visible), query)
        target = torch.as_tensor(tokens[:, query.numpy()].astype(np.int64))
        weight = torch.as_tensor(predict[:, query.numpy()].astype(np.float32))
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        loss = (ce * weight).sum() / weight.sum().clamp(min=1)
        for group in opt.param_groups:
            group["lr"] = float(learning_rates[step - 1])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == last:
            model.eval()
            exact, token_acc = greedy_exact_match(model, held_out, n)
            model.train()
            curve.append({"step": step, "loss": loss.item(), "exact_match": exact,
                          "token_accuracy": token_acc, "wall_s": time.perf_counter() - start})
            print(json.dumps(curve[-1]), flush=True)
    names = ("grid", "size", "steps", "stop_after", "batch_size", "lr", "num_train", "eval_every",
             "eval_mazes", "seed", "threads", "jax_run")
    result = {"args": {k: getattr(args, k) for k in names},
              "parameters": sum(p.numel() for p in model.parameters()), "torch_past": curve}
    if args.jax_run:
        from jaxformers.train.metrics import read_metrics

        result["jaxformers"] = [
            {"step": r["step"], "exact_match": r["nav_exact_match"],
             "token_accuracy": r["nav_token_accuracy"]}
            for r in read_metrics(args.jax_run, "validation") if "nav_exact_match" in r]
    variant = f"{n}x{n}_d{m.embed_dim}_l{m.num_layers}_{last}of{args.steps}"
    results = _results.save_variant(NAME, variant, result)
    print("wrote", _results.save_figure(plot(results), NAME))


if __name__ == "__main__":
    app.run(main)
