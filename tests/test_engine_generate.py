"""Sampling filters on hand-made distributions, masks, answer cleanup, settings checks, and generation:
KV cache against full recomputation, long and odd prompts."""

import math

import pytest
import torch
from conftest import PAIRS

from gpt_mini import tokenizer as bpe
from gpt_mini.errors import UserError
from gpt_mini.generate import (
    MIN_ANSWER_TOKENS,
    Decoding,
    Result,
    Settings,
    apply_repetition_penalty,
    clean_answer,
    generate,
    generate_steps,
    pick_greedy,
    pick_token,
    sampling_stages,
    top_k_filter,
    top_p_filter,
)

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

# ---- filters ------------------------------------------------------------------------------------------------


def kept(logits):
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_keeps_exactly_the_k_largest(k):
    logits = torch.randn(12, generator=torch.Generator().manual_seed(k))
    out = top_k_filter(logits, k)
    expected = set(sorted(range(12), key=lambda i: -float(logits[i]))[:k])
    assert kept(out) == expected
    assert torch.equal(out[list(expected)], logits[list(expected)])  # kept values unchanged


def test_top_k_zero_or_large_keeps_all():
    logits = torch.randn(6)
    assert torch.equal(top_k_filter(logits, 0), logits)
    assert torch.equal(top_k_filter(logits, 6), logits)


@pytest.mark.parametrize("p,expected_probs", [(0.8, {0.5, 0.3}), (0.81, {0.5, 0.3, 0.15}), (0.5, {0.5}),
                                              (0.3, {0.5}), (0.96, {0.5, 0.3, 0.15, 0.05}),
                                              (1.0, {0.5, 0.3, 0.15, 0.05})])
def test_top_p_keeps_smallest_set_reaching_p(p, expected_probs):
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])  # shuffled on purpose
    out = top_p_filter(probs.log(), p)
    assert {round(float(probs[i]), 2) for i in kept(out)} == expected_probs
    torch.testing.assert_close(out[list(kept(out))], probs.log()[list(kept(out))])


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits_only():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0, 0.5])
    out = apply_repetition_penalty(logits, [0, 1, 1, 0], 2.0)  # repeated ids are penalised once
    assert out.tolist() == [1.0, -4.0, 1.0, -1.0, 0.5]
    assert logits.tolist() == [2.0, -2.0, 1.0, -1.0, 0.5]  # input untouched
    assert torch.equal(apply_repetition_penalty(logits, [0, 1], 1.0), logits)
    assert torch.equal(apply_repetition_penalty(logits, [], 2.0), logits)


def test_sampling_stages_mask_specials_and_eos_only_at_first_steps():
    V = 10
    logits = torch.linspace(-1, 1, V)
    s = Settings().check()
    assert MIN_ANSWER_TOKENS == 2
    for step in range(4):
        raw = sampling_stages(logits, [], step, s)["raw"]
        for special in (bpe.PAD_ID, bpe.BOS_ID, bpe.UNK_ID):
            assert raw[special] == float("-inf")
        assert (raw[bpe.EOS_ID] == float("-inf")) == (step < 2)
        others = [i for i in range(V) if i not in (0, 1, 2, 3)]
        assert torch.equal(raw[others], logits[others])
    assert torch.equal(logits, torch.linspace(-1, 1, V))  # caller's tensor untouched


def test_sampling_stages_apply_temperature_then_top_k_then_top_p():
    logits = torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0, 2.0, 1.0, 0.5])
    s = Settings(temperature=0.5, top_k=3, top_p=0.9).check()
    st = sampling_stages(logits, [], 5, s)
    torch.testing.assert_close(st["temperature"][4:], logits[4:] / 0.5)
    assert kept(st["top_k"]) == {4, 5, 6}
    probs = torch.softmax(torch.tensor([6.0, 4.0, 2.0]), 0)  # 0.867, 0.117, 0.016: 0.9 needs two
    assert probs[0] < 0.9 <= probs[0] + probs[1]
    assert kept(st["top_p"]) == {4, 5}


def test_clean_answer_strips_leading_punctuation_and_cuts_at_stop_strings():
    assert clean_answer("，。  答案是这样。") == ("答案是这样。", False)
    assert clean_answer("\n!? Hello.") == ("Hello.", False)
    assert clean_answer("答案。用户:下一个问题") == ("答案。", False)
    assert clean_answer("答案。\n用户 下一个") == ("答案。", False)
    assert clean_answer("abcENDdef", ["END"]) == ("abc", True)
    assert clean_answer("第一句。第二句。", ["。"]) == ("第一句", True)
    assert clean_answer("没有停止词", ["END"]) == ("没有停止词", False)


def test_clean_answer_keeps_an_opening_title_mark_or_quote():
    assert clean_answer("《史记》是西汉司马迁写的。") == ("《史记》是西汉司马迁写的。", False)
    assert clean_answer("，“你好”是问候。") == ("“你好”是问候。", False)
    assert clean_answer("》。史记") == ("史记", False)  # closing marks are still stripped


def test_sampling_frequencies_match_softmax():
    logits = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0])
    s = Settings(temperature=1.0).check()
    g = torch.Generator().manual_seed(0)
    n = 4000
    counts = torch.zeros(5)
    for _ in range(n):
        counts[pick_token(logits, s, g)] += 1
    assert (counts / n - torch.softmax(logits, 0)).abs().max() < 0.03


def test_sampling_pipeline_frequencies_match_hand_computed_distribution():
    # PAD/BOS/UNK are masked (large logits on purpose), EOS (id 2) is allowed from step 2 on but low here;
    # with temperature 0.5 and top_k 3 only ids 4, 5, 6 remain, ∝ exp(logit / 0.5)
    logits = torch.tensor([5.0, 5.0, -1.0, 5.0, 1.0, 0.5, 0.0, -0.2])
    s = Settings(temperature=0.5, top_k=3).check()
    g = torch.Generator().manual_seed(1)
    n = 4000
    counts = torch.zeros(8)
    for _ in range(n):
        counts[pick_token(sampling_stages(logits, [], 3, s)["top_p"], s, g)] += 1
    w = [math.exp(1.0 / 0.5), math.exp(0.5 / 0.5), math.exp(0.0)]
    expected = torch.tensor([0, 0, 0, 0] + [x / sum(w) for x in w] + [0])
    assert counts[[0, 1, 2, 3, 7]].sum() == 0
    assert (counts / n - expected).abs().max() < 0.03


def test_greedy_pick_is_argmax():
    logits = torch.tensor([0.1, 3.0, -1.0, 2.9])
    assert pick_token(logits, Settings(temperature=0.0).check()) == 1


def test_greedy_rows_picked_together_equal_each_row_picking_alone(tok):
    """pick_greedy (a class's rows in one batch) gives every row the token, probabilities and top candidates
    that Decoding.step computes for that row alone, also at the first steps where EOS is masked."""
    logits = torch.randn(6, tok.get_vocab_size(), generator=torch.Generator().manual_seed(0)) * 4
    logits[[1, 5], bpe.EOS_ID] = 50.0  # EOS wins unless masked (row 1 is at its second step, row 5 at its third)

    def rows():
        out = [Decoding(tok, f"问题{i}", Settings(), 64, top_n=3 + i % 2) for i in range(6)]
        for i, d in enumerate(out):
            d.steps = [{"logprob": 0.0}] * (i % 3)  # 0, 1 or 2 steps already taken
        return out

    alone, together = rows(), rows()
    for i, d in enumerate(alone):
        d.step(logits[i])
    for i, (d, picked) in enumerate(zip(together, pick_greedy(together, logits))):
        d.step(logits[i], picked)
    for a, b in zip(alone, together):
        assert a.steps[-1] == b.steps[-1] and a.answer_ids == b.answer_ids
    assert alone[1].steps[-1]["id"] != bpe.EOS_ID and alone[5].steps[-1]["id"] == bpe.EOS_ID


# ---- settings -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"top_p": 0}, {"top_p": 1.5}, {"top_p": -0.1}, {"temperature": -1},
                                    {"top_k": -1}, {"max_new_tokens": 0}, {"max_new_tokens": -5},
                                    {"repetition_penalty": 0}])
def test_settings_out_of_range_are_user_errors(kwargs):
    with pytest.raises(UserError) as e:
        Settings(**kwargs).check()
    assert next(iter(kwargs)) in str(e.value)


def test_settings_boundaries_are_accepted():
    Settings(temperature=0, top_k=0, top_p=1.0, max_new_tokens=1).check()
    Settings(temperature=2.0, top_k=50, top_p=0.01, repetition_penalty=1.3, max_new_tokens=64).check()


def test_generate_checks_settings(tiny_model, tok):
    with pytest.raises(UserError):
        generate(tiny_model, tok, "你好？", Settings(top_p=1.5))


# ---- generation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", "？", " ? "])
def test_empty_prompt_is_user_error(tiny_model, tok, prompt):
    with pytest.raises(UserError):
        generate(tiny_model, tok, prompt)


@pytest.mark.parametrize("fused", [True, False])
def test_kv_cache_generation_equals_full_recomputation(tiny_model, tok, fused):
    for block in tiny_model.blocks:
        block.attn.fused = fused
    s = Settings(max_new_tokens=24)
    for prompt in ["什么是注意力机制？", "What is AI?", "🤖 你好"]:
        cached = generate(tiny_model, tok, prompt, s, use_cache=True)
        full = generate(tiny_model, tok, prompt, s, use_cache=False)
        assert cached.token_ids == full.token_ids
        assert cached.answer == full.answer and cached.stopped_by == full.stopped_by
        assert len(cached.steps) >= 3
        for a, b in zip(cached.steps, full.steps):
            assert a["id"] == b["id"]
            assert math.isclose(a["prob"], b["prob"], rel_tol=1e-3, abs_tol=1e-5)


def test_greedy_tokens_are_argmax_of_one_full_forward_pass(tiny_model, tok):
    result = generate(tiny_model, tok, "天空为什么是蓝色的？", Settings(max_new_tokens=16))
    prompt_ids = [bpe.BOS_ID] + bpe.encode(tok, "用户:天空为什么是蓝色的?\n助手:")
    assert result.prompt_tokens == len(prompt_ids)
    generated = [st["id"] for st in result.steps]
    with torch.no_grad():
        logits, _ = tiny_model(torch.tensor([prompt_ids + generated]))
    for i, tid in enumerate(generated):
        row = logits[0, len(prompt_ids) - 1 + i].clone()
        row[[bpe.PAD_ID, bpe.BOS_ID, bpe.UNK_ID]] = float("-inf")
        if i < 2:
            row[bpe.EOS_ID] = float("-inf")
        assert int(row.argmax()) == tid


def test_seeded_sampling_is_reproducible(tiny_model, tok):
    s = lambda seed: Settings(temperature=1.0, top_k=20, top_p=0.95, max_new_tokens=20, seed=seed)  # noqa: E731
    a = generate(tiny_model, tok, "你好？", s(7))
    b = generate(tiny_model, tok, "你好？", s(7))
    c = generate(tiny_model, tok, "你好？", s(8))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids or a.steps != c.steps


def test_generate_steps_yields_growing_answers_then_result(tiny_model, tok):
    items = list(generate_steps(tiny_model, tok, "你好？", Settings(max_new_tokens=10)))
    *partials, result = items
    assert isinstance(result, Result) and len(partials) == len(result.token_ids) <= 10  # one item per token
    if partials:
        assert partials[-1][0] == result.answer
    assert all(isinstance(text, str) and "id" in info for text, info in partials)


@pytest.mark.parametrize("prompt", ["什么是注意力机制" * 125, "a😊中 " * 250])
def test_1000_character_prompt_is_cut_with_notice_and_answers(tiny_model, tok, prompt):
    assert len(prompt) == 1000
    result = generate(tiny_model, tok, prompt, Settings(max_new_tokens=20))
    assert any("cut" in n for n in result.notices)
    assert isinstance(result.answer, str)
    assert result.prompt_tokens + len(result.token_ids) <= tiny_model.seq_len
    assert result.prompt_tokens <= tiny_model.seq_len - min(20, tiny_model.seq_len // 2)


@pytest.mark.parametrize("use_cache", [True, False])
def test_max_new_tokens_above_context_stops_at_context(tiny_model, tok, use_cache):
    with torch.no_grad():  # EOS logit = h·0 = 0, below the largest of ~400 random logits: greedy never ends
        tiny_model.tok_emb.weight[bpe.EOS_ID] = 0.0
    result = generate(tiny_model, tok, "你好？", Settings(max_new_tokens=500), use_cache=use_cache)
    assert result.stopped_by == "context"
    assert any("context" in n for n in result.notices)
    assert result.prompt_tokens + len(result.token_ids) == tiny_model.seq_len
    if use_cache:  # and the cache held up to the last position
        again = generate(tiny_model, tok, "你好？", Settings(max_new_tokens=500), use_cache=False)
        assert again.token_ids == result.token_ids


# ---- on the trained end-to-end model ------------------------------------------------------------------------

def test_full_width_half_width_and_spaces_get_the_same_answer(trained_run):
    for prompt, answer in PAIRS:
        forms = {prompt, prompt.replace("？", "?"), " " + prompt.replace("？", " ？ "), prompt.rstrip("？?")}
        answers = {generate(trained_run.model, trained_run.tok, f).answer for f in forms}
        assert answers == {answer}


def test_kv_cache_equals_recomputation_on_trained_model(trained_run):
    for prompt, _ in PAIRS:
        a = generate(trained_run.model, trained_run.tok, prompt, use_cache=True)
        b = generate(trained_run.model, trained_run.tok, prompt, use_cache=False)
        assert a.token_ids == b.token_ids and a.answer == b.answer


@pytest.mark.parametrize("prompt", ["🤖🎉?", "GPT 和 注意力 attention 有什么关系？", "<script>alert('x')</script>",
                                    "什么是注意力机制" * 125])
def test_edge_inputs_still_answer(trained_run, prompt):
    result = generate(trained_run.model, trained_run.tok, prompt, Settings(max_new_tokens=32))
    assert isinstance(result.answer, str)
    assert result.stopped_by in ("eos", "stop_string", "max_new_tokens", "context")
    assert "\ufffd" not in result.answer
