"""Load `configs/*.py` and other script files that live outside the package, by path.

The experiment configs (and the benchmark scripts that share code with each other) are plain files,
not modules of an installed package: `launch/train.py --config=configs/x.py:arg` loads them by path
through ml_collections. The experiments and benchmarks that build a config in Python do the same
here, so `load_config("configs/x.py", arg)` is the config that command line trains.

This module imports nothing of the project (nor jax): a script that only redraws a figure stays light.
"""

import importlib.util
import os
import types


def load_file(path: str) -> types.ModuleType:
    """The Python file at `path`, executed as a fresh module named after the file (not cached)."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise FileNotFoundError(f"{path} is not a Python file to load (expected a path ending in .py)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(path: str, arg: str | None = None):
    """The config file at `path` built with `get_config(arg)`: what `--config=<path>:<arg>` builds."""
    return load_file(path).get_config(arg)
