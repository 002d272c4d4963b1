"""Experiment: the model, data, optimizer, shardings and jitted steps built once from a config.

The step is one `jax.jit` with explicit in/out shardings and donation over the
('data', 'fsdp', 'tensor') mesh; evaluation runs the objective in eval mode plus the named
evaluators. `train_and_evaluate` (train/loop.py), the evaluate and grow commands and the notebooks
all build one of these.
"""

import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ConfigError, model_config_from
from jaxformers.data.registry import get_dataset_builder
from jaxformers.models.registry import build_model
from jaxformers.objectives.registry import get_objective
from jaxformers.precision import value_and_grad_in
from jaxformers.train import mesh as mesh_lib
from jaxformers.train.config_base import validate_config
from jaxformers.train.evaluators import get_evaluator
from jaxformers.train.flops import matmul_flops
from jaxformers.train.state import TrainState, create_state, learning_rate_schedule, make_optimizer

_OPTIONAL_MODEL_INPUTS = ("positions", "segment_ids", "modality_ids")


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
        master = self.model_cfg.precision.params
        if master not in ("float32", "float64"):
            raise ConfigError(
                f"model.precision.params={master!r}: training keeps float32 master weights (the "
                f"optimizer updates them, checkpoints hold them); lower model.precision.compute instead"
            )
        self.model = build_model(config.model_family, self.model_cfg)
        self.objective = get_objective(config.objective)
        self.mesh = mesh_lib.make_mesh(config.mesh, devices)
        data_parallel = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        if config.batch_size % data_parallel:
            raise ConfigError(
                f"config.batch_size={config.batch_size} is not divisible by the data-parallel "
                f"mesh size data*fsdp={data_parallel}"
            )
        if config.batch_size % jax.process_count():
            raise ConfigError(
                f"config.batch_size={config.batch_size} is not divisible by the "
                f"{jax.process_count()} processes"
            )
        per_device = config.batch_size // data_parallel
        if per_device % config.grad_accum_steps:
            raise ConfigError(
                f"config.grad_accum_steps={config.grad_accum_steps} does not divide the per-device "
                f"batch {per_device} (config.batch_size={config.batch_size} over data*fsdp={data_parallel})"
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
    def init_boxed(self, rng):
        batch = {k: jnp.asarray(v[:1]) for k, v in self.example_batch.items()}
        return init_variables(self.model, batch, _init_rngs(self.config.seed) | {"params": rng})

    def _build_state_shardings(self):
        boxed = jax.eval_shape(self.init_boxed, jax.random.PRNGKey(0))
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
            variables = nn.meta.unbox(self.init_boxed(jax.random.fold_in(root, 0)))
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

        accum = self.config.grad_accum_steps

        def train_step(state: TrainState, batch):
            rng = jax.random.fold_in(state.rng, state.step)

            def loss_fn(params, micro_batch, micro_rng):
                variables = {"params": params}
                if state.constants:
                    variables["constants"] = state.constants
                return objective(model, variables, micro_batch, rng=micro_rng, step=state.step, train=True)

            # model.precision.gradients: the dtype the backward pass writes weight gradients in
            grad_fn = value_and_grad_in(loss_fn, self.model_cfg.precision.dtype("gradients"))
            if accum == 1:
                (loss, metrics), grads = grad_fn(state.params, batch, rng)
                grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
            else:
                loss, metrics, grads = accumulate_gradients(grad_fn, state.params, batch, rng, accum)
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
        results = self.mean_validation_metrics(self.eval_step, variables,
                                               num_batches or self.config.eval_batches)
        for name in self.config.evaluators:
            results.update(get_evaluator(name)(self.model, variables, self.config))
        return results

    def mean_validation_metrics(self, metrics_fn, variables, num_batches: int) -> dict:
        """Mean of metrics_fn(variables, batch) over the first `num_batches` validation batches."""
        iterator = self.make_iterator("validation")
        totals, count = {}, 0
        for _ in range(num_batches):
            try:
                local = next(iterator)
            except StopIteration:
                break
            for k, v in jax.device_get(metrics_fn(variables, self.global_batch(local))).items():
                totals[k] = totals.get(k, 0.0) + float(v)
            count += 1
        if count == 0:
            raise ConfigError("the validation split yielded no batch; lower config.batch_size")
        return {k: v / count for k, v in totals.items()}


def split_micro_batches(batch: dict, num: int) -> dict:
    """(B, ...) -> (num, B // num, ...) with micro-batch j = rows j, j + num, j + 2 num, ...: a
    device's contiguous block of rows holds B / (devices * num) rows of every micro-batch, so the
    split moves no data between devices."""
    def split(x):
        x = x.reshape(x.shape[0] // num, num, *x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return jax.tree.map(split, batch)


def accumulate_gradients(grad_fn, params, batch: dict, rng, num: int):
    """Mean loss, metrics and gradients over `num` equal micro-batches with one `lax.scan` (the
    MaxText / Levanter pattern): only one micro-batch's activations are live at a time; gradients
    and metrics are summed in float32 and divided by `num`, so with equal-size micro-batches and a
    per-example mean objective the result equals one step on the whole batch."""
    micro = split_micro_batches(batch, num)
    first = jax.tree.map(lambda x: x[0], micro)
    (_, metrics_shape), _ = jax.eval_shape(grad_fn, params, first, rng)
    zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), tree)  # noqa: E731

    def body(carry, xs):
        loss_sum, metric_sums, grad_sums = carry
        index, micro_batch = xs
        (loss, metrics), grads = grad_fn(params, micro_batch, jax.random.fold_in(rng, index))
        add = lambda a, b: a + b.astype(jnp.float32)  # noqa: E731
        return (add(loss_sum, loss), jax.tree.map(add, metric_sums, metrics),
                jax.tree.map(add, grad_sums, grads)), None

    init = (jnp.zeros((), jnp.float32), zeros(metrics_shape), zeros(params))
    (loss_sum, metric_sums, grad_sums), _ = jax.lax.scan(body, init, (jnp.arange(num), micro))
    grads = jax.tree.map(lambda g, p: (g / num).astype(p.dtype), grad_sums, params)
    return loss_sum / num, jax.tree.map(lambda m: m / num, metric_sums), grads


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
