"""Garg et al.'s dimension / prompt-length curriculum: a function of the step, shape-static, masked."""

import ml_collections
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.data import icl_functions
from jaxformers.ops.icl_tasks import curriculum_value

CURRICULUM = dict(dims_start=2, dims_increment=1, points_start=4, points_increment=3, every=10)


def _data(**kw):
    return ml_collections.ConfigDict(
        dict(name="icl_functions", task="linear", dim=5, num_points=12, curriculum=CURRICULUM) | kw
    )


def _iterator(cfg, split="train"):
    return icl_functions.build(cfg, split=split, seed=3, batch_size=16, process_index=0, process_count=1)


def test_curriculum_value_grows_by_increment_every_k_steps_and_stops_at_end():
    got = [int(curriculum_value(t, 2, 5, 1, 10)) for t in (0, 9, 10, 29, 30, 1000)]
    assert got == [2, 2, 3, 4, 5, 5]
    assert [icl_functions.curriculum_at(_data(), t) for t in (0, 10, 25, 30)] == [
        (2, 4),
        (3, 7),
        (4, 10),
        (5, 12),
    ]


@pytest.fixture(scope="module")
def batches():
    """Train batches at steps 0, 10 and 30 (curriculum (2, 4), (3, 7), (5, 12))."""
    it = _iterator(_data(task="sparse_linear", sparsity=2))
    out = {}
    for t in (0, 10, 30):
        it.set_state({"step": t})
        out[t] = next(it)
    return out


@pytest.mark.parametrize("step, dims, points", [(0, 2, 4), (10, 3, 7), (30, 5, 12)])
def test_inactive_coordinates_and_prompt_positions_are_zero_and_masked(batches, step, dims, points):
    b = batches[step]
    assert b["inputs"].shape == (16, 12, 5) and b["weights"].shape == (16, 12)  # shapes never change
    assert np.all(b["inputs"][:, :, dims:] == 0) and np.all(b["inputs"][:, points:] == 0)
    assert np.all(b["inputs"][:, :points, :dims] != 0)
    assert np.all(b["targets"][:, points:] == 0)
    np.testing.assert_array_equal(b["weights"], np.broadcast_to(np.arange(12) < points, (16, 12)))
    # the sparse support (k=2) lies among the active coordinates, so y is a function of them
    assert np.all(np.abs(b["targets"][:, :points]).sum(-1) > 0)


def test_resume_at_any_step_gives_the_same_batches():
    it = _iterator(_data())
    straight = [next(it) for _ in range(12)]
    resumed = _iterator(_data())
    resumed.set_state({"step": 9})  # crosses the boundary at 10
    for t in range(9, 12):
        b = next(resumed)
        for k in ("inputs", "targets", "weights"):
            np.testing.assert_array_equal(b[k], straight[t][k])


def test_validation_split_ignores_the_curriculum():
    b = next(_iterator(_data(), split="validation"))
    assert np.all(b["weights"] == 1) and np.all(b["inputs"] != 0)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(task="conjunction", dim=5), r"curriculum.dims_start=2 < dim=5: the dimension curriculum"),
        (dict(task="representation", depth=0), r"config.data.depth=0 must be >= 1"),
        (dict(curriculum=CURRICULUM | dict(points_start=20)), r"curriculum.points_start=20 must be in"),
        (dict(curriculum=CURRICULUM | dict(dim_start=2)), r"curriculum has unknown fields \['dim_start'\]"),
    ],
)
def test_bad_curriculum_is_a_one_line_config_error(kw, message):
    with pytest.raises(ConfigError, match=message):
        _iterator(_data(**kw))
