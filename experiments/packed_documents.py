"""The default run with and without document masking: validation loss of configs/default.py
(600 steps) when packed documents are masked from each other (data.segment_ids=True, the default:
attention masks, per-document RoPE positions) and when they are not (the leaky packing of runs
before the option).

  python launch/train.py --workdir=runs/packed_masked
  python launch/train.py --workdir=runs/packed_leaky --config.data.segment_ids=False
  python experiments/packed_documents.py --masked=runs/packed_masked --leaky=runs/packed_leaky
  # -> experiments/results/packed_documents.{json,png}

Reads each run's metrics.jsonl (training it first with train.train_and_evaluate if the workdir has
no finished run), then evaluates each final checkpoint on the validation split both ways
(`train.evaluate.evaluate_checkpoint`, data.segment_ids True and False, --eval_batches, by default
the whole split: its first 8 batches lie inside one file). Both settings score the
same targets (every byte of every window); masked, a byte sees only its own document, so the
masked run evaluated masked is the honest number.
"""

import math
import os

import _results
from absl import app, flags

from jaxformers.train.metrics import read_metrics

NAME = "packed_documents"

flags.DEFINE_string("masked", "runs/packed_masked", "Workdir of the data.segment_ids=True run.")
flags.DEFINE_string("leaky", "runs/packed_leaky", "Workdir of the data.segment_ids=False run.")
flags.DEFINE_integer(
    "eval_batches",
    344,
    "Validation batches of the final evaluations (344 of 16 x "
    "128: the whole split; the runs' own evaluations use the first 8).",
)
FLAGS = flags.FLAGS


def get_config(segment_ids: bool):
    config = _results.config("default", "small")
    config.data.segment_ids = segment_ids
    return config


def curves(workdir: str, segment_ids: bool) -> dict:
    config = get_config(segment_ids)
    valid = read_metrics(workdir, "validation") if os.path.exists(workdir) else []
    if not valid or valid[-1]["step"] < config.num_steps:
        from jaxformers.train import train_and_evaluate

        train_and_evaluate(config, workdir)
        valid = read_metrics(workdir, "validation")
    train = [r for r in read_metrics(workdir, "train") if math.isfinite(r["loss"])]
    from jaxformers.train.evaluate import evaluate_checkpoint

    settings = [{"data.segment_ids": True}, {"data.segment_ids": False}]
    rows = evaluate_checkpoint(workdir, settings, eval_batches=FLAGS.eval_batches)
    evaluated = {("masked" if r["setting"]["data.segment_ids"] else "leaky"): r["loss"] for r in rows}
    return {
        "final_validation_loss_evaluated": evaluated,
        "eval_batches": FLAGS.eval_batches,
        "workdir": workdir,
        "segment_ids": segment_ids,
        "num_steps": config.num_steps,
        "train": {"step": [r["step"] for r in train], "loss": [r["loss"] for r in train]},
        "validation": {"step": [r["step"] for r in valid], "loss": [r["loss"] for r in valid]},
    }


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, r in results.items():
        v = r["validation"]
        ax.plot(v["step"], v["loss"], "o-", label=f"{name} (validation {v['loss'][-1]:.3f})")
    ax.set(
        xlabel="step",
        ylabel="validation nats / byte",
        title="configs/default.py: packed documents masked or not",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    for key, workdir, segment_ids in (("masked", FLAGS.masked, True), ("leaky", FLAGS.leaky, False)):
        results = _results.save_variant(NAME, key, curves(workdir, segment_ids))
        r = results[key]
        print(
            f"trained {key:7s} validation loss after {r['validation']['step'][-1]} steps: "
            f"{r['validation']['loss'][-1]:.4f}; evaluated masked "
            f"{r['final_validation_loss_evaluated']['masked']:.4f}, leaky "
            f"{r['final_validation_loss_evaluated']['leaky']:.4f}"
        )
    print("wrote", _results.save_figure(plot(results), NAME))


if __name__ == "__main__":
    app.run(main)
