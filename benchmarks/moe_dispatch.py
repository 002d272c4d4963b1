"""Speed of the MoE FFN's masked path vs the capacity-dispatch path, as a function of k.

  python benchmarks/moe_dispatch.py [--tokens=2048 --embed=128 --hidden=512 --experts=8]

Times one jitted forward+backward of `ops.moe` (router + experts) on `--tokens` tokens in
sequences of `--seq` (one dispatch group per sequence), best of `--repeats`, and reads XLA's
FLOP count. Masked runs every expert on every token (dense FLOPs for any k); dispatch runs
experts on ceil(capacity_factor·k·S/N) rows each, so its FLOPs scale with k. The dense FFN of
the same total width is the reference row. Writes benchmarks/results/moe_dispatch.json.
CPU timings on a shared machine are noisy; compare the FLOP column first.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxformers.ops import moe

flags.DEFINE_integer("tokens", 2048, "Tokens per call.")
flags.DEFINE_integer("seq", 128, "Tokens per sequence (one dispatch group each).")
flags.DEFINE_integer("embed", 128, "Model width d.")
flags.DEFINE_integer("hidden", 512, "Total FFN width (split over the experts).")
flags.DEFINE_integer("experts", 8, "Experts N.")
flags.DEFINE_float("capacity_factor", 1.25, "Dispatch capacity factor.")
flags.DEFINE_integer("repeats", 5, "Timed calls (best of).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "moe_dispatch.json"), "Result JSON.")


def timed(fn, *args, repeats: int):
    compiled = jax.jit(fn).lower(*args).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return best, float(analysis.get("flops", 0.0))


def main(argv):
    del argv
    a = flags.FLAGS
    n, d, h = a.experts, a.embed, a.hidden // a.experts
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    x = jax.random.normal(keys[0], (a.tokens // a.seq, a.seq, d))
    router = jax.random.normal(keys[1], (d, n)) / d**0.5
    params = (jax.random.normal(keys[2], (n, d, h)) * 0.02, jnp.zeros((n, h)),
              jax.random.normal(keys[3], (n, h, d)) * 0.02, jnp.zeros((n, d)))
    dense = (params[0].transpose(1, 0, 2).reshape(d, n * h), params[2].reshape(n * h, d))

    def grad_of(f):
        return jax.grad(lambda x, r, p: jnp.sum(f(x, r, p) ** 2), argnums=(0, 1, 2))

    rows = []
    t, f = timed(grad_of(lambda x, r, p: jax.nn.relu(x @ p[0]) @ p[1]), x, router, dense,
                 repeats=a.repeats)
    rows.append(dict(path="dense", k=n, ms=1e3 * t, gflops=f / 1e9))
    k = 1
    while k <= n:
        def masked(x, r, p, k=k):
            return moe.moe_masked(x, moe.topk_softmax_combine(moe.router_logits(x, r), k), *p)

        cap = moe.expert_capacity(a.seq, n, k, a.capacity_factor)

        def dispatch(x, r, p, k=k, cap=cap):
            return moe.moe_dispatch(x, moe.router_logits(x, r), *p, k=k, capacity=cap)

        for name, fn in (("masked", masked), ("dispatch", dispatch)):
            t, f = timed(grad_of(fn), x, router, params, repeats=a.repeats)
            rows.append(dict(path=name, k=k, ms=1e3 * t, gflops=f / 1e9,
                             capacity=cap if name == "dispatch" else None))
        k *= 2
    print(f"MoE FFN fwd+bwd, {a.tokens} tokens (groups of {a.seq}), d={d}, N={n}, h={h}, "
          f"capacity_factor={a.capacity_factor}, backend={jax.default_backend()}")
    print(f"{'path':>9} {'k':>3} {'capacity':>8} {'ms':>8} {'GFLOP':>8}")
    for r in rows:
        print(f"{r['path']:>9} {r['k']:>3} {str(r.get('capacity') or '-'):>8} {r['ms']:8.2f} "
              f"{r['gflops']:8.3f}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        names = ("tokens", "seq", "embed", "hidden", "experts", "capacity_factor", "repeats", "out")
        args = {k: getattr(a, k) for k in names}
        json.dump(dict(args=args, backend=jax.default_backend(), rows=rows), fh, indent=1)


if __name__ == "__main__":
    app.run(main)
