"""Byte-level BPE tokenizer (Hugging Face `tokenizers`), plus functions that show its work for the classroom."""

import hashlib
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .errors import UserError

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0, 1, 2, 3
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


def train_tokenizer(texts, vocab_size: int) -> Tokenizer:
    """Learn BPE merges over UTF-8 bytes. Every text is encodable (no unknown characters: 256 byte symbols),
    and the ByteLevel decoder turns byte symbols back into UTF-8, so decode(encode(t)) == t."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()  # without it, Chinese comes back as 'ä¸Ń' style 乱码
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.encode_special_tokens = True  # '<eos>' typed by a student is text, not the end-of-answer token
    return tok


def load_tokenizer(path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"找不到分词器文件 {path}，请先运行 python -m gpt_mini.build_tokenizer",
                        f"tokenizer file not found: {path}; run python -m gpt_mini.build_tokenizer first")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception:
        raise UserError(f"分词器文件 {path} 已损坏或格式不对",
                        f"tokenizer file {path} is damaged or not a tokenizer") from None
    tok.encode_special_tokens = True
    if [tok.token_to_id(t) for t in SPECIAL_TOKENS] != [PAD_ID, BOS_ID, EOS_ID, UNK_ID]:
        raise UserError(f"分词器 {path} 缺少特殊词元 {SPECIAL_TOKENS}",
                        f"tokenizer {path} lacks special tokens {SPECIAL_TOKENS}")
    return tok


def fingerprint(tok: Tokenizer) -> str:
    """A short hash of the vocabulary and merges: a checkpoint only works with the tokenizer it was trained with."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()[:16]


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def decode(tok: Tokenizer, ids) -> str:
    return tok.decode(list(ids), skip_special_tokens=True)


def decode_without_decoder(tok: Tokenizer, ids) -> str:
    """What you get if you forget the ByteLevel decoder: the byte symbols themselves (the 乱码 lesson)."""
    return "".join(tok.id_to_token(i) or "" for i in ids)


def _byte_table():
    """GPT-2's byte -> printable symbol table, inverted (symbol -> byte value)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_OF_SYMBOL = _byte_table()


def token_bytes(tok: Tokenizer, token_id: int) -> bytes:
    """The raw UTF-8 bytes one token stands for (a Chinese character is 3 bytes; a token may hold part of one)."""
    symbol = tok.id_to_token(token_id) or ""
    if symbol in SPECIAL_TOKENS:
        return symbol.encode("utf-8")
    return bytes(_BYTE_OF_SYMBOL.get(ch, 63) for ch in symbol)


def explain(tok: Tokenizer, text: str) -> list[dict]:
    """Show the work: for each token its id, its bytes (hex), and the piece of text it covers.
    A token that holds only part of a character shows that part as bytes; offsets map it back to the text."""
    enc = tok.encode(text, add_special_tokens=False)
    rows = []
    for i, (tid, (start, end)) in enumerate(zip(enc.ids, enc.offsets)):
        raw = token_bytes(tok, tid)
        piece = raw.decode("utf-8", errors="replace")
        rows.append({"index": i, "id": tid, "symbol": enc.tokens[i], "bytes": raw.hex(" "),
                     "text": piece if "\ufffd" not in piece else text[start:end], "partial": "\ufffd" in piece})
    return rows


def vocab_table(tok: Tokenizer) -> list[dict]:
    """Every vocabulary entry as (id, symbol, text it decodes to, byte count), sorted by id."""
    rows = []
    for tid in range(tok.get_vocab_size()):
        raw = token_bytes(tok, tid)
        rows.append({"id": tid, "symbol": tok.id_to_token(tid), "text": raw.decode("utf-8", errors="replace"),
                     "bytes": len(raw)})
    return rows
