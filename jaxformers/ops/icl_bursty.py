"""Pure samplers of bursty, Zipf-distributed in-context classification sequences.

Chan, Santoro, Lampinen, Wang, Singh, Richemond, McClelland & Hill 2022 ("Data Distributional
Properties Drive Emergent In-Context Learning in Transformers", arXiv 2205.05055, §2): a sequence
is N = 8 (exemplar, label) pairs and a query exemplar; the model predicts the query's label. Classes
are drawn from a Zipf law p_k ∝ (k+1)^(-α); in a *bursty* sequence the query's class appears several
times in the context. Omniglot is replaced by Reddy's synthetic classes (Reddy 2024, "The
mechanistic basis of data dependence and abrupt learning in an in-context classification task",
arXiv 2312.03002, §2): class means μ_k ~ N(0, I_D / D), exemplars x = (μ_k + ε η) / sqrt(1 + ε²) with
η ~ N(0, I_D / D), and training class k carries the fixed label k mod L.

Burstiness B (Reddy §2): a bursty context holds N / B distinct classes, each B times, in random
order, and the query is one of them, so B context items share the query's class. B = 0 (or a
non-bursty draw, probability 1 - p_bursty) draws all N items and the query i.i.d. from the Zipf law.

Evaluations (Chan et al. §2, their `eval_fewshot_holdout` and `eval_no_support_zipfian`):
- in-context learning: 2-way 4-shot on held-out classes, whose two labels are drawn afresh for
  every prompt, so the answer can only be read from the context (chance 1/2 among them);
- in-weights learning: a training class as the query and no context item of its class, so the
  answer (k mod L) can only come from the weights (chance 1/L).

All functions return (items [B, N+1, D], labels [B, N+1] int32, classes [B, N+1] int32), the query
last; `classes` holds training-class ids, or held-out-class ids for `fewshot_holdout`.
"""

import jax
import jax.numpy as jnp


def class_prototypes(rng, num_classes: int, dim: int, dtype=jnp.float32) -> jax.Array:
    """μ_k ~ N(0, I_D / D): [K, D] (Reddy 2024 §2)."""
    return jax.random.normal(rng, (num_classes, dim), dtype) / jnp.sqrt(dim)


def zipf_logits(num_classes: int, alpha: float) -> jax.Array:
    """log p_k up to a constant, p_k ∝ (k+1)^(-α) (Chan et al. §2; α = 0 is uniform): [K]."""
    return -alpha * jnp.log(jnp.arange(1, num_classes + 1, dtype=jnp.float32))


def exemplars(rng, prototypes: jax.Array, classes: jax.Array, noise: float) -> jax.Array:
    """x = (μ_c + ε η) / sqrt(1 + ε²), η ~ N(0, I_D / D): classes [...] -> [..., D]."""
    mu = prototypes[classes]
    eta = jax.random.normal(rng, mu.shape, mu.dtype) / jnp.sqrt(mu.shape[-1])
    return (mu + noise * eta) / jnp.sqrt(1.0 + noise**2)


def _distinct(rng, logits: jax.Array, batch: int, m: int) -> jax.Array:
    """m distinct draws per row, without replacement, from softmax(logits) (Gumbel top-k): [B, m]."""
    g = jax.random.gumbel(rng, (batch, logits.shape[-1]))
    return jax.lax.top_k(logits + g, m)[1].astype(jnp.int32)


def _shuffle(rng, x: jax.Array) -> jax.Array:
    """An independent random permutation of each row of x [B, N]."""
    order = jnp.argsort(jax.random.uniform(rng, x.shape), axis=-1)
    return jnp.take_along_axis(x, order, axis=-1)


def check_burstiness(burstiness: int, context: int, field: str = "burstiness") -> None:
    if burstiness < 0 or (burstiness and context % burstiness):
        raise ValueError(
            f"{field}={burstiness} must be 0 or a positive divisor of the context length {context}"
        )


def training_sequences(
    rng,
    prototypes: jax.Array,
    batch: int,
    *,
    context: int = 8,
    burstiness: int = 4,
    p_bursty: float = 1.0,
    zipf_alpha: float = 0.0,
    noise: float = 0.1,
    num_labels: int = 32,
):
    """Training sequences over the K training classes (prototypes [K, D]); see the module doc."""
    check_burstiness(burstiness, context)
    num_classes = prototypes.shape[0]
    logits = zipf_logits(num_classes, zipf_alpha)
    k_iid, k_iidq, k_cls, k_shuf, k_q, k_b, k_x = jax.random.split(rng, 7)
    iid = jax.random.categorical(k_iid, logits, shape=(batch, context))
    iid_query = jax.random.categorical(k_iidq, logits, shape=(batch, 1))
    classes = jnp.concatenate([iid, iid_query], axis=1).astype(jnp.int32)
    if burstiness:
        m = context // burstiness
        drawn = _distinct(k_cls, logits, batch, m)  # [B, m] distinct classes
        ctx = _shuffle(k_shuf, jnp.repeat(drawn, burstiness, axis=1))  # each B times
        query = jnp.take_along_axis(drawn, jax.random.randint(k_q, (batch, 1), 0, m), axis=1)
        bursty = jnp.concatenate([ctx, query], axis=1)
        is_bursty = jax.random.bernoulli(k_b, p_bursty, (batch, 1))
        classes = jnp.where(is_bursty, bursty, classes)
    return exemplars(k_x, prototypes, classes, noise), classes % num_labels, classes


def fewshot_holdout(
    rng,
    holdout: jax.Array,
    batch: int,
    *,
    ways: int = 2,
    shots: int = 4,
    noise: float = 0.1,
    num_labels: int = 32,
):
    """`ways`-way `shots`-shot prompts over held-out classes (holdout [K_h, D]): `ways` distinct
    classes, each given one of `ways` distinct labels drawn afresh per prompt (a random subset of
    the L labels in random order), `shots` exemplars each in random order, and a query from one of
    them (Chan et al.'s eval_fewshot_holdout)."""
    if not 2 <= ways <= min(holdout.shape[0], num_labels):
        raise ValueError(f"ways={ways} must be in [2, min(held-out classes, num_labels)]")
    k_cls, k_lab, k_shuf, k_q, k_x = jax.random.split(rng, 5)
    drawn = _distinct(k_cls, jnp.zeros(holdout.shape[0]), batch, ways)  # [B, ways]
    label_of = _distinct(k_lab, jnp.zeros(num_labels), batch, ways)  # [B, ways], permuted per prompt
    slot = _shuffle(k_shuf, jnp.repeat(jnp.arange(ways, dtype=jnp.int32)[None], batch, 0).repeat(shots, 1))
    slot = jnp.concatenate([slot, jax.random.randint(k_q, (batch, 1), 0, ways)], axis=1)  # [B, N+1]
    classes = jnp.take_along_axis(drawn, slot, axis=1)
    labels = jnp.take_along_axis(label_of, slot, axis=1)
    return exemplars(k_x, holdout, classes, noise), labels, classes


def no_support(
    rng,
    prototypes: jax.Array,
    batch: int,
    *,
    context: int = 8,
    zipf_alpha: float = 0.0,
    noise: float = 0.1,
    num_labels: int = 32,
):
    """A Zipf-drawn training class as the query and N context items i.i.d. from the Zipf law
    restricted to the other classes (Chan et al.'s eval_no_support_zipfian)."""
    logits = zipf_logits(prototypes.shape[0], zipf_alpha)
    k_q, k_c, k_x = jax.random.split(rng, 3)
    query = jax.random.categorical(k_q, logits, shape=(batch,)).astype(jnp.int32)
    others = jnp.where(jnp.arange(prototypes.shape[0]) == query[:, None], -jnp.inf, logits)  # [B, K]
    ctx = jax.random.categorical(k_c, others[:, None, :], shape=(batch, context)).astype(jnp.int32)
    classes = jnp.concatenate([ctx, query[:, None]], axis=1)
    return exemplars(k_x, prototypes, classes, noise), classes % num_labels, classes
