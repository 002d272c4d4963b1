"""In-context function learning: the error curve of a trained transformer against the baselines.

  nice -n 19 python experiments/icl_functions.py --preset=linear --mixers=attention \
      --steps=8000 --curriculum=500
  nice -n 19 python experiments/icl_functions.py --preset=linear \
      --mixers=attention,linear_attention,gla --steps=1000 --curriculum=60
  nice -n 19 python experiments/icl_functions.py --preset=sparse_linear --steps=2000 --curriculum=100
      -> experiments/results/icl_functions.json (variant key "<preset>/<mixer>/<steps>[_c<K>]")
         and icl_functions_<preset>_<mixers>_<steps>[_c<K>].png

Trains configs/icl_functions.py (train.train_and_evaluate; workdirs under --root) once per token
mixer and records the "icl_curve" evaluator's curves on the same 512 fresh prompts: squared error
/ E y² at each number of in-context examples for the model, OLS (minimum norm), 3-NN and averaging
(Garg et al. 2022, arXiv 2208.01066, Fig. 2), lasso (sparse) and Bayes ridge (noisy), the model's
mean squared disagreement with each baseline ("spd_<name>", Akyürek et al. 2023, arXiv
2211.15661, §4), and the model's ratio to OLS (and lasso) where that baseline is not ~0.
"""

import os
import re

import _results
from absl import app, flags

NAME = "icl_functions"

flags.DEFINE_string("preset", "linear", "configs/icl_functions.py preset.")
flags.DEFINE_list("mixers", ["attention"], "model.token_mixer values, trained at equal size and "
                  "steps; gla:<feature map> sets model.gla.feature_map.")
flags.DEFINE_integer("steps", 3000, "Training steps per mixer.")
flags.DEFINE_integer("curriculum", 0, "Grow the curriculum every this many steps (0: off).")
flags.DEFINE_float("learning_rate", 1e-3, "Peak Adam learning rate (warm-up, cosine to 10%).")
flags.DEFINE_integer("sparsity", 0, "k of the sparse presets (0: the preset's); adds _k<k> to names.")
flags.DEFINE_string("root", "runs/icl_functions", "Parent of the workdirs.")
FLAGS = flags.FLAGS


def curves_from(metrics: dict) -> dict:
    """{"icl/<name>/n<i>": v} -> {name: [v_0, v_1, ...]}."""
    out = {}
    for key, value in metrics.items():
        m = re.fullmatch(r"icl/(\w+)/n(\d+)", key)
        if m:
            out.setdefault(m.group(1), {})[int(m.group(2))] = float(value)
    return {name: [c[i] for i in sorted(c)] for name, c in out.items()}


def plot(results: dict, keys: list, figure: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    baselines_done = set()
    for key in keys:
        r = results[key]
        for name, c in r["curves"].items():
            if name == "model":
                ax.plot(c, "o-", label=f"transformer ({key})")
            elif not name.startswith("spd_") and (r["preset"], name) not in baselines_done:
                baselines_done.add((r["preset"], name))
                ax.plot(c, "--", label=f"{name} ({r['preset']})")
    boolean = all(results[k]["preset"] in ("conjunction", "sparse_parity") for k in keys)
    ylabel = "accuracy of sign(ŷ)" if boolean else "squared error / E y²"
    ax.set(xlabel="in-context examples", ylabel=ylabel, ylim=(0, 1.05 if boolean else 1.6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _results.save_figure(fig, figure)


def main(argv):
    del argv
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics

    keys = []
    for spec in FLAGS.mixers:
        # "gla:elu_plus_one" = GLA with that feature map on q and k (model.gla.feature_map)
        token_mixer, _, feature_map = spec.partition(":")
        mixer = spec.replace(":", "_")
        arg = f"{FLAGS.preset},steps={FLAGS.steps},mixer={token_mixer},curriculum={FLAGS.curriculum}"
        if feature_map:
            arg += f",gla_feature_map={feature_map}"
        if FLAGS.sparsity:
            arg += f",sparsity={FLAGS.sparsity}"
        config = _results.config("icl_functions", arg)
        config.eval_every = FLAGS.steps
        config.learning_rate = FLAGS.learning_rate
        suffix = (f"_c{FLAGS.curriculum}" if FLAGS.curriculum else "") + (
            f"_lr{FLAGS.learning_rate:g}" if FLAGS.learning_rate != 1e-3 else ""
        ) + (f"_k{FLAGS.sparsity}" if FLAGS.sparsity else "")
        workdir = os.path.join(FLAGS.root, f"{FLAGS.preset}_{mixer}_{FLAGS.steps}{suffix}")
        done = [r for r in read_metrics(workdir, "validation") if r["step"] == FLAGS.steps]
        final = done[-1] if done else train_and_evaluate(config, workdir)  # a finished run is reused
        curves = curves_from(final)
        ratio = [m / o if o > 1e-6 else None for m, o in zip(curves["model"], curves["ols"])]
        extra = {}
        if "lasso" in curves:  # sparse regression: how close to the sparsity-aware baseline
            extra["model_over_lasso"] = [
                m / o if o > 1e-6 else None for m, o in zip(curves["model"], curves["lasso"])
            ]
        key = f"{FLAGS.preset}/{mixer}/{FLAGS.steps}{suffix}"
        keys.append(key)
        results = _results.save_variant(
            NAME,
            key,
            dict(
                preset=FLAGS.preset,
                mixer=mixer,
                steps=FLAGS.steps,
                curriculum=FLAGS.curriculum,
                learning_rate=FLAGS.learning_rate,
                loss=float(final["loss"]),
                curves=curves,
                model_over_ols=ratio,
            )
            | extra,
        )
        print(mixer, "model/ols per n:", ratio)
    labels = "-".join(m.replace(":", "_") for m in FLAGS.mixers)
    figure = f"{NAME}_{FLAGS.preset}_{labels}_{FLAGS.steps}{suffix}"
    print("figure:", plot(results, keys, figure))


if __name__ == "__main__":
    app.run(main)
