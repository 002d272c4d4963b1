"""TokenFormer growth: add parameter tokens to every Pattention layer (paper §3.3, eq. 11).

    K_P <- [K_P^old; K_P^new],   V_P <- [V_P^old; V_P^new]   (concatenated on the token axis)

d, the number of layers and heads are unchanged; only the token counts n grow to n + m.

Function preservation (paper App. B): with K_P^new = 0 the new scores are exactly 0, so the
L2 norm inside Θ (`ops/pattention.py`) is unchanged and GeLU(0) = 0 gives the new value tokens
zero weight, for "l2_norm_gelu" and "gelu_l2_norm" -- *provided τ keeps its old value*. The
default τ = sqrt(n) would become sqrt(n + m) and rescale the old scores, so `tau="frozen"` (the
default here, the TPU code's `zoom`) keeps the stored τ, and `tau="recompute"` sets
τ = default_tau(norm, n + m) as the released GPU code does (its growth also draws random new
keys: `key_init="normal"`). "softmax" is never preserved by zero keys (exp(0) = 1 > 0).
New value tokens are random by default (zero keys + zero values would never receive a gradient).

Pattention layers are found by name: any dict in "params" holding both "key_tokens" and
"value_tokens" (token axis -2 of each, any leading axes: layers, modality), with its τ at the
same path in "constants" (leaf "tau"), as `nn/pattention.py` lays them out.
"""

import jax
import jax.numpy as jnp

from jaxformers.growth.structure import GrowthError, check_same_structure
from jaxformers.ops.pattention import KEY_INIT_STD, default_tau, value_init_std

KEYS, VALUES, TAU = "key_tokens", "value_tokens", "tau"
KEY_INITS = ("zeros", "normal")
VALUE_INITS = ("normal", "zeros")
TAU_MODES = ("frozen", "recompute")



def find_pattention_layers(params: dict, prefix: tuple = ()) -> list[tuple[str, ...]]:
    """Paths (tuples of dict keys) of every Pattention layer in a params tree, sorted."""
    found = []
    if isinstance(params, dict):
        if KEYS in params and VALUES in params:
            found.append(prefix)
        for name, sub in params.items():
            if isinstance(sub, dict):
                found.extend(find_pattention_layers(sub, prefix + (name,)))
    return sorted(found)


def _get(tree, path):
    for name in path:
        if not isinstance(tree, dict) or name not in tree:
            return None
        tree = tree[name]
    return tree


def _set(tree, path, name, value):
    """Copy of nested dict `tree` with tree[path][name] = value (other nodes shared)."""
    if not path:
        return {**tree, name: value}
    return {**tree, path[0]: _set(tree.get(path[0], {}), path[1:], name, value)}


def _new_rows(rng, like, m, init, std):
    shape = like.shape[:-2] + (m, like.shape[-1])
    if init == "zeros":
        return jnp.zeros(shape, like.dtype)
    return (jax.random.normal(rng, shape, jnp.float32) * std).astype(like.dtype)


def grow_pattention(key_tokens, value_tokens, num_new: int, *, rng, key_init="zeros",
                    value_init="normal", key_std=KEY_INIT_STD, value_std=0.02):
    """One layer (eq. 11): ([..., n, d_in], [..., n, d_out]) -> ([..., n+m, d_in], [..., n+m, d_out]).

    The old tokens are rows [:n] unchanged; the m new rows are zeros or N(0, std^2).
    """
    if key_init not in KEY_INITS:
        raise ValueError(f"key_init={key_init!r}; expected one of {KEY_INITS}")
    if value_init not in VALUE_INITS:
        raise ValueError(f"value_init={value_init!r}; expected one of {VALUE_INITS}")
    if key_init == "zeros" and value_init == "zeros":
        raise ValueError("key_init='zeros' with value_init='zeros' gives new tokens that never "
                         "receive a gradient; make one of them 'normal'")
    if num_new < 0:
        raise GrowthError(f"cannot shrink a Pattention layer: {num_new} new tokens requested")
    if key_tokens.shape[-2] != value_tokens.shape[-2]:
        raise ValueError(f"key_tokens {key_tokens.shape} and value_tokens {value_tokens.shape} "
                         "disagree on the token axis (-2)")
    k_rng, v_rng = jax.random.split(rng)
    keys = jnp.concatenate([key_tokens, _new_rows(k_rng, key_tokens, num_new, key_init,
                                                  key_std)], axis=-2)
    values = jnp.concatenate([value_tokens, _new_rows(v_rng, value_tokens, num_new, value_init,
                                                      value_std)], axis=-2)
    return keys, values


def grow_tokens(variables: dict, new_tokens, *, rng, key_init="zeros", value_init="normal",
                tau="frozen", norm="l2_norm_gelu", key_std=KEY_INIT_STD, value_std=0.02) -> dict:
    """Grow every Pattention layer of `variables` ({"params": ..., "constants": ...}).

    new_tokens: m added to every layer (int), or a callable (path, n) -> m.
    tau: "frozen" keeps each layer's stored τ (function preserving with zero keys);
      "recompute" sets τ = default_tau(norm, n + m).
    Returns a new tree; leaves that are not Pattention tokens or τ are the same arrays.
    """
    if tau not in TAU_MODES:
        raise ValueError(f"tau={tau!r}; expected one of {TAU_MODES}")
    params, constants = variables.get("params", {}), variables.get("constants", {})
    paths = find_pattention_layers(params)
    if not paths:
        raise GrowthError("no Pattention layer (a dict with 'key_tokens' and 'value_tokens') in "
                          "variables['params']: not a TokenFormer model")
    for i, path in enumerate(paths):
        layer = _get(params, path)
        n = layer[KEYS].shape[-2]
        m = new_tokens(path, n) if callable(new_tokens) else int(new_tokens)
        if m < 0:
            raise GrowthError(f"Pattention layer {'/'.join(path)} has {n} tokens; growing it "
                              f"to {n + m} would shrink it")
        keys, values = grow_pattention(
            layer[KEYS], layer[VALUES], m, rng=jax.random.fold_in(rng, i), key_init=key_init,
            value_init=value_init, key_std=key_std, value_std=value_std,
        )
        params = _set(_set(params, path, KEYS, keys), path, VALUES, values)
        old_tau = _get(constants, path + (TAU,))
        if old_tau is None:
            raise GrowthError(f"constants has no τ for Pattention layer {'/'.join(path)} (expected "
                              f"constants/{'/'.join(path)}/tau, as nn/pattention.py stores it)")
        if tau == "recompute":
            new_tau = jnp.full(jnp.shape(old_tau), default_tau(norm, n + m), jnp.float32)
            constants = _set(constants, path, TAU, new_tau.astype(jnp.asarray(old_tau).dtype))
    return {**variables, "params": params, "constants": constants}


def tokenformer_grow(source_variables, *, source_cfg, target_cfg, target_init, rng, **options):
    """init_from transform: grow a TokenFormer checkpoint to the target config's token counts.

    options: key_init ("zeros" | "normal", default "zeros"), value_init ("normal" | "zeros",
    default "normal"), tau ("frozen" | "recompute", default "frozen"). The defaults are the exact,
    function-preserving growth (App. B). Random rows use the target model's init stds.
    """
    allowed = ("key_init", "value_init", "tau")
    if set(options) - set(allowed):
        raise ValueError(f"transform 'tokenformer_grow': unknown options "
                         f"{sorted(set(options) - set(allowed))}; valid {allowed}")
    source_paths = find_pattention_layers(source_variables.get("params", {}))
    if not source_paths:
        raise GrowthError(
            f"transform 'tokenformer_grow': the checkpoint is not a TokenFormer (model.projections="
            f"{source_cfg.projections!r}, model.feed_forward={source_cfg.feed_forward!r}; it has no "
            "Pattention layers)"
        )
    target_paths = find_pattention_layers(target_init.get("params", {}))
    if source_paths != target_paths:
        raise GrowthError(
            "transform 'tokenformer_grow' only adds parameter tokens: the checkpoint's Pattention "
            f"layers {['/'.join(p) for p in source_paths]} differ from the target's "
            f"{['/'.join(p) for p in target_paths]}"
        )
    if source_cfg.pattention.norm != target_cfg.pattention.norm:
        raise GrowthError(f"transform 'tokenformer_grow': model.pattention.norm changes from "
                          f"{source_cfg.pattention.norm!r} to {target_cfg.pattention.norm!r}")

    def target_count(path, n):
        n_target = _get(target_init["params"], path)[KEYS].shape[-2]
        if n_target < n:
            raise GrowthError(
                f"transform 'tokenformer_grow' cannot shrink: Pattention layer {'/'.join(path)} "
                f"has {n} tokens in the checkpoint but {n_target} in the target config "
                "(model.pattention.attn_tokens / ffn_tokens)"
            )
        return n_target - n

    grown = grow_tokens(
        {k: v for k, v in source_variables.items() if k in target_init},
        target_count, rng=rng, key_init=options.get("key_init", "zeros"),
        value_init=options.get("value_init", "normal"), tau=options.get("tau", "frozen"),
        norm=target_cfg.pattention.norm,
        value_std=value_init_std(target_cfg.num_layers, target_cfg.embed_dim),
    )
    if jax.tree.structure(grown) == jax.tree.structure(target_init):
        grown = jax.tree.map(lambda g, t: jnp.asarray(g, t.dtype), grown, target_init)
    return check_same_structure(grown, target_init, "tokenformer_grow")
