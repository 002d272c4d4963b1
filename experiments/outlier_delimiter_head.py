"""The "no-op" head of a trained model: which attention head puts the most mass on delimiter bytes
(space, newline), its attention pattern on a validation window, and the value norms of the tokens.

  nice -n 19 python experiments/outlier_delimiter_head.py \
      --workdirs=runs/outliers/vanilla_600_d128_L4_wd0.1,runs/outliers/gated_600_d128_L4_wd0.1
      -> experiments/results/outlier_delimiter_head.{json,png}

Bondarenko, Nagel & Blankevoort 2023 (arXiv 2306.12929, §3, Fig. 1-3): outliers come from heads
that attend mostly to a delimiter token whose value is small, so the head's update is near zero.
For every layer and head this measures the mean attention mass on space / newline keys
(`ops.outliers.delimiter_attention_mass`) over `--batches` validation batches, next to the
fraction a uniform causal head would give, and the mean value norm ||x W_v|| of delimiter and
other tokens for the head's KV group. The first workdir's strongest head is plotted.
"""

import os

import _results
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxformers.data.text import EOS_ID
from jaxformers.ops import outliers
from jaxformers.ops.rope import apply_rope

NAME = "outlier_delimiter_head"
DELIMITERS = (ord(" "), ord("\n"))

flags.DEFINE_list("workdirs", ["runs/outliers/vanilla_600_d128_L4_wd0.1"], "Trained checkpoints.")
flags.DEFINE_integer("batches", 2, "Validation batches for the per-head statistics.")
flags.DEFINE_integer("window", 48, "Tokens of the plotted window (the start of the first sequence).")
FLAGS = flags.FLAGS


def load(workdir: str):
    from jaxformers.train import checkpoint as ckpt
    from jaxformers.train.experiment import Experiment

    config, variables, step = ckpt.load_variables(workdir)
    config = config.copy_and_resolve_references()
    config.evaluators = []
    if config.model.attention.qk_norm:
        raise SystemExit(f"{workdir}: model.attention.qk_norm=True is not supported here (expected False)")
    return Experiment(config), {k: v for k, v in variables.items() if v}, step


def attention_tensors(experiment, variables, batch: dict):
    """Per layer: probs [L, B, H, T, T] and values [L, B, T, K, D] of one batch."""
    cfg = experiment.model_cfg
    inputs = jnp.asarray(batch["inputs"])
    positions = jnp.asarray(
        batch.get("positions", jnp.broadcast_to(jnp.arange(inputs.shape[1]), inputs.shape))
    )
    segment_ids = batch.get("segment_ids")
    kwargs = {k: jnp.asarray(batch[k]) for k in ("positions", "segment_ids") if k in batch}

    def is_qkv(module, method):
        return method == "__call__" and tuple(module.path[-2:]) in {
            ("mixer", n) for n in ("query", "key", "value")
        }

    _, state = experiment.model.apply(
        variables, inputs, capture_intermediates=is_qkv, mutable=["intermediates"], **kwargs
    )
    mixer = state["intermediates"]["layers"]["mixer"]
    q, k, v = (mixer[n]["__call__"][0] for n in ("query", "key", "value"))  # [L, B, T, heads * D]
    hd = cfg.qk_head_dim
    q = q.reshape(*q.shape[:3], cfg.num_heads, hd)
    k = k.reshape(*k.shape[:3], cfg.kv_heads, hd)
    v = v.reshape(*v.shape[:3], cfg.kv_heads, hd)
    rope = jax.vmap(lambda x: apply_rope(x, positions, base=cfg.rope_base))
    clip = (
        {"gamma": cfg.attention.gamma, "zeta": cfg.attention.zeta}
        if cfg.attention.softmax == "clipped"
        else {}
    )
    seg = None if segment_ids is None else jnp.asarray(segment_ids)
    probs = jax.vmap(lambda q, k: outliers.attention_probabilities(q, k, segment_ids=seg, **clip))(
        rope(q), rope(k)
    )
    return probs, v


def head_statistics(experiment, variables) -> tuple[dict, dict]:
    """(per-head table, the first batch's tensors for the plot)."""
    cfg = experiment.model_cfg
    group = cfg.num_heads // cfg.kv_heads
    iterator = experiment.make_iterator("validation")
    stats = jax.jit(lambda b: attention_tensors(experiment, variables, b))
    sums = {
        "delimiter_mass": 0.0,
        "uniform_mass": 0.0,
        "eos_mass": 0.0,
        "v_norm_delim": 0.0,
        "v_norm_other": 0.0,
    }
    first = None
    for _ in range(FLAGS.batches):
        batch = {k: np.asarray(v) for k, v in next(iterator).items()}
        probs, values = jax.device_get(stats(batch))
        delim = np.isin(batch["inputs"], DELIMITERS)
        seg = None if "segment_ids" not in batch else jnp.asarray(batch["segment_ids"])
        b, t = batch["inputs"].shape  # visible keys from the mask: clipped softmax gives exact zeros
        uniform = np.asarray(outliers.uniform_attention(b, t, segment_ids=seg))  # [B, 1, T, T]
        mass = jax.vmap(outliers.delimiter_attention_mass, in_axes=(0, None))
        sums["delimiter_mass"] += np.asarray(mass(probs, delim))
        uniform_mass = np.asarray(outliers.delimiter_attention_mass(uniform, delim))  # [1]: every head
        sums["uniform_mass"] += np.broadcast_to(uniform_mass, (probs.shape[0], probs.shape[2]))  # [L, H]
        sums["eos_mass"] += np.asarray(mass(probs, batch["inputs"] == EOS_ID))
        norms = np.repeat(np.linalg.norm(values, axis=-1), group, axis=-1)  # [L, B, T, H]
        sums["v_norm_delim"] += norms[:, delim].mean(axis=1)
        sums["v_norm_other"] += norms[:, ~delim].mean(axis=1)
        if first is None:
            first = {"inputs": batch["inputs"][0], "probs": probs[:, 0], "v_norms": norms[:, 0]}
    table = {key: (value / FLAGS.batches).tolist() for key, value in sums.items()}  # [L][H]
    return table, first


def byte_label(token: int) -> str:
    return {ord(" "): "␣", ord("\n"): "⏎", EOS_ID: "<s>"}.get(
        int(token), chr(token) if 32 < token < 127 else "·"
    )


def plot(label: str, table: dict, first: dict, layer: int, head: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = min(FLAGS.window, len(first["inputs"]))
    tokens = first["inputs"][:w]
    labels = [byte_label(t) for t in tokens]
    delim = np.isin(tokens, DELIMITERS)
    fig = plt.figure(figsize=(13, 5.2))
    grid = fig.add_gridspec(2, 2, width_ratios=(1, 2.6), height_ratios=(3, 1))
    ax = fig.add_subplot(grid[:, 0])
    mass = np.asarray(table["delimiter_mass"])
    im = ax.imshow(mass, cmap="viridis", vmin=0, vmax=1)
    ax.set(xlabel="head", ylabel="layer", title=f"attention mass on ␣/⏎ keys\n({label})")
    ax.set_xticks(range(mass.shape[1]))
    ax.set_yticks(range(mass.shape[0]))
    for (i, j), value in np.ndenumerate(mass):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.6)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(first["probs"][layer, head, :w, :w], cmap="magma_r", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(w), labels, fontsize=7, family="monospace")
    ax.set_yticks(range(w)[::4], labels[::4], fontsize=7, family="monospace")
    for t in np.flatnonzero(delim):
        ax.get_xticklabels()[t].set_color("tab:blue")
    ax.set(ylabel="query", title=f"layer {layer} head {head}: attention weights (validation window)")
    ax = fig.add_subplot(grid[1, 1])
    norms = first["v_norms"][layer, :w, head]
    ax.bar(range(w), norms, color=np.where(delim, "tab:blue", "tab:gray"))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_xticks(range(w), labels, fontsize=7, family="monospace")
    ax.set(ylabel="||v||", title="value norm of each key token (blue: space / newline)")
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    figure = None
    for workdir in FLAGS.workdirs:
        experiment, variables, step = load(workdir)
        table, first = head_statistics(experiment, variables)
        mass = np.asarray(table["delimiter_mass"])
        layer, head = (int(i) for i in np.unravel_index(np.argmax(mass), mass.shape))
        label = os.path.basename(os.path.normpath(workdir))
        result = {
            "workdir": workdir,
            "step": step,
            "batches": FLAGS.batches,
            "strongest": {"layer": layer, "head": head}
            | {key: float(np.asarray(value)[layer, head]) for key, value in table.items()},
            "per_head": table,
        }
        _results.save_variant(NAME, label, result)
        print(
            f"{label} (step {step}): strongest delimiter head layer {layer} head {head}: "
            + "  ".join(f"{k}={v:.3f}" for k, v in result["strongest"].items() if k not in ("layer", "head"))
        )
        print("  delimiter mass per layer x head:\n  " + str(np.round(mass, 3)).replace("\n", "\n  "))
        if figure is None:
            figure = plot(label, table, first, layer, head)
    print("wrote", _results.save_figure(figure, NAME))


if __name__ == "__main__":
    app.run(main)
