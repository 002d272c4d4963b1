"""Grow a checkpoint into a larger model offline: read, transform, write a step-0 checkpoint.

  python launch/grow.py --source=runs/gstack_base --config=configs/gstack.py:target \
      --transform=g_stack --workdir=runs/gstack_grown [--options='{"noise": 0.2}']
  python launch/train.py --config=configs/gstack.py:target --workdir=runs/gstack_grown

The written checkpoint holds the grown variables, step 0, a fresh optimizer state (so training it
restarts the warm-up) and a fresh data iterator. Prints parameter counts before and after and,
on one validation batch, the max |logits_grown - logits_source| (0 up to float rounding for
function-preserving transforms: g_zero, identity, tokenformer_grow). A checkpoint whose depth or
width cannot produce the target config stops with the transform's GrowthError, which says why.
Same result as training with --config.init_from.workdir/transform, but inspectable first
(`jaxformers/train/grow.py`).
"""

import json

from absl import app, flags

from jaxformers.errors import config_file_flag, run_main

config_file_flag("config", None, "Target experiment config file[:preset].")
flags.DEFINE_string("source", None, "Workdir of the checkpoint to grow.")
flags.DEFINE_integer("source_step", -1, "Checkpoint step to grow (-1: the latest).")
flags.DEFINE_string("transform", None, "Registered transform (default: config.init_from.transform).")
flags.DEFINE_string("options", "{}", "JSON dict of transform options (default: init_from.options).")
flags.DEFINE_string("workdir", None, "Where to write the grown step-0 checkpoint (must be new).")
flags.mark_flags_as_required(["config", "source", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from jaxformers.growth.registry import GrowthError
    from jaxformers.train.grow import FUNCTION_PRESERVING, grow_checkpoint

    fl = flags.FLAGS
    try:
        r = grow_checkpoint(fl.config, fl.source, fl.workdir, source_step=fl.source_step,
                            transform=fl.transform, options=json.loads(fl.options))
    except GrowthError as e:
        raise GrowthError(f"cannot grow {fl.source} into the target config: {e}") from None
    before, after = r["parameters_before"], r["parameters_after"]
    print(f"source: {fl.source} step {r['source_step']}, {r['source_layers']} layers, "
          f"{before:,} parameters")
    shown = f" {json.dumps(r['options'])}" if r["options"] else ""
    print(f"grown with {r['transform']!r}{shown}: {r['target_layers']} layers, "
          f"{after:,} parameters ({after / before:.2f}x)")
    if r["max_output_difference"] is not None:
        kind = ("function preserving" if r["transform"] in FUNCTION_PRESERVING
                else "not function preserving")
        print(f"max |logits_grown - logits_source| on a validation batch: "
              f"{r['max_output_difference']:.3g} ({kind})")
    print(f"wrote step-0 checkpoint to {fl.workdir}; train it with launch/train.py "
          f"--config=<the same config> --workdir={fl.workdir}")


if __name__ == "__main__":
    run_main(main)
