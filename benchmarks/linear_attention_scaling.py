"""Forward+backward time and peak memory vs sequence length: softmax vs chunked / recurrent GLA.

  python benchmarks/linear_attention_scaling.py [--lengths 512,1024,...,16384] [--heads 1]

Each function is jitted as grad of sum(out * dout) w.r.t. q, k, v (and the log gate for GLA),
float32, B=1, Dk=Dv=64. Time: best of `--repeats` runs after a warm-up (this CPU is shared, so
timings are noisy; the best-of filters some of that). Memory: XLA's compile-time buffer
assignment for the whole fwd+bwd program (`compiled.memory_analysis()`: arguments + outputs +
temporaries), which is the peak the program can reach. Prints a table and the crossover length;
writes benchmarks/results/linear_attention_scaling.json.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jaxformers.ops import attention as attention_ops  # noqa: E402
from jaxformers.ops import linear_attention as la  # noqa: E402


def softmax_attention(q, k, v, g):
    del g
    return attention_ops.dot_product_attention(q, k, v, causal=True)


def gla_chunked(q, k, v, g, chunk_size=64):
    return la.gla_chunked(q, k, v, g, chunk_size=chunk_size)[0]


def gla_recurrent(q, k, v, g):
    return la.gla_recurrent(q, k, v, g)[0]


FORMS = {"softmax_xla": softmax_attention, "gla_chunked": gla_chunked,
         "gla_recurrent": gla_recurrent}


def fwd_bwd(fn):
    def loss(q, k, v, g, dout):
        return jnp.sum(fn(q, k, v, g) * dout)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))


def measure(name, t, heads, dim, repeats):
    rng = np.random.default_rng(0)
    shape = (1, t, heads, dim)
    q, k, v, dout = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(4))
    g = jax.nn.log_sigmoid(jnp.asarray(rng.normal(size=shape), jnp.float32)) / 16
    step = fwd_bwd(FORMS[name])
    compiled = step.lower(q, k, v, g, dout).compile()
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)
    jax.block_until_ready(compiled(q, k, v, g, dout))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(q, k, v, g, dout))
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "peak_bytes": int(peak)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="512,1024,2048,4096,8192,16384")
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "linear_attention_scaling.json"))
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    forms = args.forms.split(",")
    rows = []
    for t in lengths:
        for name in forms:
            r = measure(name, t, args.heads, args.dim, args.repeats if t < 8192 else 2)
            rows.append({"form": name, "T": t} | r)
            print(f"T={t:6d} {name:>14}: {r['seconds'] * 1e3:10.1f} ms  "
                  f"{r['peak_bytes'] / 2**20:9.1f} MiB", flush=True)
    table = {(r["form"], r["T"]): r for r in rows}
    print(f"\n{'T':>6} " + " ".join(f"{f + ' ms':>18} {'MiB':>8}" for f in forms))
    for t in lengths:
        cells = [f"{table[(f, t)]['seconds'] * 1e3:18.1f} {table[(f, t)]['peak_bytes'] / 2**20:8.1f}"
                 for f in forms]
        print(f"{t:6d} " + " ".join(cells))
    summary = {}
    if "softmax_xla" in forms and "gla_chunked" in forms:
        faster = [t for t in lengths
                  if table[("gla_chunked", t)]["seconds"] < table[("softmax_xla", t)]["seconds"]]
        summary["crossover_T"] = min(faster) if faster else None
        t_max = max(lengths)
        summary["speedup_at_max_T"] = (table[("softmax_xla", t_max)]["seconds"]
                                       / table[("gla_chunked", t_max)]["seconds"])
        print(f"\ncrossover (chunked GLA faster than softmax) from T = {summary['crossover_T']}; "
              f"speed-up at T = {t_max}: {summary['speedup_at_max_T']:.1f}x")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "summary": summary, "heads": args.heads, "dim": args.dim,
                   "backend": jax.default_backend()}, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
