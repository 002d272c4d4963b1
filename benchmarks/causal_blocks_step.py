"""One d=256, 4-layer decoder training step at T=1024 (batch 4): causal attention as the full square
against causal block skipping (`model.attention.causal_block_size` 128 and 64), interleaved medians.

  python benchmarks/causal_blocks_step.py
"""

import copy
import time

from jaxformers import allocator

allocator.keep_temp_buffers_in_heap()  # before the CPU backend starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxformers.testing import tiny_train_config  # noqa: E402
from jaxformers.train.experiment import Experiment  # noqa: E402

T, B = 1024, 4


def make_step(config, block_size):
    config = copy.deepcopy(config)
    config.model.attention.causal_block_size = block_size
    exp = Experiment(config, devices=jax.devices()[:1])
    state = [exp.fresh_state()]
    batch = exp.global_batch(next(exp.make_iterator("train")))
    start = time.perf_counter()
    step_fn, _ = exp.compile_train_step(state[0], batch)
    compile_s = time.perf_counter() - start

    def step():
        state[0], metrics = step_fn(state[0], batch)
        jax.block_until_ready(metrics)

    for _ in range(3):
        step()
    return step, compile_s


def main():
    config = tiny_train_config(batch_size=B, num_steps=1000)
    config.model.update(dict(embed_dim=256, num_layers=4, num_heads=4, num_kv_heads=2, max_len=T,
                             vocab_size=264))
    config.data = dict(name="synthetic", seq_len=T, vocab=256, num_records=512)
    config.mesh.update(data=1, fsdp=1, tensor=1)
    variants = {name: make_step(config, b) for name, b in (("full", 0), ("blocks128", 128),
                                                           ("blocks64", 64))}
    times = {name: [] for name in variants}
    for _ in range(3):
        for name, (step, _) in variants.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    base = np.median(times["full"])
    for name, (_, compile_s) in variants.items():
        s = np.median(times[name])
        print(f"T={T} B={B} d=256 {name}: {s:.2f} s/step, {B * T / s:.0f} tok/s, x{base / s:.2f} vs full "
              f"(compile {compile_s:.1f} s)")


if __name__ == "__main__":
    main()
