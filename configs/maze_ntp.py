"""Next-token baseline on DFS mazes, parameter-matched to configs/maze_mlmu.py (same presets).

  python launch/train.py --config=configs/maze_ntp.py:grid=5 --workdir=runs/maze_ntp_5

Decoder-only model with 2x the layers of each MLM-U stack; the loss is the "next_token" objective
with the maze dataset's weights, which score only targets in the path region (the authors' AR
baseline, Nolte et al. 2024, arXiv 2412.05117). Evaluation decodes greedily with the KV cache.
"""

import os

from jaxformers.configs_loader import load_file

_mlmu = load_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "maze_mlmu.py"))


def get_config(arg: str | None = None):
    return _mlmu.maze_config(arg, "next_token")
