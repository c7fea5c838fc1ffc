"""Checkpoints: round trip, weights_only loading, int8 export, hostile and broken files, tokenizer mismatch,
atomic saves that are interrupted."""

import json
import os
import pickle
import random

import pytest
import torch
from conftest import PAIRS, ROOT
from tokenizers import Tokenizer

from gpt_mini import checkpoint as C
from gpt_mini import tokenizer as bpe
from gpt_mini.config import load_config
from gpt_mini.errors import UserError
from gpt_mini.generate import generate
from gpt_mini.knowledge import REFUSAL, Course, course_of
from gpt_mini.model import GPT

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread


@pytest.fixture
def saved(project, tok, tmp_path):
    """A random model of the project's shape saved as a checkpoint: (path, model, cfg)."""
    cfg = project.cfg()
    torch.manual_seed(0)
    model = C.model_from_config(cfg, tok.get_vocab_size()).eval()
    path = tmp_path / "ckpt" / "last.pt"
    C.atomic_save(C.make_checkpoint(model, cfg, tok, 7, {"train_loss": 1.5}), path)
    return path, model, cfg


def logits_of(model, tok, text="什么是注意力机制？"):
    idx = torch.tensor([[bpe.BOS_ID] + bpe.encode(tok, text)])
    with torch.no_grad():
        return model(idx)[0]


def test_the_course_index_with_its_questions_to_refuse_survives_a_weights_only_load(project, tok, tmp_path):
    """The refusal's course (wordings per fact, answers, questions taught to be refused) is plain lists in the file
    and comes back as the same Course (knowledge.course_of), in fp32 and in int8."""
    rows = [{"prompt": "什么是注意力机制？", "completion": "注意力答案"}, {"prompt": "推荐一部电影",
            "completion": f"{REFUSAL}。"}]
    course = Course.from_rows(rows)
    cfg = project.cfg()
    model = C.model_from_config(cfg, tok.get_vocab_size())
    ckpt = C.make_checkpoint(model, cfg, tok, 1, {}, course)
    for name, saved_ckpt in (("last.pt", ckpt), ("quantized.pt", C.quantize_int8(ckpt))):
        C.atomic_save(saved_ckpt, tmp_path / name)
        loaded = course_of(torch.load(tmp_path / name, weights_only=True))
        assert (loaded.facts, loaded.answers) == ([["什么是注意力机制？"]], ["注意力答案"])
        assert loaded.refused == ["推荐一部电影"]


def test_checkpoint_round_trip_gives_identical_logits(saved, tok):
    path, model, cfg = saved
    loaded, tok2, ckpt = C.load_model(path, tok)
    assert tok2 is tok
    assert not loaded.training
    assert torch.equal(logits_of(loaded, tok), logits_of(model, tok))
    assert ckpt["step"] == 7 and ckpt["metrics"] == {"train_loss": 1.5} and ckpt["config"] == cfg


def test_load_model_without_tokenizer_uses_the_one_in_its_config(saved, tok):
    path, model, _ = saved
    loaded, tok2, _ = C.load_model(path)
    assert bpe.fingerprint(tok2) == bpe.fingerprint(tok)
    assert torch.equal(logits_of(loaded, tok2), logits_of(model, tok))


def test_checkpoint_is_a_plain_dict_loadable_with_weights_only(saved, tok):
    path, model, _ = saved
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(ckpt, dict)
    assert {"model", "config", "tokenizer_fingerprint", "vocab_size", "step", "metrics"} <= set(ckpt)
    assert ckpt["tokenizer_fingerprint"] == bpe.fingerprint(tok) and ckpt["vocab_size"] == tok.get_vocab_size()
    assert set(ckpt["model"]) == set(model.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())


def test_int8_file_is_at_most_a_third_of_fp32(tmp_path, tok):
    cfg = load_config(ROOT / "config.yaml")  # the default 3.37M shape
    torch.manual_seed(0)
    model = GPT(824, 4, 4, 256, 128)
    fp32 = C.make_checkpoint(model, cfg, tok, 0, {})
    C.atomic_save(fp32, tmp_path / "last.pt")
    C.atomic_save(C.quantize_int8(fp32), tmp_path / "quantized.pt")
    size32, size8 = (tmp_path / "last.pt").stat().st_size, (tmp_path / "quantized.pt").stat().st_size
    assert size32 > 13_000_000
    assert size8 * 3 <= size32, (size8, size32)
    q = torch.load(tmp_path / "quantized.pt", weights_only=True)
    assert q["format"] == "int8"
    assert any(v.dtype == torch.int8 for v in q["model"].values())


def test_dequantized_weights_within_half_a_step_of_fp32(saved):
    path, model, _ = saved
    ckpt = C.read_checkpoint(path)
    q = C.quantize_int8(ckpt)
    deq = C.dequantize(q["model"])
    assert set(deq) == set(ckpt["model"])
    for name, w in ckpt["model"].items():
        if w.dim() == 2:
            step = w.abs().amax(dim=1, keepdim=True) / 127.0
            assert ((deq[name] - w).abs() <= step / 2 + 1e-7).all(), name
            assert q["model"][name + ".int8"].dtype == torch.int8
        else:
            assert torch.equal(deq[name], w)


def test_int8_model_answers_equal_fp32_on_training_prompts(trained_run):
    fp32, tok, _ = C.load_model(trained_run.save_dir / "last.pt", trained_run.tok)
    int8, _, ckpt = C.load_model(trained_run.save_dir / "quantized.pt", trained_run.tok)
    assert ckpt["format"] == "int8"
    for prompt, answer in PAIRS:
        a, b = generate(fp32, tok, prompt), generate(int8, tok, prompt)
        assert a.answer == answer  # the fp32 model learned it ...
        assert b.token_ids == a.token_ids  # ... and the int8 model says exactly the same


# ---- hostile and broken files -------------------------------------------------------------------------------

class Hostile:
    """Unpickling this would create the marker file: open(marker, 'w')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch_zip", "raw_pickle"])
def test_hostile_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    payload = {"model": Hostile(marker), "config": {}, "tokenizer_fingerprint": "x", "vocab_size": 1}
    if how == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(UserError):
        C.read_checkpoint(path)
    with pytest.raises(UserError):
        C.load_model(path)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False) if how == "torch_zip" else pickle.loads(path.read_bytes())
    assert marker.exists()


def _garbage_files(tmp_path, saved_path):
    good = saved_path.read_bytes()
    rng = random.Random(0)
    files = {
        "empty": b"",
        "text": b"hello world, this is not a checkpoint\n",
        "chinese_text": "这不是检查点文件".encode("utf-8"),
        "random_bytes": bytes(rng.randrange(256) for _ in range(4096)),
        "truncated_half": good[: len(good) // 2],
        "truncated_tail": good[:-100],
        "zip_header_only": b"PK\x03\x04" + bytes(100),
        "json": b'{"model": {}, "config": {}}',
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.pt"
        p.write_bytes(data)
        out[name] = p
    torch.save([1, 2, 3], tmp_path / "list.pt")
    out["torch_list"] = tmp_path / "list.pt"
    torch.save({"model": {}}, tmp_path / "partial_dict.pt")
    out["dict_missing_keys"] = tmp_path / "partial_dict.pt"
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other_dict.pt")
    out["other_dict"] = tmp_path / "other_dict.pt"
    return out


GARBAGE = ["empty", "text", "chinese_text", "random_bytes", "truncated_half", "truncated_tail", "zip_header_only",
           "json", "torch_list", "dict_missing_keys", "other_dict"]


@pytest.mark.parametrize("kind", GARBAGE)
def test_broken_or_foreign_files_are_user_errors(saved, tmp_path, kind):
    path = _garbage_files(tmp_path, saved[0])[kind]
    with pytest.raises(UserError):
        C.load_model(path)


def test_missing_checkpoint_and_directory_are_user_errors(tmp_path):
    with pytest.raises(UserError):
        C.read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(UserError):
        C.read_checkpoint(tmp_path)


def test_checkpoint_whose_weights_do_not_fit_its_config_is_user_error(saved, tmp_path, tok):
    path, model, cfg = saved
    ckpt = C.read_checkpoint(path)
    ckpt["config"] = dict(cfg, model=dict(cfg["model"], n_embd=32))
    C.atomic_save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(UserError):
        C.load_model(tmp_path / "mismatch.pt", tok)
    ckpt["config"] = {"model": {"n_layer": "two"}}
    C.atomic_save(ckpt, tmp_path / "badcfg.pt")
    with pytest.raises(UserError):
        C.load_model(tmp_path / "badcfg.pt", tok)


def test_checkpoint_with_a_different_tokenizer_is_user_error(saved, tok):
    path, _, _ = saved
    other_size = bpe.train_tokenizer(["完全不同的语料，用来训练另一个分词器。", "another corpus entirely"] * 3, 320)
    with pytest.raises(UserError):
        C.load_model(path, other_size)
    # same vocabulary size, two token ids swapped: only the fingerprint tells them apart
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    a, b = [t for t, i in vocab.items() if i in (100, 101)]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    swapped = Tokenizer.from_str(json.dumps(spec))
    assert swapped.get_vocab_size() == tok.get_vocab_size()
    with pytest.raises(UserError):
        C.load_model(path, swapped)


# ---- atomic saves -------------------------------------------------------------------------------------------

def test_atomic_save_interrupted_before_rename_keeps_old_file(saved, tok, monkeypatch):
    path, model, cfg = saved
    before = path.read_bytes()
    newer = GPT(tok.get_vocab_size(), cfg["model"]["n_layer"], cfg["model"]["n_head"], cfg["model"]["n_embd"],
                cfg["model"]["seq_len"])

    def crash(*args, **kwargs):
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        C.atomic_save(C.make_checkpoint(newer, cfg, tok, 99, {}), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    loaded, _, ckpt = C.load_model(path, tok)
    assert ckpt["step"] == 7
    assert torch.equal(logits_of(loaded, tok), logits_of(model, tok))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary file left behind


def test_atomic_save_interrupted_while_writing_keeps_old_file(saved, tok, monkeypatch):
    path, model, cfg = saved
    before = path.read_bytes()
    real_save = torch.save

    def half_write(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(KeyboardInterrupt):
        C.atomic_save(C.make_checkpoint(model, cfg, tok, 99, {}), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert C.load_model(path, tok)[2]["step"] == 7
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
