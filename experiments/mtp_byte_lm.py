"""Multi-token prediction on the byte LM: head-1 (next-token) validation loss for n = 1, 2, 4 at
equal steps, and self-speculative decoding (acceptance, tokens/s) against greedy `generate`.

  nice -n 10 python experiments/mtp_byte_lm.py --ns=1,2,4 --steps=300 --size=tiny
      # -> experiments/results/mtp_byte_lm.json

Each n trains configs/mtp_lm.py:size=...,n=... in --root/n{n} (reused if finished), then decodes
--new_tokens bytes greedily from --prompt with both decoders (batch 1, compiled first, then --reps
interleaved timings of each in one process; medians reported). A finished run is reused, so running
again re-measures decoding only.
"""

import importlib.util
import os
import time

import _results
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "mtp_byte_lm"

flags.DEFINE_list("ns", ["1", "2", "4"], "Numbers of future tokens n.")
flags.DEFINE_integer("steps", 300, "Training steps (equal for every n).")
flags.DEFINE_string("size", "tiny", "configs/mtp_lm.py size.")
flags.DEFINE_string("root", "runs/mtp_byte_lm", "Workdirs go in root/n{n}.")
flags.DEFINE_string("prompt", "    def __init__(self", "Decoding prompt.")
flags.DEFINE_integer("new_tokens", 96, "Bytes to decode.")
flags.DEFINE_integer("reps", 7, "Timed decoding repetitions per decoder (interleaved).")
flags.DEFINE_bool("plot_only", False, "Only redraw the figure from the JSON.")
FLAGS = flags.FLAGS


def get_config(arg: str):
    spec = importlib.util.spec_from_file_location("mtp_lm", os.path.join(ROOT, "configs", "mtp_lm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _interleaved_medians(fns, reps):
    """Compile each fn, then time them in turn `reps` times (so load drifts hit both alike)."""
    import jax
    import numpy as np

    outs = [jax.block_until_ready(fn()) for fn in fns]
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - start)
    return outs, [float(np.median(ts)) for ts in times], times


def _degeneracy(tokens) -> dict:
    """How repetitive a greedy continuation is: distinct bytes and the most frequent byte's share."""
    import numpy as np

    counts = np.bincount(np.asarray(tokens).ravel())
    return {
        "distinct_tokens": int((counts > 0).sum()),
        "top_token_share": float(counts.max() / max(counts.sum(), 1)),
    }


def decode(workdir: str, n: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxformers.config import model_config_from
    from jaxformers.models.registry import build_model
    from jaxformers.models.sampling import generate
    from jaxformers.models.speculative import speculative_generate
    from jaxformers.train.checkpoint import load_variables

    config, variables, _ = load_variables(workdir)
    model = build_model(config.model_family, model_config_from(config.model))
    prompt = jnp.asarray(np.frombuffer(FLAGS.prompt.encode(), np.uint8).astype(np.int32)[None])
    (greedy, (spec, stats)), (t_greedy, t_spec), times = _interleaved_medians(
        [
            lambda: generate(
                model,
                variables,
                prompt,
                jax.random.PRNGKey(0),
                max_new_tokens=FLAGS.new_tokens,
                temperature=0.0,
            ),
            lambda: speculative_generate(model, variables, prompt, max_new_tokens=FLAGS.new_tokens),
        ],
        FLAGS.reps,
    )
    passes, accepted = int(stats["forward_passes"]), int(stats["accepted_drafts"])
    continuation = np.asarray(greedy)[0, prompt.shape[1] :]
    return {
        "identical_to_greedy": bool(np.array_equal(np.asarray(greedy), np.asarray(spec))),
        "forward_passes": passes,
        "accepted_drafts": accepted,
        "acceptance_rate": accepted / max(passes * (n - 1), 1),
        "tokens_per_pass": FLAGS.new_tokens / (passes + 1),
        "greedy_tokens_per_s": FLAGS.new_tokens / t_greedy,
        "speculative_tokens_per_s": FLAGS.new_tokens / t_spec,
        "speed_up": t_greedy / t_spec,
        "reps": FLAGS.reps,
        "greedy_s": times[0],
        "speculative_s": times[1],
        "continuation": _degeneracy(continuation),
        "text": bytes(int(t) for t in np.asarray(greedy)[0] if t < 256).decode("utf-8", "replace"),
    }


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results.values(), key=lambda r: (r["size"], r["steps"], r["n"]))
    labels = [f"n={r['n']}\n{r['size']}, {r['steps']} st" for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4))
    a.bar(labels, [r["validation"].get("loss_head1", r["validation"]["loss"]) for r in rows])
    a.set(ylabel="head-1 validation loss (nats/byte)", title="next-token loss at equal steps")
    b.bar(labels, [r["decoding"]["tokens_per_pass"] for r in rows], label="tokens / forward pass")
    b.bar(labels, [r["decoding"]["speed_up"] for r in rows], alpha=0.5, label="wall-clock speed-up")
    b.set(title="self-speculative greedy decoding")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    if FLAGS.plot_only:
        print("wrote", _results.save_figure(plot(_results.load(NAME)), NAME))
        return
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics

    for n in map(int, FLAGS.ns):
        config = get_config(f"size={FLAGS.size},n={n}")
        config.num_steps = FLAGS.steps
        config.eval_every = config.checkpoint_every = FLAGS.steps
        config.progress_bar = False
        workdir = os.path.join(FLAGS.root, f"{FLAGS.size}_{FLAGS.steps}_n{n}")
        valid = read_metrics(workdir, "validation") if os.path.exists(workdir) else []
        start = time.perf_counter()
        if not valid or valid[-1]["step"] < FLAGS.steps:
            train_and_evaluate(config, workdir)
            valid = read_metrics(workdir, "validation")
        last = valid[-1]
        result = {
            "n": n,
            "size": FLAGS.size,
            "steps": FLAGS.steps,
            "workdir": workdir,
            "train_wall_s": time.perf_counter() - start,
            "validation": {k: v for k, v in last.items() if k.startswith(("loss", "acc", "flops"))},
            "decoding": decode(workdir, n),
        }
        _results.save_variant(NAME, f"{FLAGS.size}_{FLAGS.steps}steps_n{n}", result)
        d = result["decoding"]
        print(
            f"n={n}: head-1 validation loss {last.get('loss_head1', last['loss']):.4f}  "
            f"acceptance {d['acceptance_rate']:.3f}  tokens/pass {d['tokens_per_pass']:.2f}  "
            f"greedy {d['greedy_tokens_per_s']:.0f} tok/s  speculative "
            f"{d['speculative_tokens_per_s']:.0f} tok/s  identical {d['identical_to_greedy']}"
        )
    print("wrote", _results.save_figure(plot(_results.load(NAME)), NAME))


if __name__ == "__main__":
    app.run(main)
