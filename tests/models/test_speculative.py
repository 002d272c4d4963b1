"""Self-speculative decoding with the MTP heads emits the greedy tokens of head 1."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.models.mtp import MTPDecoder
from jaxformers.models.sampling import generate
from jaxformers.models.speculative import speculative_generate
from jaxformers.testing import tiny_model_config


@functools.cache
def _model(n):
    """An initialised n-head model (vocab 4: random drafts are often right); shared by the tests."""
    cfg = tiny_model_config(mtp={"num_future_tokens": n}, max_len=32, vocab_size=4)
    model = MTPDecoder(cfg)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 5), jnp.int32))


@pytest.mark.parametrize("n", [1, 3])
def test_speculative_output_equals_greedy_token_for_token(n):
    model, variables = _model(n)
    prompt = jax.random.randint(jax.random.PRNGKey(3), (2, 5), 0, model.cfg.vocab_size)
    greedy = generate(model, variables, prompt, jax.random.PRNGKey(0), max_new_tokens=20, temperature=0.0)
    out, stats = speculative_generate(model, variables, prompt, max_new_tokens=20)
    np.testing.assert_array_equal(out, greedy)
    passes, accepted = int(stats["forward_passes"]), int(stats["accepted_drafts"])
    assert passes + accepted >= 20 - 1 and passes <= 20
    if n == 1:
        assert accepted == 0
    else:  # some drafts are kept, so the cache roll-back path runs
        assert accepted > 0


def test_speculative_decoding_refuses_a_recurrent_mixer():
    cfg = tiny_model_config(mtp={"num_future_tokens": 2}, token_mixer="gla", gla={"chunk_size": 4})
    model = MTPDecoder(cfg)
    prompt = jnp.zeros((1, 3), jnp.int32)
    with pytest.raises(ValueError, match="token_mixer='attention'"):
        speculative_generate(model, jax.eval_shape(model.init, jax.random.PRNGKey(0), prompt), prompt,
                             max_new_tokens=4)


def test_passes_and_accepted_drafts_match_a_reference_count_on_the_greedy_text():
    """The acceptance count, recomputed without a cache: from the last accepted position p, the
    drafts are heads 2..n at p (run on the greedy text), kept while each equals the greedy token."""
    n, new = 3, 20
    model, variables = _model(n)
    prompt = jax.random.randint(jax.random.PRNGKey(5), (1, 5), 0, model.cfg.vocab_size)
    greedy = generate(
        model, variables, prompt, jax.random.PRNGKey(0), max_new_tokens=new + n, temperature=0.0
    )  # fmt: skip  (n more: the last pass verifies past the end)
    out, stats = speculative_generate(model, variables, prompt, max_new_tokens=new)
    np.testing.assert_array_equal(out, greedy[:, : 5 + new])
    all_heads = jax.jit(functools.partial(model.apply, heads="all"))(variables, greedy)
    heads = np.asarray(jnp.argmax(all_heads, -1))[:, 0]  # [n, T]
    seq = np.asarray(greedy)[0]
    length, passes, accepted = 5, 0, 0
    while length < 5 + new:
        drafts = heads[:, length - 1]  # drafts[i] guesses seq[length + i]; drafts[0] is exact
        k = 0
        while k < n - 1 and drafts[k + 1] == seq[length + k + 1]:
            k += 1
        length, passes, accepted = length + k + 1, passes + 1, accepted + k
    assert accepted > 0 and passes < new
    assert (int(stats["forward_passes"]), int(stats["accepted_drafts"])) == (passes, accepted)
