"""Induction with multi-token prediction (Gloeckle et al. 2024, arXiv 2404.19737, §4.1): steps until
head 1's accuracy on the second token of a repeated two-token name passes 90%, for n = 1, 2, 4,
then self-speculative decoding from validation-story prompts on the trained models.

  nice -n 19 python experiments/mtp_induction.py --ns=1,2,4 --seeds=0 --steps=1000
      # -> experiments/results/mtp_induction.json (+ .png)

Each (seed, n) trains configs/mtp_induction.py:n=...,steps=...,seed=... in --root/s{seed}_n{n}
(reused if finished); induction_accuracy is evaluated every --eval_every steps, so "steps to 90%"
is the first evaluation at or above --threshold (resolution eval_every). Decoding: the first
--prompt_len tokens of --num_prompts validation stories (not the evaluator's), --new_tokens
greedy tokens, batch 1, both decoders compiled then timed in turn --reps times.
"""

import os
import time

import _results
import _speculative
from absl import app, flags

NAME = "mtp_induction"

flags.DEFINE_list("ns", ["1", "2", "4"], "Numbers of future tokens n.")
flags.DEFINE_string("kind", "parallel", "model.mtp.kind: parallel, sequential or ftp (no decoding).")
flags.DEFINE_list("seeds", ["0"], "config.seed values (initialisation and story order).")
flags.DEFINE_integer("steps", 1000, "Training steps.")
flags.DEFINE_integer("eval_every", 50, "Steps between induction evaluations.")
flags.DEFINE_float("threshold", 0.9, "Induction accuracy that counts as 'formed'.")
flags.DEFINE_string("root", "/tmp/mtp_induction", "Workdirs go in root/s{seed}_n{n}.")
flags.DEFINE_integer("num_prompts", 8, "Validation stories to decode from (0: no decoding).")
flags.DEFINE_integer("prompt_len", 24, "Prompt tokens (a story prefix).")
flags.DEFINE_integer("new_tokens", 36, "Tokens to decode (prompt + new + n - 1 <= max_len 64).")
flags.DEFINE_integer("reps", 5, "Timed decoding repetitions per decoder (interleaved).")
flags.DEFINE_bool("plot_only", False, "Only redraw the figure from the JSON.")
FLAGS = flags.FLAGS


def steps_to(curve: list, threshold: float):
    """First evaluated step whose accuracy is >= threshold (None if none)."""
    return next((step for step, acc in curve if acc >= threshold), None)


def adjacent_cosine(workdir: str) -> float:
    """Mean cosine similarity of the trunk's vectors z_t, z_{t+1} on the evaluator's stories
    (Walker 2024 report FTP's vectors vary more smoothly along the text than a GPT's)."""
    import jax.numpy as jnp

    from jaxformers.config import model_config_from
    from jaxformers.data import induction
    from jaxformers.models.registry import build_model
    from jaxformers.train.checkpoint import load_variables

    config, variables, _ = load_variables(workdir)
    model = build_model(config.model_family, model_config_from(config.model))
    tokens, _, _ = induction.eval_stories(config.data)
    z = model.apply(variables, jnp.asarray(tokens[:, :-1]), method="trunk")
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return float(jnp.mean(jnp.sum(z[:, 1:] * z[:, :-1], axis=-1)))


def decode(workdir: str) -> dict:
    from jaxformers.config import model_config_from
    from jaxformers.data import induction
    from jaxformers.models.registry import build_model
    from jaxformers.train.checkpoint import load_variables

    config, variables, _ = load_variables(workdir)
    model = build_model(config.model_family, model_config_from(config.model))
    opts = induction.options(config.data)
    # stories after the evaluator's, so the prompts were never scored during training
    source = induction.StorySource(opts, split="validation", length=opts["num_validation"])
    first = opts["eval_stories"]
    prompts = [source.story(first + i)[0][: FLAGS.prompt_len] for i in range(FLAGS.num_prompts)]
    result = _speculative.compare_decoders(
        model, variables, prompts, new_tokens=FLAGS.new_tokens, reps=FLAGS.reps
    )
    result |= story_agreement(model, variables, config)
    return result


def story_agreement(model, variables, config) -> dict:
    """Teacher-forced on the evaluator's stories (real text, not a greedy loop): how often head i's
    argmax at t equals head 1's argmax at t+i-1 (the draft a verifier would keep, given the true
    prefix) and the true token x_{t+i}."""
    import jax.numpy as jnp
    import numpy as np

    from jaxformers.data import induction

    tokens, _, _ = induction.eval_stories(config.data)
    guesses = np.asarray(jnp.argmax(model.apply(variables, jnp.asarray(tokens[:, :-1]), heads="all"), -1))
    out = {}
    for i in range(2, guesses.shape[0] + 1):
        draft = guesses[i - 1, :, : -(i - 1)]
        out[f"story_head{i}_agrees_with_head1"] = float(np.mean(draft == guesses[0, :, i - 1 :]))
        out[f"story_head{i}_accuracy"] = float(np.mean(draft == tokens[:, i:]))
    out["story_head1_accuracy"] = float(np.mean(guesses[0] == tokens[:, 1:]))
    return out


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    colors = {1: "tab:blue", 2: "tab:orange", 4: "tab:green"}
    for r in sorted(results.values(), key=lambda r: (r.get("kind", "parallel"), r["n"], r["seed"])):
        steps, acc = zip(*r["curve"], strict=True)
        kind = r.get("kind", "parallel")
        ax.plot(steps, acc, color=colors.get(r["n"], "k"), alpha=0.8, ls="-" if kind == "parallel" else "--",
                label=f"{'' if kind == 'parallel' else kind + ' '}n={r['n']}, seed {r['seed']}")  # fmt: skip
    ax.axhline(0.9, color="gray", ls=":", lw=1)
    ax.set(xlabel="training step", ylabel="second-token accuracy, repeated names",
           title="induction: head 1 (next token)", ylim=(-0.02, 1.02))  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    if FLAGS.plot_only:
        print("wrote", _results.save_figure(plot(_results.load(NAME)), NAME))
        return
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics

    for seed in map(int, FLAGS.seeds):
        for n in map(int, FLAGS.ns):
            arg = f"n={n},steps={FLAGS.steps},seed={seed},kind={FLAGS.kind}"
            config = _results.config("mtp_induction", arg)
            config.eval_every = FLAGS.eval_every
            config.checkpoint_every = max(FLAGS.steps // 4, FLAGS.eval_every)  # a killed run resumes
            config.progress_bar = False
            kind = "" if FLAGS.kind == "parallel" else f"{FLAGS.kind}_"
            workdir = os.path.join(FLAGS.root, f"{kind}s{seed}_n{n}_{FLAGS.steps}")
            key = f"{kind}s{seed}_n{n}_{FLAGS.steps}steps"
            valid = read_metrics(workdir, "validation") if os.path.exists(workdir) else []
            train_wall_s = _results.load(NAME).get(key, {}).get("train_wall_s")
            if not valid or valid[-1]["step"] < FLAGS.steps:
                start = time.perf_counter()
                train_and_evaluate(config, workdir)
                train_wall_s = time.perf_counter() - start
                valid = read_metrics(workdir, "validation")
            curve = [(r["step"], r["induction_accuracy"]) for r in valid if "induction_accuracy" in r]
            result = {
                "n": n, "kind": FLAGS.kind, "seed": seed, "steps": FLAGS.steps, "workdir": workdir,
                "train_wall_s": train_wall_s,
                "steps_to_threshold": steps_to(curve, FLAGS.threshold), "threshold": FLAGS.threshold,
                "steps_to_50pct": steps_to(curve, 0.5),
                "adjacent_cosine": adjacent_cosine(workdir),
                "curve": curve,
                "first_mention_accuracy": valid[-1]["first_mention_accuracy"],
                "validation": {k: v for k, v in valid[-1].items() if k.startswith(("loss", "acc"))},
                "decoding": decode(workdir) if FLAGS.num_prompts and FLAGS.kind == "parallel" else None,
            }  # fmt: skip
            _results.save_variant(NAME, key, result)
            print(f"{FLAGS.kind} seed {seed} n={n}: steps to {FLAGS.threshold:.0%} = "
                  f"{result['steps_to_threshold']}, to 50% = {result['steps_to_50pct']}, final induction "
                  f"accuracy {curve[-1][1]:.3f}, adjacent cosine {result['adjacent_cosine']:.3f}",
                  flush=True)  # fmt: skip
            if d := result["decoding"]:
                print(f"  acceptance {d['acceptance_rate']:.3f}  tokens/pass {d['tokens_per_pass']:.2f}  "
                      f"speed-up {d['speed_up']:.2f}  identical {d['identical_to_greedy']}",
                      flush=True)  # fmt: skip
    print("wrote", _results.save_figure(plot(_results.load(NAME)), NAME))


if __name__ == "__main__":
    app.run(main)
