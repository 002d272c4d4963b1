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
# # Pallas kernels: flash attention and chunked GLA
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/02_pallas_kernels.ipynb)
#
# `jaxformers.kernels` has two Pallas kernels, each a `jax.custom_vjp` with Pallas forward and backward
# passes: flash attention (Dao et al. 2022, arXiv 2205.14135) and chunked gated linear attention (Yang et
# al. 2024, arXiv 2312.06635, §4.2). On a CPU they run in Pallas' interpreter, which is how this notebook
# (and `tests/kernels`) checks their values and gradients against the `ops/` references. Interpret mode
# accepts kernels a real back end rejects, so we also lower both kernels for TPU (Mosaic) and GPU (Triton)
# from this CPU. Last: how to time them on a device with `benchmarks/kernels.py`.

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
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

from jaxformers.kernels import backend
from jaxformers.kernels.flash_attention import flash_attention
from jaxformers.kernels.gla import gla
from jaxformers.ops.attention import dot_product_attention
from jaxformers.ops.linear_attention import gla_recurrent

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
print(jax.devices(), "| impl='auto' picks:", backend.resolve_impl("auto"))

# %% [markdown]
# ## 1. Flash attention against the reference, values and gradients
# A causal, grouped-query case (4 query heads share 2 key/value heads) on a ragged length that is not a
# multiple of the 16-row blocks, so padding and masking are exercised. The error is
# max|kernel − reference| / max|reference| for the output and for dq, dk, dv of a random cotangent.

# %%
def rel_err(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))

T = 40 if SMALL else 200
kq, kk, kv, ko = jax.random.split(jax.random.PRNGKey(0), 4)
q = jax.random.normal(kq, (2, T, 4, 32)); k = jax.random.normal(kk, (2, T, 2, 32))
v = jax.random.normal(kv, (2, T, 2, 32)); cot = jax.random.normal(ko, (2, T, 4, 32))

def flash(q, k, v):
    return flash_attention(q, k, v, causal=True, block_q=16, block_kv=16, impl="pallas")

def reference(q, k, v):
    return dot_product_attention(q, k, v, causal=True)

errors = {}
for name, f in (("pallas", flash), ("xla", reference)):
    out, vjp = jax.vjp(f, q, k, v)
    errors[name] = (out, *vjp(cot))
flash_err = {n: rel_err(a, b) for n, a, b in zip(("out", "dq", "dk", "dv"), errors["pallas"], errors["xla"])}
print("flash attention, relative error:", {n: f"{e:.1e}" for n, e in flash_err.items()})
assert max(flash_err.values()) < 1e-5

# %% [markdown]
# ## 2. The GLA kernel against the token-by-token recurrence
# `gla(...)` has the contract of `ops.linear_attention.gla_chunked`: outputs and the final state. The
# reference is `gla_recurrent`, the definition S_t = diag(α_t) S_{t−1} + k_tᵀ v_t, one step per token.
# Gates are drawn as log α = log σ(u)/16, the range GLA's gate produces.

# %%
T = 45 if SMALL else 150
keys = jax.random.split(jax.random.PRNGKey(1), 6)
q, k, v = (jax.random.normal(keys[i], (1, T, 2, 32)) * 0.5 for i in range(3))
log_alpha = jax.nn.log_sigmoid(jax.random.normal(keys[3], (1, T, 2, 32))) / 16
s0 = jax.random.normal(keys[4], (1, 2, 32, 32)) * 0.1
cot = jax.random.normal(keys[5], (1, T, 2, 32))

def loss(f):
    def fn(q, k, v, g, s0):
        out, final = f(q, k, v, g, s0)
        return jnp.sum(out * cot) + jnp.sum(final)
    return fn

kernel = lambda q, k, v, g, s0: gla(q, k, v, g, chunk_size=16, initial_state=s0, impl="pallas")
recurrent = lambda q, k, v, g, s0: gla_recurrent(q, k, v, g, initial_state=s0)
args = (q, k, v, log_alpha, s0)
(out_p, fin_p), (out_r, fin_r) = kernel(*args), recurrent(*args)
grads_p = jax.grad(loss(kernel), argnums=range(5))(*args)
grads_r = jax.grad(loss(recurrent), argnums=range(5))(*args)
gla_err = {"out": rel_err(out_p, out_r), "state": rel_err(fin_p, fin_r)}
gla_err |= {n: rel_err(a, b) for n, a, b in zip(("dq", "dk", "dv", "dlog_alpha", "ds0"), grads_p, grads_r)}
print("GLA, relative error:", {n: f"{e:.1e}" for n, e in gla_err.items()})
assert max(gla_err.values()) < 1e-5

# %%
fig, ax = plt.subplots(figsize=(8, 3))
names = [f"flash {n}" for n in flash_err] + [f"GLA {n}" for n in gla_err]
ax.bar(names, list(flash_err.values()) + list(gla_err.values()), color=["tab:blue"] * 4 + ["tab:orange"] * 7)
ax.axhline(1e-5, ls="--", c="gray", label="test bound 1e-5")
ax.set(yscale="log", ylabel="max |kernel − ref| / max |ref|", title="Pallas (interpret mode) vs reference, float32")
ax.tick_params(axis="x", rotation=45); ax.legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. The kernels lower for TPU and GPU, checked from this CPU
# Under an abstract TPU v5e or H100 device, `jax.jit(f).trace(...).lower(lowering_platforms=...)` runs
# Pallas' real lowering: each kernel must become one Mosaic `tpu_custom_call` (TPU) or Triton call (GPU),
# forward and backward, at production shapes (T = 2048, head dim 128, bfloat16). The final Mosaic/PTX
# compilation only happens on the device, so this is a strong smoke test, not a guarantee.

# %%
DEVICES = {"tpu": AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu"),
           "cuda": AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=132, platform="gpu")}
CUSTOM_CALL = {"tpu": "tpu_custom_call", "cuda": "xla.gpu.triton"}

def lowered_calls(platform, fn, *args):
    with use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=DEVICES[platform])):
        return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text().count(CUSTOM_CALL[platform])

sds = lambda *shape, dtype=jnp.bfloat16: jax.ShapeDtypeStruct(shape, dtype)
T, D = (512, 128) if SMALL else (2048, 128)
flash_grad = jax.grad(lambda q, k, v: jnp.sum(flash_attention(q, k, v, causal=True, impl="pallas")
                                              .astype(jnp.float32)), argnums=(0, 1, 2))
gla_grad = jax.grad(lambda q, k, v, g: jnp.sum(gla(q, k, v, g, chunk_size=64, impl="pallas")[0]
                                               .astype(jnp.float32)), argnums=(0, 1, 2, 3))
for platform in ("tpu", "cuda"):
    n_flash = lowered_calls(platform, flash_grad, sds(1, T, 8, D), sds(1, T, 2, D), sds(1, T, 2, D))
    n_gla = lowered_calls(platform, gla_grad, *(sds(1, T, 4, D) for _ in range(4)))
    print(f"{platform}: flash fwd+bwd -> {n_flash} {CUSTOM_CALL[platform]} calls; GLA fwd+bwd -> {n_gla}")
    assert n_flash >= 3 and n_gla >= 2

# %% [markdown]
# ## 4. Timing on a device
# On a GPU or TPU runtime (Colab: *Runtime → Change runtime type*), `impl="auto"` picks the Pallas
# kernels, and `benchmarks/kernels.py` times them: flash attention against `jax.nn.dot_product_attention`
# (XLA, and cuDNN on GPU) and the Pallas GLA against the XLA chunked form, at B=4, H=16, D=128, bfloat16,
# T = 1k-16k; it writes `benchmarks/results/kernels_<platform>.json` and a bar chart next to it.
#
# ```bash
# python benchmarks/kernels.py                 # GPU / TPU: the full table
# python benchmarks/kernels.py --iters=5       # CPU: tiny shapes, interpret mode (not representative)
# ```
#
# The next cell runs it when an accelerator is present (on a CPU it only prints the command). Training
# with the kernels is one flag: `--config.model.attention.impl=pallas` (or `model.gla.impl=pallas`).

# %%
command = [sys.executable, os.path.join(REPO, "benchmarks", "kernels.py")]
if jax.default_backend() in ("gpu", "tpu"):
    subprocess.run(command + (["--lengths=1024,2048"] if SMALL else []), check=True)
else:
    print("no accelerator here; on a GPU/TPU run:", " ".join(command))
