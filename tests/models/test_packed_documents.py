"""Packed documents do not see each other, for every token mixer and both kernels.

A window packs three documents (boundaries at 10 and 23: inside GLA chunks of 16 and flash
blocks) with segment ids and per-document positions, as `data/text.py` yields them. For every
mixer in `nn.registry.TOKEN_MIXERS`, with the XLA reference and (where the mixer has one) the
Pallas kernel in interpret mode: perturbing the other documents leaves a document's logits
unchanged, perturbing the document itself changes them (so the test can fail), and the document
packed at offset 23 gives the logits it has alone at the start of a window (positions restart, so
RoPE sees the same positions; the state or mask restarts, so nothing else is seen).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import model_config_from
from jaxformers.models.decoder import Decoder
from jaxformers.nn.registry import TOKEN_MIXERS

T, VOCAB = 32, 32
STARTS = (0, 10, 23)  # document starts in the packed window
KERNELS = {"attention": "attention", "gla": "gla"}  # mixers with a Pallas kernel: option name
CASES = [(m, "xla") for m in TOKEN_MIXERS] + [(m, "pallas") for m in TOKEN_MIXERS if m in KERNELS]


def _segments(starts, t=T):
    """(segment_ids, positions) [t] of a window whose documents begin at `starts`."""
    begins = np.zeros(t, bool)
    begins[list(starts)] = True
    seg = np.cumsum(begins).astype(np.int32)
    first = np.maximum.accumulate(np.where(begins, np.arange(t), 0))
    return seg, (np.arange(t) - first).astype(np.int32)


def _rows():
    """Rows: 0 packed; 1 docs 0 and 2 perturbed; 2 doc 1 perturbed (one token, its 4th);
    3 doc 2 alone at the window start, then filler (same segments as a 2-document window)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, VOCAB, T)
    other = base.copy()
    other[: STARTS[1]] = rng.integers(0, VOCAB, STARTS[1])
    other[STARTS[2] :] = (base[STARTS[2] :] + 1 + rng.integers(0, VOCAB - 1, T - STARTS[2])) % VOCAB
    within = base.copy()
    within[STARTS[1] + 3] = (base[STARTS[1] + 3] + 1) % VOCAB
    alone = np.concatenate([base[STARTS[2] :], rng.integers(0, VOCAB, STARTS[2])])
    seg, pos = zip(*[_segments(STARTS)] * 3 + [_segments((0, T - STARTS[2]))])
    return (
        jnp.asarray(np.stack([base, other, within, alone]), jnp.int32),
        jnp.asarray(np.stack(seg)),
        jnp.asarray(np.stack(pos)),
    )


def _config(mixer, impl):
    options = {KERNELS[mixer]: dict(impl=impl)} if mixer in KERNELS else {}
    return model_config_from(
        dict(
            vocab_size=VOCAB,
            embed_dim=32,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            max_len=T,
            token_mixer=mixer,
            gla=dict(chunk_size=16),
            linear_attention=dict(chunk_size=16),
        )
        | options
    )


@functools.cache
def _variables(mixer):
    """Parameters of the mixer's decoder (the same for both impls), by one jitted init: an eager
    init runs the Pallas interpreter op by op (~10 s CPU)."""
    return jax.jit(Decoder(_config(mixer, "xla")).init)(jax.random.PRNGKey(1), _rows()[0][:1])


@pytest.mark.parametrize("mixer,impl", CASES, ids=[f"{m}-{i}" for m, i in CASES])
def test_a_documents_logits_depend_on_no_other_document_in_its_window(mixer, impl):
    model = Decoder(_config(mixer, impl))
    variables = _variables(mixer)
    tokens, segment_ids, positions = _rows()
    logits = np.asarray(jax.jit(model.apply)(variables, tokens, segment_ids=segment_ids, positions=positions))
    docs = [slice(a, b) for a, b in zip(STARTS, STARTS[1:] + (T,))]
    # float32, two layers, logits O(1): masked terms are exact zeros, so only summation order
    # (a different chunk offset for the document alone) separates equal results.
    tol = dict(atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(logits[1, docs[1]], logits[0, docs[1]], **tol)  # others perturbed
    np.testing.assert_allclose(logits[2, docs[0]], logits[0, docs[0]], **tol)
    np.testing.assert_allclose(logits[2, docs[2]], logits[0, docs[2]], **tol)
    np.testing.assert_allclose(logits[3, : T - STARTS[2]], logits[0, docs[2]], **tol)  # alone
    changed = np.abs(logits[2, docs[1]] - logits[0, docs[1]]).max(axis=-1)
    # causal within the document, and the test can fail: the perturbed token's logits move by
    # O(0.1), every later token of its document by far more than float32 round-off (~1e-7)
    assert changed[:3].max() == 0.0 and changed[3] > 1e-2 and changed[4:].min() > 1e-5
