"""python -m gpt_mini.build_tokenizer: train the byte-level BPE tokenizer on the course data."""


from . import tokenizer as bpe
from .config import add_config_args, load_config, resolve
from .data import prompt_prefix, read_jsonl
from .errors import ArgumentParser, run_cli


def corpus_texts(rows) -> list[str]:
    """The texts the model will see: the formatted pairs (so '用户:' and '助手:' become tokens) and plain lines."""
    return [r["text"] if "text" in r else prompt_prefix(r["prompt"]) + r["completion"] for r in rows]


def build(cfg: dict, vocab_size: int | None = None, extra_rows=()):
    rows = read_jsonl(resolve(cfg["data"]["train_path"])) + list(extra_rows)
    return bpe.train_tokenizer(corpus_texts(rows), vocab_size or cfg["tokenizer"]["vocab_size"])


def main(argv=None):
    parser = ArgumentParser(description="训练字节级 BPE 分词器 / train the byte-level BPE tokenizer")
    add_config_args(parser)
    parser.add_argument("--out", default=None, help="输出路径 / output path (default: tokenizer.path)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    tok = build(cfg)
    out = resolve(args.out or cfg["tokenizer"]["path"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    sample = "什么是注意力机制?"
    ids = bpe.encode(tok, sample)
    print(f"词表大小 / vocab size: {tok.get_vocab_size()} -> {out}")
    print(f"示例 / example: {sample} -> {len(ids)} tokens {ids} -> {bpe.decode(tok, ids)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
