"""Honest answers: decide whether the model knows a question, and suggest course questions it does know.

The decision uses the model's own confidence in the answer it just wrote: exp(mean log-probability of the
answer's tokens). An answer the model has learned comes out with probabilities near 1; an answer to something it
never saw is a chain of guesses. The threshold is calibrated on data/dev_in.jsonl (course questions in new
wordings) and data/dev_out.jsonl (questions outside the course): `python -m gpt_mini.knowledge`.
Question similarity (shared characters and character pairs) only picks the suggested questions; it never supplies
an answer.
"""

import json
import math
from collections import Counter
from dataclasses import dataclass, field

from .data import normalize_prompt

REFUSAL = "这个问题我还没学过"
CONFIDENCE_THRESHOLD = 0.80  # calibrated with `python -m gpt_mini.knowledge` (see README)
MAX_SUGGESTIONS = 3
_FILLER = set("请问老师吗呢呀啊吧嘛哦的了是什么怎么为啥一下个?,.!:;")  # carry no topic; ignored for similarity


def _features(text: str) -> Counter:
    chars = [c for c in normalize_prompt(text).lower() if c not in _FILLER and not c.isspace()]
    return Counter(chars) + Counter(a + b for a, b in zip(chars, chars[1:]))


class Course:
    """The questions a model was trained on, grouped by fact (one list of wordings per answer).
    Stored in every checkpoint as plain lists of strings, so it loads with weights_only=True."""

    def __init__(self, facts: list[list[str]]):
        self.facts = [list(f) for f in facts if f]
        self._index = [[_features(q) for q in f] for f in self.facts]
        df = Counter(k for f in self._index for feats in f for k in set(feats))
        n = max(1, sum(len(f) for f in self._index))
        self._idf = {k: math.log((1 + n) / (1 + v)) + 1 for k, v in df.items()}

    @classmethod
    def from_rows(cls, rows) -> "Course":
        """Training rows -> facts in file order; a fact's first wording is the one suggested."""
        by_answer: dict[str, list[str]] = {}
        for r in rows:
            if "prompt" in r and not r.get("history"):
                wordings = by_answer.setdefault(r["completion"], [])
                if r["prompt"] not in wordings:
                    wordings.append(r["prompt"])
        return cls(list(by_answer.values()))

    def _cosine(self, a: Counter, b: Counter) -> float:
        dot = sum(a[k] * b[k] * self._idf.get(k, 1.0) ** 2 for k in a.keys() & b.keys())
        na = math.sqrt(sum((v * self._idf.get(k, 1.0)) ** 2 for k, v in a.items()))
        nb = math.sqrt(sum((v * self._idf.get(k, 1.0)) ** 2 for k, v in b.items()))
        return dot / (na * nb) if na and nb else 0.0

    def closest(self, question: str, k: int = MAX_SUGGESTIONS) -> list[tuple[str, float]]:
        """The k facts whose wordings are most like the question: (the fact's first wording, similarity 0..1)."""
        feats = _features(question)
        scored = [(max(self._cosine(feats, f) for f in wordings), i) for i, wordings in enumerate(self._index)]
        scored.sort(reverse=True)
        return [(self.facts[i][0], round(sim, 3)) for sim, i in scored[:k] if sim > 0]


@dataclass
class Reply:
    """What the student sees: the model's answer, or the refusal line with suggestions."""
    text: str
    answer: str  # the model's own answer, always kept (the per-token view shows it)
    confidence: float
    known: bool
    suggestions: list = field(default_factory=list)


def refusal_line(suggestions) -> str:
    if not suggestions:
        return f"{REFUSAL}。"
    return f"{REFUSAL}。你可以试试问我：" + "；".join(suggestions)


def judge(result, question: str, course: Course | None, refuse: bool = True,
          threshold: float = CONFIDENCE_THRESHOLD) -> Reply:
    """Refuse (when `refuse`) if the model's confidence in its own answer is below the threshold."""
    known = result.confidence >= threshold and bool(result.answer)
    suggestions = [q for q, _ in course.closest(question)] if course and not known else []
    text = result.answer if known or not refuse else refusal_line(suggestions)
    return Reply(text, result.answer, result.confidence, known, suggestions)


def course_of(ckpt: dict) -> Course:
    """The checkpoint's course index, built once and kept on the dict."""
    if "_course" not in ckpt:
        ckpt["_course"] = Course(ckpt.get("course", []))
    return ckpt["_course"]


# ---- calibration: python -m gpt_mini.knowledge --------------------------------------------------------------

def sweep(in_conf, out_conf, thresholds=None) -> list[dict]:
    """For each threshold: share of in-course rewordings refused (wrongly) and of out-of-course ones refused."""
    thresholds = thresholds or [round(0.05 * i, 2) for i in range(1, 20)]
    return [{"threshold": t, "in_refused": sum(c < t for c in in_conf) / max(1, len(in_conf)),
             "out_refused": sum(c < t for c in out_conf) / max(1, len(out_conf))} for t in thresholds]


def read_questions(path) -> list[dict]:
    """JSON lines with at least a "prompt" (dev_out.jsonl has a "kind" instead of an answer)."""
    from pathlib import Path

    from .errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"找不到文件 {path}", f"file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path} 第 {n} 行不是合法的 JSON", f"{path} line {n} is not valid JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise UserError(f"{path} 第 {n} 行需要字段 prompt", f"{path} line {n} needs a prompt field")
            rows.append(row)
    return rows


def main(argv=None):
    from .checkpoint import load_model
    from .config import ROOT
    from .errors import ArgumentParser
    from .quality import refusal_report

    p = ArgumentParser(description="校准拒答阈值 / calibrate the refusal threshold on the development set")
    p.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "last.pt"))
    p.add_argument("--dev_in", default=str(ROOT / "data" / "dev_in.jsonl"))
    p.add_argument("--dev_out", default=str(ROOT / "data" / "dev_out.jsonl"))
    args = p.parse_args(argv)
    model, tok, _ = load_model(args.ckpt)
    report = refusal_report(model, tok, None, read_questions(args.dev_in), read_questions(args.dev_out),
                            CONFIDENCE_THRESHOLD)
    conf = report.pop("confidences")
    right = [c for c, f in zip(conf["in"], conf["in_f1"]) if f >= 0.8]
    wrong = [c for c, f in zip(conf["in"], conf["in_f1"]) if f < 0.8]
    print(json.dumps(report, ensure_ascii=False))
    print("threshold | in-course refused | right answers refused | wrong answers refused | out-of-course refused")
    for row in sweep(conf["in"], conf["out"]):
        t = row["threshold"]
        print(f"{t:9.2f} | {row['in_refused']:17.1%} | {sum(c < t for c in right) / max(1, len(right)):21.1%} | "
              f"{sum(c < t for c in wrong) / max(1, len(wrong)):21.1%} | {row['out_refused']:21.1%}")
    return 0


if __name__ == "__main__":
    from .errors import run_cli
    raise SystemExit(run_cli(main))
