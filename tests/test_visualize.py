"""gpt_mini.visualize: the numbers behind the dashboard's pictures, checked against the model itself."""

import math

import pytest
import torch

from gpt_mini import tokenizer as T
from gpt_mini import visualize as V
from gpt_mini.generate import Settings
from gpt_mini.model import GPT


@pytest.fixture(scope="module")
def tok():
    texts = ["用户:什么是注意力机制?\n助手:注意力机制通过分配权重让模型关注关键位置。"] * 20 + ["hello world"] * 5
    return T.train_tokenizer(texts, 300)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return GPT(tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, seq_len=64).eval()


@pytest.mark.parametrize("L,H,d,T_,Vs", [(4, 4, 256, 128, 824), (2, 2, 32, 64, 300), (6, 8, 512, 256, 5000)])
def test_model_size_matches_a_real_model(L, H, d, T_, Vs):
    size = V.model_size(L, H, d, T_, Vs)
    assert size["params"] == GPT(Vs, L, H, d, T_).num_params()
    assert size["flops_train_per_token"] == 6 * size["params"] + 12 * L * T_ * d
    assert size["train_bytes"] == 16 * size["params"] and str(f"{size['params']:,}") in size["formula"]


def test_attention_maps_are_causal_softmax_rows(model, tok):
    maps = V.attention_maps(model, tok, "注意力 hello")
    n = len(maps["ids"])
    assert maps["n_layer"] == 2 and maps["n_head"] == 2 and len(maps["tokens"]) == n
    assert maps["tokens"][0] == "0:<bos>" and len(set(maps["tokens"])) == n
    for layer in maps["weights"]:
        for head in layer:
            assert all(abs(sum(row) - 1) < 1e-5 for row in head)
            assert all(head[i][j] == 0 for i in range(n) for j in range(i + 1, n))


def test_causal_mask():
    assert V.causal_mask(3) == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_rope_rotation_keeps_length_and_turns_by_the_frequency():
    freqs = V.rope_frequencies(64)
    assert len(freqs["freq"]) == 32 and freqs["freq"][0] == pytest.approx(1.0)
    assert freqs["freq"][1] == pytest.approx(10000 ** (-2 / 64), rel=1e-5)
    rot = V.rope_rotation(64, 1, positions=10)
    assert all(abs(n - 1) < 1e-5 for n in rot["length"])
    assert math.atan2(rot["y"][1], rot["x"][1]) == pytest.approx(freqs["freq"][1], rel=1e-5)


def test_qk_depends_only_on_offset():
    qk = V.qk_vs_offset(64, max_offset=16, starts=(0, 7, 50))
    assert qk["max_difference"] < 1e-3
    assert len(qk["scores"][50]) == 17


def test_next_token_stages_follow_the_settings(model, tok):
    greedy = V.next_token_stages(model, tok, "什么是注意力机制?", [], 0, Settings())
    assert greedy["probs"]["raw"] == greedy["probs"]["top_p"]
    s = Settings(temperature=2.0, top_k=3, top_p=1.0)
    st = V.next_token_stages(model, tok, "什么是注意力机制?", [], 0, s)
    assert st["kept"]["top_k"] == 3 and sum(st["probs"]["top_k"]) == pytest.approx(1.0, abs=1e-5)
    assert max(st["probs"]["temperature"]) <= max(st["probs"]["raw"]) + 1e-6  # higher temperature flattens
