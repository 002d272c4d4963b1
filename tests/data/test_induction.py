"""Induction stories (data/induction.py): pure in (split, index), resumable, masks that mark exactly
the second token of a name, and an evaluator that scores a perfect copier 1 on repeated names and
0 on first mentions."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxformers.config_fields import ConfigError
from jaxformers.data import induction

DATA = {"name": "induction", "seq_len": 48, "eval_stories": 64}


class LastOccurrenceCopier(nn.Module):
    """A hand-written induction head: at position t predict the token that followed the latest
    earlier occurrence of token t (the stop token 0 when there is none)."""

    vocab: int

    def __call__(self, tokens):
        t = tokens.shape[1]
        same = tokens[:, :, None] == tokens[:, None, :]  # [B, t, q]
        earlier = jnp.arange(t)[None, :] < jnp.arange(t)[:, None]
        match = same & earlier
        latest = jnp.max(jnp.where(match, jnp.arange(t), -1), axis=-1)  # [B, t]
        following = jnp.take_along_axis(tokens, jnp.clip(latest + 1, 0, t - 1), axis=1)
        copied = jnp.where(latest >= 0, following, induction.STOP)
        return nn.one_hot(copied, self.vocab)


def test_story_is_a_pure_function_of_split_and_index():
    opts = induction.options(DATA)
    train = induction.StorySource(opts, split="train", length=10)
    again = induction.StorySource(opts, split="train", length=10)
    valid = induction.StorySource(opts, split="validation", length=10)
    for a, b in zip(train.story(3), again.story(3), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(train.story(3)[0], valid.story(3)[0])
    item = train[3]
    assert item["inputs"].shape == item["targets"].shape == (48,)
    assert item["inputs"].dtype == np.int32
    assert 0 <= item["inputs"].min() and item["inputs"].max() < induction.vocab_size(DATA)


def test_masks_mark_the_second_token_of_each_name_mention():
    tokens, repeat, first = induction.eval_stories(DATA, 16)
    first_name = 1 + induction.DEFAULTS["filler_tokens"]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    assert repeat.sum() > 16 and first.sum() >= 16 and not (repeat & first).any()
    for b, p in zip(*np.nonzero(repeat | first), strict=True):
        assert inputs[b, p] >= first_name and targets[b, p] >= first_name  # both name tokens
        earlier = np.nonzero(inputs[b, :p] == inputs[b, p])[0]
        assert bool(len(earlier)) == bool(repeat[b, p])  # repeated iff mentioned before
        if repeat[b, p]:
            assert targets[b, earlier[-1]] == targets[b, p]  # the same name, copyable


def test_evaluator_scores_a_perfect_copier_one_on_repeats_and_zero_on_first_mentions():
    config = ml_collections.ConfigDict({"data": DATA})
    model = LastOccurrenceCopier(induction.vocab_size(DATA))
    metrics = induction.induction_accuracy(model, {}, config)
    assert metrics["induction_accuracy"] == 1.0
    assert metrics["first_mention_accuracy"] == 0.0
    assert metrics["induction_positions"] > 64


def test_training_iterator_resumes_exactly():
    def build():
        return induction.build(DATA, split="train", seed=3, batch_size=4, process_index=0, process_count=1)

    iterator = build()
    next(iterator)
    state = iterator.get_state()
    expected = next(iterator)
    resumed = build()
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["inputs"], expected["inputs"])
    assert not np.array_equal(next(build())["inputs"], expected["inputs"])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("names_per_story", 17, "config.data.names_per_story=17"),
        ("seq_len", 0, "config.data.seq_len=0"),
        ("num_names", 3, "unknown config key(s) data.['num_names']"),
    ],
)
def test_bad_options_fail_in_one_line_naming_the_field(field, value, message):
    with pytest.raises(ConfigError) as err:
        induction.options({**DATA, field: value})
    assert message in str(err.value) and "\n" not in str(err.value)
