"""The experiments' and benchmarks' config loader builds what `launch/train.py --config=` builds."""

import os

import pytest
from absl import flags
from ml_collections import config_flags

from jaxformers.configs_loader import load_config, load_file

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


@pytest.mark.parametrize(
    "name, arg", [("default", None), ("mtp_lm", "size=small,n=2"), ("maze_mlmu", "grid=5,size=small")]
)
def test_load_config_equals_the_config_flag(name, arg):
    path = os.path.join(CONFIGS, f"{name}.py")
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values)
    values(["prog", f"--config={path}" + ("" if arg is None else f":{arg}")])
    assert load_config(path, arg).to_dict() == values.config.to_dict()


def test_load_file_runs_the_file_afresh_each_time():
    path = os.path.join(CONFIGS, "default.py")
    first, second = load_file(path), load_file(path)
    assert first.__name__ == "default" and first is not second
    first.get_config().num_steps = -1  # a config built from one load does not leak into the next
    assert second.get_config().num_steps != -1


def test_load_file_names_a_path_that_is_not_python():
    with pytest.raises(FileNotFoundError, match="not a Python file"):
        load_file(CONFIGS)
