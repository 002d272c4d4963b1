"""MLM-U vs next token with fewer training mazes: held-out exact match against the size of the
training set, at one step budget (Nolte et al. 2024 §4: MLM-U "about 4x more sample-efficient").

  for n in 1000 5000; do for o in mlmu ntp; do
    python launch/train.py --config=configs/maze_$o.py:grid=5,size=small,steps=1500 \\
      --workdir=runs/maze_${o}_5_small_n$n --config.learning_rate=0.001 \\
      --config.data.eval_mazes=256 --config.eval_every=250 --config.data.num_train=$n
    python launch/evaluate.py --workdir=runs/maze_${o}_5_small_n$n \\
      --override='data.eval_split="train"' --output=runs/maze_${o}_5_small_n$n/train_split_eval.json
  done; done
  python experiments/maze_sample_efficiency.py --name=seed0 \\
      --run=1000:runs/maze_mlmu_5_small_n1k:runs/maze_ntp_5_small_n1k \\
      --run=5000:runs/maze_mlmu_5_small_n5k:runs/maze_ntp_5_small_n5k \\
      --curves=100000:5x5_small

Each --run is N:mlmu_workdir:ntp_workdir (validation curves from metrics.jsonl; the training-split
exact match from train_split_eval.json when present); --curves=N:variant reads that variant of
experiments/results/maze_navigation_curves.json instead. Records variant --name (a seed) of
experiments/results/maze_sample_efficiency.json and redraws maze_sample_efficiency.png.
"""

import json
import os

import matplotlib

matplotlib.use("Agg")
import _results  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxformers.train.metrics import read_metrics  # noqa: E402

LABELS = {"mlmu": "MLM-U", "ntp": "next token"}
COLORS = {"mlmu": "tab:blue", "ntp": "tab:orange"}
NAME = "maze_sample_efficiency"

flags.DEFINE_multi_string("run", [], "N:mlmu_workdir:ntp_workdir")
flags.DEFINE_multi_string("curves", [], "N:variant of maze_navigation_curves.json")
flags.DEFINE_string("name", "seed0", "Variant key in the result JSON (the seed).")
FLAGS = flags.FLAGS


def exact_match_curve(rows) -> list[dict]:
    return [{"step": r["step"], "nav_exact_match": r["nav_exact_match"]}
            for r in rows if "nav_exact_match" in r]


def run_entry(workdir: str) -> dict:
    entry = {"curve": exact_match_curve(read_metrics(workdir, "validation"))}
    train_eval = os.path.join(workdir, "train_split_eval.json")
    if os.path.exists(train_eval):
        with open(train_eval) as f:
            entry["train_split_exact_match"] = json.load(f)[0]["nav_exact_match"]
    return entry


def plot(results: dict):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for seed, (name, result) in enumerate(results.items()):
        style = ("-", "--", ":")[seed % 3]
        sizes = sorted(result, key=int)
        for n, shade in zip(sizes, (0.35, 0.6, 0.85, 1.0)):
            for key in ("mlmu", "ntp"):
                curve = result[n][key]["curve"]
                axes[0].plot([r["step"] for r in curve], [r["nav_exact_match"] for r in curve],
                             "o" + style, ms=3, color=COLORS[key], alpha=shade,
                             label=f"{LABELS[key]}, {n} mazes, {name}")
        for key in ("mlmu", "ntp"):
            ends = [result[n][key]["curve"][-1]["nav_exact_match"] for n in sizes]
            axes[1].plot([int(n) for n in sizes], ends, "o" + style, color=COLORS[key],
                         label=f"{LABELS[key]}, held-out, {name}")
            trained = [n for n in sizes if "train_split_exact_match" in result[n][key]]
            solved = [result[n][key]["train_split_exact_match"] for n in trained]
            axes[1].plot([int(n) for n in trained], solved, "s", mfc="none", color=COLORS[key],
                         label=f"{LABELS[key]}, training mazes, {name}")
    axes[0].set(xlabel="step", ylabel="held-out exact match", title="over training")
    axes[1].set(xscale="log", xlabel="training mazes", ylabel="exact match", title="at the end")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    result = {}
    for spec in FLAGS.run:
        n, mlmu, ntp = spec.split(":")
        result[str(int(n))] = {"mlmu": run_entry(mlmu), "ntp": run_entry(ntp)}
    for spec in FLAGS.curves:
        n, variant = spec.split(":")
        curves = _results.load("maze_navigation_curves")[variant]["curves"]
        result[str(int(n))] = {key: {"curve": exact_match_curve(curves[label])}
                               for key, label in LABELS.items()}
    result = dict(sorted(result.items(), key=lambda kv: int(kv[0])))
    results = _results.save_variant(NAME, FLAGS.name, result)
    print(f"{'mazes':>7} {'MLM-U held-out':>15} {'train':>6} {'NTP held-out':>13} {'train':>6}")
    for n, e in result.items():
        cells = [f"{e[k]['curve'][-1]['nav_exact_match']:>{w}.3f} "
                 f"{e[k].get('train_split_exact_match', float('nan')):6.3f}"
                 for k, w in (("mlmu", 15), ("ntp", 13))]
        print(f"{n:>7} " + " ".join(cells))
    print("wrote", _results.save_figure(plot(results), NAME, dpi=120), f"(variant {FLAGS.name!r})")


if __name__ == "__main__":
    app.run(main)
