"""Dense vs Mixture-of-Transformers (K=2) at equal per-step FLOPs: the step-matching result.

  python benchmarks/mot_step_matching.py [--steps=300] [--variant=synthetic|mazes]
      [--text=markov|corpus] [--seed=0] [--batch_size=16] [--embed_dim=128] [--root=runs/mot_sm]

Trains configs/mot_dense_baseline.py and configs/mot.py (same data, schedule, seed) with
train.train_and_evaluate, then for each modality m and each dense validation loss L_d(s) finds the
step s' at which MoT first reaches it (linear interpolation on MoT's running-min curve), and fits
s' = slope · s through the origin over dense steps >= 20% of training (MoT paper §3.2, Fig. 5-6:
"step matching"). Prints a table, writes benchmarks/results/mot_step_matching.json and .png.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load_config(name: str, arg: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def steps_to_reach(steps, losses, target):
    """Earliest (interpolated) step at which the running minimum of `losses` is <= target."""
    steps, best = np.asarray(steps, float), np.minimum.accumulate(np.asarray(losses, float))
    hit = np.nonzero(best <= target)[0]
    if hit.size == 0:
        return None
    i = hit[0]
    if i == 0:
        return steps[0]
    s0, s1, l0, l1 = steps[i - 1], steps[i], best[i - 1], best[i]
    return s0 + (s1 - s0) * (l0 - target) / max(l0 - l1, 1e-12)


def step_matching(dense_steps, dense_losses, mot_steps, mot_losses, min_fraction=0.2):
    """(slope through the origin, [(dense step, MoT step)], MoT steps to dense's final loss /
    dense's steps). Dense losses are taken as their running minimum."""
    dense_best = np.minimum.accumulate(np.asarray(dense_losses, float))
    last = max(dense_steps)
    pairs = []
    for s, loss in zip(dense_steps, dense_best):
        if s < min_fraction * last:
            continue
        reached = steps_to_reach(mot_steps, mot_losses, loss)
        if reached is not None:
            pairs.append((float(s), float(reached)))
    if not pairs:
        return None, pairs, None
    sd, sm = np.array(pairs).T
    slope = float((sd * sm).sum() / (sd * sd).sum())
    final = steps_to_reach(mot_steps, mot_losses, dense_best[-1])
    return slope, pairs, (None if final is None else final / last)


def table_key(run: str) -> str:
    """Result key of a run's step-matching table ("modalities" for MoT, as in earlier results)."""
    return "modalities" if run == "mot" else f"{run}_modalities"


def validation_curves(workdir):
    from jaxformers.train.metrics import read_metrics

    rows = read_metrics(workdir, "validation")
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variant", default="synthetic")
    parser.add_argument("--text", default="markov", help="synthetic variant's text: markov|corpus")
    parser.add_argument("--moe4x", action="store_true",
                        help="also train configs/mot_moe4x.py and step-match it against dense")
    parser.add_argument("--seed", type=int, default=0, help="model init and data order seed")
    parser.add_argument("--batch_size", type=int, default=0,
                        help="sequences per step for every run (0: the configs' own)")
    parser.add_argument("--embed_dim", type=int, default=0,
                        help="model width for every run (0: the configs' own, 128)")
    parser.add_argument("--root", default=os.path.join(ROOT, "runs", "mot_step_matching"))
    parser.add_argument("--only", default="", help="train only 'dense' or 'mot' (for parallel runs)")
    args = parser.parse_args()
    from jaxformers.train import train_and_evaluate

    arg = f"size=small,variant={args.variant},text={args.text},steps={args.steps}"
    runs = {"dense": "mot_dense_baseline", "mot": "mot"} | (
        {"moe4x": "mot_moe4x"} if args.moe4x else {})
    suffix = ("_corpus" if args.text == "corpus" else "") + (
        f"_seed{args.seed}" if args.seed else "") + (
        f"_batch{args.batch_size}" if args.batch_size else "") + (
        f"_d{args.embed_dim}" if args.embed_dim else "") + (
        f"_{args.steps}steps" if args.steps != 300 else "")
    for key, config_name in runs.items():
        workdir = os.path.join(args.root, f"{args.variant}{suffix}_{key}")
        curves = validation_curves(workdir) if os.path.exists(workdir) else {}
        if args.only and args.only != key:
            continue
        if not curves or max(curves["step"]) < args.steps:
            shutil.rmtree(workdir, ignore_errors=True)  # no checkpoints: restart from scratch
            config = load_config(config_name, arg)
            config.progress_bar = False
            config.seed = args.seed
            config.batch_size = args.batch_size or config.batch_size
            config.model.embed_dim = args.embed_dim or config.model.embed_dim
            train_and_evaluate(config, workdir)
    if args.only:
        return
    curves = {k: validation_curves(os.path.join(args.root, f"{args.variant}{suffix}_{k}"))
              for k in runs}
    train_rows = {}
    from jaxformers.train.metrics import read_metrics

    for k in runs:
        rows = read_metrics(os.path.join(args.root, f"{args.variant}{suffix}_{k}"), "train")
        train_rows[k] = rows[-1] if rows else {}
    result = {"steps": args.steps, "variant": args.variant, "text": args.text, "seed": args.seed,
              "batch_size": args.batch_size or load_config("mot", arg).batch_size,
              "embed_dim": args.embed_dim or load_config("mot", arg).model.embed_dim,
              "modalities": {}}
    for run in [k for k in runs if k != "dense"]:
        table = result.setdefault(table_key(run), {})
        for m in (0, 1):
            key = f"loss_m{m}"
            slope, pairs, final = step_matching(curves["dense"]["step"], curves["dense"][key],
                                                curves[run]["step"], curves[run][key])
            table[key] = {
                "slope": slope, "final_loss_fraction": final, "pairs": pairs,
                "dense_final": curves["dense"][key][-1], "mot_final": curves[run][key][-1],
            }
    for k in runs:
        result[f"{k}_flops_per_step"] = train_rows[k].get("flops", 0.0) / max(
            train_rows[k].get("step", 1), 1)
        result[f"{k}_steps_per_s"] = train_rows[k].get("steps_per_s")
        result[f"{k}_curves"] = {c: curves[k][c] for c in ("step", "loss", "loss_m0", "loss_m1")}
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    out = os.path.join(ROOT, "benchmarks", "results", f"mot_step_matching_{args.variant}{suffix}")
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for run in [k for k in runs if k != "dense"]:
        table = result[table_key(run)]
        print(f"{'modality':10s} {'dense final':>12s} {run + ' final':>12s} {'slope':>7s} "
              f"{'final frac':>10s}")
        for key, r in table.items():
            print(f"{key:10s} {r['dense_final']:12.4f} {r['mot_final']:12.4f} "
                  f"{fmt(r['slope']):>7s} {fmt(r['final_loss_fraction']):>10s}")
    print("FLOPs/step: " + ", ".join(f"{k} {result[f'{k}_flops_per_step']:.4g}" for k in runs))
    plot(result, out + ".png")


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = {"loss_m0": "modality 0", "loss_m1": "modality 1"}
    for ax, key in zip(axes[:2], ("loss_m0", "loss_m1")):
        for run, style in (("dense", "-"), ("mot", "--"), ("moe4x", ":")):
            if f"{run}_curves" not in result:
                continue
            c = result[f"{run}_curves"]
            ax.plot(c["step"], c[key], style, label=run)
        ax.set(title=f"{names[key]} validation loss", xlabel="step", ylabel="nats/token")
        ax.legend()
    ax = axes[2]
    for run, marker, label in (("mot", "o", "MoT"), ("moe4x", "x", "MoE-4x")):
        for key, r in result.get(table_key(run), {}).items():
            if r["pairs"]:
                sd, sm = np.array(r["pairs"]).T
                ax.plot(sd, sm, marker, label=f"{label} {names[key]}: slope {r['slope']:.2f}")
                ax.plot(sd, r["slope"] * sd, ":", color=ax.lines[-1].get_color())
    top = result["steps"]
    ax.plot([0, top], [0, top], "k-", lw=0.5, label="slope 1 (no gain)")
    ax.set(title="step matching", xlabel="dense step", ylabel="MoT steps to the same loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
