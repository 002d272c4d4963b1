"""Autoregressive sampling with a KV cache (or recurrent state): greedy, temperature, top-k.

One jit-compiled function: a prefill of the whole prompt writes the cache, then `lax.scan` emits
one token per step. Shapes are static (prompt length and max_new_tokens), so it compiles once.

Mixture-of-Transformers models (model.num_modalities > 1) route every token through the weights
of its modality (MoT §2.2), so generation needs the modality of each prompt token and a rule for
the tokens it emits: `ModalityByVocabRange` for disjoint vocabularies (Chameleon's text and image
tokens, the "two_modality" synthetic data), `ConstantModality` when everything generated belongs
to one modality (the path region of a maze).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp


def sample_logits(logits, rng, *, temperature: float, top_k: int):
    """logits [B, V] float32 -> token ids [B]. temperature 0 = greedy; top_k 0 = full vocab."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ModalityByVocabRange:
    """Modality of a token id from sorted vocabulary boundaries: ids < boundaries[0] are modality 0,
    ids in [boundaries[0], boundaries[1]) modality 1, and so on (MoT §3.2: disjoint vocabularies)."""

    boundaries: tuple[int, ...]

    def __call__(self, tokens: jax.Array) -> jax.Array:
        edges = jnp.asarray(self.boundaries, jnp.int32)
        return jnp.searchsorted(edges, tokens, side="right").astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ConstantModality:
    """Every generated token belongs to `modality`."""

    modality: int

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return jnp.full(tokens.shape, self.modality, jnp.int32)


def _check_modalities(model, prompt, prompt_modality_ids, modality_of_token):
    """-> prompt modality ids [B, P] (or None for single-modality models)."""
    num_modalities = getattr(model.cfg, "num_modalities", 1)
    if num_modalities == 1:
        return None
    if modality_of_token is None:
        raise ValueError(
            f"model.num_modalities={num_modalities}: generate needs modality_of_token (e.g. "
            "ModalityByVocabRange or ConstantModality) to route generated tokens"
        )
    if prompt_modality_ids is None:
        return modality_of_token(prompt)
    if prompt_modality_ids.shape != prompt.shape:
        raise ValueError(
            f"prompt_modality_ids shape {prompt_modality_ids.shape} must equal prompt shape "
            f"{prompt.shape}"
        )
    return prompt_modality_ids.astype(jnp.int32)


def init_cache(model, batch_size: int):
    """Zeroed decode state for `batch_size` sequences of up to model.cfg.max_len tokens."""
    tokens = jnp.zeros((batch_size, model.cfg.max_len), jnp.int32)
    shapes = jax.eval_shape(
        functools.partial(model.init, decode=True), jax.random.PRNGKey(0), tokens
    )["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@functools.partial(
    jax.jit,
    static_argnames=("model", "max_new_tokens", "temperature", "top_k", "modality_of_token"),
)
def generate(model, variables, prompt, rng, *, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, prompt_modality_ids=None, modality_of_token=None):
    """prompt [B, P] int32 -> [B, P + max_new_tokens] (prompt followed by sampled tokens).

    Multi-modality (MoT) models need `modality_of_token` (hashable: token ids [B] -> modality
    ids [B]) for the generated tokens; the prompt's modalities are `prompt_modality_ids` [B, P],
    or `modality_of_token(prompt)` when not given.
    """
    batch, prompt_len = prompt.shape
    if prompt_len + max_new_tokens > model.cfg.max_len:
        raise ValueError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds "
            f"model.max_len={model.cfg.max_len}"
        )
    prompt_modality_ids = _check_modalities(model, prompt, prompt_modality_ids, modality_of_token)
    routed = prompt_modality_ids is not None
    variables = {k: v for k, v in variables.items() if k != "cache"}
    cache = init_cache(model, batch)
    positions = jnp.broadcast_to(jnp.arange(prompt_len), (batch, prompt_len))
    logits, state = model.apply(
        variables | {"cache": cache}, prompt, positions=positions, decode=True, mutable=["cache"],
        **({"modality_ids": prompt_modality_ids} if routed else {}),
    )
    first = sample_logits(logits[:, -1], jax.random.fold_in(rng, 0), temperature=temperature,
                          top_k=top_k)

    def step(carry, i):
        token, cache = carry
        pos = jnp.full((batch, 1), prompt_len + i, jnp.int32)
        modality = {"modality_ids": modality_of_token(token)[:, None]} if routed else {}
        logits, state = model.apply(
            variables | {"cache": cache}, token[:, None], positions=pos, decode=True,
            mutable=["cache"], **modality,
        )
        nxt = sample_logits(logits[:, -1], jax.random.fold_in(rng, i + 1),
                            temperature=temperature, top_k=top_k)
        return (nxt, state["cache"]), token

    (last, _), tokens = jax.lax.scan(step, (first, state["cache"]), jnp.arange(max_new_tokens - 1))
    new = jnp.concatenate([tokens.T, last[:, None]], axis=1)
    return jnp.concatenate([prompt, new], axis=1)
