"""How well a model answers: character-level F1 against reference answers, greedy decoding.

Checking thousands of rows by generating each answer is slow on a CPU. For greedy decoding there is a shortcut
that gives the same verdict: the greedy answer equals the reference exactly iff, fed the reference, the model's
top token (with generation's masks) is the reference token at every position and EOS after it. One batched
forward pass checks that for every row; only the rows that fail it are generated to measure their F1.
"""

import torch

from . import tokenizer as bpe
from .data import FIXED_QUESTIONS, collate, encode_row, normalize_prompt
from .generate import MIN_ANSWER_TOKENS, Result, Settings, generate
from .knowledge import (
    CONFIDENCE_THRESHOLD,
    SIMILARITY_THRESHOLD,
    char_f1,
    judge,
    lookup_right,
    parts,
    read_dev,
    reply_in_context,
)
from .serving import BatchServer

USABLE = {"train_f1_ok": 0.95, "val_f1_ok": 0.80}  # with both fixed questions exact: "usable" / promotable


@torch.no_grad()
def mean_loss(model, samples, device="cpu", batch: int = 32) -> float:
    """Mean answer-token loss over a whole held-out set."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            x, y = collate(samples[i:i + batch])
            _, loss = model(x.to(device), y.to(device))
            n = int((y != -100).sum())
            total, count = total + loss.item() * n, count + n
    return total / max(1, count)


def greedy_exact(model, tok, rows, batch: int = 64) -> list[bool]:
    """Per row: would greedy generation write exactly the reference answer? (teacher-forced, batched)"""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(rows), batch):
        samples = [encode_row(tok, r, model.seq_len) for r in rows[i:i + batch]]
        x, y = collate(samples)
        logits, _ = model(x.to(device))
        logits = logits.float()
        logits[..., [bpe.PAD_ID, bpe.BOS_ID, bpe.UNK_ID]] = float("-inf")
        answer_pos = (y != -100).cumsum(1) - 1  # 0 at the first answer token
        early = (answer_pos >= 0) & (answer_pos < MIN_ANSWER_TOKENS)
        logits[..., bpe.EOS_ID] = logits[..., bpe.EOS_ID].masked_fill(early.to(device), float("-inf"))
        hit = (logits.argmax(-1).cpu() == y) | (y == -100)
        complete = [len(xi) < model.seq_len or int(yi[-1]) == bpe.EOS_ID for xi, yi in samples]  # not cut short
        out += [bool(h.all()) and c for h, c in zip(hit, complete)]
    return out


def greedy_answers(model, tok, rows, max_new_tokens: int = 128) -> list:
    """Greedy Results for many rows at once (batched by a BatchServer that ends with the call). A prompt with
    nothing to answer ('???' normalises to an empty question) gets an empty Result with confidence 0."""
    asked = [r for r in rows if normalize_prompt(r["prompt"])]
    # no time limit: on a busy laptop a batch may take minutes, and nobody is waiting to be told "ask again"
    server = BatchServer(max_batch=64, threads=torch.get_num_threads(), timeout=None)
    try:
        results = iter(server.answer_many(model, tok, [r["prompt"] for r in asked],
                                          Settings(max_new_tokens=max_new_tokens),
                                          [r.get("history", ()) for r in asked]))
    finally:
        server.close()
    return [next(results) if normalize_prompt(r["prompt"]) else Result("", [], [], [], "empty", 0, 0.0) for r in rows]


def answer_report(model, tok, rows, threshold: float = 0.8, max_new_tokens: int = 128,
                  fixed: dict = FIXED_QUESTIONS) -> dict:
    """Greedy answers to every pair: the share with F1 >= threshold, the share exactly right, and the
    fixed questions' answers."""
    settings = Settings(max_new_tokens=max_new_tokens)
    rows = [r for r in rows if "prompt" in r]
    exact = greedy_exact(model, tok, rows)
    missed = [r for r, ok in zip(rows, exact) if not ok]
    answers = iter(greedy_answers(model, tok, missed, max_new_tokens) if missed else [])
    scores = [1.0 if ok else char_f1(next(answers).answer, r["completion"]) for r, ok in zip(rows, exact)]
    answers = {q: generate(model, tok, q, settings).answer for q in fixed}
    return {"n": len(rows), "f1_ok": sum(s >= threshold for s in scores) / max(1, len(rows)),
            "exact": sum(exact) / max(1, len(rows)), "mean_f1": sum(scores) / max(1, len(scores)),
            "fixed_ok": all(answers[q] == a for q, a in fixed.items()), "fixed_answers": answers}


def usable(model, tok, train_rows, val_rows, fixed: dict = FIXED_QUESTIONS) -> tuple[bool, dict]:
    """The bar for promotion and for time-to-usable: both fixed questions exact, >= 95% of training wordings and
    >= 80% of held-out wordings (val) answered with character-F1 >= 0.8."""
    train, val = answer_report(model, tok, train_rows, fixed=fixed), answer_report(model, tok, val_rows, fixed={})
    report = {"fixed_ok": train["fixed_ok"], "fixed_answers": train["fixed_answers"],
              "train_f1_ok": train["f1_ok"], "val_f1_ok": val["f1_ok"], "val_exact": val["exact"]}
    ok = train["fixed_ok"] and all(report[k] >= v for k, v in USABLE.items())
    return ok, report


def refusal_report(model, tok, course, dev_in, dev_out, threshold: float, min_similarity: float) -> dict:
    """On a development set: course questions (dev_in, with answers; a row may hold the earlier exchange in
    "history") split into right (F1 >= 0.8, not refused), wrong but answered, refused but would have been right,
    refused and wrong; questions to refuse (dev_out) refused, overall and per "kind". Shares of 0..1; refusals the
    model wrote itself are counted apart from those of the gate. Every row is answered as the chat answers it
    (knowledge.reply_in_context); "raw" is the answer with the earlier exchange in the context and no gate."""
    def replies(rows):
        """What the chat says to each row (reply_in_context: a two-turn row is also asked alone, a first question
        part by part when the gate refuses it), and every try, for calibrate's sweep: of a first question the whole,
        then each part, judged for the whole question; of a two-turn row the answer with the earlier exchange,
        then alone."""
        with_history = greedy_answers(model, tok, rows)
        two = [i for i, row in enumerate(rows) if row.get("history")]
        alone = dict(zip(two, greedy_answers(model, tok, [{"prompt": rows[i]["prompt"]} for i in two]) if two else []))
        split = [(i, p) for i, row in enumerate(rows) if not row.get("history") for p in parts(row["prompt"])]
        asked = dict(zip(split, greedy_answers(model, tok, [{"prompt": p} for _, p in split]) if split else []))

        def ask(i, h, q):
            if q != rows[i]["prompt"]:
                return asked[i, q]
            return alone[i] if i in alone and not h else with_history[i]

        out = [reply_in_context(lambda h, q, i=i: ask(i, h, q), row["prompt"], row.get("history", ()), course,
                                threshold=threshold, min_similarity=min_similarity) for i, row in enumerate(rows)]
        gate = {"threshold": threshold, "min_similarity": min_similarity}
        tries = [[judge(ask(i, (), q), row["prompt"], course, **gate) for q in [row["prompt"], *parts(row["prompt"])]]
                 if not row.get("history") else  # a two-turn row: with the earlier exchange, then alone
                 [judge(with_history[i], row["prompt"], course, history=row["history"], **gate),
                  judge(alone[i], row["prompt"], course, **gate)] for i, row in enumerate(rows)]
        return [r for r, _, _ in out], [rep for _, rep, _ in out], with_history, tries

    (in_res, in_rep, in_raw, in_tries), (_, out_rep, _, out_tries) = replies(dev_in), replies(dev_out)
    in_f1 = [char_f1(r.answer, row["completion"]) for r, row in zip(in_res, dev_in)]
    raw_right = [char_f1(r.answer, row["completion"]) >= 0.8 for r, row in zip(in_raw, dev_in)]  # refusal off

    def by_kind(rows, values):
        kinds: dict = {}
        for row, v in zip(rows, values):
            kinds.setdefault(row.get("kind", "other"), []).append(v)
        return {k: sum(v) / len(v) for k, v in sorted(kinds.items())}

    n_in, n_out = max(1, len(dev_in)), max(1, len(dev_out))
    right = [f >= 0.8 for f in in_f1]
    return {"threshold": threshold, "min_similarity": min_similarity, "dev_in": len(dev_in), "dev_out": len(dev_out),
            "in_f1_ok_raw": sum(raw_right) / n_in,
            "in_answered_right": sum(ok and r.known for ok, r in zip(right, in_rep)) / n_in,
            "in_wrong_but_answered": sum(not ok and r.known for ok, r in zip(right, in_rep)) / n_in,
            "in_right_but_refused": sum(ok and not r.known for ok, r in zip(right, in_rep)) / n_in,
            "in_refused_and_wrong": sum(not ok and not r.known for ok, r in zip(right, in_rep)) / n_in,
            "in_refused": sum(not r.known for r in in_rep) / n_in,
            "in_right_by_kind": by_kind(dev_in, [ok and r.known for ok, r in zip(right, in_rep)]),
            "out_refused": sum(not r.known for r in out_rep) / n_out,
            "out_refused_by_model": sum(r.said_no for r in out_rep) / n_out,
            "out_refused_by_kind": by_kind(dev_out, [not r.known for r in out_rep]),
            "scores": {"in": [[(t.confidence, t.similarity, char_f1(t.answer, row["completion"]), t.near_refused,
                                t.said_no) for t in tries] for tries, row in zip(in_tries, dev_in)],
                       "out": [[(t.confidence, t.similarity, t.near_refused, t.said_no) for t in tries]
                               for tries in out_tries],
                       "two_turn": {"in": [bool(r.get("history")) for r in dev_in],
                                    "out": [bool(r.get("history")) for r in dev_out]}}}


def dev_summary(model, tok, course, train_rows, path, split: str = "report") -> dict:
    """The class-like development set in a few numbers (for promotion.json and the chat tab): course questions
    answered right with the refusal gate on and raw, the character lookup's share of right facts, and the shares
    of look-alikes and other out-of-course questions refused."""
    dev_in, dev_out = read_dev(path, split)
    r = refusal_report(model, tok, course, dev_in, dev_out, CONFIDENCE_THRESHOLD, SIMILARITY_THRESHOLD)
    return {"split": split, "n": len(dev_in), "right": r["in_answered_right"], "raw": r["in_f1_ok_raw"],
            "refused": r["in_refused"], "lookup_right": lookup_right(train_rows, dev_in),
            "out_refused_by_kind": r["out_refused_by_kind"]}
