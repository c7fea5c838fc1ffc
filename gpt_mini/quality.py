"""How well a model answers: character-level F1 against reference answers, greedy decoding."""

from collections import Counter

from .data import FIXED_QUESTIONS
from .generate import Settings, generate


def char_f1(prediction: str, reference: str) -> float:
    """F1 over characters as a multiset (the usual metric for Chinese QA)."""
    common = sum((Counter(prediction) & Counter(reference)).values())
    if not common:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def answer_report(model, tok, rows, threshold: float = 0.8, max_new_tokens: int = 128) -> dict:
    """Greedy answers to every pair: the share with F1 >= threshold, the share exactly right, and the
    fixed questions' answers."""
    settings = Settings(max_new_tokens=max_new_tokens)
    scores, exact = [], 0
    for r in rows:
        answer = generate(model, tok, r["prompt"], settings).answer
        scores.append(char_f1(answer, r["completion"]))
        exact += answer == r["completion"]
    fixed = {q: generate(model, tok, q, settings).answer for q in FIXED_QUESTIONS}
    return {"n": len(rows), "f1_ok": sum(s >= threshold for s in scores) / max(1, len(rows)),
            "exact": exact / max(1, len(rows)), "mean_f1": sum(scores) / max(1, len(scores)),
            "fixed_ok": all(fixed[q] == a for q, a in FIXED_QUESTIONS.items()), "fixed_answers": fixed}
