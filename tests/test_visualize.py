"""gpt_mini.visualize: the numbers behind the dashboard's pictures, checked against the model itself."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, Project, assert_one_line_user_error, sharpen

from gpt_mini import tokenizer as bpe
from gpt_mini import visualize as V
from gpt_mini.checkpoint import load_model
from gpt_mini.data import prompt_prefix
from gpt_mini.errors import UserError
from gpt_mini.generate import Settings
from gpt_mini.model import GPT, apply_rope
from gpt_mini.optim import make_optimizer

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread


@pytest.fixture(scope="module")
def tok():
    texts = ["用户:什么是注意力机制?\n助手:注意力机制通过分配权重让模型关注关键位置。"] * 20 + ["hello world"] * 5
    return bpe.train_tokenizer(texts, 300)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return GPT(tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, seq_len=64).eval()


@pytest.mark.parametrize("L,H,d,T_,Vs", [(4, 4, 256, 128, 824), (2, 2, 32, 64, 300), (6, 8, 512, 256, 5000)])
def test_model_size_matches_a_real_model(L, H, d, T_, Vs):
    size = V.model_size(L, H, d, T_, Vs)
    assert size["params"] == GPT(Vs, L, H, d, T_).num_params()
    assert size["flops_train_per_token"] == 6 * size["params"] + 12 * L * T_ * d
    assert str(f"{size['params']:,}") in size["formula"]


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_training_memory_is_weights_grads_and_the_real_optimizer_state(optimizer):
    L, H, d, T_, Vs = 2, 2, 32, 64, 300
    torch.manual_seed(0)
    model = GPT(Vs, L, H, d, T_)
    opt = make_optimizer(model, {"optimizer": optimizer, "lr": 1e-3, "muon_lr": 0.02, "weight_decay": 0.01})
    x = torch.randint(0, Vs, (2, 16))
    model(x, x)[1].backward()
    opt.step()  # the optimizers create their state on the first step
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim() > 0)  # AdamW's 0-d step counters are not memory worth counting
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    size = V.model_size(L, H, d, T_, Vs, optimizer)
    assert size["optimizer_bytes"] == state
    assert size["train_bytes"] == weights + grads + state


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


# ---- one forward pass (trace) ----------------------------------------------------------------------------------

QUESTION = "什么是注意力机制？"


def check_trace(model, tok, tr):
    """The traced numbers are the model's: same logits, attention, RoPE and logit lens."""
    idx = torch.tensor([tr["ids"]])
    n, hd = len(tr["ids"]), tr["shape"]["head_dim"]
    with torch.no_grad():
        logits, _ = model(idx)
    assert torch.equal(tr["logits"], logits[0]) or torch.allclose(tr["logits"], logits[0], atol=1e-6)
    cos, sin = model.rope_cos[:n], model.rope_sin[:n]
    assert torch.allclose(torch.cos(tr["rope_angles"]), cos, atol=1e-5)
    assert torch.allclose(torch.sin(tr["rope_angles"]), sin, atol=1e-5)
    x = tr["embedding"]
    for block, L in zip(model.blocks, tr["layers"]):
        assert torch.equal(L["x"], x)
        assert torch.equal(L["q_rot"], apply_rope(L["q"][None], cos, sin)[0])
        assert torch.equal(L["k_rot"], apply_rope(L["k"][None], cos, sin)[0])
        assert torch.allclose(L["scores"], L["q_rot"] @ L["k_rot"].transpose(-2, -1) / math.sqrt(hd), atol=1e-6)
        causal = block.attn.causal
        sdpa = F.scaled_dot_product_attention(L["q_rot"][None], L["k_rot"][None], L["v"][None],
                                              is_causal=causal and n > 1)[0]
        assert torch.allclose(L["heads"], sdpa, atol=1e-6)
        assert torch.allclose(L["weights"] @ L["v"], L["heads"], atol=1e-5)  # the explicit weights give the same
        assert torch.allclose(L["weights"].sum(-1), torch.ones(L["weights"].shape[:-1]), atol=1e-5)
        if causal:
            assert torch.all(L["weights"].triu(1) == 0) and torch.isinf(L["masked"].triu(1)).sum() == \
                L["weights"].shape[0] * n * (n - 1) // 2
        assert torch.equal(L["norm1"], block.norm1(L["x"]))
        assert torch.equal(L["silu"], F.silu(L["mlp_pre"]))
        assert torch.equal(L["resid_mlp"], L["resid_attn"] + L["mlp_out"])
        x = L["resid_mlp"]
    assert torch.equal(tr["final_in"], x)
    assert len(tr["lens"]) == len(model.blocks) + 1
    best = torch.topk(tr["probs"][-1], 3)
    assert [c["id"] for c in tr["lens"][-1]["top"]] == best.indices.tolist()  # the last layer's lens = the answer


@pytest.mark.parametrize("name", ["last.pt", "quantized.pt"])
def test_trace_of_the_shipped_checkpoints_equals_the_model(name):
    model, tok, _ = load_model(ROOT / "checkpoints" / name)
    tr = V.trace(model, tok, QUESTION)
    assert tr["ids"] == ([bpe.BOS_ID] + bpe.encode(tok, prompt_prefix(QUESTION)))[-V.TRACE_TOKENS:]
    check_trace(model, tok, tr)


@pytest.mark.parametrize("n_layer,n_head,causal", [(1, 1, True), (2, 8, True), (3, 2, False), (6, 4, True)])
def test_trace_equals_the_model_for_other_shapes(tok, n_layer, n_head, causal):
    torch.manual_seed(n_layer)
    model = sharpen(GPT(tok.get_vocab_size(), n_layer, n_head, n_embd=32, seq_len=64, causal=causal), n_layer).eval()
    tr = V.trace(model, tok, "注意力 hello " * 10)
    assert len(tr["ids"]) == V.TRACE_TOKENS and tr["shape"]["n_head"] == n_head  # cut to the last 24 tokens
    check_trace(model, tok, tr)
    short = GPT(tok.get_vocab_size(), 1, 2, n_embd=16, seq_len=8).eval()  # a context shorter than 24
    assert len(V.trace(short, tok, "注意力机制")["ids"]) == 8


def test_trace_needs_a_question(model, tok):
    with pytest.raises(UserError, match="请输入"):
        V.trace(model, tok, "  ")


def test_step_stage_walks_every_stage_of_every_layer():
    seen, at = [("tokens", 0)], ("tokens", 0)
    while True:
        nxt = V.step_stage(*at, n_layer=3, delta=1)
        if nxt == at:
            break
        seen.append(at := nxt)
    assert len(seen) == 2 + 3 * len(V.LAYER_STAGES) + 3 and seen[-1] == ("top", 2)
    assert [s for s, _ in seen[2:12]] == list(V.LAYER_STAGES) and {n for s, n in seen[2:12]} == {0}
    assert V.step_stage("norm", 1, 3, -1) == ("residual2", 0)
    assert V.step_stage("tokens", 0, 3, -1) == ("tokens", 0)


def test_every_stage_shows_the_number_it_works_out(tok):
    model = sharpen(GPT(tok.get_vocab_size(), 2, 2, n_embd=32, seq_len=64)).eval()
    tr = V.trace(model, tok, QUESTION)
    n = len(tr["ids"])
    for stage in V.STAGES:
        view = V.stage_view(tr, stage, layer=1, head=1)
        json.dumps(view)  # plain lists only
        assert view["formula"] and view["worked"] and view["panels"]
        for p in view["panels"]:  # heatmap rows are the tokens; bars have one label each
            assert len(p["z"]) == n if p["kind"] == "heatmap" else len(p["y"]) == len(p["x"])
        if stage in ("tokens", "mask"):
            continue
        shown = [v for p in view["panels"] for row in (p.get("z") or [p["y"]]) for v in row if v is not None]
        result = float(view["worked"].rsplit("=", 1)[1])
        assert min(abs(v - result) for v in shown) < 1.5e-4, (stage, view["worked"])
    scores = V.stage_view(tr, "scores", 0, 0)
    a, b, c = map(float, re.search(r"= ([-\d.]+) / ([-\d.]+) = ([-\d.]+)$", scores["worked"]).groups())
    assert a / b == pytest.approx(c, abs=1e-4)  # the hand computation adds up


def test_trace_json_is_bounded():
    model, tok, _ = load_model(ROOT / "checkpoints" / "last.pt")
    out = V.trace_json(V.trace(model, tok, "注意力" * 100), layer=3, head=3)
    text = json.dumps(out, ensure_ascii=False)
    assert len(text) < 200_000 and len(out["ids"]) == V.TRACE_TOKENS
    st = out["stages"]
    assert st["q"]["shape"] == [4, 24, 64] and len(st["q"]["values"]) == 24 and len(st["q"]["values"][0]) == 8
    assert st["weights"]["shape"] == [4, 24, 24] and len(st["weights"]["values"][0]) == 24
    assert st["masked"]["values"][0][1] is None  # -inf, masked
    assert len(out["top"]) == 10 and len(out["lens"]) == 5 and out["layer"] == 3


def test_logit_lens_compare_puts_models_side_by_side(tok):
    trained = sharpen(GPT(tok.get_vocab_size(), 2, 2, n_embd=32, seq_len=64), 1).eval()
    middle = sharpen(GPT(tok.get_vocab_size(), 2, 2, n_embd=32, seq_len=64), 2).eval()
    start = GPT(tok.get_vocab_size(), 2, 2, n_embd=32, seq_len=64).eval()
    models = {"第 0 步 / step 0": start, "第 250 步（25%）/ step 250 (25%)": middle, "最终 / final": trained}
    cmp = V.logit_lens_compare(models, tok, QUESTION)
    assert cmp["labels"] == list(models) and list(cmp["lens"]) == list(models)  # labels as given, in order
    assert cmp["layers"] == [-1, 0, 1] and all(len(rows) == 3 for rows in cmp["lens"].values())
    for label, model in models.items():  # every column is that model's own logit lens, as trace() shows it
        tr = V.trace(model, tok, QUESTION)
        assert cmp["tokens"] == tr["tokens"] and cmp["position"] == len(tr["ids"]) - 1
        for got, want in zip(cmp["lens"][label], tr["lens"], strict=True):
            assert [c["id"] for c in got] == [c["id"] for c in want["top"]]
            assert [c["prob"] for c in got] == pytest.approx([c["prob"] for c in want["top"]], abs=1e-6)
            assert len(got) == 3 and all(c["token"] for c in got)
    best = torch.topk(V.trace(trained, tok, QUESTION)["probs"][-1], 3).indices.tolist()
    assert [c["id"] for c in cmp["lens"]["最终 / final"][-1]] == best  # the last layer: the model's own answer
    deeper = sharpen(GPT(tok.get_vocab_size(), 3, 2, n_embd=32, seq_len=64), 3).eval()
    mixed = V.logit_lens_compare({"a": start, "b": deeper}, tok, QUESTION, k=2)
    assert mixed["layers"] == [-1, 0, 1, 2] and [len(mixed["lens"][x]) for x in "ab"] == [3, 4]
    assert all(len(row) == 2 for row in mixed["lens"]["b"])
    with pytest.raises(UserError):
        V.logit_lens_compare({}, tok, QUESTION)
    with pytest.raises(UserError, match="请输入"):
        V.logit_lens_compare(models, tok, " ")


def test_initial_model_is_the_runs_step_0(tok, tmp_path):
    """The fresh 'step 0' the dashboard shows without snapshots is the model a run starts from, weight for weight."""
    from gpt_mini.runs import snapshot_path
    from gpt_mini.train import Trainer

    cfg = Project(tmp_path / "project", tok).cfg("training.precision=fp32")
    trainer = Trainer(cfg, save_dir=tmp_path / "run", keep_resume=False)
    fresh = V.initial_model(cfg, tok.get_vocab_size())
    assert not fresh.training
    for (name, a), (_, b) in zip(trainer.model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    trainer._snapshot_if_due()  # what a run keeps at step 0: the same weights in int8
    snap, _, ckpt = load_model(snapshot_path(tmp_path / "run", 0), tok)
    assert ckpt["step"] == 0 and ckpt["format"] == "int8"
    for (name, a), (_, b) in zip(snap.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=float(b.abs().max()) / 127 + 1e-7), name


def test_bench_times_every_stage(tok):
    model = GPT(tok.get_vocab_size(), 2, 2, n_embd=32, seq_len=64).eval()
    assert V.stage_order(2)[-1] == ("top", 1) and len(V.stage_order(2)) == 2 + 2 * len(V.LAYER_STAGES) + 3
    drawn = []
    r = V.bench_stages(model, tok, QUESTION, figure=lambda view: drawn.append(view["stage"]) or _Json(), repeats=2)
    assert r["stages"] == len(V.stage_order(2)) and r["renders"] == len(r["ms"]) == 2 * r["stages"]
    assert set(drawn) == set(V.STAGES) and len(drawn) == r["renders"] + 1  # and one warm-up
    assert 0 < r["median_ms"] <= r["p95_ms"] <= r["max_ms"] == max(r["ms"]) and r["slowest"] in V.stage_order(2)
    assert set(r["parts"]) == {"trace", "stage_view", "figure", "to_json"}


class _Json:
    def to_json(self):
        return "{}"


def test_trace_cli_prints_every_stage_and_one_line_for_a_missing_checkpoint(cli, tmp_path):
    proc = cli("gpt_mini.visualize", "--trace", QUESTION)
    assert proc.returncode == 0, proc.stderr
    for name in ("embedding", "q_rot", "scores", "weights", "silu", "logits", "逐层解读 / logit lens"):
        assert name in proc.stdout
    assert_one_line_user_error(cli("gpt_mini.visualize", "--trace", QUESTION, "--ckpt", tmp_path / "no.pt"),
                               "找不到检查点")
    assert_one_line_user_error(cli("gpt_mini.visualize"), "--trace", "--bench")
