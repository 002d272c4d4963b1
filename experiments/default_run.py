"""The default run's curves: training and validation loss of configs/default.py against steps.

  python launch/train.py --workdir=runs/default               # the main job (600 steps)
  python experiments/default_run.py --workdir=runs/default    # -> experiments/results/default_run.{json,png}

Reads the run's metrics.jsonl (training it first with train.train_and_evaluate if the workdir has no
finished run) and records the curves as variant --name of experiments/results/default_run.json.
"""

import math
import os

import _results
from absl import app, flags

from jaxformers.train.metrics import read_metrics

NAME = "default_run"
UNIGRAM_ENTROPY = 3.25  # nats/byte of the default corpus (the README's reference line)

flags.DEFINE_string("workdir", "runs/default", "Workdir of the default run.")
flags.DEFINE_string("preset", "small", "configs/default.py preset.")
flags.DEFINE_string("name", "small_600steps", "Variant key in the result JSON.")
FLAGS = flags.FLAGS


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, r in results.items():
        ax.plot(r["train"]["step"], r["train"]["loss"], alpha=0.6, label=f"{name}: train")
        ax.plot(r["validation"]["step"], r["validation"]["loss"], "o-",
                label=f"{name}: validation ({r['validation']['loss'][-1]:.3f})")
    ax.axhline(UNIGRAM_ENTROPY, ls="--", c="gray", label=f"unigram entropy ({UNIGRAM_ENTROPY} nats)")
    ax.set(xlabel="step", ylabel="nats / byte", title="configs/default.py on the stdlib sources")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    config = _results.config("default", FLAGS.preset)
    valid = read_metrics(FLAGS.workdir, "validation") if os.path.exists(FLAGS.workdir) else []
    if not valid or valid[-1]["step"] < config.num_steps:
        from jaxformers.train import train_and_evaluate

        train_and_evaluate(config, FLAGS.workdir)
        valid = read_metrics(FLAGS.workdir, "validation")
    train = [r for r in read_metrics(FLAGS.workdir, "train") if math.isfinite(r["loss"])]
    result = {"workdir": FLAGS.workdir, "preset": FLAGS.preset, "num_steps": config.num_steps,
              "train": {"step": [r["step"] for r in train], "loss": [r["loss"] for r in train]},
              "validation": {"step": [r["step"] for r in valid], "loss": [r["loss"] for r in valid]}}
    results = _results.save_variant(NAME, FLAGS.name, result)
    for step, loss in zip(result["validation"]["step"], result["validation"]["loss"]):
        print(f"step {step:5d}  validation loss {loss:.4f}")
    print("wrote", _results.save_figure(plot(results), NAME), f"(variant {FLAGS.name!r})")


if __name__ == "__main__":
    app.run(main)
