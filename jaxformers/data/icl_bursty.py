"""Bursty, Zipf-distributed in-context classification (`config.data.name = "icl_bursty"`).

Chan et al. 2022 (arXiv 2205.05055) with Reddy's synthetic classes (arXiv 2312.03002); the pure
samplers are `ops/icl_bursty.py`. batch = {"inputs": exemplars [B, N+1, D] float32, "labels":
[B, N+1] int32}, the query last. config.data fields: classes (K training classes), holdout_classes,
labels (L; classes carry label k mod L), dim (D), context (N), burstiness (B: 0 or a divisor of N),
p_bursty, zipf_alpha (α), noise (ε), class_seed (the class means, shared by every split and the
evaluator). Batch t of a split is drawn from fold_in(seed, split, process, t): resume is exact.
The validation split is the training distribution.

Evaluator "icl_bursty" (Chan et al. §2): `icl_accuracy` (2-way 4-shot on held-out classes with
labels drawn per prompt: the answer is only in the context, chance 1/2) and `iwl_accuracy`
(training-class queries with no context item of their class: the answer is only in the weights,
chance 1/L), each on the same 2048 fixed prompts at every evaluation; `icl_label_in_context`: the
fraction of ICL predictions that are one of the two context labels (a model that copies a context
label but cannot match exemplars to classes scores 1 there and 1/2 on icl_accuracy).
"""

import functools

import jax
import numpy as np

from jaxformers.config import ConfigError
from jaxformers.data.step_iterator import StepIterator, stream_key
from jaxformers.models.compiled import jitted_apply
from jaxformers.ops import icl_bursty as S

_SPLIT_IDS = {"train": 0, "validation": 1}
DEFAULTS = dict(
    classes=512,
    holdout_classes=64,
    labels=32,
    dim=32,
    context=8,
    burstiness=4,
    p_bursty=1.0,
    zipf_alpha=0.0,
    noise=0.1,
    class_seed=0,
)


def fields(cfg) -> dict:
    """config.data's fields with defaults, validated (one-line ConfigErrors naming the field)."""
    f = {k: type(v)(cfg.get(k, v)) for k, v in DEFAULTS.items()}
    for k in ("classes", "holdout_classes", "labels", "dim", "context"):
        if f[k] < 1:
            raise ConfigError(f"config.data.{k}={f[k]} must be positive")
    if f["classes"] % f["labels"]:
        raise ConfigError(
            f"config.data.classes={f['classes']} must be a multiple of config.data.labels="
            f"{f['labels']} (class k has label k mod L, every label equally often)"
        )
    try:
        S.check_burstiness(f["burstiness"], f["context"], "config.data.burstiness")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 0.0 <= f["p_bursty"] <= 1.0:
        raise ConfigError(f"config.data.p_bursty={f['p_bursty']} must be in [0, 1]")
    if f["context"] % 2 or f["holdout_classes"] < 2:
        raise ConfigError(
            f"config.data.context={f['context']} must be even (the 2-way evaluation puts "
            f"context/2 shots per class) and holdout_classes >= 2"
        )
    return f


@functools.lru_cache(maxsize=8)
def _prototypes(class_seed: int, classes: int, holdout: int, dim: int):
    key = jax.random.key(class_seed)
    return (
        S.class_prototypes(jax.random.fold_in(key, 0), classes, dim),
        S.class_prototypes(jax.random.fold_in(key, 1), holdout, dim),
    )


def prototypes(cfg):
    """(training class means [K, D], held-out class means [K_h, D]) from config.data.class_seed."""
    f = fields(cfg)
    return _prototypes(f["class_seed"], f["classes"], f["holdout_classes"], f["dim"])


def training_sampler(cfg, batch_size: int):
    f = fields(cfg)
    train, _ = prototypes(cfg)
    kw = {k: f[k] for k in ("context", "burstiness", "p_bursty", "zipf_alpha", "noise")}
    return jax.jit(lambda key: S.training_sequences(key, train, batch_size, num_labels=f["labels"], **kw)[:2])


class SequenceIterator(StepIterator):
    def __init__(self, cfg, *, split, seed, batch_size, process_index):
        super().__init__(split, _SPLIT_IDS)
        self.sample = training_sampler(cfg, batch_size)
        self.key = stream_key(seed, self.split_id, process_index)

    def batch(self, step: int) -> dict:
        items, labels = self.sample(jax.random.fold_in(self.key, step))
        return {"inputs": np.asarray(items, np.float32), "labels": np.asarray(labels, np.int32)}


build = SequenceIterator.build


def evaluation_prompts(data_config, num_prompts: int = 2048, seed: int = 0) -> dict:
    """{"icl": (items, labels), "iwl": (items, labels)}: the fixed prompts of the two evaluations
    (drawn once per data config and kept: every evaluation of a run scores the same prompts)."""
    return _evaluation_prompts(tuple(sorted(fields(data_config).items())), num_prompts, seed)


@functools.lru_cache(maxsize=8)
def _evaluation_prompts(field_items: tuple, num_prompts: int, seed: int) -> dict:
    f = dict(field_items)
    train, holdout = _prototypes(f["class_seed"], f["classes"], f["holdout_classes"], f["dim"])

    @jax.jit  # one compilation, not one per sampler primitive
    def draw(key, train, holdout):
        icl = S.fewshot_holdout(
            jax.random.fold_in(key, 0),
            holdout,
            num_prompts,
            ways=2,
            shots=f["context"] // 2,
            noise=f["noise"],
            num_labels=f["labels"],
        )
        iwl = S.no_support(
            jax.random.fold_in(key, 1),
            train,
            num_prompts,
            context=f["context"],
            zipf_alpha=f["zipf_alpha"],
            noise=f["noise"],
            num_labels=f["labels"],
        )
        return {"icl": icl[:2], "iwl": iwl[:2]}

    return draw(jax.random.fold_in(jax.random.key(seed), 1000), train, holdout)


def icl_iwl_accuracy(model, variables, config) -> dict:
    """Evaluator "icl_bursty": {"icl_accuracy", "iwl_accuracy"} (see the module docstring)."""
    apply = jitted_apply(model)
    out = {}
    for name, (items, labels) in evaluation_prompts(config.data).items():
        pred = np.argmax(np.asarray(apply(variables, items, labels)), axis=-1)
        out[f"{name}_accuracy"] = float(np.mean(pred == np.asarray(labels[:, -1])))
        if name == "icl":  # a prediction among the context's labels (chance 1/2 from there on)
            out["icl_label_in_context"] = float(
                np.mean(np.any(pred[:, None] == np.asarray(labels[:, :-1]), -1))
            )
    if jax.process_index() == 0:
        print(
            f"icl_bursty: ICL (held-out, 2-way) {out['icl_accuracy']:.3f}  "
            f"IWL (no support) {out['iwl_accuracy']:.3f}"
        )
    return out
