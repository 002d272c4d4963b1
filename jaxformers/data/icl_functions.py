"""In-context function-learning prompts as a dataset (`config.data.name = "icl_functions"`).

Fresh prompts every batch from the pure samplers of `ops/icl_tasks.py` (Garg et al. 2022;
Bhattamishra et al. 2024): batch = {"inputs": xs [B, n, d] float32, "targets": ys [B, n] float32}.
config.data fields: task (linear | sparse_linear | relu_net | conjunction | sparse_parity), dim (d),
num_points (n), and per task: covariance ([d] diagonal or [d][d], linear), noise_std and w_scale
(linear), sparsity (k, sparse_linear and sparse_parity), hidden (relu_net).
Batch t of a split is drawn from fold_in(seed, split, process, t), so resume is exact.
"""

import functools

import jax
import numpy as np

from jaxformers.config import ConfigError
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
        kw = dict(covariance=None if cov is None else np.asarray(cov, np.float64),
                  noise_std=float(cfg.get("noise_std", 0.0)), w_scale=float(cfg.get("w_scale", 1.0)))
    elif task in ("sparse_linear", "sparse_parity"):
        k = int(cfg.get("sparsity", 3 if task == "sparse_linear" else 2))
        if not 1 <= k <= d:
            raise ConfigError(f"config.data.sparsity={k} must satisfy 1 <= k <= config.data.dim={d}")
        kw = dict(k=k)
    elif task == "relu_net":
        kw = dict(hidden=int(cfg.get("hidden", 100)))
    return task, d, n, kw


def sampler(cfg, batch_size: int):
    """A jitted key -> (xs, ys) for config.data."""
    task, d, n, kw = task_kwargs(cfg)
    cov = kw.pop("covariance", None)
    if cov is not None:
        kw["covariance"] = cov
    fn = functools.partial(icl_tasks.TASKS[task], batch=batch_size, n=n, d=d, **kw)
    return jax.jit(lambda key: fn(key))


class PromptIterator:
    def __init__(self, cfg, *, split, seed, batch_size, process_index):
        if split not in _SPLIT_IDS:
            raise ValueError(f"split={split!r}; expected one of {sorted(_SPLIT_IDS)}")
        self.sample = sampler(cfg, batch_size)
        self.key = jax.random.fold_in(jax.random.fold_in(
            jax.random.key(int(seed)), _SPLIT_IDS[split]), int(process_index))
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        xs, ys = self.sample(jax.random.fold_in(self.key, self.step))
        self.step += 1
        return {"inputs": np.asarray(xs, np.float32), "targets": np.asarray(ys, np.float32)}

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


def build(data_config, *, split, seed, batch_size, process_index, process_count):
    del process_count
    return PromptIterator(data_config, split=split, seed=seed, batch_size=batch_size,
                          process_index=process_index)


def curve_prompts(data_config, num_prompts: int, seed: int = 0):
    """The fixed evaluation prompts of the error curves: (xs, ys) as jnp arrays."""
    return sampler(data_config, num_prompts)(
        jax.random.fold_in(jax.random.key(seed), _SPLIT_IDS["curve"] + 1000))


BOOLEAN_TASKS = ("conjunction", "sparse_parity")


def is_boolean(data_config) -> bool:
    return data_config.get("task", "linear") in BOOLEAN_TASKS


