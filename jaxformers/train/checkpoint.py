"""Orbax checkpoints: variables, optimizer state + step + RNG, data iterator, resolved config.

Saves are async and atomic (a step directory appears only when complete, so a run killed during a
save resumes from the previous one). Restores go into abstract targets that carry the target
shardings, so a checkpoint written on 8 devices restores on 1 and the reverse.

Resuming (`restore_latest`) first compares the checkpoint's stored config with the run's and
refuses, naming every differing field, unless only fields in `ALLOWED_ON_RESUME` differ. It then
restores the newest step that restores cleanly: a damaged newer step (a truncated or missing file)
is reported in one line and moved, untouched, to `<workdir>/damaged_checkpoints/<step>`, where no
later save can overwrite it. Read-only users (`load_variables`: evaluate, sample, grow, init_from)
refuse a damaged step with a one-line CheckpointError naming it.
"""

import contextlib
import fnmatch
import gc
import json
import logging
import os
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxformers.errors import UserError, one_line

# Config fields a resumed run may change: the schedule's length and the optimizer's
# hyperparameters, logging, evaluation, the device layout (restores reshard) and kernel
# implementations, none of which changes what a stored array means.
ALLOWED_ON_RESUME = (
    "num_steps", "learning_rate", "min_learning_rate_ratio", "warmup_steps", "weight_decay",
    "adam_b1", "adam_b2", "grad_clip", "eval_every", "eval_batches", "log_every", "checkpoint_every",
    "keep_checkpoints", "progress_bar", "profile_steps", "peak_flops", "evaluators", "mesh.*",
    "sharding_rules", "init_from.*", "data.eval_*", "model.remat", "model.*impl", "model.*dispatch",
    "model.weight_grad_matmul", "model.layer_loop",  # CPU fast paths: same parameters either way
    "grad_accum_steps",  # same batch, same update, split into micro-batches
    "model.attention.causal_block_size",  # the same causal attention, computed by blocks
    "model.attention.causal_blocks",
    "model.mtp.backward",  # the same gradients, one head at a time
    # the float32 master weights are the same arrays whatever dtype the step computes in
    "model.precision.compute", "model.precision.output", "model.precision.gradients",
)
# Fields added after checkpoints were written with the behaviour they now switch: (does it
# apply to this stored config, the value the old run trained with, or a function of the stored
# config giving it). A checkpoint without the field resumes with that value, so the run continues
# as it started.
LEGACY_DEFAULTS = {
    # packed text before document masking: no segment_ids / positions in the batch
    "data.segment_ids": (lambda stored: stored.get("data.name") == "text", False),
    # the precision policy replaced model.dtype (now model.precision.compute); training always
    # keeps float32 master weights, so a stored model.param_dtype is not carried over
    "model.precision.compute": (lambda stored: stored.get("model.dtype", "float32") != "float32",
                                lambda stored: stored["model.dtype"]),
}
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(UserError, FileNotFoundError):
    """A workdir without the checkpoint asked for, or whose checkpoint cannot be used."""


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
    if not read_only:
        return ocp.CheckpointManager(checkpoint_dir(workdir), item_handlers=handlers, options=options)
    # A reader is read-only on purpose: not Orbax's "Given directory is read only" warning.
    orbax_logger = logging.getLogger("absl")
    level = orbax_logger.level
    orbax_logger.setLevel(logging.ERROR)
    try:
        return ocp.CheckpointManager(checkpoint_dir(workdir), item_handlers=handlers, options=options)
    finally:
        orbax_logger.setLevel(level)


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


def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(stored: dict, config) -> list[str]:
    """'field: stored -> new' for each field that differs and may not change on resume.

    Fields present on one side only (a library version that added or removed a field) are not
    compared; values are compared in their JSON form, as the checkpoint stores them.
    """
    old = _flatten(stored)
    new = _flatten(json.loads(config.to_json_best_effort()))
    return [
        f"{key}: {json.dumps(old[key])} -> {json.dumps(new[key])}"
        for key in sorted(old.keys() & new.keys())
        if old[key] != new[key] and not any(fnmatch.fnmatchcase(key, p) for p in ALLOWED_ON_RESUME)
    ]


def legacy_values(stored: dict) -> dict:
    """{field: value} of the `LEGACY_DEFAULTS` that a flattened stored config predates."""
    return {key: old(stored) if callable(old) else old
            for key, (applies, old) in LEGACY_DEFAULTS.items() if key not in stored and applies(stored)}


def with_legacy_defaults(config, workdir: str):
    """`config`, or a copy with the `LEGACY_DEFAULTS` of fields that the newest checkpoint in
    `workdir` predates (e.g. data.segment_ids=False for a run begun before packed masking)."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        return config
    manager = make_manager(workdir, read_only=True)
    try:
        step = manager.latest_step()
        if step is None:
            return config
        with _quiet_failed_reads():
            stored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except Exception:  # noqa: BLE001  (unreadable: restore_latest reports it in one line)
        return config
    finally:
        manager.close()
    missing = legacy_values(_flatten(dict(stored["config"])))
    if not missing:
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, old in missing.items():
            parent, field = key.rsplit(".", 1)
            node = config
            for part in parent.split("."):
                node = node[part]
            node[field] = old
    logging.info("checkpoint in %s predates %s: resuming with %s", workdir, sorted(missing),
                 missing)
    return config


def _drop_unretrieved_task_errors(record: logging.LogRecord) -> bool:
    return "exception was never retrieved" not in str(record.msg).split("\n", 1)[0]


@contextlib.contextmanager
def _quiet_failed_reads():
    """A failed Orbax read leaves sibling reads running: their coroutines raise when collected
    ("Exception ignored in: <coroutine ...>") and TensorStore's callbacks, finishing after Orbax's
    event loop closed, print "RuntimeError: Event loop is closed" tracebacks. After a failure, let
    them finish and collect them here, silently; the caller reports the failure in one line.
    Sibling asyncio tasks that failed too are logged ("Task exception was never retrieved") when
    collected, possibly later: from the first failure on, the asyncio logger drops those records
    ("Task/Future exception was never retrieved"), and only those."""
    hooks = sys.unraisablehook, sys.excepthook, threading.excepthook
    sys.unraisablehook = sys.excepthook = threading.excepthook = lambda *args: None
    try:
        yield
    except Exception:
        asyncio_logger = logging.getLogger("asyncio")
        if _drop_unretrieved_task_errors not in asyncio_logger.filters:
            asyncio_logger.addFilter(_drop_unretrieved_task_errors)
        time.sleep(0.5)
        gc.collect()  # only after a failure: a full collection costs ~0.3 s in a large process
        raise
    finally:
        sys.unraisablehook, sys.excepthook, threading.excepthook = hooks


def _reason(error: BaseException) -> str:
    """The first line of the innermost cause (TensorStore's own message), without its spec."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = one_line(str(error)).split(" [tensorstore_spec", 1)[0]
    return f"{type(error).__name__}: {text[:300]}"


def _move_aside(workdir: str, step: int) -> str:
    """Move checkpoints/<step> to damaged_checkpoints/<step>[.n], never over an earlier one."""
    target_dir = os.path.join(os.path.abspath(workdir), DAMAGED_DIR)
    os.makedirs(target_dir, exist_ok=True)
    target, n = os.path.join(target_dir, str(step)), 0
    while os.path.exists(target):
        n += 1
        target = os.path.join(target_dir, f"{step}.{n}")
    os.rename(os.path.join(checkpoint_dir(workdir), str(step)), target)
    return target


def restore_latest(manager, workdir: str, config, abstract_state, state_shardings):
    """(state, data_state) of the newest checkpoint that restores cleanly, or None if none exists.

    Refuses (CheckpointError, one line) a checkpoint of a different config; skips damaged newer
    steps, printing one line per step and moving it aside once an older step has restored (if no
    step restores, nothing is moved and the error names every step and why).
    """
    skipped = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            with _quiet_failed_reads():
                stored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001  (Orbax/TensorStore raise plain Exceptions)
            skipped.append((step, f"its config cannot be read ({_reason(e)})"))
            continue
        differences = config_differences(dict(stored["config"]), config)
        if differences:
            raise CheckpointError(
                f"workdir {workdir} holds a checkpoint (step {step}) of a different config: "
                + "; ".join(differences)
                + ". Use a new --workdir, or change only fields allowed on resume (README)"
            )
        try:
            with _quiet_failed_reads():
                restored = restore_state(manager, step, abstract_state, state_shardings)
        except Exception as e:  # noqa: BLE001
            skipped.append((step, _reason(e)))
            continue
        for bad, why in skipped:
            where = _move_aside(workdir, bad) if jax.process_index() == 0 else DAMAGED_DIR
            print(f"warning: skipped damaged checkpoint step {bad} in {workdir} ({why}); moved it "
                  f"untouched to {where}", file=sys.stderr, flush=True)
        if skipped:
            manager.reload()
        if jax.process_index() == 0:
            print(f"resuming from step {step} of {workdir}", flush=True)
        return restored
    if skipped:
        raise CheckpointError(
            f"no checkpoint in workdir {workdir} restores: "
            + "; ".join(f"step {step}: {why}" for step, why in skipped)
            + " (nothing was moved or deleted)"
        )
    return None


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
        raise CheckpointError(f"no checkpoints in workdir {workdir!r} (expected {checkpoint_dir(workdir)})")
    manager = make_manager(workdir, read_only=True)
    try:
        step = manager.latest_step() if step is None or step < 0 else step
        if step is None or step not in manager.all_steps():
            raise CheckpointError(
                f"workdir {workdir!r} has no complete checkpoint"
                + ("" if step is None else f" at step {step}; it has {manager.all_steps()}")
            )
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        try:
            with _quiet_failed_reads():
                metadata = manager.item_metadata(step)["variables"]
                target = jax.tree.map(
                    lambda m: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype), sharding=sharding),
                    metadata,
                    is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
                )
                restored = manager.restore(step, args=ocp.args.Composite(
                    variables=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001  (Orbax/TensorStore raise plain Exceptions)
            others = [s for s in manager.all_steps() if s != step]
            raise CheckpointError(
                f"checkpoint step {step} in workdir {workdir} cannot be read ({_reason(e)})"
                + (f"; other steps: {others}" if others else "")
            ) from e
    finally:
        manager.close()
    config = ml_collections.ConfigDict(restored["config"])
    return config, dict(restored["variables"]), step
