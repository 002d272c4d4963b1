"""Held-out navigation accuracy over training, MLM-U vs next token (reads two runs' metrics).

  python benchmarks/maze_navigation_curves.py --mlmu=runs/maze_mlmu_5_tiny \
      --ntp=runs/maze_ntp_5_tiny --name=maze_5x5_tiny

Plots nav_exact_match and nav_token_accuracy against steps and against XLA-counted training
FLOPs; writes benchmarks/results/<name>.{json,png}.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxformers.train.metrics import read_metrics  # noqa: E402

KEYS = ("nav_exact_match", "nav_token_accuracy", "loss", "accuracy")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlmu", required=True)
    parser.add_argument("--ntp", required=True)
    parser.add_argument("--name", default="maze_navigation")
    args = parser.parse_args()
    curves = {}
    for label, workdir in (("MLM-U", args.mlmu), ("next token", args.ntp)):
        rows = read_metrics(workdir, "validation")
        curves[label] = [{"step": r["step"], "flops": r.get("flops", 0.0),
                          **{k: r[k] for k in KEYS if k in r}} for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for label, rows in curves.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["nav_exact_match"] for r in rows], "o-", label=label)
        axes[1].plot(steps, [r["nav_token_accuracy"] for r in rows], "o-", label=label)
        axes[2].plot([r["flops"] for r in rows], [r["nav_exact_match"] for r in rows], "o-",
                     label=label)
    axes[0].set(xlabel="step", ylabel="held-out exact match (greedy)")
    axes[1].set(xlabel="step", ylabel="held-out path-token accuracy (greedy)")
    axes[2].set(xlabel="training FLOPs (XLA count)", ylabel="held-out exact match")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", args.name)
    fig.savefig(out + ".png", dpi=100)
    with open(out + ".json", "w") as f:
        json.dump(dict(runs=dict(mlmu=args.mlmu, ntp=args.ntp), curves=curves), f, indent=1)
    for label, rows in curves.items():
        print(label)
        for r in rows:
            print(f"  step {r['step']:>5}  exact {r['nav_exact_match']:.3f}  "
                  f"token {r['nav_token_accuracy']:.3f}  loss {r['loss']:.3f}")
    print("wrote", out + ".png")


if __name__ == "__main__":
    main()
