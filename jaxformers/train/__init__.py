"""The one training path: `train_and_evaluate(config, workdir)`."""

from jaxformers.train.config_base import base_config, validate_config  # noqa: F401
from jaxformers.train.experiment import Experiment  # noqa: F401
from jaxformers.train.loop import train_and_evaluate  # noqa: F401
