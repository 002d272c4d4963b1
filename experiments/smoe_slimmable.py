"""The self-slimmable curve (Chen et al. 2023, §3.2): validation loss of each trained model at k = 1..N.

  python launch/train.py --config=configs/smoe_dropout.py:variant=dense,steps=600 \
      --workdir=runs/moe_cmp_dense_ffn
  python launch/train.py --config=configs/smoe_dropout.py:variant=learned,steps=600 \
      --workdir=runs/moe_cmp_moe_learned
  python launch/train.py --config=configs/smoe_dropout.py:steps=600 --workdir=runs/moe_cmp_smoe_dropout
  python experiments/smoe_slimmable.py --runs=runs/moe_cmp --eval_batches=32
  # another seed: the same training commands with --config.seed=1 into runs/moe_cmp_s1_*, then
  python experiments/smoe_slimmable.py --runs=runs/moe_cmp_s1 --seed=1

Evaluates `<runs>_<name>` for each of dense_ffn, moe_learned, smoe_dropout at every k (the dense
model once) and records the table, with the validation curves of training, as variant "seed<N>" of
experiments/results/smoe_slimmable.json; smoe_slimmable.png plots loss vs k for every seed.
"""

import _results
from absl import app, flags

from jaxformers.train import checkpoint as ckpt
from jaxformers.train.metrics import read_metrics

NAME = "smoe_slimmable"
NAMES = {"dense_ffn": "(a) dense FFN", "moe_learned": "(b) learned top-2",
         "smoe_dropout": "(c) SMoE-Dropout"}
COLORS = {"dense_ffn": "tab:blue", "moe_learned": "tab:orange", "smoe_dropout": "tab:green"}

flags.DEFINE_string("runs", "runs/moe_cmp", "Workdir prefix: <runs>_dense_ffn, <runs>_smoe_dropout, ...")
flags.DEFINE_string("ks", "1,2,4,8", "Active experts to evaluate.")
flags.DEFINE_integer("eval_batches", 32, "Validation batches per evaluation.")
flags.DEFINE_integer("seed", 0, "The runs' --config.seed (the variant key).")
FLAGS = flags.FLAGS


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for (seed, result), style in zip(results.items(), ("-", "--", ":")):
        ks = result["ks"]
        for name, r in result["table"].items():
            color = COLORS[name]
            ax1.plot(ks, r["loss"], "o" + style, color=color, label=f"{NAMES[name]}, {seed}")
            steps, losses = zip(*r["curve"]) if r["curve"] else ((), ())
            ax2.plot(steps, losses, style, color=color, label=f"{NAMES[name]}, {seed}")
    ks = next(iter(results.values()))["ks"]
    ax1.set(xscale="log", xticks=ks, xticklabels=[str(k) for k in ks],
            xlabel="active experts k at evaluation", ylabel="validation loss (nats/byte)",
            title="self-slimmable: loss vs k")
    ax1.minorticks_off()
    ax2.set(xlabel="training step", ylabel="validation loss", title="training (k schedule)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    from jaxformers.train.evaluate import evaluate_checkpoint, moe_rows

    ks = [int(k) for k in FLAGS.ks.split(",")]
    table = {}
    for name in NAMES:
        workdir = f"{FLAGS.runs}_{name}"
        if ckpt.latest_step(workdir) is None:
            print(f"skipping {workdir}: no checkpoint")
            continue
        config, _, _ = ckpt.load_variables(workdir)
        rows = evaluate_checkpoint(workdir, moe_rows(config.model, ks), eval_batches=FLAGS.eval_batches)
        curve = [(r["step"], r["loss"]) for r in read_metrics(workdir, "validation")]
        table[name] = dict(step=rows[0]["step"], loss=[r["loss"] for r in rows],
                           accuracy=[r["accuracy"] for r in rows], curve=curve)
    print(f"validation loss (nats/byte, {FLAGS.eval_batches} batches) at k active experts")
    print(f"{'model':>20} " + " ".join(f"{'k=' + str(k):>8}" for k in ks))
    for name, r in table.items():
        print(f"{NAMES[name]:>20} " + " ".join(f"{v:8.4f}" for v in r["loss"]))
    results = _results.save_variant(NAME, f"seed{FLAGS.seed}", dict(
        ks=ks, eval_batches=FLAGS.eval_batches, runs=FLAGS.runs, table=table))
    print("wrote", _results.save_figure(plot(results), NAME, dpi=120), f"(variant 'seed{FLAGS.seed}')")


if __name__ == "__main__":
    app.run(main)
