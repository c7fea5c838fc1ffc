"""Honest answers: the confidence score, the refusal decision, suggested questions, follow-up context, the fast
greedy check used for promotion, and the CLI's --prompts_file / --no_refuse / --info."""

import json
import math

import pytest
import torch
from conftest import PAIRS, VAL_PAIRS, assert_one_line_user_error, pair_rows

from gpt_mini import knowledge as K
from gpt_mini import tokenizer as bpe
from gpt_mini.calibrate import sweep, table
from gpt_mini.checkpoint import file_sha
from gpt_mini.data import encode_row, prompt_prefix
from gpt_mini.errors import UserError
from gpt_mini.generate import Result, Settings, fit_prompt, generate, sampling_stages
from gpt_mini.knowledge import REFUSAL, Course, judge
from gpt_mini.quality import char_f1, greedy_exact, refusal_report

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

COURSE = Course([["什么是注意力机制？", "注意力机制是啥"], ["天空为什么是蓝色的？", "天为啥是蓝的"],
                 ["水的化学式是什么？"], ["如何保持健康？", "怎么才能身体好"]])


def result(answer: str, confidence: float) -> Result:
    return Result(answer, [], [], [], "eos", 5, confidence)


# ---- the decision ---------------------------------------------------------------------------------------------

def test_refuses_below_the_threshold_with_the_fixed_line_and_closest_questions():
    reply = judge(result("乱七八糟", 0.3), "注意力到底是什么意思", COURSE, threshold=0.8)
    assert not reply.known and reply.text.startswith(REFUSAL)
    assert reply.suggestions[0] == "什么是注意力机制？"  # the closest fact first, shown by its first wording
    assert 1 <= len(reply.suggestions) <= 3 and all(q in reply.text for q in reply.suggestions)
    assert reply.answer == "乱七八糟"  # the model's own answer is kept for the per-token view


def test_answers_at_or_above_the_threshold_and_suggests_nothing():
    reply = judge(result("注意力机制让模型关注关键位置。", 0.95), "注意力机制是啥", COURSE, threshold=0.8)
    assert reply.known and reply.text == "注意力机制让模型关注关键位置。" and reply.suggestions == []
    assert judge(result("x", 0.8), "天为啥是蓝的", COURSE, threshold=0.8).known


def test_a_question_like_nothing_taught_is_refused_even_when_the_model_is_sure():
    """An overtrained model recites some memorised answer with confidence; the question itself shares nothing
    with the course, so the answer is not trusted."""
    reply = judge(result("注意力机制让模型关注关键位置。", 0.99), "😂😂👍", COURSE, threshold=0.8, min_similarity=0.35)
    assert not reply.known and reply.similarity < 0.35 and reply.text.startswith(REFUSAL)
    assert COURSE.similarity("注意力机制是啥") == pytest.approx(1.0)
    assert Course([]).similarity("anything") == 1.0  # an old checkpoint without a course: confidence alone


ATTENTION, SKY = "注意力机制让模型关注关键位置。", "阳光里的蓝光被空气散射得最多，所以天空看起来是蓝色的。"
ANSWERED = Course([["什么是注意力机制？", "注意力机制是啥"], ["天空为什么是蓝色的？", "天为啥是蓝的"]],
                  [ATTENTION, SKY])


def test_a_sure_answer_is_refused_when_the_question_is_unlike_the_questions_of_the_fact_it_answers():
    """A question close to one fact gets another fact's answer with confidence: what counts is its similarity to
    the wordings of the fact answered (low), not to the closest fact (high)."""
    question = "天空为啥那么蓝"
    wrong = judge(result(ATTENTION, 0.99), question, ANSWERED, threshold=0.8, min_similarity=0.35)
    right = judge(result(SKY, 0.99), question, ANSWERED, threshold=0.8, min_similarity=0.35)
    assert ANSWERED.similarity(question) >= 0.35
    assert not wrong.known and wrong.similarity < 0.35 and wrong.suggestions[0] == "天空为什么是蓝色的？"
    assert right.known and right.similarity == ANSWERED.similarity(question)


def test_answer_similarity_is_the_closest_cosine_among_the_answered_facts_wordings():
    """Checked against closest() of a course holding the same wordings: the answered fact's entry."""
    for question in ["注意力是什么意思", "天空为什么是蓝的呢", "今天吃什么"]:
        by_fact = dict(ANSWERED.closest(question, 2))
        assert ANSWERED.answer_similarity(question, SKY) == by_fact.get("天空为什么是蓝色的？", 0.0)
        assert ANSWERED.answer_similarity(question, ATTENTION) == by_fact.get("什么是注意力机制？", 0.0)


def test_a_sampled_answer_close_to_a_facts_answer_counts_as_that_fact_and_a_stranger_as_none():
    assert ANSWERED.fact_answered(SKY) == 1
    assert ANSWERED.fact_answered(SKY.replace("最多", "很多").rstrip("。")) == 1  # sampled: a few characters differ
    assert ANSWERED.fact_answered("我喜欢吃苹果和香蕉") is None
    stranger = judge(result("我喜欢吃苹果和香蕉", 0.99), "天为啥是蓝的", ANSWERED, threshold=0.8, min_similarity=0.35)
    assert stranger.known and stranger.similarity == ANSWERED.similarity("天为啥是蓝的")  # no fact: the closest counts
    assert COURSE.answer_similarity("注意力机制是啥", ATTENTION) is None  # an old checkpoint: no answers stored


def test_a_follow_up_keeps_the_closest_similarity_of_both_questions_whatever_fact_it_answers():
    """'那还有别的吗' may ask about a related fact; the earlier question and this one decide as before."""
    earlier = [("注意力机制是啥", ATTENTION)]
    reply = judge(result(SKY, 0.99), "那还有别的吗", ANSWERED, threshold=0.8, min_similarity=0.35, history=earlier)
    assert reply.similarity == ANSWERED.similarity("注意力机制是啥那还有别的吗") and reply.known


def test_refusal_off_shows_the_raw_answer_and_still_reports_the_verdict():
    reply = judge(result("乱七八糟", 0.3), "今天天气怎么样", COURSE, refuse=False, threshold=0.8)
    assert reply.text == "乱七八糟" and not reply.known


def test_an_empty_answer_is_never_known():
    assert not judge(result("", 0.99), "q", COURSE).known


def test_the_models_own_refusal_is_a_refusal_with_suggestions_even_when_sure():
    reply = judge(result(f"{REFUSAL}。", 0.99), "注意力机制能帮我写作文吗", COURSE, threshold=0.8)
    assert not reply.known and reply.text.startswith(f"{REFUSAL}。你可以试试问我")
    assert reply.suggestions[0] == "什么是注意力机制？"
    assert judge(result(f"{REFUSAL}。", 0.99), "今天天气", COURSE, refuse=False).text == f"{REFUSAL}。"


def test_a_follow_up_is_judged_with_the_earlier_question():
    """'那它有什么用' names nothing the course taught; after a question about attention it is about attention."""
    answer = result("注意力机制让模型关注关键位置。", 0.99)
    alone = judge(answer, "那它有什么用呢", COURSE, threshold=0.8, min_similarity=0.35)
    earlier = [("什么是注意力机制？", "注意力机制让模型关注关键位置。")]
    follow = judge(answer, "那它有什么用呢", COURSE, threshold=0.8, min_similarity=0.35, history=earlier)
    assert alone.similarity < 0.35 <= follow.similarity
    assert follow.known and not alone.known


def test_in_context_a_new_course_question_is_answered_alone_and_a_follow_up_with_the_earlier_exchange():
    """reply_in_context: a question the model knows alone and that is close to a course question is a new question
    (the earlier exchange would only throw a small model); a follow-up that names nothing is answered with it."""
    earlier = [("什么是注意力机制？", "注意力机制让模型关注关键位置。")]
    asked = []

    def ask(answers):
        def one(history, question):
            asked.append(bool(history))
            return answers[bool(history)]
        return one

    sky = {False: result("因为散射。", 0.99), True: result("注意力机制让模型关注关键位置。", 0.99)}
    answer, reply, used = K.reply_in_context(ask(sky), "天为啥是蓝的", earlier, COURSE)
    assert answer.answer == "因为散射。" and reply.known and used == () and asked == [False]  # one generation
    asked.clear()
    use = {False: result("乱七八糟", K.CONFIDENCE_THRESHOLD / 2), True: result("它让模型关注关键位置。", 0.99)}
    answer, reply, used = K.reply_in_context(ask(use), "那它有什么用呢", earlier, COURSE)
    assert answer.answer == "它让模型关注关键位置。" and reply.known and used == earlier and asked == [False, True]
    unsure = {False: result("因为散射。", 0.99),  # alone known but not close enough
              True: result("乱七八糟", K.CONFIDENCE_THRESHOLD / 2)}
    answer, reply, _ = K.reply_in_context(ask(unsure), "那天空呢", earlier, COURSE, self_contained=1.01)
    assert answer.answer == "因为散射。" and reply.known  # unsure with the context: its answer alone is kept
    surer_alone = {False: result("因为散射。", 0.95), True: result("注意力机制让模型关注关键位置。", 0.60)}
    answer, _, used = K.reply_in_context(ask(surer_alone), "那天空呢", earlier, COURSE, self_contained=1.01)
    assert answer.answer == "因为散射。" and used == ()  # both pass the gate: the surer answer, here the one alone
    surer_with = {False: result("因为散射。", 0.60), True: result("它让模型关注关键位置。", 0.95)}
    answer, _, used = K.reply_in_context(ask(surer_with), "那天空呢", earlier, COURSE, self_contained=1.01)
    assert answer.answer == "它让模型关注关键位置。" and used == earlier
    raw = K.reply_in_context(ask(sky), "天为啥是蓝的", earlier, COURSE, refuse=False)
    assert raw[0].answer == "注意力机制让模型关注关键位置。" and raw[2] == earlier  # refusal off: as asked


def test_a_question_refused_after_an_earlier_exchange_is_suggested_for_its_own_words_never_the_earlier_fact():
    """A new topic refused after 注意力机制 gets the facts like its own words first, not attention again."""
    earlier = [("什么是注意力机制？", "注意力机制让模型关注关键位置。")]
    no = result(f"{REFUSAL}。", 0.9)
    with_context = judge(no, "天空怎么样", COURSE, history=earlier)
    assert with_context.suggestions[0] == "什么是注意力机制？"  # what the earlier question alone pulls in
    _, reply, used = K.reply_in_context(lambda h, q: no, "天空怎么样", earlier, COURSE)
    assert not reply.known and used == earlier
    assert reply.suggestions[0] == "天空为什么是蓝色的？" and "什么是注意力机制？" not in reply.suggestions
    assert reply.text == K.refusal_line(reply.suggestions) and 1 <= len(reply.suggestions) <= K.MAX_SUGGESTIONS


def test_an_english_sentence_is_not_close_to_the_courses_english_terms_by_its_letters():
    """Latin words are whole units: an English sentence shares letters with every English course term (by letters
    this one scored 0.63), but no word with these."""
    course = Course([["dropout是什么？", "dropout有什么用"], ["learning rate是什么", "学习率是啥"]])
    assert course.similarity("Where is the nearest subway station?") < 0.1
    assert course.similarity("dropout到底干嘛的") >= 0.5
    assert course.closest("learning rate 太大会怎样")[0][0] == "learning rate是什么"


@pytest.mark.parametrize("question, first", [("天空咋是蓝的呀", "天空为什么是蓝色的？"),
                                             ("H2O 水的化学式", "水的化学式是什么？"),
                                             ("怎样保持身体健康", "如何保持健康？")])
def test_closest_questions_share_the_topic(question, first):
    assert COURSE.closest(question)[0][0] == first


def test_closest_equals_a_plain_python_cosine_over_every_wording():
    """The sparse matrix search gives what comparing the question with each wording one by one gives: per fact the
    best cosine of idf-weighted characters and pairs, most similar first, later facts first among equals."""
    course = Course.from_rows(pair_rows(PAIRS + VAL_PAIRS))

    def cosine(a: dict, b: dict) -> float:
        return sum(w * b.get(key, 0.0) for key, w in a.items())

    for question in ["注意力是什么意思", "天空为什么是蓝的呢", "今天吃什么", "保持健康", "水", "完全无关的句子xyz"]:
        q = course._unit(K._features(question))
        scored = sorted(((max(cosine(q, course._unit(K._features(w))) for w in wordings), i)
                         for i, wordings in enumerate(course.facts)), reverse=True)
        expected = [(course.facts[i][0], round(sim, 3)) for sim, i in scored[:5] if sim > 0]
        assert course.closest(question, 5) == expected


def test_course_from_rows_groups_wordings_by_answer_in_file_order():
    rows = [{"prompt": "A1", "completion": "a"}, {"prompt": "B1", "completion": "b"},
            {"prompt": "A2", "completion": "a"},
            {"prompt": "C", "completion": "c", "history": [["A1", "a"]]}, {"text": "plain"}]
    assert Course.from_rows(rows).facts == [["A1", "A2"], ["B1"]]
    assert Course.from_rows(rows).answers == ["a", "b"]


def test_rows_that_teach_the_refusal_are_kept_apart_as_questions_to_refuse_and_never_suggested():
    rows = [{"prompt": "A1", "completion": "a"}, {"prompt": "帮我修一下插座", "completion": f"{REFUSAL}。"},
            {"prompt": "帮我修一下插座", "completion": f"{REFUSAL}。"},
            {"prompt": "推荐一部电影", "completion": f"{REFUSAL}。"},
            {"prompt": "那它呢", "completion": f"{REFUSAL}。", "history": [["A1", "a"]]}]
    course = Course.from_rows(rows)
    assert course.facts == [["A1"]] and course.answers == ["a"] and course.refused == ["帮我修一下插座", "推荐一部电影"]
    assert [q for q, _ in course.closest("帮我修一下插座", 5)] == []  # shares nothing with A1: nothing to suggest
    assert course.match("帮我修一下插座", "a")[2] == pytest.approx(1.0)  # the same as a question to refuse
    assert Course.from_rows(rows[:1]).match("帮我修一下插座", "a")[2] == 0.0  # none taught: 0


def test_a_refusal_says_which_check_refused_it_the_first_that_holds():
    course = Course(*[[["什么是注意力机制？", "注意力机制是啥"], ["天空为什么是蓝色的？", "天为啥是蓝的"]],
                      [ATTENTION, SKY], ["推荐一部电影", "推荐一部好看的电影"]])
    why = {name: judge(result(answer, conf), q, course, threshold=0.5, min_similarity=0.3).why
           for name, answer, conf, q in [("known", ATTENTION, 0.9, "注意力机制是什么"),
                                         ("model", f"{REFUSAL}。", 0.9, "注意力机制是什么"),
                                         ("unsure", ATTENTION, 0.2, "注意力机制是什么"),
                                         ("unlike", SKY, 0.9, "注意力机制是什么"),
                                         ("refused_like", ATTENTION, 0.9, "推荐一部注意力的电影"),
                                         ("empty", "", 0.9, "注意力机制是什么")]}
    assert why == {"known": "", "model": "model", "unsure": "unsure", "unlike": "unlike",
                   "refused_like": "refused_like", "empty": "empty"}
    both = judge(result(SKY, 0.2), "注意力机制是什么", course, threshold=0.5, min_similarity=0.3)
    assert both.why == "unsure" and both.withheld  # unsure and unlike: the first in the order is named
    raw = judge(result(SKY, 0.2), "注意力机制是什么", course, refuse=False, threshold=0.5, min_similarity=0.3)
    assert raw.why == "unsure" and not raw.withheld and raw.text == SKY  # refusal off: the answer is shown


def test_an_answer_is_refused_when_the_question_is_clearly_closer_to_one_taught_to_be_refused():
    """The course explains overloaded sockets; 插座突然没电了咋修 asks for a repair, like the repair requests the
    model was taught to refuse. Refused only when it is closer to those by more than REFUSED_MARGIN."""
    socket = "一个插座接太多大功率电器，电流过大会使导线过热。"
    facts, answers = [["一个插座同时插很多电器会怎样", "插座上插太多电器危险吗"]], [socket]
    repairs = ["家里灯不亮了咋修", "插座没电了怎么修", "电脑坏了帮我修一下"]
    question = "家里插座突然没电了咋修"
    taught = judge(result(socket, 0.99), question, Course(facts, answers, repairs), threshold=0.5, min_similarity=0.1)
    untaught = judge(result(socket, 0.99), question, Course(facts, answers), threshold=0.5, min_similarity=0.1)
    assert untaught.known and not untaught.near_refused
    assert not taught.known and taught.near_refused and taught.text.startswith(REFUSAL)
    course_like = judge(result(socket, 0.99), "一个插座插很多电器会怎样", Course(facts, answers, repairs),
                        threshold=0.5, min_similarity=0.1)
    assert course_like.known and not course_like.near_refused  # a course wording stays closer to its fact


def test_an_older_checkpoint_takes_its_questions_to_refuse_from_its_unchanged_training_data(tmp_path):
    """Checkpoints saved before course_refused existed: the refusal rows of the training file named in its config,
    only while that file still has the hash its provenance recorded (else the model may not have learned them)."""
    path = tmp_path / "train.jsonl"
    rows = [{"prompt": "什么是注意力机制？", "completion": "注意力答案"},
            {"prompt": "推荐一部电影", "completion": f"{REFUSAL}。"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")

    def old_checkpoint():
        return {"course": [["什么是注意力机制？"]], "course_answers": ["注意力答案"],
                "config": {"data": {"train_path": str(path)}}, "provenance": {"data": {"train_path": recorded}}}

    recorded = file_sha(path)
    assert K.course_of(old_checkpoint()).refused == ["推荐一部电影"]
    assert K.course_of(dict(old_checkpoint(), course_refused=[])).refused == []  # stored: the file is not read
    path.write_text(path.read_text(encoding="utf-8") + json.dumps(rows[1]).replace("电影", "歌") + "\n",
                    encoding="utf-8")
    assert K.course_of(old_checkpoint()).refused == []  # the file changed since training


def test_the_same_course_is_indexed_once_and_answers_like_a_fresh_index():
    facts, answers = [["什么是注意力机制？", "注意力是啥"], ["什么是过拟合？"]], ["注意力答案", "过拟合答案"]
    course = Course.of(facts, answers)
    assert Course.of([list(f) for f in facts], list(answers)) is course  # equal content: the same index
    assert Course.of(facts, ["注意力答案", "别的答案"]) is not course
    fresh = Course(facts, answers)
    for q in ("注意力机制是什么意思", "过拟合了怎么办", "今天天气"):
        assert course.similarity(q) == fresh.similarity(q) and course.closest(q, 2) == fresh.closest(q, 2)


# ---- the score ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [Settings(), Settings(temperature=0.9, top_k=5, seed=3),
                                      Settings(repetition_penalty=1.3)])
def test_confidence_is_the_lowest_token_probability_recomputed_without_cache(tiny_model, tok, settings):
    r = generate(tiny_model, tok, "什么是注意力机制？", Settings(**{**settings.__dict__, "max_new_tokens": 12}))
    ids, _ = fit_prompt(tok, "什么是注意力机制？", tiny_model.seq_len, 12)
    chosen = r.token_ids + ([bpe.EOS_ID] if r.stopped_by == "eos" else [])
    logps = []
    with torch.no_grad():
        for i, token in enumerate(chosen):
            logits = tiny_model(torch.tensor([ids + chosen[:i]]))[0][0, -1]
            raw = sampling_stages(logits, chosen[:i], i, settings)["raw"]
            logps.append(float(torch.log_softmax(raw, -1)[token]))
    assert r.confidence == pytest.approx(math.exp(min(logps)), rel=1e-4)
    assert 0 < r.confidence <= 1


def test_trained_model_is_confident_on_what_it_learned(trained_run):
    for prompt, answer in PAIRS:
        r = generate(trained_run.model, trained_run.tok, prompt)
        assert r.answer == answer and r.confidence > 0.9


# ---- follow-up turns ------------------------------------------------------------------------------------------

def test_history_is_in_the_context_in_the_seed_format(tok):
    ids, _ = fit_prompt(tok, "水呢？", 128, 32, history=[("你好", "你好呀。")])
    assert bpe.decode(tok, ids) == "用户:你好?\n助手:你好呀。\n用户:水呢?\n助手:"
    assert prompt_prefix("水呢？", [("你好", "你好呀。")]) == "用户:你好?\n助手:你好呀。\n用户:水呢?\n助手:"


def test_history_that_does_not_fit_is_dropped_before_the_question_is_cut(tok):
    long_answer = "很长的回答。" * 30
    ids, notices = fit_prompt(tok, "什么是注意力机制？", 64, 32, history=[("你好", long_answer)])
    assert bpe.decode(tok, ids) == "用户:什么是注意力机制?\n助手:" and not notices


def test_two_turn_row_trains_only_on_the_last_answer(tok):
    row = {"prompt": "水的化学式是什么？", "completion": "H2O。", "history": [["你好", "你好呀。"]]}
    x, y = encode_row(tok, row, 128)
    answer = bpe.encode(tok, "H2O。") + [bpe.EOS_ID]
    assert [int(t) for t in y if t != -100] == answer
    assert bpe.decode(tok, x.tolist()).startswith("用户:你好?\n助手:你好呀。\n用户:")


@pytest.mark.parametrize("history", ["你好", [["只有问题"]], [[1, 2]], [["", "回答"]]])
def test_malformed_history_is_a_user_error(history):
    from gpt_mini.data import check_row

    with pytest.raises(UserError, match="history"):
        check_row({"prompt": "q", "completion": "a", "history": history}, "第 1 行", "line 1")


# ---- the fast greedy check ------------------------------------------------------------------------------------

def test_greedy_exact_agrees_with_generating_every_answer(trained_run):
    """The teacher-forced shortcut (one batched forward pass) gives the same verdict as greedy generation."""
    rows = pair_rows(PAIRS + VAL_PAIRS) + [{"prompt": p, "completion": "一个错误的参考答案。"} for p, _ in PAIRS[:2]]
    fast = greedy_exact(trained_run.model, trained_run.tok, rows)
    slow = [generate(trained_run.model, trained_run.tok, r["prompt"]).answer == r["completion"] for r in rows]
    assert fast == slow and any(fast) and not all(fast)


def test_char_f1_on_hand_made_pairs():
    assert char_f1("abc", "abc") == 1.0 and char_f1("", "abc") == 0.0 and char_f1("xyz", "abc") == 0.0
    assert char_f1("ab", "abcd") == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 0.5


# ---- the CLI --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt(trained_run):
    return trained_run.save_dir / "last.pt"


def test_prompts_file_prints_one_json_line_per_question(cli, ckpt, tmp_path):
    questions = [PAIRS[0][0], "今天天气怎么样呀，适合出去玩吗", "   ", "？"]
    path = tmp_path / "q.txt"
    path.write_text("\n".join(questions) + "\n", encoding="utf-8")
    proc = cli("gpt_mini.infer", "--ckpt", ckpt, "--prompts_file", path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [x["prompt"] for x in lines] == [PAIRS[0][0], questions[1], "？"]  # blank lines skipped
    first = lines[0]
    assert set(first) == {"prompt", "answer", "confidence", "known", "part", "why"} and first["part"] == ""
    assert first["why"] == "" and (lines[1]["why"] == "") == lines[1]["known"]  # a reason exactly when refused
    assert first["known"] is True and first["answer"] == PAIRS[0][1]
    assert lines[1]["known"] is (not lines[1]["answer"].startswith(REFUSAL))
    assert "error" in lines[2]  # a question with nothing in it: its own line, the others still answered


def test_a_prompts_file_line_may_be_a_follow_up_with_its_history(cli, ckpt, tmp_path, trained_run):
    """A JSON line {"prompt", "history"} is answered with its last exchange as the context (reply_in_context, as the
    chat does); a line that starts with { but is not such JSON gets its own error line."""
    earlier = [list(PAIRS[1]), list(PAIRS[0])]
    follow = "那它呢"
    course = K.course_of(torch.load(ckpt, weights_only=True))
    expected = K.reply_in_context(lambda h, q: generate(trained_run.model, trained_run.tok, q, history=h), follow,
                                  [tuple(earlier[-1])], course)[1]
    lines = [json.dumps({"prompt": follow, "history": earlier}, ensure_ascii=False), '{"prompt": 3}',
             json.dumps({"prompt": follow, "history": "x"})]
    path = tmp_path / "q.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    proc = cli("gpt_mini.infer", "--ckpt", ckpt, "--prompts_file", path)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert out[0]["prompt"] == follow and out[0]["answer"] == expected.text and out[0]["known"] == expected.known
    assert "第 2 行" in out[1]["error"] and "history" in out[2]["error"]


def test_a_refused_question_prints_why_under_the_refusal_line(cli, ckpt, trained_run):
    """infer --prompt: under a refusal of the gate, one line (zh / en) naming the check and its figures, as the chat
    shows it (knowledge.WHY_NOTES); an answered question prints no such line."""
    course = K.course_of(torch.load(ckpt, weights_only=True))
    for question, known in (("今天天气怎么样呀，适合出去玩吗", False), (PAIRS[0][0], True)):
        reply = K.reply_in_context(lambda h, q: generate(trained_run.model, trained_run.tok, q, history=h), question,
                                   (), course)[1]
        assert reply.known is known
        proc = cli("gpt_mini.infer", "--ckpt", ckpt, "--prompt", question)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == reply.text
        if reply.known:
            assert not any(line.startswith("为什么没答") for line in lines)
        else:
            zh, en = K.WHY_NOTES[reply.why]
            assert lines[1] == f"{zh} / {en}".format(**K.why_values(reply))


def test_no_refuse_prints_the_raw_answer(cli, ckpt, tmp_path, trained_run):
    question = "今天天气怎么样呀，适合出去玩吗"
    raw = generate(trained_run.model, trained_run.tok, question)
    path = tmp_path / "q.txt"
    path.write_text(question, encoding="utf-8")
    proc = cli("gpt_mini.infer", "--ckpt", ckpt, "--prompts_file", path, "--no_refuse")
    assert json.loads(proc.stdout)["answer"] == raw.answer


def test_prompts_file_missing_is_one_clear_line(cli, ckpt, tmp_path):
    assert_one_line_user_error(cli("gpt_mini.infer", "--ckpt", ckpt, "--prompts_file", tmp_path / "no.txt"),
                               "no.txt")


def test_info_prints_what_made_the_checkpoint(cli, ckpt, trained_run):
    proc = cli("gpt_mini.infer", "--info", ckpt)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["step"] == 200 and info["tokenizer"] == bpe.fingerprint(trained_run.tok)
    assert info["config"] == trained_run.cfg and info["torch"] == torch.__version__
    assert info["precision"] in ("fp32", "bf16") and info["train_seconds"] > 0
    assert set(info["data"]) == {"train_path", "val_path", "unseen_path"} and all(info["data"].values())
    assert info["facts_known"] == len(PAIRS)


def test_calibration_grid_holds_the_thresholds_in_force_and_counts_refusals():
    c, s = K.CONFIDENCE_THRESHOLD, K.SIMILARITY_THRESHOLD
    # known, unsure, unlike the course, both, one the model refused itself and one closer to a question taught to
    # be refused (both always refused); one try each
    items = [[t] for t in [(1.0, 1.0, False, False), (c - 0.01, 1.0, False, False), (1.0, s - 0.01, False, False),
                           (0.0, 0.0, False, False), (1.0, 1.0, False, True), (1.0, 1.0, True, False)]]
    rows = {(r["confidence"], r["similarity"]): r["refused"] for r in sweep(items)}
    assert rows[(c, s)] == 5 / 6  # the chosen row is in the table, and only the known question passes it
    low = sweep(items, [c - 0.05], [0.0])  # a lower bar refuses the one that fails both and the threshold-free two
    assert [r["refused"] for r in low] == [0.5]


def test_calibration_table_counts_right_answers_kept_and_all_questions_handled_right():
    c, s = K.CONFIDENCE_THRESHOLD, K.SIMILARITY_THRESHOLD
    scores = {"in": [[t] for t in [(1.0, 1.0, 0.9, False, False), (c - 0.01, 1.0, 0.9, False, False),
                                   (1.0, 1.0, 0.1, False, False), (1.0, 1.0, 0.95, False, True)]],
              "out": [[(1.0, 1.0, False, False)], [(0.0, 0.0, False, False)]]}  # right and sure, right but unsure,
    # wrong, own refusal; an out-of-course question let through and one refused
    row = {(r["confidence"], r["similarity"]): r for r in table(scores)}[(c, s)]
    assert row["right"] == 0.25  # only the sure right answer is kept: 1 of 4 course questions
    assert row["refused"] == [0.5, 2 / 3, 0.0, 0.5]
    assert row["handled"] == (1 + 1) / 6  # the sure right answer, and the unlike question refused


def test_calibration_keeps_the_surest_part_the_gate_passes_when_the_whole_question_is_refused():
    """The table counts what the chat keeps: a whole question the gate refuses is answered by a part it passes
    (the surest), at every pair of thresholds; a question the model refused itself is never re-read."""
    c, s = K.CONFIDENCE_THRESHOLD, K.SIMILARITY_THRESHOLD
    unsure_whole = (c / 2, 1.0, 0.1, False, False)
    scores = {"in": [[unsure_whole, (1.0, s - 0.01, 1.0, False, False), (0.9, 1.0, 0.95, False, False),
                      (0.8, 1.0, 0.0, False, False)],
                     [(1.0, 1.0, 0.0, False, True), (1.0, 1.0, 1.0, False, False)]],
              "out": [[(c / 2, 1.0, False, False), (0.9, 1.0, False, False)],
                      [(c / 2, 1.0, False, False), (1.0, 0.0, False, False)]]}
    row = {(r["confidence"], r["similarity"]): r for r in table(scores)}[(c, s)]
    assert row["right"] == 0.5  # the first question's part at 0.9 (right); the second stays the model's refusal
    assert row["refused"] == [0.5, 0.0, 0.5, 0.5]  # the out-of-course question whose part passes is let through
    strict = {(r["confidence"], r["similarity"]): r for r in table(scores)}[(0.95, s)]
    assert strict["right"] == 0.0 and strict["refused"][3] == 1.0  # at 0.95 no part passes


def test_calibration_replays_which_reading_of_a_follow_up_the_chat_keeps_at_each_pair():
    """A two-turn row's tries are (with the earlier exchange, alone); as in reply_in_context the answer alone is
    kept when it passes and is surer, so at a bar it fails the answer with the earlier exchange is kept."""
    c, s = K.CONFIDENCE_THRESHOLD, K.SIMILARITY_THRESHOLD
    with_context, alone = (0.5, s + 0.1, 0.0, False, False), (0.9, s + 0.05, 1.0, False, False)  # alone right
    scores = {"in": [[with_context, alone]], "out": [], "two_turn": {"in": [True], "out": []}}
    rows = {(r["confidence"], r["similarity"]): r for r in table(scores)}
    assert rows[(c, s)]["right"] == 1.0  # both pass: the surer, alone
    assert rows[(c, round(s + 0.1, 2))]["right"] == 0.0  # a bar only the answer with the earlier exchange passes


def test_the_calibration_table_at_the_thresholds_in_force_equals_the_chats_own_decisions(trained_run):
    """refusal_report judges every row as the chat does (reply_in_context); its table replays the choice from the
    recorded tries. At the report's own thresholds both must agree, follow-ups and re-read parts included."""
    course = K.Course.from_rows(pair_rows(PAIRS))
    dev_in = (pair_rows(VAL_PAIRS) + [{"prompt": "刚才老师讲的，天空为啥是蓝的", "completion": PAIRS[1][1]},
                                      {"prompt": "那它呢", "completion": PAIRS[0][1], "history": [list(PAIRS[0])]}])
    dev_out = [{"prompt": "帮我订一张火车票"}, {"prompt": "那它多少钱", "history": [list(PAIRS[1])]}]
    for c, s in [(K.CONFIDENCE_THRESHOLD, K.SIMILARITY_THRESHOLD), (0.5, 0.3)]:
        report = refusal_report(trained_run.model, trained_run.tok, course, dev_in, dev_out, c, s)
        row = {(r["confidence"], r["similarity"]): r for r in table(report["scores"])}[(c, s)]
        assert row["right"] == report["in_answered_right"] and row["refused"][3] == report["out_refused"]


def test_parts_are_the_asking_clauses_together_then_each_long_clause():
    question = "刚才物理老师讲了浮力，我走神了，到底是什么决定东西浮还是沉"
    assert K.parts(question) == ["到底是什么决定东西浮还是沉", "刚才物理老师讲了浮力", "我走神了"]
    assert K.parts("作业里有道题，问东汉时谁改进了造纸术，用了啥原料？") == [
        "问东汉时谁改进了造纸术，用了啥原料", "作业里有道题", "问东汉时谁改进了造纸术", "用了啥原料"]
    assert K.parts("什么是注意力机制？") == [] and K.parts("") == []


def test_a_long_question_the_gate_refuses_is_answered_by_a_part_it_passes_for_the_whole_question():
    """reply_in_context without an earlier exchange: the whole question unsure -> its parts are asked alone; the
    surest part whose answer the gate passes for the whole question is kept, with the part named; a part whose
    fact is unlike the whole question, or a question the model itself refused, stays refused."""
    sky = "天空是蓝色的，因为空气把蓝光散射得最多。"
    course = Course([["什么是注意力机制？", "注意力机制是啥"], ["天空为什么是蓝色的？", "天为啥是蓝的"]],
                    ["注意力机制让模型关注关键位置。", sky])
    question = "我妹今天问我一个问题，天为啥是蓝的"
    asked = []

    def ask(answers):
        def one(history, q):
            asked.append(q)
            return answers.get(q, result("乱七八糟", K.CONFIDENCE_THRESHOLD / 2))
        return one

    attention = result("注意力机制让模型关注关键位置。", 0.99)
    answers = {"天为啥是蓝的": result(sky, 0.97), "我妹今天问我一个问题": attention}
    answer, reply, used = K.reply_in_context(ask(answers), question, (), course)
    assert asked == [question, "天为啥是蓝的", "我妹今天问我一个问题"] and used == ()
    assert reply.known and reply.text == sky and reply.part == "天为啥是蓝的" and answer.answer == sky
    asked.clear()  # only the attention answer: its fact is unlike the whole question, so the refusal stays
    _, reply, _ = K.reply_in_context(ask({"我妹今天问我一个问题": attention}), question, (), course)
    assert not reply.known and reply.text.startswith(REFUSAL) and reply.part == ""
    asked.clear()
    own = {question: result(f"{REFUSAL}。", 0.99), **answers}
    _, reply, _ = K.reply_in_context(ask(own), question, (), course)
    assert not reply.known and reply.said_no and asked == [question]  # the model's own refusal is not re-read


def test_rows_that_teach_the_refusal_are_not_a_fact_to_suggest():
    rows = [{"prompt": "什么是注意力机制？", "completion": "A"},
            {"prompt": "下周二北京会下雨吗", "completion": f"{REFUSAL}。"},
            {"prompt": "Où est la bibliothèque ?", "completion": f"{REFUSAL}。"}]
    course = K.Course.from_rows(rows)
    assert course.facts == [["什么是注意力机制？"]]
    assert course.similarity("下周二北京会下雨吗") < 0.35  # an out-of-course question is not "like" the course


def test_lookup_baseline_counts_questions_whose_closest_fact_has_the_right_answer():
    train = [{"prompt": "什么是注意力机制？", "completion": "A"}, {"prompt": "注意力是啥", "completion": "A"},
             {"prompt": "天空为什么是蓝色的？", "completion": "B"}, {"prompt": "水的化学式是什么？", "completion": "C"}]
    rows = [{"prompt": "注意力机制到底是什么", "completion": "A"},  # closest: A, right
            {"prompt": "天空的颜色为什么是蓝的", "completion": "B"},  # closest: B, right
            {"prompt": "水的化学式", "completion": "B"},  # closest: C, wrong answer for this row
            {"prompt": "今天天气", "kind": "other"}]  # no answer: not counted
    assert K.lookup_right(train, rows) == pytest.approx(2 / 3)
    follow = [{"history": [["天空为什么是蓝色的？", "B"]], "prompt": "那为什么呢", "completion": "B"}]
    assert K.lookup_right(train, follow) == 1.0  # a follow-up is looked up with the earlier question
