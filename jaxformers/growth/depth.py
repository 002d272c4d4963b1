"""Depth growth on the scanned layer axis: G_stack, interleaving, G_zero, noise, partial stacking.

Paper: Du, Luo et al., "Stacking Your Transformers" (NeurIPS 2024, arXiv 2405.15319).
Every function here is a pure pytree -> pytree map. The decoder
scans its blocks (`models/decoder.py`), so every per-layer variable has a leading "layers" axis
under the key "layers" of its collection ("params", "constants"); everything outside it
(embedding, final norm, head) is copied unchanged. Because the functions only index that axis,
they work for every block the decoder can build (attention, GLA, MoE, MoT, Pattention, ...).

A growth is a list `indices` of base layers: target layer i is a copy of base layer indices[i].

- G_stack (App. A.3 Algorithm 1, code `stackingpt.py`): whole-model order,
  indices = [0, 1, ..., L-1, 0, 1, ..., L-1, ...]  (M o M o ... o M, g copies).
- interleave ("interpolation", App. H.2): indices = [0, 0, ..., 1, 1, ...] (each layer g times).
- partial stacking (App. H.3): only the slice [start, stop) is repeated, in place.
- G_zero depth (§3.1): the G_stack order, but in every copy after the first the residual-output
  projections are zero, so each new block is the identity and the grown model computes exactly
  the base model's function (pre-norm, and also norm-after-branch since RMSNorm(0) = 0).
- noise blending (App. I.2): W <- (1 - a) W + a eps.

The zeroing rule (G_zero) is explicit: inside a layer's "params", every leaf whose path contains
a name in `RESIDUAL_OUTPUT_NAMES` is the weight of a map whose output is added to the residual
stream, and it is zeroed, except for leaves named in `KEEP_NONZERO_LEAVES` (weights *before* a
zeroed factor, which must stay nonzero to avoid 0/0 in a normalisation, e.g. Pattention's key
tokens). A block kind whose output map has another name adds it to `RESIDUAL_OUTPUT_NAMES`;
`tests/growth/test_depth.py` checks grown(x) == base(x) for every
registered token mixer, feed-forward and projection, so a missing name fails there.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.growth.structure import GrowthError, check_same_structure

LAYERS = "layers"
LAYER_COLLECTIONS = ("params", "constants")

# Module or parameter names whose output is added to the residual stream (the last map of a
# token mixer / feed-forward):
#   "out"        attention (nn/attention.py), GLA and linear attention (nn/linear_attention.py);
#                not "out_gate" (names match exactly)
#   "down"       SwiGLU (nn/mlp.py)
#   "pattention" TokenFormer's Pattention FFN (nn/pattention.py), a single d -> d Pattention
#   "w2", "b2"   the experts' output weights and bias of the MoE FFN (nn/moe.py), and the output
#                bias of its dense twin "dense_mlp" (whose output weight is "down")
RESIDUAL_OUTPUT_NAMES = frozenset({"out", "down", "pattention", "w2", "b2"})
# Leaves under a residual-output module that are NOT zeroed. A Pattention y = Θ(x K^T) V is zeroed
# through its value tokens V only: zero key tokens would make Θ's normalisation see 0 / 0, and
# with both zero the new block would get no gradient at all (dead forever).
KEEP_NONZERO_LEAVES = frozenset({"key_tokens"})


# Index lists ----------------------------------------------------------------------------------
def stack_indices(num_layers: int, factor: int) -> list[int]:
    """G_stack order: target layer i <- base layer i mod L (Du et al. 2024 `stacking_list`)."""
    _check_factor(factor)
    return [i % num_layers for i in range(num_layers * factor)]


def interleave_indices(num_layers: int, factor: int) -> list[int]:
    """Interleaved order f0 f0 .. f1 f1 ..: target layer i <- base layer i // g."""
    _check_factor(factor)
    return [i // factor for i in range(num_layers * factor)]


def partial_stack_indices(num_layers: int, start: int, stop: int, target_layers: int) -> list[int]:
    """Repeat base layers [start, stop) in place until the model has `target_layers` layers.

    E.g. L=6, [2, 4) -> 10 layers: 0 1 2 3 2 3 2 3 4 5 (App. H.3 "middle" stacking).
    """
    if not 0 <= start < stop <= num_layers:
        raise ValueError(f"layer slice [{start}, {stop}) must lie within [0, {num_layers})")
    width = stop - start
    extra = target_layers - num_layers
    if extra < 0 or extra % width:
        raise ValueError(
            f"target_layers={target_layers}: repeating the {width} layers [{start}, {stop}) of a "
            f"{num_layers}-layer model gives {num_layers} + k*{width} layers"
        )
    base = list(range(num_layers))
    return base[:stop] + list(range(start, stop)) * (extra // width) + base[stop:]


def connection_rate(indices) -> float:
    """Fraction of adjacent target-layer pairs that are adjacent (j, j+1) in the base model.

    Our reading of App. H.3's R_c ("the fraction of adjacent-layer pairs preserved"):
    G_stack 6->24 gives 20/23, interleave 6->24 gives 5/23.
    """
    pairs = list(zip(indices[:-1], indices[1:], strict=True))
    return sum(b == a + 1 for a, b in pairs) / max(len(pairs), 1)


def _check_factor(factor):
    if not isinstance(factor, int | np.integer) or factor < 1:
        raise ValueError(f"factor={factor!r} must be a positive int")


# Tree plumbing --------------------------------------------------------------------------------
def _layer_subtrees(variables: dict) -> dict:
    """{collection: subtree-with-layer-axis}. Accepts {"params": {...}, ...} or one collection."""
    if LAYERS in variables:
        return {None: variables[LAYERS]}
    found = {c: v[LAYERS] for c, v in variables.items() if isinstance(v, dict) and LAYERS in v}
    if not found:
        raise ValueError(
            f"variables have no {LAYERS!r} subtree (top-level keys {sorted(variables)}); "
            "expected a scanned decoder's variables"
        )
    return found


def _replace_layers(variables: dict, fn) -> dict:
    """Copy of `variables` with fn(collection, layer_subtree) in place of each layer subtree."""
    if LAYERS in variables:
        return {**variables, LAYERS: fn(None, variables[LAYERS])}
    out = dict(variables)
    for c, v in variables.items():
        if isinstance(v, dict) and LAYERS in v:
            out[c] = {**v, LAYERS: fn(c, v[LAYERS])}
    return out


def num_layers(variables: dict) -> int:
    """Length of the layer axis (all layer leaves must agree)."""
    sizes = {x.shape[0] for t in _layer_subtrees(variables).values() for x in jax.tree.leaves(t)}
    if len(sizes) != 1:
        raise ValueError(f"layer leaves disagree on the layer-axis length: {sorted(sizes)}")
    return sizes.pop()


def take_layers(variables: dict, indices) -> dict:
    """Target layer i <- base layer indices[i] for every layer leaf; other leaves unchanged.

    The copies are new arrays (a gather), so updating one never changes another.
    """
    n = num_layers(variables)
    idx = np.asarray(indices, np.int32)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"indices {list(indices)} must be a non-empty list of layers in [0, {n})")
    grown = _replace_layers(variables, lambda c, t: jax.tree.map(lambda x: jnp.take(x, idx, 0), t))
    # Fresh buffers for the leaves outside the layer axis too: donating the grown state to a
    # jitted step must never delete the base model's arrays.
    return jax.tree.map(lambda g, b: jnp.array(g, copy=True) if g is b else g, grown, variables)


def is_residual_output(path) -> bool:
    """True for a layer leaf (path inside the 'layers' subtree) that G_zero zeroes."""
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return any(n in RESIDUAL_OUTPUT_NAMES for n in names) and names[-1] not in KEEP_NONZERO_LEAVES


# Operators ------------------------------------------------------------------------------------
def stack(variables: dict, factor: int) -> dict:
    """G_stack: the whole layer stack repeated `factor` times in order. factor=1 is the identity."""
    return take_layers(variables, stack_indices(num_layers(variables), factor))


def interleave(variables: dict, factor: int) -> dict:
    """Each layer repeated `factor` times in place (f0 f0 f1 f1 ...): App. H.2's worse variant."""
    return take_layers(variables, interleave_indices(num_layers(variables), factor))


def zero_init_depth(variables: dict, factor: int) -> dict:
    """G_zero depth: G_stack order, residual-output weights zeroed in copies 2..g (function
    preserving: each such block computes x + 0 + 0). Only "params" are zeroed; "constants"
    (frozen routers, temperatures) are copied as they are."""
    n = num_layers(variables)
    grown = stack(variables, factor)
    is_new = (np.arange(n * factor) >= n).astype(np.float32)

    def zero(collection, subtree):
        if collection not in (None, "params"):
            return subtree

        def leaf(path, x):
            if not is_residual_output(path):
                return x
            mask = jnp.asarray(is_new, x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
            return x * (1 - mask)

        return jax.tree_util.tree_map_with_path(leaf, subtree)

    return _replace_layers(grown, zero)


def _is_matrix(path, x) -> bool:
    """A per-layer weight matrix (not a norm scale / bias vector, not a scalar)."""
    names = [str(getattr(k, "key", getattr(k, "name", ""))) for k in path]
    if names and names[-1] in ("scale", "bias") or any(n.endswith("norm") for n in names):
        return False
    return x.ndim >= 3  # [layers, ..., in, out]


def blend_noise(variables: dict, alpha: float, rng, *, embed_dim: int) -> dict:
    """W <- (1 - alpha) W + alpha eps on every per-layer weight matrix (App. I.2; 0.2 helps,
    more hurts). eps ~ N(0, 1/(d l^2)) for residual outputs and N(0, 2/(5d)) for the others,
    with d = embed_dim and l = the number of (grown) layers. Norm scales, biases and
    "constants" are left alone; embedding, final norm and head are outside the layer axis."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"noise alpha={alpha} must be in [0, 1]")
    if alpha == 0.0:
        return variables
    n = num_layers(variables)

    def blend(collection, subtree):
        if collection not in (None, "params"):
            return subtree
        leaves, treedef = jax.tree_util.tree_flatten_with_path(subtree)
        keys = jax.random.split(rng, max(len(leaves), 1))
        out = []
        for key, (path, x) in zip(keys, leaves, strict=False):
            if not _is_matrix(path, x):
                out.append(x)
                continue
            var = 1.0 / (embed_dim * n**2) if is_residual_output(path) else 2.0 / (5 * embed_dim)
            eps = jax.random.normal(key, x.shape, jnp.float32) * var**0.5
            out.append(((1 - alpha) * x.astype(jnp.float32) + alpha * eps).astype(x.dtype))
        return jax.tree_util.tree_unflatten(treedef, out)

    return _replace_layers(variables, blend)


# init_from transforms (contract: growth/registry.py) ------------------------------------------
_WIDTH_FIELDS = ("vocab_size", "embed_dim", "num_heads", "kv_heads", "qk_head_dim", "hidden_dim",
                 "num_modalities", "token_mixer", "feed_forward", "projections", "tie_embeddings")


def check_same_width(source_cfg, target_cfg, transform: str) -> None:
    """GrowthError unless the two configs differ at most in depth."""

    for field in _WIDTH_FIELDS:
        a, b = getattr(source_cfg, field), getattr(target_cfg, field)
        if a != b:
            raise GrowthError(
                f"transform {transform!r} grows depth only: the checkpoint has model.{field}={a!r} "
                f"but the target config has {b!r} (width/kind must match)"
            )


def depth_factor(source_cfg, target_cfg, transform: str) -> int:
    """g = target layers / source layers, with a GrowthError saying why a pair cannot grow."""

    check_same_width(source_cfg, target_cfg, transform)
    src, tgt = source_cfg.num_layers, target_cfg.num_layers
    if tgt < src or tgt % src:
        raise GrowthError(
            f"transform {transform!r}: target model.num_layers={tgt} is not a multiple >= 1 of the "
            f"checkpoint's {src} layers"
        )
    return tgt // src


def _finish(name, grown, target_init, target_cfg, rng, noise):

    grown = {k: v for k, v in grown.items() if k in target_init}
    grown = blend_noise(grown, float(noise), rng, embed_dim=target_cfg.embed_dim)
    grown = jax.tree.map(lambda g, t: jnp.asarray(g, t.dtype), grown, target_init)
    return check_same_structure(grown, target_init, name)


def _unknown(name, options, allowed):
    extra = set(options) - set(allowed)
    if extra:
        raise ValueError(f"transform {name!r}: unknown options {sorted(extra)}; valid {allowed}")


def g_stack(source_variables, *, source_cfg, target_cfg, target_init, rng, **options):
    """G_stack; options: noise (App. I.2 alpha, default 0), start/stop (partial stacking:
    repeat only base layers [start, stop) in place)."""
    _unknown("g_stack", options, ("noise", "start", "stop"))
    if "start" in options or "stop" in options:
        check_same_width(source_cfg, target_cfg, "g_stack")
        start = int(options.get("start", 0))
        stop = int(options.get("stop", source_cfg.num_layers))
        try:
            indices = partial_stack_indices(source_cfg.num_layers, start, stop,
                                            target_cfg.num_layers)
        except ValueError as e:
            raise GrowthError(f"transform 'g_stack': {e}") from e
        grown = take_layers(source_variables, indices)
    else:
        grown = stack(source_variables, depth_factor(source_cfg, target_cfg, "g_stack"))
    return _finish("g_stack", grown, target_init, target_cfg, rng, options.get("noise", 0.0))


def interleave_transform(source_variables, *, source_cfg, target_cfg, target_init, rng,
                         **options):
    """Each base layer repeated g times in place; options: noise."""
    _unknown("interleave", options, ("noise",))
    grown = interleave(source_variables, depth_factor(source_cfg, target_cfg, "interleave"))
    return _finish("interleave", grown, target_init, target_cfg, rng,
                   options.get("noise", 0.0))


def g_zero(source_variables, *, source_cfg, target_cfg, target_init, rng, **options):
    """G_zero depth: function preserving at growth time; no options."""
    _unknown("g_zero", options, ())
    grown = zero_init_depth(source_variables, depth_factor(source_cfg, target_cfg, "g_zero"))
    return _finish("g_zero", grown, target_init, target_cfg, rng, 0.0)

