"""In-context linear regression tasks as a dataset (`config.data.name = "icl_regression"`).

Fresh tasks every batch (ops.icl.sample_tasks's distribution, drawn with numpy on the host):
batch = {"inputs": tokens [B, N+1, d+1] float32 (query label zeroed), "targets": y_q [B]}.
config.data fields: dim (d), num_context (N), x_dist (gaussian | uniform), x_range (r of
U(-r, r)), covariance (None, [d] diagonal or [d][d]), noise_std, w_scale.
The iterator's state is the batch counter, so resume is exact; "validation" is a fixed stream.
"""

import numpy as np

from jaxformers.data.step_iterator import StepIterator
from jaxformers.ops.icl import covariance_matrix

_SPLIT_IDS = {"train": 0, "validation": 1}


class TaskIterator(StepIterator):
    def __init__(self, cfg, *, split, seed, batch_size, process_index):
        super().__init__(split, _SPLIT_IDS)
        self.d = int(cfg.get("dim", 5))
        self.n = int(cfg.get("num_context", 20))
        self.x_dist = cfg.get("x_dist", "gaussian")
        if self.x_dist not in ("gaussian", "uniform"):
            raise ValueError(f"config.data.x_dist={self.x_dist!r}; expected gaussian or uniform")
        self.x_range = float(cfg.get("x_range", 1.0))
        cov = cfg.get("covariance", None)
        self.chol = None if cov is None else np.linalg.cholesky(covariance_matrix(cov, self.d))
        self.noise_std = float(cfg.get("noise_std", 0.0))
        self.w_scale = float(cfg.get("w_scale", 1.0))
        self.batch_size = batch_size
        self.key = (int(seed), self.split_id, int(process_index))

    def batch(self, step: int) -> dict:
        rng = np.random.default_rng(self.key + (step,))
        b, n, d = self.batch_size, self.n, self.d
        if self.x_dist == "uniform":
            x = rng.uniform(-self.x_range, self.x_range, (b, n + 1, d))
        else:
            x = rng.standard_normal((b, n + 1, d))
            if self.chol is not None:
                x = x @ self.chol.T
        w = self.w_scale * rng.standard_normal((b, d))
        y = np.einsum("bnd,bd->bn", x, w) + self.noise_std * rng.standard_normal((b, n + 1))
        y_in = y.copy()
        y_in[:, -1] = 0.0
        tokens = np.concatenate([x, y_in[..., None]], axis=-1)
        return {"inputs": tokens.astype(np.float32), "targets": y[:, -1].astype(np.float32)}


build = TaskIterator.build
