"""Datasets plug into the training loop by name (`config.data.name`).

Contract of a registered dataset builder:

    build(data_config, *, split, seed, batch_size, process_index, process_count) -> iterator

split: "train" or "validation"; batch_size: the per-host batch (global // process_count).
The iterator yields dicts of numpy arrays with a leading batch axis, is infinite for "train",
and supports `get_state()` / `set_state(state)` (a JSON-serialisable dict) so that resume is
exact. A grain `DatasetIterator` satisfies this; build it as
`grain.MapDataset.source(...).shuffle(seed).repeat()[process_index::process_count]...`.
For "validation" the iterator may be finite; the loop takes `config.eval_batches` batches.
"""

from jaxformers.data import icl_bursty, icl_functions, icl_regression, induction, mazes, text, two_modality
from jaxformers.registry import lookup

DATASETS = {
    "text": text.build_text,  # bytes of text files (default: the Python standard library)
    "synthetic": text.build_synthetic,
    "mazes": mazes.build_mazes,
    "icl_regression": icl_regression.build,
    "icl_functions": icl_functions.build,  # ops/icl_tasks.py prompts
    "icl_bursty": icl_bursty.build,  # ops/icl_bursty.py bursty Zipf classification (Chan et al. 2022)
    "two_modality": two_modality.build_two_modality,
    "induction": induction.build,  # two-token-name stories (multi-token prediction, Gloeckle §4.1)
}


def get_dataset_builder(name: str):
    return lookup(DATASETS, name, "config.data.name")
