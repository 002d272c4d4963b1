"""Vanilla vs gated attention vs clipped softmax at equal steps: FP32 loss, kurtosis, max |x|.

  nice -n 10 python experiments/outlier_attention.py --steps=200
      -> experiments/results/outlier_attention.{json,png}
  nice -n 10 python experiments/outlier_attention.py --steps=400 --quantize   # + qwix PTQ table
  nice -n 19 python experiments/outlier_attention.py --variants=vanilla --steps=1200 --weight_decay=0 \
      --learning_rate=6e-3 --evals=12 --figure=outlier_emergence_d64   # the longest curve, one variant

Trains configs/outliers.py's three variants (train.train_and_evaluate, workdirs under --root) and
records the "outliers" evaluator's curves (Bondarenko et al. 2023, arXiv 2306.12929, Table 2
columns: max inf-norm over modules, average kurtosis over modules) and the validation loss.
"""

import os

import _results
from absl import app, flags

from jaxformers.train.metrics import read_metrics

NAME = "outlier_attention"
SUMMARY = ("loss", "outliers/max_inf_norm", "outliers/avg_kurtosis", "outliers/max_kurtosis")

flags.DEFINE_integer("steps", 200, "Training steps per variant.")
flags.DEFINE_string("root", "runs/outliers", "Parent of the three workdirs.")
flags.DEFINE_integer("dim", 64, "Model width (configs/outliers.py dim=).")
flags.DEFINE_integer("layers", 2, "Number of layers (configs/outliers.py layers=).")
flags.DEFINE_float("weight_decay", 0.1, "AdamW weight decay (configs/outliers.py weight_decay=).")
flags.DEFINE_float("learning_rate", 3e-3, "Peak AdamW learning rate (configs/outliers.py lr=).")
flags.DEFINE_integer("seed", 0, "config.seed (initialisation and batch order); > 0 adds _s<seed> to names.")
flags.DEFINE_float("gamma", None, "Clipped softmax gamma (configs/outliers.py gamma=; default its "
                   "-12/128); when set, _g<-gamma> is added to names.")
flags.DEFINE_integer("heads", 4, "Query heads (configs/outliers.py heads=); != 4 adds _h<heads> to names.")
flags.DEFINE_integer("kv_heads", 2, "Key/value heads (kv_heads=); != 2 adds _kv<kv_heads> to names.")
flags.DEFINE_integer("evals", 4, "Evaluations (points on the kurtosis curve) per run.")
flags.DEFINE_list("variants", ["vanilla", "gated", "clipped"], "configs/outliers.py variants.")
flags.DEFINE_bool("quantize", False, "Also quantize each checkpoint (qwix; FP32, W8A8, W4/W3 RTN, GPTQ).")
flags.DEFINE_bool("record_only", False, "Record an existing (possibly stopped) run's curve; no training.")
flags.DEFINE_string("figure", NAME, "experiments/results/<figure>.png: this run's curves.")
flags.DEFINE_integer("calibration_batches", 8, "Training batches for GPTQ Hessians / W8A8 ranges.")
FLAGS = flags.FLAGS


def run_name() -> str:
    """'400steps' at the default size (the earlier runs' names), else '2000steps_d128_L4_wd0.1'."""
    lr = "" if FLAGS.learning_rate == 3e-3 else f"_lr{FLAGS.learning_rate:g}"
    suffix = f"_s{FLAGS.seed}" if FLAGS.seed else ""
    suffix += "" if FLAGS.gamma is None else f"_g{-FLAGS.gamma:g}"
    suffix += "" if FLAGS.heads == 4 else f"_h{FLAGS.heads}"
    suffix += "" if FLAGS.kv_heads == 2 else f"_kv{FLAGS.kv_heads}"
    if (FLAGS.dim, FLAGS.layers, FLAGS.weight_decay, lr, suffix) == (64, 2, 0.1, "", ""):
        return f"{FLAGS.steps}steps"
    return f"{FLAGS.steps}steps_d{FLAGS.dim}_L{FLAGS.layers}_wd{FLAGS.weight_decay:g}{lr}{suffix}"


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for name, r in results.items():
        v = r["validation"]
        for ax, key in zip(axes, ("loss", "outliers/avg_kurtosis", "outliers/max_inf_norm")):
            ax.plot(v["step"], v[key], "o-", label=name)
            ax.set(xlabel="step", title=key)
    axes[0].set_ylabel("validation nats / byte")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def quantization_rows(workdir: str, config) -> dict:
    """launch/quantize.py's table for one checkpoint (the param lists shortened to counts)."""
    import json

    from jaxformers.train.quantize import SCHEME_NAMES, quantize_checkpoint

    saved = os.path.join(workdir, "quantization.json")  # launch/quantize.py's output, if it matches
    if os.path.exists(saved):
        with open(saved) as f:
            out = json.load(f)
        if [r["scheme"] for r in out["rows"]] == list(SCHEME_NAMES) and out["calibration_batches"] == (
            FLAGS.calibration_batches
        ):
            out["rows"] = [dict(r, quantized=len(r["quantized"])) for r in out["rows"]]
            return out
    out = quantize_checkpoint(
        workdir,
        list(SCHEME_NAMES),
        calibration_batches=FLAGS.calibration_batches,
        eval_batches=config.eval_batches,
    )
    out["rows"] = [dict(r, quantized=len(r["quantized"]), kept=r["kept"]) for r in out["rows"]]
    return out


def main(argv):
    del argv
    from jaxformers.train import train_and_evaluate

    results = {}
    for variant in FLAGS.variants:
        config = _results.config(
            "outliers",
            f"variant={variant},steps={FLAGS.steps},dim={FLAGS.dim},layers={FLAGS.layers},"
            f"weight_decay={FLAGS.weight_decay},evals={FLAGS.evals},lr={FLAGS.learning_rate},"
            f"heads={FLAGS.heads},kv_heads={FLAGS.kv_heads}"
            + ("" if FLAGS.gamma is None else f",gamma={FLAGS.gamma}")
        )
        config.seed = FLAGS.seed
        workdir = os.path.join(FLAGS.root, f"{variant}_{run_name().replace('steps', '', 1)}")
        valid = read_metrics(workdir, "validation") if os.path.exists(workdir) else []
        if FLAGS.record_only and not valid:
            raise SystemExit(f"--record_only: {workdir} has no validation metrics")
        if not FLAGS.record_only and (not valid or valid[-1]["step"] < config.num_steps):
            train_and_evaluate(config, workdir)
            valid = read_metrics(workdir, "validation")
        result = {
            "workdir": workdir,
            "num_steps": config.num_steps,
            "last_step": valid[-1]["step"],  # < num_steps: a run stopped early (--record_only)
            "attention": dict(config.model.attention),
            "validation": {k: [r.get(k) for r in valid] for k in ("step",) + SUMMARY},
            "final_per_layer": {k: v for k, v in valid[-1].items() if k.startswith("outliers/")},
        }
        if FLAGS.quantize:
            result["quantization"] = quantization_rows(workdir, config)
        result["model"] = {
            "dim": FLAGS.dim,
            "layers": FLAGS.layers,
            "heads": FLAGS.heads,
            "kv_heads": FLAGS.kv_heads,
            "weight_decay": FLAGS.weight_decay,
            "learning_rate": FLAGS.learning_rate,
            "seed": FLAGS.seed,
            "gamma": config.model.attention.gamma if variant == "clipped" else None,
        }
        results = _results.save_variant(NAME, f"{variant}_{run_name()}", result)
        last = valid[-1]
        print(f"{variant:8s} step {last['step']} " + "  ".join(f"{k}={last[k]:.3f}" for k in SUMMARY))
        for r in result.get("quantization", {}).get("rows", []):
            print(
                f"    {r['scheme']:8s} loss={r['loss']:.4f} ppl={r['perplexity']:.3f} "
                f"gap={r['gap_to_fp32']:+.4f}"
            )
    shown = {k: v for k, v in results.items() if k.endswith(f"_{run_name()}")}
    print("wrote", _results.save_figure(plot(shown), FLAGS.figure))


if __name__ == "__main__":
    app.run(main)
