"""MLM-U with the paper's PAST encoder-decoder written in plain PyTorch, on jaxformers' maze data.

  python benchmarks/torch_past.py --grid=3 --steps=2000 --jax_run=runs/maze_mlmu_3_small

A fidelity check of models/encdec.py + objectives/mlm_u.py. It is written from the paper's
description (Nolte et al. 2024 §3.1-3.2; methods.md §5.2-5.4), including the parts where jaxformers
differs: pre-LayerNorm with bias, a GELU MLP of width 4d, a bias on every linear map, and an LM head
tied to the token embedding. Sizes, data and optimiser come from configs/maze_mlmu.py (the same
preset the JAX run used): the same maze splits, AdamW with the config's learning-rate schedule
(`train.state.learning_rate_schedule`), clip 1, weight decay on matrices only. It scores held-out
mazes the same way (greedy, one token per forward pass, left to right; exact match of the path
region). If this model learns much faster than the JAX one at the same budget, the JAX
implementation or its architecture choices are at fault. Writes benchmarks/results/torch_past_*.json.
Needs PyTorch, which is not a jaxformers dependency: `pip install torch` (the CPU build is enough).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs.maze_mlmu import get_config  # noqa: E402
from jaxformers.data import mazes  # noqa: E402
from jaxformers.train.state import learning_rate_schedule  # noqa: E402


def rope(x, positions, base=10000.0):
    """Rotate-half RoPE on the full head dim, in float32. x [B, H, T, D], positions [T]."""
    d = x.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = positions.float()[:, None] * inv
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    """Pre-LN block: attention (self, or cross to `memory`) then a GELU MLP; biases everywhere."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.kv, self.o = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, q_pos, memory, kv_pos, kv_visible):
        b, tq, d = x.shape
        h = self.ln1(x)
        mem = h if memory is None else memory
        q = self.q(h).view(b, tq, self.heads, -1).transpose(1, 2)
        k, v = self.kv(mem).view(b, mem.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rope(q, q_pos), rope(k, kv_pos)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=kv_visible[:, None, None, :])
        x = x + self.o(y.transpose(1, 2).reshape(b, tq, d))
        return x + self.mlp(self.ln2(x))


class PAST(nn.Module):
    def __init__(self, vocab, d, heads, layers):
        super().__init__()
        self.enc = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.dec = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.query = nn.Parameter(torch.randn(d))  # one learned vector: no token content
        self.head = nn.Linear(d, vocab)
        self.embed = nn.Embedding(vocab, d)
        self.embed.weight = self.head.weight  # tied, as PAST's tie_lmhead

    def forward(self, tokens, visible, query_positions):
        b, t = tokens.shape
        pos = torch.arange(t)
        x = self.embed(tokens)
        for block in self.enc:
            x = block(x, pos, None, pos, visible)
        memory = self.enc_ln(x)
        y = self.query.expand(b, len(query_positions), -1)
        for block in self.dec:
            y = block(y, query_positions, memory, pos, visible)
        return self.head(self.dec_ln(y))


def mlm_u_batch(tokens, n, rng):
    """Visible / predicted masks of the paper's MLM-U: r ~ U(0,1) per sequence, a path-region token
    is visible iff u < r, the prefix is always visible, padding never is."""
    path = mazes.path_mask(tokens, n).astype(bool)
    r = rng.uniform(size=(len(tokens), 1))
    shown = rng.uniform(size=tokens.shape) < r
    prefix = np.arange(tokens.shape[1]) < mazes.prefix_len(n)
    return prefix | (path & shown), path & ~shown


@torch.no_grad()
def greedy_exact_match(model, tokens, n):
    """Held-out navigation accuracy: decode the path region left to right, one token per pass."""
    p = mazes.prefix_len(n)
    region = mazes.path_mask(tokens, n).astype(bool)
    steps = int(region.sum(1).max())
    seq = torch.as_tensor(tokens.astype(np.int64))
    seq[:, p:] = mazes.PAD  # nothing of the answer is in the input, visible or not
    visible = torch.zeros(seq.shape, dtype=torch.bool)
    visible[:, :p] = True
    query = torch.arange(p, p + steps)
    for i in range(steps):
        seq[:, p + i] = model(seq, visible, query[i : i + 1])[:, 0].argmax(-1)
        visible[:, p + i] = True
    predicted = seq[:, p : p + steps].numpy()
    m = mazes.navigation_metrics(predicted, tokens, n)
    return m["exact_match"], m["token_accuracy"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--size", default="small", help="configs/maze_mlmu.py size preset")
    parser.add_argument("--steps", type=int, default=2000, help="length of the lr schedule")
    parser.add_argument("--stop_after", type=int, default=0, help="end early (0: at --steps)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num_train", type=int, default=20_000)
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--eval_mazes", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jax_run", default="", help="a jaxformers MLM-U workdir to tabulate beside")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = get_config(f"grid={args.grid},size={args.size},steps={args.steps}")
    config.learning_rate, config.data.num_train = args.lr, args.num_train
    o = mazes.data_options(config.data)
    n, length, rng = o["n"], o["length"], np.random.default_rng(args.seed)
    splits = mazes.maze_splits(n, o["num_train"], o["num_validation"], o["seed"])
    train = mazes.MazeSource(splits["train"], n, length).tokens
    held_out = mazes.MazeSource(splits["validation"][: args.eval_mazes], n, length).tokens
    m = config.model
    model = PAST(m.vocab_size, m.embed_dim, m.num_heads, m.num_layers)
    learning_rates = np.asarray(learning_rate_schedule(config)(np.arange(args.steps)))
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 1e-4},
                             {"params": others, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, 0.999))
    query = torch.arange(mazes.prefix_len(n), length)
    curve, start = [], time.perf_counter()
    last = args.stop_after or args.steps
    for step in range(1, last + 1):
        tokens = train[rng.integers(0, len(train), args.batch_size)]
        visible, predict = mlm_u_batch(tokens, n, rng)
        logits = model(torch.as_tensor(tokens.astype(np.int64)), torch.as_tensor(visible), query)
        target = torch.as_tensor(tokens[:, query.numpy()].astype(np.int64))
        weight = torch.as_tensor(predict[:, query.numpy()].astype(np.float32))
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        loss = (ce * weight).sum() / weight.sum().clamp(min=1)
        for group in opt.param_groups:
            group["lr"] = float(learning_rates[step - 1])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == last:
            model.eval()
            exact, token_acc = greedy_exact_match(model, held_out, n)
            model.train()
            curve.append({"step": step, "loss": loss.item(), "exact_match": exact,
                          "token_accuracy": token_acc, "wall_s": time.perf_counter() - start})
            print(json.dumps(curve[-1]), flush=True)
    result = {"args": vars(args), "parameters": sum(p.numel() for p in model.parameters()),
              "torch_past": curve}
    if args.jax_run:
        from jaxformers.train.metrics import read_metrics

        result["jaxformers"] = [
            {"step": r["step"], "exact_match": r["nav_exact_match"],
             "token_accuracy": r["nav_token_accuracy"]}
            for r in read_metrics(args.jax_run, "validation") if "nav_exact_match" in r]
    out = os.path.join(ROOT, "benchmarks", "results",
                       f"torch_past_{n}x{n}_d{m.embed_dim}_l{m.num_layers}_{last}of{args.steps}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
