"""Course data: instruction pairs -> token ids with answer-only targets -> padded or packed batches."""

import hashlib
import json
import random
import re
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path

import torch

from . import tokenizer as bpe
from .errors import UserError

USER, ASSISTANT = "用户:", "助手:"
FIXED_QUESTIONS = {  # the seed's two fixed questions and their reference answers
    "什么是注意力机制?": "注意力机制通过分配权重让模型关注关键位置,从而更好地理解序列中的关系。",
    "解释蒸馏水与纯水区别?": ("蒸馏水是通过蒸馏获得的水,去除了大部分杂质;"
                          "纯水是指杂质含量极低的水,制备方式可以是蒸馏、反渗透等。"),
}
# Student-style rewordings of the fixed questions, kept out of train.jsonl: the training tab asks them at every
# evaluation so the class watches the model generalise from the wordings it was taught to new ones.
REWORDED_PROBES = {"注意力机制是啥呀": "什么是注意力机制?", "蒸馏水跟纯水有什么不一样": "解释蒸馏水与纯水区别?"}
PROBE_QUESTIONS = tuple(FIXED_QUESTIONS) + tuple(REWORDED_PROBES)
_TRAILING = "?？!！。.~～ \t"
_TIGHT = r"(?:[^\x00-\x7f\s]|[,.;:!?()\[\]])"  # non-ASCII characters and ASCII punctuation: no spaces around
_CJK_SPACE = re.compile(rf"\s+(?={_TIGHT})|(?<={_TIGHT})\s+")


def normalize_prompt(text: str) -> str:
    """The same question typed differently gets the same form, in training and in inference:
    full-width ？，；： -> half-width (NFKC), spaces around Chinese characters and punctuation removed,
    other runs of spaces collapsed, and exactly one '?' at the end."""
    s = unicodedata.normalize("NFKC", text)
    s = _CJK_SPACE.sub("", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(_TRAILING)
    return s + "?" if s else ""


def prompt_prefix(prompt: str, history=()) -> str:
    """用户:{q1}\n助手:{a1}\n用户:{prompt}\n助手: -- earlier exchanges first, in the seed's format."""
    earlier = "".join(f"{USER}{normalize_prompt(q)}\n{ASSISTANT}{a}\n" for q, a in history)
    return f"{earlier}{USER}{normalize_prompt(prompt)}\n{ASSISTANT}"


def read_lines(path: Path) -> list[str]:
    """A user's UTF-8 text file as lines; a byte-order mark (Windows Notepad's "UTF-8 with BOM") and CRLF endings
    are read like plain UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path} 不是 UTF-8 文本", f"{path} is not UTF-8 text") from None


def read_jsonl(path, check=None) -> list[dict]:
    """Read pairs {"prompt", "completion"} or plain lines {"text"}; errors name the file and the line.
    check(row, where_zh, where_en) -> row validates each line (default: check_row, the training format)."""
    check = check or check_row
    path = Path(path)
    if not path.is_file():
        raise UserError(f"找不到数据文件 {path}", f"data file not found: {path}")
    rows = []
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path} 第 {n} 行不是合法的 JSON", f"{path} line {n} is not valid JSON") from None
        rows.append(check(row, f"{path} 第 {n} 行", f"{path} line {n}"))
    if not rows:
        raise UserError(f"数据文件 {path} 是空的", f"data file {path} is empty")
    return rows


def check_row(row, where_zh: str, where_en: str) -> dict:
    if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
        return {"text": row["text"]}
    if not (isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str)):
        raise UserError(f"{where_zh} 需要字段 prompt 和 completion（或 text）",
                        f"{where_en} needs fields prompt and completion (or text)")
    if not normalize_prompt(row["prompt"]) or not row["completion"].strip():
        raise UserError(f"{where_zh} 的问题或回答是空的", f"{where_en} has an empty prompt or completion")
    out = {"prompt": row["prompt"], "completion": row["completion"].strip()}
    history = check_history(row.get("history", []), where_zh, where_en)
    if history:
        out["history"] = history
    return out


def check_history(history, where_zh: str, where_en: str) -> list[list[str]]:
    """Earlier exchanges, [[question, answer], ...] oldest first, each part non-empty text."""
    if not (isinstance(history, list) and all(isinstance(turn, (list, tuple)) and len(turn) == 2
                                              and all(isinstance(t, str) and t.strip() for t in turn)
                                              for turn in history)):
        raise UserError(f"{where_zh} 的 history 应为 [[问题, 回答], ...]",
                        f"{where_en}: history must be [[question, answer], ...]")
    return [[q, a.strip()] for q, a in history]


def encode_row(tok, row: dict, seq_len: int, answers: dict | None = None):
    """One sample -> (x, y). Pairs: <bos>用户:{prompt}\\n助手:{answer}<eos>, loss on the answer only
    (with a history, the earlier exchanges come first and are context only).
    y is x shifted by one; the first len(prefix)-1 targets are -100 (ignored), so the target at position
    len(prefix)-1 is the first answer token: the model learns how an answer starts.
    answers: a dict that remembers encoded answers (a fact's answer repeats in every one of its wordings)."""
    if "text" in row:
        prefix, body = [bpe.BOS_ID], bpe.encode(tok, row["text"])
    else:
        prefix = [bpe.BOS_ID] + bpe.encode(tok, prompt_prefix(row["prompt"], row.get("history", ())))
        answers = {} if answers is None else answers
        body = answers.get(row["completion"])
        if body is None:
            body = answers[row["completion"]] = bpe.encode(tok, row["completion"])
    ids = torch.tensor((prefix + body + [bpe.EOS_ID])[: seq_len + 1])  # a sample longer than the context is cut
    x, y = ids[:-1], ids[1:].clone()
    if "text" not in row:
        y[: len(prefix) - 1] = -100
    return x, y


class Batches:
    """Shuffled batches without worker processes; every epoch visits every sample once in a random order.
    next(rank, world) -> (x, y, docs): this process's rows of the next global batch.
    pack=False: rows padded to the batch's longest sample; long samples (over LONG_RATIO x the median length: the
    two-turn rows) are batched with each other, so one long row does not pad a batch of short ones; docs is None.
    pack=True: the same random batches, packed end to end into rows of pack_to tokens (docs numbers the samples);
    the few samples that fit no row move to the next batch, so nearly every token is real and the batches stay
    random (wordings of one fact are not grouped, which hurt learning when batches were sorted by length)."""

    LONG_RATIO = 1.5

    def __init__(self, samples, batch_size: int, seed: int = 0, pad_to: int | None = None, min_batch: int = 1,
                 pack_to: int | None = None):
        """min_batch: smaller leftover batches at the end of an epoch are skipped (each of several processes
        needs at least one row of every batch). pack_to: pack samples into rows of this many tokens."""
        self.samples, self.batch_size, self.pad_to, self.min_batch = samples, batch_size, pad_to, min_batch
        self.pack_to, self.carry = pack_to, []
        self.rng = random.Random(seed)
        self.queue: list[list[int]] = []
        lengths = sorted(len(x) for x, _ in samples)
        cut = self.LONG_RATIO * lengths[len(lengths) // 2] if lengths and not pack_to else float("inf")
        self.groups = [[i for i, (x, _) in enumerate(samples) if (len(x) > cut) == long] for long in (False, True)]

    def _new_epoch(self):
        batches = []
        for group in self.groups:
            order = list(group)
            self.rng.shuffle(order)
            batches += [order[b:b + self.batch_size] for b in range(0, len(order), self.batch_size)
                        if len(order[b:b + self.batch_size]) >= self.min_batch]
        self.rng.shuffle(batches)
        self.queue += batches

    def next(self, rank: int = 0, world: int = 1):
        if not self.queue:
            self._new_epoch()
        mine = self.queue.pop()[rank::world]
        if not self.pack_to:
            return (*collate([self.samples[i] for i in mine], self.pad_to), None)
        mine = self.carry + mine  # what did not fit last time goes first
        samples = [self.samples[i] for i in mine]
        rows = max(1, sum(len(x) for x, _ in samples) // self.pack_to)  # only full rows: ~97% real tokens
        x, y, docs, left = pack(samples, self.pack_to, rows)
        self.carry = [mine[i] for i in left]
        return x, y, docs


def collate(samples, pad_to: int | None = None):
    T_max = pad_to or max(len(x) for x, _ in samples)
    x = torch.full((len(samples), T_max), bpe.PAD_ID, dtype=torch.long)
    y = torch.full((len(samples), T_max), -100, dtype=torch.long)
    for i, (xi, yi) in enumerate(samples):
        x[i, : len(xi)], y[i, : len(yi)] = xi, yi
    return x, y


def pack(samples, width: int, rows: int | None = None):
    """Samples -> rows of at most `width` tokens, first fit, longest first: (x, y, docs, left over).
    rows: how many rows to fill (default: as many as needed); samples that fit in none are returned by index, for
    the next batch. docs numbers the samples within each row (-1 on padding): the model keeps attention inside each
    sample."""
    members: list[list[int]] = [[] for _ in range(rows or 0)]
    room = [width] * len(members)
    left = []
    for i in sorted(range(len(samples)), key=lambda i: -len(samples[i][0])):
        n = len(samples[i][0])
        row = next((r for r, free in enumerate(room) if free >= n), None)
        if row is None and rows:
            left.append(i)
            continue
        if row is None:
            members.append([])
            room.append(width)
            row = len(members) - 1
        members[row].append(i)
        room[row] -= n
    T_max = width - min(room)
    x = torch.full((len(members), T_max), bpe.PAD_ID, dtype=torch.long)
    y = torch.full((len(members), T_max), -100, dtype=torch.long)
    docs = torch.full((len(members), T_max), -1, dtype=torch.long)
    for r, row_members in enumerate(members):
        at = 0
        for d, i in enumerate(row_members):
            xi, yi = samples[i]
            x[r, at:at + len(xi)], y[r, at:at + len(xi)], docs[r, at:at + len(xi)] = xi, yi, d
            at += len(xi)
    return x, y, docs, left


_ENCODED: "OrderedDict[tuple, tuple[list, list]]" = OrderedDict()  # (file hash, tokenizer, seq_len) -> rows, samples
_ENCODED_KEEP = 4  # the train, val and unseen files of the current data, and one more
_ENCODED_LOCK = threading.Lock()


def load_samples(tok, path, seq_len: int, extra_rows=()):
    """A JSONL file (+ extra rows) -> (rows, samples). An encoded file is kept in memory, keyed by its bytes, the
    tokenizer and seq_len: the dashboard's next Start with the same data skips reading and encoding (~10 s on
    2 cores for the course's 42,000 rows); an edited file has other bytes and is read again."""
    path = Path(path)
    key = (hashlib.sha256(path.read_bytes()).hexdigest(), bpe.fingerprint(tok), seq_len) if path.is_file() else None
    with _ENCODED_LOCK:
        hit = _ENCODED.get(key)
        if hit:
            _ENCODED.move_to_end(key)
    if hit is None:
        answers = {}
        rows = read_jsonl(path)  # names the file and line of any bad row
        hit = rows, [encode_row(tok, r, seq_len, answers) for r in rows]
        with _ENCODED_LOCK:
            _ENCODED[key] = hit
            while len(_ENCODED) > _ENCODED_KEEP:
                _ENCODED.popitem(last=False)
    extra = list(extra_rows)
    return hit[0] + extra, hit[1] + [encode_row(tok, r, seq_len) for r in extra]
