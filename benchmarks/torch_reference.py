"""The default decoder written in plain PyTorch: what a user would otherwise run on this CPU.

Same architecture as jaxformers' decoder (pre-norm RMSNorm, RoPE, GQA attention, SwiGLU, untied
head), same sizes, AdamW; used by train_throughput.py for a side-by-side tokens/s ratio.
"""

import time

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale


def rope(x, base=10000.0):
    b, t, h, d = x.shape
    freqs = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * freqs
    sin, cos = ang.sin()[None, :, None], ang.cos()[None, :, None]
    x1, x2 = x.chunk(2, -1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Block(nn.Module):
    def __init__(self, d, heads, kv_heads, hidden):
        super().__init__()
        self.h, self.kvh, self.hd = heads, kv_heads, d // heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)

    def forward(self, x):
        b, t, _ = x.shape
        y = self.n1(x)
        q = rope(self.q(y).view(b, t, self.h, self.hd))
        k = rope(self.k(y).view(b, t, self.kvh, self.hd))
        v = self.v(y).view(b, t, self.kvh, self.hd)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
            enable_gqa=True,
        )
        x = x + self.o(att.transpose(1, 2).reshape(b, t, -1))
        y = self.n2(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class Decoder(nn.Module):
    def __init__(self, vocab, d, layers, heads, kv_heads, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, kv_heads, hidden) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def make_train_step(*, vocab, d, layers, heads, kv_heads, hidden, batch, seq, compile=False):
    """(step, parameter count): `step()` runs one AdamW training step (clip 1) on a fixed batch."""
    torch.manual_seed(0)
    model = Decoder(vocab, d, layers, heads, kv_heads, hidden)
    n_params = sum(p.numel() for p in model.parameters())
    if compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tokens = torch.randint(0, 256, (batch, seq + 1))

    def step():
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, n_params


def time_train_steps(*, steps=5, **sizes):
    """Median seconds per AdamW training step (after 2 warm-up steps), and the parameter count."""
    step, n_params = make_train_step(**sizes)
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], n_params
