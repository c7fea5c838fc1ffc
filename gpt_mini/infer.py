"""python -m gpt_mini.infer: ask the trained model a question (or chat interactively without --prompt)."""

import json
import sys
from pathlib import Path

from . import tokenizer as bpe
from .checkpoint import describe, load_model, read_checkpoint
from .config import ROOT, add_config_args, load_config, resolve
from .data import check_history, read_lines
from .errors import ArgumentParser, UserError, run_cli
from .generate import DEFAULT, Settings, generate
from .hardware import pick_device
from .knowledge import PART_NOTE, WHY_NOTES, course_of, reply_in_context, why_values


def build_parser():
    p = ArgumentParser(description="用训练好的模型回答问题 / answer questions with a trained model")
    p.add_argument("--prompt", default=None, help="问题；省略则进入交互模式 / question; omit for interactive mode")
    p.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "last.pt"), help="检查点（last.pt 或 quantized.pt）")
    add_config_args(p)
    p.add_argument("--temperature", type=float, default=DEFAULT["temperature"], help="温度，0 = 贪心解码 / 0 = greedy")
    p.add_argument("--top_k", type=int, default=DEFAULT["top_k"])
    p.add_argument("--top_p", type=float, default=DEFAULT["top_p"])
    p.add_argument("--repetition_penalty", type=float, default=DEFAULT["repetition_penalty"])
    p.add_argument("--max_new_tokens", type=int, default=DEFAULT["max_new_tokens"])
    p.add_argument("--stop_strings", nargs="+", default=[], help="停止词，可多个 / stop strings")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="cpu", choices=["cpu", "auto", "cuda", "mps"],
                   help="在哪里运行模型（auto：有 GPU 就用）/ where the model runs (auto: a GPU if there is one)")
    p.add_argument("--show_label", action="store_true", help="输出前加“助手: ” / prefix the answer with '助手: '")
    p.add_argument("--no_refuse", action="store_true",
                   help="把握不足时也输出模型的原始回答 / show the raw answer even when the model is not confident")
    p.add_argument("--info", default=None, metavar="CKPT",
                   help="打印检查点的来历（配置、数据与分词器哈希、版本）/ print what made a checkpoint")
    p.add_argument("--prompts_file", default=None,
                   help="每行一个问题（或 JSON：{\"prompt\": 追问, \"history\": [[问题, 回答]]}）；"
                        "每个问题输出一行 JSON / one question per line (or JSON with prompt and history); "
                        "prints one JSON line each")
    return p


def read_prompts(path_text: str) -> list[str]:
    path = Path(path_text)
    if not path.is_file():
        raise UserError(f"找不到问题文件 {path}", f"prompts file not found: {path}")
    prompts = [line.strip() for line in read_lines(path) if line.strip()]
    if not prompts:
        raise UserError(f"问题文件 {path} 是空的", f"prompts file {path} is empty")
    return prompts


def asked_in(line: str, n: int) -> tuple[str, list]:
    """A line of a prompts file: a question, or a JSON object {"prompt": ..., "history": [[question, answer], ...]}
    (a follow-up after those exchanges; the last one is the context, as in the chat)."""
    if not line.startswith("{"):
        return line, []
    try:
        row = json.loads(line)
    except ValueError:
        row = None
    if not (isinstance(row, dict) and isinstance(row.get("prompt"), str)):
        raise UserError(f"第 {n} 行以 {{ 开头，但不是带 prompt 的 JSON", f"line {n} starts with {{ but is not JSON "
                        "with a prompt")
    return row["prompt"], [tuple(turn) for turn in check_history(row.get("history", []), f"第 {n} 行", f"line {n}")]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.info is not None:
        print(json.dumps(describe(read_checkpoint(resolve(args.info))), ensure_ascii=False, indent=2))
        return 0
    settings = Settings(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.max_new_tokens,
                        args.stop_strings, args.seed).check()
    tok = None
    if args.config or args.overrides:  # an explicit config names the tokenizer; otherwise the checkpoint's does
        tok = bpe.load_tokenizer(resolve(load_config(args.config, args.overrides)["tokenizer"]["path"]))
    model, tok, ckpt = load_model(resolve(args.ckpt), tok, str(pick_device(args.device)))
    course, history = course_of(ckpt), []

    def reply(question: str, context=()):
        return reply_in_context(lambda h, q: generate(model, tok, q, settings, history=h), question, context,
                                course, refuse=not args.no_refuse)

    def answer(question: str):
        result, r, _ = reply(question, history[-1:])
        for notice in result.notices:
            print(notice, file=sys.stderr)
        print(f"助手: {r.text}" if args.show_label else r.text, flush=True)
        if r.known and r.part:
            print(" / ".join(note.format(part=r.part) for note in PART_NOTE), flush=True)
        if r.withheld:  # refused: which check, with its figures
            print(" / ".join(note.format(**why_values(r)) for note in WHY_NOTES[r.why]), flush=True)
        if r.known:  # the next question sees this exchange (if it fits); a refused one is left out
            history.append((question, result.answer))

    if args.prompts_file is not None:
        for n, line in enumerate(read_prompts(args.prompts_file), 1):
            question = line
            try:
                question, earlier = asked_in(line, n)
                _, r, _ = reply(question, earlier[-1:])
                line = {"prompt": question, "answer": r.text, "confidence": round(r.confidence, 4), "known": r.known,
                        "part": r.part,  # the clause answered when the whole question was not understood
                        "why": r.why}  # which check refused it (knowledge.judge), "" when answered
            except UserError as e:
                line = {"prompt": question, "error": str(e)}
            print(json.dumps(line, ensure_ascii=False), flush=True)
        return 0
    if args.prompt is not None:
        answer(args.prompt)
        return 0
    print("输入问题，回车发送；输入 exit 或按 Ctrl-D 退出 / type a question; exit or Ctrl-D quits")
    while True:
        try:
            question = input("用户: ")
        except EOFError:
            return 0
        if question.strip().lower() in ("exit", "quit", "退出"):
            return 0
        try:
            answer(question)
        except UserError as e:
            print(f"错误 / error: {e}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
