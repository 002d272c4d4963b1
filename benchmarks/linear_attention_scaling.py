"""Forward+backward time and peak memory vs sequence length: softmax vs chunked / recurrent GLA.

  python benchmarks/linear_attention_scaling.py [--lengths=512,1024,...,16384] [--heads=1]

Each function is jitted as grad of sum(out * dout) w.r.t. q, k, v (and the log gate for GLA),
float32, B=1, Dk=Dv=64. Time: best of `--repeats` runs after a warm-up (this CPU is shared, so
timings are noisy; the best-of filters some of that). Memory: XLA's compile-time buffer
assignment for the whole fwd+bwd program (`compiled.memory_analysis()`: arguments + outputs +
temporaries), which is the peak the program can reach. Prints a table and the crossover length;
writes benchmarks/results/linear_attention_scaling.{json,png} (time and memory against T, log-log).
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxformers.ops import attention as attention_ops
from jaxformers.ops import linear_attention as la

flags.DEFINE_string("lengths", "512,1024,2048,4096,8192,16384", "Sequence lengths T.")
flags.DEFINE_string("forms", "softmax_xla,gla_chunked,gla_recurrent", "Which implementations.")
flags.DEFINE_integer("heads", 1, "Heads.")
flags.DEFINE_integer("dim", 64, "Head dim (Dk = Dv).")
flags.DEFINE_integer("repeats", 3, "Timed runs per point (best of; 2 from T = 8192).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "linear_attention_scaling.json"), "Result JSON (PNG next to it).")


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


def plot(result: dict):
    """Fwd+bwd time and XLA peak memory against T, one line per form (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for form in dict.fromkeys(r["form"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["form"] == form]
        t = [r["T"] for r in rows]
        axes[0].plot(t, [r["seconds"] * 1e3 for r in rows], "o-", label=form)
        axes[1].plot(t, [r["peak_bytes"] / 2**20 for r in rows], "o-", label=form)
    axes[0].set(xscale="log", yscale="log", xlabel="T", ylabel="fwd+bwd ms (best of runs)",
                title=f"time, {result['backend']}, H={result['heads']}, D={result['dim']}")
    axes[1].set(xscale="log", yscale="log", xlabel="T", ylabel="MiB (XLA buffer assignment)",
                title="memory")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    args = flags.FLAGS
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
    result = {"rows": rows, "summary": summary, "heads": args.heads, "dim": args.dim,
              "backend": jax.default_backend()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    plot(result).savefig(args.out.removesuffix(".json") + ".png", dpi=100)
    print("wrote", args.out, "and its .png")


if __name__ == "__main__":
    app.run(main)
