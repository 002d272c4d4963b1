"""Training throughput and MFU of the default decoder at d=256 and d=512, next to PyTorch.

  python benchmarks/train_throughput.py            # prints a table, writes benchmarks/results/

All numbers come from one run, side by side: this machine's measured float32 matmul peak through
XLA (the physical limit), the jaxformers step (tokens/s, XLA-counted FLOPs, MFU) and the same
model in PyTorch on the same CPU (if torch is installed).
"""

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.testing import tiny_train_config
from jaxformers.train.loop import Experiment


def peak_matmul_flops(n=2048, repeats=10):
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def model_sizes(d):
    return dict(embed_dim=d, num_layers=4, num_heads=d // 64, num_kv_heads=d // 128, max_len=256,
                vocab_size=264)


def time_jax(d, batch, seq, steps):
    cfg = tiny_train_config(batch_size=batch, num_steps=1000)
    cfg.model.update(model_sizes(d))
    cfg.data = dict(name="synthetic", seq_len=seq, vocab=256, num_records=4096)
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    exp = Experiment(cfg, devices=jax.devices()[:1])
    state = exp.fresh_state()
    it = exp.make_iterator("train")
    batch_arr = exp.global_batch(next(it))
    step_fn, flops = exp.compile_train_step(state, batch_arr)
    for _ in range(2):
        state, m = step_fn(state, batch_arr)
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = step_fn(state, batch_arr)
        jax.block_until_ready((state, m))
        times.append(time.perf_counter() - t)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    return float(np.median(times)), flops, n_params, exp.model_cfg.hidden_dim


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", default="256,512")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "train_throughput.json"))
    args = parser.parse_args()
    peak = peak_matmul_flops()
    rows = []
    for d in (int(x) for x in args.dims.split(",")):
        step_s, flops, n_params, hidden = time_jax(d, args.batch, args.seq, args.steps)
        tokens = args.batch * args.seq
        row = dict(d=d, params=n_params, jax_step_s=step_s, jax_tokens_per_s=tokens / step_s,
                   matmul_flops_per_token=flops / tokens, mfu=flops / step_s / peak)
        try:  # benchmarks/ is on sys.path when this file runs as a script
            from torch_reference import time_train_steps
        except ImportError:
            time_train_steps = None
        if time_train_steps is not None:
            sizes = model_sizes(d)
            t_step, _ = time_train_steps(
                vocab=264, d=d, layers=4, heads=sizes["num_heads"], kv_heads=sizes["num_kv_heads"],
                hidden=hidden, batch=args.batch, seq=args.seq, steps=args.steps)
            row.update(torch_step_s=t_step, torch_tokens_per_s=tokens / t_step,
                       jax_over_torch=t_step / step_s)
        rows.append(row)
    result = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                  jax=jax.__version__, peak_matmul_gflops=peak / 1e9, batch=args.batch,
                  seq=args.seq, rows=rows, load_average=os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"peak float32 matmul (XLA, 2048^3): {peak / 1e9:.0f} GFLOP/s; load avg {os.getloadavg()}")
    print(f"{'d':>5} {'params':>9} {'jax tok/s':>10} {'MFU':>6} {'torch tok/s':>12} {'jax/torch':>9}")
    for r in rows:
        torch_rate, ratio = r.get("torch_tokens_per_s", float("nan")), r.get("jax_over_torch", float("nan"))
        print(f"{r['d']:>5} {r['params']:>9} {r['jax_tokens_per_s']:>10.0f} {r['mfu']:>6.1%} "
              f"{torch_rate:>12.0f} {ratio:>9.2f}")


if __name__ == "__main__":
    main()
