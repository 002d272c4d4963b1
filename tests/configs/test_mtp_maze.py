"""configs/mtp_maze.py: with n = 1 the MTP maze model is the next-token baseline of
configs/maze_ntp.py (same parameter count: the trunk is one block shorter and head 1 is that block),
and its own arguments are kept apart from the maze presets."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import model_config_from
from jaxformers.configs_loader import load_config
from jaxformers.models.registry import build_model

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def get_config(name, arg):
    return load_config(os.path.join(CONFIGS, f"{name}.py"), arg)


def parameter_count(config):
    model = build_model(config.model_family, model_config_from(config.model))
    tokens = jnp.zeros((1, config.model.max_len), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_mtp_maze_with_one_head_has_the_next_token_baselines_parameters():
    ntp = get_config("maze_ntp", "grid=5,size=tiny")
    mtp = get_config("mtp_maze", "grid=5,size=tiny,n=1")
    assert (mtp.model_family, mtp.objective, mtp.model.num_layers) == ("mtp", "mtp", ntp.model.num_layers - 1)
    assert parameter_count(mtp) == parameter_count(ntp)


def test_mtp_maze_arguments():
    c = get_config("mtp_maze", "grid=3,steps=40,n=3,kind=sequential")
    assert (c.data.grid_n, c.num_steps, c.model.mtp.num_future_tokens, c.model.mtp.kind) == (
        3, 40, 3, "sequential")  # fmt: skip
    with pytest.raises(ValueError, match="unknown config argument 'heads'"):
        get_config("mtp_maze", "heads=2")
