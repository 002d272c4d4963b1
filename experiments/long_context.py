"""Long context: a GLA LM against a softmax-attention LM with equal parameters, T=2048, trained to
equal wall-clock on this CPU (configs/long_context.py).

  python launch/train.py --config=configs/long_context.py:mixer=gla,steps=N_GLA --workdir=runs/long_gla
  python launch/train.py --config=configs/long_context.py:mixer=attention,steps=N_ATT \
      --workdir=runs/long_attention
  python experiments/long_context.py --gla=runs/long_gla --attention=runs/long_attention
  # -> experiments/results/long_context.{json,png}

N_GLA / N_ATT: the steps each model runs in the same time on this CPU (sized from a few timed
steps of both, run concurrently so a shared machine slows both alike). Reads each run's
metrics.jsonl: validation loss against elapsed wall-clock (from the first logged step, so
compilation is excluded; or from --start, the moment both were launched side by side, with a
--pause of both left out; evaluations are included, the same number for both) and against training
tokens, the median
training tokens/s, and XLA's temp memory of each step from benchmarks/long_context_step.py's JSON.
--eval_batches > 0 also evaluates each final checkpoint on that many validation batches
(`train.evaluate.evaluate_checkpoint`).
"""

import json
import os
import statistics

import _results
from absl import app, flags

from jaxformers.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "long_context"
STEP_BENCHMARK = os.path.join(ROOT, "benchmarks", "results", "long_context_step.json")

flags.DEFINE_string("gla", "runs/long_gla", "Workdir of the GLA run.")
flags.DEFINE_string("attention", "runs/long_attention", "Workdir of the softmax-attention run.")
flags.DEFINE_integer("seq", 2048, "Sequence length of both runs.")
flags.DEFINE_float("start", 0.0, "Unix time both runs were launched (0: each run's first logged step).")
flags.DEFINE_list("pause", [], "start,end unix times of a pause of both runs (SIGSTOP), left out.")
flags.DEFINE_integer("eval_batches", 0, "Validation batches of a final evaluation (0: none).")
FLAGS = flags.FLAGS
BENCHMARK_VARIANT = {"gla": "gla", "attention": "softmax_blocks"}


def wall_clock(rows: list[dict]) -> list[float]:
    """Seconds from --start (both runs launched together; default: the run's first logged step)
    to each row of metrics.jsonl, less the part of it inside the --pause interval."""
    start = FLAGS.start or rows[0]["time"]
    pause = [float(t) for t in FLAGS.pause]
    clock = []
    for row in rows:
        paused = max(0.0, min(row["time"], pause[1]) - pause[0]) if pause else 0.0
        clock.append(row["time"] - start - paused)
    return clock


def run_summary(workdir: str, mixer: str) -> dict:
    rows = [r for r in read_metrics(workdir) if r["split"] in ("train", "validation")]
    while rows and rows[0]["split"] != "train":  # elapsed time starts at the first logged step
        rows = rows[1:]
    train = [r for r in rows if r["split"] == "train"]
    valid = [r for r in rows if r["split"] == "validation"]
    if not train or not valid:
        raise SystemExit(f"{workdir}: no finished run (train it with the command in the docstring)")
    for row, t in zip(rows, wall_clock(rows)):
        row["elapsed_s"] = t
    tokens_per_step = train[-1]["tokens_per_s"] / train[-1]["steps_per_s"]
    summary = dict(
        workdir=workdir,
        steps=valid[-1]["step"],
        tokens_per_step=tokens_per_step,
        tokens_per_s=statistics.median(r["tokens_per_s"] for r in train[1:]),
        wall_s=valid[-1]["elapsed_s"],
        final_loss=valid[-1]["loss"],
        validation=[
            dict(step=r["step"], tokens=r["step"] * tokens_per_step, elapsed_s=r["elapsed_s"], loss=r["loss"])
            for r in valid
        ],
        train=[dict(step=r["step"], elapsed_s=r["elapsed_s"], loss=r["loss"]) for r in train],
    )
    if os.path.exists(STEP_BENCHMARK):
        with open(STEP_BENCHMARK) as f:
            row = json.load(f)["lengths"].get(str(FLAGS.seq), {}).get(BENCHMARK_VARIANT[mixer])
        if row:
            summary.update(temp_mib=row["temp_mib"], params=row["params"], benchmark_step_s=row["step_s"])
    if FLAGS.eval_batches:
        from jaxformers.train.evaluate import evaluate_checkpoint

        metrics = evaluate_checkpoint(workdir, [{}], eval_batches=FLAGS.eval_batches)[0]
        summary["final_eval"] = dict(batches=FLAGS.eval_batches, loss=float(metrics["loss"]))
    return summary


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_tokens) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for mixer, run in results.items():
        v = run["validation"]
        label = f"{mixer} ({run['steps']} steps)"
        ax_time.plot([r["elapsed_s"] / 60 for r in v], [r["loss"] for r in v], "o-", label=label)
        ax_tokens.plot([r["tokens"] / 1e6 for r in v], [r["loss"] for r in v], "o-", label=mixer)
    ax_time.set_xlabel("wall-clock since both launched side by side (min, shared 2-core CPU)")
    ax_tokens.set_xlabel("training tokens (M)")
    ax_time.set_ylabel("validation loss (nats/byte)")
    for ax in (ax_time, ax_tokens):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"T={FLAGS.seq}, d=128, 4 layers, equal parameters")
    fig.tight_layout()
    return _results.save_figure(fig, NAME)


def main(argv):
    del argv
    results = {"gla": run_summary(FLAGS.gla, "gla"), "attention": run_summary(FLAGS.attention, "attention")}
    for mixer, run in results.items():
        _results.save_variant(NAME, mixer, run)
        print(
            f"{mixer:9s} steps {run['steps']:4d}  wall {run['wall_s'] / 60:5.1f} min  "
            f"{run['tokens_per_s']:6.0f} tok/s  final validation {run['final_loss']:.4f}"
            + (f"  temp {run['temp_mib']:.0f} MiB" if "temp_mib" in run else "")
            + (f"  eval {run['final_eval']['loss']:.4f}" if "final_eval" in run else "")
        )
    print("figure:", plot(results))


if __name__ == "__main__":
    app.run(main)
