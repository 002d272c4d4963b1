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
# # SMoE-Dropout: a frozen random router, a growing k, and a self-slimmable model
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/03_smoe_dropout.ipynb)
#
#
# Chen et al. (ICLR 2023, arXiv 2303.01610) split a dense FFN of width H into N experts of width H/N
# and route each token to k of them with a **random router that is never trained**. During training
# k grows linearly from N/2 to N. Afterwards the model can be evaluated at any k: fewer experts cost
# fewer FLOPs, more experts give a lower loss ("self-slimmable"). A learned top-2 router, by contrast,
# is tuned to k = 2 and does not improve when more experts are switched on.
#
# This notebook: (1) the k schedule, (2) the top-k softmax combination, (3) the frozen router lives in
# the `constants` collection, (4) a short run of dense / learned top-2 / SMoE-Dropout,
# (5) the loss at every k.

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

from jaxformers.ops import moe
from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model
from jaxformers.objectives.next_token import cross_entropy
from jaxformers.train import train_and_evaluate, Experiment
from jaxformers.train.checkpoint import load_variables
from jaxformers.train.metrics import read_metrics

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
spec = importlib.util.spec_from_file_location("smoe_dropout", os.path.join(REPO, "configs", "smoe_dropout.py"))
moe_base = importlib.util.module_from_spec(spec); spec.loader.exec_module(moe_base)

# %% [markdown]
# ## 1. The k schedule (Chen et al. 2023, arXiv 2303.01610)
# `k(t) = clip(round((k_max - k_min) t / T) + k_min, k_min, k_max)`: with N = 8 experts it starts at
# 4 active experts and ends with all 8. On average 3/4 of the expert FLOPs are spent.

# %%
T = 600
steps = np.arange(T + 1)
ks = moe.k_schedule(steps, T, 4, 8, "linear")
plt.figure(figsize=(5, 3)); plt.plot(steps, ks)
plt.xlabel("training step"); plt.ylabel("active experts k"); plt.title("linear k schedule, N = 8")
plt.show()
print("mean active fraction:", float(ks.mean()) / 8)

# %% [markdown]
# ## 2. Top-k softmax combination
# The softmax is taken over the k selected router logits only, so the weights always sum to 1: the
# output is a weighted *average* of k experts. k = 1 is the argmax expert; k = N with equal logits is
# the uniform average, which equals the dense FFN the experts were split from
# (`moe.split_ffn_into_experts`).

# %%
logits = jnp.array([[2.0, 1.0, 0.5, -1.0, 0.0, 0.3, -0.2, 1.5]])
for k in (1, 2, 4, 8):
    print(k, np.round(np.asarray(moe.topk_softmax_combine(logits, k))[0], 3))

w1, b1, w2, b2 = [jax.random.normal(jax.random.PRNGKey(i), s) for i, s in
                  enumerate([(16, 64), (64,), (64, 16), (16,)])]
x = jax.random.normal(jax.random.PRNGKey(9), (5, 16))
dense = jax.nn.relu(x @ w1 + b1) @ w2 + b2
experts = moe.split_ffn_into_experts(w1, b1, w2, b2, 8)
uniform = moe.topk_softmax_combine(jnp.zeros((5, 8)), 8)
print("max |MoE(k=N, equal logits) - dense| =",
      float(jnp.abs(moe.moe_masked(x, uniform, *experts) - dense).max()))


# %% [markdown]
# ## 3. The frozen router is a constant, not a parameter
# `model.moe.router="random_frozen"` stores the router (PyTorch `nn.Linear` default init) in the
# `constants` collection. The optimizer only sees `params`, so neither gradients nor weight decay can
# move it; it is still checkpointed. The learned router's kernel sits in `params`.

# %%
def configs(steps):
    out = {}
    for name, variant in (("dense", "dense"), ("learned top-2", "learned"),
                          ("SMoE-Dropout", "smoe_dropout")):
        c = moe_base.get_config(f"variant={variant},steps={steps}")
        if SMALL:
            c.model.update(dict(embed_dim=32, num_layers=1, max_len=32, mlp_dim=64))
            c.data.seq_len = 32; c.batch_size = 8
        c.eval_batches = 2 if SMALL else 8
        c.eval_every = c.checkpoint_every = steps
        c.progress_bar = False
        out[name] = c
    return out

STEPS = 20 if SMALL else 300
cfgs = configs(STEPS)
for name, c in cfgs.items():
    m = build_model(c.model_family, model_config_from(c.model))
    v = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32)))
    ffn = {col: sorted(v[col]["layers"]["ffn"]) for col in v if "ffn" in v[col]["layers"]}
    print(f"{name:14s}", ffn)

# %% [markdown]
# ## 4. Train the three models for the same number of steps
# Same data, same optimizer (AdamW with weight decay), same total FFN width. SMoE-Dropout's k
# follows the schedule through `ctx.step`; the learned router always uses k = 2.

# %%
root = tempfile.mkdtemp(prefix="smoe_")
for name, c in cfgs.items():
    workdir = os.path.join(root, name.replace(" ", "_"))
    final = train_and_evaluate(c, workdir)
    cfgs[name] = (c, workdir)
    print(f"{name:14s} validation loss {final['loss']:.3f}")

# %% [markdown]
# ## 5. Evaluate every model at k = 1, 2, 4, 8
# One jitted function per model takes k as an argument (`active_experts`, which overrides the
# schedule). The masked path accepts a traced k, so each model compiles once. The dense model does
# not depend on k: it is the horizontal reference.

# %%
KS = [1, 2, 4, 8]
curves = {}
for name, (c, workdir) in cfgs.items():
    config, variables, _ = load_variables(workdir)
    variables = {k: v for k, v in variables.items() if v}
    exp = Experiment(config)
    model = exp.model

    @jax.jit
    def loss_at(variables, batch, k):
        logits = model.apply(variables, batch["inputs"], active_experts=k)
        return cross_entropy(logits, batch["targets"], batch.get("weights"))[0]

    it = exp.make_iterator("validation")
    batches = [next(it) for _ in range(config.eval_batches)]
    curves[name] = [float(np.mean([loss_at(variables, b, jnp.asarray(k)) for b in batches]))
                    for k in KS]
    print(f"{name:14s}", " ".join(f"k={k}: {l:.3f}" for k, l in zip(KS, curves[name])))

plt.figure(figsize=(5, 3.5))
for name, losses in curves.items():
    plt.plot(KS, losses, "o-", label=name)
plt.xscale("log"); plt.xticks(KS, [str(k) for k in KS])
plt.xlabel("active experts k at evaluation"); plt.ylabel("validation loss (nats/byte)")
plt.legend(); plt.title(f"self-slimmable curve ({STEPS} steps)"); plt.show()

# %% [markdown]
# ### The full-size result
# `python experiments/smoe_slimmable.py` evaluates the three 600-step models (d=128, 2 layers, N=8)
# trained with `configs/smoe_dropout.py:variant={dense,learned,smoe_dropout}` (two seeds; `docs/smoe_dropout.md`).
# The stored result is shown here.

# %%
path = os.path.join(REPO, "experiments", "results", "smoe_slimmable.json")
if os.path.exists(path):
    for seed, result in json.load(open(path)).items():
        for name, r in result["table"].items():
            print(f"{seed} {name:14s}", " ".join(f"k={k}: {l:.4f}" for k, l in zip(result["ks"], r["loss"])))
    from IPython.display import Image, display
    display(Image(path.replace(".json", ".png")))
else:
    print("run experiments/smoe_slimmable.py first")
