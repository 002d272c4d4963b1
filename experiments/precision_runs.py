"""The default run under three mixed-precision policies: tokens/s and final validation loss.

  python launch/train.py --workdir=runs/prec_fp32
  python launch/train.py --workdir=runs/prec_bf16_xla --config.model.precision.compute=bfloat16 \
      --config.model.weight_grad_matmul=xla
  python launch/train.py --workdir=runs/prec_bf16 --config.model.precision.compute=bfloat16
  python experiments/precision_runs.py --fp32=runs/prec_fp32 --bf16_xla=runs/prec_bf16_xla \
      --bf16=runs/prec_bf16                       # -> experiments/results/precision_runs.json

fp32 is configs/default.py as it stands (float32 policy; on the CPU weight_grad_matmul="auto" is the
canonical row-major weight-gradient matmul, docs/cpu_training_speed.md). bf16_xla computes in
bfloat16 with plain autodiff matmuls; bf16 computes in bfloat16 with the canonical (fast CPU)
matmul. Run the three at once so a shared machine slows them alike; the step-time ratios without
that noise come from benchmarks/precision_step.py (interleaved).
"""

import statistics

import _results
from absl import app, flags

from jaxformers.train.metrics import read_metrics

NAME = "precision_runs"
RUNS = {
    "fp32": "float32 policy, canonical CPU matmul (the default)",
    "bf16_xla": "precision.compute=bfloat16, weight_grad_matmul=xla",
    "bf16": "precision.compute=bfloat16, canonical CPU matmul",
}
for _key in RUNS:
    flags.DEFINE_string(_key, f"runs/prec_{_key}", f"Workdir of the {_key} run.")
FLAGS = flags.FLAGS


def summary(workdir: str, policy: str) -> dict:
    train, valid = read_metrics(workdir, "train"), read_metrics(workdir, "validation")
    if not train or not valid:
        raise SystemExit(f"{workdir}: no finished run (train it with the command in the docstring)")
    return dict(
        workdir=workdir,
        policy=policy,
        steps=valid[-1]["step"],
        tokens_per_s=statistics.median(r["tokens_per_s"] for r in train[1:]),
        wall_s=train[-1]["time"] - train[0]["time"],
        final_loss=valid[-1]["loss"],
        validation=[dict(step=r["step"], loss=r["loss"]) for r in valid],
    )


def main(argv):
    del argv
    for key, policy in RUNS.items():
        run = summary(getattr(FLAGS, key), policy)
        _results.save_variant(NAME, key, run)
        print(
            f"{key:9s} {run['tokens_per_s']:6.0f} tok/s (median)  {run['wall_s'] / 60:5.1f} min  "
            f"final validation {run['final_loss']:.4f} at step {run['steps']}"
        )


if __name__ == "__main__":
    app.run(main)
