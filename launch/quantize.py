"""Quantize a checkpoint with qwix and print validation loss and perplexity per scheme.

  pip install -e ".[quant]"
  python launch/quantize.py --workdir=runs/outliers_vanilla
  python launch/quantize.py --workdir=runs/x --schemes=fp32,w4_rtn,w4_gptq --calibration_batches=16

Schemes (jaxformers/train/quantize.py): fp32; w8a8 (int8 weights per output channel, int8 inputs
with one static scale per tensor); w4_rtn / w3_rtn (weight-only round-to-nearest); w4_gptq /
w3_gptq (GPTQ, Hessians from --calibration_batches batches of the training split). `--layers` is
a regex over the weight modules to quantize (default: all projections and the LM head). Writes
the rows as JSON to <workdir>/quantization.json.
"""

import json
import os

from absl import app, flags

from jaxformers.errors import run_main

flags.DEFINE_string("workdir", None, "Workdir holding the checkpoint.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1: the latest).")
flags.DEFINE_list("schemes", ["fp32", "w8a8", "w4_rtn", "w4_gptq", "w3_rtn", "w3_gptq"], "Schemes.")
flags.DEFINE_integer("calibration_batches", 8, "Training batches for GPTQ Hessians / W8A8 ranges.")
flags.DEFINE_integer("eval_batches", 0, "Validation batches (0: the config's eval_batches).")
flags.DEFINE_string("layers", ".*", "Regex over weight modules to quantize, e.g. 'layers/ffn/.*'.")
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from jaxformers.errors import UserError

    try:
        from jaxformers.train.quantize import quantize_checkpoint
    except ImportError as e:
        raise UserError(f"launch/quantize.py needs qwix ({e}); pip install -e '.[quant]'") from e

    fl = flags.FLAGS
    result = quantize_checkpoint(
        fl.workdir,
        fl.schemes,
        calibration_batches=fl.calibration_batches,
        eval_batches=fl.eval_batches,
        layers=fl.layers,
        step=fl.step,
    )
    print(f"{fl.workdir} (step {result['step']}, {result['eval_batches']} validation batches)")
    print(f"{'scheme':>8} {'loss':>8} {'perplexity':>10} {'gap':>8}  quantized")
    for r in result["rows"]:
        gap = "" if r["gap_to_fp32"] is None else f"{r['gap_to_fp32']:+.4f}"
        print(
            f"{r['scheme']:>8} {r['loss']:8.4f} {r['perplexity']:10.3f} {gap:>8}  "
            f"{len(r['quantized'])} params"
        )
    quantized = next((r for r in result["rows"] if r["quantized"]), None)
    if quantized:
        print("quantized:", ", ".join(quantized["quantized"]))
        print("kept in float32:", ", ".join(quantized["kept"]))
    path = os.path.join(fl.workdir, "quantization.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    run_main(main)
