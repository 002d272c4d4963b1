"""Datasets whose batch t is a pure function of (seed, split, process, t): the batch counter is the
whole iterator state, so `get_state()` / `set_state()` of the registry contract (data/registry.py)
save and restore just t and resume is exact.

The in-context datasets (icl_regression, icl_functions, icl_bursty) draw every batch afresh this way;
each subclass keeps its own batch logic in `batch(step)`.
"""

import abc

import jax


class StepIterator(abc.ABC):
    """An infinite iterator of `batch(0), batch(1), ...` that resumes at any saved step."""

    def __init__(self, split: str, split_ids: dict[str, int]):
        if split not in split_ids:
            raise ValueError(f"split={split!r}; expected one of {sorted(split_ids)}")
        self.split_id = split_ids[split]
        self.step = 0

    @abc.abstractmethod
    def batch(self, step: int) -> dict:
        """Batch `step` of this split and process: a dict of numpy arrays with a leading batch axis."""

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = self.batch(self.step)
        self.step += 1
        return batch

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])

    @classmethod
    def build(cls, data_config, *, split, seed, batch_size, process_index, process_count):
        """The registry's builder; each process draws its own stream, so process_count is unused."""
        del process_count
        return cls(data_config, split=split, seed=seed, batch_size=batch_size, process_index=process_index)


def stream_key(seed: int, split_id: int, process_index: int) -> jax.Array:
    """The jax.random key of one (seed, split, process) stream; batch t uses fold_in(key, t)."""
    key = jax.random.fold_in(jax.random.key(int(seed)), split_id)
    return jax.random.fold_in(key, int(process_index))
