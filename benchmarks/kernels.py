"""Pallas kernels vs XLA: correctness on the device, then forward and forward+backward timings.

    python benchmarks/kernels.py                # on GPU/TPU: B=4, H=16, D=128, T=1k..16k, bf16
    python benchmarks/kernels.py --small        # any platform, tiny shapes (used on CPU)

Flash attention is timed against `jax.nn.dot_product_attention` (implementation "xla", and
"cudnn" on GPU); the Pallas GLA against the XLA chunked GLA (`ops.linear_attention.gla_chunked`).
Median of --iters device-synchronised calls after warm-up. Prints a table of ratios (time of the
reference / time of the Pallas kernel: > 1 means the kernel is faster) and writes JSON to
benchmarks/results/kernels_<platform>.json and a bar chart kernels_<platform>.png.
Targets on GPU: flash >= 0.8x cuDNN throughput,
Pallas GLA faster than XLA chunked.

On CPU the Pallas kernels run in the interpreter (a jitted loop over the grid): those timings say
nothing about GPU/TPU speed, only that the code runs; they are labelled "interpret".
"""

import functools
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxformers.kernels import backend
from jaxformers.kernels.flash_attention import flash_attention
from jaxformers.kernels.gla import gla
from jaxformers.ops.linear_attention import gla_chunked


def _time(fn, args, iters):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fwd_bwd(f):
    def loss(*a):
        out = f(*a)
        out = out[0] if isinstance(out, tuple) else out
        return jnp.sum(out.astype(jnp.float32))

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))  # q, k, v and the gate (GLA)


def _rel(a, b):
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def bench_flash(b, t, h, d, dtype, iters, platform):
    ks = jax.random.split(jax.random.PRNGKey(0), 3)
    q, k, v = (jax.random.normal(kk, (b, t, h, d), dtype) for kk in ks)
    x = jnp.zeros((), dtype)  # a dummy 4th argument, so that both kernels share _fwd_bwd

    def sdpa(implementation):
        return lambda q, k, v, x: jax.nn.dot_product_attention(
            q, k, v, is_causal=True, implementation=implementation) + x

    impls = {"pallas": lambda q, k, v, x: flash_attention(q, k, v, causal=True,
                                                          impl="pallas") + x,
             "xla": sdpa("xla")}
    if platform == "gpu":
        impls["cudnn"] = sdpa("cudnn")
    rows = {}
    ref = jax.jit(impls["xla"])(q, k, v, x)
    for name, f in impls.items():
        err = _rel(jax.jit(f)(q, k, v, x), ref)
        rows[name] = dict(fwd_s=_time(jax.jit(f), (q, k, v, x), iters),
                          fwd_bwd_s=_time(_fwd_bwd(f), (q, k, v, x), iters), max_rel_err=err)
    return rows


def bench_gla(b, t, h, d, dtype, iters, chunk):
    ks = jax.random.split(jax.random.PRNGKey(1), 4)
    q, k, v = (jax.random.normal(kk, (b, t, h, d), dtype) for kk in ks[:3])
    g = (jax.nn.log_sigmoid(jax.random.normal(ks[3], (b, t, h, d))) / 16).astype(dtype)
    impls = {"pallas": lambda q, k, v, g: gla(q, k, v, g, chunk_size=chunk, impl="pallas"),
             "xla": lambda q, k, v, g: gla_chunked(q, k, v, g, chunk_size=chunk)}
    ref = jax.jit(impls["xla"])(q, k, v, g)[0]
    rows = {}
    for name, f in impls.items():
        err = _rel(jax.jit(f)(q, k, v, g)[0], ref)
        rows[name] = dict(fwd_s=_time(jax.jit(f), (q, k, v, g), iters),
                          fwd_bwd_s=_time(_fwd_bwd(f), (q, k, v, g), iters), max_rel_err=err)
    return rows


flags.DEFINE_bool("small", False, "Tiny shapes (the default on CPU).")
flags.DEFINE_integer("iters", None, "Timed calls per point (default 20, 5 with --small).")
flags.DEFINE_string("lengths", None, "Comma-separated T values.")


def plot(results: dict):
    """Forward+backward time of every implementation, per kernel and T (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernels = [k for k in ("flash", "gla") if results[k]]
    fig, axes = plt.subplots(1, len(kernels), figsize=(5 * len(kernels), 3.6), squeeze=False)
    for ax, kernel in zip(axes.flat, kernels):
        sizes = [t for t, rows in results[kernel].items() if "error" not in rows]
        impls = list(results[kernel][sizes[0]]) if sizes else []
        width = 0.8 / max(len(impls), 1)
        for i, impl in enumerate(impls):
            label = impl + (" (interpret)" if impl == "pallas" and results["mode"] == "interpret" else "")
            ax.bar([j + i * width for j in range(len(sizes))],
                   [1e3 * results[kernel][t][impl]["fwd_bwd_s"] for t in sizes], width, label=label)
        centers = [j + width * (len(impls) - 1) / 2 for j in range(len(sizes))]
        ax.set_xticks(centers, [f"T={t}" for t in sizes])
        ax.set(yscale="log", ylabel="fwd+bwd ms (median)",
               title=f"{kernel}, {results['device']}, {results['mode']}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    args = flags.FLAGS
    platform = backend.target_platform()
    small = args.small or platform == "cpu"
    if small:
        b, h, d, dtype, lengths, iters = 1, 2, 64, jnp.float32, (256, 512), args.iters or 5
    else:
        b, h, d, dtype, lengths, iters = 4, 16, 128, jnp.bfloat16, (1024, 2048, 4096, 8192,
                                                                     16384), args.iters or 20
    if args.lengths:
        lengths = tuple(int(x) for x in args.lengths.split(","))
    mode = "interpret" if platform == "cpu" else "compiled"
    results = dict(platform=platform, device=str(jax.devices()[0].device_kind), mode=mode,
                   jax=jax.__version__, shape=dict(b=b, h=h, d=d, dtype=jnp.dtype(dtype).name),
                   iters=iters, flash={}, gla={})
    print(f"platform={platform} ({results['device']}), Pallas mode={mode}, B={b} H={h} D={d} "
          f"{jnp.dtype(dtype).name}, median of {iters}")
    if mode == "interpret":
        print("NOTE: interpret-mode timings on CPU are NOT representative of GPU/TPU speed.")
    print(f"{'kernel':8} {'T':>6} {'impl':7} {'fwd ms':>9} {'fwd+bwd ms':>11} {'ref/pallas fwd':>15}"
          f" {'ref/pallas f+b':>15} {'rel err':>8}")
    for t in lengths:
        for kernel, fn in (("flash", functools.partial(bench_flash, platform=platform)),
                           ("gla", functools.partial(bench_gla, chunk=64))):
            try:
                rows = fn(b, t, h, d, dtype, iters)
            except Exception as e:  # noqa: BLE001 - report and continue with the next size
                print(f"{kernel:8} {t:6d} FAILED: {type(e).__name__}: {str(e)[:200]}")
                results[kernel][str(t)] = dict(error=f"{type(e).__name__}: {e}"[:500])
                continue
            results[kernel][str(t)] = rows
            p = rows["pallas"]
            for name, r in rows.items():
                print(f"{kernel:8} {t:6d} {name:7} {1e3 * r['fwd_s']:9.2f} "
                      f"{1e3 * r['fwd_bwd_s']:11.2f} {r['fwd_s'] / p['fwd_s']:15.2f} "
                      f"{r['fwd_bwd_s'] / p['fwd_bwd_s']:15.2f} {r['max_rel_err']:8.1e}")
    out = pathlib.Path(__file__).parent / "results" / f"kernels_{platform}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    plot(results).savefig(out.with_suffix(".png"), dpi=100)
    print(f"wrote {out} and its .png")


if __name__ == "__main__":
    app.run(main)
