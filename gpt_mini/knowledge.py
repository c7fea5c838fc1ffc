"""Honest answers: decide whether the model knows a question, and suggest course questions it does know.

Besides the model's own refusal line, two measured signals decide, both calibrated on the calib half of
data/dev_class.jsonl (class-like course questions and questions outside the course) with
`python -m gpt_mini.knowledge`:
- confidence: the model's own probability of the least likely token of the answer it just wrote. A learned answer
  comes out with every token near 1; a guess has at least one unsure token. (The mean over all tokens was tried
  first: a long-trained model recites memorised answers so confidently that the mean hides the one uncertain
  choice, and it refused only 49% of out-of-course questions.)
- similarity: how much the question shares with the training questions of the fact the model answered (characters
  and character pairs, rare ones weighted up). A question about nothing in the course shares little with them even
  when the model recites some answer with confidence ("去珠峰大本营需要办边防证吗" -> the answer about strangers).
  When the answer is no fact's answer (or the checkpoint has no answers), the closest training question of any
  fact counts.
Similarity decides a refusal and picks the suggested questions; it never supplies an answer.
A long question the gate would refuse is read again clause by clause (parts): students tell where the question
comes from first ("刚才老师讲了…我没听懂") or add filler after it, and the model may know the part that asks.
"""

import functools
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import zip_longest

import torch

from .checkpoint import file_sha
from .config import resolve
from .data import normalize_prompt, read_jsonl
from .errors import UserError

REFUSAL = "这个问题我还没学过"
CONFIDENCE_THRESHOLD = 0.10  # both calibrated with `python -m gpt_mini.knowledge` (see README)
SIMILARITY_THRESHOLD = 0.20
SELF_CONTAINED_SIMILARITY = 0.60  # a question this close to a course question is answered alone (calib half)
REFUSED_MARGIN = 0.10  # refuse a question this much closer to a taught refusal than to its answer's fact (calib)
MAX_SUGGESTIONS = 3
_FILLER = set("请问老师吗呢呀啊吧嘛哦的了是什么怎么为啥一下个?,.!:;")  # carry no topic; ignored for similarity


_WORD = re.compile(r"[a-z0-9_]+|\S")  # a Latin word or a number is one unit; every other character is one


def _features(text: str) -> Counter:
    """Units (Chinese characters, Latin words, numbers) and pairs of neighbouring units. A Latin word is one unit:
    its letters alone would make any English sentence look like the course's English terms."""
    units = [u for u in _WORD.findall(normalize_prompt(text).lower()) if u not in _FILLER]
    return Counter(units) + Counter(a + " " + b for a, b in zip(units, units[1:]))


def char_f1(prediction: str, reference: str) -> float:
    """F1 over characters as a multiset (the usual metric for Chinese QA)."""
    common = sum((Counter(prediction) & Counter(reference)).values())
    if not common:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


class Course:
    """The questions a model was trained on, grouped by fact (one list of wordings per answer), and the answers;
    `refused`: the questions it was taught to refuse (their answer is the refusal line). Stored in every checkpoint
    as plain lists of strings, so it loads with weights_only=True."""

    @classmethod
    def of(cls, facts, answers=(), refused=()) -> "Course":
        """Course(facts, answers, refused), built once per content: indexing 35,000 wordings takes seconds on 2
        cores, and the dashboard meets the same course in every checkpoint and every run. A Course is never
        changed."""
        return _indexed(tuple(map(tuple, facts)), tuple(answers), tuple(refused))

    def __init__(self, facts: list[list[str]], answers=(), refused=()):
        keep = [i for i, f in enumerate(facts) if f]
        self.facts = [list(facts[i]) for i in keep]
        # answers[i] is what fact i answers; empty for checkpoints saved before answers were stored
        self.answers = [answers[i] for i in keep] if len(answers) == len(facts) else []
        self.refused = list(refused)
        self._answer_index = {a: i for i, a in enumerate(self.answers)}
        # the refused questions are one more group after the facts: never a fact, never suggested
        index = [[_features(q) for q in f] for f in self.facts + [self.refused]]
        df = Counter(k for f in index for feats in f for k in set(feats))
        n = max(1, sum(len(f) for f in index))
        self._idf = {k: math.log((1 + n) / (1 + v)) + 1 for k, v in df.items()}
        # Every wording as a row of unit-length idf-weighted features, computed once: a question is one sparse
        # matrix-vector product (in torch, outside the GIL: a class asking at once is not queued behind Python).
        self._columns: dict[str, int] = {}
        rows, cols, vals, self._fact_of = [], [], [], []
        for i, f in enumerate(index):
            for feats in f:
                for key, w in self._unit(feats).items():
                    rows.append(len(self._fact_of))
                    cols.append(self._columns.setdefault(key, len(self._columns)))
                    vals.append(w)
                self._fact_of.append(i)
        matrix = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                         torch.tensor(vals, dtype=torch.float64),
                                         (len(self._fact_of), len(self._columns)), check_invariants=True)
        with warnings.catch_warnings():  # "sparse CSR is in beta": the one product used here is plain and tested
            warnings.simplefilter("ignore", UserWarning)
            self._matrix = matrix.to_sparse_csr()
        self._fact_of = torch.tensor(self._fact_of, dtype=torch.long)

    def _unit(self, feats: Counter) -> dict:
        weighted = {k: v * self._idf.get(k, 1.0) for k, v in feats.items()}
        norm = math.sqrt(sum(w * w for w in weighted.values()))
        return {k: w / norm for k, w in weighted.items()} if norm else {}

    @classmethod
    def from_rows(cls, rows) -> "Course":
        """Training rows -> facts in file order; a fact's first wording is the one suggested. Rows that teach the
        refusal line are not a fact: questions outside the course are never suggested, and are kept apart as the
        questions taught to be refused."""
        by_answer, refused = _taught(rows)
        return cls.of(list(by_answer.values()), list(by_answer), refused)

    def similarity(self, question: str) -> float:
        """0..1: the question against its closest training question (1.0 when the course is unknown)."""
        return similarity_of(self, self.closest(question, 1))

    def _per_fact(self, question: str) -> torch.Tensor:
        """Per fact: the cosine of the question with its most similar wording (idf-weighted characters and
        character pairs)."""
        q = torch.zeros(len(self._columns), dtype=torch.float64)
        for key, w in self._unit(_features(question)).items():
            if key in self._columns:  # a feature no wording has adds nothing to any dot product
                q[self._columns[key]] = w
        per_wording = self._matrix @ q
        return torch.zeros(len(self.facts) + 1, dtype=torch.float64).scatter_reduce_(
            0, self._fact_of, per_wording, "amax", include_self=False)

    def fact_answered(self, answer: str) -> int | None:
        """The fact whose answer the model wrote: the same text, else the answer with character-F1 >= 0.5 to it
        (a sampled or cut-off answer); None when no answer is that close or the answers are unknown."""
        if answer in self._answer_index or not self.answers or not answer:
            return self._answer_index.get(answer)
        f1, best = max((char_f1(answer, a), i) for i, a in enumerate(self.answers))
        return best if f1 >= 0.5 else None

    def answer_similarity(self, question: str, answer: str) -> float | None:
        """0..1: the question against the closest training question of the fact the model answered; None when
        the answer is no fact's."""
        return self.match(question, answer, 0)[1]

    def closest(self, question: str, k: int = MAX_SUGGESTIONS) -> list[tuple[str, float]]:
        """The k facts whose wordings are most like the question (cosine of idf-weighted characters and
        character pairs): (the fact's first wording, similarity 0..1), most similar first."""
        return self.match(question, None, k)[0]

    def match(self, question: str, answer: str | None, k: int = MAX_SUGGESTIONS):
        """closest(question, k), answer_similarity(question, answer) (None without an answer) and the similarity
        to the closest question taught to be refused (0.0 without any) from one search: the refusal needs all
        three for every reply."""
        if not self.facts:
            return [], None, 0.0
        per_all = self._per_fact(question)
        per_fact, refused = per_all[:-1], round(float(per_all[-1]), 3)
        # most similar first; among equals the later fact first (as sorting (similarity, index) pairs would)
        order = len(self.facts) - 1 - torch.sort(per_fact.flip(0), descending=True, stable=True).indices[:k]
        closest = [(self.facts[i][0], round(float(per_fact[i]), 3)) for i in order.tolist() if per_fact[i] > 0]
        fact = None if answer is None else self.fact_answered(answer)
        return closest, None if fact is None else round(float(per_fact[fact]), 3), refused


def _taught(rows) -> tuple[dict[str, list[str]], list[str]]:
    """Single-turn training rows -> {answer: its distinct wordings} in file order, and the distinct questions whose
    answer is the refusal line."""
    by_answer: dict[str, list[str]] = {}
    refused: dict[str, None] = {}
    for r in rows:
        if "prompt" in r and not r.get("history"):
            if r["completion"].startswith(REFUSAL):
                refused[r["prompt"]] = None
                continue
            wordings = by_answer.setdefault(r["completion"], [])
            if r["prompt"] not in wordings:
                wordings.append(r["prompt"])
    return by_answer, list(refused)


def similarity_of(course: "Course", closest: list) -> float:
    """The similarity of the closest fact in a closest() list (1.0 when the course is unknown)."""
    if not course.facts:
        return 1.0
    return closest[0][1] if closest else 0.0


def asked_with(question: str, history=()) -> str:
    """What similarity is measured on: the question, after the earlier question when there is an earlier exchange
    (a follow-up such as 那它有什么用 names nothing by itself)."""
    return "".join([q for q, _ in history][-1:] + [question])


def lookup_right(train_rows, rows) -> float:
    """The baseline a GPT must beat: the share of course questions (rows with a "completion") whose closest
    training fact by shared characters (Course.closest, with the earlier question for a follow-up) is the fact
    with that answer. It only measures; it never answers anything."""
    course = Course.from_rows(train_rows)
    answer_of = {}
    for r in train_rows:
        if "prompt" in r and not r.get("history"):
            answer_of.setdefault(r["completion"], r["prompt"])  # the fact's first wording, as closest() names it
    fact_of = {first: answer for answer, first in answer_of.items()}
    rows = [r for r in rows if "completion" in r]
    hits = 0
    for r in rows:
        top = course.closest(asked_with(r["prompt"], r.get("history", ())), 1)
        hits += bool(top) and fact_of.get(top[0][0]) == r["completion"]
    return hits / max(1, len(rows))


@dataclass
class Reply:
    """What the student sees: the model's answer, or the refusal line with suggestions."""
    text: str
    answer: str  # the model's own answer, always kept (the per-token view shows it)
    confidence: float
    known: bool
    suggestions: list = field(default_factory=list)
    similarity: float = 1.0
    said_no: bool = False  # the model itself wrote the refusal line
    refused_similarity: float = 0.0  # the question against the closest question taught to be refused
    part: str = ""  # the clause of the question the answer is to, when only a part was understood (parts)
    why: str = ""  # why it was refused, the first that holds: "model", "refused_like", "unsure", "unlike", "empty"
    withheld: bool = False  # refused with refusal on: the student sees the refusal line, not the answer

    @property
    def near_refused(self) -> bool:
        return closer_to_refused(self.refused_similarity, self.similarity)


def closer_to_refused(refused_similarity: float, similarity: float) -> bool:
    """The question is clearly closer to a question taught to be refused than to the questions of the fact
    answered (by more than REFUSED_MARGIN)."""
    return refused_similarity > similarity + REFUSED_MARGIN


WHY_NOTES = {  # under a refusal, chat and CLI: which check refused it (Reply.why), with the figures it compared
    "model": ("为什么没答：模型自己写出了“还没学过”（训练时它学过这样回答课程外的问题）",
              "Why: the model itself wrote “not learned yet” (it was trained to, for questions outside the course)"),
    "refused_like": ("为什么没答：问题更像训练时学过要拒答的问题（相似度 {r:.2f}），不像它答的那个知识点（{s:.2f}）",
                     "Why: the question is closer to the questions it was taught to refuse ({r:.2f}) than to the "
                     "fact it answered ({s:.2f})"),
    "unsure": ("为什么没答：模型没把握，回答里最没把握的一个词元只有 {pct}%，低于 {t}%",
               "Why: the model was unsure: the least likely token of its answer was {pct}%, below {t}%"),
    "unlike": ("为什么没答：问题不像它答的那个知识点的训练问法（相似度 {s:.2f}，低于 {m:.2f}）",
               "Why: the question is unlike the training questions of the fact it answered (similarity {s:.2f}, "
               "below {m:.2f})"),
    "empty": ("为什么没答：回答是空的", "Why: the answer was empty"),
}


def why_values(reply, threshold: float = CONFIDENCE_THRESHOLD, min_similarity: float = SIMILARITY_THRESHOLD) -> dict:
    """The figures a WHY_NOTES line names, for a reply judged at these thresholds."""
    return {"r": reply.refused_similarity, "s": reply.similarity, "pct": round(100 * reply.confidence),
            "t": round(100 * threshold), "m": min_similarity}


def refusal_line(suggestions) -> str:
    if not suggestions:
        return f"{REFUSAL}。"
    return f"{REFUSAL}。你可以试试问我：" + "；".join(suggestions)


def judge(result, question: str, course: Course | None, refuse: bool = True,
          threshold: float = CONFIDENCE_THRESHOLD, min_similarity: float = SIMILARITY_THRESHOLD,
          history=()) -> Reply:
    """Refuse (when `refuse`) if the model itself says it has not learned this (it was trained to, on questions
    outside the course), is unsure of its own answer, or the question is unlike the questions of the fact it
    answered (or, for an answer that is no fact's, unlike every question it was taught), or is clearly closer to a
    question it was taught to refuse (by REFUSED_MARGIN: 家里插座突然没电了咋修 is a repair request like those,
    not the fact about overloaded sockets). With an earlier exchange in the context, similarity is of the earlier
    question and this one together (asked_with). Without a course (an old checkpoint) only the model decides."""
    said_no = result.answer.startswith(REFUSAL)
    # a follow-up names nothing itself and may ask about another fact: only the closest fact counts for it
    of_fact = None if history or said_no else result.answer
    closest, of_answer, refused = course.match(asked_with(question, history), of_fact) if course else ([], None, 0.0)
    similarity = similarity_of(course, closest) if course else 1.0
    similarity = similarity if of_answer is None else of_answer
    reasons = {"model": said_no, "refused_like": closer_to_refused(refused, similarity),
               "unsure": result.confidence < threshold, "unlike": similarity < min_similarity,
               "empty": not result.answer}
    why = next((k for k, failed in reasons.items() if failed), "")
    known = not why
    suggestions = [q for q, _ in closest] if not known else []
    text = result.answer if known or not refuse else refusal_line(suggestions)
    return Reply(text, result.answer, result.confidence, known, suggestions, similarity, said_no, refused, why=why,
                 withheld=refuse and not known)


_CLAUSE = re.compile(r"[，,。！!？?；;、\s]+")
_ASKS = re.compile(r"吗|呢|啥|什么|怎么|为什么|为啥|咋|哪|几|多少|是不是|能不能|会不会|有没有|叫|谁|如何|区别|原理")
MAX_PARTS = 5
PART_NOTE = ("（整句没读懂，答的是其中这一句：“{part}”）",  # under an answer to one part: chat and CLI
             "(the whole question was not understood; this answers the part “{part}”)")


def parts(question: str, most: int = MAX_PARTS) -> list[str]:
    """The clauses of a question that may be asked alone: the clauses that ask something (吗, 什么, 为啥…) together,
    then every clause of 4 or more characters. A one-clause question has no parts."""
    pieces = [p for p in _CLAUSE.split(question) if p]
    if len(pieces) < 2:
        return []
    asking = [p for p in pieces if _ASKS.search(p)]
    found = (["，".join(asking)] if 0 < len(asking) < len(pieces) else []) + [p for p in pieces if len(p) >= 4]
    return list(dict.fromkeys(found))[:most]


def reply_in_context(ask, question: str, history, course: Course | None, refuse: bool = True,
                     self_contained: float = SELF_CONTAINED_SIMILARITY, **gate):
    """ask(history, question) -> Result. With refusal on: a question the model knows by itself and that is this
    close to a course question is answered on its own (a new question after another topic); otherwise with the
    previous exchange in the context (a follow-up such as 那它有什么用); when the answer alone passes the gate too
    and is the surer one, or the answer with the context does not pass, the answer alone is kept. A small model is
    easily thrown by an earlier exchange (after 霜 it repeats the 霜 answer to 那露水呢).
    A first question that the gate (not the model itself) refuses is asked again part by part (parts); an answer
    to a part counts only if the gate passes it for the whole question, and the surest one is kept. Returns
    (Result, Reply, the history that was used). gate: judge's threshold and min_similarity."""
    if not refuse:
        result = ask(history, question)
        return result, judge(result, question, course, refuse, history=history, **gate), history
    if not history:
        result = ask((), question)
        reply = judge(result, question, course, refuse, **gate)
        if reply.known or reply.said_no:
            return result, reply, ()
        tries = [(r, judge(r, question, course, refuse, **gate), p) for p in parts(question) for r in [ask((), p)]]
        known = [t for t in tries if t[1].known]
        if not known:
            return result, reply, ()
        part_result, part_reply, part = max(known, key=lambda t: t[1].confidence)
        part_reply.part = part
        return part_result, part_reply, ()
    alone = ask((), question)
    alone_reply = judge(alone, question, course, refuse, **gate)
    if alone_reply.known and alone_reply.similarity >= self_contained:
        return alone, alone_reply, ()
    result = ask(history, question)
    reply = judge(result, question, course, refuse, history=history, **gate)
    if keeps_alone(alone_reply.known, alone_reply.similarity, alone_reply.confidence, reply.known, reply.confidence,
                   self_contained):
        return alone, alone_reply, ()
    if not reply.known and course:
        reply = _suggest_after(reply, alone_reply.suggestions, history, course)
    return result, reply, history


def _suggest_after(reply: Reply, alone: list, history, course: Course) -> Reply:
    """A question refused after an earlier exchange: suggest for its own words and for it with the earlier question
    in turn (a new topic such as 今天天气怎么样 after 注意力机制 is suggested the weather facts, not attention
    again), never the fact the earlier exchange was about."""
    q, a = history[-1]
    fact = course.fact_answered(a)
    earlier = course.facts[fact][0] if fact is not None else next((f for f, _ in course.closest(q, 1)), None)
    mixed = [x for pair in zip_longest(alone, reply.suggestions) for x in pair if x and x != earlier]
    suggestions = list(dict.fromkeys(mixed))[:MAX_SUGGESTIONS]
    return replace(reply, suggestions=suggestions, text=refusal_line(suggestions))


def keeps_alone(alone_passes: bool, alone_similarity: float, alone_confidence: float, with_passes: bool,
                with_confidence: float, self_contained: float = SELF_CONTAINED_SIMILARITY) -> bool:
    """A follow-up's two readings (reply_in_context; calibrate replays it at every pair of thresholds): keep the
    answer to the question alone when it passes the gate and is a question of its own (self_contained), or the
    answer with the earlier exchange does not pass or is less sure."""
    return alone_passes and (alone_similarity >= self_contained or not with_passes
                             or alone_confidence > with_confidence)


@functools.lru_cache(maxsize=4)  # the same course again: a reloaded model, the next run
def _indexed(facts: tuple, answers: tuple, refused: tuple) -> Course:
    return Course([list(f) for f in facts], list(answers), list(refused))


def course_of(ckpt: dict) -> Course:
    """The checkpoint's course index, built once and kept on the dict."""
    if "_course" not in ckpt:
        refused = ckpt.get("course_refused")
        ckpt["_course"] = Course.of(ckpt.get("course", []), ckpt.get("course_answers", []),
                                    refused_in_training_data(ckpt) if refused is None else refused)
    return ckpt["_course"]


def refused_in_training_data(ckpt: dict) -> list[str]:
    """For a checkpoint saved before the questions to refuse were stored: those of its training data file, when
    that file is still the one it was trained on (the hash its provenance recorded); else none."""
    path = ((ckpt.get("config") or {}).get("data") or {}).get("train_path")
    recorded = ((ckpt.get("provenance") or {}).get("data") or {}).get("train_path")
    if not path or not recorded or file_sha(path) != recorded:
        return []
    return list(_refused_in(str(resolve(path)), recorded))


@functools.lru_cache(maxsize=4)  # the default model and its int8 copy, old runs: one file, read once per content
def _refused_in(path: str, sha: str) -> tuple[str, ...]:
    return tuple(_taught(read_jsonl(path))[1])


def _has_prompt(row, where_zh: str, where_en: str) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
        raise UserError(f"{where_zh} 需要字段 prompt", f"{where_en} needs a prompt field")
    return row


def read_questions(path) -> list[dict]:
    """JSON lines with at least a "prompt" (dev_out.jsonl has a "kind" instead of an answer)."""
    return read_jsonl(path, check=_has_prompt)


def read_dev(path, split: str = "all") -> tuple[list[dict], list[dict]]:
    """A development file -> (questions with an answer, questions to refuse), keeping rows of `split`
    (calib_new | report | calib | calib_old | all). Rows without "completion" are to be refused."""
    rows = [r for r in read_questions(path) if split == "all" or r.get("split") == split]
    return [r for r in rows if "completion" in r], [r for r in rows if "completion" not in r]


if __name__ == "__main__":  # the calibration CLI lives in calibrate.py; this name is the documented one
    from .calibrate import main
    from .errors import run_cli
    raise SystemExit(run_cli(main))
