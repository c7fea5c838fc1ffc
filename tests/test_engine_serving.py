"""Batched serving: a left-padded batch must give each row exactly what that row gives alone.
References: GPT.forward on one unpadded row, and generate()/generate_steps() for one question at a time."""

import threading

import pytest
import torch
from conftest import sharpen

from gpt_mini import tokenizer as bpe
from gpt_mini.errors import UserError
from gpt_mini.generate import Result, Settings, generate, generate_steps
from gpt_mini.model import GPT
from gpt_mini.serving import BatchServer

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

PROMPTS = ["什么是注意力机制？", "What is AI?", "🤖 你好", "天空为什么是蓝色的？请用一句话回答，谢谢老师！",
           "<script>alert(1)</script>", "水", "a😊中 " * 250, "Mixed 中英 text, 全角？半角?"]


def ask_all(server, model, tok, jobs):
    """Ask every (prompt, settings) from its own thread at the same moment; results in order."""
    out, start = [None] * len(jobs), threading.Barrier(len(jobs))

    def one(i):
        start.wait()
        try:
            out[i] = server.answer(model, tok, *jobs[i])
        except Exception as e:  # noqa: BLE001 - compared by the test
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return out


@pytest.mark.parametrize("fused", [True, False])
def test_left_padded_batch_forward_equals_each_row_alone(tiny_model, fused):
    for block in tiny_model.blocks:
        block.attn.fused = fused
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(4, 300, (n,), generator=g) for n in (9, 4, 1, 7)]
    width = max(len(r) for r in rows)
    pad = torch.tensor([width - len(r) for r in rows])
    batch = torch.stack([torch.cat((torch.zeros(int(p), dtype=torch.long), r)) for p, r in zip(pad, rows)])
    with torch.no_grad():
        cache = [{} for _ in tiny_model.blocks]
        logits, _ = tiny_model(batch, cache=cache, pad=pad)
        nxt = torch.randint(4, 300, (len(rows), 1), generator=g)
        step, _ = tiny_model(nxt, cache=cache, pad=pad)  # one cached step on top of the padded prefill
        for i, r in enumerate(rows):
            alone, _ = tiny_model(r[None])
            torch.testing.assert_close(logits[i, int(pad[i]):], alone[0], rtol=1e-4, atol=1e-4)
            alone_next, _ = tiny_model(torch.cat((r, nxt[i]))[None])
            torch.testing.assert_close(step[i, -1], alone_next[0, -1], rtol=1e-4, atol=1e-4)


def test_batched_answers_equal_one_at_a_time(tiny_model, tok):
    greedy = Settings(max_new_tokens=24)
    jobs = [(p, greedy) for p in PROMPTS]
    jobs += [(p, Settings(temperature=0.9, top_k=30, top_p=0.9, repetition_penalty=1.3, max_new_tokens=20, seed=i))
             for i, p in enumerate(PROMPTS)]
    jobs += [("你好？", Settings(max_new_tokens=30, stop_strings=["的"])), ("你好？", Settings(max_new_tokens=1))]
    server = BatchServer()
    got = ask_all(server, tiny_model, tok, jobs)
    for (prompt, s), result in zip(jobs, got):
        alone = generate(tiny_model, tok, prompt, s)
        assert isinstance(result, Result), result
        assert result.token_ids == alone.token_ids, prompt
        assert (result.answer, result.stopped_by, result.notices) == (alone.answer, alone.stopped_by, alone.notices)
    assert server.largest_batch >= 2  # rows really shared forward passes
    assert server.steps_run < sum(len(r.token_ids) for r in got)


def test_long_answers_fill_the_context_in_a_batch(tiny_model, tok):
    with torch.no_grad():  # EOS logit = 0, below the largest random logit: answers run to the context end
        tiny_model.tok_emb.weight[bpe.EOS_ID] = 0.0
    jobs = [(p, Settings(max_new_tokens=500)) for p in ("你好？", "天空为什么是蓝色的？请用一句话回答", "a😊中 " * 250)]
    for (prompt, s), result in zip(jobs, ask_all(BatchServer(), tiny_model, tok, jobs)):
        alone = generate(tiny_model, tok, prompt, s)
        assert result.stopped_by == "context" and result.token_ids == alone.token_ids
        assert result.prompt_tokens + len(result.token_ids) == tiny_model.seq_len


def test_stream_yields_the_same_items_as_generate_steps(tiny_model, tok):
    server, s = BatchServer(), Settings(max_new_tokens=16)
    *partials, result = list(server.stream(tiny_model, tok, "什么是注意力机制？", s))
    *ref_partials, ref = list(generate_steps(tiny_model, tok, "什么是注意力机制？", s))
    assert [p[0] for p in partials] == [p[0] for p in ref_partials]
    assert [p[1]["id"] for p in partials] == [p[1]["id"] for p in ref_partials]
    assert [len(p[1]["top"]) for p in partials] == [5] * len(partials)
    assert result.token_ids == ref.token_ids


def test_two_models_are_never_mixed_in_one_batch(tiny_model, tok):
    other = sharpen(GPT(tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, seq_len=64), seed=5).eval()
    s = Settings(max_new_tokens=20)
    server, out = BatchServer(), {}

    def ask(name, model, prompt):
        out[name, prompt] = server.answer(model, tok, prompt, s)

    threads = [threading.Thread(target=ask, args=(name, m, p)) for p in PROMPTS[:4]
               for name, m in (("a", tiny_model), ("b", other))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for (name, prompt), result in out.items():
        model = tiny_model if name == "a" else other
        assert result.token_ids == generate(model, tok, prompt, s).token_ids
    assert len(out) == 8


def test_bad_input_is_a_user_error_in_the_callers_thread(tiny_model, tok):
    server = BatchServer()
    with pytest.raises(UserError, match="empty"):
        server.answer(tiny_model, tok, "   ")
    with pytest.raises(UserError, match="top_p"):
        server.answer(tiny_model, tok, "你好", Settings(top_p=0))
    assert server.answer(tiny_model, tok, "你好？", Settings(max_new_tokens=5)).token_ids  # still serving


def test_closed_stream_leaves_the_batch_and_others_are_unaffected(tiny_model, tok):
    with torch.no_grad():
        tiny_model.tok_emb.weight[bpe.EOS_ID] = 0.0  # long answers, so the closed one would run for a while
    server, s = BatchServer(), Settings(max_new_tokens=40)
    stream = server.stream(tiny_model, tok, "你好？", s)
    next(stream)
    stream.close()  # a student closed the tab
    result = server.answer(tiny_model, tok, "What is AI?", s)
    assert result.token_ids == generate(tiny_model, tok, "What is AI?", s).token_ids


def test_a_failing_forward_reaches_its_callers_and_the_worker_goes_on(tiny_model, tok, monkeypatch):
    server, s = BatchServer(), Settings(max_new_tokens=8)
    real = type(tiny_model).forward
    calls = []

    def broken_once(self, *args, **kwargs):
        if kwargs.get("pad") is not None and not calls:
            calls.append(1)
            raise RuntimeError("simulated failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", broken_once)
    with pytest.raises(UserError, match="generation failed"):
        server.answer(tiny_model, tok, "你好？", s)
    monkeypatch.undo()
    assert server.answer(tiny_model, tok, "你好？", s).token_ids == generate(tiny_model, tok, "你好？", s).token_ids
    assert not server.busy() and server.failures == 1


@pytest.mark.parametrize("part", ["_merge", "_select"])
def test_worker_survives_a_failure_in_its_own_bookkeeping(tiny_model, tok, monkeypatch, part):
    """A bug in merging or selecting cache rows fails the questions of that step with one clear line; busy() is
    false afterwards (training would otherwise rest forever) and the next questions are answered."""
    import gpt_mini.serving as serving

    real, calls = getattr(serving, part), []

    def broken_once(*args):
        if not calls:
            calls.append(1)
            raise IndexError("simulated bookkeeping bug")
        return real(*args)

    monkeypatch.setattr(serving, part, broken_once)
    server, s = BatchServer(), Settings(max_new_tokens=8)
    with torch.no_grad():
        tiny_model.tok_emb.weight[bpe.EOS_ID] = 0.0  # no early EOS: every row reaches _merge and _select
    out = ask_all(server, tiny_model, tok, [(p, s) for p in PROMPTS[:3]])
    assert any(isinstance(r, UserError) and "generation failed" in str(r) for r in out)
    assert not server.busy() and server.failures == 1
    for p in PROMPTS[:3]:
        assert server.answer(tiny_model, tok, p, s).token_ids == generate(tiny_model, tok, p, s).token_ids
    assert server._worker.is_alive()


def test_one_rows_sampling_failure_leaves_the_other_rows_alone(tiny_model, tok, monkeypatch):
    import gpt_mini.serving as serving

    real = serving.Decoding.step

    def step(self, logits, picked=None):
        if "坏" in bpe.decode(self.tok, self.ids):
            raise ValueError("simulated sampling bug")
        return real(self, logits, picked)

    monkeypatch.setattr(serving.Decoding, "step", step)
    server, s = BatchServer(), Settings(max_new_tokens=8)
    out = ask_all(server, tiny_model, tok, [("坏问题", s), ("你好？", s), ("What is AI?", s)])
    assert isinstance(out[0], UserError)
    alone = [generate(tiny_model, tok, p, s).token_ids for p in ("你好？", "What is AI?")]
    assert [r.token_ids for r in out[1:]] == alone
    assert not server.busy() and server.failures == 0


def test_a_caller_that_waits_too_long_gets_a_clear_message(tiny_model, tok, monkeypatch):
    import time

    real = type(tiny_model).forward

    def slow(self, *args, **kwargs):
        time.sleep(1.0)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", slow)
    server = BatchServer(timeout=0.2)
    with pytest.raises(UserError, match="please ask again"):
        server.answer(tiny_model, tok, "你好？", Settings(max_new_tokens=4))


def test_an_evaluation_waits_as_long_as_answering_takes(tiny_model, tok, monkeypatch):
    """greedy_answers (the dev-set scoring, promotion) runs on a busy machine too: no chat timeout applies."""
    import time

    from gpt_mini.quality import greedy_answers

    real = type(tiny_model).forward

    def slow(self, *args, **kwargs):
        time.sleep(0.5)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BatchServer.__init__, "__defaults__", (32, 1, 0.2))  # servers give up after 0.2 s
    monkeypatch.setattr(type(tiny_model), "forward", slow)
    rows = [{"prompt": "你好？"}, {"prompt": "什么是注意力机制？"}]
    got = greedy_answers(tiny_model, tok, rows, max_new_tokens=3)
    monkeypatch.setattr(type(tiny_model), "forward", real)
    assert [r.answer for r in got] == [generate(tiny_model, tok, r["prompt"], Settings(max_new_tokens=3)).answer
                                       for r in rows]


def test_closed_server_worker_ends_when_idle(tiny_model, tok):
    server = BatchServer()
    server.answer(tiny_model, tok, "你好？", Settings(max_new_tokens=4))
    server.close()
    server._worker.join(5)
    assert not server._worker.is_alive()


def test_a_greedy_question_asked_again_is_answered_from_the_cache(tiny_model, tok):
    server = BatchServer()
    first = server.answer(tiny_model, tok, "什么是注意力机制？", Settings(max_new_tokens=8))
    steps = server.steps_run
    again = server.answer(tiny_model, tok, "什么是注意力机制?", Settings(max_new_tokens=8))  # same, normalised
    assert again is first and server.steps_run == steps and server.cache_hits == 1
    assert again.answer == generate(tiny_model, tok, "什么是注意力机制？", Settings(max_new_tokens=8)).answer
    # another setting, another earlier exchange, or sampling: answered by the model again
    server.answer(tiny_model, tok, "什么是注意力机制？", Settings(max_new_tokens=9))
    server.answer(tiny_model, tok, "什么是注意力机制？", Settings(max_new_tokens=8), history=[("你好", "你好。")])
    server.answer(tiny_model, tok, "什么是注意力机制？", Settings(temperature=1.0, max_new_tokens=8, seed=1))
    server.answer(tiny_model, tok, "什么是注意力机制？", Settings(temperature=1.0, max_new_tokens=8, seed=1))
    assert server.cache_hits == 1 and server.steps_run > steps


def test_the_same_greedy_question_asked_at_the_same_moment_is_answered_once(tiny_model, tok):
    """A class asks Q1 together: one row is computed, the other askers wait for it and share its answer."""
    server, n = BatchServer(), 8
    start, results = threading.Barrier(n), [None] * n

    def ask(i):
        start.wait()
        results[i] = server.answer(tiny_model, tok, "什么是注意力机制？", Settings(max_new_tokens=24))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert all(r is results[0] for r in results) and server.cache_hits == n - 1
    assert server.largest_batch == 1  # never two rows of the same question
    assert results[0].answer == generate(tiny_model, tok, "什么是注意力机制？", Settings(max_new_tokens=24)).answer


def test_the_cache_never_answers_for_another_model(tiny_model, tok):
    """A new checkpoint is a new model object: its answers are its own, even for the same question."""
    import copy

    server = BatchServer()
    server.answer(tiny_model, tok, "天空为什么是蓝色的？", Settings(max_new_tokens=8))
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.tok_emb.weight.mul_(-1.0)
    steps = server.steps_run
    mine = server.answer(other, tok, "天空为什么是蓝色的？", Settings(max_new_tokens=8))
    assert server.steps_run > steps and server.cache_hits == 0
    assert mine.answer == generate(other, tok, "天空为什么是蓝色的？", Settings(max_new_tokens=8)).answer


def test_questions_that_arrive_together_are_prefilled_in_one_pass(tiny_model, tok, monkeypatch):
    """Newcomers' prompts of different lengths go through one left-padded forward pass, and each answer is still
    the one generate() gives alone."""
    real, prompt_passes = type(tiny_model).forward, []

    def counting(self, idx, *args, **kwargs):
        if idx.shape[1] > 1:  # a prompt pass (answer steps feed one token per row)
            prompt_passes.append(idx.shape[0])
        return real(self, idx, *args, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", counting)
    server, s = BatchServer(), Settings(max_new_tokens=12)
    prompts = [p for p in PROMPTS if len(p) < 100]
    got = server.answer_many(tiny_model, tok, prompts, s)
    monkeypatch.undo()
    assert prompt_passes == [len(prompts)]
    assert [r.token_ids for r in got] == [generate(tiny_model, tok, p, s).token_ids for p in prompts]


def test_the_server_stays_active_a_moment_after_the_last_answer(tiny_model, tok):
    """Training rests while a class is active: between one answer and a student's next question the server is
    not busy, but it is still active (serving.active), so a training step does not start in that gap."""
    server = BatchServer()
    assert not server.active()  # nothing asked yet
    server.answer(tiny_model, tok, "你好？", Settings(max_new_tokens=4))
    assert not server.busy()
    assert server.active(linger=60) and not server.active(linger=0)
