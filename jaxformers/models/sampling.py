"""Autoregressive sampling with a KV cache (or recurrent state): greedy, temperature, top-k.

One jit-compiled function: a prefill of the whole prompt writes the cache, then `lax.scan` emits
one token per step. Shapes are static (prompt length and max_new_tokens), so it compiles once.
"""

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


def init_cache(model, batch_size: int):
    """Zeroed decode state for `batch_size` sequences of up to model.cfg.max_len tokens."""
    tokens = jnp.zeros((batch_size, model.cfg.max_len), jnp.int32)
    shapes = jax.eval_shape(
        functools.partial(model.init, decode=True), jax.random.PRNGKey(0), tokens
    )["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k"))
def generate(model, variables, prompt, rng, *, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0):
    """prompt [B, P] int32 -> [B, P + max_new_tokens] (prompt followed by sampled tokens)."""
    batch, prompt_len = prompt.shape
    if prompt_len + max_new_tokens > model.cfg.max_len:
        raise ValueError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds "
            f"model.max_len={model.cfg.max_len}"
        )
    variables = {k: v for k, v in variables.items() if k != "cache"}
    cache = init_cache(model, batch)
    positions = jnp.broadcast_to(jnp.arange(prompt_len), (batch, prompt_len))
    logits, state = model.apply(
        variables | {"cache": cache}, prompt, positions=positions, decode=True, mutable=["cache"]
    )
    first = sample_logits(logits[:, -1], jax.random.fold_in(rng, 0), temperature=temperature,
                          top_k=top_k)

    def step(carry, i):
        token, cache = carry
        pos = jnp.full((batch, 1), prompt_len + i, jnp.int32)
        logits, state = model.apply(
            variables | {"cache": cache}, token[:, None], positions=pos, decode=True,
            mutable=["cache"],
        )
        nxt = sample_logits(logits[:, -1], jax.random.fold_in(rng, i + 1),
                            temperature=temperature, top_k=top_k)
        return (nxt, state["cache"]), token

    (last, _), tokens = jax.lax.scan(step, (first, state["cache"]), jnp.arange(max_new_tokens - 1))
    new = jnp.concatenate([tokens.T, last[:, None]], axis=1)
    return jnp.concatenate([prompt, new], axis=1)
