"""Multi-token prediction on the byte LM: head-1 (next-token) validation loss for n = 1, 2, 4 at
equal steps, and self-speculative decoding (acceptance, tokens/s) against greedy `generate`.

  nice -n 10 python experiments/mtp_byte_lm.py --ns=1,2,4 --steps=300 --size=tiny
      # -> experiments/results/mtp_byte_lm.json

Each n trains configs/mtp_lm.py:size=...,n=... in --root/n{n} (reused if finished), then decodes
--new_tokens bytes greedily from each of --num_prompts windows of validation text with both
decoders (batch 1, compiled first, then --reps interleaved timings of each in one process; the
medians are summed over prompts). A finished run is reused, so running
again re-measures decoding only.
"""

import os
import time

import _results
import _speculative
from absl import app, flags

NAME = "mtp_byte_lm"

flags.DEFINE_list("ns", ["1", "2", "4"], "Numbers of future tokens n.")
flags.DEFINE_integer("steps", 300, "Training steps (equal for every n).")
flags.DEFINE_string("size", "tiny", "configs/mtp_lm.py size.")
flags.DEFINE_string("root", "runs/mtp_byte_lm", "Workdirs go in root/n{n}.")
flags.DEFINE_string("prompt", "", "Decoding prompt; empty = --num_prompts windows of validation text.")
flags.DEFINE_integer("num_prompts", 8, "Validation-text prompts to decode from.")
flags.DEFINE_integer("prompt_len", 48, "Bytes per validation-text prompt.")
flags.DEFINE_integer("new_tokens", 96, "Bytes to decode.")
flags.DEFINE_integer("reps", 7, "Timed decoding repetitions per decoder (interleaved).")
flags.DEFINE_bool("decode", True, "Measure decoding (off: train and record the loss only).")
flags.DEFINE_bool("plot_only", False, "Only redraw the figure from the JSON.")
FLAGS = flags.FLAGS


def validation_prompts(config, count: int, length: int) -> list:
    """`count` byte windows of `length`, evenly spaced over the validation split, none crossing a
    file boundary: real code the model has not trained on."""
    import numpy as np

    from jaxformers.data.text import DEFAULT_VALIDATION_FRACTION, load_token_stream, resolve_files

    data = config.data
    stream = load_token_stream(
        resolve_files(data.get("paths")), split="validation", max_bytes=data.get("max_bytes"),
        validation_fraction=data.get("validation_fraction", DEFAULT_VALIDATION_FRACTION),
    )  # fmt: skip
    prompts = []
    for start in np.linspace(0, stream.size - length - 1, 4 * count).astype(int):
        window = stream[start : start + length]
        if window.max() < 256 and len(prompts) < count:
            prompts.append(window.astype(np.int32))
    return prompts


def decode(workdir: str) -> dict:
    import numpy as np

    from jaxformers.config import model_config_from
    from jaxformers.models.registry import build_model
    from jaxformers.train.checkpoint import load_variables

    config, variables, _ = load_variables(workdir)
    model = build_model(config.model_family, model_config_from(config.model))
    if FLAGS.prompt:
        prompts = [np.frombuffer(FLAGS.prompt.encode(), np.uint8).astype(np.int32)]
    else:
        prompts = validation_prompts(config, FLAGS.num_prompts, FLAGS.prompt_len)
    return _speculative.compare_decoders(
        model, variables, prompts, new_tokens=FLAGS.new_tokens, reps=FLAGS.reps,
        detokenize=lambda tokens: bytes(int(t) for t in tokens if t < 256).decode("utf-8", "replace"),
    )  # fmt: skip


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results.values(), key=lambda r: (r["size"], r["n"], r["steps"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for size in sorted({r["size"] for r in rows}):
        for n in sorted({r["n"] for r in rows if r["size"] == size}):
            pts = [r for r in rows if r["size"] == size and r["n"] == n and "flops" in r["validation"]]
            if pts:
                a.plot([r["validation"]["flops"] for r in pts],
                       [r["validation"].get("loss_head1", r["validation"]["loss"]) for r in pts],
                       "o-", label=f"{size}, n={n}")  # fmt: skip
    a.set(xlabel="training matmul FLOPs", ylabel="head-1 validation loss (nats/byte)",
          title="next-token loss vs compute")  # fmt: skip
    a.legend(fontsize=8)
    decoded = [r for r in rows if r.get("decoding") and "prompts" in r["decoding"]]
    labels = [f"n={r['n']}\n{r['size']}, {r['steps']} st" for r in decoded]
    b.bar(labels, [r["decoding"]["tokens_per_pass"] for r in decoded], label="tokens / forward pass")
    b.bar(labels, [r["decoding"]["speed_up"] for r in decoded], alpha=0.5, label="wall-clock speed-up")
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
        config = _results.config("mtp_lm", f"size={FLAGS.size},n={n}")
        config.num_steps = FLAGS.steps
        config.eval_every = config.checkpoint_every = FLAGS.steps
        config.progress_bar = False
        workdir = os.path.join(FLAGS.root, f"{FLAGS.size}_{FLAGS.steps}_n{n}")
        valid = read_metrics(workdir, "validation") if os.path.exists(workdir) else []
        key = f"{FLAGS.size}_{FLAGS.steps}steps_n{n}"
        train_wall_s = _results.load(NAME).get(key, {}).get("train_wall_s")  # of the reused run
        if not valid or valid[-1]["step"] < FLAGS.steps:
            start = time.perf_counter()
            train_and_evaluate(config, workdir)
            train_wall_s = time.perf_counter() - start
            valid = read_metrics(workdir, "validation")
        last = valid[-1]
        result = {
            "n": n,
            "size": FLAGS.size,
            "steps": FLAGS.steps,
            "workdir": workdir,
            "train_wall_s": train_wall_s,
            "validation": {k: v for k, v in last.items() if k.startswith(("loss", "acc", "flops"))},
            "decoding": decode(workdir) if FLAGS.decode else None,
        }
        _results.save_variant(NAME, key, result)
        print(
            f"n={n}, {FLAGS.steps} steps: head-1 validation loss {last.get('loss_head1', last['loss']):.4f}"
        )
        if d := result["decoding"]:
            print(
                f"  acceptance {d['acceptance_rate']:.3f}  tokens/pass {d['tokens_per_pass']:.2f}  "
                f"greedy {d['greedy_tokens_per_s']:.0f} tok/s  speculative "
                f"{d['speculative_tokens_per_s']:.0f} tok/s  identical {d['identical_to_greedy']}"
            )
    print("wrote", _results.save_figure(plot(_results.load(NAME)), NAME))


if __name__ == "__main__":
    app.run(main)
