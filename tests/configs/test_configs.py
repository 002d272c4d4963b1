"""Every experiment config resolves, validates and builds its model abstractly (jax.eval_shape)."""

import glob
import os

import jax
import jax.numpy as jnp
import pytest

from jaxformers.config import model_config_from
from jaxformers.configs_loader import load_file
from jaxformers.data.registry import get_dataset_builder
from jaxformers.models.registry import build_model
from jaxformers.objectives.registry import get_objective
from jaxformers.train.config_base import validate_config
from jaxformers.train.experiment import init_variables

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def test_there_are_configs():
    assert any(p.endswith("default.py") for p in CONFIG_FILES)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_resolves_and_builds_its_model(path):
    module = load_file(path)
    assert module.__doc__ and "launch/" in module.__doc__, "docstring must give the run command"
    config = module.get_config()
    validate_config(config)
    get_objective(config.objective)
    model = build_model(config.model_family, model_config_from(config.model))
    batch = next(get_dataset_builder(config.data.name)(
        config.data, split="train", seed=0, batch_size=1, process_index=0, process_count=1,
    ))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    shapes = jax.eval_shape(
        lambda: init_variables(model, batch, {"params": jax.random.PRNGKey(0),
                                              "routing": jax.random.PRNGKey(1),
                                              "dropout": jax.random.PRNGKey(2)})
    )
    assert jax.tree.leaves(shapes)


def test_any_model_field_can_be_overridden_from_the_command_line():
    """Fields a config file does not name (None defaults, nested options) still take flags, as in
    `launch/train.py --config=configs/default.py --config.model.mlp_dim=504` (a fresh process,
    since config_flags registers its override flags on the global FLAGS)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from absl import flags\n"
        "from ml_collections import config_flags\n"
        "from jaxformers.config import model_config_from\n"
        "config_flags.DEFINE_config_file('config')\n"
        "flags.FLAGS(sys.argv)\n"
        "cfg = model_config_from(flags.FLAGS.config.model)\n"
        "print(cfg.mlp_dim, cfg.hidden_dim, cfg.moe.expert_dim, cfg.attention.qk_norm)\n"
    )
    default = os.path.join(CONFIG_DIR, "default.py")
    out = subprocess.run(
        [sys.executable, "-c", script, f"--config={default}", "--config.model.mlp_dim=504",
         "--config.model.moe.expert_dim=7", "--config.model.attention.qk_norm=True"],
        capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["504", "504", "7", "True"]


def test_preset_arguments_override_sparsity_and_heads_or_name_the_missing_field():
    icl = load_file(os.path.join(CONFIG_DIR, "icl_functions.py"))
    assert icl.get_config("sparse_linear").data.sparsity == 3
    assert icl.get_config("sparse_linear,sparsity=1").data.sparsity == 1
    with pytest.raises(ValueError, match="sparsity=1: preset 'linear' has no sparsity k"):
        icl.get_config("linear,sparsity=1")
    outliers = load_file(os.path.join(CONFIG_DIR, "outliers.py"))
    model = outliers.get_config("heads=8,kv_heads=8,dim=128").model
    assert (model.num_heads, model.num_kv_heads, model.embed_dim) == (8, 8, 128)
