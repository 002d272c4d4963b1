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
# # Linear attention: in-context regression and the three forms of GLA
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/01_linear_attention_icl.ipynb)
#
#
# Part 1 trains a **one-layer linear self-attention** (LSA) on in-context linear regression and
# checks it against theory: Zhang, Frei & Bartlett (2024) prove that gradient flow reaches the
# global optimum, which is **one step of gradient descent preconditioned by Γ⁻¹**,
# Γ = (1 + 1/N) Λ + tr(Λ)/N · I. We plot the training loss against the computed baselines (zero
# predictor, the best plain GD step, the optimum) and show the learned matrix next to Γ⁻¹.
#
# Part 2 shows that the recurrent, parallel and chunked forms of **gated linear attention** compute the
# same function, and part 3 plots how their cost grows with the sequence length.

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
import importlib.util, json, os, time
import jax, jax.numpy as jnp, numpy as np, optax
import matplotlib.pyplot as plt

from jaxformers.config import model_config_from
from jaxformers.models.lsa import effective_preconditioner
from jaxformers.models.registry import build_model
from jaxformers.objectives.registry import get_objective
from jaxformers.ops import icl
from jaxformers.ops import linear_attention as la

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
spec = importlib.util.spec_from_file_location("icl_lsa", os.path.join(REPO, "configs", "icl_lsa.py"))
icl_cfg = importlib.util.module_from_spec(spec); spec.loader.exec_module(icl_cfg)

# %% [markdown]
# ## 1. The task and the baselines
# x ~ N(0, Λ) with Λ = diag(1, 1, 1/4, 1/16, 1), w ~ N(0, I), y = w·x, N = 20 context points, one
# query. Every baseline is *computed* by `jaxformers.ops.icl`: closed forms where they exist, least
# squares / grid search on fresh tasks otherwise. Losses are ½·mean (ŷ − y)².

# %%
config = icl_cfg.get_config("nonisotropic")
d, n, cov = config.data.dim, config.data.num_context, tuple(config.data.covariance)
test = icl.sample_tasks(jax.random.PRNGKey(5), 20_000 if SMALL else 200_000, d, n, covariance=cov)
base = icl.baselines(test["x"], test["y"], covariance=cov, gd_steps=(1,))
optimum = icl.lsa_optimal_loss(cov, d, n)
gamma_inv = np.linalg.inv(icl.lsa_gamma(cov, d, n))
print(f"closed-form optimum {optimum:.4f} | preconditioned GD (MC) {base['preconditioned_gd']:.4f}"
      f" | best plain GD step {base['gd1']:.4f} (lr {base['gd1_lr']:.3f}) | zero {base['zero']:.4f}")

# %% [markdown]
# ## 2. Train the one-layer LSA
# The model is the library's `lsa` family (merged W_KQ, W_PV as in ZFB); the loss is the registered
# `icl_regression` objective. `configs/icl_lsa.py` trains the same thing with `launch/train.py`; here
# a few lines of optax keep the notebook self-contained. Fresh tasks every step.

# %%
model = build_model("lsa", model_config_from(config.model))
loss_fn = get_objective("icl_regression")
steps, batch, lr = (300, 512, 1e-2) if SMALL else (3000, 4096, 3e-3)  # SMALL: a smoke run
chol = jnp.asarray(np.linalg.cholesky(np.diag(cov)), jnp.float32)
tokens0 = icl.to_tokens(test["x"][:2], test["y"][:2])
params = model.init(jax.random.PRNGKey(0), tokens0)["params"]
tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.1))
opt_state = tx.init(params)

@jax.jit
def train_step(params, opt_state, key):
    t = icl.sample_tasks(key, batch, d, n, covariance=cov)
    b = {"inputs": icl.to_tokens(t["x"], t["y"]), "targets": t["y"][:, -1]}
    (loss, _), grads = jax.value_and_grad(
        lambda p: loss_fn(model, {"params": p}, b, rng=None, step=0, train=True), has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

losses, t0 = [], time.time()
for i in range(steps):
    params, opt_state, loss = train_step(params, opt_state, jax.random.PRNGKey(1000 + i))
    losses.append(float(loss))
pred = model.apply({"params": params}, icl.to_tokens(test["x"], test["y"]))
trained = float(icl.half_mse(pred, test["y"][:, -1]))
print(f"{steps} steps in {time.time() - t0:.0f}s: test ½-MSE {trained:.4f} vs optimum {optimum:.4f}"
      f" ({100 * (trained / optimum - 1):+.1f}%)")

# %% [markdown]
# ## 3. Loss against the theory lines
# The trained LSA falls through the best *plain* GD step (dotted) down to the preconditioned optimum
# (dashed): it learned to undo the anisotropy of x, which no scalar learning rate can.

# %%
plt.figure(figsize=(6, 3.5))
w = 10 if SMALL else 50
smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
plt.plot(np.arange(len(smooth)) + w, smooth, label="1-layer LSA (train, smoothed)")
plt.axhline(base["gd1"], ls=":", c="C1", label=f"best 1-step GD {base['gd1']:.3f}")
plt.axhline(optimum, ls="--", c="k", label=f"optimum (Γ⁻¹-preconditioned GD) {optimum:.3f}")
plt.ylim(0.3, 0.6); plt.xlabel("step"); plt.ylabel("½ MSE"); plt.legend(); plt.show()

# %% [markdown]
# ## 4. The learned matrix is Γ⁻¹
# Only u = W_PV[d, d] and the top-left d×d block of W_KQ matter for the prediction
# ŷ = x_qᵀ (u W_KQ[:d,:d])ᵀ (1/N) Σ yᵢ xᵢ. Their product should be Γ⁻¹: large where Λ is small.

# %%
learned = np.asarray(effective_preconditioner(params, d))
fig, axes = plt.subplots(1, 2, figsize=(7, 3))
for ax, m, title in zip(axes, (learned, gamma_inv), ("learned u·W_KQ[:d,:d]ᵀ", "Γ⁻¹")):
    im = ax.imshow(m, vmin=0, vmax=4.5, cmap="viridis"); ax.set_title(title)
fig.colorbar(im, ax=axes); plt.show()
print("learned diag", np.diag(learned).round(3), "\nΓ⁻¹ diag    ", np.diag(gamma_inv).round(3))
print("relative error", np.linalg.norm(learned - gamma_inv) / np.linalg.norm(gamma_inv))

# %% [markdown]
# ## 5. Three forms of gated linear attention, one function
# GLA keeps a state S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t and reads o_t = q_t S_t. The *recurrent* form
# is a scan over tokens, the *parallel* form a T×T matrix with pairwise decays, and the *chunked*
# form (what training uses) mixes the two: states between chunks, matmuls inside them, with the
# decay factored through an anchor so that no exponent is ever positive. In float64 they agree to
# rounding error for weak and very strong gates alike, with and without an initial state.

# %%
rows = []
with jax.enable_x64(True):
    r = np.random.default_rng(0)
    B, T, H, K, V = 1, 50, 2, 8, 8
    q, k = (jnp.asarray(r.uniform(size=(B, T, H, K))) for _ in range(2))
    v = jnp.asarray(r.uniform(size=(B, T, H, V))); s0 = jnp.asarray(r.uniform(size=(B, H, K, V)))
    for normalizer in (0.1, 1.0, 10.0):  # log gate = logsigmoid(u) / normalizer: strong -> weak
        g = jax.nn.log_sigmoid(jnp.asarray(r.uniform(size=(B, T, H, K)))) / normalizer
        rec, _ = la.gla_recurrent(q, k, v, g, initial_state=s0)
        par, _ = la.gla_parallel(q, k, v, g, initial_state=s0)
        chk, _ = la.gla_chunked(q, k, v, g, chunk_size=16, initial_state=s0)
        rows.append((normalizer, float(jnp.abs(par - rec).max()), float(jnp.abs(chk - rec).max())))
        if normalizer == 1.0:
            example = (np.asarray(rec[0, :, 0, 0]), np.asarray(chk[0, :, 0, 0]))
for nm, e_par, e_chk in rows:
    print(f"normalizer {nm:5}: max|parallel - recurrent| {e_par:.1e}   max|chunked - recurrent| {e_chk:.1e}")
plt.figure(figsize=(6, 2.5))
plt.plot(example[0], lw=3, alpha=0.4, label="recurrent"); plt.plot(example[1], "k--", label="chunked (C=16)")
plt.xlabel("t"); plt.ylabel("o_t[0]"); plt.legend(); plt.show()

# %% [markdown]
# ## 6. Cost against sequence length
# `benchmarks/linear_attention_scaling.py` times forward+backward of softmax attention, chunked GLA and
# recurrent GLA on this CPU and records XLA's peak buffer size. Softmax grows as T², chunked GLA as T.
# If the saved results are missing (or in SMALL mode) we measure a couple of short lengths here.

# %%
path = os.path.join(REPO, "benchmarks", "results", "linear_attention_scaling.json")
if os.path.exists(path):
    res = json.load(open(path))["rows"]
else:
    spec = importlib.util.spec_from_file_location("scal", os.path.join(REPO, "benchmarks", "linear_attention_scaling.py"))
    scal = importlib.util.module_from_spec(spec); spec.loader.exec_module(scal)
    res = [{"form": f, "T": t} | scal.measure(f, t, 1, 32, 1) for t in (128, 256) for f in scal.FORMS]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for form in sorted({r["form"] for r in res}):
    rr = sorted((r for r in res if r["form"] == form), key=lambda r: r["T"])
    axes[0].loglog([r["T"] for r in rr], [r["seconds"] for r in rr], "o-", label=form)
    axes[1].loglog([r["T"] for r in rr], [r["peak_bytes"] / 2**20 for r in rr], "o-", label=form)
axes[0].set(xlabel="T", ylabel="fwd+bwd seconds"); axes[1].set(xlabel="T", ylabel="peak MiB")
axes[0].legend(); plt.tight_layout(); plt.show()
