"""Extra evaluations run at every evaluation step, by name in `config.evaluators`.

    fn(model, variables, config) -> dict[str, float]

e.g. greedy maze decoding and exact match. They run on every process (they may use collectives
through jit); process 0 writes the results.
"""

EVALUATORS: dict = {}


def register_evaluator(name: str):
    def wrap(fn):
        EVALUATORS[name] = fn
        return fn

    return wrap


def get_evaluator(name: str):
    import jaxformers.data  # noqa: F401  (methods register evaluators next to their data)
    import jaxformers.objectives  # noqa: F401

    if name not in EVALUATORS:
        raise ValueError(f"config.evaluators has {name!r}; registered: {sorted(EVALUATORS)}")
    return EVALUATORS[name]
