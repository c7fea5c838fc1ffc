"""python -m gpt_mini.infer: ask the trained model a question (or chat interactively without --prompt)."""

import sys

from .checkpoint import load_model
from .config import ROOT, add_config_args, load_config, resolve
from .errors import ArgumentParser, UserError, run_cli
from .generate import Settings, generate
from . import tokenizer as T


def build_parser():
    p = ArgumentParser(description="用训练好的模型回答问题 / answer questions with a trained model")
    p.add_argument("--prompt", default=None, help="问题；省略则进入交互模式 / question; omit for interactive mode")
    p.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "last.pt"), help="检查点（last.pt 或 quantized.pt）")
    add_config_args(p)
    p.add_argument("--temperature", type=float, default=0.0, help="温度，0 = 贪心解码 / 0 = greedy")
    p.add_argument("--top_k", type=int, default=0)
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--repetition_penalty", type=float, default=1.0)
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--stop_strings", nargs="+", default=[], help="停止词，可多个 / stop strings")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--show_label", action="store_true", help="输出前加“助手: ” / prefix the answer with '助手: '")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    settings = Settings(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.max_new_tokens,
                        args.stop_strings, args.seed).check()
    tok = None
    if args.config or args.overrides:  # an explicit config names the tokenizer; otherwise the checkpoint's does
        tok = T.load_tokenizer(resolve(load_config(args.config, args.overrides)["tokenizer"]["path"]))
    model, tok, _ = load_model(resolve(args.ckpt), tok)

    def answer(question: str):
        result = generate(model, tok, question, settings)
        for notice in result.notices:
            print(notice, file=sys.stderr)
        print(f"助手: {result.answer}" if args.show_label else result.answer, flush=True)

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
