"""Train one-layer LSA on in-context regression with the library's loop; compare to baselines.

  python benchmarks/icl_lsa.py [--presets isotropic,nonisotropic,von_oswald] [--steps 4000]

For each preset of configs/icl_lsa.py: train_and_evaluate, then on 200k fresh tasks (MC s.e.
≲ 0.003) the trained model's ½-MSE next to the closed-form optimum and the computed baselines
(zero, k-step GD with tuned rate, Γ^{-1}-preconditioned GD, OLS, ridge), and the learned
u·W_KQ[:d,:d] next to Γ^{-1}. Prints a table; writes benchmarks/results/icl_lsa.json.
"""

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from configs.icl_lsa import PRESETS, get_config  # noqa: E402
from jaxformers.config import model_config_from  # noqa: E402
from jaxformers.models.lsa import effective_preconditioner  # noqa: E402
from jaxformers.models.registry import build_model  # noqa: E402
from jaxformers.ops import icl  # noqa: E402
from jaxformers.train import checkpoint as ckpt  # noqa: E402
from jaxformers.train import train_and_evaluate  # noqa: E402


def evaluate(preset: str, workdir: str, num_tasks: int) -> dict:
    config, variables, _ = ckpt.load_variables(workdir)
    cfg = model_config_from(get_config(f"preset={preset}").model)
    model = build_model("lsa", cfg)
    data = PRESETS[preset]
    d, n = data["dim"], data["num_context"]
    kw = dict(x_dist=data["x_dist"], x_range=data.get("x_range", 1.0),
              covariance=data["covariance"])
    tasks = icl.sample_tasks(jax.random.PRNGKey(5), num_tasks, d, n, **kw)
    x, y = tasks["x"], tasks["y"]
    pred = model.apply({"params": variables["params"]}, icl.to_tokens(x, y))
    out = {"trained_lsa": float(icl.half_mse(pred, y[:, -1]))}
    if data["x_dist"] == "uniform":
        s2, m4 = icl.uniform_moments(data["x_range"])
        eta, loss = icl.gd_optimal_rate_independent(d, n, s2, m4)
        out |= {"gd1_closed_form_lr": eta, "gd1_closed_form": loss}
        cov = None
    else:
        cov = data["covariance"]
        out["optimum_closed_form"] = icl.lsa_optimal_loss(cov, d, n)
        gamma_inv = np.linalg.inv(icl.lsa_gamma(cov, d, n))
        learned = np.asarray(effective_preconditioner(variables["params"], d))
        out["learned_diag"] = np.diag(learned).round(4).tolist()
        out["gamma_inv_diag"] = np.diag(gamma_inv).round(4).tolist()
        out["learned_rel_err"] = float(
            np.linalg.norm(learned - gamma_inv) / np.linalg.norm(gamma_inv)
        )
        out["learned_max_offdiag"] = float(np.abs(learned - np.diag(np.diag(learned))).max())
    out |= icl.baselines(x[:50000], y[:50000], covariance=cov)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="isotropic,nonisotropic,von_oswald")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--tasks", type=int, default=200_000)
    ap.add_argument("--root", default="/tmp/icl_lsa_runs")
    args = ap.parse_args()
    results = {}
    for preset in args.presets.split(","):
        config = get_config(f"preset={preset},steps={args.steps}")
        config.checkpoint_every = args.steps
        workdir = os.path.join(args.root, preset)
        t0 = time.perf_counter()
        final = train_and_evaluate(config, workdir)
        seconds = time.perf_counter() - t0
        res = evaluate(preset, workdir, args.tasks) | {
            "train_seconds": seconds, "steps": args.steps,
            "final_validation_loss": float(final.get("loss", float("nan"))),
        }
        results[preset] = res
        print(preset, json.dumps(res, indent=None), flush=True)
    print(f"\n{'preset':>13} {'trained':>8} {'target':>8} {'gd1':>8} {'precond':>8} {'zero':>7}")
    for preset, r in results.items():
        target = r.get("optimum_closed_form", r.get("gd1_closed_form"))
        print(f"{preset:>13} {r['trained_lsa']:8.4f} {target:8.4f} {r['gd1']:8.4f} "
              f"{r['preconditioned_gd']:8.4f} {r['zero']:7.4f}")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "icl_lsa.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
