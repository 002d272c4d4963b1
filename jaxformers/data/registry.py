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

from jaxformers.registry import Registry

DATASETS = Registry("config.data.name", populate="jaxformers.data")
register_dataset = DATASETS.register
get_dataset_builder = DATASETS.get
