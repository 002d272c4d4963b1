"""The self-slimmable curve (methods.md §3.5): validation loss of each trained model at k = 1..N.

  for c in smoe_dropout moe_learned dense_ffn; do
    python launch/train.py --config=configs/$c.py:steps=600 --workdir=runs/moe_cmp_$c; done
  python benchmarks/smoe_slimmable.py --runs=runs/moe_cmp --eval_batches=32

Evaluates `<runs>_<name>` for each of dense_ffn, moe_learned, smoe_dropout at every k (the dense
model once), with `launch/evaluate.py`'s `evaluate_checkpoint`, and plots loss vs k next to the
validation curves of training. Writes benchmarks/results/smoe_slimmable.{json,png}.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jaxformers.train import checkpoint as ckpt  # noqa: E402
from jaxformers.train.metrics import read_metrics  # noqa: E402
from launch.evaluate import evaluate_checkpoint, moe_rows  # noqa: E402

NAMES = {"dense_ffn": "(a) dense FFN", "moe_learned": "(b) learned top-2",
         "smoe_dropout": "(c) SMoE-Dropout"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", default="runs/moe_cmp")
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--eval_batches", type=int, default=32)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "smoe_slimmable"))
    a = p.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    table = {}
    for name in NAMES:
        workdir = f"{a.runs}_{name}"
        if ckpt.latest_step(workdir) is None:
            print(f"skipping {workdir}: no checkpoint")
            continue
        config, _, _ = ckpt.load_variables(workdir)
        rows = evaluate_checkpoint(workdir, moe_rows(config.model, ks),
                                   eval_batches=a.eval_batches)
        curve = [(r["step"], r["loss"]) for r in read_metrics(workdir, "validation")]
        table[name] = dict(step=rows[0]["step"], loss=[r["loss"] for r in rows],
                           accuracy=[r["accuracy"] for r in rows], curve=curve)
    print(f"validation loss (nats/byte, {a.eval_batches} batches) at k active experts of 8")
    print(f"{'model':>20} " + " ".join(f"{'k=' + str(k):>8}" for k in ks))
    for name, r in table.items():
        print(f"{NAMES[name]:>20} " + " ".join(f"{v:8.4f}" for v in r["loss"]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(dict(ks=ks, eval_batches=a.eval_batches, runs=a.runs, table=table), f, indent=1)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in table.items():
        ax1.plot(ks, r["loss"], "o-", label=NAMES[name])
        steps, losses = zip(*r["curve"]) if r["curve"] else ((), ())
        ax2.plot(steps, losses, label=NAMES[name])
    ax1.set(xscale="log", xticks=ks, xticklabels=[str(k) for k in ks],
            xlabel="active experts k at evaluation", ylabel="validation loss (nats/byte)",
            title="self-slimmable: loss vs k")
    ax1.minorticks_off()
    ax2.set(xlabel="training step", ylabel="validation loss", title="training (k schedule)")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)
    print("wrote", a.out + ".json", a.out + ".png")


if __name__ == "__main__":
    main()
