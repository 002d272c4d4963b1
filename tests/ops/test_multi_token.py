"""Multi-token targets and the blockwise-parallel acceptance rule against loop definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops.multi_token import accepted_length, future_targets


@pytest.mark.parametrize("offset", [1, 2, 4])
def test_future_targets_are_the_tokens_offset_steps_ahead(offset):
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 50, (3, 9))  # x_0 .. x_8
    inputs, targets = seq[:, :-1], seq[:, 1:]
    seg = np.array([[0] * 5 + [1] * 3] * 3)
    tgt, w = future_targets(jnp.asarray(targets), None, jnp.asarray(seg), offset)
    t = inputs.shape[1]
    assert tgt.shape == (3, t - offset + 1)
    for b in range(3):
        for pos in range(t - offset + 1):
            assert tgt[b, pos] == seq[b, pos + offset]  # x_{t+i}
            same = seg[b, pos] == seg[b, pos + offset - 1]
            assert w[b, pos] == float(same)


def test_future_targets_rejects_offsets_outside_the_sequence():
    with pytest.raises(ValueError, match="offset=5"):
        future_targets(jnp.zeros((1, 4), jnp.int32), None, None, 5)


def test_accepted_length_counts_the_leading_matches():
    drafts = jnp.array([[1, 2, 3], [1, 9, 3], [7, 2, 3], [1, 2, 4]])
    verified = jnp.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]])
    np.testing.assert_array_equal(accepted_length(drafts, verified), [3, 1, 0, 2])
