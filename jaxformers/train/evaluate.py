"""Evaluate a checkpoint at one or more settings (`launch/evaluate.py`, benchmarks, notebooks).

Restores the checkpoint's own config and variables (`train.checkpoint.load_variables`), so it
works for any model. Each row is a dict of dotted-key config overrides (the parameters do not
change), e.g. `{"model.moe.k": 2, "model.moe.k_schedule": "fixed"}` for SMoE-Dropout's
"self-slimmable" evaluation at k = 2 (Chen et al. 2023, §3.2).
"""

import json

from jaxformers.errors import UserError
from jaxformers.train import checkpoint as ckpt
from jaxformers.train.experiment import Experiment


def set_dotted(config, key: str, value) -> None:
    """config["a"]["b"] = value for key "a.b"."""
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def parse_overrides(items: list[str]) -> dict:
    """["key=value", ...] -> {key: value}; values are JSON where they parse, else strings."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--override={item!r} must be key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def moe_rows(config_model, ks) -> list[dict]:
    """One override row per MoE k (one empty row per k for a model without an MoE FFN)."""
    if config_model.get("feed_forward") != "moe":
        return [{} for _ in ks]
    return [{"model.moe.k": int(k), "model.moe.k_schedule": "fixed"} for k in ks]


def evaluate_checkpoint(workdir: str, rows: list[dict], *, step: int = -1,
                        eval_batches: int = 0) -> list[dict]:
    """[{"setting": row, "step": step, **metrics}] for each dict of dotted-key overrides in rows."""
    config, variables, restored_step = ckpt.load_variables(workdir, step)
    variables = {k: v for k, v in variables.items() if v}
    results, cache = [], {}
    for row in rows:
        cfg = config.copy_and_resolve_references()
        for key, value in row.items():
            set_dotted(cfg, key, value)
        key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        if key not in cache:
            cache[key] = Experiment(cfg).evaluate(variables, eval_batches or None)
        results.append({"setting": row, "step": restored_step, **cache[key]})
    return results
