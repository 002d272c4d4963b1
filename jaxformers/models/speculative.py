"""Self-speculative greedy decoding with the parallel heads of an "mtp" model (Gloeckle et al. 2024,
arXiv 2404.19737, §3.2; blockwise parallel decoding, Stern et al. 2018, arXiv 1811.03115, §3).

Each iteration is one cached forward pass of n tokens: the next greedy token e_1 (head 1, already
exact) followed by the drafts e_2..e_n of heads 2..n. Head 1's argmax at each of those positions
verifies the following draft; the k leading drafts that match are kept (the minimum over the batch,
because the KV cache index is shared), so 1 + k tokens are emitted, the cache index is rolled back
to the accepted length (stale entries beyond it are masked and later overwritten), and the heads at
the last accepted position give the next e_1..e_n. The output is the greedy output of head 1 token
for token. Shapes are static; the loop is a `lax.while_loop`. Softmax attention only: a recurrent
state (GLA, linear attention) cannot be rolled back.
"""

import functools

import jax
import jax.numpy as jnp

from jaxformers.ops.multi_token import accepted_length


def _set_cache_index(cache, value):
    def fix(path, leaf):
        return jnp.full_like(leaf, value) if getattr(path[-1], "key", None) == "index" else leaf
    return jax.tree_util.tree_map_with_path(fix, cache)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def speculative_generate(model, variables, prompt, *, max_new_tokens: int):
    """prompt [B, P] int32 -> (tokens [B, P + max_new_tokens], stats) with stats = {"forward_passes",
    "accepted_drafts"} (int32 scalars); acceptance rate = accepted / (passes_after_prefill * (n-1))."""
    cfg = model.cfg
    if cfg.token_mixer != "attention":
        raise ValueError(f"speculative_generate needs model.token_mixer='attention' (a KV cache that "
                         f"can be rolled back); got {cfg.token_mixer!r}")
    if cfg.mtp.kind != "parallel":
        raise ValueError(f"speculative_generate drafts with parallel heads (model.mtp.kind='parallel'); "
                         f"got {cfg.mtp.kind!r}")
    n = cfg.mtp.num_future_tokens
    batch, prompt_len = prompt.shape
    total = prompt_len + max_new_tokens
    if total + n - 1 > cfg.max_len:
        raise ValueError(f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} + "
                         f"num_future_tokens {n} - 1 exceeds model.max_len={cfg.max_len}")
    variables = {k: v for k, v in variables.items() if k != "cache"}
    shapes = jax.eval_shape(functools.partial(model.init, decode=True, heads="all"),
                            jax.random.PRNGKey(0), jnp.zeros((batch, cfg.max_len), jnp.int32))
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])

    def forward(cache, tokens, start):
        pos = start + jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        logits, state = model.apply(variables | {"cache": cache}, tokens, positions=pos,
                                    decode=True, heads="all", mutable=["cache"])
        return jnp.argmax(logits, -1).astype(jnp.int32), state["cache"]  # [n, B, T]

    greedy, cache = forward(cache, prompt, 0)
    drafts = greedy[:, :, -1].T  # [B, n]: e_1 (exact) and e_2..e_n
    out = jnp.zeros((batch, total + n), jnp.int32).at[:, :prompt_len].set(prompt)

    def cond(carry):
        return carry[0] < total

    def body(carry):
        length, out, cache, drafts, passes, accepted = carry
        out = jax.lax.dynamic_update_slice(out, drafts, (0, length))
        greedy, cache = forward(cache, drafts, length)  # positions length .. length+n-1
        k = jnp.min(accepted_length(drafts[:, 1:], greedy[0, :, :-1])) if n > 1 else 0
        last = jax.lax.dynamic_index_in_dim(greedy, k, axis=2, keepdims=False).T  # [B, n]
        # The verifier's token replaces a rejected draft: position length+k+1 is head 1's e_1.
        cache = _set_cache_index(cache, length + k + 1)
        return length + k + 1, out, cache, last, passes + 1, accepted + k

    zero = jnp.zeros((), jnp.int32)
    length, out, _, _, passes, accepted = jax.lax.while_loop(
        cond, body, (jnp.int32(prompt_len), out, cache, drafts, zero, zero))
    del length
    return out[:, :total], {"forward_passes": passes, "accepted_drafts": accepted}
