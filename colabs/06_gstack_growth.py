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
# # G_stack: grow a trained 2-layer model into an 8-layer one
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/06_gstack_growth.ipynb)
#
#
# "Stacking Your Transformers" (Du, Luo et al., NeurIPS 2024): train a small base for d tokens, copy
# its whole layer stack g = 4 times *in order* (layer i of the target = base layer i mod L), reset
# AdamW and the warm-up, and keep training. At equal total compute (base phase included) the grown
# model reaches the scratch model's loss sooner. Everything runs through `train_and_evaluate`; the
# growth is `config.init_from` with the registered transform `g_stack` (`jaxformers/growth/depth.py`).
#

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
import importlib.util, os, tempfile
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt

from jaxformers.growth import depth, guidelines
from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import load_variables
from jaxformers.train.metrics import read_metrics

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
root = tempfile.mkdtemp(prefix="gstack_")

# %% [markdown]
# ## 1. Configs
# `configs/gstack.py` has the two presets: `base` (2 layers) and `target` (8 layers), d = 128, byte-level
# text (the Python standard library). The budget here: scratch 40 steps (a few CPU minutes; the
# experiment in `docs/gstack.md` uses 200); the base trains for half the target's tokens (about 13% of
# its compute) and the grown model for the rest.
# SMALL shrinks everything to a few steps of a 32-wide model so the notebook runs in seconds.

# %%
spec = importlib.util.spec_from_file_location("gstack", os.path.join(REPO, "configs", "gstack.py"))
gstack = importlib.util.module_from_spec(spec); spec.loader.exec_module(gstack)
S = 12 if SMALL else 40                 # scratch steps = the total budget (experiments/gstack_growth.py: 200)
BASE_STEPS = S // 2

def make(stage, steps):
    c = gstack.get_config(f"stage={stage},steps={steps}")
    if SMALL:
        c.model.update(dict(embed_dim=32, num_heads=2, num_kv_heads=1, max_len=32))
        c.data.seq_len, c.batch_size, c.eval_batches = 32, 8, 1
    c.eval_every = max(1, steps // (2 if SMALL else 10))
    c.checkpoint_every = steps
    c.progress_bar = False
    return c

def flops_per_step(config, params):
    m = config.model
    per_token = guidelines.decoder_train_flops_per_token(
        params, m.num_layers, config.data.seq_len, m.embed_dim)
    return per_token * config.batch_size * config.data.seq_len


# %% [markdown]
# ## 2. Train the base and save it
# The loop writes Orbax checkpoints; `load_variables` reads one back without knowing the model.

# %%
base_cfg = make("base", BASE_STEPS)
train_and_evaluate(base_cfg, f"{root}/base")
_, base_vars, base_step = load_variables(f"{root}/base")
print("base checkpoint step", base_step, "layers:",
      jax.tree.leaves(base_vars["params"]["layers"])[0].shape[0])

# %% [markdown]
# ## 3. What the growth does
# `depth.stack(variables, 4)` only indexes the scanned "layers" axis: target layer i is a copy of base
# layer i mod 2; embedding, final norm and head are unchanged. `depth.zero_init_depth` (G_zero) also
# zeroes the residual-output projections of the copies, so the grown model computes exactly the base
# model's function, which we check on a batch.

# %%
grown = depth.stack(base_vars, 4)
q = grown["params"]["layers"]["mixer"]["query"]["kernel"]
bq = base_vars["params"]["layers"]["mixer"]["query"]["kernel"]
print("layer i == base layer i mod 2:", all(np.array_equal(q[i], bq[i % 2]) for i in range(8)))
print("stack order", depth.stack_indices(2, 4), " interleave order", depth.interleave_indices(2, 4))

target_cfg = make("target", S)
base_model = build_model("decoder", model_config_from(base_cfg.model))
target_model = build_model("decoder", model_config_from(target_cfg.model))
tokens = jnp.arange(2 * 16).reshape(2, 16) % 256
zero = depth.zero_init_depth(base_vars, 4)
diff = jnp.abs(target_model.apply(zero, tokens) - base_model.apply(base_vars, tokens)).max()
print("G_zero: max |grown(x) - base(x)| =", float(diff))

# %% [markdown]
# ## 4. Grow from the checkpoint and continue, next to a scratch run
# Equal total compute: the grown run trains `S - base FLOPs / target FLOPs per step` steps. FLOPs are
# counted as 6N + 6LTd per token (`guidelines.decoder_train_flops_per_token`).

# %%
f_base = flops_per_step(base_cfg, base_vars["params"])
f_target = flops_per_step(target_cfg, grown["params"])
grown_steps = S - round(BASE_STEPS * f_base / f_target)
grown_cfg = make("target", grown_steps)
grown_cfg.init_from.workdir = f"{root}/base"
grown_cfg.init_from.transform = "g_stack"
train_and_evaluate(grown_cfg, f"{root}/grown")
train_and_evaluate(target_cfg, f"{root}/scratch")
print(f"base {BASE_STEPS} steps ({f_base / f_target:.2f} of a target step each),",
      f"grown {grown_steps}, scratch {S}")


# %% [markdown]
# ## 5. Loss against cumulative compute
# The grown curve starts where the base's compute ends. The paper's speed-up (App. B.2) is
# FLOPs_scratch / FLOPs_G - 1 at the scratch model's final loss.

# %%
def curve(name, f, offset=0.0):
    rows = read_metrics(f"{root}/{name}", "validation")
    return [offset + r["step"] * f for r in rows], [r["loss"] for r in rows]

sx, sy = curve("scratch", f_target)
bx, by = curve("base", f_base)
gx, gy = curve("grown", f_target, BASE_STEPS * f_base)
plt.plot(sx, sy, "k-o", label="scratch (8 layers)")
plt.plot(bx, by, "k:", label="base (2 layers)")
plt.plot(gx, gy, "-o", label="G_stack (base + grown)")
plt.xlabel("cumulative training FLOPs"); plt.ylabel("validation loss (nats/byte)"); plt.legend()
plt.show()
reach = guidelines.flops_to_reach(gx, gy, sy[-1])
sp = "not reached" if reach == float("inf") else f"{100 * guidelines.speedup(sx[-1], reach):+.0f}%"
print(f"scratch final loss {sy[-1]:.4f}; G_stack reaches it at {reach:.3g} FLOPs vs {sx[-1]:.3g}:",
      "speed-up", sp)

# %% [markdown]
# ## Where to go next
# `python experiments/gstack_growth.py` runs the full comparison (scratch; G_stack from d = 0, small,
# medium; interleaved; G_zero) and writes `experiments/results/gstack_growth.{json,png}`;
# `launch/grow.py` grows a checkpoint offline and prints parameter counts and the output difference.
