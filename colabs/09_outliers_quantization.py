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
# # Outliers and quantization: gated attention, kurtosis over training, W8A8 and 4-bit RTN / GPTQ
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/09_outliers_quantization.ipynb)
#
# "Quantizable Transformers: Removing Outliers by Helping Attention Heads Do Nothing" (Bondarenko,
# Nagel & Blankevoort 2023): strong activation outliers come from attention heads that learn a
# "no-op" (most attention on a delimiter token with a small value), and they make 8-bit activations
# lossy. A per-head sigmoid gate before the output projection, or a clipped softmax, lets a head do
# nothing without them. "GPTQ" (Frantar et al. 2023) quantizes weights to 3-4 bits with a
# second-order correction instead of rounding each weight to the nearest grid point (RTN).
# Here: (1) the two attention changes and the outlier statistics as pure functions, (2) a byte LM
# trained with and without the gate, its kurtosis and max |x| over training, (3) both quantized
# through qwix (FP32, W8A8, W4 RTN, W4 GPTQ), (4) the stored full-size results.

# %% [markdown]
# **Setup.** On a fresh runtime (Colab) this cell clones and installs jaxformers with the `[quant]`
# extra (qwix); where jaxformers is already importable it does nothing. `REPO` is the checkout.

# %%
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("jaxformers") is None:  # a fresh runtime: install, then import
    subprocess.run(["git", "clone", "--depth=1", "https://github.com/jaxformers/jaxformers", "/content/jaxformers"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/jaxformers[quant]"], check=True)
    sys.path.append("/content/jaxformers")  # this kernel started before the install
import jaxformers
REPO = os.path.dirname(os.path.dirname(os.path.abspath(jaxformers.__file__)))

# %%
import json, tempfile
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt

from jaxformers.ops import outliers
from jaxformers.ops.attention import clipped_softmax
from jaxformers.train import train_and_evaluate
from jaxformers.train.metrics import read_metrics
from jaxformers.train.quantize import quantize_checkpoint

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
root = tempfile.mkdtemp(prefix="outliers_")
spec = importlib.util.spec_from_file_location("outliers_config", os.path.join(REPO, "configs", "outliers.py"))
outliers_config = importlib.util.module_from_spec(spec); spec.loader.exec_module(outliers_config)

# %% [markdown]
# ## 1. Clipped softmax, and what kurtosis measures
# clip((ζ − γ)·softmax(x) + γ, 0, 1) (eq. 4.1) reaches an exact 0 with finite logits, so a head can
# ignore every token without pushing its logits to extremes. Kurtosis (Pearson, over tokens × features
# of one sample) is about 3 for Gaussian activations and grows to thousands when a few features carry
# huge values: the paper's outlier measure, next to the infinity norm max |x|.

# %%
logits = jnp.array([[4.0, 0.0, 0.0, 0.0]])
print("softmax        ", np.round(np.asarray(jax.nn.softmax(logits)), 4))
print("clipped, γ=-0.1", np.round(np.asarray(clipped_softmax(logits, gamma=-0.1, zeta=1.0)), 4))
x = jax.random.normal(jax.random.key(0), (1, 128, 64))
spiky = x.at[0, :, 7].multiply(40.0)  # one feature dimension 40x larger: an outlier channel
for name, a in [("gaussian", x), ("one outlier channel", spiky)]:
    print(f"{name:>20}: kurtosis {float(outliers.kurtosis(a)[0]):8.1f}   max|x| {float(outliers.inf_norm(a)[0]):6.1f}")

# %% [markdown]
# ## 2. Train with and without the gate; kurtosis over training
# `configs/outliers.py` is a byte LM on the default corpus; `variant=gated` multiplies each head's
# output by sigmoid(x W_g + b) (π_init = 0.25) before W_o. The `outliers` evaluator writes, at every
# evaluation, per layer the mean max |x| and kurtosis of the attention output, the feed-forward
# output and the residual stream on validation batches, and the paper's summary columns
# (`outliers/avg_kurtosis` = mean over modules, `outliers/max_inf_norm` = max over modules). This
# notebook trains 400 steps of the d=64, 2-layer model (about 10 CPU minutes per run); SMALL (the test
# suite's switch) trains a 1-layer, 16-wide model for 8 steps (one evaluation) and quantizes with
# FP32 and W4 GPTQ only, which only checks that everything runs: the committed outputs are from SMALL. The measured full-size runs are in the last cell and in
# `docs/outliers_quantization.md`.

# %%
STEPS = 8 if SMALL else 400

def make(variant):
    c = outliers_config.get_config(f"variant={variant},steps={STEPS},evals={3 if SMALL else 8}")
    if SMALL:
        c.model.update(dict(embed_dim=16, num_layers=1, max_len=32))
        c.data.seq_len, c.batch_size, c.eval_batches, c.eval_every = 32, 8, 1, STEPS
    c.progress_bar = False
    return c

runs = {}
for variant in ("vanilla", "gated"):
    workdir = f"{root}/{variant}"
    train_and_evaluate(make(variant), workdir)
    runs[variant] = workdir

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for variant, workdir in runs.items():
    valid = read_metrics(workdir, "validation")
    for ax, key in zip(axes, ("loss", "outliers/avg_kurtosis", "outliers/max_inf_norm")):
        ax.plot([r["step"] for r in valid], [r[key] for r in valid], "o-", label=variant)
        ax.set(xlabel="step", title=key)
for ax in axes:
    ax.legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. Quantize both through qwix
# `quantize_checkpoint` (the library behind `launch/quantize.py`) restores a checkpoint, quantizes
# every projection with qwix and evaluates on validation batches: W8A8 is int8 per-channel weights and
# static per-tensor int8 inputs of every projection (ranges from calibration batches of the training
# split); `w4_rtn` rounds each weight to the nearest point of a symmetric per-channel 4-bit grid;
# `w4_gptq` spreads each column's rounding error over the columns not yet quantized, weighted by the
# inverse Hessian of the layer's calibration inputs; `w3_*` the same at 3 bits.

# %%
schemes = ["fp32", "w4_gptq"] if SMALL else ["fp32", "w8a8", "w4_rtn", "w4_gptq", "w3_rtn", "w3_gptq"]
table = {v: quantize_checkpoint(w, schemes, calibration_batches=2 if SMALL else 8) for v, w in runs.items()}
print(f"{'variant':>8} {'FP32 loss':>9} " + " ".join(f"{s:>9}" for s in schemes[1:]) + "   (gap to FP32, nats/byte)")
for variant, out in table.items():
    fp32, *rest = out["rows"]
    print(f"{variant:>8} {fp32['loss']:9.4f} " + " ".join(f"{r['gap_to_fp32']:+9.4f}" for r in rest))

# %% [markdown]
# ## The full-size measurement
# `experiments/outlier_attention.py` trains vanilla, gated and clipped at equal steps, quantizes each
# (FP32, W8A8, W4/W3 RTN and GPTQ) and writes `experiments/results/outlier_attention.json`; the runs
# stored there (seed 0 unless the key ends in `_s1`; `_g<x>`: clipped softmax with γ = −x):

# %%
path = os.path.join(REPO, "experiments", "results", "outlier_attention.json")
if os.path.exists(path):
    with open(path) as f:
        stored = json.load(f)
    for key, r in stored.items():
        v = r["validation"]
        line = (f"{key:>34}: loss {v['loss'][-1]:.3f}  max|x| {v['outliers/max_inf_norm'][-1]:6.1f}  "
                f"avg kurtosis {' / '.join(f'{k:.1f}' for k in v['outliers/avg_kurtosis'])}")
        rows = r.get("quantization", {}).get("rows", [])
        if rows:
            line += "\n" + " " * 36 + "gaps: " + "  ".join(f"{q['scheme']} {q['gap_to_fp32']:+.4f}" for q in rows[1:])
        print(line)

# %% [markdown]
# ## Where to go next
# `python experiments/outlier_attention.py --steps=600 --dim=128 --layers=4 --quantize` is the
# comparison in `docs/outliers_quantization.md`; `python experiments/outlier_delimiter_head.py
# --workdirs=<workdir>` finds the head with the most attention on space / newline bytes and plots its
# pattern; `python launch/quantize.py --workdir=<workdir>` quantizes any decoder checkpoint.
