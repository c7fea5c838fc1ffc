"""python dashboard.py: the GPT_teacher classroom dashboard (Gradio).

Flags: --host (or GRADIO_SERVER_NAME, default 127.0.0.1), --port (or GRADIO_SERVER_PORT, default 7860),
--share (a public gradio.live link; off unless asked), --config (default config.yaml),
--teacher-password (or TEACHER_PASSWORD: only the teacher starts, stops and promotes runs; a shared Space)."""

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="GPT_teacher 课堂面板 / classroom dashboard")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="监听地址 / host (0.0.0.0 = 局域网可访问 reachable on the LAN)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), help="端口 / port")
    p.add_argument("--share", action="store_true", help="生成公开链接 / create a public share link")
    p.add_argument("--config", default=None, help="配置文件 / config file (default: config.yaml)")
    p.add_argument("--teacher-password", default=None,
                   help="教师密码（也可用环境变量 TEACHER_PASSWORD）/ teacher password (or TEACHER_PASSWORD)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from gpt_mini.errors import UserError
    from ui.app import build_app, launch_kwargs

    try:
        app = build_app(args.config, teacher_password=args.teacher_password)
    except UserError as e:
        print(f"错误 / error: {e}", file=sys.stderr)
        return 2
    try:
        app.blocks.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())
    finally:
        app.run.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
