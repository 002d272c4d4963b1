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
Measured (docs/multi_token_prediction.md, result 3; size=tiny, 1500 steps at batch 64, held-out
exact match on 256 mazes, seeds 0 / 1):
  taskset -c 0 nice -n 10 python experiments/mtp_mazes.py --grid=5000:0 --objectives=mtp2 \
      --steps=1500 --eval_every=250 --root=/tmp/h24/mazes_1500
1000 mazes: next token 0.039 / 0.035, n=2 0.027 / 0.008, n=4 0.094 / 0.004, sequential D=2
0.035 / 0.012; 5000 mazes: next token 0.250 / 0.234, n=2 0.234 / 0.402, n=4 0.246 / 0.211,
sequential 0.254 / 0.254. No objective beats next token on both seeds. Not run at the paper size.
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
