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
# # TokenFormer: Pattention and growth by parameter tokens
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/05_tokenformer_growth.ipynb)
#
#
# TokenFormer (Wang et al., ICLR 2025) replaces every linear map `x W` of a Transformer by
# **Pattention**, attention from the input tokens to *learnable parameter tokens*:
#
# $$\mathrm{Pattention}(X, K_P, V_P) = \Theta(X K_P^\top)\, V_P \qquad \text{(eq. 4)}$$
#
# with $n$ key tokens $K_P \in \mathbb{R}^{n\times d_{in}}$ and value tokens
# $V_P \in \mathbb{R}^{n\times d_{out}}$. Because $n$ is independent of $d_{in}, d_{out}$, the model grows
# by **appending tokens**. This notebook:
# 1. computes Pattention by hand and checks it against `jaxformers.ops.pattention`;
# 2. grows a small TokenFormer 4x in tokens and shows the function is preserved *exactly* only when τ is frozen;
# 3. plots grown-vs-scratch training against cumulative compute.

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
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import flax.linen as nn

from jaxformers.ops.pattention import pattention, theta, default_tau

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"
print("SMALL =", SMALL, "| devices:", jax.devices()[:1])

# %% [markdown]
# ## 1. Pattention by hand
#
# Θ is a modified softmax over the $n$ parameter tokens. The default, `l2_norm_gelu` (App. A eq. 16), is
# $S = \mathrm{GeLU}(\tau A / \lVert A\rVert_2)$ with $\tau=\sqrt{n}$: an L2 normalisation instead of the
# exponential, so scores can be negative and no token dominates. Look at the last line: the hand-written
# version and the library agree to float32 precision.

# %%
n, d_in, d_out = 32, 16, 8
kx, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
x = jax.random.normal(kx, (4, d_in))           # 4 input tokens
K = jax.random.normal(kk, (n, d_in)) * 0.3      # key parameter tokens
V = jax.random.normal(kv, (n, d_out))           # value parameter tokens

A = x @ K.T                                     # [4, n] token-parameter scores
tau = jnp.sqrt(n)
S = jax.nn.gelu(tau * A / jnp.linalg.norm(A, axis=-1, keepdims=True), approximate=False)
by_hand = S @ V
print("max |by hand - ops.pattention| =", float(jnp.abs(by_hand - pattention(x, K, V)).max()))

# %% [markdown]
# The three Θ variants of the released code on one row of scores. `softmax` is `softmax(A)·n`; the
# L2 variants keep negative scores near zero (GeLU) and scale with $\sqrt n$.

# %%
row = A[0]
order = jnp.argsort(row)
fig, ax = plt.subplots(figsize=(6, 3))
for norm in ("softmax", "gelu_l2_norm", "l2_norm_gelu"):
    ax.plot(row[order], theta(row, norm=norm)[order], marker=".", label=norm)
ax.set_xlabel("score A_i"); ax.set_ylabel("weight Θ(A)_i"); ax.legend(); plt.show()

# %% [markdown]
# ## 2. Growth with the function preserved
#
# Growth appends $m$ tokens: $K_P \leftarrow [K_P; K_{new}]$, $V_P \leftarrow [V_P; V_{new}]$ (eq. 11).
# With $K_{new}=0$ the new scores are exactly 0, so $\lVert A \rVert$ is unchanged and GeLU(0) = 0: the new
# values get no weight. **But** only if τ stays $\sqrt{n_{old}}$: the default $\sqrt{n_{old}+m}$ rescales every
# old score. jaxformers stores τ in the non-trainable `constants` collection so growth can freeze it.
#
# We build a 2-layer TokenFormer (every Q/K/V/O projection and the FFN are Pattentions), grow it 4x with
# `tokenformer_grow` and compare logits.

# %%
from jaxformers.growth.registry import get_transform
from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model

base = dict(vocab_size=64, embed_dim=32, num_layers=2, num_heads=2, max_len=16,
            projections="pattention", feed_forward="pattention")
small_cfg = model_config_from({**base, "pattention": dict(attn_tokens=8, ffn_tokens=32)})
big_cfg = model_config_from({**base, "pattention": dict(attn_tokens=32, ffn_tokens=128)})
small, big = build_model("decoder", small_cfg), build_model("decoder", big_cfg)
tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 0, 64)
small_vars = nn.meta.unbox(small.init(jax.random.PRNGKey(2), tokens))
big_init = nn.meta.unbox(big.init(jax.random.PRNGKey(3), tokens))
print(jax.tree.map(jnp.shape, small_vars["params"]["layers"]["ffn"]))
print("tau (constants):", small_vars["constants"]["layers"]["ffn"]["pattention"]["tau"])

# %% [markdown]
# Grow with zero keys and frozen τ (the default options), then with τ recomputed as the released code does.
# The first difference is float32 round-off; the second is a real change of the function.

# %%
grow = get_transform("tokenformer_grow")
before = small.apply(small_vars, tokens)
for tau_mode in ("frozen", "recompute"):
    grown = grow(small_vars, source_cfg=small_cfg, target_cfg=big_cfg, target_init=big_init,
                 rng=jax.random.PRNGKey(4), key_init="zeros", tau=tau_mode)
    diff = float(jnp.abs(big.apply(grown, tokens) - before).max())
    print(f"tau={tau_mode:9s}  FFN tokens {grown['params']['layers']['ffn']['pattention']['key_tokens'].shape[-2]}"
          f"  max |grown logits - small logits| = {diff:.2e}")

# %% [markdown]
# ## 3. Grown vs. scratch, against compute
#
# The experiment of `experiments/tokenformer_growth.py`: a small TokenFormer (4 layers, d=128, 64/256 tokens) on
# the byte-level text data for S steps, grown 4x in tokens and trained B more steps, against the large
# TokenFormer trained from scratch for B and for S+B steps. Compute is XLA's count of training FLOPs; the grown
# curve's includes the small model's. With `SMALL` (tests) the stored result is plotted; otherwise a tiny
# version is trained live (a few minutes on a CPU).

# %%
import json

stored = os.path.join(REPO, "experiments", "results", "tokenformer_growth.json")
if SMALL and os.path.exists(stored):
    with open(stored) as f:
        results = json.load(f)
else:
    import tempfile
    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics
    spec = importlib.util.spec_from_file_location("tokenformer", os.path.join(REPO, "configs", "tokenformer.py"))
    tokenformer = importlib.util.module_from_spec(spec); spec.loader.exec_module(tokenformer)
    get_config = tokenformer.get_config

    def cfg(size, steps):
        c = get_config(size)
        c.num_steps, c.warmup_steps, c.eval_every, c.checkpoint_every = steps, 5, 10, steps
        c.progress_bar = False
        return c

    root, S, B = tempfile.mkdtemp(), 60, 30
    curve = lambda w, off=0.0: [dict(step=r["step"], loss=r["loss"], flops=r["flops"] + off)
                                for r in read_metrics(w, "validation")]
    train_and_evaluate(cfg("tiny", S), f"{root}/small")
    g = cfg("tiny_large", B)
    g.init_from.workdir, g.init_from.transform = f"{root}/small", "tokenformer_grow"
    train_and_evaluate(g, f"{root}/grown")
    small_curve = curve(f"{root}/small")
    off = small_curve[-1]["flops"]
    train_and_evaluate(cfg("tiny_large", B), f"{root}/scratch_B")
    train_and_evaluate(cfg("tiny_large", S + B), f"{root}/scratch_total")
    results = dict(small_steps=S, grow_steps=B, curves=dict(
        small=small_curve, grown=[dict(step=0, loss=small_curve[-1]["loss"], flops=off)] + curve(f"{root}/grown", off),
        scratch_B=curve(f"{root}/scratch_B"), scratch_total=curve(f"{root}/scratch_total")))

fig, ax = plt.subplots(figsize=(6, 4))
for name, c in results["curves"].items():
    ax.plot([p["flops"] for p in c], [p["loss"] for p in c], marker=".", label=name)
ax.set_xlabel("cumulative training FLOPs"); ax.set_ylabel("validation loss (nats/byte)")
ax.set_title(f"S={results['small_steps']}, B={results['grow_steps']}"); ax.legend(); plt.show()
for name, c in results["curves"].items():
    print(f"{name:14s} final loss {c[-1]['loss']:.4f}  cumulative FLOPs {c[-1]['flops']:.3e}")

# %% [markdown]
# What to look at: the grown curve starts exactly where the small one ends (growth is free and lossless), and
# for the same extra compute B it is below the large model trained from scratch for B. The scratch model trained
# for the total budget spends more compute; compare it with the grown curve at equal FLOPs, not at equal steps.
