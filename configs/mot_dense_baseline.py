"""Dense baseline for Mixture-of-Transformers (Liang et al. 2025, arXiv 2411.04996): configs/mot.py with K=1.

  python launch/train.py --config=configs/mot_dense_baseline.py --workdir=runs/mot_dense

Same layout (norm after branch, QK-norm), data, schedule and per-step FLOPs as configs/mot.py;
only the weights are shared by both modalities (the modality ids still reach the objective,
which reports loss_m0 / loss_m1). Same presets as configs/mot.py.
"""

import os

from jaxformers.configs_loader import load_file

_mot = load_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mot.py"))


def get_config(arg: str | None = None):
    return _mot.mot_config(arg, num_modalities=1)
