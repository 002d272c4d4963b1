"""Dense vs Mixture-of-Transformers (K=2) at equal per-step FLOPs: the step-matching result.

  python experiments/mot_step_matching.py [--steps=300] [--variant=synthetic|mazes]
      [--text=markov|corpus] [--seed=0] [--batch_size=16] [--embed_dim=128] [--moe4x]

Trains configs/mot_dense_baseline.py and configs/mot.py (same data, schedule, seed) with
train.train_and_evaluate, then for each modality m and each dense validation loss L_d(s) finds the
step s' at which MoT first reaches it (linear interpolation on MoT's running-min curve), and fits
s' = slope · s through the origin over dense steps >= 20% of training (MoT paper §3.2, Fig. 5-6:
"step matching"). Prints a table and records the setting as one variant (e.g.
"synthetic_corpus_batch64_d64_1000steps") of experiments/results/mot_step_matching.json; the figure
mot_step_matching.png shows the matched steps and slopes of every variant.
"""

import os
import shutil

import _results
import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "mot_step_matching"

flags.DEFINE_integer("steps", 300, "Training steps of every run.")
flags.DEFINE_string("variant", "synthetic", "two_modality data variant: synthetic|mazes.")
flags.DEFINE_string("text", "markov", "The synthetic variant's text: markov|corpus.")
flags.DEFINE_bool("moe4x", False, "Also train configs/mot_moe4x.py and step-match it against dense.")
flags.DEFINE_integer("seed", 0, "Model init and data order seed.")
flags.DEFINE_integer("batch_size", 0, "Sequences per step for every run (0: the configs' own).")
flags.DEFINE_integer("embed_dim", 0, "Model width for every run (0: the configs' own, 128).")
flags.DEFINE_string("root", os.path.join(ROOT, "runs", "mot_step_matching"), "Where the runs go.")
flags.DEFINE_string("only", "", "Train only 'dense' or 'mot' (for parallel runs).")


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


def main(argv):
    del argv
    args = flags.FLAGS
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
            config = _results.config(config_name, arg)
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
              "batch_size": args.batch_size or _results.config("mot", arg).batch_size,
              "embed_dim": args.embed_dim or _results.config("mot", arg).model.embed_dim,
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
    results = _results.save_variant(NAME, f"{args.variant}{suffix}", result)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for run in [k for k in runs if k != "dense"]:
        table = result[table_key(run)]
        print(f"{'modality':10s} {'dense final':>12s} {run + ' final':>12s} {'slope':>7s} "
              f"{'final frac':>10s}")
        for key, r in table.items():
            print(f"{key:10s} {r['dense_final']:12.4f} {r['mot_final']:12.4f} "
                  f"{fmt(r['slope']):>7s} {fmt(r['final_loss_fraction']):>10s}")
    print("FLOPs/step: " + ", ".join(f"{k} {result[f'{k}_flops_per_step']:.4g}" for k in runs))
    print("wrote", _results.save_figure(plot(results), NAME), f"(variant {args.variant}{suffix!r})")


def plot(results: dict):
    """One panel per variant: MoT's (and MoE-4x's) steps to reach each dense loss, with the slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    names = {"synthetic": {"loss_m0": "text", "loss_m1": "image"},
             "mazes": {"loss_m0": "description", "loss_m1": "path"}}
    for ax, (variant, result) in zip(axes.flat, results.items()):
        for run, marker, label in (("mot", "o", "MoT"), ("moe4x", "x", "MoE-4x")):
            for key, r in result.get(table_key(run), {}).items():
                if r["pairs"]:
                    sd, sm = np.array(r["pairs"]).T
                    name = names[result["variant"]][key]
                    ax.plot(sd, sm, marker, ms=3, label=f"{label} {name}: {r['slope']:.2f}")
                    ax.plot(sd, r["slope"] * sd, ":", color=ax.lines[-1].get_color())
        top = result["steps"]
        ax.plot([0, top], [0, top], "k-", lw=0.5, label="slope 1 (no gain)")
        ax.set_title(variant, fontsize=9)
        ax.set(xlabel="dense step", ylabel="steps to the same loss")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    app.run(main)
