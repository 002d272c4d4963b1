"""Selection by name: configs name a model family, objective, dataset, transform or evaluator, and
each package keeps one explicit table of them (`<package>/registry.py`, `train/evaluators.py`)."""

from jaxformers.config import ConfigError


def lookup(table: dict, name: str, field: str):
    """table[name], or a one-line ConfigError naming the config field and the choices."""
    if name not in table:
        raise ConfigError(f"{field}={name!r}; expected one of {sorted(table)}")
    return table[name]
