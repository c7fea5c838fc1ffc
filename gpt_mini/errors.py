"""One kind of error for everything a user can get wrong, printed as one line in Chinese and English."""

import argparse
import sys


class UserError(Exception):
    """A mistake in user input: the message says what to change, in Chinese then English."""

    def __init__(self, zh: str, en: str):
        self.zh, self.en = zh, en
        super().__init__(f"{zh} / {en}")


def run_cli(main, argv=None) -> int:
    """Run a CLI main(argv); user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        return main(argv) or 0
    except UserError as e:
        print(f"错误 / error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("已中断 / interrupted", file=sys.stderr)
        return 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one bilingual line instead of a usage block."""

    def error(self, message):
        raise UserError(f"命令行参数有误：{message}（用 --help 查看用法）",
                        f"bad command-line argument: {message} (see --help)")
