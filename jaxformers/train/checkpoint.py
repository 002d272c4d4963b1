"""Orbax checkpoints: variables, optimizer state + step + RNG, data iterator, resolved config.

Saves are async and atomic (a step directory appears only when complete, so a run killed during a
save resumes from the previous one). Restores go into abstract targets that carry the target
shardings, so a checkpoint written on 8 devices restores on 1 and the reverse.
"""

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ("variables", "train", "data", "config")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, *, keep: int = 2, save_interval_steps: int = 1, read_only: bool = False):
    """The one writer of a workdir deletes partial saves left by a killed run; readers never do.

    Orbax deletes tmp directories in a background thread; two managers doing it at once race on
    the same files, so read-only managers (latest_step, load_variables) leave them alone.
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep,
        save_interval_steps=0 if read_only else save_interval_steps,
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=not read_only,
        create=not read_only,
        read_only=read_only,
    )
    handlers = {
        "variables": ocp.StandardCheckpointHandler(),
        "train": ocp.StandardCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(),
        "config": ocp.JsonCheckpointHandler(),
    }
    return ocp.CheckpointManager(checkpoint_dir(workdir), item_handlers=handlers, options=options)


def save(manager, state, *, data_state: dict, config, force: bool = False) -> bool:
    step = int(jax.device_get(state.step))
    return manager.save(
        step,
        args=ocp.args.Composite(
            variables=ocp.args.StandardSave(state.variables()),
            train=ocp.args.StandardSave(
                {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}
            ),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        ),
        force=force,
    )


def abstract_with_shardings(tree, shardings):
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def restore_state(manager, step: int, abstract_state, state_shardings):
    """Restore (state, data_state) at `step` into the target shardings."""
    target = abstract_with_shardings(abstract_state, state_shardings)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            variables=ocp.args.StandardRestore(target.variables()),
            train=ocp.args.StandardRestore(
                {"step": target.step, "opt_state": target.opt_state, "rng": target.rng}
            ),
            data=ocp.args.JsonRestore(),
        ),
    )
    variables, train = restored["variables"], restored["train"]
    state = abstract_state.replace(
        step=train["step"],
        params=variables["params"],
        constants=variables.get("constants", {}),
        opt_state=train["opt_state"],
        rng=train["rng"],
    )
    return state, restored["data"]


def latest_step(workdir: str) -> int | None:
    if not os.path.isdir(checkpoint_dir(workdir)):
        return None
    manager = make_manager(workdir, read_only=True)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def load_variables(workdir: str, step: int | None = None, sharding=None):
    """(config, variables, step) of a checkpoint, without knowing the model in advance.

    The target shapes come from the checkpoint's own metadata; arrays land on `sharding`
    (default: replicated on the first device). Used by init_from, evaluate, sample and grow.
    """
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(f"no checkpoints in workdir {workdir!r} (expected {checkpoint_dir(workdir)})")
    manager = make_manager(workdir, read_only=True)
    try:
        step = manager.latest_step() if step is None or step < 0 else step
        if step is None or step not in manager.all_steps():
            raise FileNotFoundError(
                f"workdir {workdir!r} has no complete checkpoint"
                + ("" if step is None else f" at step {step}; it has {manager.all_steps()}")
            )
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        metadata = manager.item_metadata(step)["variables"]
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype), sharding=sharding),
            metadata,
            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
        )
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                variables=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore()
            ),
        )
    finally:
        manager.close()
    config = ml_collections.ConfigDict(restored["config"])
    return config, dict(restored["variables"]), step
