"""train_and_evaluate: the only training loop (ARCHITECTURE.md "One training path").

Start-up: resume from the newest complete checkpoint in `workdir`; else `config.init_from`
(a checkpoint + a named growth transform, fresh optimizer and warm-up); else fresh init.
The step is one `jax.jit` with explicit in/out shardings and donation over the
('data', 'fsdp', 'tensor') mesh. Metrics are fetched one step late so the device never waits.
"""

import functools
import logging
import os
import signal
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.data.registry import get_dataset_builder
from jaxformers.growth.registry import get_transform
from jaxformers.models.config import model_config_from
from jaxformers.models.registry import build_model
from jaxformers.objectives.registry import get_objective
from jaxformers.train import checkpoint as ckpt
from jaxformers.train import mesh as mesh_lib
from jaxformers.train.config_base import validate_config
from jaxformers.train.evaluators import get_evaluator
from jaxformers.train.flops import matmul_flops
from jaxformers.train.metrics import MetricsWriter
from jaxformers.train.state import TrainState, create_state, learning_rate_schedule, make_optimizer

_OPTIONAL_MODEL_INPUTS = ("positions", "segment_ids", "modality_ids")


class NonFiniteLossError(FloatingPointError):
    pass


def init_variables(model, batch: dict, rngs: dict):
    """model.init from one batch: `model.init_from_batch(batch)` if the model defines it, else
    `model(batch["inputs"], positions=..., segment_ids=..., modality_ids=...)`."""
    if hasattr(model, "init_from_batch"):
        return model.init(rngs, batch, method=type(model).init_from_batch)
    kwargs = {k: batch[k] for k in _OPTIONAL_MODEL_INPUTS if k in batch}
    return model.init(rngs, batch["inputs"], **kwargs)


def _init_rngs(seed: int) -> dict:
    root = jax.random.PRNGKey(seed)
    return {
        "params": jax.random.fold_in(root, 0),
        "routing": jax.random.fold_in(root, 1),
        "dropout": jax.random.fold_in(root, 2),
    }


class Experiment:
    """Model, data, optimizer, shardings and jitted functions built once from a config."""

    def __init__(self, config, workdir: str | None = None, devices=None):
        validate_config(config)
        self.config = config
        self.workdir = workdir
        self.model_cfg = model_config_from(config.model)
        self.model = build_model(config.model_family, self.model_cfg)
        self.objective = get_objective(config.objective)
        self.mesh = mesh_lib.make_mesh(config.mesh, devices)
        data_parallel = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        if config.batch_size % data_parallel:
            raise ValueError(
                f"config.batch_size={config.batch_size} is not divisible by the data-parallel "
                f"mesh size data*fsdp={data_parallel}"
            )
        if config.batch_size % jax.process_count():
            raise ValueError(
                f"config.batch_size={config.batch_size} is not divisible by the "
                f"{jax.process_count()} processes"
            )
        self.tx = make_optimizer(config)
        self.schedule = learning_rate_schedule(config)
        self.rules = tuple(tuple(r) for r in config.sharding_rules)
        self.example_batch = self._peek_batch()
        self._build_state_shardings()
        self._build_steps()

    # Data ----------------------------------------------------------------------------------
    def make_iterator(self, split: str):
        builder = get_dataset_builder(self.config.data.name)
        return builder(
            self.config.data,
            split=split,
            seed=self.config.seed,
            batch_size=self.config.batch_size // jax.process_count(),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def _peek_batch(self) -> dict:
        iterator = self.make_iterator("train")
        return next(iterator)

    def global_batch(self, local_batch: dict) -> dict:
        return mesh_lib.global_batch(local_batch, self.mesh)

    # State ---------------------------------------------------------------------------------
    def _init_boxed(self, rng):
        batch = {k: jnp.asarray(v[:1]) for k, v in self.example_batch.items()}
        return init_variables(self.model, batch, _init_rngs(self.config.seed) | {"params": rng})

    def _build_state_shardings(self):
        boxed = jax.eval_shape(self._init_boxed, jax.random.PRNGKey(0))
        var_shardings = mesh_lib.logical_shardings(boxed, self.mesh, self.rules)
        params_sh = var_shardings["params"]
        constants_sh = var_shardings.get("constants", {})
        abstract_vars = nn.meta.unbox(boxed)
        abstract_params = abstract_vars["params"]
        opt_abstract = jax.eval_shape(self.tx.init, abstract_params)
        # Optimizer moments mirror their parameter's sharding; scalars are replicated.
        opt_sh = optax_state_shardings(opt_abstract, abstract_params, params_sh, self.mesh)
        replicated = mesh_lib.replicated(self.mesh)
        self.state_shardings = TrainState(
            step=replicated, params=params_sh, constants=constants_sh, opt_state=opt_sh,
            rng=replicated,
        )
        self.abstract_state = TrainState(
            step=jax.ShapeDtypeStruct((), jnp.int32),
            params=abstract_params,
            constants=abstract_vars.get("constants", {}),
            opt_state=opt_abstract,
            rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
        )

    def fresh_state(self) -> TrainState:
        root = jax.random.PRNGKey(self.config.seed)

        def init(root):
            variables = nn.meta.unbox(self._init_boxed(jax.random.fold_in(root, 0)))
            return create_state(variables, self.tx, jax.random.fold_in(root, 3))

        return jax.jit(init, out_shardings=self.state_shardings)(root)

    def state_from_variables(self, variables: dict) -> TrainState:
        """Step 0, fresh optimizer (and so a restarted warm-up) around given variables."""
        root = jax.random.PRNGKey(self.config.seed)
        var_sh = {"params": self.state_shardings.params}
        if variables.get("constants"):
            var_sh["constants"] = self.state_shardings.constants
        variables = jax.device_put(variables, var_sh)
        return jax.jit(
            lambda v: create_state(v, self.tx, jax.random.fold_in(root, 3)),
            out_shardings=self.state_shardings,
        )(variables)

    # Steps ---------------------------------------------------------------------------------
    def _build_steps(self):
        objective, model = self.objective, self.model
        batch_sh = mesh_lib.batch_sharding(self.mesh)
        replicated = mesh_lib.replicated(self.mesh)

        def train_step(state: TrainState, batch):
            rng = jax.random.fold_in(state.rng, state.step)

            def loss_fn(params):
                variables = {"params": params}
                if state.constants:
                    variables["constants"] = state.constants
                return objective(model, variables, batch, rng=rng, step=state.step, train=True)

            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
            params = jax.tree.map(lambda p, u: p + u, state.params, updates)
            metrics = dict(metrics, total_loss=loss, grad_norm=global_norm(grads),
                           learning_rate=self.schedule(state.step))
            new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
            return new_state, metrics

        def eval_step(variables, batch):
            metrics = objective(model, variables, batch, rng=jax.random.PRNGKey(0),
                                step=jnp.asarray(self.config.num_steps, jnp.int32), train=False)[1]
            return metrics

        def in_mesh_context(step_fn):
            """Trace with the mesh in context, so Pallas kernels run per device shard
            (kernels/sharding.py); the computation's shardings are the explicit ones below."""

            @functools.wraps(step_fn)
            def traced(*args):
                with jax.sharding.use_abstract_mesh(self.mesh.abstract_mesh):
                    return step_fn(*args)

            return traced

        train_step, eval_step = in_mesh_context(train_step), in_mesh_context(eval_step)
        self.train_step = jax.jit(
            train_step,
            in_shardings=(self.state_shardings, batch_sh),
            out_shardings=(self.state_shardings, replicated),
            donate_argnums=(0,),
        )
        self.eval_step = jax.jit(eval_step, out_shardings=replicated)

    def compile_train_step(self, state, batch):
        """Compile the step ahead of time once; returns (executable, matmul FLOPs per step over
        all devices). FLOPs are counted on the jaxpr (train/flops.py), not by XLA's cost
        analysis, which counts a scanned layer stack as one layer."""
        compiled = self.train_step.lower(state, batch).compile()
        return compiled, float(matmul_flops(self.train_step, state, batch))

    def evaluate(self, variables, num_batches: int | None = None) -> dict:
        """Mean metrics over the first `num_batches` validation batches (+ evaluators)."""
        num_batches = num_batches or self.config.eval_batches
        iterator = self.make_iterator("validation")
        totals, count = {}, 0
        for _ in range(num_batches):
            try:
                local = next(iterator)
            except StopIteration:
                break
            metrics = jax.device_get(self.eval_step(variables, self.global_batch(local)))
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            count += 1
        if count == 0:
            raise ValueError("the validation split yielded no batch; lower config.batch_size")
        results = {k: v / count for k, v in totals.items()}
        for name in self.config.evaluators:
            results.update(get_evaluator(name)(self.model, variables, self.config))
        return results


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.array([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def optax_state_shardings(opt_abstract, abstract_params, params_sh, mesh):
    """Shard every optimizer leaf that has the structure of params like params."""
    params_def = jax.tree.structure(abstract_params)
    replicated = mesh_lib.replicated(mesh)

    def visit(node):
        if jax.tree.structure(node) == params_def:
            return params_sh
        return None

    def assign(node):
        sh = visit(node)
        if sh is not None:
            return sh
        if isinstance(node, jax.ShapeDtypeStruct):
            return replicated
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(*[assign(c) for c in node])
        if isinstance(node, tuple | list):
            return type(node)(assign(c) for c in node)
        if isinstance(node, dict):
            return {k: assign(v) for k, v in node.items()}
        return jax.tree.map(lambda _: replicated, node)

    return assign(opt_abstract)


def _install_preemption_handler():
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. notebooks' worker threads)
        pass
    return flag


def _initial_state(exp: Experiment, manager, workdir):
    """Resume > init_from > fresh (ARCHITECTURE.md start-up order). Returns (state, data_state)."""
    config = exp.config
    if manager is not None and manager.latest_step() is not None:
        step = manager.latest_step()
        logging.info("resuming from %s step %d", workdir, step)
        return ckpt.restore_state(manager, step, exp.abstract_state, exp.state_shardings)
    if config.init_from.workdir:
        source_config, source_vars, source_step = ckpt.load_variables(
            config.init_from.workdir, config.init_from.step
        )
        transform = get_transform(config.init_from.transform)
        target_init = jax.device_get(nn.meta.unbox(exp._init_boxed(jax.random.PRNGKey(config.seed))))
        target_init = {k: v for k, v in target_init.items() if k in ("params", "constants")}
        source_vars = {k: v for k, v in source_vars.items() if v}
        variables = transform(
            jax.device_get(source_vars),
            source_cfg=model_config_from(source_config.model),
            target_cfg=exp.model_cfg,
            target_init=target_init,
            rng=jax.random.PRNGKey(config.seed + 1),
            **dict(config.init_from.options),
        )
        logging.info("initialised from %s step %d with %r", config.init_from.workdir, source_step,
                     config.init_from.transform)
        return exp.state_from_variables(variables), None
    return exp.fresh_state(), None


def train_and_evaluate(config, workdir: str, devices=None, stop_at_step: int | None = None) -> dict:
    """Train `config` in `workdir` (resumable). Returns the last evaluation's metrics.

    devices: the devices to build the mesh over (default: all, across every process).
    stop_at_step: checkpoint and return after this step (the schedule still spans num_steps), so a
    notebook or test can train in pieces; rerunning continues exactly where it stopped.
    """
    exp = Experiment(config, workdir, devices)
    os.makedirs(workdir, exist_ok=True)
    manager = None
    if config.checkpoint_every:
        manager = ckpt.make_manager(workdir, keep=config.keep_checkpoints)
    state, data_state = _initial_state(exp, manager, workdir)
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


@functools.cache
def measure_peak_flops(n: int = 1024) -> float:
    """Float32 matmul FLOP/s of one device through XLA (best of 5): the MFU denominator."""
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        mm(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
