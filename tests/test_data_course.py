"""The committed course data measures what we want: many wordings per fact, held-out wordings (val) that are not
in train, a development set apart from both, the unseen facts apart from all, and the fixed questions intact."""

import json
import re
import unicodedata
from collections import Counter

import pytest
from conftest import ROOT

from gpt_mini.data import FIXED_QUESTIONS, REWORDED_PROBES, normalize_prompt, read_jsonl
from gpt_mini.knowledge import REFUSAL

DATA = ROOT / "data"
FILLER = re.compile(r"[请问老师吗呢呀啊吧嘛哦啦~\s?？!！。.,，、:：;；…]")


def key(question: str) -> str:
    """A question without punctuation, spaces and politeness words: two wordings with the same key are the same."""
    return FILLER.sub("", unicodedata.normalize("NFKC", question).lower())


@pytest.fixture(scope="module")
def train():
    return read_jsonl(DATA / "train.jsonl")


@pytest.fixture(scope="module")
def val():
    return read_jsonl(DATA / "val.jsonl")


def jsonl(name):
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_many_facts_each_with_many_wordings(train):
    wordings = Counter(r["completion"] for r in train if "history" not in r)
    assert len(wordings) >= 510 + 30  # course facts plus the small talk about the model and the class
    assert min(wordings.values()) >= 5


def test_fixed_questions_keep_their_exact_reference_answers(train):
    pairs = {normalize_prompt(r["prompt"]): r["completion"] for r in train}
    for question, answer in FIXED_QUESTIONS.items():
        assert pairs[normalize_prompt(question)] == answer


def test_two_turn_rows_hold_follow_ups_and_topic_changes(train):
    two = [r for r in train if r.get("history")]
    taught = {r["completion"] for r in train if not r.get("history")}
    assert len(two) >= 150
    assert all(r["history"][0][1] in taught and r["completion"] in taught for r in two)
    again = [r for r in two if r["completion"] == r["history"][0][1]]  # "没听懂，再讲讲": the same fact again
    refused = [r for r in two if r["completion"].startswith(REFUSAL)]  # a new question outside the course
    other = [r for r in two if r not in again and r not in refused]  # a related fact, or a new course question
    assert len(again) >= 30 and len(refused) >= 50 and len(other) >= 150


def test_out_of_course_rows_answer_with_the_refusal_line(train):
    refused = [r for r in train if not r.get("history") and r["completion"].startswith(REFUSAL)]
    assert len(refused) >= 400
    assert {r["completion"] for r in refused} == {f"{REFUSAL}。"}


WHICH_IDIOM = re.compile(r"(哪个|什么|啥)成语|成语(叫啥|叫什么|是哪个|是啥(?!意思))")


def test_a_fact_asked_as_which_idiom_names_the_idiom_in_its_answer(train):
    """"这是哪个成语" is answered only by an answer that says which: the idiom in quotes (“守株待兔”…)."""
    asked = {r["completion"] for r in train if not r.get("history") and not r["completion"].startswith(REFUSAL)
             and WHICH_IDIOM.search(r["prompt"])}
    assert len(asked) >= 15
    unnamed = [a for a in asked if not re.search(r"“[\u4e00-\u9fff]{4}”", a)]
    assert not unnamed, unnamed[:3]


def bigrams(text: str) -> set:
    s = re.sub(r"[\s?？!！。.,，、~～:：;；\"'“”‘’()（）]", "", unicodedata.normalize("NFKC", text).lower())
    return {s[i:i + 2] for i in range(len(s) - 1)} or {s}


@pytest.mark.slow  # every dev question against every training question: ~13 s
def test_class_like_dev_set_is_far_from_train_and_apart_from_train_and_val(train, val):
    """dev_class.jsonl: real-style course questions whose wording is far from every training question (char-bigram
    Jaccard < 0.5 each, median <= 0.3), look-alikes and other questions to refuse, two-turn cases; a calibration
    part (calib_new; calib and calib_old are older ones) and a report half."""
    dev = jsonl("dev_class.jsonl")
    course = [r for r in dev if r["kind"] == "course"]
    assert len(course) >= 300
    train_grams = [bigrams(r["prompt"]) for r in train]
    nearest = sorted(max(len(a & b) / len(a | b) for b in train_grams)
                     for a in (bigrams(r["prompt"]) for r in course))
    assert nearest[-1] < 0.5 and nearest[len(nearest) // 2] <= 0.3
    seen = {key(r["prompt"]) for r in train + val if not r.get("history")} - {""}
    assert not [r["prompt"] for r in dev if not r.get("history") and key(r["prompt"]) in seen]
    pairs = {(key(r["history"][0][0]), key(r["prompt"])) for r in train if r.get("history")}
    assert not [r for r in dev if r.get("history") and (key(r["history"][0][0]), key(r["prompt"])) in pairs]
    taught = {r["completion"] for r in train}
    assert all(r["completion"] in taught for r in dev if "completion" in r)
    kinds = Counter(r["kind"] for r in dev)
    assert kinds["lookalike"] >= 100 and kinds["other"] >= 100
    for half in ("calib_new", "calib", "report"):
        rows = [r for r in dev if r["split"] == half]
        assert sum(r["kind"] == "course" for r in rows) >= 150
        assert sum(bool(r.get("history")) for r in rows) >= 40
        assert sum("completion" not in r for r in rows) >= 100


def test_val_holds_new_wordings_of_taught_facts_and_no_near_duplicates(train, val):
    taught = {r["completion"] for r in train}
    train_keys = {key(r["prompt"]) for r in train}
    assert len(val) >= 150
    assert all(r["completion"] in taught for r in val)
    assert not [r["prompt"] for r in val if key(r["prompt"]) in train_keys]
    for probe in REWORDED_PROBES:  # the training tab's reworded probes are held out too
        assert key(probe) not in train_keys and key(probe) in {key(r["prompt"]) for r in val}


def test_development_set_is_apart_from_train_and_val(train, val):
    dev_in, dev_out = jsonl("dev_in.jsonl"), jsonl("dev_out.jsonl")
    seen = {key(r["prompt"]) for r in train + val} - {""}  # "啊吧啊吧" and "？？？" both have no content word
    taught = {r["completion"] for r in train}
    assert len(dev_in) >= 60 and len(dev_out) >= 60
    assert not [r["prompt"] for r in dev_in + dev_out if key(r["prompt"]) in seen]
    assert all(r["completion"] in taught for r in dev_in)
    kinds = Counter(r["kind"] for r in dev_out)
    assert {"everyday", "unseen_fact", "english", "emoji", "gibberish", "long", "injection"} <= set(kinds)
    assert any(len(r["prompt"]) >= 200 for r in dev_out if r["kind"] == "long")


def test_unseen_facts_are_not_taught(train):
    unseen = read_jsonl(DATA / "unseen_facts.jsonl")
    taught = {r["completion"] for r in train}
    assert len(unseen) >= 100 and not [r for r in unseen if r["completion"] in taught]
