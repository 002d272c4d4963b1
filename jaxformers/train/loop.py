"""train_and_evaluate: the only training loop.

Start-up: resume from the newest complete checkpoint in `workdir`; else `config.init_from`
(a checkpoint + a named growth transform, fresh optimizer and warm-up); else fresh init.
The step is one `jax.jit` with explicit in/out shardings and donation over the
('data', 'fsdp', 'tensor') mesh. Metrics are fetched one step late so the device never waits.
"""

import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.errors import UserError
from jaxformers.train import checkpoint as ckpt
from jaxformers.train import workdir as workdir_lib
from jaxformers.train.experiment import Experiment, measure_peak_flops
from jaxformers.train.metrics import MetricsWriter
from jaxformers.train.startup import initial_state


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss or the parameters became non-finite; the last good checkpoint is intact."""


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.array([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def _install_preemption_handler():
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. notebooks' worker threads)
        pass
    return flag


def train_and_evaluate(config, workdir: str, devices=None, stop_at_step: int | None = None) -> dict:
    """Train `config` in `workdir` (resumable). Returns the last evaluation's metrics.

    devices: the devices to build the mesh over (default: all, across every process).
    stop_at_step: checkpoint and return after this step (the schedule still spans num_steps), so a
    notebook or test can train in pieces; rerunning continues exactly where it stopped.
    One run per workdir: a second one refuses while this one holds `<workdir>/lock`.
    """
    with workdir_lib.locked(workdir):
        return _train(config, workdir, devices, stop_at_step)


def _train(config, workdir: str, devices, stop_at_step: int | None) -> dict:
    if config.checkpoint_every:  # a run begun by an older library resumes as it started
        config = ckpt.with_legacy_defaults(config, workdir)
    exp = Experiment(config, workdir, devices)
    os.makedirs(workdir, exist_ok=True)
    manager = None
    if config.checkpoint_every:
        manager = ckpt.make_manager(workdir, keep=config.keep_checkpoints)
    state, data_state = initial_state(exp, manager, workdir)
    train_iter = exp.make_iterator("train")
    if data_state is not None:
        train_iter.set_state(data_state)
    start_step = int(jax.device_get(state.step))
    writer = MetricsWriter(workdir, total_steps=config.num_steps, initial_step=start_step,
                           progress_bar=config.progress_bar)
    logging.info("process %d/%d, devices %s, mesh %s", jax.process_index(), jax.process_count(),
                 jax.devices(), dict(exp.mesh.shape))
    preempted = _install_preemption_handler()
    tokens_per_step = config.batch_size * int(np.prod(exp.example_batch["inputs"].shape[1:]))
    flops_per_step = None
    peak = config.peak_flops or measure_peak_flops()
    # Simulated CPU devices share one machine, whose peak the matmul measurement already is.
    machine_peak = peak * (1 if jax.default_backend() == "cpu" else exp.mesh.size)
    last_eval, pending = {}, None
    timer_step, timer_time = start_step, time.perf_counter()
    profile_start, profile_len = config.profile_steps

    def finish_pending(pending):
        """Fetch a finished step's metrics, stop on a non-finite loss, log on schedule."""
        nonlocal timer_step, timer_time
        step_done, metrics = pending
        metrics = jax.device_get(metrics)
        if not np.isfinite(metrics["total_loss"]):
            last = manager.latest_step() if manager else None
            raise NonFiniteLossError(
                f"non-finite loss {metrics['total_loss']} at step {step_done}; the last good "
                f"checkpoint (step {last}) in {workdir} is intact"
            )
        if step_done % config.log_every == 0 or step_done == 1:
            now = time.perf_counter()
            rate = (step_done - timer_step) / max(now - timer_time, 1e-9)
            timer_step, timer_time = step_done, now
            metrics.update(
                steps_per_s=rate,
                tokens_per_s=rate * tokens_per_step,
                flops=flops_per_step * step_done,
                flops_per_token=flops_per_step / tokens_per_step,
                mfu=rate * flops_per_step / machine_peak,
            )
            writer.write(step_done, "train", metrics)

    try:
        last_step = config.num_steps if stop_at_step is None else min(stop_at_step, config.num_steps)
        for step in range(start_step, last_step):
            if profile_len and step == profile_start:
                jax.profiler.start_trace(os.path.join(workdir, "profile"))
            batch = exp.global_batch(next(train_iter))
            if flops_per_step is None:
                step_fn, flops_per_step = exp.compile_train_step(state, batch)
            state, metrics = step_fn(state, batch)
            if profile_len and step == profile_start + profile_len - 1:
                jax.profiler.stop_trace()
            if pending is not None:  # fetched one step late: the device is busy with `step`
                finish_pending(pending)
            pending = (step + 1, metrics)
            writer.advance()
            done = step + 1
            if config.eval_every and (done % config.eval_every == 0 or done == config.num_steps):
                last_eval = exp.evaluate(state.variables())
                last_eval["flops"] = flops_per_step * done
                writer.write(done, "validation", last_eval)
            if manager is not None and (
                done % config.checkpoint_every == 0 or done == last_step or preempted["stop"]
            ):
                finish_pending(pending)  # never checkpoint a state behind a non-finite loss
                pending = None
                if not bool(_all_finite(state.params)):
                    raise NonFiniteLossError(
                        f"non-finite loss: parameters became non-finite at step {done}; the last "
                        f"good checkpoint (step {manager.latest_step()}) in {workdir} is intact"
                    )
                ckpt.save(manager, state, data_state=train_iter.get_state(), config=config,
                          force=True)
            if preempted["stop"]:
                logging.warning("SIGTERM received: saved step %d, exiting", done)
                break
        if pending is not None:
            finish_pending(pending)
        # A preempted run exits within the grace period; the resumed run evaluates.
        if not last_eval and config.eval_every and not preempted["stop"]:
            last_eval = exp.evaluate(state.variables())
    finally:
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
        writer.close()
    return last_eval
