"""A decoder-only GPT in one page: read it top to bottom.

Token ids -> embedding -> L x [RMSNorm -> causal self-attention (+RoPE) -> RMSNorm -> SiLU MLP] -> RMSNorm
-> logits via the same embedding matrix (weight tying). Parameters: V·d + L·(12d² + 11d) + d.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain. No mean, no bias: cheaper than LayerNorm."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim: int, max_len: int, base: float = 10000.0):
    """cos/sin of angle = position x frequency, one frequency per (even, odd) pair of dimensions."""
    freqs = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)  # (head_dim/2,)
    angles = torch.outer(torch.arange(max_len).float(), freqs)  # (max_len, head_dim/2)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate each pair (x0, x1) by its angle. x: (B, H, T, hd); cos/sin: (T, hd/2), or (B, T, hd/2) per row.
    A rotation keeps the vector's length, and q·k then depends only on the distance between positions."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # same angles for every head
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2)


class CausalSelfAttention(nn.Module):
    """Each position mixes the values of itself and earlier positions, weighted by softmax(q·k / sqrt(hd))."""

    def __init__(self, n_embd: int, n_head: int, seq_len: int, dropout: float):
        super().__init__()
        self.n_head, self.head_dim = n_head, n_embd // n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)  # q, k, v for all heads in one matrix
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        # The causal mask: position i may look at positions 0..i only (lower triangle of ones).
        self.register_buffer("mask", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)), persistent=False)
        self.causal = True  # False only for the classroom demo of why the mask exists
        self.fused = True  # use F.scaled_dot_product_attention when we need no weights (same math, faster)

    def forward(self, x, cos, sin, mask=None, cache=None, weights_out=None):
        """cos/sin: rotations for these positions. mask: True where a query may see a key; None = causal."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # KV cache: keep keys and values of earlier tokens, compute only the new ones
            if "k" in cache:
                k, v = torch.cat((cache["k"], k), dim=2), torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = k, v
        S = k.shape[2]  # number of keys: cached ones plus the new ones
        triangle = mask is None and self.causal
        if triangle:
            mask = self.mask[S - T:S, :S]  # the new queries sit at the end of the sequence
        p = self.dropout if self.training else 0.0
        # SDPA is fastest without a mask (its causal kernel) and when generating; on the CPU, training with a mask
        # (packed rows) or under bf16 autocast runs faster on the explicit path.
        if (self.fused and weights_out is None and not torch.is_autocast_enabled("cpu")
                and (triangle or not self.training)):
            plain = triangle and S == T  # no cache: SDPA's own causal kernel is fastest
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if plain else mask, dropout_p=p,
                                               is_causal=plain and T > 1)
        else:  # the explicit path: the lecture version, and the one that can show its weights
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, S)
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))  # hidden keys get zero weight
            att = F.softmax(att, dim=-1)
            if weights_out is not None:
                weights_out.append(att.detach())
            y = F.dropout(att, p) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.proj(y)


class MLP(nn.Module):
    """Per-position feed-forward network: widen to 4d, SiLU, back to d."""

    def __init__(self, n_embd: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.proj(F.silu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, n_embd, n_head, seq_len, dropout):
        super().__init__()
        self.norm1, self.attn = RMSNorm(n_embd), CausalSelfAttention(n_embd, n_head, seq_len, dropout)
        self.norm2, self.mlp = RMSNorm(n_embd), MLP(n_embd, dropout)

    def forward(self, x, cos, sin, mask=None, cache=None, weights_out=None):
        x = x + self.attn(self.norm1(x), cos, sin, mask, cache, weights_out)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, n_layer=4, n_head=4, n_embd=256, seq_len=128, dropout=0.0, causal=True,
                 generator=None):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, seq_len, dropout) for _ in range(n_layer))
        self.norm = RMSNorm(n_embd)
        cos, sin = rope_tables(n_embd // n_head, seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.set_causal(causal)
        # Small GPT-2 style initialisation: with std 1 embeddings and tied weights the first loss is far above
        # chance (ln V) and many early steps only undo that. Residual outputs are scaled by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std, generator=generator)  # generator: the caller's seed

    def set_causal(self, causal: bool):
        for block in self.blocks:
            block.attn.causal = causal

    def forward(self, idx, targets=None, cache=None, weights_out=None, pad=None, docs=None):
        """idx (B, T) token ids -> logits (B, T, V); with targets, also the mean cross-entropy over targets != -100.
        cache: list of dicts, one per layer, for step-by-step generation. weights_out: list that collects
        each layer's attention weights (B, H, T, T). pad: (B,) left-padding per row when many questions
        share one batch (serving): each row counts positions from its first real token and never sees pads.
        docs: (B, T) sample number of each token when several samples are packed into one row (training)."""
        T, start = idx.shape[1], cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        index = torch.arange(start, start + T, device=idx.device)
        pos, mask = index, None  # mask None: the plain causal triangle
        if docs is not None:  # packed: a sample sees only its own earlier tokens and counts from its own start
            first = torch.ones_like(docs[:, :1], dtype=torch.bool)
            begins = torch.cat((first, docs[:, 1:] != docs[:, :-1]), dim=1)
            pos = index - torch.where(begins, index, 0).cummax(dim=1).values  # (B, T)
            mask = ((docs[:, :, None] == docs[:, None, :]) & self.blocks[0].attn.mask[:T, :T])[:, None]
        if pad is not None:
            pos = (index - pad[:, None]).clamp(min=0)  # (B, T)
            keys = torch.arange(start + T, device=idx.device)
            seen = (keys >= pad[:, None, None]) | (keys == index[:, None])  # a pad query sees only itself
            mask = ((keys <= index[:, None]) & seen)[:, None]  # (B, 1, T, S), same for every head
        x = self.drop(self.tok_emb(idx))
        for i, block in enumerate(self.blocks):
            x = block(x, self.rope_cos[pos], self.rope_sin[pos], mask, None if cache is None else cache[i],
                      weights_out)
        logits = F.linear(self.norm(x), self.tok_emb.weight)  # weight tying: output layer = embedding
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
