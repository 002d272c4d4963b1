"""Training throughput and MFU on this CPU: jaxformers with its CPU fast paths off ("before") and on
("after", the default), next to the same model in PyTorch eager.

  python benchmarks/train_throughput.py                  # every row, 3 interleaved repetitions
  python benchmarks/train_throughput.py --rows=decoder --dims=256,512 --reps=5
  python benchmarks/train_throughput.py --noheap         # glibc's default malloc (see below)

Rows (batch and sequence of each config):
- decoder d=256 / d=512: 4 layers, GQA, SwiGLU, batch 16 x 256 (benchmarks/torch_reference.py);
- gla: configs/gla_lm.py size=small (d=128, 4 layers, batch 16 x 128), no PyTorch twin;
- encdec: configs/maze_mlmu.py grid=5 size=small (MLM-U PAST 2x4 layers, d=128, batch 64) against
  the PyTorch PAST of experiments/_torch_past.py on the same maze batch. The two differ as that file
  says (LayerNorm + GELU MLP 4d + biases there; RMSNorm + SwiGLU here), so FLOPs differ a little;
- mot: configs/mot.py (2 modalities, grouped dispatch) against configs/mot_dense_baseline.py.

"before" = `model.weight_grad_matmul="xla"`, `model.layer_loop="scan"` and
`model.attention.causal_blocks="off"`; "after" = all three "auto" (on for the CPU); "after, full
square" = "after" with the causal blocks off (what they add).
`--heap` (default) calls `jaxformers.allocator.keep_temp_buffers_in_heap()` first, as
`launch/train.py` does, so it applies to every column of the run; `--noheap` measures glibc's
default. The variants run interleaved (order reversed on every other repetition) after compiling
and 6 warm-up steps each; the table gives the median step over all repetitions. FLOPs are the
matmul FLOPs of the jaxpr (train/flops.py); MFU is against this run's measured 2048^3 float32
matmul through XLA. Writes benchmarks/results/train_throughput[_<tag>].json.
"""

import copy
import json
import os
import platform
import time

import numpy as np
from absl import app, flags

from jaxformers import allocator
from jaxformers.configs_loader import load_config, load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("rows", ["decoder", "gla", "encdec", "mot"], "Which rows to run.")
flags.DEFINE_list("dims", ["256", "512"], "Widths of the decoder rows.")
flags.DEFINE_integer("steps", 3, "Timed steps per variant per repetition.")
flags.DEFINE_integer("reps", 3, "Interleaved repetitions.")
flags.DEFINE_bool("heap", True, "Keep XLA's temp buffers in the heap (jaxformers.allocator).")
flags.DEFINE_bool("torch", True, "Time the PyTorch twins (needs torch).")
flags.DEFINE_string("tag", "", "Suffix of the results file name.")
flags.DEFINE_bool("full_square", True, "Adds an 'after, full square' decoder variant: the fast "
                  "paths with causal block skipping off (model.attention.causal_blocks='off').")
FLAGS = flags.FLAGS

BEFORE = {"weight_grad_matmul": "xla", "layer_loop": "scan", "attention": {"causal_blocks": "off"}}
FULL_SQUARE = {"attention": {"causal_blocks": "off"}}
WARMUP = 6  # the heap reaches its high-water mark within a few steps


def peak_matmul_flops(n=2048, repeats=10):
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def timed(step, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def jax_variant(config, overrides):
    """(step closure, matmul FLOPs per step, parameter count, tokens per step)."""
    import jax

    from jaxformers.train.experiment import Experiment

    config = copy.deepcopy(config)
    config.model.update(overrides)
    config.mesh.update(data=1, fsdp=1, tensor=1)
    exp = Experiment(config, devices=jax.devices()[:1])
    state = [exp.fresh_state()]
    batch = exp.global_batch(next(exp.make_iterator("train")))
    step_fn, flops = exp.compile_train_step(state[0], batch)

    def step():
        state[0], metrics = step_fn(state[0], batch)
        jax.block_until_ready((state[0], metrics))

    timed(step, WARMUP)
    n_params = sum(x.size for x in jax.tree.leaves(state[0].params))
    tokens = config.batch_size * int(np.prod(exp.example_batch["inputs"].shape[1:]))
    return step, flops, n_params, tokens


def decoder_config(d):
    """The decoder row's config (and benchmarks/step_phases.py's): 4 layers, GQA, batch 16 x 256."""
    from jaxformers.testing import tiny_train_config

    config = tiny_train_config(batch_size=16, num_steps=1000)
    config.model.update(dict(embed_dim=d, num_layers=4, num_heads=d // 64, num_kv_heads=d // 128,
                             max_len=256, vocab_size=264))
    config.data = dict(name="synthetic", seq_len=256, vocab=256, num_records=4096)
    return config


def decoder_row(d):
    config = decoder_config(d)
    sizes = config.model
    variants = {"before": jax_variant(config, BEFORE), "after": jax_variant(config, {})}
    if FLAGS.full_square:
        variants["after, full square"] = jax_variant(config, FULL_SQUARE)
    if FLAGS.torch:
        torch_reference = load_file(os.path.join(ROOT, "benchmarks/torch_reference.py"))
        from jaxformers.config import model_config_from

        hidden = model_config_from(config.model).hidden_dim
        step, n_params = torch_reference.make_train_step(
            vocab=264, d=d, layers=4, heads=sizes["num_heads"], kv_heads=sizes["num_kv_heads"],
            hidden=hidden, batch=16, seq=256)
        timed(step, 2)
        variants["torch"] = (step, variants["after"][1], n_params, 16 * 256)
    return f"decoder d={d}", variants


def gla_row():
    config = load_config(os.path.join(ROOT, "configs/gla_lm.py"), "size=small")
    config.data = dict(name="synthetic", seq_len=config.data.seq_len, vocab=256, num_records=4096)
    return "gla d=128", {"before": jax_variant(config, BEFORE), "after": jax_variant(config, {})}


def past_train_step(config):
    """One MLM-U AdamW step of the PyTorch PAST on a fixed maze batch (maze_torch_past.py's step)."""
    import torch
    import torch.nn.functional as F

    from jaxformers.data import mazes

    past = load_file(os.path.join(ROOT, "experiments/_torch_past.py"))
    o = mazes.data_options(config.data)
    n, length, rng = o["n"], o["length"], np.random.default_rng(0)
    splits = mazes.maze_splits(n, 2 * config.batch_size, 16, o["seed"])
    tokens = mazes.MazeSource(splits["train"], n, length).tokens[: config.batch_size]
    m = config.model
    torch.manual_seed(0)
    model = past.PAST(m.vocab_size, m.embed_dim, m.num_heads, m.num_layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    query = torch.arange(mazes.prefix_len(n), length)
    visible, predict = past.mlm_u_batch(tokens, n, rng)
    inputs, visible = torch.as_tensor(tokens.astype(np.int64)), torch.as_tensor(visible)
    target = torch.as_tensor(tokens[:, query.numpy()].astype(np.int64))
    weight = torch.as_tensor(predict[:, query.numpy()].astype(np.float32))

    def step():
        logits = model(inputs, visible, query)
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        loss = (ce * weight).sum() / weight.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def encdec_row():
    config = load_config(os.path.join(ROOT, "configs/maze_mlmu.py"), "grid=5,size=small")
    config.data.num_train, config.data.num_validation = 2 * config.batch_size, 16
    config.evaluators = ()
    variants = {"before": jax_variant(config, BEFORE), "after": jax_variant(config, {})}
    if FLAGS.torch:
        step, n_params = past_train_step(config)
        timed(step, 2)
        variants["torch"] = (step, float("nan"), n_params, variants["after"][3])
    return "encdec MLM-U d=128", variants


def mot_row():
    mot = load_config(os.path.join(ROOT, "configs/mot.py"), "size=small")
    dense = load_config(os.path.join(ROOT, "configs/mot_dense_baseline.py"), "size=small")
    return "mot K=2 grouped d=128", {
        "before": jax_variant(mot, BEFORE), "after": jax_variant(mot, {}),
        "dense before": jax_variant(dense, BEFORE), "dense after": jax_variant(dense, {})}


def main(argv):
    del argv
    heap = FLAGS.heap and allocator.keep_temp_buffers_in_heap()  # before the backend starts
    import jax

    peak = peak_matmul_flops()
    builders = []
    for name in FLAGS.rows:
        if name == "decoder":
            builders += [lambda d=int(d): decoder_row(d) for d in FLAGS.dims]
        else:
            builders.append({"gla": gla_row, "encdec": encdec_row, "mot": mot_row}[name])
    rows = []
    for build in builders:
        title, variants = build()
        times = {k: [] for k in variants}
        for rep in range(FLAGS.reps):
            order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
            for k in order:
                times[k] += timed(variants[k][0], FLAGS.steps)
        row = dict(row=title, loadavg=os.getloadavg())
        for k, (_, flops, n_params, tokens) in variants.items():
            step_s = float(np.median(times[k]))
            row[k] = dict(step_s=step_s, tokens_per_s=tokens / step_s, flops_per_step=flops,
                          mfu=flops / step_s / peak, params=int(n_params), steps=times[k])
        rows.append(row)
        print_row(row, flush=True)
        del variants
    result = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                  python=platform.python_version(), jax=jax.__version__, heap=heap,
                  peak_matmul_gflops=peak / 1e9, reps=FLAGS.reps, steps=FLAGS.steps, rows=rows)
    name = "train_throughput" + (f"_{FLAGS.tag}" if FLAGS.tag else "") + ".json"
    out = os.path.join(ROOT, "benchmarks", "results", name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    plot(result, out[: -len(".json")] + ".png")
    print(f"peak float32 matmul (XLA, 2048^3): {peak / 1e9:.0f} GFLOP/s; jax {jax.__version__}; "
          f"heap={heap}; wrote {out}")


def plot(result, path):
    """Tokens/s of every variant of every row, normalised to the fast-paths-off column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    kinds = sorted({k for r in rows for k in r if isinstance(r[k], dict)}, key=list(VARIANT_ORDER).index)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        xs = [j + i * width for j, r in enumerate(rows) if kind in r]
        ys = [r[kind]["tokens_per_s"] / r["before"]["tokens_per_s"] for r in rows if kind in r]
        ax.bar(xs, ys, width, label=kind)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], [r["row"] for r in rows], fontsize=8)
    ax.set_ylabel("tokens/s / fast paths off")
    ax.set_title(f"training throughput, jax {result['jax']}, Python {result['python']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


VARIANT_ORDER = ("before", "after", "after, full square", "after + blocks", "torch", "dense before",
                 "dense after")  # fmt: skip ("after + blocks": results files before causal_blocks)


def print_row(row, flush=False):
    cols = [k for k in row if isinstance(row[k], dict)]
    cells = []
    for k in cols:
        r = row[k]
        mfu = "" if np.isnan(r["mfu"]) else f" MFU {r['mfu']:.0%}"
        cells.append(f"{k}: {r['tokens_per_s']:.0f} tok/s{mfu}")
    ratios = []
    if "torch" in row:
        ratios.append(f"after/torch {row['torch']['step_s'] / row['after']['step_s']:.2f}")
        ratios.append(f"before/torch {row['torch']['step_s'] / row['before']['step_s']:.2f}")
        if "after, full square" in row:
            full_square = row["after, full square"]["step_s"]
            ratios.append(f"full square/torch {row['torch']['step_s'] / full_square:.2f}")
    ratios.append(f"after/before {row['before']['step_s'] / row['after']['step_s']:.2f}")
    if "dense after" in row:
        flop_ratio = row["after"]["flops_per_step"] / row["dense after"]["flops_per_step"]
        ratios.append(f"FLOPs MoT/dense {flop_ratio:.3f}")
        ratios.append(f"tok/s MoT/dense {row['dense after']['step_s'] / row['after']['step_s']:.2f}")
    print(f"{row['row']:<22} " + " | ".join(cells) + " || " + ", ".join(ratios)
          + f" (load {row['loadavg'][0]:.1f})", flush=flush)


if __name__ == "__main__":
    app.run(main)
