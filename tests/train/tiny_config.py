"""The tests' tiny synthetic-data run as a config file, for command-line tests (not collected).

  python launch/train.py --config=tests/train/tiny_config.py --workdir=/tmp/tiny

12 steps of a 2-layer d=32 decoder on synthetic tokens, a few seconds on a 2-core CPU.
"""

from jaxformers.testing import tiny_train_config


def get_config(arg=None):
    del arg
    return tiny_train_config()
