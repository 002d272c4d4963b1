"""Training throughput of the default run's step under the mixed-precision policies on this CPU.

  python benchmarks/precision_step.py              # -> benchmarks/results/precision_step.json
  python benchmarks/precision_step.py --reps=5

configs/default.py (d=128, 4 layers, batch 16 x 128 bytes) with `model.precision` and
`model.weight_grad_matmul` set per variant:
- fp32: the default (float32 everything; weight_grad_matmul="auto" is the canonical CPU matmul);
- bf16 compute, xla matmul: precision.compute="bfloat16", weight_grad_matmul="xla" (plain autodiff);
- bf16 compute: precision.compute="bfloat16" with the canonical weight-gradient matmul;
- bf16 compute + bf16 grads: also precision.gradients="bfloat16".
The variants are built and timed by train_throughput.py's `jax_variant` and `timed` (compiled, 6
warm-up steps), interleaved with the order reversed on every other repetition; the table gives the
median step over all repetitions.
"""

import json
import os

import numpy as np
from absl import app, flags

from jaxformers import allocator
from jaxformers.configs_loader import load_config, load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS

BF16 = {"compute": "bfloat16"}
VARIANTS = {
    "fp32": {},
    "bf16 compute, xla matmul": {"precision": BF16, "weight_grad_matmul": "xla"},
    "bf16 compute": {"precision": BF16},
    "bf16 compute + bf16 grads": {"precision": dict(BF16, gradients="bfloat16")},
}


# loaded before the flags are parsed: it defines --reps and --steps (3 each), which this script uses
THROUGHPUT = load_file(os.path.join(ROOT, "benchmarks/train_throughput.py"))


def main(argv):
    del argv
    allocator.keep_temp_buffers_in_heap()  # before the CPU backend starts
    throughput = THROUGHPUT
    config = load_config(os.path.join(ROOT, "configs/default.py"))
    steps, tokens = {}, {}
    for name, overrides in VARIANTS.items():
        steps[name], _, _, tokens[name] = throughput.jax_variant(config, overrides)
        print(f"built {name}", flush=True)
    times = {name: [] for name in steps}
    for rep in range(FLAGS.reps):
        for name in list(steps) if rep % 2 == 0 else list(steps)[::-1]:
            times[name] += throughput.timed(steps[name], FLAGS.steps)
    base = np.median(times["fp32"])
    rows = {}
    for name in steps:
        s = float(np.median(times[name]))
        rows[name] = dict(
            overrides=VARIANTS[name],
            step_s=s,
            tokens_per_s=tokens[name] / s,
            vs_fp32=base / s,
            step_times_s=times[name],
        )
        print(f"{name:28s} {s * 1e3:7.0f} ms/step {tokens[name] / s:7.0f} tok/s  x{base / s:.2f} vs fp32")
    out = os.path.join(ROOT, "benchmarks", "results", "precision_step.json")
    with open(out, "w") as f:
        json.dump(
            {"config": "configs/default.py", "reps": FLAGS.reps, "steps": FLAGS.steps, "variants": rows},
            f,
            indent=1,
        )
    print("wrote", out)


if __name__ == "__main__":
    app.run(main)
