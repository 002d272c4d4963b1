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
# # Mixture-of-Transformers: untie every weight per modality, keep one global attention
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/04_mixture_of_transformers.ipynb)
#
#
# Liang et al. (TMLR 2025, arXiv 2411.04996) give each modality its own copy of *every* non-embedding
# parameter: Q/K/V/O projections, the FFN, the norms and the QK-norm. A token uses the weights of its
# modality (known in advance: no router), while attention is ONE causal self-attention over the whole
# interleaved sequence. Per-step FLOPs equal the dense model's; the gain is in steps.
#
# This notebook: (1) the untied block and its parameters, (2) the grouped dispatch that keeps the
# FLOPs dense, (3) the two-modality data, (4) a short run of dense vs MoT, (5) the step-matching plot.

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
import os, sys, json, importlib.util, tempfile
import jax, jax.numpy as jnp, numpy as np
import flax.linen as nn
import matplotlib.pyplot as plt

from jaxformers.config import model_config_from
from jaxformers.models.decoder import Decoder
from jaxformers.ops.mot import dispatch_plan, grouped_matmul, modality_select_matmul
from jaxformers.train import train_and_evaluate
from jaxformers.train.metrics import read_metrics

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version

def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    return module


# %% [markdown]
# ## 1. The untied block
# `model.num_modalities = K` gives every parameter inside the blocks (and the final norm) a leading
# `modality` axis; embeddings and the LM head stay shared (paper Fig. 3: modality-specific
# vocabularies in one table). `norm_placement="after_branch"` is Chameleon's layout used by MoT:
# `h = x + norm(attn(x)); y = h + norm(ffn(h))` (paper eq. 1).

# %%
cfg = model_config_from(dict(vocab_size=264, embed_dim=64, num_layers=2, num_heads=4,
                               max_len=32, num_modalities=2, norm_placement="after_branch",
                               attention=dict(qk_norm=True), modality_dispatch="grouped"))
tokens = jnp.zeros((1, 16), jnp.int32); ids = (jnp.arange(16)[None] >= 8).astype(jnp.int32)
boxed = Decoder(cfg).init(jax.random.PRNGKey(0), tokens, modality_ids=ids)
flat = jax.tree_util.tree_flatten_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))[0]
for path, leaf in flat:
    name = "/".join(str(getattr(k, "key", k)) for k in path[1:] if hasattr(k, "key"))
    print(f"{name:28s} {str(leaf.value.shape):18s} {leaf.names}")
import dataclasses
def count(k):
    model = Decoder(dataclasses.replace(cfg, num_modalities=k))
    return sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)))
print("parameters: dense", count(1), " MoT K=2", count(2))

# %% [markdown]
# ## 2. Grouped dispatch: dense FLOPs, static shapes
# The simple path computes every modality's projection for every token and selects (K times the
# FLOPs). The grouped path sorts tokens by modality into a tile-padded buffer of static size
# (`ceil(N/tile) + K - 1` tiles), so each tile belongs to one modality and is multiplied by that
# modality's kernel only. Below: the plan for 7 tokens, the equality of both paths, and XLA's FLOP
# count for each.

# %%
ids7 = jnp.array([1, 0, 1, 1, 0, 2, 1])
dest, src, tile_mod = dispatch_plan(ids7, 3, tile=2)
print("buffer row of each token:", dest, "\ntoken in each buffer row (7 = padding):", src,
      "\nmodality of each tile:", tile_mod)

x = jax.random.normal(jax.random.PRNGKey(1), (4, 128, 64)); w = jax.random.normal(jax.random.PRNGKey(2), (2, 64, 256))
mid = jax.random.randint(jax.random.PRNGKey(3), (4, 128), 0, 2)
print("max |grouped - select| =", float(jnp.abs(grouped_matmul(x, w, mid, tile_size=32) - modality_select_matmul(x, w, mid)).max()))
def flops(fn, *a):
    c = jax.jit(fn).lower(*a).compile().cost_analysis()
    return (c[0] if isinstance(c, (list, tuple)) else c)["flops"]
for name, f in [("dense x @ W[0]", lambda x, w, i: x @ w[0]), ("select (all K, pick)", modality_select_matmul),
                ("grouped (tiles of 32)", lambda x, w, i: grouped_matmul(x, w, i, tile_size=32))]:
    print(f"{name:24s} {flops(f, x, w, mid) / 1e6:8.1f} MFLOP")

# %% [markdown]
# ## 3. Two-modality data
# `two_modality` interleaves a first-order Markov "text" (ids 0-127, modality 0) with raster-scanned
# "images" (ids 128-255, modality 1) whose pixels copy the pixel above or continue the left one;
# the first image row depends on the last text token, so images need cross-modal attention.
# `variant="mazes"` uses maze descriptions (0) and paths (1) instead.

# %%
from jaxformers.data.registry import get_dataset_builder
import ml_collections
it = get_dataset_builder("two_modality")(ml_collections.ConfigDict(dict(name="two_modality", seq_len=96)),
    split="train", seed=0, batch_size=2, process_index=0, process_count=1)
batch = next(it)
plt.figure(figsize=(12, 1.6))
plt.scatter(np.arange(96), batch["inputs"][0], c=batch["modality_ids"][0], cmap="coolwarm", s=12)
plt.xlabel("position"); plt.ylabel("token id"); plt.title("one sequence (blue: text, red: image)"); plt.show()

# %% [markdown]
# ## 4. Dense vs MoT at equal per-step FLOPs
# Both configs are identical except `num_modalities` (`configs/mot_dense_baseline.py` vs
# `configs/mot.py`): same layout, data order, schedule and seed. The validation metrics carry
# `loss_m0` / `loss_m1`, the loss on targets of each modality. (SMALL: a tiny model for a few steps,
# just to run the pipeline.)

# %%
preset = "size=tiny,steps=12" if SMALL else "size=small,steps=300"
root = tempfile.mkdtemp(prefix="mot_")
curves, flops_per_step = {}, {}
for name, module in [("dense", "mot_dense_baseline"), ("mot", "mot")]:
    config = load(module).get_config(preset)
    config.progress_bar = False
    config.eval_every = 4 if SMALL else 20
    config.eval_batches = 1 if SMALL else 4
    train_and_evaluate(config, os.path.join(root, name))
    rows = read_metrics(os.path.join(root, name), "validation")
    curves[name] = {k: np.array([r[k] for r in rows]) for k in ("step", "loss_m0", "loss_m1")}
    last = read_metrics(os.path.join(root, name), "train")[-1]
    flops_per_step[name] = last["flops"] / last["step"]
print({k: f"{v / 1e9:.3f} GFLOP/step" for k, v in flops_per_step.items()})


# %% [markdown]
# ## 5. Step matching
# For each dense validation loss L at step s, find the first step s' at which MoT reaches L
# (linear interpolation on MoT's running minimum) and fit s' = slope * s through the origin
# (paper Fig. 5-6). Slope < 1: MoT needs that fraction of the dense model's steps (and FLOPs).
# The paper reports about 0.26 (image) and 0.55 (text) at 37M parameters.

# %%
def steps_to_reach(steps, losses, target):
    best = np.minimum.accumulate(losses); hit = np.nonzero(best <= target)[0]
    if hit.size == 0: return None
    i = hit[0]
    if i == 0: return float(steps[0])
    return steps[i-1] + (steps[i] - steps[i-1]) * (best[i-1] - target) / max(best[i-1] - best[i], 1e-12)

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, key in zip(axes[:2], ("loss_m0", "loss_m1")):
    for name in curves:
        ax.plot(curves[name]["step"], curves[name][key], "-o" if name == "mot" else "-", label=name, ms=3)
    ax.set(title=f"{key} (validation)", xlabel="step", ylabel="nats/token"); ax.legend()
d, m = curves["dense"], curves["mot"]
for key in ("loss_m0", "loss_m1"):
    dense_best = np.minimum.accumulate(d[key])
    pairs = [(s, steps_to_reach(m["step"], m[key], l)) for s, l in zip(d["step"], dense_best) if s >= 0.2 * d["step"][-1]]
    pairs = np.array([p for p in pairs if p[1] is not None], float)
    if len(pairs):
        slope = (pairs[:, 0] * pairs[:, 1]).sum() / (pairs[:, 0] ** 2).sum()
        axes[2].plot(pairs[:, 0], pairs[:, 1], "o", label=f"{key}: slope {slope:.2f}")
        print(key, "step-matching slope", round(float(slope), 3))
    else:
        print(key, ": MoT never reached the dense losses in this short run")
axes[2].plot([0, d["step"][-1]], [0, d["step"][-1]], "k-", lw=0.5, label="slope 1")
axes[2].set(title="step matching", xlabel="dense step", ylabel="MoT step, same loss"); axes[2].legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# ### The full-size result
# `python experiments/mot_step_matching.py` trains both models (d=128, 4 layers, 300 steps by default)
# and records each setting as one key of `experiments/results/mot_step_matching.json`; every setting and
# its slopes are in `docs/mixture_of_transformers.md`. The stored result is shown here: the settled
# setting (d=64, real text, batch 64, 1000 steps) first.

# %%
path = os.path.join(REPO, "experiments", "results", "mot_step_matching.json")
if os.path.exists(path):
    for setting, result in json.load(open(path)).items():
        print(setting, {key: round(r["slope"], 3) for key, r in result["modalities"].items()})
    from IPython.display import Image, display
    display(Image(path.replace(".json", ".png")))
else:
    print("run experiments/mot_step_matching.py first")
