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
# # Multi-token prediction: n heads, induction, and self-speculative decoding
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxformers/jaxformers/blob/main/colabs/10_multi_token_prediction.ipynb)
#
# "Better & Faster Large Language Models via Multi-token Prediction" (Gloeckle et al. 2024, arXiv
# 2404.19737): a shared trunk and n heads, head i predicting the token i steps ahead, trained with the
# sum of the n cross-entropies. Two claims to look at on a toy task: the extra heads help a small
# model form an induction head (§4.1), and heads 2..n can draft tokens that head 1 checks in one
# forward pass, so greedy decoding needs fewer passes (§3.2, blockwise parallel decoding). Here:
# (1) the targets of each head, (2) stories whose characters have random two-token names, (3) n = 1
# and n = 2 trained on them, with head 1's accuracy on the second token of a repeated name, (4)
# self-speculative decoding against plain greedy decoding on the trained model.

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
import json, tempfile, time
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt

from jaxformers.config import model_config_from
from jaxformers.data import induction
from jaxformers.models.registry import build_model
from jaxformers.models.sampling import generate
from jaxformers.models.speculative import speculative_generate
from jaxformers.ops.multi_token import future_targets
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import load_variables
from jaxformers.train.metrics import read_metrics

SMALL = os.environ.get("JAXFORMERS_COLAB_SMALL") == "1"  # the test suite runs a tiny version
root = tempfile.mkdtemp(prefix="mtp_")
spec = importlib.util.spec_from_file_location("mtp_induction", os.path.join(REPO, "configs", "mtp_induction.py"))
mtp_config = importlib.util.module_from_spec(spec); spec.loader.exec_module(mtp_config)

# %% [markdown]
# ## 1. Head i is scored against the token i steps ahead
# `ops.multi_token.future_targets` turns the next-token targets (position t predicts x_{t+1}) into
# head i's targets x_{t+i}; the last i - 1 positions have none and are dropped.

# %%
targets = jnp.arange(1, 9)[None]  # position t's next token is x_{t+1} = t + 1
for i in (1, 2, 3):
    t_i, w_i = future_targets(targets, None, None, i)
    print(f"head {i}: positions 0..{t_i.shape[1] - 1} predict", np.asarray(t_i[0]))

# %% [markdown]
# ## 2. Stories with two-token names
# `data/induction.py`: sentences `NAME word ... .` in a fixed toy language (a lexicon and word
# bigrams), where each story draws its own two-token names. At a name's first mention its second
# token cannot be known; at every later mention it can be copied from the earlier one. That copy is
# what an induction head does, and `induction_accuracy` (head 1's argmax accuracy at those
# positions) measures it. Names are shown in brackets, the positions it scores underlined with `^`.

# %%
data = mtp_config.get_config().data
tokens, repeat, first = induction.eval_stories(data, 2)
first_name = 1 + induction.options(data)["filler_tokens"]
def show(story):
    return " ".join(f"[{t}]" if t >= first_name else ("." if t == induction.STOP else str(t)) for t in story)
print(show(tokens[0, :40]))
print("scored second-name tokens at input positions", np.nonzero(repeat[0, :40])[0],
      "(first mentions:", np.nonzero(first[0, :40])[0], ")")

# %% [markdown]
# ## 3. Does the second head help induction form?
# `configs/mtp_induction.py`: a 1-layer trunk and one block per head (head 1's path is 2 blocks for
# every n), d = 64, batch 32, stories of 64 tokens. Both runs see the same stories in the same order;
# `induction_accuracy` is evaluated every 50 steps. SMALL (the test suite's switch) trains 40 steps,
# which only checks that everything runs (its curves stay at chance); the measured runs are in the
# last cell and in `docs/multi_token_prediction.md`.

# %%
STEPS = 40 if SMALL else 1000
runs = {}
for n in (1, 2):
    config = mtp_config.get_config(f"n={n},steps={STEPS}")
    config.progress_bar = False
    if SMALL:
        config.eval_every, config.warmup_steps = 20, 5
    start = time.perf_counter()
    train_and_evaluate(config, f"{root}/n{n}")
    valid = read_metrics(f"{root}/n{n}", "validation")
    runs[n] = [(r["step"], r["induction_accuracy"]) for r in valid]
    print(f"n={n}: {time.perf_counter() - start:.0f} s, final induction accuracy {runs[n][-1][1]:.3f}, "
          f"head-1 validation loss {valid[-1]['loss_head1']:.3f}")
for n, curve in runs.items():
    plt.plot(*zip(*curve), "o-", label=f"n = {n}")
plt.axhline(0.9, color="gray", ls=":")
plt.xlabel("training step"); plt.ylabel("second-token accuracy, repeated names"); plt.legend()
plt.show()

# %% [markdown]
# ## 4. Self-speculative decoding
# `models/speculative.py`: each iteration feeds head 1's next token plus head 2's draft through the
# model once (a KV cache); head 1's argmax at the draft's position checks it, and a draft that
# matches is kept for free. The output is head 1's greedy output token for token, so the only
# questions are how many drafts are accepted and what the extra work costs. Prompts are the first 24
# tokens of 4 validation stories; 36 tokens are decoded greedily at batch 1, each decoder compiled
# once and then timed (on a CPU an n-token pass through every head costs more than a 1-token pass,
# so fewer passes need not mean less time).

# %%
config, variables, _ = load_variables(f"{root}/n2")
model = build_model(config.model_family, model_config_from(config.model))
stories, _, _ = induction.eval_stories(data, 4)
def timed(fn, reps=3):
    out = jax.block_until_ready(fn())  # compiled on the first prompt, reused after
    start = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(fn())
    return out, (time.perf_counter() - start) / reps
passes = accepted = 0
t_greedy = t_spec = 0.0
for story in stories:
    prompt = jnp.asarray(story[None, :24])
    greedy, dt = timed(lambda: generate(model, variables, prompt, jax.random.PRNGKey(0), max_new_tokens=36, temperature=0.0))
    (spec_out, stats), ds = timed(lambda: speculative_generate(model, variables, prompt, max_new_tokens=36))
    assert jnp.array_equal(greedy, spec_out), "speculative output differs from greedy"
    passes, accepted = passes + int(stats["forward_passes"]), accepted + int(stats["accepted_drafts"])
    t_greedy, t_spec = t_greedy + dt, t_spec + ds
print(f"identical to greedy on all {len(stories)} prompts; {passes} passes after the prompts, {accepted} drafts "
      f"accepted (acceptance {accepted / passes:.2f}, {36 * len(stories) / (passes + len(stories)):.2f} tokens per pass)")
print(f"greedy {36 * len(stories) / t_greedy:.0f} tok/s, speculative {36 * len(stories) / t_spec:.0f} tok/s: "
      f"speed-up {t_greedy / t_spec:.2f}x")
print("prompt      :", show(np.asarray(prompt[0])))
print("continuation:", show(np.asarray(greedy[0, 24:])))

# %% [markdown]
# ## The measured runs
# `experiments/mtp_induction.py` trains n = 1, 2, 4 for 1000 steps and records steps until 90%
# induction accuracy and the decoding numbers in `experiments/results/mtp_induction.json`:

# %%
path = os.path.join(REPO, "experiments", "results", "mtp_induction.json")
if os.path.exists(path):
    with open(path) as f:
        for key, r in json.load(f).items():
            d = r["decoding"] or {}
            print(f"{key:>18}: steps to 90% {r['steps_to_threshold']}, final {r['curve'][-1][1]:.3f}; "
                  f"acceptance {d.get('acceptance_rate', float('nan')):.2f}, speed-up {d.get('speed_up', float('nan')):.2f}")
