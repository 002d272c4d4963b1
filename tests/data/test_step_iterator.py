"""The in-context datasets share one step-counter iterator (data/step_iterator.py): batch t depends on
(seed, split, process, t) alone, so a fresh iterator set to a saved step continues bit for bit."""

import ml_collections
import numpy as np
import pytest

from jaxformers.data.registry import get_dataset_builder

DATA = {
    "icl_regression": dict(dim=3, num_context=5),
    "icl_functions": dict(task="linear", dim=4, num_points=6),
    "icl_bursty": dict(classes=64, holdout_classes=8, labels=8, dim=8, context=4, burstiness=2),
}


def _iterator(name, split="train", process_index=0):
    return get_dataset_builder(name)(
        ml_collections.ConfigDict(DATA[name]),
        split=split,
        seed=5,
        batch_size=3,
        process_index=process_index,
        process_count=2,
    )


@pytest.mark.parametrize("name", sorted(DATA))
def test_a_fresh_iterator_set_to_a_saved_step_continues_exactly(name):
    it = _iterator(name)
    for _ in range(3):
        next(it)
    state = it.get_state()
    assert state == {"step": 3}
    expected = [next(it) for _ in range(2)]
    resumed = _iterator(name)
    resumed.set_state(state)
    for batch in expected:
        got = next(resumed)
        assert got.keys() == batch.keys()
        for key in batch:
            np.testing.assert_array_equal(got[key], batch[key])


@pytest.mark.parametrize("name", sorted(DATA))
def test_splits_and_processes_draw_different_streams(name):
    first = next(_iterator(name))["inputs"]
    assert not np.array_equal(first, next(_iterator(name, split="validation"))["inputs"])
    assert not np.array_equal(first, next(_iterator(name, process_index=1))["inputs"])


@pytest.mark.parametrize("name", sorted(DATA))
def test_an_unknown_split_is_named(name):
    with pytest.raises(ValueError, match="split='test'; expected one of"):
        _iterator(name, split="test")
