"""Where a run's state comes from: resume > `config.init_from` > fresh init.

1. the newest complete checkpoint in the workdir (exact resume: parameters, optimizer, RNG, data);
2. else `config.init_from`: another run's checkpoint through a named growth transform
   (`growth/registry.py`), with a fresh optimizer state and so a restarted warm-up;
3. else a fresh init.
`grow_from_checkpoint` is step 2 on its own, shared with `train/grow.py` (the offline grow command).
"""

import logging

import flax.linen as nn
import jax

from jaxformers.config import model_config_from
from jaxformers.growth.registry import get_transform
from jaxformers.train import checkpoint as ckpt
from jaxformers.train.experiment import Experiment


def grow_from_checkpoint(exp: Experiment, source_workdir: str, *, source_step: int = -1,
                         transform: str, options: dict | None = None):
    """Variables for `exp`'s model made from another run's checkpoint by `transform`.

    Returns (variables, source_config, source_variables, source_step); variables have exactly the
    tree, shapes and dtypes of `exp`'s fresh init (the transform raises GrowthError otherwise).
    """
    config = exp.config
    source_config, source_vars, restored_step = ckpt.load_variables(source_workdir, source_step)
    source_vars = {k: v for k, v in jax.device_get(source_vars).items() if v}
    # One jitted init, as in Experiment.fresh_state: eager, model.init compiles every primitive
    # (and the layer stack's nn.scan) on its own, seconds of compiles for a tiny model.
    boxed = jax.jit(exp.init_boxed)(jax.random.PRNGKey(config.seed))
    target_init = jax.device_get(nn.meta.unbox(boxed))
    target_init = {k: v for k, v in target_init.items() if k in ("params", "constants")}
    variables = get_transform(transform)(
        source_vars,
        source_cfg=model_config_from(source_config.model),
        target_cfg=exp.model_cfg,
        target_init=target_init,
        rng=jax.random.PRNGKey(config.seed + 1),
        **(options or {}),
    )
    return variables, source_config, source_vars, restored_step


def initial_state(exp: Experiment, manager, workdir: str):
    """Resume > init_from > fresh. Returns (state, data_state or None)."""
    config = exp.config
    if manager is not None:  # refuses a changed config; skips (and keeps aside) a damaged step
        restored = ckpt.restore_latest(manager, workdir, config, exp.abstract_state, exp.state_shardings)
        if restored is not None:
            return restored
    if config.init_from.workdir:
        variables, _, _, source_step = grow_from_checkpoint(
            exp, config.init_from.workdir, source_step=config.init_from.step,
            transform=config.init_from.transform, options=dict(config.init_from.options),
        )
        logging.info("initialised from %s step %d with %r", config.init_from.workdir, source_step,
                     config.init_from.transform)
        return exp.state_from_variables(variables), None
    return exp.fresh_state(), None
