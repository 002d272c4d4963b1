"""Causal softmax attention alone, forward + backward: the full T x T square, its remat, and
causal block skipping (`ops.attention.causal_block_attention`) with several block sizes.

  python benchmarks/attention_core.py [--lengths=256,1024 --blocks=64,128,256 --reps=5]

Times `jit(grad(sum(attention(q, k, v) ** 2)))` with B=16, 4 query heads, 2 KV heads, head dim 64,
float32 (the attention of the d=256 decoder row of train_throughput.py), interleaved, medians; reads
XLA's temp memory of each compiled program. Every variant's gradient is checked against the full
square first. Writes benchmarks/results/attention_core.json.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxformers import allocator
from jaxformers.ops.attention import causal_block_attention, dot_product_attention

flags.DEFINE_list("lengths", ["256", "1024"], "Sequence lengths T.")
flags.DEFINE_list("blocks", ["64", "128", "256"], "Query block sizes (those < T are run).")
flags.DEFINE_integer("reps", 5, "Timed calls per variant (interleaved).")
FLAGS = flags.FLAGS
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "attention_core.json")


def grad_of(attention):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(attention(q, k, v) ** 2), argnums=(0, 1, 2)))


def variants(length):
    full = lambda q, k, v: dot_product_attention(q, k, v, causal=True)
    out = {"full": grad_of(full), "remat full": grad_of(jax.checkpoint(full))}
    for b in map(int, FLAGS.blocks):
        if b < length:
            out[f"blocks of {b}"] = grad_of(
                lambda q, k, v, b=b: causal_block_attention(q, k, v, block_size=b))
    return out


def main(argv):
    del argv
    allocator.keep_temp_buffers_in_heap()
    rows = []
    for length in map(int, FLAGS.lengths):
        keys = jax.random.split(jax.random.key(0), 3)
        q = jax.random.normal(keys[0], (16, length, 4, 64))
        k, v = (jax.random.normal(key, (16, length, 2, 64)) for key in keys[1:])
        fns = variants(length)
        reference = fns["full"](q, k, v)
        memory = {}
        for name, fn in fns.items():
            for got, want in zip(fn(q, k, v), reference, strict=True):
                np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
            memory[name] = fn.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes / 2**20
        times = {name: [] for name in fns}
        for _ in range(FLAGS.reps):
            for name, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(q, k, v))
                times[name].append(time.perf_counter() - start)
        base = float(np.median(times["full"]))
        for name in fns:
            step = float(np.median(times[name]))
            rows.append(dict(T=length, variant=name, ms=step * 1e3, speedup=base / step,
                             temp_mib=memory[name], loadavg=os.getloadavg()[0]))
            print(f"T={length:5d} {name:14s} {step * 1e3:9.1f} ms  x{base / step:.2f} vs full  "
                  f"temp {memory[name]:6.0f} MiB", flush=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(dict(jax=jax.__version__, rows=rows), f, indent=2)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    app.run(main)
