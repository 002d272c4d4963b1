"""Speed of the MoE FFN's masked path vs the capacity-dispatch path, as a function of k.

  python benchmarks/moe_dispatch.py [--tokens=2048 --embed=128 --hidden=512 --experts=8]

Times one jitted forward+backward of `ops.moe` (router + experts) on `--tokens` tokens in
sequences of `--seq` (one dispatch group per sequence), best of `--repeats`, and reads XLA's
FLOP count. Masked runs every expert on every token (dense FLOPs for any k); dispatch runs
experts on ceil(capacity_factor·k·S/N) rows each, so its FLOPs scale with k. The dense FFN of
the same total width is the reference row. Writes benchmarks/results/moe_dispatch.json.
CPU timings on a shared machine are noisy; compare the FLOP column first.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jaxformers.ops import moe  # noqa: E402


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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--capacity_factor", type=float, default=1.25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "moe_dispatch.json"))
    a = p.parse_args()
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
        json.dump(dict(args=vars(a), backend=jax.default_backend(), rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
