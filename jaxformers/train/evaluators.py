"""Extra evaluations run at every evaluation step, by name in `config.evaluators`.

    fn(model, variables, config) -> dict[str, float]

e.g. greedy maze decoding and exact match. They run on every process (they may use collectives
through jit); process 0 writes the results. To add one, write it next to its data or objective and
add a line to the table.
"""

from jaxformers.data.maze_navigation import maze_navigation
from jaxformers.registry import lookup

EVALUATORS = {
    "maze_navigation": maze_navigation,  # greedy path decoding, exact match (mazes)
}


def get_evaluator(name: str):
    return lookup(EVALUATORS, name, "config.evaluators")
