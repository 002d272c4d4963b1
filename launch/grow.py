"""Grow a checkpoint into a larger model offline: read, transform, write a step-0 checkpoint.

  python launch/grow.py --source=runs/gstack_base --config=configs/gstack.py:target \
      --transform=g_stack --workdir=runs/gstack_grown [--options='{"noise": 0.2}']
  python launch/train.py --config=configs/gstack.py:target --workdir=runs/gstack_grown

The written checkpoint holds the grown variables, step 0, a fresh optimizer state (so training it
restarts the warm-up) and a fresh data iterator. Prints parameter counts before and after and,
on one validation batch, the max |logits_grown - logits_source| (0 up to float rounding for
function-preserving transforms: g_zero, identity, tokenformer_grow). A checkpoint whose depth or
width cannot produce the target config stops with the transform's GrowthError, which says why.
Same result as training with --config.init_from.workdir/transform, but inspectable first.
"""

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

config_flags.DEFINE_config_file("config", None, "Target experiment config file[:preset].")
flags.DEFINE_string("source", None, "Workdir of the checkpoint to grow.")
flags.DEFINE_integer("source_step", -1, "Checkpoint step to grow (-1: the latest).")
flags.DEFINE_string("transform", None, "Registered transform (default: config.init_from.transform).")
flags.DEFINE_string("options", "{}", "JSON dict of transform options (default: init_from.options).")
flags.DEFINE_string("workdir", None, "Where to write the grown step-0 checkpoint (must be new).")
flags.mark_flags_as_required(["config", "source", "workdir"])

FUNCTION_PRESERVING = ("g_zero", "identity", "tokenformer_grow")


def count(tree) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def max_output_difference(source_config, source_vars, exp, variables) -> float | None:
    """max |logits| difference of source and grown models on the first validation batch."""
    import jax
    import numpy as np

    from jaxformers.models.config import model_config_from
    from jaxformers.models.registry import build_model

    source_model = build_model(source_config.model_family, model_config_from(source_config.model))
    if hasattr(source_model, "init_from_batch") or hasattr(exp.model, "init_from_batch"):
        return None  # not a plain token -> logits model
    batch = next(exp.make_iterator("validation"))
    kwargs = {k: batch[k] for k in ("positions", "segment_ids", "modality_ids") if k in batch}
    want = jax.jit(source_model.apply)(source_vars, batch["inputs"], **kwargs)
    got = jax.jit(exp.model.apply)(variables, batch["inputs"], **kwargs)
    return float(np.max(np.abs(np.asarray(got) - np.asarray(want))))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    import flax.linen as nn
    import jax

    from jaxformers.growth.registry import GrowthError, get_transform
    from jaxformers.models.config import model_config_from
    from jaxformers.train import checkpoint as ckpt
    from jaxformers.train.loop import Experiment

    FLAGS = flags.FLAGS  # noqa: N806
    config = FLAGS.config
    if ckpt.latest_step(FLAGS.workdir) is not None:
        raise app.UsageError(f"--workdir={FLAGS.workdir} already has checkpoints; pick a new one")
    name = FLAGS.transform or config.init_from.transform
    options = json.loads(FLAGS.options) or dict(config.init_from.options)
    source_config, source_vars, source_step = ckpt.load_variables(FLAGS.source, FLAGS.source_step)
    source_vars = {k: v for k, v in jax.device_get(source_vars).items() if v}
    exp = Experiment(config, FLAGS.workdir)
    target_init = jax.device_get(nn.meta.unbox(exp._init_boxed(jax.random.PRNGKey(config.seed))))
    target_init = {k: v for k, v in target_init.items() if k in ("params", "constants")}
    try:
        variables = get_transform(name)(
            source_vars, source_cfg=model_config_from(source_config.model),
            target_cfg=exp.model_cfg, target_init=target_init,
            rng=jax.random.PRNGKey(config.seed + 1), **options,
        )
    except GrowthError as e:
        sys.exit(f"cannot grow {FLAGS.source} (step {source_step}) into the target config: {e}")

    before, after = count(source_vars["params"]), count(variables["params"])
    print(f"source: {FLAGS.source} step {source_step}, "
          f"{source_config.model.num_layers} layers, {before:,} parameters")
    shown = f" {json.dumps(options)}" if options else ""
    print(f"grown with {name!r}{shown}: {exp.model_cfg.num_layers} layers, "
          f"{after:,} parameters ({after / before:.2f}x)")
    diff = max_output_difference(source_config, source_vars, exp, variables)
    if diff is not None:
        kind = "function preserving" if name in FUNCTION_PRESERVING else "not function preserving"
        print(f"max |logits_grown - logits_source| on a validation batch: {diff:.3g} ({kind})")

    config.init_from.workdir, config.init_from.transform = FLAGS.source, name
    state = exp.state_from_variables(variables)
    manager = ckpt.make_manager(FLAGS.workdir, keep=config.keep_checkpoints)
    ckpt.save(manager, state, data_state=exp.make_iterator("train").get_state(), config=config,
              force=True)
    manager.wait_until_finished()
    manager.close()
    print(f"wrote step-0 checkpoint to {FLAGS.workdir}; train it with launch/train.py "
          f"--config=<the same config> --workdir={FLAGS.workdir}")


if __name__ == "__main__":
    app.run(main)
