# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # MLM-U on mazes
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/07_mlmu_mazes.ipynb)
#
#
# Nolte et al. 2024 ("Transformers Can Navigate Mazes With Multi-Step Prediction") train an
# encoder-decoder to fill in a *random, uniform-rate* subset of a maze's solution path given the maze
# and the rest of the path (MLM-U), instead of predicting the path one next token at a time. This
# notebook draws a DFS maze, shows the MLM-U masks, trains a tiny MLM-U model and draws its greedy
# solution on held-out mazes. Everything runs on a CPU in minutes (`SMALL`: seconds).

# %% [markdown]
# **Setup.** On a fresh runtime (Colab) this cell clones and installs jaxformers; where jaxformers is
# already importable it does nothing. `REPO` is the repository checkout, found from the installed package,
# so the configs load from it wherever the notebook runs.

# %%
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("jaxformers") is None:  # a fresh runtime: install, then import
    subprocess.run(["git", "clone", "--depth=1", "https://github.com/jaxformers/jaxformers", "/content/jaxformers"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/jaxformers"], check=True)
    sys.path.append("/content/jaxformers")  # this kernel started before the install
import jaxformers
REPO = os.path.dirname(os.path.dirname(os.path.abspath(jaxformers.__file__)))

# %%
import os, importlib.util, tempfile
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt

from jaxformers.data import maze_words, mazes
from jaxformers.data.maze_navigation import decode_paths, navigation_metrics
from jaxformers.objectives.mlm_u import mlm_u_mask
from jaxformers.train import Experiment, train_and_evaluate
from jaxformers.train.checkpoint import load_variables
from jaxformers.train.metrics import read_metrics

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
N = 4 if SMALL else 5


# %% [markdown]
# ## 1. A maze and its tokens
# `generate_mazes` runs a randomised depth-first search (a spanning tree of the grid, so the path
# between any two cells is unique) vectorised over thousands of mazes. A maze is tokenised as its
# adjacency list (shuffled), origin, target, then the path. Walls are drawn black, the path red.

# %%
def draw(ax, tokens, n, path=None, title=""):
    maze = mazes.decode_tokens(tokens, n)
    conn = maze["connections"]
    ax.plot([0, n, n, 0, 0], [0, 0, n, n, 0], "k", lw=2)
    for r in range(n):
        for c in range(n):
            if r < n - 1 and not conn[0, r, c]:
                ax.plot([c, c + 1], [r + 1, r + 1], "k", lw=2)
            if c < n - 1 and not conn[1, r, c]:
                ax.plot([c + 1, c + 1], [r, r + 1], "k", lw=2)
    path = maze["path"] if path is None else path
    if len(path):
        ax.plot(path[:, 1] + 0.5, path[:, 0] + 0.5, "r-o", lw=2, ms=4)
    ax.plot(maze["start"][1] + 0.5, maze["start"][0] + 0.5, "gs", ms=10)
    ax.plot(maze["goal"][1] + 0.5, maze["goal"][0] + 0.5, "b*", ms=12)
    ax.set_xlim(-0.1, n + 0.1); ax.set_ylim(n + 0.1, -0.1); ax.set_aspect("equal")
    ax.axis("off"); ax.set_title(title)

tokens = mazes.generate_mazes(3, N, seed=0)
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, t in zip(axes, tokens):
    draw(ax, t, N)
plt.show()
print(" ".join(maze_words.tokens_to_words(tokens[0], N, connector=False)))

# %% [markdown]
# ## 2. The MLM-U masks
# One rate r ~ U(0,1) per sequence; each path token stays visible with probability r; the prefix
# (maze, origin, target, `<PATH_START>`) is always visible and never predicted. Rows are sequences,
# columns positions from the end of the prefix: visible path tokens grey, predicted ones red.

# %%
batch = mazes.generate_mazes(16, N, seed=1)
path = mazes.path_mask(batch, N)
prefix = np.broadcast_to(np.arange(batch.shape[1]) < mazes.prefix_len(N), path.shape)
visible, predict, rate = mlm_u_mask(jax.random.PRNGKey(0), path, prefix)
p = mazes.prefix_len(N) - 1
img = np.zeros(path[:, p:].shape + (3,)) + 1.0
img[np.asarray(visible)[:, p:]] = 0.6
img[np.asarray(predict)[:, p:]] = (0.9, 0.1, 0.1)
plt.figure(figsize=(7, 3)); plt.imshow(img, aspect="auto")
plt.yticks(range(16), [f"r={r:.2f}" for r in np.asarray(rate)], fontsize=6)
plt.xlabel("position after the prefix"); plt.show()

# %% [markdown]
# ## 3. Train a small MLM-U model
# `configs/maze_mlmu.py` (tiny preset, d=64, 2 encoder + 2 decoder layers) through the one training
# loop. Each evaluation runs the `maze_navigation` evaluator: greedy left-to-right decoding of whole
# paths on held-out mazes, and exact match (the paper's navigation accuracy).

# %%
spec = importlib.util.spec_from_file_location("maze_mlmu", os.path.join(REPO, "configs", "maze_mlmu.py"))
cfgmod = importlib.util.module_from_spec(spec); spec.loader.exec_module(cfgmod)
config = cfgmod.get_config(f"grid={N},size=tiny,steps={10 if SMALL else 200}")  # a few CPU minutes
if SMALL:
    config.model.update(embed_dim=32, num_layers=1)
    config.evaluators = ()
    config.peak_flops = 1.0  # skip the MFU matmul measurement
config.data.update(num_train=2000 if SMALL else 20000, num_validation=200, eval_mazes=64)
config.batch_size = 16 if SMALL else 32
config.learning_rate = 3e-3
config.eval_every = config.num_steps // 2
config.eval_batches = 2
config.checkpoint_every = config.num_steps
config.progress_bar = False
workdir = tempfile.mkdtemp(prefix="mlmu_")
final = train_and_evaluate(config, workdir)
print({k: round(v, 3) for k, v in final.items()})
train = read_metrics(workdir, "train")
plt.plot([r["step"] for r in train], [r["loss"] for r in train])
plt.xlabel("step"); plt.ylabel("MLM-U loss (masked path tokens)"); plt.show()

# %% [markdown]
# ## 4. The model's solutions
# Greedy decoding, one token per forward pass: at each step the encoder sees the prefix plus the
# tokens decoded so far, and the decoder's single learned query (plus RoPE) asks for the next
# position. Titles say whether the decoded path equals the true one.

# %%
_, variables, _ = load_variables(workdir)
exp = Experiment(config)
held_out = mazes.maze_splits(N, config.data.num_train, config.data.num_validation, 42)["validation"][:4]
steps = held_out.shape[1] - mazes.prefix_len(N)
pred = decode_paths(exp.model, variables, held_out[:, : mazes.prefix_len(N)], steps)
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, t, row in zip(axes, held_out, pred):
    end = np.flatnonzero(row == mazes.PATH_END)
    cells = row[: end[0]] if end.size else row
    cells = cells[(cells >= mazes.NUM_SPECIAL) & (cells < mazes.vocab_size(N))]
    cells = np.stack(np.divmod(cells - mazes.NUM_SPECIAL, N), -1) if len(cells) else np.zeros((0, 2), int)
    truth = mazes.decode_tokens(t, N)["path"]
    ok = len(cells) == len(truth) and (cells == truth).all()
    draw(ax, t, N, path=cells, title="exact" if ok else "wrong")
plt.show()
print(navigation_metrics(pred, held_out, N))
