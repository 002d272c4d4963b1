"""TokenFormer growth vs training the large model from scratch (methods.md §1.6 experiment).

  python benchmarks/tokenformer_growth.py --small_steps=300 --grow_steps=150 --workdir=runs/tf_exp

1. "small": configs/tokenformer.py:small (4 layers, d=128, 64/256 tokens) for S steps.
2. "grown": configs/tokenformer.py:large (4x the tokens) initialised with `tokenformer_grow`
   (zero new keys, frozen tau) from the small checkpoint, trained B more steps (fresh optimizer,
   restarted warm-up). Evaluated once before its first step: must equal the small model's loss.
3. "scratch_B": the large model from scratch for B steps; "scratch_total": from scratch for the
   total budget, i.e. the number of large steps whose FLOPs equal the small run's + B large steps.

Compute is XLA's count of training FLOPs (metrics.jsonl "flops"); the grown curve's cumulative
compute includes the small model's. Prints a table, writes benchmarks/results/tokenformer_growth
.json and a loss-vs-compute plot next to it.
"""

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("small_steps", 300, "S: steps of the small model.")
flags.DEFINE_integer("grow_steps", 150, "B: steps after growth (and of scratch_B).")
flags.DEFINE_string("workdir", "runs/tf_exp", "Parent folder of the four runs.")
flags.DEFINE_string("out", "benchmarks/results/tokenformer_growth", "JSON/PNG path stem.")
flags.DEFINE_string("size", "small", "Small preset (its grown preset is 'large' or 'tiny_large').")
FLAGS = flags.FLAGS

GROWN_OF = {"small": "large", "tiny": "tiny_large"}


def _config(size, steps):
    from configs.tokenformer import get_config

    c = get_config(size)
    c.num_steps = steps
    c.warmup_steps = max(10, steps // 20)
    c.eval_every = max(10, steps // 8)
    c.checkpoint_every = steps  # the final state only
    c.keep_checkpoints = 1
    c.progress_bar = False
    return c


def _curve(workdir, flops_offset=0.0):
    from jaxformers.train.metrics import read_metrics

    rows = read_metrics(workdir, "validation")
    return [dict(step=r["step"], loss=r["loss"], flops=r["flops"] + flops_offset) for r in rows]


def main(argv):
    del argv
    from jaxformers.train import train_and_evaluate

    s, b, root = FLAGS.small_steps, FLAGS.grow_steps, FLAGS.workdir
    big = GROWN_OF[FLAGS.size]
    results = {"small_steps": s, "grow_steps": b, "size": FLAGS.size}

    small_metrics = train_and_evaluate(_config(FLAGS.size, s), f"{root}/small")
    small = _curve(f"{root}/small")
    results["loss_before_growth"] = small_metrics["loss"]

    grow_cfg = _config(big, b)
    grow_cfg.init_from.workdir = f"{root}/small"
    grow_cfg.init_from.transform = "tokenformer_grow"
    at_growth = train_and_evaluate(grow_cfg, f"{root}/grown", stop_at_step=0)
    results["loss_after_growth"] = at_growth["loss"]
    print(f"loss before growth {small_metrics['loss']:.6f}, right after {at_growth['loss']:.6f}",
          flush=True)
    train_and_evaluate(grow_cfg, f"{root}/grown")
    small_flops = small[-1]["flops"]
    grown = [dict(step=0, loss=at_growth["loss"], flops=small_flops)]
    grown += _curve(f"{root}/grown", small_flops)

    train_and_evaluate(_config(big, b), f"{root}/scratch_B")
    # Equal total compute: N large steps cost what S small + B large steps cost.
    large_step_flops = (grown[-1]["flops"] - small_flops) / b
    total_steps = b + round(small_flops / large_step_flops)
    results["scratch_total_steps"] = total_steps
    train_and_evaluate(_config(big, total_steps), f"{root}/scratch_total")
    results["curves"] = {
        "small": small, "grown": grown,
        "scratch_B": _curve(f"{root}/scratch_B"),
        "scratch_total": _curve(f"{root}/scratch_total"),
    }

    print(f"{'run':15s} {'steps':>6s} {'final loss':>11s} {'FLOPs (own)':>12s} {'FLOPs (cum.)':>13s}")
    for name, curve in results["curves"].items():
        own = curve[-1]["flops"] - (small_flops if name == "grown" else 0.0)
        print(f"{name:15s} {curve[-1]['step']:6d} {curve[-1]['loss']:11.4f} {own:12.3e} "
              f"{curve[-1]['flops']:13.3e}")
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    with open(FLAGS.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    plot(results, FLAGS.out + ".png")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"small": "C0-", "grown": "C1-", "scratch_B": "C2--", "scratch_total": "C3-"}
    for name, curve in results["curves"].items():
        ax.plot([p["flops"] for p in curve], [p["loss"] for p in curve], styles[name], marker=".",
                label=name)
    ax.set_xlabel("cumulative training FLOPs (XLA count)")
    ax.set_ylabel("validation loss (nats/byte)")
    ax.set_title(f"TokenFormer growth 4x tokens (S={results['small_steps']}, "
                 f"B={results['grow_steps']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    app.run(main)
