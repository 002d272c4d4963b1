"""Error curves of an in-context learner and the classical baselines on the same prompts.

Evaluator "icl_curve" (train/evaluators.py): at each number of in-context examples i, the
squared error / E y² (Garg et al. 2022, arXiv 2208.01066, §3: the zero predictor sits at 1) of the
model and of every baseline of `ops/icl_baselines.py` suited to the task, and the model's mean
squared disagreement with each baseline ("spd_<baseline>", same scale; Akyürek et al. 2023, arXiv
2211.15661, §4); for boolean tasks the accuracy of sign(ŷ) (Bhattamishra et al. 2024, arXiv
2310.03016).
"""

import jax
import numpy as np

from jaxformers.data import icl_functions as data
from jaxformers.models.compiled import jitted_apply
from jaxformers.ops import icl_baselines as B
from jaxformers.ops.icl_tasks import error_scale


def baseline_predictions(xs, ys, data_config) -> dict:
    """name -> [B, n] predictions of the baselines suited to the task."""
    task = data_config.get("task", "linear")
    out = {
        "ols": B.ols_predict(xs, ys),
        "knn3": B.knn_predict(xs, ys, 3),
        "averaging": B.averaging_predict(xs, ys),
    }
    if task == "linear" and float(data_config.get("noise_std", 0.0)) > 0:
        lam = B.bayes_ridge_lambda(float(data_config.noise_std), float(data_config.get("w_scale", 1.0)))
        out["bayes_ridge"] = B.ridge_predict(xs, ys, lam)
    if task == "representation":  # the learner that knows Φ: least squares / Bayes ridge on Φ(x)
        _, _, _, kw = data.task_kwargs(data_config)
        phi, noise = kw["representation"](xs), kw["noise_std"]
        out["ols_phi"] = B.ols_predict(phi, ys)
        if noise > 0:
            out["bayes_ridge_phi"] = B.ridge_predict(phi, ys, B.bayes_ridge_lambda(noise, 1.0))
    if task == "sparse_linear":
        out["lasso"] = B.lasso_predict(xs, ys, 0.01)  # Garg et al.'s plotted alpha
    if task in data.BOOLEAN_TASKS:
        out.pop("averaging")
    return out


def error_curves(model, variables, data_config, num_prompts: int = 512, seed: int = 0) -> dict:
    """name -> per-prefix metric on the same prompts: squared error / E y² (Garg et al.'s
    normalisation, zero predictor ≈ 1) or, for boolean tasks, accuracy of sign(ŷ) (a zero
    prediction counts 1/2)."""
    xs, ys = data.curve_prompts(data_config, num_prompts, seed)
    preds = {"model": jitted_apply(model)(variables, xs, ys)}
    preds |= baseline_predictions(xs, ys, data_config)
    if data.is_boolean(data_config):
        return {k: np.asarray(B.sign_accuracy_curve(p, ys)).tolist() for k, p in preds.items()}
    task, d, _, kw = data.task_kwargs(data_config)
    scale = error_scale(task, d, kw.get("k", 3), kw.get("w_scale", 1.0)) + kw.get("noise_std", 0.0) ** 2
    curves = {k: np.asarray(B.squared_error_curve(p, ys, scale)).tolist() for k, p in preds.items()}
    # how close the model's predictions are to each baseline's (Akyürek et al. 2023's SPD)
    for k, p in preds.items():
        if k != "model":
            curves[f"spd_{k}"] = np.asarray(B.disagreement_curve(preds["model"], p, scale)).tolist()
    return curves


def icl_curve(model, variables, config) -> dict:
    """Evaluator "icl_curve": prints the curves and returns icl/<name>/n<i> scalars."""
    curves = error_curves(model, variables, config.data)
    if jax.process_index() == 0:
        print("in-context examples: " + " ".join(f"{i:6d}" for i in range(len(curves["model"]))))
        for name, c in curves.items():
            print(f"{name:>19}: " + " ".join(f"{v:6.3f}" for v in c))
    return {f"icl/{k}/n{i}": float(v) for k, c in curves.items() for i, v in enumerate(c)}
