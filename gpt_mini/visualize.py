"""Show the work: plain numbers (lists, floats) for the classroom dashboard's pictures. No UI code here.

attention_maps   the trained model's attention weights for a text (the explicit attention path)
causal_mask      the lower-triangular mask for n tokens
rope_*           how rotary position embedding rotates pairs, and why q·k then depends only on the offset
model_size       parameter count, memory and FLOPs per token for a model shape
next_token_stages  one generation step's distribution before/after repetition penalty, temperature, top-k, top-p
measure_train_step  seconds for one real forward + backward + optimizer step
"""

import math
import time

import torch

from . import tokenizer as T
from .config import param_count_formula
from .generate import Settings, fit_prompt, sampling_stages
from .model import apply_rope, rope_tables

# ---- attention -----------------------------------------------------------------------------------------------

def token_text(tok, token_id: int) -> str:
    """What one token shows on its own: its text, a special token's name, or its bytes if it is part of a character."""
    if token_id < len(T.SPECIAL_TOKENS):
        return T.SPECIAL_TOKENS[token_id]
    raw = T.token_bytes(tok, token_id)
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        return "<" + raw.hex(" ") + ">"
    return text.replace(" ", "␣").replace("\n", "↵")


@torch.no_grad()
def attention_maps(model, tok, text: str, add_bos: bool = True) -> dict:
    """Run the model once on <bos>+text and collect softmax(q·kᵀ/√d) of every layer and head.
    Labels are 'index:text'; a token holding part of a character shows that character and '…'.
    Returns {"ids", "tokens" (labels), "weights": [layer][head][query][key] floats, "n_layer", "n_head"}.
    Row i of a map is what token i looks at; with the causal mask everything right of the diagonal is 0."""
    rows = T.explain(tok, text)
    pieces = ["<bos>"] * add_bos + [r["text"].replace(" ", "␣").replace("\n", "↵") + "…" * r["partial"] for r in rows]
    ids = ([T.BOS_ID] if add_bos else []) + [r["id"] for r in rows]
    ids, pieces = (ids, pieces) if ids else ([T.BOS_ID], ["<bos>"])
    ids, pieces = ids[: model.seq_len], pieces[: model.seq_len]
    model.eval()
    device = next(model.parameters()).device
    collected: list = []
    model(torch.tensor([ids], device=device), weights_out=collected)  # weights_out forces the explicit path
    weights = [layer[0].float().cpu().tolist() for layer in collected]  # each (H, T, T)
    return {"ids": ids, "tokens": [f"{i}:{p}" for i, p in enumerate(pieces)], "weights": weights,
            "n_layer": len(weights), "n_head": len(weights[0]) if weights else 0}


def causal_mask(n: int) -> list[list[int]]:
    """1 where query i may look at key j (j <= i), 0 where the future is hidden: the lower triangle."""
    return torch.tril(torch.ones(n, n, dtype=torch.int64)).tolist()


# ---- RoPE ----------------------------------------------------------------------------------------------------

def rope_frequencies(head_dim: int, base: float = 10000.0) -> dict:
    """One rotation frequency per (even, odd) pair: θ_i = base^(-2i/head_dim) radians per position.
    Early pairs turn fast (short wavelength: nearby order), late pairs slowly (long-range position)."""
    cos, sin = rope_tables(head_dim, 2, base)
    freqs = torch.atan2(sin[1], cos[1])  # angle at position 1 = the frequency itself
    return {"pair": list(range(head_dim // 2)), "freq": freqs.tolist(),
            "wavelength": [2 * math.pi / f for f in freqs.tolist()]}


def rope_rotation(head_dim: int, freq_index: int, positions: int = 32, base: float = 10000.0,
                  pair=(1.0, 0.0)) -> dict:
    """Where one (x, y) pair ends up at positions 0..positions-1: rotated by position × θ_freq_index.
    Uses the model's own apply_rope on a vector that is zero except for that pair."""
    if not 0 <= freq_index < head_dim // 2:
        raise ValueError(f"freq_index must be in [0, {head_dim // 2})")
    cos, sin = rope_tables(head_dim, positions, base)
    x = torch.zeros(1, 1, positions, head_dim)
    x[..., 2 * freq_index], x[..., 2 * freq_index + 1] = pair[0], pair[1]
    out = apply_rope(x, cos, sin)[0, 0]
    xs, ys = out[:, 2 * freq_index].tolist(), out[:, 2 * freq_index + 1].tolist()
    return {"position": list(range(positions)), "x": xs, "y": ys,
            "angle": [p * float(torch.atan2(sin[1, freq_index], cos[1, freq_index])) for p in range(positions)],
            "length": [math.hypot(a, b) for a, b in zip(xs, ys)]}


def qk_vs_offset(head_dim: int = 64, max_offset: int = 32, starts=(0, 10, 40), seed: int = 0,
                 base: float = 10000.0) -> dict:
    """q·k after RoPE for a query at position s + offset and a key at position s, for several start positions s.
    The curves lie on top of each other: the score depends only on the offset, not on where the pair sits.
    Returns {"offset", "scores": {start: [...]}, "max_difference"}."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(head_dim, generator=g), torch.randn(head_dim, generator=g)
    n = max(starts) + max_offset + 1
    cos, sin = rope_tables(head_dim, n, base)
    rq = apply_rope(q.expand(1, 1, n, head_dim), cos, sin)[0, 0]  # q placed at every position
    rk = apply_rope(k.expand(1, 1, n, head_dim), cos, sin)[0, 0]
    offsets = list(range(max_offset + 1))
    scores = {s: [float(rq[s + o] @ rk[s]) for o in offsets] for s in starts}
    ref = scores[starts[0]]
    diff = max(abs(a - b) for s in starts for a, b in zip(scores[s], ref))
    return {"offset": offsets, "scores": scores, "max_difference": diff}


# ---- size, memory, compute -----------------------------------------------------------------------------------

def model_size(n_layer: int, n_head: int, n_embd: int, seq_len: int, vocab: int) -> dict:
    """Parameters N = V·d + L·(12d²+11d) + d, memory in bytes (fp32), FLOPs per token.
    Per block: q,k,v,proj 4d²+4d, MLP 8d²+5d (d→4d→d with biases), two RMSNorm gains 2d.
    FLOPs: a multiply-add is 2 FLOPs, so the forward pass costs 2N per token for the weights
    (the tied output layer included), plus attention scores q·kᵀ and the weighted sum of values,
    2·T·d each per layer: 4·L·T·d. Backward costs twice the forward: training = 3 × forward = 6N + 12·L·T·d."""
    V, d, L, Tn = vocab, n_embd, n_layer, seq_len
    n = param_count_formula(V, d, L)
    attn_fwd = 4 * L * Tn * d
    return {
        "params": n,
        "formula": f"V·d + L·(12d²+11d) + d = {V}·{d} + {L}·(12·{d}² + 11·{d}) + {d} = {n:,}",
        "parts": {"embedding": V * d, "blocks": L * (12 * d * d + 11 * d), "final_norm": d},
        "head_dim": d // n_head if n_head else 0,
        "weights_bytes": 4 * n,  # fp32
        # int8 weights + one fp32 scale per row + the fp32 rest (biases, norm gains), as checkpoint.quantize_int8
        "int8_bytes": (V * d + 12 * L * d * d) + 4 * (V + 9 * L * d) + 4 * (11 * L * d + d),
        "grads_bytes": 4 * n,
        "adamw_bytes": 8 * n,  # two fp32 moments per parameter
        "train_bytes": 16 * n,  # weights + gradients + AdamW moments (activations not included)
        "flops_forward_per_token": 2 * n + attn_fwd,
        "flops_train_per_token": 6 * n + 3 * attn_fwd,
        "flops_attention_train": 3 * attn_fwd,
    }


@torch.no_grad()
def next_token_stages(model, tok, prompt: str, answer_ids, step: int, s: Settings, top: int = 12,
                      history=()) -> dict:
    """Recompute one generation step and return the probability of the most likely tokens after each stage
    of gpt_mini.generate.sampling_stages (raw = after masks and repetition penalty, temperature, top-k, top-p)."""
    s = s.check()
    ids, _ = fit_prompt(tok, prompt, model.seq_len, min(s.max_new_tokens, model.seq_len // 2), history)
    answer_ids = list(answer_ids)[:step]
    x = torch.tensor([(ids + answer_ids)[-model.seq_len:]], device=next(model.parameters()).device)
    model.eval()
    logits, _ = model(x)
    stages = sampling_stages(logits[0, -1].cpu(), answer_ids, step, s)
    probs = {name: torch.softmax(v, dim=-1) for name, v in stages.items()}
    order = torch.topk(probs["raw"], min(top, probs["raw"].numel())).indices.tolist()
    for name in ("top_p", "top_k"):  # make sure every token that survives filtering is shown
        for i in torch.nonzero(probs[name] > 0).flatten().tolist():
            if i not in order and len(order) < top + 8:
                order.append(i)
    tokens = [token_text(tok, i) for i in order]
    return {"ids": order, "tokens": tokens, "probs": {name: [float(p[i]) for i in order] for name, p in probs.items()},
            "kept": {name: int((p > 0).sum()) for name, p in probs.items()}}


def measure_train_step(cfg: dict, repeats: int = 3) -> dict:
    """Time real training steps of cfg's model: Trainer.train_step itself (the loop users run, with its precision,
    clipping and accumulation) on the course data. Returns seconds per step, the tokens in a step, and the seconds
    to build the Trainer (data, model) and for one evaluation (held-out losses and the probe answers)."""
    from .data import PROBE_QUESTIONS
    from .train import Trainer

    t0 = time.perf_counter()
    trainer = Trainer(cfg, save_dir=None, keep_resume=False)
    setup = time.perf_counter() - t0
    times, tokens = [], 0
    for r in range(repeats + 1):  # the first step warms up and is not counted
        before, t0 = trainer.tokens_seen, time.perf_counter()
        trainer.train_step()
        if r:
            times.append(time.perf_counter() - t0)
            tokens += trainer.tokens_seen - before
    sec = sorted(times)[len(times) // 2]
    # One evaluation, from a part of it: 64 held-out rows and one probe question, scaled up to the whole.
    held_out = trainer.val_samples + trainer.unseen_samples
    t0 = time.perf_counter()
    trainer.evaluate(held_out[:64])
    eval_seconds = (time.perf_counter() - t0) * len(held_out) / max(1, min(64, len(held_out)))
    t0 = time.perf_counter()
    trainer.probe_questions = trainer.probe_questions[:1]
    trainer.probe()
    eval_seconds += (time.perf_counter() - t0) * len(PROBE_QUESTIONS)
    return {"seconds_per_step": sec, "tokens_per_step": tokens / repeats, "params": trainer.num_params(),
            "precision": trainer.precision, "setup_seconds": setup, "seconds_per_eval": eval_seconds}
