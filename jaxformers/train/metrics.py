"""Metrics sinks: tqdm bar, TensorBoard (tensorboardX) and metrics.jsonl, on process 0 only."""

import json
import os
import sys
import time

import jax
import numpy as np


def _summary_writer_class():
    """tensorboardX.SummaryWriter, imported without torch: tensorboardX's writer module imports
    torch whenever it is installed (1.5 s at every launch here) only to accept torch tensors, and
    this writer logs Python floats. A None entry in sys.modules makes that `import torch` fail
    cleanly; torch imports normally afterwards."""
    if "torch" in sys.modules or "tensorboardX.writer" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class MetricsWriter:
    def __init__(self, workdir: str, *, total_steps: int, initial_step: int, progress_bar: bool):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.bar = None
        self.tb = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self.tb = _summary_writer_class()(os.path.join(workdir, "tensorboard"))
        if progress_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: float(np.asarray(v)) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "split": split, "time": time.time(), **clean}) + "\n")
        for k, v in clean.items():
            self.tb.add_scalar(f"{split}/{k}", v, step)
        if self.bar is not None and split == "train":
            self.bar.set_postfix(
                {k: f"{clean[k]:.4g}" for k in ("loss", "steps_per_s", "tokens_per_s") if k in clean}
            )
        if self.bar is not None and split != "train":
            self.bar.write(f"step {step} {split}: " + " ".join(f"{k}={v:.4f}" for k, v in clean.items()))

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        if self.bar is not None:
            self.bar.close()


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
    """Rows of metrics.jsonl (optionally one split), e.g. for plots in notebooks."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]
