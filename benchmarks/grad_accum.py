"""Peak memory and tokens/s of the compiled train step at 1, 4 and 16 accumulated micro-batches.

  nice -n 10 python benchmarks/grad_accum.py                       # default config, batch 32
  nice -n 10 python benchmarks/grad_accum.py --accum=1,2,4 --batch_size=64

The same global batch (config.batch_size) is split into `grad_accum_steps` micro-batches that one
`lax.scan` inside the jitted step runs in turn (train/experiment.py:accumulate_gradients). Memory is
XLA's buffer assignment of the compiled step (`compiled.memory_analysis()`: temp = activations and
scratch; arguments = state + batch). Tokens/s is the median of `--steps` timed steps after 2 warm-up
steps. Writes benchmarks/results/grad_accum.json and .png (`--plot_only` redraws the PNG from the JSON).
"""

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

from jaxformers.configs_loader import load_config
from jaxformers.train.experiment import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("accum", ["1", "4", "16"], "grad_accum_steps values to compile and time.")
flags.DEFINE_integer("batch_size", 32, "Global batch (tokens = batch x config.data.seq_len).")
flags.DEFINE_integer("steps", 5, "Timed steps per setting.")
flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/grad_accum.json"), "Output JSON.")
flags.DEFINE_bool("plot_only", False, "Only redraw the PNG next to --out from the stored JSON.")
FLAGS = flags.FLAGS


def measure(accum: int) -> dict:
    config = load_config(os.path.join(ROOT, "configs/default.py"))
    config.batch_size, config.grad_accum_steps, config.checkpoint_every = FLAGS.batch_size, accum, 0
    exp = Experiment(config)
    state = exp.fresh_state()
    batch = exp.global_batch(next(exp.make_iterator("train")))
    compiled, flops = exp.compile_train_step(state, batch)
    mem = compiled.memory_analysis()
    for _ in range(2):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(FLAGS.steps):
        t = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    step = float(np.median(times))
    tokens = config.batch_size * config.data.seq_len
    return dict(grad_accum_steps=accum, micro_batch=config.batch_size // accum,
                temp_bytes=int(mem.temp_size_in_bytes), argument_bytes=int(mem.argument_size_in_bytes),
                output_bytes=int(mem.output_size_in_bytes), step_s=step, tokens_per_s=tokens / step,
                matmul_flops=flops, loss=float(metrics["total_loss"]))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r["grad_accum_steps"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    ax1.bar(labels, [r["temp_bytes"] / 2**20 for r in rows])
    ax1.set(xlabel="grad_accum_steps", ylabel="XLA temp memory (MiB)", title="peak activations")
    ax2.bar(labels, [r["tokens_per_s"] for r in rows])
    ax2.set(xlabel="grad_accum_steps", ylabel="tokens/s", title="throughput (same global batch)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv):
    del argv
    png = FLAGS.out.removesuffix(".json") + ".png"
    if FLAGS.plot_only:
        with open(FLAGS.out) as f:
            plot(json.load(f)["rows"], png)
        return
    rows = [measure(int(a)) for a in FLAGS.accum]
    for r in rows:
        print(f"accum={r['grad_accum_steps']:3d} micro={r['micro_batch']:3d} "
              f"temp={r['temp_bytes'] / 2**20:8.2f} MiB args={r['argument_bytes'] / 2**20:6.2f} MiB "
              f"step={r['step_s'] * 1e3:8.1f} ms tokens/s={r['tokens_per_s']:9.0f}")
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(dict(config="configs/default.py", batch_size=FLAGS.batch_size,
                       device=jax.devices()[0].platform, rows=rows), f, indent=1)
    plot(rows, png)


if __name__ == "__main__":
    app.run(main)
