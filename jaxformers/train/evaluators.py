"""Extra evaluations run at every evaluation step, by name in `config.evaluators`.

    fn(model, variables, config) -> dict[str, float]

e.g. greedy maze decoding and exact match. They run on every process (they may use collectives
through jit); process 0 writes the results.
"""

from jaxformers.registry import Registry

# Methods register evaluators next to their data or objectives; importing those packages fills it.
EVALUATORS = Registry("config.evaluators", populate="jaxformers.objectives")
register_evaluator = EVALUATORS.register


def get_evaluator(name: str):
    import jaxformers.data  # noqa: F401

    return EVALUATORS.get(name)
