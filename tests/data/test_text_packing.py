"""Packed text windows carry per-document segment ids and positions (data.segment_ids), and a run
begun before the option existed resumes with the leaky packing it started with."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from jaxformers.config_fields import ConfigError
from jaxformers.data.text import EOS_ID, build_text, document_segments
from jaxformers.testing import tiny_train_config
from jaxformers.train import checkpoint as ckpt
from jaxformers.train import train_and_evaluate

SEQ_LEN = 16
ONE_DEVICE = jax.devices()[:1]  # compiles faster than the 8 simulated devices


def test_the_eos_separator_opens_the_next_document():
    inputs = np.array([5, 6, EOS_ID, 7, 8, 9, EOS_ID, EOS_ID, 1])
    segment_ids, positions = document_segments(inputs)
    np.testing.assert_array_equal(segment_ids, [1, 1, 2, 2, 2, 2, 3, 4, 4])
    np.testing.assert_array_equal(positions, [0, 1, 0, 1, 2, 3, 0, 0, 1])
    # a window that opens on a separator does not start an empty document
    np.testing.assert_array_equal(document_segments(np.array([EOS_ID, 3, EOS_ID]))[0], [1, 1, 2])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(60):  # documents of 3..20 bytes: several per 16-token window
        (root / f"doc{i}.txt").write_bytes(
            rng.integers(97, 123, rng.integers(3, 21)).astype(np.uint8).tobytes()
        )
    return str(root / "*.txt")


def _batch(corpus, **data):
    config = dict(name="text", seq_len=SEQ_LEN, paths=corpus, validation_fraction=0.0) | data
    return next(
        build_text(_Dict(config), split="train", seed=0, batch_size=4, process_index=0, process_count=1)
    )


class _Dict(dict):
    __getattr__ = dict.__getitem__


def test_text_batches_carry_segments_and_positions_of_every_document(corpus):
    batch = _batch(corpus)
    assert {k: v.shape for k, v in batch.items()} == {
        k: (4, SEQ_LEN) for k in ("inputs", "targets", "segment_ids", "positions")
    }
    assert batch["segment_ids"].dtype == batch["positions"].dtype == np.int32
    for inputs, seg, pos in zip(batch["inputs"], batch["segment_ids"], batch["positions"]):
        starts = np.flatnonzero(np.diff(seg, prepend=0))
        assert seg[0] == 1 and np.all(np.diff(seg) >= 0) and np.all(inputs[starts[1:]] == EOS_ID)
        assert np.all(pos[starts] == 0) and np.all(np.diff(pos)[np.diff(seg) == 0] == 1)
    assert batch["segment_ids"].max() > 1  # the fixture packs several documents per window


def test_segment_ids_false_is_the_leaky_packing_and_a_bad_value_names_the_field(corpus):
    leaky, packed = _batch(corpus, segment_ids=False), _batch(corpus)
    assert set(leaky) == {"inputs", "targets"}
    np.testing.assert_array_equal(leaky["inputs"], packed["inputs"])  # same windows, same order
    with pytest.raises(ConfigError, match=r"config.data.segment_ids='yes'; expected True or False"):
        _batch(corpus, segment_ids="yes")


def _text_run(corpus, **overrides):
    return tiny_train_config(
        **{
            "model.vocab_size": 264,
            "data": dict(
                name="text", seq_len=SEQ_LEN, paths=corpus, validation_fraction=0.3, segment_ids=True
            ),
            "batch_size": 4,
            "num_steps": 4,
            "checkpoint_every": 2,
            "eval_every": 4,
            "eval_batches": 1,
            **overrides,
        }
    )


def test_a_checkpoint_from_before_segment_ids_resumes_with_its_leaky_packing(corpus, tmp_path):
    workdir = str(tmp_path / "old_run")
    old = _text_run(corpus)
    old.data.segment_ids = False
    train_and_evaluate(old, workdir, devices=ONE_DEVICE, stop_at_step=2)
    # a checkpoint that has the field keeps the config's value (a change is refused on resume)
    assert ckpt.with_legacy_defaults(_text_run(corpus), workdir).data.segment_ids is True
    # what an older library stored: a data config without the field
    for path in glob.glob(os.path.join(ckpt.checkpoint_dir(workdir), "*", "config", "metadata")):
        with open(path) as f:
            stored = json.load(f)
        if "data" in stored:
            del stored["data"]["segment_ids"]
            with open(path, "w") as f:
                json.dump(stored, f)
    new = _text_run(corpus)  # today's default: segment_ids=True
    assert ckpt.with_legacy_defaults(new, workdir).data.segment_ids is False
    metrics = train_and_evaluate(new, workdir, devices=ONE_DEVICE)  # resumes at step 2 and finishes
    assert np.isfinite(metrics["loss"]) and ckpt.latest_step(workdir) == 4
