"""Grow a checkpoint into a larger model offline: read, transform, write a step-0 checkpoint.

The written checkpoint holds the grown variables, step 0, a fresh optimizer state (so training it
restarts the warm-up) and a fresh data iterator: the same start as training with
`config.init_from`, but inspectable first (parameter counts, and for a token -> logits model the
max |logits_grown - logits_source| on a validation batch, 0 up to rounding for function-preserving
transforms).
"""

import jax
import numpy as np

from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model
from jaxformers.train import checkpoint as ckpt
from jaxformers.train.experiment import Experiment
from jaxformers.train.startup import grow_from_checkpoint
from jaxformers.train.workdir import WorkdirError

FUNCTION_PRESERVING = ("g_zero", "identity", "tokenformer_grow")


def count_parameters(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def max_output_difference(source_config, source_vars, exp: Experiment, variables) -> float | None:
    """max |logits| difference of source and grown models on the first validation batch
    (None for a model that is not a plain token -> logits map)."""
    source_model = build_model(source_config.model_family, model_config_from(source_config.model))
    if hasattr(source_model, "init_from_batch") or hasattr(exp.model, "init_from_batch"):
        return None
    batch = next(exp.make_iterator("validation"))
    kwargs = {k: batch[k] for k in ("positions", "segment_ids", "modality_ids") if k in batch}
    want = jax.jit(source_model.apply)(source_vars, batch["inputs"], **kwargs)
    got = jax.jit(exp.model.apply)(variables, batch["inputs"], **kwargs)
    return float(np.max(np.abs(np.asarray(got) - np.asarray(want))))


def grow_checkpoint(config, source: str, workdir: str, *, source_step: int = -1,
                    transform: str | None = None, options: dict | None = None) -> dict:
    """Write `source`'s checkpoint grown into `config`'s model as step 0 of `workdir`.

    Returns a report: source_step, transform, options, parameters_before/after and
    max_output_difference (None where it does not apply). Raises GrowthError when the source
    cannot produce the target, ValueError when `workdir` already has checkpoints.
    """
    if ckpt.latest_step(workdir) is not None:
        raise WorkdirError(f"--workdir={workdir} already has checkpoints; pick a new one")
    transform = transform or config.init_from.transform
    options = options or dict(config.init_from.options)
    exp = Experiment(config, workdir)
    variables, source_config, source_vars, restored_step = grow_from_checkpoint(
        exp, source, source_step=source_step, transform=transform, options=options)
    report = dict(
        source_step=restored_step, transform=transform, options=options,
        source_layers=source_config.model.num_layers, target_layers=exp.model_cfg.num_layers,
        parameters_before=count_parameters(source_vars["params"]),
        parameters_after=count_parameters(variables["params"]),
        max_output_difference=max_output_difference(source_config, source_vars, exp, variables),
    )
    config.init_from.workdir, config.init_from.transform = source, transform
    state = exp.state_from_variables(variables)
    manager = ckpt.make_manager(workdir, keep=config.keep_checkpoints)
    ckpt.save(manager, state, data_state=exp.make_iterator("train").get_state(), config=config,
              force=True)
    manager.wait_until_finished()
    manager.close()
    return report
