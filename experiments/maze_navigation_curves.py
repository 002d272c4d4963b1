"""Held-out navigation accuracy over training, MLM-U vs next token (reads two runs' metrics).

  python experiments/maze_navigation_curves.py --mlmu=runs/maze_mlmu_5_tiny \
      --ntp=runs/maze_ntp_5_tiny --name=5x5_tiny

Records the two runs' validation curves (nav_exact_match, nav_token_accuracy, loss, training FLOPs)
as variant --name of experiments/results/maze_navigation_curves.json and redraws
maze_navigation_curves.png: held-out exact match against steps, one panel per variant.
"""

import matplotlib

matplotlib.use("Agg")
import _results  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxformers.train.metrics import read_metrics  # noqa: E402

KEYS = ("nav_exact_match", "nav_token_accuracy", "loss", "accuracy")
NAME = "maze_navigation_curves"

flags.DEFINE_string("mlmu", None, "Workdir of the MLM-U run.", required=True)
flags.DEFINE_string("ntp", None, "Workdir of the next-token run.", required=True)
flags.DEFINE_string("name", "5x5_small", "Variant key in the result JSON (grid and preset).")
FLAGS = flags.FLAGS


def plot(results: dict):
    n = len(results)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, result) in zip(axes.flat, results.items()):
        for label, curve in result["curves"].items():
            ax.plot([r["step"] for r in curve], [r["nav_exact_match"] for r in curve], "o-", label=label)
        ax.set(title=name, xlabel="step", ylabel="held-out exact match (greedy)", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    curves = {}
    for label, workdir in (("MLM-U", FLAGS.mlmu), ("next token", FLAGS.ntp)):
        rows = read_metrics(workdir, "validation")
        curves[label] = [{"step": r["step"], "flops": r.get("flops", 0.0),
                          **{k: r[k] for k in KEYS if k in r}} for r in rows]
    results = _results.save_variant(NAME, FLAGS.name,
                                    {"runs": {"mlmu": FLAGS.mlmu, "ntp": FLAGS.ntp}, "curves": curves})
    for label, rows in curves.items():
        print(label)
        for r in rows:
            print(f"  step {r['step']:>5}  exact {r['nav_exact_match']:.3f}  "
                  f"token {r['nav_token_accuracy']:.3f}  loss {r['loss']:.3f}")
    print("wrote", _results.save_figure(plot(results), NAME), f"(variant {FLAGS.name!r})")


if __name__ == "__main__":
    app.run(main)
