"""Tab 训练 Training: hyperparameters, start/pause/resume/stop, live curves, the fixed questions at each eval."""

import html
import shutil
import tempfile
import threading
from pathlib import Path

import gradio as gr
import pandas as pd
from plotly.subplots import make_subplots

from gpt_mini.config import ROOT
from gpt_mini.data import PROBE_QUESTIONS
from gpt_mini.errors import UserError
from gpt_mini.train import lr_at
from gpt_mini.visualize import model_size

from .style import (
    EVAL_COLOR,
    FONT,
    LR_COLOR,
    TITLE_AND_LEGEND,
    TRAIN_COLOR,
    UNSEEN_COLOR,
    big_numbers,
    error_line,
    fmt_seconds,
    intro,
)
from .training_run import HYPERPARAMETERS, check_extra_rows, make_config

STATE_NAMES = {"idle": "空闲 idle", "running": "训练中 running", "paused": "已暂停 paused",
               "finished": "已完成 finished", "stopped": "已停止 stopped", "failed": "失败 failed"}
CAUSAL_NOTE = ("**演示：去掉因果掩码。** 训练时每个位置都能“偷看”后面的答案词元，训练损失会很快掉到接近 0；"
               "但生成时后面还没有词元可看，回答会变成乱七八糟的重复——这就是为什么需要因果掩码。<br>"
               "<span class='en'>Without the mask every position can peek at the next token: the training loss "
               "collapses toward 0, but at generation time there is no future to peek at, so the answers fail. "
               "That is why the mask exists.</span>")
INT_FIELDS = {"n_layer", "n_head", "n_embd", "seq_len", "max_steps", "batch_size", "micro_batch", "eval_interval",
              "seed"}
FIELDS = [k for k in HYPERPARAMETERS if k not in ("causal", "precision")] + ["precision"]
UNSEEN_NAME = "新知识：小模型学不会 / unseen facts: a small model cannot learn them"
MAX_POINTS = 600
_chart_cache: dict = {}
_chart_lock = threading.Lock()


def run_metrics(runs_dir: Path) -> dict:
    """Earlier runs' curves to overlay: {label: metrics.csv path} (the default model's own curve first)."""
    found = {}
    if (ROOT / "checkpoints" / "metrics.csv").is_file():
        found["默认模型 default"] = ROOT / "checkpoints" / "metrics.csv"
    if runs_dir.is_dir():
        for p in sorted(runs_dir.glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime, reverse=True):
            found[p.parent.name] = p
    return found


def _thin(points):
    k = max(1, len(points) // MAX_POINTS)
    return points[::k] if k > 1 else points


def chart(run, runs_dir: Path, overlay=()):
    """Train loss (every step), eval loss (each eval), lr (second axis), plus dashed curves of earlier runs."""
    curves = run.curves()
    key = (curves["version"], curves["name"], tuple(overlay or ()))
    with _chart_lock:
        if key in _chart_cache:
            return _chart_cache[key]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    files = run_metrics(runs_dir)
    for i, label in enumerate(overlay or ()):
        if label not in files or label == curves["name"]:
            continue
        try:
            df = pd.read_csv(files[label])
        except Exception:  # noqa: BLE001 - a half-written or foreign file is skipped
            continue
        dash = ["dash", "dot", "dashdot", "longdash"][i % 4]
        fig.add_scatter(x=df["step"], y=df["train_loss"], name=f"{label} 训练", opacity=0.5,
                        line=dict(color=TRAIN_COLOR, dash=dash))
        fig.add_scatter(x=df["step"], y=df["eval_loss"], name=f"{label} 验证", opacity=0.5,
                        line=dict(color=EVAL_COLOR, dash=dash))
    losses = _thin(curves["losses"])
    if losses:
        fig.add_scatter(x=[s for s, _ in losses], y=[v for _, v in losses], name="训练损失 train loss",
                        line=dict(color=TRAIN_COLOR, width=2))
    if curves["evals"]:
        fig.add_scatter(x=[r["step"] for r in curves["evals"]], y=[r["eval_loss"] for r in curves["evals"]],
                        name="验证损失（学过的知识、新问法）/ eval loss (taught facts, new wordings)",
                        mode="lines+markers", line=dict(color=EVAL_COLOR, width=3))
        unseen = [r for r in curves["evals"] if r.get("unseen_loss") not in (None, "")]
        if unseen:
            fig.add_scatter(x=[r["step"] for r in unseen], y=[r["unseen_loss"] for r in unseen], name=UNSEEN_NAME,
                            mode="lines+markers", line=dict(color=UNSEEN_COLOR, width=2, dash="dot"))
    if losses and curves["cfg"]:
        t = curves["cfg"]["training"]
        steps = [s for s, _ in losses]
        fig.add_scatter(x=steps, y=[lr_at(s - 1, t["max_steps"], t["lr"], t["warmup_ratio"]) for s in steps],
                        name="学习率 lr", line=dict(color=LR_COLOR, dash="dot", width=1.5), secondary_y=True)
    fig.update_layout(height=440, template="plotly_white", font=dict(family=FONT, size=13), **TITLE_AND_LEGEND)
    fig.update_layout(title_text="损失曲线 / loss curves" if losses or overlay else
                      "点“开始”后曲线会出现在这里 / press start to see the curves", margin_r=70)
    fig.update_xaxes(title_text="步 / steps")
    fig.update_yaxes(title_text="损失（交叉熵）/ loss", secondary_y=False)
    fig.update_yaxes(title_text="学习率 / learning rate", secondary_y=True, showgrid=False, tickformat=".1e")
    with _chart_lock:
        if len(_chart_cache) > 16:
            _chart_cache.clear()
        _chart_cache[key] = fig
    return fig


def status_html(s: dict) -> str:
    loss = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    return big_numbers([(STATE_NAMES.get(s["state"], s["state"]), "状态 / state"),
                        (f"{s['step']}/{s['max_steps']}", "步数 / steps"),
                        (fmt_seconds(s["elapsed"]), "已用时间 / elapsed"), (fmt_seconds(s["eta"]), "预计剩余 / ETA"),
                        (f"{s['tokens_per_s']:.0f}", "每秒词元数 / tokens/s"),
                        (loss(s["train_loss"]), "训练损失 / train loss"),
                        (loss(s["eval_loss"]), "验证损失 / eval loss"),
                        (loss(s.get("unseen_loss")), "新知识损失 / unseen-facts loss")])


def probe_columns() -> list[str]:
    """Q1, Q2 as taught, then the same two questions the way a student types them (never in the training data)."""
    return [f"Q{i % 2 + 1}{'' if i < 2 else ' 新问法 reworded'}: {q}" for i, q in enumerate(PROBE_QUESTIONS)]


def answers_frame(run) -> pd.DataFrame:
    columns = probe_columns()
    rows = [{"步 step": step, **{c: a.get(q) or "（空 / empty）" for c, q in zip(columns, PROBE_QUESTIONS)}}
            for step, a in reversed(run.curves()["answers"])]
    return pd.DataFrame(rows, columns=["步 step"] + columns)


def params_html(tok, n_layer, n_head, n_embd, seq_len) -> str:
    try:
        size = model_size(int(n_layer), int(n_head), int(n_embd), int(seq_len), tok.get_vocab_size())
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    return (big_numbers([(f"{size['params']:,}", "参数量 / parameters")])
            + f"<div class='en'>{html.escape(size['formula'])}</div>")


def build(run, store, cfg, config_path, runs_dir: Path):
    m, t = cfg["model"], cfg["training"]
    defaults = {**m, **t}
    gr.HTML(intro("设置超参数并开始训练：曲线每秒更新，每次评估时模型回答两个固定问题和它们的新问法，看它从背答案到听懂问题。",
                  "Set the hyperparameters and start training: the curves update every second, and at each "
                  "evaluation the model answers the two fixed questions, as taught and reworded, so you can watch "
                  "it go from memorising to understanding."))
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            inputs = {}
            labels = {"n_layer": "层数 n_layer", "n_head": "注意力头数 n_head", "n_embd": "隐藏维度 n_embd",
                      "seq_len": "上下文长度 seq_len", "dropout": "丢弃率 dropout", "lr": "学习率 lr",
                      "warmup_ratio": "线性预热比例 warmup_ratio", "max_steps": "步数 max_steps",
                      "batch_size": "批大小 batch_size", "micro_batch": "微批 micro_batch（梯度累积）",
                      "weight_decay": "权重衰减 weight_decay", "grad_clip": "梯度裁剪 grad_clip",
                      "eval_interval": "评估间隔 eval_interval", "seed": "随机种子 seed"}
            name = gr.Textbox(label="运行名 / run name（字母数字_-，留空用时间）", max_length=40)
            params = gr.HTML(params_html(store.tokenizer(), m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"]))
            error = gr.HTML()
            with gr.Row():
                start = gr.Button("开始 / start", variant="primary", min_width=80)
                pause = gr.Button("暂停 / pause", min_width=80)
                resume = gr.Button("继续 / resume", min_width=80)
                stop = gr.Button("停止 / stop", variant="stop", min_width=80)
            reset = gr.Button("恢复默认 / reset", elem_id="train-reset")
            with gr.Accordion("模型 / model", open=True):
                with gr.Row():
                    for k in ("n_layer", "n_head", "n_embd", "seq_len", "dropout"):
                        inputs[k] = gr.Number(defaults[k], label=labels[k], precision=0 if k in INT_FIELDS else None,
                                              min_width=120, step=0.05 if k == "dropout" else 1)
                causal_demo = gr.Checkbox(False, label="演示：去掉因果掩码 / demo: remove the causal mask")
                causal_note = gr.Markdown(CAUSAL_NOTE, visible=False)
            with gr.Accordion("训练 / training", open=True):
                inputs["precision"] = gr.Radio(["auto", "fp32", "bf16"], value=defaults["precision"],
                                               label="精度 precision（auto：bf16 更快时才用 / bf16 only where faster）")
                with gr.Row():
                    for k in ("lr", "warmup_ratio", "max_steps", "batch_size", "micro_batch", "weight_decay",
                              "grad_clip", "eval_interval", "seed"):
                        inputs[k] = gr.Number(defaults[k], label=labels[k], precision=0 if k in INT_FIELDS else None,
                                              min_width=120, step=0.001 if k == "lr" else (0.01 if k in (
                                                  "warmup_ratio", "weight_decay") else 1))
        with gr.Column(scale=3):
            status = gr.HTML(status_html(run.status()), elem_id="train-status")
            message = gr.Markdown()
            plot = gr.Plot(chart(run, runs_dir), show_label=False)
            answers = gr.Dataframe(answers_frame(run), label="每次评估时的贪心回答：固定问题和它们的新问法 / greedy "
                                   "answers at each eval: the fixed questions, as taught and reworded",
                                   interactive=False, wrap=True, max_height=260)
            with gr.Row():
                overlay = gr.CheckboxGroup(list(run_metrics(runs_dir)), label="叠加以前的运行 / overlay earlier runs",
                                           scale=4)
                refresh = gr.Button("刷新 / refresh", scale=1, min_width=80)
            with gr.Row():
                download = gr.Button("下载指标 CSV / download metrics CSV", scale=1)
                csv_file = gr.File(label="metrics.csv", scale=2, interactive=False, visible=False)
            with gr.Accordion("加入你自己的问答 / add your own question–answer pairs", open=False):
                extra = gr.Dataframe(pd.DataFrame({"问题 prompt": [""] * 3, "回答 completion": [""] * 3}),
                                     interactive=True, row_count=3, column_count=2, wrap=True,
                                     label="和课程数据一起训练 / trained together with the course data")
    fields = [inputs[k] for k in FIELDS]
    tok = store.tokenizer()

    def check(*values):
        try:
            make_config(config_path, dict(zip(FIELDS, values)))
            return params_html(tok, *values[:4]), ""
        except UserError as e:
            return params_html(tok, *values[:4]), error_line(str(e))

    gr.on([f.change for f in fields], check, fields, [params, error], api_name="ui_check_hyperparameters",
          api_visibility="undocumented", trigger_mode="always_last", concurrency_limit=None, show_progress="hidden")
    causal_demo.change(lambda on: gr.Markdown(visible=bool(on)), causal_demo, causal_note,
                       api_name="ui_causal_note", api_visibility="private")

    def start_ui(*values):
        *hyper, demo, run_name, rows = values
        try:
            cfg_run = make_config(config_path, dict(zip(FIELDS, hyper), causal=not demo))
            extra_rows = check_extra_rows(rows.values.tolist() if isinstance(rows, pd.DataFrame) else rows)
        except UserError as e:
            return error_line(str(e)), gr.skip()
        s = run.start(cfg_run, run_name, extra_rows)
        return ("" if s["started"] else error_line(s["message"])), html.escape(s["message"])

    start.click(start_ui, fields + [causal_demo, name, extra], [error, message], api_name="ui_train_start",
                api_visibility="undocumented", concurrency_limit=1)
    for button, fn, api in ((pause, run.pause, "ui_train_pause"), (resume, run.resume, "ui_train_resume"),
                            (stop, run.stop, "ui_train_stop")):
        button.click(lambda fn=fn: status_html(fn()), None, status, api_name=api, api_visibility="undocumented",
                     concurrency_limit=None)
    reset.click(lambda: [defaults[k] for k in FIELDS] + [False, "", ""], None, fields + [causal_demo, name, error],
                api_name="ui_train_reset", api_visibility="private")

    def poll(seen: dict, chosen):
        s = run.status()
        changed = s["version"] != seen.get("version") or s["state"] != seen.get("state")
        refresh_runs = seen.get("state") in ("running", "paused") and s["state"] not in ("running", "paused")
        new_seen = {"version": s["version"], "state": s["state"]}
        return (status_html(s), html.escape(s["message"]), chart(run, runs_dir, chosen) if changed else gr.skip(),
                answers_frame(run) if changed else gr.skip(),
                gr.CheckboxGroup(choices=list(run_metrics(runs_dir))) if refresh_runs else gr.skip(), new_seen)

    seen = gr.State({})
    timer = gr.Timer(1.0, active=False)  # ticks only while this tab is shown (app.py): 40 idle tabs cost CPU
    timer.tick(poll, [seen, overlay], [status, message, plot, answers, overlay, seen], api_name="ui_train_poll",
               api_visibility="undocumented", concurrency_limit=None, show_progress="hidden")
    overlay.change(lambda chosen: chart(run, runs_dir, chosen), overlay, plot, api_name="ui_overlay",
                   api_visibility="undocumented", concurrency_limit=None)
    refresh.click(lambda: gr.CheckboxGroup(choices=list(run_metrics(runs_dir))), None, overlay,
                  api_name="ui_refresh_runs", api_visibility="undocumented")

    download_dir = Path(tempfile.mkdtemp(prefix="gpt_mini_metrics_"))

    def download_csv():
        s = run.status()
        files = run_metrics(runs_dir)
        src = files.get(s["name"]) or next((p for k, p in files.items() if k != "默认模型 default"), None)
        if src is None:
            return gr.File(visible=False), error_line("还没有训练过的运行 / no run has been saved yet")
        out = download_dir / f"{src.parent.name}_metrics.csv"  # one file per run name, overwritten: no growth
        shutil.copyfile(src, out)
        return gr.File(value=str(out), visible=True), ""

    download.click(download_csv, None, [csv_file, error], api_name="ui_download_metrics",
                   api_visibility="undocumented")

    # ---- the named API ----
    def train_start(n_layer: int | None = None, n_head: int | None = None, n_embd: int | None = None,
                    seq_len: int | None = None, dropout: float | None = None, causal: bool | None = None,
                    lr: float | None = None, warmup_ratio: float | None = None, max_steps: int | None = None,
                    batch_size: int | None = None, micro_batch: int | None = None, weight_decay: float | None = None,
                    grad_clip: float | None = None, eval_interval: int | None = None, seed: int | None = None,
                    precision: str | None = None, name: str = "", extra_rows: list | None = None) -> dict:
        """Start the shared training run; unset hyperparameters come from config.yaml. Returns the status."""
        given = locals()
        values = {k: given[k] for k in HYPERPARAMETERS}
        try:
            cfg_run = make_config(config_path, values)
            return run.start(cfg_run, name, check_extra_rows(extra_rows))
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def train_status() -> dict:
        """state (idle|running|paused|finished|stopped|failed), step, max_steps, losses, elapsed, message."""
        return run.status()

    def train_pause() -> dict:
        return run.pause()

    def train_resume() -> dict:
        return run.resume()

    def train_stop() -> dict:
        return run.stop()

    gr.api(train_start, api_name="train_start", concurrency_limit=1)
    for fn in (train_status, train_pause, train_resume, train_stop):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)
    return timer
