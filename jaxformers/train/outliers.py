"""Outlier metrics evaluator: per layer max |activation| and kurtosis of the block outputs.

Bondarenko, Nagel & Blankevoort 2023 ("Quantizable Transformers", arXiv 2306.12929, §3, Table 2):
for every validation sample, the attention output, the feed-forward output and the residual stream
after each block are flattened over tokens and features; their infinity norm and Pearson kurtosis
(`ops.outliers`) are averaged over samples. The summary follows the paper's columns:

    outliers/max_inf_norm   max over modules of the per-module mean infinity norm
    outliers/avg_kurtosis   mean over modules of the per-module mean kurtosis
    outliers/max_kurtosis   max over modules

plus `outliers/{mixer_out,ffn_out,residual}_{inf_norm,kurtosis}_l{layer}` per layer. The block
outputs come from the decoder's `sow("intermediates", ...)`. Runs `config.outlier_batches`
(default: config.eval_batches) validation batches of this process.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.config import ConfigError
from jaxformers.data.registry import get_dataset_builder
from jaxformers.models.compiled import jitted
from jaxformers.ops import outliers

KINDS = ("mixer_out", "ffn_out", "residual")
_OPTIONAL_INPUTS = ("positions", "segment_ids", "modality_ids")


def block_statistics(model, variables, batch: dict) -> dict[str, jax.Array]:
    """{kind: ([L, B] inf norms, [L, B] kurtoses)} of one batch."""
    kwargs = {k: jnp.asarray(batch[k]) for k in _OPTIONAL_INPUTS if k in batch}
    _, state = model.apply(
        {k: v for k, v in variables.items() if k != "intermediates"}, jnp.asarray(batch["inputs"]),
        mutable=["intermediates", "aux_loss"], rngs={"dropout": jax.random.PRNGKey(0),
                                                   "routing": jax.random.PRNGKey(1)}, **kwargs,
    )
    found = state.get("intermediates", {}).get("layers", {})
    missing = [k for k in KINDS if k not in found]
    if missing:
        raise ConfigError(f"config.evaluators 'outliers' needs a decoder that sows {missing} "
                          f"(models/decoder.py Block); this model sows {sorted(found)}")
    out = {}
    for kind in KINDS:
        acts = found[kind][0]  # [L, B, T, d] (sow keeps a tuple; scan stacks layers)
        out[kind] = (jax.vmap(outliers.inf_norm)(acts), jax.vmap(outliers.kurtosis)(acts))
    return out


def outlier_metrics(model, variables, config) -> dict[str, float]:
    builder = get_dataset_builder(config.data.name)
    iterator = builder(config.data, split="validation", seed=config.seed,
                       batch_size=config.batch_size // jax.process_count(),
                       process_index=jax.process_index(), process_count=jax.process_count())
    stats = jitted(block_statistics, model)  # compiled once per model, not once per evaluation
    num_batches = config.get("outlier_batches", None) or config.eval_batches
    sums: dict[tuple[str, int], np.ndarray] = {}
    count = 0
    for _ in range(num_batches):
        try:
            batch = next(iterator)
        except StopIteration:
            break
        for kind, (inf, kurt) in jax.device_get(stats(variables, dict(batch))).items():
            for name, value in (("inf_norm", inf), ("kurtosis", kurt)):
                key = (f"{kind}_{name}", 0)
                sums[key] = sums.get(key, 0.0) + np.asarray(value, np.float64).sum(axis=1)
        count += np.asarray(inf).shape[1]
    if count == 0:
        raise ConfigError("config.evaluators 'outliers': the validation split yielded no batch")
    results = {}
    for (name, _), total in sums.items():
        for layer, value in enumerate(total / count):
            results[f"outliers/{name}_l{layer}"] = float(value)
    inf = [v for k, v in results.items() if "_inf_norm_" in k]
    kurt = [v for k, v in results.items() if "_kurtosis_" in k]
    results |= {"outliers/max_inf_norm": max(inf), "outliers/avg_kurtosis": float(np.mean(kurt)),
                "outliers/max_kurtosis": max(kurt)}
    return results
