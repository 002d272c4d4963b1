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

DATASETS: dict = {}


def register_dataset(name: str):
    def wrap(fn):
        DATASETS[name] = fn
        return fn

    return wrap


def get_dataset_builder(name: str):
    import jaxformers.data  # noqa: F401  (registers the built-in datasets)

    if name not in DATASETS:
        raise ValueError(f"config.data.name={name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]
