"""Training-step time and memory against sequence length T: GLA against softmax attention LMs.

  python benchmarks/long_context_step.py                        # T = 256 ... 4096
  python benchmarks/long_context_step.py --lengths=2048 --reps=5

The models of configs/long_context.py (d=128, 4 layers, equal parameters) on the default corpus,
the same number of tokens per step at every T (`--tokens`, batch = tokens / T). Variants: `gla`
(chunked GLA, XLA), `softmax` (the full T x T square) and `softmax_blocks` (causal block skipping,
model.attention.causal_block_size = `--block`). At each T the variants run interleaved, order
reversed on every other repetition, after compiling and 2 warm-up steps; the table gives the median
step. Memory: XLA's buffer assignment of the compiled step (`compiled.memory_analysis()`:
temporaries = activations kept for the backward + scratch; arguments = state + batch). Prints the
crossover T (the first T at which GLA's step is faster than both softmax variants) and writes
benchmarks/results/long_context_step.{json,png}.
"""

import json
import os
import time

import numpy as np
from absl import app, flags

from jaxformers import allocator
from jaxformers.configs_loader import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "long_context_step")
flags.DEFINE_list("lengths", ["256", "1024", "2048", "4096"], "Sequence lengths T.")
flags.DEFINE_list("variants", ["gla", "softmax", "softmax_blocks"], "Which models.")
flags.DEFINE_integer("tokens", 4096, "Tokens per step (batch = tokens / T).")
flags.DEFINE_integer("block", 128, "causal_block_size of the softmax_blocks variant.")
flags.DEFINE_integer("reps", 3, "Interleaved repetitions (one timed step each).")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compiling.")
FLAGS = flags.FLAGS

MIB = 2**20


def long_context_config(mixer: str, seq: int, batch: int, block: int):
    arg = f"mixer={mixer},seq={seq},batch={batch},block={block}"
    return load_config(os.path.join(ROOT, "configs", "long_context.py"), arg)


def build(variant: str, seq: int):
    """(step closure, row of static facts) for one variant at length `seq`."""
    import jax

    from jaxformers.train.experiment import Experiment

    mixer = "gla" if variant == "gla" else "attention"
    block = FLAGS.block if variant == "softmax_blocks" else 0
    config = long_context_config(mixer, seq, FLAGS.tokens // seq, block)
    config.mesh.update(data=1, fsdp=1, tensor=1)
    start = time.perf_counter()
    exp = Experiment(config, devices=jax.devices()[:1])
    state = [exp.fresh_state()]
    batch = exp.global_batch(next(exp.make_iterator("train")))
    compiled, flops = exp.compile_train_step(state[0], batch)
    memory = compiled.memory_analysis()

    def step():
        state[0], metrics = compiled(state[0], batch)
        jax.block_until_ready((state[0], metrics))

    for _ in range(FLAGS.warmup):
        step()
    row = dict(
        params=int(sum(x.size for x in jax.tree.leaves(state[0].params))),
        batch=config.batch_size,
        flops_per_step=flops,
        temp_mib=memory.temp_size_in_bytes / MIB,
        argument_mib=memory.argument_size_in_bytes / MIB,
        build_s=time.perf_counter() - start,
    )
    return step, row


def measure(seq: int) -> dict:
    steps, rows = {}, {}
    for variant in FLAGS.variants:
        steps[variant], rows[variant] = build(variant, seq)
        print(
            f"  T={seq} {variant}: built in {rows[variant]['build_s']:.0f} s, temp "
            f"{rows[variant]['temp_mib']:.0f} MiB",
            flush=True,
        )
    times = {v: [] for v in steps}
    for rep in range(FLAGS.reps):
        for variant in list(steps) if rep % 2 == 0 else list(steps)[::-1]:
            start = time.perf_counter()
            steps[variant]()
            times[variant].append(time.perf_counter() - start)
    for variant, row in rows.items():
        row["step_s"] = float(np.median(times[variant]))
        row["step_times_s"] = times[variant]
        row["tokens_per_s"] = FLAGS.tokens / row["step_s"]
    return rows


def crossover(results: dict) -> int | None:
    for seq in sorted(results, key=int):
        row = results[seq]
        softmax = [row[v]["step_s"] for v in row if v != "gla"]
        if "gla" in row and softmax and row["gla"]["step_s"] < min(softmax):
            return int(seq)
    return None


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(results, key=int)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for variant in FLAGS.variants:
        xs = [int(s) for s in lengths if variant in results[s]]
        ax_t.plot(xs, [results[str(s)][variant]["tokens_per_s"] for s in xs], "o-", label=variant)
        ax_m.plot(xs, [results[str(s)][variant]["temp_mib"] for s in xs], "o-", label=variant)
    for ax, label in ((ax_t, "training tokens/s"), (ax_m, "XLA temp memory of the step (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.legend()
    ax_m.set_yscale("log")
    fig.suptitle(f"d=128, 4 layers, {FLAGS.tokens} tokens/step, 2-core CPU")
    fig.tight_layout()
    fig.savefig(RESULTS + ".png", dpi=100)


def main(argv):
    del argv
    allocator.keep_temp_buffers_in_heap()  # before the CPU backend starts
    results = {}
    if os.path.exists(RESULTS + ".json"):
        with open(RESULTS + ".json") as f:
            results = json.load(f).get("lengths", {})
    for seq in (int(s) for s in FLAGS.lengths):
        print(f"T={seq}, batch {FLAGS.tokens // seq}", flush=True)
        results[str(seq)] = measure(seq)
        for variant, row in results[str(seq)].items():
            print(
                f"T={seq:5d} {variant:15s} {row['step_s']:6.2f} s/step {row['tokens_per_s']:7.0f} "
                f"tok/s  temp {row['temp_mib']:7.1f} MiB  params {row['params']}",
                flush=True,
            )
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS + ".json", "w") as f:
            json.dump(
                {
                    "tokens_per_step": FLAGS.tokens,
                    "block": FLAGS.block,
                    "crossover_T": crossover(results),
                    "lengths": results,
                },
                f,
                indent=1,
            )
    print("crossover T (GLA faster per token than every softmax variant):", crossover(results))
    plot(results)


if __name__ == "__main__":
    app.run(main)
