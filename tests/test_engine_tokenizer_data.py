"""Tokenizer round trips and the classroom helpers; data loading, target alignment, padding, prompt normalisation."""

import json
import random
import re
import unicodedata

import pytest
import torch
from conftest import PAIRS, ROOT, write_jsonl
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from gpt_mini import data as D
from gpt_mini import tokenizer as bpe
from gpt_mini.errors import UserError
from gpt_mini.generate import fit_prompt

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

# ---- tokenizer ----------------------------------------------------------------------------------------------

ROUND_TRIP_TEXTS = [
    "什么是注意力机制？",
    "Hello, world! The quick brown fox.",
    "🤖🎉👍🏽 emoji 😊",
    "GPT 模型 uses 注意力 attention 😊 in 2024年。",
    "龘靐齉 罕见字和日本語のテキスト",  # characters never seen in training: bytes still encode them
    "  leading spaces,\ttabs\nand newlines  ",
    "<b>HTML</b> & \"quotes\" <script>alert(1)</script>",
]


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_tokenizer_round_trip_is_exact_without_replacement_chars(tok, text):
    ids = bpe.encode(tok, text)
    assert ids
    assert all(i not in (bpe.PAD_ID, bpe.BOS_ID, bpe.EOS_ID, bpe.UNK_ID) for i in ids)  # no unknowns, no specials
    out = bpe.decode(tok, ids)
    assert "\ufffd" not in out
    assert out == text


def test_tokenizer_round_trip_survives_save_and_load(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(str(path))
    loaded = bpe.load_tokenizer(path)
    text = "混合 mixed 文本 🤖!"
    assert bpe.encode(loaded, text) == bpe.encode(tok, text)
    assert bpe.decode(loaded, bpe.encode(loaded, text)) == text
    assert bpe.fingerprint(loaded) == bpe.fingerprint(tok)


def test_decoding_without_bytelevel_decoder_gives_mojibake_for_chinese(tok):
    # GPT-2's byte table: 中 = E4 B8 AD -> 'ä' (E4) '¸' (B8) and AD (not printable) -> chr(256 + 67) = 'Ń'.
    ids = bpe.encode(tok, "中")
    assert bpe.decode_without_decoder(tok, ids) == "ä¸Ń"
    text = "注意力机制"
    ids = bpe.encode(tok, text)
    garbled = bpe.decode_without_decoder(tok, ids)
    assert garbled != bpe.decode(tok, ids) == text
    assert not any(ch in garbled for ch in text)
    assert bpe.decode_without_decoder(tok, bpe.encode(tok, "abc")) == "abc"  # ASCII letters are their own symbols


@pytest.mark.parametrize("text", ["什么是注意力机制？", "AI 🤖 模型", "龘"])
def test_explain_rows_match_encode_and_bytes_concatenate_to_utf8(tok, text):
    rows = bpe.explain(tok, text)
    assert [r["id"] for r in rows] == bpe.encode(tok, text)
    raw = b"".join(bytes.fromhex(r["bytes"]) for r in rows)
    assert raw == text.encode("utf-8")
    for r in rows:
        piece = bytes.fromhex(r["bytes"])
        try:
            whole = piece.decode("utf-8")
        except UnicodeDecodeError:
            whole = None
        assert r["partial"] == (whole is None)
        if whole is not None:
            assert r["text"] == whole


def test_special_token_ids_are_0_to_3(tok):
    assert bpe.SPECIAL_TOKENS == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert [tok.token_to_id(t) for t in ["<pad>", "<bos>", "<eos>", "<unk>"]] == [0, 1, 2, 3]
    assert (bpe.PAD_ID, bpe.BOS_ID, bpe.EOS_ID, bpe.UNK_ID) == (0, 1, 2, 3)
    assert bpe.decode(tok, [bpe.BOS_ID] + bpe.encode(tok, "你好") + [bpe.EOS_ID, bpe.PAD_ID]) == "你好"


def test_vocab_table_covers_every_id(tok):
    rows = bpe.vocab_table(tok)
    assert [r["id"] for r in rows] == list(range(tok.get_vocab_size()))
    byte_rows = [r for r in rows if r["id"] >= 4 and r["bytes"] == 1]
    assert len(byte_rows) == 256  # the 256 byte symbols are all in the vocabulary


def test_fingerprint_differs_for_a_different_tokenizer_of_same_size():
    a = bpe.train_tokenizer([p + c for p, c in PAIRS] + ["the quick brown fox jumps over the lazy dog"] * 3, 300)
    b = bpe.train_tokenizer(["月亮本身不发光，它反射太阳的光。", "机器学习让计算机从数据中学习规律。",
                           "pack my box with five dozen liquor jugs"] * 3, 300)
    assert a.get_vocab_size() == b.get_vocab_size() == 300
    assert bpe.fingerprint(a) != bpe.fingerprint(b)


def test_load_tokenizer_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError):
        bpe.load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "garbage.json"
    bad.write_text("{not a tokenizer", encoding="utf-8")
    with pytest.raises(UserError):
        bpe.load_tokenizer(bad)
    plain = Tokenizer(models.BPE())  # a valid tokenizer file without our special tokens
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    plain.train_from_iterator(["hello world"] * 5, trainers.BpeTrainer(vocab_size=280, show_progress=False,
                                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "plain.json"
    plain.save(str(path))
    with pytest.raises(UserError):
        bpe.load_tokenizer(path)


# ---- samples and targets ------------------------------------------------------------------------------------

def test_encode_row_aligns_targets_answer_only(tok):
    prompt, answer = "什么是注意力机制？", "注意力机制让模型关注关键位置。"
    x, y = D.encode_row(tok, {"prompt": prompt, "completion": answer}, seq_len=128)
    literal_prefix = "用户:什么是注意力机制?\n助手:"  # half-width ?, written out by hand
    prefix = [bpe.BOS_ID] + tok.encode(literal_prefix, add_special_tokens=False).ids
    body = tok.encode(answer, add_special_tokens=False).ids
    full = prefix + body + [bpe.EOS_ID]
    P = len(prefix)
    assert x.tolist() == full[:-1]
    assert y.tolist()[P - 1:] == full[P:]  # shifted by one
    assert y.tolist()[:P - 1] == [-100] * (P - 1)  # the prompt is not trained
    assert int(y[P - 1]) == body[0]  # the first answer token is trained (the seed's alignment fix)
    assert int(y[P - 2]) == -100
    assert int(y[-1]) == bpe.EOS_ID
    assert torch.equal(x[P:], y[P - 1:-1])
    assert tok.decode(y[P - 1:-1].tolist()) == answer


def test_encode_row_text_rows_train_every_target(tok):
    text = "注意力机制让模型关注关键位置。"
    x, y = D.encode_row(tok, {"text": text}, seq_len=128)
    ids = tok.encode(text, add_special_tokens=False).ids
    assert x.tolist() == [bpe.BOS_ID] + ids
    assert y.tolist() == ids + [bpe.EOS_ID]
    assert (y != -100).all()


def test_encode_row_cuts_to_seq_len(tok):
    x, y = D.encode_row(tok, {"prompt": "长问题？", "completion": "很长的回答。" * 40}, seq_len=16)
    prefix = [bpe.BOS_ID] + tok.encode("用户:长问题?\n助手:", add_special_tokens=False).ids
    full = prefix + tok.encode("很长的回答。" * 40, add_special_tokens=False).ids + [bpe.EOS_ID]
    assert len(x) == len(y) == 16
    assert x.tolist() == full[:16]
    assert y.tolist()[len(prefix) - 1:] == full[len(prefix):17]


def test_collate_pads_to_longest_sample_not_seq_len(tok):
    samples = [D.encode_row(tok, r, seq_len=128) for r in
               ({"prompt": "你好？", "completion": "你好。"},
                {"prompt": "什么是注意力机制？", "completion": "注意力机制让模型关注关键位置。"},
                {"text": "短"})]
    lengths = [len(x) for x, _ in samples]
    x, y = D.collate(samples)
    assert x.shape == y.shape == (3, max(lengths))
    assert max(lengths) < 128
    for i, (xi, yi) in enumerate(samples):
        n = len(xi)
        assert torch.equal(x[i, :n], xi) and torch.equal(y[i, :n], yi)
        assert (x[i, n:] == bpe.PAD_ID).all()
        assert (y[i, n:] == -100).all()


def test_batches_pad_each_batch_to_its_own_longest(tok):
    samples = [D.encode_row(tok, {"text": "字" * n}, seq_len=128) for n in (4, 5, 6, 7)]
    b = D.Batches(samples, batch_size=2, seed=0)
    widths = []
    for _ in range(4):  # two epochs of two batches
        x, y, docs = b.next()
        assert docs is None
        assert x.shape[0] == 2
        assert x.shape[1] == max(int((row != bpe.PAD_ID).sum()) for row in x)
        widths.append(x.shape[1])
    assert min(widths) < max(len(s[0]) for s in samples)  # a batch of short rows is not padded to the longest row


@pytest.mark.parametrize("lengths", [range(1, 11), [3] * 9 + [30, 31]])
def test_batches_visit_every_sample_once_per_epoch(tok, lengths):
    samples = [D.encode_row(tok, {"text": "字" * n}, seq_len=128) for n in lengths]
    b = D.Batches(samples, batch_size=3, seed=1)
    seen = []
    while len(seen) < len(samples):
        x, _, _ = b.next()
        assert 1 <= x.shape[0] <= 3
        seen += [int((row != bpe.PAD_ID).sum()) for row in x]
    assert sorted(seen) == sorted(len(xi) for xi, _ in samples)


def test_long_samples_do_not_pad_batches_of_short_ones(tok):
    """The two long rows (over 1.5x the median length) are batched together; short batches stay short."""
    samples = [D.encode_row(tok, {"text": "字" * n}, seq_len=128) for n in [3] * 9 + [30, 31]]
    b = D.Batches(samples, batch_size=3, seed=1)
    widths = sorted(b.next()[0].shape[1] for _ in range(4))  # one epoch: 3 short batches and 1 long one
    short_width = max(len(x) for x, _ in samples[:9])
    assert widths[:3] == [short_width] * 3 and widths[3] > 2 * short_width


# ---- prompt normalisation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("typed,expected", [
    ("什么是注意力机制？", "什么是注意力机制?"),
    (" 什么是 注意力 机制 ？ ", "什么是注意力机制?"),
    ("什么是注意力机制", "什么是注意力机制?"),
    ("什么是注意力机制？？", "什么是注意力机制?"),
    ("你好，世界：测试；好吗？", "你好,世界:测试;好吗?"),
    ("你好 ， 世界 ： 测试 ； 好吗 ?", "你好,世界:测试;好吗?"),
    ("What  is   AI ？", "What is AI?"),
])
def test_normalize_prompt_full_width_and_spaces_equal_half_width(typed, expected):
    assert D.normalize_prompt(typed) == expected
    assert D.normalize_prompt(expected) == expected


def _normalize_by_one_substitution(text):
    """The rule as first written (one regex that ate spaces around every character): slow, but plainly right."""
    s = unicodedata.normalize("NFKC", text)
    s = re.sub(r"\s*([^\x00-\x7f]|[,.;:!?()\[\]])\s*", r"\1", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip("?？!！。.~～ \t")
    return s + "?" if s else ""


def test_normalize_prompt_agrees_with_the_plain_rule_on_course_data_and_random_text():
    rng = random.Random(0)
    alphabet = list(" \t\n\u3000\xa0\u2028\x85ab1中文？,.;:!?()[]《》-_\u200b😀")
    texts = [json.loads(line)["prompt"] for line in (ROOT / "data" / "val.jsonl").read_text("utf-8").splitlines()]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(20000)]
    assert [D.normalize_prompt(t) for t in texts] == [_normalize_by_one_substitution(t) for t in texts]


@pytest.mark.parametrize("question", list(D.FIXED_QUESTIONS))
def test_fixed_questions_typed_with_full_width_marks_map_to_keys(question):
    assert D.normalize_prompt(question.replace("?", "？")) == question
    assert D.normalize_prompt(" " + question.replace("?", " ？ ")) == question
    assert D.normalize_prompt(question) == question


def test_training_and_inference_see_the_same_prompt_tokens(tok):
    x, _ = D.encode_row(tok, {"prompt": "什么是注意力机制？", "completion": "答。"}, seq_len=128)
    for typed in ("什么是注意力机制?", " 什么是 注意力机制 ？", "什么是注意力机制"):
        ids, notices = fit_prompt(tok, typed, 128, 16)
        assert notices == []
        assert x.tolist()[: len(ids)] == ids


# ---- reading JSONL ------------------------------------------------------------------------------------------

def test_read_jsonl_reads_pairs_and_text_rows(tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "问？", "completion": " 答。 "}, {"text": "一行文字"}])
    assert D.read_jsonl(path) == [{"prompt": "问？", "completion": "答。"}, {"text": "一行文字"}]


def test_jsonl_saved_with_a_bom_and_crlf_reads_like_plain_utf8(tmp_path):
    rows = [{"prompt": "问？", "completion": "答。"}, {"text": "一行文字"}]
    plain = write_jsonl(tmp_path / "plain.jsonl", rows)
    windows = tmp_path / "notepad.jsonl"  # Notepad's "UTF-8 with BOM", Windows line endings
    windows.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    assert D.read_jsonl(windows) == D.read_jsonl(plain) == rows


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "问？", "completion": "答。"}, ensure_ascii=False)
    path.write_text(f"{good}\n\n{good}\n{{\"prompt\": \"没有结尾\n{good}\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        D.read_jsonl(path)
    msg = str(e.value)
    assert str(path) in msg and "line 4" in msg and "第 4 行" in msg


@pytest.mark.parametrize("row", [{"prompt": "只有问题？"}, {"completion": "只有回答。"}, [1, 2], "text",
                                 {"prompt": "问？", "completion": "   "}, {"prompt": "  ？ ", "completion": "答。"},
                                 {"prompt": 3, "completion": "答。"}, {"text": "   "}])
def test_rows_with_missing_or_empty_fields_are_user_errors(tmp_path, row):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "问？", "completion": "答。"}, ensure_ascii=False) + "\n"
                    + json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        D.read_jsonl(path)
    assert str(path) in str(e.value) and "line 2" in str(e.value)


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_data_file_is_user_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as e:
        D.read_jsonl(path)
    assert "empty" in str(e.value)


def test_missing_or_non_utf8_data_file_is_user_error(tmp_path):
    with pytest.raises(UserError):
        D.read_jsonl(tmp_path / "nope.jsonl")
    path = tmp_path / "gbk.jsonl"
    path.write_bytes(json.dumps({"prompt": "问？", "completion": "答。"}, ensure_ascii=False).encode("gbk"))
    with pytest.raises(UserError):
        D.read_jsonl(path)


def test_load_samples_encodes_every_row(tok, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": p, "completion": c} for p, c in PAIRS])
    rows, samples = D.load_samples(tok, path, 64, extra_rows=[{"text": "额外"}])
    assert len(rows) == len(samples) == len(PAIRS) + 1
    assert all(len(x) == len(y) <= 64 for x, y in samples)


def test_an_encoded_file_is_reused_until_its_bytes_change(tok, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": p, "completion": c} for p, c in PAIRS])
    rows, samples = D.load_samples(tok, path, 64)
    again_rows, again = D.load_samples(tok, path, 64, extra_rows=[{"text": "额外"}])
    assert all(a is b for a, b in zip(again, samples)) and len(again) == len(samples) + 1  # not encoded twice
    assert len(D.load_samples(tok, path, 64)[1]) == len(samples)  # extra rows are not kept with the file
    for (x, y), row in zip(samples, rows):  # the same as encoding each row alone
        x1, y1 = D.encode_row(tok, row, 64)
        assert torch.equal(x, x1) and torch.equal(y, y1)
    assert all(len(x) <= 32 for x, _ in D.load_samples(tok, path, 32)[1])  # another context length: encoded again
    edited = [{"prompt": p, "completion": c} for p, c in PAIRS]
    edited[0]["completion"] = edited[0]["completion"][:-1] + "！"  # same size on disk, other bytes
    write_jsonl(path, edited)
    assert D.load_samples(tok, path, 64)[0][0]["completion"] == edited[0]["completion"]
