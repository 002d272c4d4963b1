"""Next-token baseline on DFS mazes, parameter-matched to configs/maze_mlmu.py (same presets).

  python launch/train.py --config=configs/maze_ntp.py:grid=5 --workdir=runs/maze_ntp_5

Decoder-only model with 2x the layers of each MLM-U stack; the loss is the "next_token" objective
with the maze dataset's weights, which score only targets in the path region (the authors' AR
baseline, Nolte et al. 2024, arXiv 2412.05117). Evaluation decodes greedily with the KV cache.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "maze_mlmu_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "maze_mlmu.py"))
_mlmu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mlmu)


def get_config(arg: str | None = None):
    return _mlmu.maze_config(arg, "next_token")
