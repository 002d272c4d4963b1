"""TokenFormer growth vs training the large model from scratch (Wang et al. 2025 experiment).

  python experiments/tokenformer_growth.py --small_steps=300 --grow_steps=150 --workdir=runs/tf_exp

1. "small": configs/tokenformer.py:small (4 layers, d=128, 64/256 tokens) for S steps.
2. "grown": configs/tokenformer.py:large (4x the tokens) initialised with `tokenformer_grow`
   (zero new keys, frozen tau) from the small checkpoint, trained B more steps (fresh optimizer,
   restarted warm-up). Evaluated once before its first step: must equal the small model's loss.
3. "scratch_B": the large model from scratch for B steps; "scratch_total": from scratch for the
   total budget, i.e. the number of large steps whose FLOPs equal the small run's + B large steps.

Compute is XLA's count of training FLOPs (metrics.jsonl "flops"); the grown curve's cumulative
compute includes the small model's. Prints a table, writes experiments/results/tokenformer_growth
.json and a loss-vs-compute plot next to it.
"""

import json
import os

import _results
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_integer("small_steps", 300, "S: steps of the small model.")
flags.DEFINE_integer("grow_steps", 150, "B: steps after growth (and of scratch_B).")
flags.DEFINE_string("workdir", "runs/tf_exp", "Parent folder of the four runs.")
flags.DEFINE_string("out", os.path.join(ROOT, "experiments", "results", "tokenformer_growth"),
                    "JSON/PNG path stem.")
flags.DEFINE_string("size", "small", "Small preset (its grown preset is 'large' or 'tiny_large').")
flags.DEFINE_string("stages", "small,grown,scratch_B,scratch_total,report",
                    "Comma-separated stages (each resumable; run them in separate processes).")
FLAGS = flags.FLAGS

GROWN_OF = {"small": "large", "tiny": "tiny_large"}


def _config(size, steps):
    c = _results.config("tokenformer", size)
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


def _grow_config(big, b, root):
    c = _config(big, b)
    c.init_from.workdir = f"{root}/small"
    c.init_from.transform = "tokenformer_grow"
    return c


def _loss_at_growth(big, b, root):
    """Validation loss of the grown model before any step (cached in grown/at_growth.json)."""
    from jaxformers.train import train_and_evaluate

    path = f"{root}/grown/at_growth.json"
    if not os.path.exists(path):
        loss = train_and_evaluate(_grow_config(big, b, f"{root}"), f"{root}/at_growth",
                                  stop_at_step=0)["loss"]
        os.makedirs(f"{root}/grown", exist_ok=True)
        with open(path, "w") as f:
            json.dump({"loss": loss}, f)
    with open(path) as f:
        return json.load(f)["loss"]


def _total_steps(s, b, root):
    """Large steps whose FLOPs equal S small steps + B large steps (measured per-step FLOPs)."""
    from jaxformers.train.metrics import read_metrics

    small = read_metrics(f"{root}/small", "train")[-1]
    grown = read_metrics(f"{root}/grown", "train")[-1]
    return b + round(small["flops"] / (grown["flops"] / grown["step"]))


def main(argv):
    del argv
    from jaxformers.train import train_and_evaluate

    s, b, root = FLAGS.small_steps, FLAGS.grow_steps, FLAGS.workdir
    big = GROWN_OF[FLAGS.size]
    stages = FLAGS.stages.split(",")
    if "small" in stages:
        train_and_evaluate(_config(FLAGS.size, s), f"{root}/small")
    if "grown" in stages:
        _loss_at_growth(big, b, root)
        train_and_evaluate(_grow_config(big, b, root), f"{root}/grown")
    if "scratch_B" in stages:
        train_and_evaluate(_config(big, b), f"{root}/scratch_B")
    if "scratch_total" in stages:
        train_and_evaluate(_config(big, _total_steps(s, b, root)), f"{root}/scratch_total")
    if "report" in stages:
        report(s, b, root, big)


def report(s, b, root, big):
    small = _curve(f"{root}/small")
    small_flops = small[-1]["flops"]
    results = {"small_steps": s, "grow_steps": b, "size": FLAGS.size,
               "scratch_total_steps": _total_steps(s, b, root),
               "loss_before_growth": small[-1]["loss"],
               "loss_after_growth": _loss_at_growth(big, b, root)}
    grown = [dict(step=0, loss=results["loss_after_growth"], flops=small_flops)]
    results["curves"] = {
        "small": small, "grown": grown + _curve(f"{root}/grown", small_flops),
        "scratch_B": _curve(f"{root}/scratch_B"),
        "scratch_total": _curve(f"{root}/scratch_total"),
    }
    print(f"loss before growth {results['loss_before_growth']:.6f}, right after "
          f"{results['loss_after_growth']:.6f}")
    print(f"{'run':15s} {'steps':>6s} {'final loss':>11s} {'FLOPs (own)':>12s} {'FLOPs (cum.)':>13s}")
    planned = {"small": s, "grown": b, "scratch_B": b, "scratch_total": results["scratch_total_steps"]}
    results["curves"] = {k: v for k, v in results["curves"].items() if v}
    results["unfinished"] = [k for k, v in results["curves"].items()
                             if v[-1]["step"] < planned[k]]  # stopped early (CPU time ran out)
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
        label = name + (" (unfinished)" if name in results.get("unfinished", ()) else "")
        ax.plot([p["flops"] for p in curve], [p["loss"] for p in curve], styles[name], marker=".",
                label=label)
    ax.set_xlabel("cumulative training FLOPs (XLA count)")
    ax.set_ylabel("validation loss (nats/byte)")
    ax.set_title(f"TokenFormer growth 4x tokens (S={results['small_steps']}, "
                 f"B={results['grow_steps']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    app.run(main)
