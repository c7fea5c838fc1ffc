"""Text generation: sampling filters you can test on hand-made distributions, masks, stop strings,
prompt normalisation, answer cleanup and a KV cache."""

import math
import unicodedata
from dataclasses import dataclass, field

import torch

from . import tokenizer as bpe
from .data import normalize_prompt, prompt_prefix
from .errors import UserError

MAX_NEW_TOKENS_CAP = 512
MIN_ANSWER_TOKENS = 2  # EOS is masked for the first steps so the model cannot answer with nothing


# The sampling controls: name -> (default, slider min, max, step). The chat's sliders and reset, its /generate and
# /ask endpoints, Settings and the infer CLI all take their defaults from here.
SAMPLING = {"temperature": (0.0, 0.0, 2.0, 0.05), "top_k": (0, 0, 100, 1), "top_p": (1.0, 0.05, 1.0, 0.05),
            "repetition_penalty": (1.0, 0.5, 2.0, 0.05), "max_new_tokens": (128, 1, 256, 1)}
DEFAULT = {name: spec[0] for name, spec in SAMPLING.items()}


@dataclass
class Settings:
    temperature: float = DEFAULT["temperature"]  # 0 = greedy decoding
    top_k: int = DEFAULT["top_k"]  # 0 = off
    top_p: float = DEFAULT["top_p"]  # 1 = off
    repetition_penalty: float = DEFAULT["repetition_penalty"]  # 1 = off
    max_new_tokens: int = DEFAULT["max_new_tokens"]
    stop_strings: list = field(default_factory=list)
    seed: int | None = None

    def check(self) -> "Settings":
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 10:
            raise UserError(f"温度应在 0 到 10 之间，收到 {self.temperature}",
                            f"temperature must be in [0, 10], got {self.temperature}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise UserError(f"top_k 应为不小于 0 的整数，收到 {self.top_k}",
                            f"top_k must be an integer >= 0, got {self.top_k}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise UserError(f"top_p 应在 (0, 1] 内，收到 {self.top_p}", f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.repetition_penalty, (int, float)) or not 0 < self.repetition_penalty <= 10:
            raise UserError(f"重复惩罚应在 (0, 10] 内，收到 {self.repetition_penalty}",
                            f"repetition_penalty must be in (0, 10], got {self.repetition_penalty}")
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_CAP:
            raise UserError(f"max_new_tokens 应在 1 到 {MAX_NEW_TOKENS_CAP} 之间，收到 {self.max_new_tokens}",
                            f"max_new_tokens must be in [1, {MAX_NEW_TOKENS_CAP}], got {self.max_new_tokens}")
        self.stop_strings = [s for s in (self.stop_strings or []) if s]
        return self


# ---- sampling filters: logits (V,) in, logits (V,) out ------------------------------------------------------

def apply_repetition_penalty(logits, previous_ids, penalty: float):
    """CTRL-style: a token already in the answer gets its logit divided by penalty (if positive) or multiplied."""
    if penalty == 1.0 or not len(previous_ids):
        return logits
    out = logits.clone()
    ids = torch.tensor(sorted(set(int(i) for i in previous_ids)), dtype=torch.long)
    picked = out[ids]
    out[ids] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return out


def top_k_filter(logits, k: int):
    """Keep the k largest logits, set the rest to -inf. k = 0 keeps all."""
    if k <= 0 or k >= logits.numel():
        return logits
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits, p: float):
    """Nucleus: keep the smallest set of most likely tokens whose probabilities add up to at least p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    drop_sorted = cum - torch.softmax(sorted_logits, dim=-1) >= p  # mass before this token already reaches p
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def mask_invalid(logits, steps_taken):
    """A copy of logits (V,) or (B, V) in float with the tokens that are never valid output (pad, bos, unk; above
    all at the first step) at -inf, and EOS too where fewer than MIN_ANSWER_TOKENS tokens were written.
    steps_taken: an int, or one per row."""
    logits = logits.float().cpu().clone()
    logits[..., [bpe.PAD_ID, bpe.BOS_ID, bpe.UNK_ID]] = float("-inf")
    early = torch.as_tensor(steps_taken) < MIN_ANSWER_TOKENS
    logits[..., bpe.EOS_ID] = logits[..., bpe.EOS_ID].masked_fill(early, float("-inf"))
    return logits


def sampling_stages(logits, answer_ids, step: int, s: Settings) -> dict:
    """The next-token distribution at each stage, for the classroom panel and for sampling itself.
    Returns logits after: masks + repetition penalty ('raw'), temperature, top-k, top-p."""
    logits = mask_invalid(logits, step)
    raw = apply_repetition_penalty(logits, answer_ids, s.repetition_penalty)
    if s.temperature == 0:
        return {"raw": raw, "temperature": raw, "top_k": raw, "top_p": raw}
    warm = raw / s.temperature
    k = top_k_filter(warm, s.top_k)
    return {"raw": raw, "temperature": warm, "top_k": k, "top_p": top_p_filter(k, s.top_p)}


def pick_token(final_logits, s: Settings, rng=None) -> int:
    if s.temperature == 0:
        return int(torch.argmax(final_logits))
    return int(torch.multinomial(torch.softmax(final_logits, dim=-1), 1, generator=rng))


# ---- answer text -------------------------------------------------------------------------------------------

def clean_answer(text: str, stop_strings=()) -> tuple[str, bool]:
    """Cut at the first stop string (or a new '用户:' turn), strip leading whitespace and punctuation, except
    opening brackets and quotes: an answer may start with 《史记》 or “. Returns (answer, whether a stop string
    was found)."""
    hit = False
    for stop in list(stop_strings) + ["用户:", "\n用户"]:
        at = text.find(stop)
        if at >= 0:
            text, hit = text[:at], hit or stop in stop_strings
    i = 0
    while i < len(text) and (text[i].isspace() or unicodedata.category(text[i]) in ("Pc", "Pd", "Pe", "Pf", "Po")):
        i += 1
    return text[i:].replace("\ufffd", "").rstrip(), hit


@dataclass
class Result:
    answer: str
    token_ids: list
    steps: list  # per generated token: {"id", "text", "prob", "top": [(text, prob), ...]}
    notices: list
    stopped_by: str  # eos | stop_string | max_new_tokens | context
    prompt_tokens: int
    # The model's probability of the least likely token it wrote (EOS included, before temperature and filters):
    # a learned answer is near 1 at every token; a guess has at least one unsure token.
    confidence: float = 0.0


def fit_prompt(tok, prompt: str, seq_len: int, reserve: int, history=()):
    """Token ids of <bos>[earlier exchanges]用户:{prompt}\\n助手:, leaving `reserve` tokens for the answer.
    Earlier exchanges are dropped first (oldest first), then the prompt itself is cut."""
    norm = normalize_prompt(prompt)
    if not norm:
        raise UserError("问题不能为空", "the prompt is empty")
    limit, notices, history = max(8, seq_len - reserve), [], list(history)
    ids = [bpe.BOS_ID] + bpe.encode(tok, prompt_prefix(norm, history))
    while len(ids) > limit and history:
        history.pop(0)
        ids = [bpe.BOS_ID] + bpe.encode(tok, prompt_prefix(norm, history))
    while len(ids) > limit and len(norm) > 1:
        norm = norm[: max(1, int(len(norm) * limit / len(ids)) - 1)]
        ids = [bpe.BOS_ID] + bpe.encode(tok, prompt_prefix(norm))
    if norm != normalize_prompt(prompt):
        notices.append(f"问题太长，只保留了前 {len(norm)} 个字符 / prompt cut to its first {len(norm)} characters")
    return ids, notices


class Decoding:
    """One answer in progress: the prompt ids, the sampling settings and the answer so far.
    Whoever runs the model (generate_steps for one question, serving.BatchServer for many at once)
    hands it the next-token logits; it picks the token and decides when the answer is finished."""

    def __init__(self, tok, prompt: str, s: Settings | None, seq_len: int, top_n: int = 5, history=()):
        self.tok, self.s, self.top_n = tok, (s or Settings()).check(), top_n
        self.ids, self.notices = fit_prompt(tok, prompt, seq_len, min(self.s.max_new_tokens, seq_len // 2), history)
        self.budget, self.seq_len = min(self.s.max_new_tokens, seq_len - len(self.ids)), seq_len
        self.rng = torch.Generator().manual_seed(self.s.seed) if self.s.seed is not None else None
        self.answer_ids, self.steps, self.result = [], [], None

    @property
    def plain_greedy(self) -> bool:
        """Greedy without a repetition penalty: the pick depends on the logits alone (pick_greedy can batch it)."""
        return self.s.temperature == 0 and self.s.repetition_penalty == 1.0

    def step(self, logits, picked=None):
        """Next-token logits (V,), as the model gave them -> (answer_so_far, step_info), or None when the answer
        ended without a new visible token. After the last step, self.result holds the Result.
        picked: this row's (token, prob, logprob, top) from pick_greedy, which did the sampling for a batch."""
        s, tok = self.s, self.tok
        if picked is None:
            stages = sampling_stages(logits, self.answer_ids, len(self.steps), s)
            final = stages["top_p"]
            nxt = pick_token(final, s, self.rng)
            probs = torch.softmax(final, dim=-1)
            top = torch.topk(probs, min(self.top_n, probs.numel())) if self.top_n else None
            picked = (nxt, float(probs[nxt]), float(torch.log_softmax(stages["raw"], dim=-1)[nxt]),  # the model's own
                      list(zip(top.values.tolist(), top.indices.tolist())) if top is not None else [])
        nxt, prob, logprob, top = picked
        info = {"id": nxt, "text": bpe.decode(tok, [nxt]), "prob": prob, "top": [], "logprob": logprob}
        if self.top_n:
            info["top"] = [(bpe.decode(tok, [i]) or tok.id_to_token(i), p) for p, i in top[:self.top_n]]
        self.steps.append(info)
        if nxt == bpe.EOS_ID:
            return self._finish("eos")
        self.answer_ids.append(nxt)
        text = bpe.decode(tok, self.answer_ids)
        answer, hit = clean_answer(text, s.stop_strings)
        if hit or "用户:" in text:
            return self._finish("stop_string")
        if len(self.answer_ids) >= self.budget:
            self._finish("max_new_tokens" if self.budget == s.max_new_tokens else "context")
        return answer, info

    def _finish(self, stopped_by: str):
        if stopped_by == "context":
            self.notices.append(f"已到达上下文长度 {self.seq_len} / reached the context length {self.seq_len}")
        answer, _ = clean_answer(bpe.decode(self.tok, self.answer_ids), self.s.stop_strings)
        lowest = min((st["logprob"] for st in self.steps), default=float("-inf"))
        self.result = Result(answer, self.answer_ids, self.steps, self.notices, stopped_by, len(self.ids),
                             math.exp(lowest))


def pick_greedy(decodings, logits) -> list:
    """Decoding.step's sampling for many plain-greedy rows at once (serving a class): logits (B, V) -> each row's
    (token, prob, logprob, top) from one masked softmax, argmax and top-k for the batch, the same as row by row."""
    x = mask_invalid(logits, [len(d.steps) for d in decodings])
    probs, logprobs = torch.softmax(x, dim=-1), torch.log_softmax(x, dim=-1)
    nxt = torch.argmax(x, dim=-1)
    n = max(d.top_n for d in decodings)
    top = torch.topk(probs, min(n, x.shape[1])) if n else None
    rows = torch.arange(len(decodings))
    chosen = zip(nxt.tolist(), probs[rows, nxt].tolist(), logprobs[rows, nxt].tolist())
    tops = zip(top.values.tolist(), top.indices.tolist()) if top is not None else [([], [])] * len(decodings)
    return [(t, p, lp, list(zip(v, i))) for (t, p, lp), (v, i) in zip(chosen, tops)]


@torch.no_grad()
def generate_steps(model, tok, prompt: str, s: Settings | None = None, use_cache: bool = True, top_n: int = 5,
                   history=()):
    """Yield (answer_so_far, step_info) after every generated token; the last item is the Result.
    history: earlier (question, answer) exchanges of this conversation, kept in the context if they fit."""
    d = Decoding(tok, prompt, s, model.seq_len, top_n, history)
    model.eval()
    device = next(model.parameters()).device
    cache = [{} for _ in model.blocks] if use_cache else None
    feed = d.ids
    while d.result is None:
        logits, _ = model(torch.tensor([feed], device=device), cache=cache)
        progress = d.step(logits[0, -1])
        if progress:
            yield progress
        feed = d.answer_ids[-1:] if use_cache else d.ids + d.answer_ids
    yield d.result


def generate(model, tok, prompt: str, s: Settings | None = None, use_cache: bool = True, history=()) -> Result:
    for item in generate_steps(model, tok, prompt, s, use_cache, history=history):
        pass
    return item
