"""`config.init_from` with each depth transform: step 0, fresh AdamW, restarted warm-up."""

import chex
import jax
import numpy as np
import pytest

from jaxformers.config import model_config_from
from jaxformers.growth.registry import get_transform
from jaxformers.train import base_config, train_and_evaluate
from jaxformers.train import checkpoint as ckpt
from jaxformers.train.experiment import Experiment
from jaxformers.train.startup import initial_state


def tiny_config(layers: int):
    c = base_config()
    c.model.update(dict(vocab_size=64, embed_dim=32, num_layers=layers, num_heads=2, max_len=16,
                        mlp_dim=48, layer_loop="scan"))  # scanned: the 8-layer init compiles one layer
    c.data = dict(name="synthetic", seq_len=16, vocab=32)
    c.batch_size = 8
    c.num_steps = 2
    c.warmup_steps = 1
    c.eval_every = 0
    c.checkpoint_every = 2
    c.progress_bar = False
    return c


@pytest.fixture(scope="module")
def base_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("base"))
    # One device: an 8-way checkpoint save compiled one slice program per shard and leaf; the
    # grown runs still restore it onto the 8-device mesh.
    train_and_evaluate(tiny_config(2), workdir, devices=jax.devices()[:1])
    return workdir


@pytest.mark.parametrize("transform", ["g_stack", "g_zero", "interleave"])
def test_init_from_starts_at_step_zero_with_fresh_optimizer(base_workdir, tmp_path, transform):
    config = tiny_config(8)
    config.init_from.workdir = base_workdir
    config.init_from.transform = transform
    exp = Experiment(config, str(tmp_path))
    state, data_state = initial_state(exp, None, str(tmp_path))

    assert int(state.step) == 0
    assert data_state is None  # the grown run does not resume the base's data iterator
    assert float(exp.schedule(state.step)) == 0.0  # warm-up restarts from 0
    adam = state.opt_state[1][0]  # chain(clip, adamw): adamw's ScaleByAdamState
    assert int(adam.count) == 0
    for moment in (adam.mu, adam.nu):
        assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(moment))

    source_config, source_vars, source_step = ckpt.load_variables(base_workdir)
    assert source_step == 2
    grown = get_transform(transform)(
        jax.device_get(source_vars), source_cfg=model_config_from(source_config.model),
        target_cfg=exp.model_cfg, target_init=jax.device_get(state.variables()),
        rng=jax.random.PRNGKey(config.seed + 1),
    )
    chex.assert_trees_all_equal(jax.device_get(state.params), grown["params"])
