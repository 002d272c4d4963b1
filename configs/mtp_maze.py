"""Multi-token prediction on DFS mazes: configs/maze_ntp.py's next-token baseline with n
predictions per position (parallel heads, Gloeckle et al. 2024, arXiv 2404.19737, §2; or
DeepSeek-V3 sequential modules, arXiv 2412.19437, §2.2), same presets (grid, size, steps).

  python launch/train.py --config=configs/mtp_maze.py:grid=5,n=2 --workdir=runs/maze_mtp2_5
  python launch/train.py --config=configs/mtp_maze.py:grid=5,n=3,kind=sequential \\
      --workdir=runs/maze_seq2_5    # sequential depth D = 2 (n = 3: x_{t+1}, x_{t+2}, x_{t+3})
  nice -n 19 python experiments/mtp_mazes.py   # the next token / MTP / MLM-U table

The next-token path has the baseline's depth: a trunk of 2 * layers_per_stack - 1 blocks and head
1's block (so n = 1 is maze_ntp.py's decoder with the last block renamed); heads 2..n (or the
sequential modules) are extra blocks on the same trunk. The loss scores only targets in the path
region (the maze dataset's weights, shifted per head). Evaluation (maze_navigation) decodes head 1
greedily with the KV cache, exactly as for the next-token model.
MTP not measured at a useful budget yet: docs/multi_token_prediction.md, result 3 (the next-token
baseline, tiny, 1k mazes, seed 0, 1500 steps: held-out exact match 0.039, token accuracy 0.28).
"""

import os

from jaxformers.configs_loader import load_file

_mlmu = load_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "maze_mlmu.py"))


def get_config(arg: str | None = None):
    own, maze = {"n": 2, "kind": "parallel"}, []
    for item in (arg or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key in own:
            own[key] = type(own[key])(value)
        elif item:
            maze.append(item)
    c = _mlmu.maze_config(",".join(maze), "next_token")
    c.model_family = "mtp"
    c.objective = "mtp"
    c.model.num_layers -= 1  # + head 1's block = the next-token baseline's depth
    c.model.mtp.num_future_tokens = own["n"]
    c.model.mtp.kind = own["kind"]
    return c
