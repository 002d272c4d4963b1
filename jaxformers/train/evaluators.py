"""Extra evaluations run at every evaluation step, by name in `config.evaluators`.

    fn(model, variables, config) -> dict[str, float]

e.g. greedy maze decoding and exact match. They run on every process (they may use collectives
through jit); process 0 writes the results. To add one, write it next to its data or objective and
add a line to the table.
"""

from jaxformers.data.icl_bursty import icl_iwl_accuracy
from jaxformers.data.icl_curves import icl_curve
from jaxformers.data.induction import induction_accuracy
from jaxformers.data.maze_navigation import maze_navigation
from jaxformers.registry import lookup
from jaxformers.train.outliers import outlier_metrics

EVALUATORS = {
    "maze_navigation": maze_navigation,  # greedy path decoding, exact match (mazes)
    "icl_curve": icl_curve,  # error curve of the model and the ICL baselines, same prompts
    "icl_bursty": icl_iwl_accuracy,  # ICL on held-out classes, IWL with no support (Chan et al. 2022)
    "outliers": outlier_metrics,  # per-layer max |x| and kurtosis (Bondarenko et al. 2023)
    "induction_accuracy": induction_accuracy,  # second token of a repeated name (data/induction.py)
}


def get_evaluator(name: str):
    return lookup(EVALUATORS, name, "config.evaluators")
