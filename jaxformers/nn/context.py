"""Per-call information every layer may read: positions, segments, modalities, training step."""

import flax.struct
import jax


@flax.struct.dataclass
class Context:
    """Passed unchanged (broadcast) through the scanned layer stack.

    positions: [B, T] int32 token positions (RoPE, causal masks against a KV cache).
    segment_ids: [B, T] or None; tokens attend only within their segment (packed documents).
    modality_ids: [B, T] int32 or None (None = modality 0 everywhere).
    step: scalar training step or None, for layers with schedules (SMoE-Dropout's k).
    active_experts: scalar override of k at evaluation ("self-slimmable"), or None.
    decode: static; True when running with a KV cache / recurrent state.
    deterministic: static; False enables dropout-like randomness (rng stream "dropout").
    """

    positions: jax.Array
    segment_ids: jax.Array | None = None
    modality_ids: jax.Array | None = None
    step: jax.Array | None = None
    active_experts: jax.Array | None = None
    decode: bool = flax.struct.field(pytree_node=False, default=False)
    deterministic: bool = flax.struct.field(pytree_node=False, default=True)


def segments_for(ctx: Context, token_mixer: str):
    """ctx.segment_ids for training / prefill; a one-line error while decoding (a KV cache or a
    recurrent state holds one document per row, so packed documents cannot be decoded)."""
    if ctx.segment_ids is not None and ctx.decode:
        raise ValueError(f"model.token_mixer={token_mixer!r}: decoding takes no segment_ids (one "
                         "document per sequence); got segment_ids with decode=True")
    return ctx.segment_ids
