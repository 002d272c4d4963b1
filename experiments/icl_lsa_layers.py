"""K-layer linear self-attention against K steps of gradient descent and of GD++ (result 5).

  nice -n 19 python experiments/icl_lsa_layers.py --layers=1,2,3,4 --steps=2000
      -> experiments/results/icl_lsa_layers.json (variant key "K<layers>/<steps>")
         and icl_lsa_layers.png

von Oswald et al. 2023 (arXiv 2212.07677, §3-4): trains configs/icl_lsa.py:von_oswald with
`layers=K` (d = 10, N = 10, x ~ U(-0.5, 0.5)^d, separate W_Q, W_K, W_V, W_P per layer, no
weight sharing) through train.train_and_evaluate, then on fresh test tasks compares the trained
model with K steps of GD at the best single rate (`ops.icl.tune_gd_rate`) and with K layers of
GD++ whose per-layer rate and curvature step are fitted (`ops.icl.fit_gd_plus_plus`), both tuned
on other tasks. For each: the ½-MSE, the prediction difference mean |ŷ_TF - ŷ_alg| ("preds
diff"), and the sensitivities ∂ŷ/∂x_query of both (their implicit weight vectors): mean cosine
("model cos") and mean L2 distance ("model diff"), as in the authors' `analyse`.
"""

import os

import _results
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

NAME = "icl_lsa_layers"

flags.DEFINE_list("layers", ["1", "2", "3", "4"], "Numbers of LSA layers K, one run each.")
flags.DEFINE_integer("steps", 2000, "Training steps per K.")
flags.DEFINE_integer("test_tasks", 10000, "Fresh tasks for the comparison (and as many for tuning).")
flags.DEFINE_string("root", "runs/icl_lsa_layers", "Parent of the workdirs.")
FLAGS = flags.FLAGS


def sensitivity(predict, x, y):
    """∂ŷ/∂x_query [B, d] of a predictor (x, y) -> ŷ [B] (tasks are independent: grad of the sum)."""
    return jax.grad(lambda xq: jnp.sum(predict(x.at[:, -1].set(xq), y)))(x[:, -1])


def compare(pred_a, sens_a, pred_b, sens_b) -> dict:
    cos = jnp.sum(sens_a * sens_b, -1) / (jnp.linalg.norm(sens_a, axis=-1) * jnp.linalg.norm(sens_b, axis=-1))
    return {
        "preds_diff": float(jnp.mean(jnp.abs(pred_a - pred_b))),
        "model_cos": float(jnp.mean(cos)),
        "model_diff": float(jnp.mean(jnp.linalg.norm(sens_a - sens_b, axis=-1))),
    }


def evaluate(workdir: str, layers: int, num_tasks: int) -> dict:
    from jaxformers.config import model_config_from
    from jaxformers.models.registry import build_model
    from jaxformers.ops import icl
    from jaxformers.train import checkpoint as ckpt

    config, variables, _ = ckpt.load_variables(workdir)
    model = build_model("lsa", model_config_from(config.model))
    kw = dict(x_dist="uniform", x_range=config.data.x_range)
    d, n = config.data.dim, config.data.num_context
    tune = icl.sample_tasks(jax.random.PRNGKey(6), num_tasks, d, n, **kw)
    test = icl.sample_tasks(jax.random.PRNGKey(5), num_tasks, d, n, **kw)
    x, y = test["x"], test["y"]
    params = {"params": variables["params"]}

    gd_lr, _ = icl.tune_gd_rate(tune["x"], tune["y"], layers)
    pp_lrs, pp_gammas, _ = icl.fit_gd_plus_plus(tune["x"], tune["y"], layers)
    predictors = {
        "trained": lambda x, y: model.apply(params, icl.to_tokens(x, y)),
        "gd": lambda x, y: icl.gd_predict(x, y, gd_lr, layers),
        "gd_plus_plus": lambda x, y: icl.gd_plus_plus_predict(x, y, pp_lrs, pp_gammas),
    }
    preds = {k: jax.jit(f)(x, y) for k, f in predictors.items()}
    sens = {k: jax.jit(lambda x, y, f=f: sensitivity(f, x, y))(x, y) for k, f in predictors.items()}
    out = {f"loss_{k}": float(icl.half_mse(p, y[:, -1])) for k, p in preds.items()}
    out |= {"loss_zero": float(icl.half_mse(0 * y[:, -1], y[:, -1])), "gd_lr": gd_lr}
    out |= {
        "gd_plus_plus_lrs": np.asarray(pp_lrs).tolist(),
        "gd_plus_plus_gammas": np.asarray(pp_gammas).tolist(),
    }
    for alg in ("gd", "gd_plus_plus"):
        out[alg] = compare(preds["trained"], sens["trained"], preds[alg], sens[alg])
    return out


def plot(results: dict):
    """Each K's longest run (a K that needed more steps is shown at its own budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = {}
    for r in results.values():
        if r["steps"] >= longest.get(r["layers"], {"steps": -1})["steps"]:
            longest[r["layers"]] = r
    rows = sorted(longest.items())
    ks = [k for k, _ in rows]
    steps = " / ".join(str(r["steps"]) for _, r in rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, label in (
        ("trained", "trained LSA"),
        ("gd", "K steps of GD"),
        ("gd_plus_plus", "K layers of GD++"),
    ):
        left.plot(ks, [r[f"loss_{name}"] for _, r in rows], "o-", label=label)
    left.set(xlabel="layers K", ylabel="test ½-MSE", xticks=ks)
    left.legend(fontsize=8)
    for alg, label in (("gd", "GD"), ("gd_plus_plus", "GD++")):
        right.plot(ks, [r[alg]["model_cos"] for _, r in rows], "o-", label=f"model cos to {label}")
        right.plot(ks, [r[alg]["preds_diff"] for _, r in rows], "s--", label=f"preds diff to {label}")
    right.set(xlabel="layers K", xticks=ks)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"von Oswald et al. setting (d = N = 10), steps for K = {ks}: {steps}", fontsize=9)
    fig.tight_layout()
    return _results.save_figure(fig, NAME)


def main(argv):
    del argv
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics

    for layers in map(int, FLAGS.layers):
        config = _results.config("icl_lsa", f"von_oswald,layers={layers},steps={FLAGS.steps}")
        config.eval_every = FLAGS.steps
        # every quarter (a killed run resumes), which includes the final step `evaluate` reads
        config.checkpoint_every = FLAGS.steps // 4 if FLAGS.steps % 4 == 0 else FLAGS.steps
        workdir = os.path.join(FLAGS.root, f"K{layers}_{FLAGS.steps}")
        done = [r for r in read_metrics(workdir, "validation") if r["step"] == FLAGS.steps]
        final = done[-1] if done else train_and_evaluate(config, workdir)  # a finished run is reused
        out = evaluate(workdir, layers, FLAGS.test_tasks)
        out |= dict(layers=layers, steps=FLAGS.steps, validation_loss=float(final["loss"]))
        _results.save_variant(NAME, f"K{layers}/{FLAGS.steps}", out)
        print(
            f"K={layers}:",
            {k: v for k, v in out.items() if k.startswith("loss")},
            out["gd"],
            out["gd_plus_plus"],
        )
    print("figure:", plot(_results.load(NAME)))


if __name__ == "__main__":
    app.run(main)
