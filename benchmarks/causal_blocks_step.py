"""One d=256, 4-layer decoder training step at T=1024 (batch 4): causal attention as the full square
against causal block skipping (`model.attention.causal_block_size` 128 and 64), interleaved medians.
The variants are built and timed by train_throughput.py's `jax_variant` and `timed`.

  python benchmarks/causal_blocks_step.py
"""

import os
import time

import numpy as np

from jaxformers import allocator
from jaxformers.configs_loader import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
T, B = 1024, 4


def main():
    allocator.keep_temp_buffers_in_heap()  # before the CPU backend starts
    throughput = load_file(os.path.join(HERE, "train_throughput.py"))
    from jaxformers.testing import tiny_train_config

    config = tiny_train_config(batch_size=B, num_steps=1000)
    config.model.update(dict(embed_dim=256, num_layers=4, num_heads=4, num_kv_heads=2, max_len=T,
                             vocab_size=264))
    config.data = dict(name="synthetic", seq_len=T, vocab=256, num_records=512)
    variants, build_s = {}, {}
    for name, block_size in (("full", 0), ("blocks128", 128), ("blocks64", 64)):
        start = time.perf_counter()
        variants[name] = throughput.jax_variant(config, {"attention": {"causal_block_size": block_size}})[0]
        build_s[name] = time.perf_counter() - start
    times = {name: [] for name in variants}
    for _ in range(3):
        for name, step in variants.items():
            times[name] += throughput.timed(step, 1)
    base = np.median(times["full"])
    for name in variants:
        s = np.median(times[name])
        print(f"T={T} B={B} d=256 {name}: {s:.2f} s/step, {B * T / s:.0f} tok/s, x{base / s:.2f} vs full "
              f"(build, compile and warm-up {build_s[name]:.1f} s)")


if __name__ == "__main__":
    main()
