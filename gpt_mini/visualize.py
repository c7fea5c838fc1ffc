"""Show the work: plain numbers (lists, floats) for the classroom dashboard's pictures. No UI code here.

attention_maps   the trained model's attention weights for a text (the explicit attention path)
causal_mask      the lower-triangular mask for n tokens
rope_*           how rotary position embedding rotates pairs, and why q·k then depends only on the offset
model_size       parameter count, memory and FLOPs per token for a model shape
next_token_stages  one generation step's distribution before/after repetition penalty, temperature, top-k, top-p
trace            one forward pass with every intermediate (stage_view: one stage's values, formula and a number
                 worked out by hand; trace_json: bounded JSON; CLI: python -m gpt_mini.visualize --trace "问题")
logit_lens_compare  the logit lens of several models side by side (a run's step 0, 25% and final model)
bench_stages     milliseconds to trace and show every stage (CLI: python -m gpt_mini.visualize --bench)
"""

import math
import statistics
import time

import torch
import torch.nn.functional as F

from . import tokenizer as bpe
from .checkpoint import model_from_config
from .config import param_count_formula
from .data import prompt_prefix
from .errors import UserError, run_cli
from .generate import Settings, fit_prompt, sampling_stages
from .model import apply_rope, rope_tables

# ---- attention -----------------------------------------------------------------------------------------------

def token_text(tok, token_id: int) -> str:
    """What one token shows on its own: its text, a special token's name, or its bytes if it is part of a character."""
    if token_id < len(bpe.SPECIAL_TOKENS):
        return bpe.SPECIAL_TOKENS[token_id]
    raw = bpe.token_bytes(tok, token_id)
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        return "<" + raw.hex(" ") + ">"
    return text.replace(" ", "␣").replace("\n", "↵")


def token_pieces(tok, text: str, add_bos: bool = True) -> tuple[list[int], list[str]]:
    """(ids, pieces) of <bos>+text; a token holding part of a character shows that character and '…'."""
    rows = bpe.explain(tok, text)
    pieces = ["<bos>"] * add_bos + [r["text"].replace(" ", "␣").replace("\n", "↵") + "…" * r["partial"] for r in rows]
    ids = ([bpe.BOS_ID] if add_bos else []) + [r["id"] for r in rows]
    return (ids, pieces) if ids else ([bpe.BOS_ID], ["<bos>"])


@torch.no_grad()
def attention_maps(model, tok, text: str, add_bos: bool = True) -> dict:
    """Run the model once on <bos>+text and collect softmax(q·kᵀ/√d) of every layer and head.
    Labels are 'index:text'; a token holding part of a character shows that character and '…'.
    Returns {"ids", "tokens" (labels), "weights": [layer][head][query][key] floats, "n_layer", "n_head"}.
    Row i of a map is what token i looks at; with the causal mask everything right of the diagonal is 0."""
    ids, pieces = token_pieces(tok, text, add_bos)
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

def model_size(n_layer: int, n_head: int, n_embd: int, seq_len: int, vocab: int, optimizer: str = "muon") -> dict:
    """Parameters N = V·d + L·(12d²+11d) + d, memory in bytes (fp32), FLOPs per token.
    Per block: q,k,v,proj 4d²+4d, MLP 8d²+5d (d→4d→d with biases), two RMSNorm gains 2d.
    Optimizer state (optim.make_optimizer): AdamW keeps two fp32 moments per parameter (8N); with Muon the M = 12·L·d²
    block matrices keep one momentum (4M) and AdamW the rest (8(N-M)).
    FLOPs: a multiply-add is 2 FLOPs, so the forward pass costs 2N per token for the weights
    (the tied output layer included), plus attention scores q·kᵀ and the weighted sum of values,
    2·T·d each per layer: 4·L·T·d. Backward costs twice the forward: training = 3 × forward = 6N + 12·L·T·d."""
    V, d, L, Tn = vocab, n_embd, n_layer, seq_len
    n = param_count_formula(V, d, L)
    attn_fwd = 4 * L * Tn * d
    muon = 12 * L * d * d if optimizer == "muon" else 0
    optimizer_bytes = 4 * muon + 8 * (n - muon)
    return {
        "params": n,
        "formula": f"V·d + L·(12d²+11d) + d = {V}·{d} + {L}·(12·{d}² + 11·{d}) + {d} = {n:,}",
        "parts": {"embedding": V * d, "blocks": L * (12 * d * d + 11 * d), "final_norm": d},
        "head_dim": d // n_head if n_head else 0,
        "weights_bytes": 4 * n,  # fp32
        # int8 weights + one fp32 scale per row + the fp32 rest (biases, norm gains), as checkpoint.quantize_int8
        "int8_bytes": (V * d + 12 * L * d * d) + 4 * (V + 9 * L * d) + 4 * (11 * L * d + d),
        "grads_bytes": 4 * n,
        "muon_params": muon,
        "optimizer_bytes": optimizer_bytes,
        "train_bytes": 8 * n + optimizer_bytes,  # weights + gradients + optimizer state (activations not included)
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


# ---- one forward pass, every number --------------------------------------------------------------------------

TRACE_TOKENS = 24  # short enough that every number of every stage can be shown
STAGES = ("tokens", "embedding", "norm", "qkv", "rope", "scores", "mask", "softmax", "weighted", "residual1", "mlp",
          "residual2", "final_norm", "logits", "top")
LAYER_STAGES = STAGES[2:12]  # these repeat in every layer
MAX_COLS = 256  # heatmap columns shown (the MLP's 4d hidden units are cut to the first 256)


def _trace_input(model, tok, text: str, max_tokens: int) -> tuple[list[int], list[str]]:
    """(ids, pieces) of the chat prompt <bos>用户:{text}\\n助手:, cut to its last max_tokens tokens."""
    if not (text or "").strip():
        raise UserError("请输入一个问题", "type a question first")
    ids, pieces = token_pieces(tok, prompt_prefix(text))
    keep = min(max_tokens, model.seq_len)
    return ids[-keep:], pieces[-keep:]


@torch.no_grad()
def trace(model, tok, text: str, max_tokens: int = TRACE_TOKENS) -> dict:
    """One forward pass written out with the model's own modules and weights, keeping every intermediate.
    The input is the chat's prompt <bos>用户:{text}\\n助手:, cut to its last max_tokens tokens (positions start at 0).
    Tensors have no batch dimension: vectors (T, d), per head (H, T, hd), attention maps (H, T, T).
    The operations and their order are model.forward's, so the logits equal model(idx)'s (the tests check)."""
    ids, pieces = _trace_input(model, tok, text, max_tokens)
    model.eval()
    idx = torch.tensor([ids], device=next(model.parameters()).device)
    n, C = len(ids), model.tok_emb.embedding_dim
    cos, sin = model.rope_cos[:n], model.rope_sin[:n]
    x = model.drop(model.tok_emb(idx))
    embedding, layers, lens = x[0], [], [{"layer": -1, "top": _decode_top(model, tok, x[0, -1])}]
    for i, block in enumerate(model.blocks):
        a, m = block.attn, block.mlp
        h = block.norm1(x)
        q, k, v = (t.view(1, n, a.n_head, a.head_dim).transpose(1, 2) for t in a.qkv(h).split(C, dim=2))
        q_rot, k_rot = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = (q_rot @ k_rot.transpose(-2, -1)) / math.sqrt(a.head_dim)
        masked = scores.masked_fill(~a.mask[:n, :n], float("-inf")) if a.causal else scores
        weights = torch.softmax(masked, dim=-1)
        # the weighted sum as the model computes it (its fused kernel), so the residual stream stays bit-equal
        heads = F.scaled_dot_product_attention(q_rot, k_rot, v, is_causal=a.causal and n > 1) if a.fused \
            else weights @ v
        attn_out = a.proj(heads.transpose(1, 2).contiguous().view(1, n, C))
        mid = x + attn_out
        h2 = block.norm2(mid)
        z = m.fc(h2)
        act = F.silu(z)
        mlp_out = m.drop(m.proj(act))
        out = mid + mlp_out
        layers.append({"x": x[0], "norm1": h[0], "q": q[0], "k": k[0], "v": v[0], "q_rot": q_rot[0],
                       "k_rot": k_rot[0], "scores": scores[0], "masked": masked[0], "weights": weights[0],
                       "heads": heads[0], "attn_out": attn_out[0], "resid_attn": mid[0], "norm2": h2[0],
                       "mlp_pre": z[0], "silu": act[0], "mlp_out": mlp_out[0], "resid_mlp": out[0],
                       "params": {"g1": block.norm1.weight.detach(), "eps": block.norm1.eps,
                                  "w_qkv": a.qkv.weight.detach(), "b_qkv": a.qkv.bias.detach()}})
        x = out
        lens.append({"layer": i, "top": _decode_top(model, tok, x[0, -1])})
    final = model.norm(x)
    logits = F.linear(final, model.tok_emb.weight)  # weight tying, as in model.forward
    freqs = torch.atan2(model.rope_sin[1], model.rope_cos[1])  # θ_i: the angle at position 1
    return {"ids": ids, "tokens": pieces, "labels": [f"{i}:{p}" for i, p in enumerate(pieces)],
            "shape": {"n_layer": len(layers), "n_head": model.blocks[0].attn.n_head, "n_embd": C,
                      "head_dim": C // model.blocks[0].attn.n_head, "vocab": model.vocab_size, "tokens": n,
                      "causal": bool(model.blocks[0].attn.causal)},
            "embedding": embedding, "rope_freqs": freqs, "rope_angles": torch.outer(torch.arange(n).to(freqs), freqs),
            "layers": layers, "final_in": x[0], "final_norm": final[0], "logits": logits[0],
            "probs": torch.softmax(logits[0], dim=-1), "lens": lens,
            "params": {"g": model.norm.weight.detach(), "eps": model.norm.eps, "emb": model.tok_emb.weight.detach()},
            "tok": tok}


def _decode_top(model, tok, vec, k: int = 3) -> list[dict]:
    """Logit lens: what the residual stream `vec` would predict now, through the final norm and the tied output."""
    p = torch.softmax(F.linear(model.norm(vec), model.tok_emb.weight), dim=-1)
    best = torch.topk(p, min(k, p.numel()))
    return [{"id": int(i), "token": token_text(tok, int(i)), "prob": float(v)}
            for v, i in zip(best.values, best.indices)]


def initial_model(cfg: dict, vocab_size: int):
    """The model a training run with this config starts from, before its first step: the same config and seed give
    the same weights as the run's step-0 snapshot (which stores them in int8). In eval mode."""
    return model_from_config(cfg, vocab_size, torch.Generator().manual_seed(cfg["training"]["seed"])).eval()


@torch.no_grad()
def logit_lens_compare(models: dict, tok, text: str, k: int = 3, max_tokens: int = TRACE_TOKENS) -> dict:
    """The logit lens of several models side by side, for the position that predicts the answer's first token (the
    last position of trace()'s input, the same tokens): after the embedding and after each layer, the k tokens the
    residual stream would decode to through the final norm and the tied output layer.
    models: {label: model}, e.g. a run's step-0 snapshot, its 25% snapshot and the final model; one tokenizer.
    Returns {"labels": [...] (as given, in order), "tokens": the input pieces, "position": the predicting position,
    "layers": [-1 (embedding), 0, ..., L-1] (the longest model's), "lens": {label: [[{"id", "token", "prob"}] per
    layer]}} (a model with fewer layers has a shorter list)."""
    if not models:
        raise UserError("没有可比较的模型", "no models to compare")
    out = {"labels": list(models), "lens": {}, "layers": [-1]}
    for label, model in models.items():
        ids, pieces = _trace_input(model, tok, text, max_tokens)
        model.eval()
        n = len(ids)
        x = model.drop(model.tok_emb(torch.tensor([ids], device=next(model.parameters()).device)))
        rows = [_decode_top(model, tok, x[0, -1], k)]
        for block in model.blocks:  # the model's own blocks, as in model.forward
            x = block(x, model.rope_cos[:n], model.rope_sin[:n])
            rows.append(_decode_top(model, tok, x[0, -1], k))
        out["lens"][label] = rows
        out["layers"] = list(range(-1, max(len(rows), len(out["layers"])) - 1))
        out.setdefault("tokens", pieces)
        out.setdefault("position", n - 1)
    return out


def step_stage(stage: str, layer: int, n_layer: int, delta: int) -> tuple[str, int]:
    """The (stage, layer) `delta` steps away in forward order (+1 next, -1 back); the per-layer stages are walked
    once per layer. Stops at the first and last stage."""
    order = ([(s, None) for s in STAGES[:2]] + [(s, n) for n in range(n_layer) for s in LAYER_STAGES]
             + [(s, None) for s in STAGES[12:]])
    here = order.index((stage, min(max(int(layer), 0), n_layer - 1) if stage in LAYER_STAGES else None))
    stage, at = order[max(0, min(len(order) - 1, here + delta))]
    return stage, layer if at is None else at


def _rounded(x, digits: int = 4):
    """A tensor (or nested lists) as nested lists of floats rounded for JSON; -inf (a masked score) becomes None."""
    if isinstance(x, torch.Tensor):
        x = (x.double() * 10.0 ** digits).round() / 10.0 ** digits
        return _rounded(x.tolist(), digits) if torch.isinf(x).any() else x.tolist()
    if isinstance(x, list):
        return [_rounded(v, digits) for v in x]
    return None if math.isinf(x) else round(x, digits)


def _n(v: float) -> str:
    """A number as a factor: four decimals, negative ones in brackets."""
    return f"({v:.4f})" if v < 0 else f"{v:.4f}"


def _dot(a, b, shown: int = 3) -> str:
    """The first terms of a dot product, written out."""
    terms = " + ".join(f"{_n(x)}·{_n(y)}" for x, y in zip(a.tolist()[:shown], b.tolist()[:shown]))
    return terms + (f" + … ({len(a)} 项 / terms)" if len(a) > shown else "")


def _norm_worked(x, out, g, eps: float, i: int) -> str:
    ms = float(x[i].pow(2).mean())
    rms = math.sqrt(ms + eps)
    return (f"rms = √(mean(x[{i}]²) + ε) = √({ms:.6f} + {eps:g}) = {rms:.4f};   "
            f"RMSNorm(x)[{i},0] = x[{i},0] / rms · g[0] = {_n(float(x[i, 0]))} / {rms:.4f} · {_n(float(g[0]))} = "
            f"{float(out[i, 0]):.4f}")


def stage_view(tr: dict, stage: str, layer: int = 0, head: int = 0) -> dict:
    """What one stage of a trace shows: panels of its real values (heatmaps: rows are tokens; or bars), the formula,
    and one number worked out by hand from the values shown (the last position, first column). Plain lists only."""
    if stage not in STAGES:
        raise UserError(f"没有这一步：{stage}", f"no such stage: {stage}")
    s = tr["shape"]
    layer, head = max(0, min(int(layer), s["n_layer"] - 1)), max(0, min(int(head), s["n_head"] - 1))
    L, rows, i, hd, d = tr["layers"][layer], tr["labels"], s["tokens"] - 1, s["head_dim"], s["n_embd"]

    def heat(name, t, x=None, **style):
        cut = t.shape[-1] > MAX_COLS
        name += f"（前 {MAX_COLS} 列 / first {MAX_COLS} of {t.shape[-1]}）" if cut else ""
        return {"kind": "heatmap", "name": name, "z": _rounded(t[:, :MAX_COLS]), "rows": rows, "x": x, **style}

    def piece(t: int) -> str:
        return token_text(tr["tok"], t)

    def bars(name, ids, values):
        return {"kind": "bar", "name": name, "x": [f"{piece(t)} #{t}" for t in ids], "y": _rounded(values)}

    if stage == "tokens":
        panels = [{"kind": "bar", "name": "词元 id / token id", "x": rows, "y": tr["ids"]}]
        formula = f"<bos>用户:{{问题}}↵助手: → BPE → ids   (T = {s['tokens']})"
        worked = f'token[{i}] = "{tr["tokens"][i]}" → id {tr["ids"][i]}'
    elif stage == "embedding":
        panels = [heat("x = E[id]", tr["embedding"])]
        formula = f"x[i] = E[id[i]]   (E: {s['vocab']}×{d})"
        worked = f"x[{i},0] = E[{tr['ids'][i]},0] = {float(tr['embedding'][i, 0]):.4f}"
    elif stage == "norm":
        p = L["params"]
        panels = [heat("x", L["x"]), heat("RMSNorm(x)", L["norm1"])]
        formula = "RMSNorm(x) = x / √(mean(x²) + ε) · g"
        worked = _norm_worked(L["x"], L["norm1"], p["g1"], p["eps"], i)
    elif stage == "qkv":
        p, r = L["params"], head * hd
        panels = [heat(f"{n}（头 / head {head}）", L[n][head]) for n in ("q", "k", "v")]
        formula = f"q, k, v = RMSNorm(x)·W_qkvᵀ + b   ({d} → 3 × {s['n_head']} × {hd})"
        worked = (f"q[{i},0] = RMSNorm(x)[{i}]·W_q[{r}] + b_q[{r}] = {_dot(L['norm1'][i], p['w_qkv'][r])} + "
                  f"{_n(float(p['b_qkv'][r]))} = {float(L['q'][head, i, 0]):.4f}")
    elif stage == "rope":
        theta, angle = float(tr["rope_freqs"][0]), float(tr["rope_angles"][i, 0])
        q0, q1 = float(L["q"][head, i, 0]), float(L["q"][head, i, 1])
        panels = [heat("q", L["q"][head]), heat("q′ = RoPE(q)", L["q_rot"][head]),
                  heat("k′ = RoPE(k)", L["k_rot"][head])]
        formula = "(x₂ⱼ, x₂ⱼ₊₁) → (x₂ⱼ·cos pθⱼ − x₂ⱼ₊₁·sin pθⱼ, x₂ⱼ·sin pθⱼ + x₂ⱼ₊₁·cos pθⱼ),   θⱼ = 10000^(−2j/d_h)"
        worked = (f"p·θ₀ = {i}·{theta:.4f} = {angle:.4f} rad;   q′[{i},0] = q[{i},0]·cos − q[{i},1]·sin = {_n(q0)}·"
                  f"{_n(math.cos(angle))} − {_n(q1)}·{_n(math.sin(angle))} = {float(L['q_rot'][head, i, 0]):.4f}")
    elif stage == "scores":
        j = int(L["weights"][head, i].argmax())
        dot, root = float(L["q_rot"][head, i] @ L["k_rot"][head, j]), math.sqrt(hd)
        panels = [heat("score = q′·k′ / √d_h", L["scores"][head], rows)]
        formula = f"score[i,j] = q′[i]·k′[j] / √d_h   (d_h = {hd})"
        worked = (f"score[{i},{j}] = ({_dot(L['q_rot'][head, i], L['k_rot'][head, j])}) / √{hd} = {dot:.4f} / "
                  f"{root:.4g} = {float(L['scores'][head, i, j]):.4f}")
    elif stage == "mask":
        panels = [heat("score（j > i → −∞）", L["masked"][head], rows)]
        formula = "score[i,j] → −∞   if j > i" if s["causal"] else "causal = false: score[i,j] unchanged"
        worked = (f"score[0,1] = {float(L['scores'][head, 0, 1]):.4f} → −∞   (1 > 0)" if s["causal"] and i > 0
                  else f"score[{i},0] = {float(L['masked'][head, i, 0]):.4f}")
    elif stage == "softmax":
        j, row = int(L["weights"][head, i].argmax()), L["masked"][head, i]
        top = float(row.max())
        total = float(torch.exp(row - top).sum())
        panels = [heat("w = softmax(score)", L["weights"][head], rows, zmin=0, zmax=1)]
        formula = "w[i,j] = exp(score[i,j] − m) / Σₖ exp(score[i,k] − m),   m = maxₖ score[i,k]"
        worked = (f"w[{i},{j}] = exp({float(row[j]):.4f} − {top:.4f}) / Σₖ exp(score[{i},k] − {top:.4f}) = "
                  f"{math.exp(float(row[j]) - top):.4g} / {total:.4g} = {float(L['weights'][head, i, j]):.4f}")
    elif stage == "weighted":
        w, v = L["weights"][head, i], L["v"][head, :, 0]
        order = w.argsort(descending=True)[:3].tolist()
        terms = " + ".join(f"{float(w[j]):.4f}·{_n(float(v[j]))}" for j in order)
        panels = [heat("w", L["weights"][head], rows, zmin=0, zmax=1), heat("v", L["v"][head]),
                  heat("out = w·v", L["heads"][head])]
        formula = "out[i] = Σⱼ w[i,j]·v[j]"
        worked = f"out[{i},0] = Σⱼ w[{i},j]·v[j,0] = {terms} + … ({s['tokens']} 项 / terms) = " \
                 f"{float(L['heads'][head, i, 0]):.4f}"
    elif stage in ("residual1", "residual2"):
        before, add, after, name = (("x", "attn_out", "resid_attn", "attn") if stage == "residual1"
                                    else ("resid_attn", "mlp_out", "resid_mlp", "mlp"))
        panels = [heat("x", L[before]), heat(name, L[add]), heat(f"x + {name}", L[after])]
        formula = ("x ← x + attn,   attn = concat(heads)·W_oᵀ + b_o" if stage == "residual1"
                   else "x ← x + mlp,   mlp = SiLU(z)·W₂ᵀ + b₂")
        worked = f"x[{i},0] + {name}[{i},0] = {_n(float(L[before][i, 0]))} + {_n(float(L[add][i, 0]))} = " \
                 f"{float(L[after][i, 0]):.4f}"
    elif stage == "mlp":
        z = float(L["mlp_pre"][i, 0])
        panels = [heat("z = RMSNorm(x)·W₁ᵀ + b₁", L["mlp_pre"]), heat("SiLU(z)", L["silu"])]
        formula = f"SiLU(z) = z·σ(z) = z / (1 + e^(−z))   ({d} → {4 * d} → {d})"
        worked = f"SiLU(z[{i},0]) = {_n(z)} / (1 + e^{_n(-z)}) = {float(L['silu'][i, 0]):.4f}"
    elif stage == "final_norm":
        p = tr["params"]
        panels = [heat("x", tr["final_in"]), heat("RMSNorm(x)", tr["final_norm"])]
        formula = "RMSNorm(x) = x / √(mean(x²) + ε) · g"
        worked = _norm_worked(tr["final_in"], tr["final_norm"], p["g"], p["eps"], i)
    else:  # logits, top: the next token after the last position
        logits, probs = tr["logits"][i], tr["probs"][i]
        best = torch.topk(logits, min(20 if stage == "logits" else 10, logits.numel())).indices.tolist()
        t, top = best[0], float(logits.max())
        if stage == "logits":
            panels = [bars(f"logits[{i}]（前 20 / top 20 of {s['vocab']}）", best, logits[best])]
            formula = f"logits[i,t] = RMSNorm(x)[i]·E[t]   (E: {s['vocab']}×{d}, 同一个 E / the same E)"
            worked = (f'logits[{i},"{piece(t)}"] = RMSNorm(x)[{i}]·E[{t}] = '
                      f"{_dot(tr['final_norm'][i], tr['params']['emb'][t])} = {float(logits[t]):.4f}")
        else:
            total = float(torch.exp(logits - top).sum())
            panels = [bars("p（前 10 / top 10）", best, probs[best])]
            formula = "p = softmax(logits[T−1])"
            worked = (f'p("{piece(t)}") = exp({float(logits[t]):.4f} − {top:.4f}) / Σ exp(logits − '
                      f"{top:.4f}) = {math.exp(float(logits[t]) - top):.4g} / {total:.4g} = {float(probs[t]):.4f}")
    return {"stage": stage, "layer": layer, "head": head, "per_layer": stage in LAYER_STAGES, "panels": panels,
            "formula": formula, "worked": worked}


def trace_json(tr: dict, layer: int = 0, head: int = 0, cols: int = 8, digits: int = 4) -> dict:
    """A trace as bounded plain JSON (tens of KB): every stage's full shape, and its values rounded to `digits`
    for one layer and head, each row cut to its first `cols` numbers (attention maps whole; -inf is null).
    logits and probs: the last position's; top: its 10 likeliest next tokens; lens: the logit lens."""
    s = tr["shape"]
    layer, head = max(0, min(int(layer), s["n_layer"] - 1)), max(0, min(int(head), s["n_head"] - 1))
    L, last = tr["layers"][layer], s["tokens"] - 1

    def pack(t, part=None, whole=False):
        part = t if part is None else part
        return {"shape": list(t.shape), "values": _rounded(part if whole else part[..., :cols], digits)}

    stages = {"tokens": {"shape": [s["tokens"]], "values": tr["ids"]}, "embedding": pack(tr["embedding"]),
              "rope_angles": pack(tr["rope_angles"]), "norm_in": pack(L["x"]), "norm": pack(L["norm1"])}
    stages |= {n: pack(L[n], L[n][head]) for n in ("q", "k", "v", "q_rot", "k_rot")}
    stages |= {n: pack(L[n], L[n][head], whole=True) for n in ("scores", "masked", "weights")}
    stages |= {"weighted": pack(L["heads"], L["heads"][head])}
    stages |= {n: pack(L[n]) for n in ("attn_out", "resid_attn", "norm2", "mlp_pre", "silu", "mlp_out", "resid_mlp")}
    stages |= {"final_norm": pack(tr["final_norm"]), "logits": pack(tr["logits"], tr["logits"][last]),
               "probs": pack(tr["probs"], tr["probs"][last])}
    best = torch.topk(tr["probs"][last], min(10, s["vocab"]))
    top = [{"id": int(t), "token": token_text(tr["tok"], int(t)), "prob": round(float(p), digits),
            "logit": round(float(tr["logits"][last, t]), digits)} for p, t in zip(best.values, best.indices)]
    lens = [{"layer": row["layer"], "top": [dict(c, prob=round(c["prob"], digits)) for c in row["top"]]}
            for row in tr["lens"]]
    return {"ids": tr["ids"], "tokens": tr["tokens"], "shape": s, "layer": layer, "head": head, "stages": stages,
            "top": top, "lens": lens}


# ---- how fast a stage renders ----------------------------------------------------------------------------------

def stage_order(n_layer: int) -> list[tuple[str, int]]:
    """Every (stage, layer) that 下一步 / Next walks through, in order, from the tokens to the top-10."""
    at, order = (STAGES[0], 0), [(STAGES[0], 0)]
    while (nxt := step_stage(*at, n_layer, 1)) != at:
        order.append(at := nxt)
    return order


def bench_stages(model, tok, question: str, figure=None, repeats: int = 3) -> dict:
    """Milliseconds to show each stage as the dashboard does on a click: trace() the question again, stage_view()
    the stage and, with `figure` (a function view -> plotly Figure, e.g. the dashboard's stage_figure), draw it and
    serialise it to JSON (what Gradio's gr.Plot sends). Every stage of every layer, `repeats` times; the first
    stage is shown once before timing (warm-up). Returns {"ms": [every render], "median_ms", "max_ms",
    "p95_ms", "slowest": (stage, layer), "parts": {part: median ms}, "renders", "stages"}."""
    order = stage_order(len(model.blocks))

    def render(stage, layer):
        t0 = time.perf_counter()
        tr = trace(model, tok, question)
        t1 = time.perf_counter()
        view = stage_view(tr, stage, layer, 0)
        t2 = time.perf_counter()
        if figure is not None:
            fig = figure(view)
            t3 = time.perf_counter()
            fig.to_json()
        else:
            t3 = t2
        t4 = time.perf_counter()
        return {"trace": t1 - t0, "stage_view": t2 - t1, "figure": t3 - t2, "to_json": t4 - t3, "total": t4 - t0}

    render(*order[0])
    runs = [(at, render(*at)) for _ in range(repeats) for at in order]
    ms = [1000 * r["total"] for _, r in runs]
    parts = {k: 1000 * statistics.median(r[k] for _, r in runs) for k in ("trace", "stage_view", "figure", "to_json")}
    slowest = max(runs, key=lambda x: x[1]["total"])[0]
    p95 = sorted(ms)[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"ms": ms, "median_ms": statistics.median(ms), "p95_ms": p95, "max_ms": max(ms), "slowest": slowest,
            "parts": parts, "renders": len(ms), "stages": len(order)}


# ---- CLI -----------------------------------------------------------------------------------------------------

def main(argv=None):
    from .checkpoint import load_model
    from .config import ROOT, resolve
    from .errors import ArgumentParser

    p = ArgumentParser(description="一次前向计算的每一步 / one forward pass, stage by stage")
    p.add_argument("--trace", metavar="问题", help="要计算的问题 / the question to trace")
    p.add_argument("--bench", action="store_true",
                   help="计时：每一步显示要多少毫秒 / time how many ms each stage takes to show")
    p.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "last.pt"), help="检查点 / checkpoint")
    p.add_argument("--layer", type=int, default=0, help="显示哪一层 / which layer to show")
    p.add_argument("--head", type=int, default=0, help="显示哪个注意力头 / which attention head to show")
    p.add_argument("--repeats", type=int, default=3, help="--bench: 每一步计时几次 / renders per stage")
    args = p.parse_args(argv)
    if not args.trace and not args.bench:
        raise UserError("请给出 --trace \"问题\" 或 --bench", 'give --trace "question" or --bench')
    model, tok, _ = load_model(resolve(args.ckpt))
    if args.bench:
        return _bench_cli(model, tok, args.trace or "什么是注意力机制？", max(1, args.repeats))
    out = trace_json(trace(model, tok, args.trace), args.layer, args.head, cols=4)
    print(f"词元 / tokens ({len(out['ids'])}): " + " ".join(out["tokens"]))
    print(f"第 {out['layer']} 层 第 {out['head']} 个头 / layer {out['layer']}, head {out['head']}; "
          "每行：形状、最后一个位置的前几个数 / each line: shape, the first numbers at the last position")
    for name, stage in out["stages"].items():
        last = stage["values"]
        while last and isinstance(last[-1], list):
            last = last[-1]
        shown = " ".join("-inf" if v is None else f"{v:.4f}" for v in last[:4])
        print(f"  {name:<12} {str(tuple(stage['shape'])):<16} {shown}")
    print("下一个词元 / next token: " + "  ".join(f"{t['token']} {t['prob']:.3f}" for t in out["top"]))
    for row in out["lens"]:
        where = "词嵌入 / embedding" if row["layer"] < 0 else f"第 {row['layer']} 层 / layer {row['layer']}"
        print(f"逐层解读 / logit lens, {where}: " + "  ".join(f"{c['token']} {c['prob']:.3f}" for c in row["top"]))
    return 0


def _bench_cli(model, tok, question: str, repeats: int) -> int:
    """Print how long a stage takes to show, with one torch thread like the dashboard's handlers. The figure is the
    dashboard's own (ui.attention_tab.stage_figure, which imports Gradio); without Gradio only the numbers."""
    torch.set_num_threads(1)
    try:
        from ui.attention_tab import stage_figure
    except ImportError as e:  # the engine alone: no dashboard installed
        stage_figure, why = None, str(e)
    r = bench_stages(model, tok, question, stage_figure, repeats)
    what = ("trace + stage_view + 图 stage_figure + to_json" if stage_figure
            else f"trace + stage_view（没有画图 / no figure: {why}）")
    print(f"问题 / question: {question}   每次点击 / per click: {what}")
    print(f"{r['stages']} 个步骤 × {repeats} 次 = {r['renders']} 次显示 / renders, torch 1 thread")
    stage, layer = r["slowest"]
    where = f", 第 {layer} 层 / layer {layer}" if stage in LAYER_STAGES else ""
    print(f"中位数 / median {r['median_ms']:.1f} ms   95% {r['p95_ms']:.1f} ms   最大 / max {r['max_ms']:.1f} ms"
          f"（最慢 / slowest: {stage}{where}）")
    print("各部分中位数 / median per part: " + "  ".join(f"{k} {v:.1f} ms" for k, v in r["parts"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
