"""The "two_modality" dataset: disjoint vocabularies, aligned modality ids, exact resume, mazes."""

import ml_collections
import numpy as np
import pytest

from jaxformers.data import mazes
from jaxformers.data.registry import get_dataset_builder
from jaxformers.data.two_modality import TEXT_VOCAB, VOCAB, TwoProcessSource, corpus_text


def _iterator(split="train", **data):
    config = ml_collections.ConfigDict(dict(name="two_modality", seq_len=64) | data)
    return get_dataset_builder("two_modality")(
        config, split=split, seed=0, batch_size=4, process_index=0, process_count=1
    )


def test_batches_carry_tokens_weights_and_aligned_modality_ids():
    batch = next(_iterator())
    assert set(batch) == {"inputs", "targets", "weights", "modality_ids", "target_modality_ids"}
    for value in batch.values():
        assert value.shape == (4, 64)
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    np.testing.assert_array_equal(batch["modality_ids"][:, 1:], batch["target_modality_ids"][:, :-1])
    # Disjoint vocabularies: the modality id is a function of the token.
    np.testing.assert_array_equal(batch["modality_ids"], batch["inputs"] >= TEXT_VOCAB)
    assert batch["inputs"].max() < VOCAB
    share = batch["modality_ids"].mean()
    assert 0.25 < share < 0.75  # both modalities well represented


def test_iterator_state_resumes_exactly_and_splits_differ():
    it = _iterator()
    next(it)
    state = it.get_state()
    expected = next(it)
    it.set_state(state)
    np.testing.assert_array_equal(next(it)["inputs"], expected["inputs"])
    validation = next(_iterator("validation", num_validation=8))
    assert not np.array_equal(validation["inputs"], next(_iterator())["inputs"])


def test_corpus_text_source_reads_consecutive_real_text_between_images():
    batch = next(_iterator(text_source="corpus"))
    text = batch["inputs"][batch["modality_ids"] == 0]
    assert text.max() < TEXT_VOCAB
    printable = np.isin(text, [9, 10, 13]) | ((text >= 32) & (text < 127))
    assert printable.mean() > 0.95  # ASCII source code, not a synthetic chain
    row, mod = batch["inputs"][0], batch["modality_ids"][0]
    first_span_end = int(np.argmax(mod == 1))
    next_span = row[first_span_end:][mod[first_span_end:] == 0]
    # The text after an image continues the same document: the bytes on both sides of the image
    # are consecutive in the corpus.
    joined = bytes(row[:first_span_end].tolist() + next_span[:8].tolist())
    assert joined in corpus_text("train").astype(np.uint8).tobytes()
    with pytest.raises(ValueError, match="data.text_source"):
        _iterator(text_source="wiki")


def test_image_rows_depend_on_the_caption_text_token():
    source = TwoProcessSource(seq_len=64, num_records=1, record_seed=0)
    a = source._image(np.random.default_rng(0), last_text=3)
    b = source._image(np.random.default_rng(0), last_text=4)
    assert not np.array_equal(a[:8], b[:8])  # same noise, different caption -> different image
    assert a.min() >= TEXT_VOCAB


def test_maze_variant_splits_description_and_path():
    it = _iterator(variant="mazes", grid_n=3, num_train=64, num_validation=16, seq_len=None)
    batch = next(it)
    path = mazes.path_mask(batch["inputs"], 3)
    np.testing.assert_array_equal(batch["modality_ids"], path)
    np.testing.assert_array_equal(batch["weights"], batch["targets"] != mazes.PAD)


def test_unknown_keys_and_variants_are_errors():
    with pytest.raises(ValueError, match="data.variant"):
        _iterator(variant="audio")
    with pytest.raises(ValueError, match="unknown config key"):
        _iterator(colour=3)
