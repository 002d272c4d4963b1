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
# # jaxformers quickstart
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/00_quickstart.ipynb)
#
#
# Build the default byte-level language model, train it for about a minute on this CPU, plot the loss,
# sample text with the KV-cache generator, then save, restore and resume from an Orbax checkpoint.
# Everything goes through the same `train_and_evaluate` that `launch/train.py` calls.

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
import os, tempfile
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt

from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model
from jaxformers.models.sampling import generate
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import load_variables
from jaxformers.train.metrics import read_metrics

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
workdir = tempfile.mkdtemp(prefix="quickstart_")
print(jax.devices())

# %% [markdown]
# ## 1. The config
# `configs/default.py` is a plain Python file returning an `ml_collections.ConfigDict`. The `model`
# block becomes a frozen, validated `ModelConfig`: a typo in a key is an error that names it.

# %%
import importlib.util
spec = importlib.util.spec_from_file_location("default", os.path.join(REPO, "configs", "default.py"))
default = importlib.util.module_from_spec(spec); spec.loader.exec_module(default)
config = default.get_config("tiny" if SMALL else "small")
config.num_steps = 30 if SMALL else 300
config.eval_every = config.checkpoint_every = config.num_steps // 3
config.eval_batches = 2 if SMALL else 8
config.progress_bar = False
model_cfg = model_config_from(config.model)
print(model_cfg)

# %% [markdown]
# ## 2. Train
# Training stops at step `num_steps // 2` first (`stop_at_step`), writing a checkpoint; the second call
# resumes from it exactly, as a re-launched job would.

# %%
train_and_evaluate(config, workdir, stop_at_step=config.num_steps // 2)
final = train_and_evaluate(config, workdir)
final

# %% [markdown]
# ## 3. The loss curve
# `metrics.jsonl` has one JSON row per logged step (train) and per evaluation (validation). The
# dashed line is the unigram entropy of the corpus: what a model that ignores context can reach.

# %%
train = read_metrics(workdir, "train"); valid = read_metrics(workdir, "validation")
plt.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
plt.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="validation")
plt.axhline(3.25, ls="--", c="gray", label="unigram entropy (3.25 nats)")
plt.xlabel("step"); plt.ylabel("nats / byte"); plt.legend(); plt.show()
assert valid[-1]["loss"] < train[0]["loss"]

# %% [markdown]
# ## 4. Restore and sample
# `load_variables` restores any checkpoint from its own metadata, with the config it was trained
# with. `generate` prefills the prompt into a KV cache and emits one token per `lax.scan` step.

# %%
saved_config, variables, step = load_variables(workdir)
model = build_model(saved_config.model_family, model_config_from(saved_config.model))
prompt = jnp.asarray(np.frombuffer(b"def __init__(self", np.uint8).astype(np.int32))[None]
out = generate(model, variables, prompt, jax.random.PRNGKey(0), max_new_tokens=48, temperature=0.7)
print(f"step {step}:")
print(bytes(int(t) for t in np.asarray(out[0]) if t < 256).decode("utf-8", "replace"))

# %% [markdown]
# ## 5. Resume continues where it stopped
# Raising `num_steps` and calling again picks up the newest checkpoint in the workdir.

# %%
config.num_steps += 10
train_and_evaluate(config, workdir)
print([r["step"] for r in read_metrics(workdir, "train")][-3:])
