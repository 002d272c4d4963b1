"""Where the decoder's training step spends its time, next to PyTorch eager, phase by phase.

  python benchmarks/step_phases.py [--dims=256,512 --calls=15]   (--dims: train_throughput.py's flag)

The decoder rows of train_throughput.py (4 layers, GQA, SwiGLU, batch 16 x 256, float32), timed in
three phases on both sides, interleaved, medians: the loss alone (forward), the loss and its
gradients (forward + backward), and the whole training step (+ AdamW, gradient clipping and, on the
JAX side, the step's metrics). PyTorch's forward is timed without autograd and again with the
autograd graph recorded, so "backward" is (forward + backward) - (forward with the graph) there and
(forward + backward) - (forward) for JAX. Also times causal softmax attention alone (the decoder's
per-layer shapes, forward + backward) against `F.scaled_dot_product_attention(is_causal=True)`.
Writes benchmarks/results/step_phases.json.
"""

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxformers import allocator
from jaxformers.configs_loader import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "benchmarks", "results", "step_phases.json")
flags.DEFINE_integer("calls", 15, "Interleaved timed calls per phase.")
FLAGS = flags.FLAGS
BATCH, SEQ, LAYERS, VOCAB = 16, 256, 4, 264


THROUGHPUT = load_file(os.path.join(ROOT, "benchmarks/train_throughput.py"))


def _medians_ms(fns: dict, reps: int) -> dict:
    for fn in fns.values():
        for _ in range(3):
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def jax_phases(d):
    from jaxformers.train.experiment import Experiment

    config = THROUGHPUT.decoder_config(d)
    config.mesh.update(data=1, fsdp=1, tensor=1)
    exp = Experiment(config, devices=jax.devices()[:1])
    state = [exp.fresh_state()]
    batch = exp.global_batch(next(exp.make_iterator("train")))

    def loss(params, batch):  # batch an argument: closed over, XLA would constant-fold its masks
        return exp.objective(
            exp.model, {"params": params}, batch, rng=jax.random.PRNGKey(0), step=jnp.int32(0), train=True
        )[0]

    forward, forward_backward = jax.jit(loss), jax.jit(jax.value_and_grad(loss))
    train_step, _ = exp.compile_train_step(state[0], batch)

    def step():
        state[0], metrics = train_step(state[0], batch)
        jax.block_until_ready((state[0], metrics))

    return {
        "forward": lambda: jax.block_until_ready(forward(state[0].params, batch)),
        "forward_backward": lambda: jax.block_until_ready(forward_backward(state[0].params, batch)),
        "step": step,
    }, config


def torch_phases(d, hidden):
    import torch
    import torch.nn.functional as F

    reference = load_file(os.path.join(ROOT, "benchmarks/torch_reference.py"))
    torch.manual_seed(0)
    model = reference.Decoder(VOCAB, d, LAYERS, d // 64, d // 128, hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tokens = torch.randint(0, 256, (BATCH, SEQ + 1))

    def loss():
        logits = model(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))

    def forward():
        with torch.no_grad():
            loss()

    def forward_backward():
        value = loss()
        model.zero_grad(set_to_none=True)
        value.backward()

    def step():
        forward_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return {"forward": forward, "forward_graph": loss, "forward_backward": forward_backward, "step": step}


def attention_phases(d):
    import torch
    import torch.nn.functional as F

    from jaxformers.ops.attention import dot_product_attention

    heads, kv_heads = d // 64, d // 128
    rng = np.random.default_rng(0)
    q, k, v = (
        rng.standard_normal((BATCH, SEQ, h, 64)).astype(np.float32) for h in (heads, kv_heads, kv_heads)
    )
    jq, jk, jv = map(jnp.asarray, (q, k, v))
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(dot_product_attention(q, k, v) ** 2), (0, 1, 2)))
    tq, tk, tv = (torch.tensor(a).transpose(1, 2).contiguous().requires_grad_() for a in (q, k, v))

    def torch_grad():
        tq.grad = tk.grad = tv.grad = None
        out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True, enable_gqa=True)
        (out**2).sum().backward()

    return {"jax": lambda: jax.block_until_ready(grad(jq, jk, jv)), "torch": torch_grad}


def main(argv):
    del argv
    allocator.keep_temp_buffers_in_heap()
    from jaxformers.config import model_config_from

    result = {"jax": jax.__version__, "rows": []}
    for d in map(int, FLAGS.dims):
        jax_fns, config = jax_phases(d)
        torch_fns = torch_phases(d, model_config_from(config.model).hidden_dim)
        attention = attention_phases(d)
        fns = {f"jax_{k}": f for k, f in jax_fns.items()} | {f"torch_{k}": f for k, f in torch_fns.items()}
        fns |= {f"attention_{k}": f for k, f in attention.items()}
        ms = _medians_ms(fns, FLAGS.calls)
        row = {
            "d": d,
            "load": os.getloadavg()[0],
            "ms": ms,
            "jax": {
                "forward": ms["jax_forward"],
                "backward": ms["jax_forward_backward"] - ms["jax_forward"],
                "optimizer_and_rest": ms["jax_step"] - ms["jax_forward_backward"],
            },
            "torch": {
                "forward": ms["torch_forward"],
                "backward": ms["torch_forward_backward"] - ms["torch_forward_graph"],
                "optimizer_and_rest": ms["torch_step"] - ms["torch_forward_backward"],
            },
        }
        result["rows"].append(row)
        print(f"d={d} (ms; load {row['load']:.1f})   jax / torch")
        for phase in ("forward", "backward", "optimizer_and_rest"):
            j, t = row["jax"][phase], row["torch"][phase]
            print(f"  {phase:20s} {j:8.1f} {t:8.1f}  {j / t:.2f}")
        print(
            f"  {'whole step':20s} {ms['jax_step']:8.1f} {ms['torch_step']:8.1f}  "
            f"{ms['jax_step'] / ms['torch_step']:.2f}"
        )
        print(
            f"  {'attention fwd+bwd':20s} {ms['attention_jax']:8.1f} {ms['attention_torch']:8.1f}  "
            f"{ms['attention_jax'] / ms['attention_torch']:.2f}  (one layer; x{LAYERS} per step)"
        )
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    app.run(main)
