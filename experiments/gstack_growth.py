"""G_stack vs scratch at equal total FLOPs (paper Fig. 3 / App. B.2).

  python experiments/gstack_growth.py --steps=200 --workdir=runs/gstack_exp

configs/gstack.py: an 8-layer d=128 target; a 2-layer base (g = 4) trained on d tokens.
1. scratch: the target for S steps (budget F = S target steps).
2. base: 2 layers for S/2 steps (seed 0), checkpoints at S/4 ("small" d) and S/2 ("medium" d);
   "d0" is the untrained base (a step-0 checkpoint).
3. grown runs, each from a base checkpoint with a transform, fresh AdamW and warm-up, trained for
   S - (base FLOPs / target FLOPs per step) steps so that base + grown FLOPs = F:
   g_stack from d0 / small / medium; interleave and g_zero from medium.
FLOPs are counted analytically (`guidelines.decoder_train_flops_per_token`, 6N + 6LTd) because
XLA's count ignores the scan trip count. Speed-up (App. B.2): sp = F_scratch / F_G - 1 at the
scratch run's final validation loss. Writes experiments/results/gstack_growth.{json,png}.
Runs already finished in --workdir are reused (delete it to start over).
"""

import json
import os

import _results
from absl import app, flags

from jaxformers.growth import guidelines as gl
from jaxformers.train import checkpoint as ckpt
from jaxformers.train import train_and_evaluate
from jaxformers.train.experiment import Experiment
from jaxformers.train.metrics import read_metrics
from jaxformers.train.startup import initial_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")

flags.DEFINE_integer("steps", 200, "S: steps of the scratch target run (its FLOPs are the budget).")
flags.DEFINE_string("workdir", "runs/gstack_exp", "Parent folder of the runs.")
flags.DEFINE_string("only", "", "Comma list of run names to (re)run, in that order.")


def flops_per_step(config) -> float:
    exp_cfg = config.model
    params = Experiment(config).abstract_state.params  # shapes only
    attn_dim = exp_cfg.embed_dim  # q heads x head dim = d here
    per_token = gl.decoder_train_flops_per_token(params, exp_cfg.num_layers, config.data.seq_len,
                                                 attn_dim)
    return per_token * config.batch_size * config.data.seq_len


def finished(workdir, steps) -> bool:
    rows = read_metrics(workdir, "validation")
    return any(r["step"] == steps for r in rows)


def curve(workdir, flops_step, offset=0.0, initial=None):
    rows = read_metrics(workdir, "validation")
    by_step = {r["step"]: r["loss"] for r in rows}  # last write wins (resumed runs)
    pts = ([(0, initial)] if initial is not None else []) + sorted(by_step.items())
    return [offset + s * flops_step for s, _ in pts], [loss for _, loss in pts], [s for s, _ in pts]


def main(argv):
    del argv
    args = flags.FLAGS
    S, wd = args.steps, args.workdir
    small, medium = S // 4, S // 2
    target_cfg = _results.config("gstack", f"stage=target,steps={S}")
    base_cfg = _results.config("gstack", f"stage=base,steps={medium}")
    base_cfg.checkpoint_every = small
    for c in (target_cfg, base_cfg):
        c.progress_bar = False
    f_target, f_base = flops_per_step(target_cfg), flops_per_step(base_cfg)
    print(f"FLOPs/step target {f_target:.3e} base {f_base:.3e} (ratio {f_base / f_target:.3f})")
    results = {"steps": S, "flops_per_step": {"target": f_target, "base": f_base}, "runs": {}}

    def want(name):
        return not args.only or name in args.only.split(",")

    # 1. scratch and the bases
    if want("scratch") and not finished(f"{wd}/scratch", S):
        train_and_evaluate(target_cfg, f"{wd}/scratch")
    if want("base") and not finished(f"{wd}/base", medium):
        train_and_evaluate(base_cfg, f"{wd}/base")
    if not os.path.isdir(ckpt.checkpoint_dir(f"{wd}/base0")):
        exp = Experiment(base_cfg)
        manager = ckpt.make_manager(f"{wd}/base0")
        ckpt.save(manager, exp.fresh_state(), data_state={}, config=base_cfg, force=True)
        manager.wait_until_finished()
        manager.close()

    # 2. grown runs at equal total FLOPs
    grown_runs = [("g_stack_d_medium", "g_stack", medium), ("g_stack_d_small", "g_stack", small),
                  ("g_stack_d0", "g_stack", 0), ("interleave_d_medium", "interleave", medium),
                  ("g_zero_d_medium", "g_zero", medium)]
    if args.only:  # run in the order given
        order = args.only.split(",")
        grown_runs.sort(key=lambda r: order.index(r[0]) if r[0] in order else len(order))
    for name, transform, base_step in grown_runs:
        base_flops = base_step * f_base
        steps = S - round(base_flops / f_target)
        cfg = _results.config("gstack", f"stage=target,steps={steps}")
        cfg.progress_bar = False
        cfg.init_from.workdir = f"{wd}/base0" if base_step == 0 else f"{wd}/base"
        cfg.init_from.step = 0 if base_step == 0 else base_step
        cfg.init_from.transform = transform
        run_dir = f"{wd}/{name}"
        info = {"transform": transform, "base_steps": base_step, "steps": steps,
                "base_tokens": base_step * cfg.batch_size * cfg.data.seq_len,
                "base_flops": base_flops}
        init_path = os.path.join(run_dir, "initial_eval.json")
        if want(name) and not finished(run_dir, steps):
            if not os.path.exists(init_path):  # the grown model's loss before its first step
                exp = Experiment(cfg, run_dir)
                state, _ = initial_state(exp, None, run_dir)
                os.makedirs(run_dir, exist_ok=True)
                with open(init_path, "w") as f:
                    json.dump(exp.evaluate(state.variables()), f)
                del exp, state
            train_and_evaluate(cfg, run_dir)
        if os.path.exists(init_path):
            with open(init_path) as f:
                info["initial_loss"] = json.load(f)["loss"]
        results["runs"][name] = info

    # 3. speed-ups
    s_flops, s_loss, _ = curve(f"{wd}/scratch", f_target)
    if not s_loss:
        print("no scratch results yet")
        return
    target = s_loss[-1]
    f_scratch = gl.flops_to_reach(s_flops, s_loss, target)
    results["scratch"] = {"final_loss": target, "flops": s_flops[-1]}
    b_flops, b_loss, b_steps = curve(f"{wd}/base", f_base)
    results["base_curve"] = {"flops": b_flops, "loss": b_loss, "steps": b_steps}
    results["scratch"]["curve"] = {"flops": s_flops, "loss": s_loss}
    print(f"\nscratch final validation loss {target:.4f} at {s_flops[-1]:.3e} FLOPs")
    # Speed-up along the runs, as the paper reports it at several token counts (Fig. 4/5): at
    # scratch step t, sp = F_scratch(t) / F_G(first reaching the scratch loss at t) - 1.
    checkpoints = [t for t in (60, 100, 140, 180, S) if t <= S]
    s_by_step = dict(zip(curve(f"{wd}/scratch", f_target)[2], s_loss, strict=True))
    results["speedup_at_scratch_steps"] = checkpoints
    header = " ".join(f"{'sp@' + str(t):>8s}" for t in checkpoints)
    print(f"{'run':20s} {'base tok':>8s} {'loss@0':>6s} {'steps':>9s} {'last':>6s} {header}")
    for name, info in results["runs"].items():
        flops, loss, steps = curve(f"{wd}/{name}", f_target, info["base_flops"],
                                   info.get("initial_loss"))
        if not loss:
            continue
        sps = []
        for t in checkpoints:
            if t not in s_by_step:
                sps.append(None)
                continue
            reach = gl.flops_to_reach(flops, loss, s_by_step[t])
            sps.append(None if reach == float("inf") else gl.speedup(t * f_target, reach))
        reach = gl.flops_to_reach(flops, loss, target)
        info.update(curve={"flops": flops, "loss": loss, "steps": steps}, final_loss=loss[-1],
                    steps_done=steps[-1], flops_to_scratch_loss=reach, speedups=sps,
                    speedup=gl.speedup(f_scratch, reach) if reach != float("inf") else None)
        cells = " ".join(f"{'n/a' if v is None else f'{100 * v:+.0f}%':>8s}" for v in sps)
        print(f"{name:20s} {info['base_tokens']:8d} {info.get('initial_loss', float('nan')):6.3f} "
              f"{steps[-1]:4d}/{info['steps']:<4d} {loss[-1]:6.3f} {cells}")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "gstack_growth.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.join(RESULTS, "gstack_growth.png"))


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, zoom in zip(axes, (False, True), strict=True):
        sc = results["scratch"]["curve"]
        ax.plot(sc["flops"], sc["loss"], "k-", lw=2, label="scratch (8 layers)")
        bc = results["base_curve"]
        ax.plot(bc["flops"], bc["loss"], "k:", label="base (2 layers)")
        for name, info in results["runs"].items():
            if "curve" in info:
                sp = info.get("speedup")
                label = name + ("" if sp is None else f" (sp {100 * sp:+.0f}%)")
                ax.plot(info["curve"]["flops"], info["curve"]["loss"], "-", marker=".", label=label)
        ax.axhline(results["scratch"]["final_loss"], color="gray", lw=0.5)
        ax.set_xlabel("cumulative training FLOPs (base phase included)")
        ax.set_ylabel("validation loss (nats/byte)")
        if zoom:
            final = results["scratch"]["final_loss"]
            ax.set_ylim(final - 0.25, final + 0.5)
            ax.set_xlim(0.4 * sc["flops"][-1], 1.02 * sc["flops"][-1])
            ax.set_title("zoom: the end of the budget")
        else:
            ax.set_ylim(top=4.0)
            ax.set_title("G_stack vs scratch at equal total compute")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print("wrote", path)


if __name__ == "__main__":
    app.run(main)
