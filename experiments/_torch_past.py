"""The paper's PAST encoder-decoder for MLM-U in plain PyTorch: the twin that
experiments/maze_torch_past.py trains next to jaxformers' models/encdec.py.

Written from the paper's description (Nolte et al. 2024 §3.1-3.2), including the parts where
jaxformers differs: pre-LayerNorm with bias, a GELU MLP of width 4d, a bias on every linear map, and
an LM head tied to the token embedding. Needs PyTorch (`pip install torch`, the CPU build is enough).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxformers.data import mazes
from jaxformers.data.maze_navigation import navigation_metrics


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
    m = navigation_metrics(predicted, tokens, n)
    return m["exact_match"], m["token_accuracy"]
