"""In-context function-learning prompts as a dataset (`config.data.name = "icl_functions"`).

Fresh prompts every batch from the pure samplers of `ops/icl_tasks.py` (Garg et al. 2022;
Bhattamishra et al. 2024): batch = {"inputs": xs [B, n, d] float32, "targets": ys [B, n] float32}.
config.data fields: task (linear | sparse_linear | relu_net | representation | conjunction |
sparse_parity), dim (d), num_points (n), and per task: covariance ([d] diagonal or [d][d], linear),
noise_std (linear, representation), w_scale (linear), sparsity (k, sparse_linear and sparse_parity),
hidden (relu_net), depth and representation_seed (representation: the fixed residual ReLU MLP Φ of
Guo et al. 2024, drawn once from its own seed, so every split and run shares it).
Batch t of a split is drawn from fold_in(seed, split, process, t), so resume is exact.

Curriculum (Garg et al. 2022, arXiv 2208.01066, §4; train split only), config.data.curriculum:
dims_start / dims_increment and points_start / points_increment, grown every `every` batches up to
dim and num_points: at batch t the active dimension is min(dim, dims_start + dims_increment *
(t // every)), the prompt length likewise. Shapes never change (one compilation): inactive
coordinates of x are 0, prompt positions past the active length are 0 with batch["weights"] = 0
(the objective's mask). The state is a function of t alone, so resume is exact.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.config import ConfigError
from jaxformers.data.step_iterator import StepIterator, stream_key
from jaxformers.ops import icl_tasks

_SPLIT_IDS = {"train": 0, "validation": 1, "curve": 2}


def task_kwargs(cfg) -> tuple[str, int, int, dict]:
    """(task, d, n, sampler keyword arguments) from config.data, validated (ConfigError)."""
    task = cfg.get("task", "linear")
    if task not in icl_tasks.TASKS:
        raise ConfigError(f"config.data.task={task!r}; expected one of {sorted(icl_tasks.TASKS)}")
    d, n = int(cfg.get("dim", 5)), int(cfg.get("num_points", 15))
    if d < 1 or n < 1:
        raise ConfigError(f"config.data.dim={d} and num_points={n} must be positive")
    kw = {}
    if task == "linear":
        cov = cfg.get("covariance", None)
        try:
            icl_tasks.check_covariance(cov, d, "config.data.covariance")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        kw = dict(
            covariance=None if cov is None else np.asarray(cov, np.float64),
            noise_std=float(cfg.get("noise_std", 0.0)),
            w_scale=float(cfg.get("w_scale", 1.0)),
        )
    elif task in ("sparse_linear", "sparse_parity"):
        k = int(cfg.get("sparsity", 3 if task == "sparse_linear" else 2))
        if not 1 <= k <= d:
            raise ConfigError(f"config.data.sparsity={k} must satisfy 1 <= k <= config.data.dim={d}")
        kw = dict(k=k)
    elif task == "relu_net":
        kw = dict(hidden=int(cfg.get("hidden", 100)))
    elif task == "representation":
        depth = int(cfg.get("depth", 2))
        if depth < 1:
            raise ConfigError(f"config.data.depth={depth} must be >= 1 (layers of the representation)")
        kw = dict(
            representation=icl_tasks.Representation(d, depth, int(cfg.get("representation_seed", 0))),
            noise_std=float(cfg.get("noise_std", 0.0)),
        )
    return task, d, n, kw



_CURRICULUM_FIELDS = ("dims_start", "dims_increment", "points_start", "points_increment", "every")


def curriculum(cfg) -> dict | None:
    """config.data.curriculum validated -> {dims: (start, end, inc, every), points: (...)} or None."""
    cur = cfg.get("curriculum", None)
    if cur is None or not int(cur.get("every", 0)):
        return None
    unknown = set(cur.keys()) - set(_CURRICULUM_FIELDS)
    if unknown:
        raise ConfigError(
            f"config.data.curriculum has unknown fields {sorted(unknown)}; "
            f"expected {list(_CURRICULUM_FIELDS)}"
        )
    task, d, n, _ = task_kwargs(cfg)
    every = int(cur["every"])
    out = {}
    for name, end in (("dims", d), ("points", n)):
        start, inc = int(cur.get(f"{name}_start", end)), int(cur.get(f"{name}_increment", 0))
        if not 1 <= start <= end or inc < 0 or every < 0:
            raise ConfigError(
                f"config.data.curriculum.{name}_start={start} must be in [1, {end}] "
                f"and {name}_increment={inc}, every={every} non-negative"
            )
        out[name] = (start, end, inc, every)
    if out["dims"][0] < d and task not in icl_tasks.CURRICULUM_DIM_TASKS:
        raise ConfigError(
            f"config.data.curriculum.dims_start={out['dims'][0]} < dim={d}: the "
            f"dimension curriculum supports tasks {list(icl_tasks.CURRICULUM_DIM_TASKS)}"
        )
    return out


def curriculum_at(cfg, step: int) -> tuple[int, int]:
    """(active dimension, active prompt length) of the train split at batch `step`."""
    cur = curriculum(cfg)
    if cur is None:
        return task_kwargs(cfg)[1:3]
    return _active(cur, step)


def _active(cur: dict, step: int) -> tuple[int, int]:
    return tuple(int(icl_tasks.curriculum_value(step, *cur[k])) for k in ("dims", "points"))


def sampler(cfg, batch_size: int):
    """A jitted (key, active_dims, active_points) -> (xs, ys, weights) for config.data; the two
    counts are traced, so the curriculum never recompiles."""
    task, d, n, kw = task_kwargs(cfg)
    if kw.get("covariance", 0) is None:
        kw.pop("covariance")
    fn = functools.partial(icl_tasks.TASKS[task], batch=batch_size, n=n, d=d, **kw)

    @jax.jit
    def sample(key, active_dims, active_points):
        if task in icl_tasks.CURRICULUM_DIM_TASKS:
            xs, ys = fn(key, active_dims=active_dims)
        else:
            xs, ys = fn(key)
        weights = jnp.broadcast_to(icl_tasks.active_mask(n, active_points), ys.shape)
        return xs * weights[..., None], ys * weights, weights

    return lambda key, active_dims=d, active_points=n: sample(key, active_dims, active_points)


class PromptIterator(StepIterator):
    def __init__(self, cfg, *, split, seed, batch_size, process_index):
        super().__init__(split, _SPLIT_IDS)
        self.sample = sampler(cfg, batch_size)
        self.curriculum = curriculum(cfg) if split == "train" else None
        self.key = stream_key(seed, self.split_id, process_index)

    def batch(self, step: int) -> dict:
        active = _active(self.curriculum, step) if self.curriculum else ()
        xs, ys, weights = self.sample(jax.random.fold_in(self.key, step), *active)
        return {
            "inputs": np.asarray(xs, np.float32),
            "targets": np.asarray(ys, np.float32),
            "weights": np.asarray(weights, np.float32),
        }


build = PromptIterator.build


def curve_prompts(data_config, num_prompts: int, seed: int = 0):
    """The fixed evaluation prompts of the error curves: (xs, ys) as jnp arrays."""
    xs, ys, _ = sampler(data_config, num_prompts)(
        jax.random.fold_in(jax.random.key(seed), _SPLIT_IDS["curve"] + 1000)
    )
    return xs, ys


BOOLEAN_TASKS = ("conjunction", "sparse_parity")


def is_boolean(data_config) -> bool:
    return data_config.get("task", "linear") in BOOLEAN_TASKS
