"""MLM-U vs next token with fewer training mazes: held-out exact match against the size of the
training set, at one step budget (Nolte et al. 2024 §4: MLM-U "about 4x more sample-efficient").

  for n in 1000 5000; do for o in mlmu ntp; do
    python launch/train.py --config=configs/maze_$o.py:grid=5,size=small,steps=1500 \\
      --workdir=runs/maze_${o}_5_small_n$n --config.learning_rate=0.001 \\
      --config.data.eval_mazes=256 --config.eval_every=250 --config.data.num_train=$n
    python launch/evaluate.py --workdir=runs/maze_${o}_5_small_n$n \\
      --override='data.eval_split="train"' --output=runs/maze_${o}_5_small_n$n/train_split_eval.json
  done; done
  python benchmarks/maze_sample_efficiency.py --name=maze_5x5_small_data \\
      --run=1000:runs/maze_mlmu_5_small_n1k:runs/maze_ntp_5_small_n1k \\
      --run=5000:runs/maze_mlmu_5_small_n5k:runs/maze_ntp_5_small_n5k \\
      --curves=100000:benchmarks/results/maze_5x5_small.json

Each --run is N:mlmu_workdir:ntp_workdir (validation curves from metrics.jsonl; the training-split
exact match from train_split_eval.json when present); --curves=N:json reads a
maze_navigation_curves.py result instead. Writes benchmarks/results/<name>.{json,png}.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxformers.train.metrics import read_metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = {"mlmu": "MLM-U", "ntp": "next token"}


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", default=[], help="N:mlmu_workdir:ntp_workdir")
    parser.add_argument("--curves", action="append", default=[], help="N:curves.json")
    parser.add_argument("--name", default="maze_sample_efficiency")
    args = parser.parse_args()
    result = {}
    for spec in args.run:
        n, mlmu, ntp = spec.split(":")
        result[int(n)] = {"mlmu": run_entry(mlmu), "ntp": run_entry(ntp)}
    for spec in args.curves:
        n, path = spec.split(":")
        with open(path) as f:
            curves = json.load(f)["curves"]
        result[int(n)] = {key: {"curve": exact_match_curve(curves[label])}
                          for key, label in LABELS.items()}
    result = dict(sorted(result.items()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for (n, entries), shade in zip(result.items(), (0.35, 0.6, 0.85, 1.0)):
        for key, color in (("mlmu", "tab:blue"), ("ntp", "tab:orange")):
            curve = entries[key]["curve"]
            axes[0].plot([r["step"] for r in curve], [r["nav_exact_match"] for r in curve], "o-",
                         color=color, alpha=shade, label=f"{LABELS[key]}, {n} mazes")
    for key, color in (("mlmu", "tab:blue"), ("ntp", "tab:orange")):
        ns = list(result)
        axes[1].plot(ns, [result[n][key]["curve"][-1]["nav_exact_match"] for n in ns], "o-",
                     color=color, label=f"{LABELS[key]}, held-out")
        with_train = [n for n in ns if "train_split_exact_match" in result[n][key]]
        axes[1].plot(with_train, [result[n][key]["train_split_exact_match"] for n in with_train],
                     "s--", color=color, label=f"{LABELS[key]}, training mazes")
    axes[0].set(xlabel="step", ylabel="held-out exact match", title="over training")
    axes[1].set(xscale="log", xlabel="training mazes", ylabel="exact match", title="at the end")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = os.path.join(ROOT, "benchmarks", "results", args.name)
    fig.savefig(out + ".png", dpi=120)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print(f"{'mazes':>7} {'MLM-U held-out':>15} {'train':>6} {'NTP held-out':>13} {'train':>6}")
    for n, e in result.items():
        cells = [f"{e[k]['curve'][-1]['nav_exact_match']:>{w}.3f} "
                 f"{e[k].get('train_split_exact_match', float('nan')):6.3f}"
                 for k, w in (("mlmu", 15), ("ntp", 13))]
        print(f"{n:>7} " + " ".join(cells))
    print("wrote", out + ".{json,png}")


if __name__ == "__main__":
    main()
