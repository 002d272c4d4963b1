"""In-context vs in-weights learning against burstiness (Chan et al. 2022, arXiv 2205.05055, Fig. 2).

  nice -n 19 python experiments/icl_bursty.py --burstiness=0,2,4 --steps=800 --classes=1024
      -> experiments/results/icl_bursty.json (variant key "b<B>/<steps>_k<K>[_z<alpha>]")
         and icl_bursty_<steps>_k<K>[_z<alpha>].png

Trains configs/icl_bursty.py (train.train_and_evaluate; workdirs under --root, a finished run is
reused) once per burstiness B at equal model, steps and data otherwise, and records the "icl_bursty"
evaluator at every evaluation: ICL accuracy (2-way 4-shot on held-out classes, labels drawn per
prompt; chance 0.5 for a model that picks one of the two context labels, 2/32 for one that ignores
the context) and IWL accuracy (training classes, no context item of the query's class; chance 1/32).
"""

import os

import _results
from absl import app, flags

NAME = "icl_bursty"

flags.DEFINE_list("burstiness", ["0", "2", "4"], "Burstiness levels B (0 or divisors of 8).")
flags.DEFINE_integer("steps", 800, "Training steps per level.")
flags.DEFINE_integer("classes", 1024, "Training classes K (a multiple of the 32 labels).")
flags.DEFINE_float("zipf", 0.0, "Zipf exponent α of the class distribution.")
flags.DEFINE_integer("eval_every", 200, "Evaluate (ICL and IWL accuracy) every this many steps.")
flags.DEFINE_string("root", "runs/icl_bursty", "Parent of the workdirs.")
FLAGS = flags.FLAGS


def plot(rows: list, figure: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    bs = [r["burstiness"] for r in rows]
    a.plot(bs, [r["icl_accuracy"] for r in rows], "o-", label="ICL: held-out classes, 2-way 4-shot")
    a.plot(bs, [r["iwl_accuracy"] for r in rows], "s-", label="IWL: training classes, no support")
    a.axhline(0.5, ls=":", c="gray", lw=1)
    a.axhline(1 / 32, ls=":", c="gray", lw=1)
    a.set(
        xlabel="burstiness B (context items of the query's class)",
        ylabel="accuracy",
        ylim=(0, 1.02),
        xticks=bs,
        title=f"after {rows[0]['steps']} steps",
    )
    for r in rows:
        steps = [p["step"] for p in r["trajectory"]]
        line = b.plot(
            steps, [p["icl_accuracy"] for p in r["trajectory"]], "o-", label=f"ICL, B={r['burstiness']}"
        )
        b.plot(
            steps,
            [p["iwl_accuracy"] for p in r["trajectory"]],
            "s--",
            c=line[0].get_color(),
            label=f"IWL, B={r['burstiness']}",
        )
    b.set(xlabel="training step", ylabel="accuracy", ylim=(0, 1.02), title="during training")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _results.save_figure(fig, figure)


def main(argv):
    del argv
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics

    suffix = f"{FLAGS.steps}_k{FLAGS.classes}" + (f"_z{FLAGS.zipf:g}" if FLAGS.zipf else "")
    rows = []
    for b in [int(v) for v in FLAGS.burstiness]:
        arg = f"burstiness={b},steps={FLAGS.steps},classes={FLAGS.classes},zipf={FLAGS.zipf}"
        config = _results.config(NAME, arg)
        config.eval_every = FLAGS.eval_every
        workdir = os.path.join(FLAGS.root, f"b{b}_{suffix}")
        done = [r for r in read_metrics(workdir, "validation") if r["step"] == FLAGS.steps]
        final = done[-1] if done else train_and_evaluate(config, workdir)  # a finished run is reused
        trajectory = [
            {k: r[k] for k in ("step", "loss", "accuracy", "icl_accuracy", "iwl_accuracy")}
            for r in read_metrics(workdir, "validation")
        ]
        row = dict(
            burstiness=b,
            steps=FLAGS.steps,
            classes=FLAGS.classes,
            zipf_alpha=FLAGS.zipf,
            loss=float(final["loss"]),
            train_distribution_accuracy=float(final["accuracy"]),
            icl_accuracy=float(final["icl_accuracy"]),
            iwl_accuracy=float(final["iwl_accuracy"]),
            trajectory=trajectory,
        )
        rows.append(row)
        _results.save_variant(NAME, f"b{b}/{suffix}", row)
        print(f"B={b}: ICL {row['icl_accuracy']:.3f}  IWL {row['iwl_accuracy']:.3f}  loss {row['loss']:.3f}")
    print("figure:", plot(rows, f"{NAME}_{suffix}"))


if __name__ == "__main__":
    app.run(main)
