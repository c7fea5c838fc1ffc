"""Tab 训练 Training: presets, a time budget and sliders generated from hyperparameters.HYPERPARAMETERS, teacher-only
controls on a shared Space, live curves, the fixed questions at each eval, and taking a run home (command and zip)."""

import copy
import html
import inspect
import math
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import pandas as pd
from plotly.subplots import make_subplots

from gpt_mini import run_archive
from gpt_mini.checkpoint import read_checkpoint
from gpt_mini.config import ROOT
from gpt_mini.data import PROBE_QUESTIONS
from gpt_mini.errors import UserError
from gpt_mini.train import lr_at, promote
from gpt_mini.visualize import model_size

from .hyperparameters import (
    BY_NAME,
    HYPERPARAMETERS,
    PRESETS,
    SERIES,
    api_signature,
    cli_command,
    defaults,
    make_config,
    preset_values,
)
from .i18n import TEXT, t
from .limits import LIMITS, check_limits, duration_parts
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
)
from .training_run import MAX_KEPT_RUNS, check_extra_rows, prune_runs

STATE_NAMES = {"idle": "空闲 idle", "running": "训练中 running", "paused": "已暂停 paused",
               "finished": "已完成 finished", "stopped": "已停止 stopped", "failed": "失败 failed"}
NAMES = [h.name for h in HYPERPARAMETERS]
UNSEEN_NAME = "新知识：小模型学不会 / unseen facts: a small model cannot learn them"
MAX_POINTS = 600
_chart_cache: dict = {}
_chart_lock = threading.Lock()


def run_metrics(runs_dir: Path) -> dict:
    """Runs' curves to overlay or compare: {label: metrics.csv path} (the default model's own curve first)."""
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


def add_metrics_curves(fig, label: str, path: Path, dash: str, opacity: float = 0.5) -> bool:
    """A saved run's train and eval loss from its metrics.csv; False if the file cannot be read."""
    try:
        df = pd.read_csv(path)
    except Exception:  # noqa: BLE001 - a half-written or foreign file is skipped
        return False
    fig.add_scatter(x=df["step"], y=df["train_loss"], name=f"{label} 训练 train", opacity=opacity,
                    line=dict(color=TRAIN_COLOR, dash=dash))
    fig.add_scatter(x=df["step"], y=df["eval_loss"], name=f"{label} 验证 eval", opacity=opacity,
                    line=dict(color=EVAL_COLOR, dash=dash), mode="lines+markers")
    return True


def style_loss_figure(fig, title: str):
    fig.update_layout(height=440, template="plotly_white", font=dict(family=FONT, size=13), **TITLE_AND_LEGEND)
    fig.update_layout(title_text=title, margin_r=70)
    fig.update_xaxes(title_text="步 / steps")
    fig.update_yaxes(title_text="损失（交叉熵）/ loss", secondary_y=False)


def chart(run, runs_dir: Path, overlay=()):
    """Train loss (every step), eval loss (each eval), lr (second axis), plus dashed curves of earlier runs."""
    curves = run.curves()
    overlay = list(overlay or ()) + [n for n in curves["before"] if n not in (overlay or ())]  # a series' earlier runs
    key = (curves["version"], curves["name"], tuple(overlay))
    with _chart_lock:
        if key in _chart_cache:
            return _chart_cache[key]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    files = run_metrics(runs_dir)
    for i, label in enumerate(overlay or ()):
        if label in files and label != curves["name"]:
            add_metrics_curves(fig, label, files[label], ["dash", "dot", "dashdot", "longdash"][i % 4])
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
        tr = curves["cfg"]["training"]
        steps = [s for s, _ in losses]
        fig.add_scatter(x=steps, y=[lr_at(s - 1, tr["max_steps"], tr["lr"], tr["warmup_ratio"]) for s in steps],
                        name="学习率 lr", line=dict(color=LR_COLOR, dash="dot", width=1.5), secondary_y=True)
    style_loss_figure(fig, "损失曲线 / loss curves" if losses or overlay else
                      "点“开始”后曲线会出现在这里 / press start to see the curves")
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


class RunPlanner:
    """From form or API values to a checked config: preset, then the given values, then the time budget (which
    sets max_steps, so the cosine schedule ends exactly where the budget does), then the Space's limits."""

    def __init__(self, config_path, base_cfg: dict, pace):
        """base_cfg: config_path's config as loaded (the presets' starting point and the CLI command's base)."""
        self.config_path, self.base_cfg, self.pace = config_path, base_cfg, pace

    def plan(self, values: dict, minutes: float | None = 0, preset: str = "") -> tuple[dict, float]:
        merged = preset_values(self.base_cfg, preset) if preset else {}
        merged.update({k: v for k, v in values.items() if v is not None})
        preset_minutes = merged.pop("minutes", 0)
        minutes = minutes or preset_minutes  # a budget given with the request wins over the preset's
        cfg = make_config(self.config_path, merged)
        if minutes:
            if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and 0 < minutes <= 60):
                raise UserError("训练分钟数应在 0 到 60 之间", "minutes must be between 0 and 60")
            steps = min(LIMITS.max_steps, self.pace.steps_for(cfg, minutes * 60))
            cfg = make_config(self.config_path, dict(merged, max_steps=steps))
        return cfg, check_limits(cfg, self.pace)

    def plan_runs(self, values: dict, minutes: float | None = 0, preset: str = "",
                  series: str | None = None) -> list[tuple[dict, float, str, str]]:
        """The runs one start makes, [(config, seconds, value, label)]: one run, or for a series preset
        (hyperparameters.SERIES; `series`, default `preset`) one run per value with the same seed and steps. A time
        budget is shared by the runs, and together they must fit the time limit."""
        key = preset if series is None else series
        if key not in SERIES:
            cfg, seconds = self.plan(values, minutes, preset)
            return [(cfg, seconds, "", "")]
        name, options = SERIES[key]
        first, _ = self.plan(dict(values, **{name: options[0][0]}), (minutes or 0) / len(options), preset)
        runs = []
        for value, label in options:
            cfg = copy.deepcopy(first)
            cfg[BY_NAME[name].section][name] = value
            runs.append((cfg, check_limits(cfg, self.pace), value, label))
        total = sum(seconds for _, seconds, _, _ in runs)
        if total > LIMITS.max_seconds:
            zh, en = duration_parts(total)
            raise UserError(f"这 {len(runs)} 次训练一共预计要 {zh}，超过上限 {LIMITS.max_seconds / 60:.0f} 分钟，"
                            "请减少步数或缩小模型", f"these {len(runs)} runs take about {en} together, over the "
                            f"{LIMITS.max_seconds / 60:.0f}-minute limit; use fewer steps or a smaller model")
        return runs

    def describe(self, values: dict, minutes: float, preset: str = "") -> str:
        """Parameter count, formula and the estimated time (of every run of a series preset), or one line saying
        what to change."""
        try:
            runs = self.plan_runs(values, minutes, "", preset)
        except UserError as e:
            return error_line(str(e))
        cfg = runs[0][0]
        m = cfg["model"]
        size = model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"])
        zh, en = duration_parts(sum(seconds for _, seconds, _, _ in runs))
        steps = f"{cfg['training']['max_steps']:,}"
        return (big_numbers([(f"{size['params']:,}", "参数量 / parameters"),
                             (f"{len(runs)} × {steps}", "训练次数 × 步数 / runs × steps") if len(runs) > 1 else
                             (steps, "步数 / steps"),
                             (f"预计 {zh}", f"预计用时 / about {en}")])
                + f"<div class='en'>{html.escape(size['formula'])}</div>")


def series_names(key: str, name: str, values: list[str]) -> list[str]:
    """Folder names a student recognises: adamw_vs_muon_adamw_143012, adamw_vs_muon_muon_143012 (or NAME_adamw,
    NAME_muon when the run has a name)."""
    base, stamp = run_archive.safe_name(name, "")[:30], time.strftime("%H%M%S")
    return [f"{base}_{v}" if base else f"{key}_{v}_{stamp}" for v in values]


def hyperparameter_form(values: dict) -> dict:
    """One control per hyperparameter, from the schema: sliders for numbers (the learning rate on a log10 slider
    plus its exact value), a checkbox for the mask, a radio for the precision. Returns {name: component}; the
    log slider is returned as '_lr_log'."""
    inputs = {}
    for section, title in (("model", "train.section_model"), ("training", "train.section_training")):
        with gr.Accordion(t(title), open=True):
            for h in (h for h in HYPERPARAMETERS if h.section == section):
                label, info = t(f"hp.{h.name}"), t(f"hp.{h.name}.help")
                if h.choices:
                    inputs[h.name] = gr.Radio(list(h.choices), value=values[h.name], label=label, info=info)
                elif h.kind is bool:
                    inputs[h.name] = gr.Checkbox(values[h.name], label=label, info=info)
                elif h.log:
                    with gr.Group():
                        inputs["_lr_log"] = gr.Slider(math.log10(h.minimum), math.log10(h.maximum), step=h.step,
                                                      value=round(math.log10(values[h.name]), 2),
                                                      label=t("train.lr_log"), info=info, elem_id="hp-lr-log")
                        inputs[h.name] = gr.Number(values[h.name], label=label, minimum=h.minimum,
                                                   maximum=h.maximum, elem_id="hp-lr")
                else:
                    inputs[h.name] = gr.Slider(h.minimum, h.maximum, step=h.step, value=values[h.name], label=label,
                                               info=info, elem_id=f"hp-{h.name}")
    return inputs


def build(run, store, cfg, config_path, runs_dir: Path, pace, gate, promote_dir: Path):
    base = defaults(cfg)
    planner = RunPlanner(config_path, cfg, pace)

    def run_names() -> list[str]:
        return [d.name for d in store.run_dirs()]

    gr.Markdown(t("train.intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            with gr.Accordion(t("train.teacher"), open=True, visible=gate.enabled):
                gr.Markdown(t("train.teacher_note"))
                password = gr.Textbox(label=t("train.password"), type="password", max_length=200,
                                      elem_id="teacher-password")
            preset = gr.Radio([(f"{zh} / {en}", key) for key, (zh, en, _) in PRESETS.items()], value="lesson",
                              label=t("train.preset"), elem_id="train-preset")
            preset_notes = {key: gr.Markdown(t(f"train.preset_note.{key}"), visible=False,
                                             elem_id=f"preset-note-{key}")
                            for key in PRESETS if f"train.preset_note.{key}" in TEXT}
            minutes = gr.Slider(0, LIMITS.max_seconds / 60, step=0.5, value=0, label=t("train.minutes"),
                                info=t("train.minutes_info"), elem_id="train-minutes")
            estimate = gr.HTML(planner.describe(base, 0), elem_id="train-estimate")
            name = gr.Textbox(label=t("train.name"), max_length=40)
            error = gr.HTML()
            with gr.Row():
                start = gr.Button(t("train.start"), variant="primary", min_width=80, elem_id="train-start")
                pause = gr.Button(t("train.pause"), min_width=80, elem_id="train-pause")
                resume = gr.Button(t("train.resume"), min_width=80, elem_id="train-resume")
                stop = gr.Button(t("train.stop"), variant="stop", min_width=80, elem_id="train-stop")
            with gr.Row():
                reset_form = gr.Button(t("train.reset_form"), elem_id="train-reset", min_width=80)
                clear = gr.Button(t("train.clear"), elem_id="train-clear", min_width=80)
                make_default = gr.Button(t("train.promote"), elem_id="train-promote", min_width=80)
            inputs = hyperparameter_form(base)
            causal_note = gr.Markdown(t("train.causal_note"), visible=not base["causal"], elem_id="causal-note")
        with gr.Column(scale=3):
            status = gr.HTML(status_html(run.status()), elem_id="train-status")
            message = gr.Markdown(elem_id="train-message")
            plot = gr.Plot(chart(run, runs_dir), show_label=False)
            answers = gr.Dataframe(answers_frame(run), label=t("train.answers"), interactive=False, wrap=True,
                                   max_height=260)
            with gr.Row():
                overlay = gr.CheckboxGroup(list(run_metrics(runs_dir)), label=t("train.overlay"), scale=4)
                refresh = gr.Button(t("train.refresh"), scale=1, min_width=80)
            with gr.Accordion(t("train.home"), open=False):
                home_run = gr.Dropdown(run_names(), label=t("train.home_run"),
                                       elem_id="home-run", allow_custom_value=True)  # run_dir_of() checks it
                command = gr.Code(label=t("train.command"), language="shell", interactive=False,
                                  elem_id="home-command")
                with gr.Row():
                    pack = gr.Button(t("train.zip"), elem_id="home-zip")
                    zip_file = gr.File(label="zip", interactive=False, elem_id="home-zip-file")
                upload = gr.File(label=t("train.upload"), file_types=[".zip"], type="filepath",
                                 elem_id="home-upload")
                home_message = gr.HTML()
            with gr.Accordion(t("train.extra"), open=False):
                extra = gr.Dataframe(pd.DataFrame({"问题 prompt": [""] * 3, "回答 completion": [""] * 3}),
                                     interactive=True, row_count=3, column_count=2, wrap=True,
                                     label=t("train.extra_label"))
    fields = [inputs[k] for k in NAMES]
    lr_log = inputs["_lr_log"]

    def form_values(values) -> dict:
        return dict(zip(NAMES, values))

    def describe(budget, preset_key, *values):
        return planner.describe(form_values(values), budget, preset_key)

    gr.on([f.change for f in fields] + [minutes.change, preset.change], describe, [minutes, preset] + fields, estimate,
          api_name="ui_estimate", api_visibility="undocumented", trigger_mode="always_last",
          concurrency_limit=None, show_progress="hidden")
    lr_log.input(lambda x: float(f"{10 ** x:.3g}"), lr_log, inputs["lr"], api_name="ui_lr_from_log",
                 api_visibility="private", show_progress="hidden")
    inputs["lr"].input(lambda v: round(math.log10(v), 2) if v and v > 0 else gr.skip(), inputs["lr"], lr_log,
                       api_name="ui_lr_to_log", api_visibility="private", show_progress="hidden")

    inputs["causal"].change(lambda on: gr.Markdown(visible=not on), inputs["causal"], causal_note,
                            api_name="ui_causal_note", api_visibility="private", show_progress="hidden")

    notes = list(preset_notes.values())

    def apply_preset(key):
        values = preset_values(cfg, key)
        return ([values[k] for k in NAMES] + [round(math.log10(values["lr"]), 2), values["minutes"], ""]
                + [gr.Markdown(visible=k == key) for k in preset_notes])

    preset.input(apply_preset, preset, fields + [lr_log, minutes, error] + notes, api_name="ui_apply_preset",
                 api_visibility="private")
    reset_form.click(lambda: apply_preset("lesson") + ["lesson"], None,
                     fields + [lr_log, minutes, error] + notes + [preset], api_name="ui_train_reset",
                     api_visibility="private")

    def guarded(fn, *args):
        """Run a control action for the teacher; a refusal is one line, and nothing changes."""
        *rest, secret = args
        gate.check(secret)
        return fn(*rest)

    def start_run(values: dict, budget, preset_key, run_name, rows, series=None):
        """One run, or each run of a series preset one after the other (same seed and steps)."""
        runs = planner.plan_runs(values, budget, preset_key, series)
        rows = check_extra_rows(rows)
        if len(runs) == 1:
            return run.start(runs[0][0], run_name, rows)
        names = series_names(series or preset_key, run_name, [value for _, _, value, _ in runs])
        queued = [(cfg_run, name, label) for (cfg_run, _, _, label), name in zip(runs, names)]
        return run.start(queued[0][0], names[0], rows, then=queued[1:], label=queued[0][2])

    def start_ui(secret, budget, preset_key, *values):
        *hyper, run_name, rows = values
        rows = rows.values.tolist() if isinstance(rows, pd.DataFrame) else rows
        try:  # the form holds the preset's values; a series preset also decides how many runs start
            s = guarded(start_run, form_values(hyper), budget, "", run_name, rows, preset_key, secret)
        except UserError as e:
            return error_line(str(e)), gr.skip()
        return ("" if s["started"] else error_line(s["message"])), html.escape(s["message"])

    start.click(start_ui, [password, minutes, preset] + fields + [name, extra], [error, message],
                api_name="ui_train_start", api_visibility="undocumented", concurrency_limit=1)

    def control_ui(fn):
        def handler(secret):
            try:
                return status_html(guarded(fn, secret)), ""
            except UserError as e:
                return gr.skip(), error_line(str(e))
        return handler

    for button, fn, api in ((pause, run.pause, "ui_train_pause"), (resume, run.resume, "ui_train_resume"),
                            (stop, run.stop, "ui_train_stop"), (clear, run.reset, "ui_train_clear")):
        button.click(control_ui(fn), password, [status, error], api_name=api, api_visibility="undocumented",
                     concurrency_limit=None)

    def promote_run():
        s = run.status()
        if s["state"] not in ("finished", "stopped") or not s["name"]:
            raise UserError("先完成一次训练，才能设为默认模型", "finish a run before making it the default model")
        ok, report = promote(runs_dir / s["name"], target=promote_dir)
        if not ok:
            raise UserError(f"{s['name']} 还没达标，没有设为默认模型：{report}",
                            f"{s['name']} is below the bar and was not made the default: {report}")
        return {"promoted": s["name"], **report}

    def promote_ui(secret):
        try:
            done = guarded(promote_run, secret)
        except UserError as e:
            return error_line(str(e))
        return html.escape(f"已设为默认模型 / now the default model: {done['promoted']}")

    make_default.click(promote_ui, password, error, api_name="ui_train_promote", api_visibility="undocumented",
                       concurrency_limit=1)

    # ---- watching ----
    def poll(seen: dict, chosen):
        s = run.status()
        changed = s["version"] != seen.get("version") or s["state"] != seen.get("state")
        refresh_runs = seen.get("state") in ("running", "paused") and s["state"] not in ("running", "paused")
        new_seen = {"version": s["version"], "state": s["state"]}
        return (status_html(s), html.escape(s["message"]), chart(run, runs_dir, chosen) if changed else gr.skip(),
                answers_frame(run) if changed else gr.skip(),
                gr.CheckboxGroup(choices=list(run_metrics(runs_dir))) if refresh_runs else gr.skip(),
                gr.Dropdown(choices=run_names()) if refresh_runs else gr.skip(), new_seen)

    seen = gr.State({})
    timer = gr.Timer(1.0, active=False)  # ticks only while this tab is shown (app.py): 40 idle tabs cost CPU
    timer.tick(poll, [seen, overlay], [status, message, plot, answers, overlay, home_run, seen],
               api_name="ui_train_poll", api_visibility="undocumented", concurrency_limit=None,
               show_progress="hidden")
    overlay.change(lambda chosen: chart(run, runs_dir, chosen), overlay, plot, api_name="ui_overlay",
                   api_visibility="undocumented", concurrency_limit=None)

    def refresh_lists():
        return gr.CheckboxGroup(choices=list(run_metrics(runs_dir))), gr.Dropdown(choices=run_names())

    refresh.click(refresh_lists, None, [overlay, home_run], api_name="ui_refresh_runs", api_visibility="undocumented")

    # ---- take it home ----
    download_dir = Path(tempfile.mkdtemp(prefix="gpt_mini_zips_"))

    def run_dir_of(run_name: str) -> Path:
        if run_name not in run_names():  # only listed runs, never a free path
            raise UserError("请从列表中选择一次训练", "pick a run from the list")
        return runs_dir / run_name

    def run_command(run_name: str) -> str:
        """The terminal command that trains this run again (what differs from config.yaml)."""
        d = run_dir_of(run_name)
        ckpt = read_checkpoint(d / "last.pt" if (d / "last.pt").is_file() else d / "quantized.pt")
        return cli_command(ckpt["config"], cfg, f"checkpoints/runs/{run_name}")

    def command_ui(run_name):
        try:
            return run_command(run_name), ""
        except UserError as e:
            return "", error_line(str(e))

    home_run.change(command_ui, home_run, [command, home_message], api_name="ui_run_command",
                    api_visibility="undocumented")

    def pack_ui(run_name):
        try:
            return str(run_archive.export_zip(run_dir_of(run_name), download_dir)), ""
        except UserError as e:
            return gr.skip(), error_line(str(e))

    pack.click(pack_ui, home_run, [zip_file, home_message], api_name="ui_run_zip", api_visibility="undocumented")

    def add_uploaded_run(path) -> str:
        """An uploaded zip becomes a run (it writes to the shared disk: the teacher's, on a Space); the oldest
        runs beyond MAX_KEPT_RUNS are removed, as when a run starts."""
        with run.lock:  # not while a starting run picks its folder
            prune_runs(runs_dir, MAX_KEPT_RUNS - 1)
            return run_archive.import_zip(path, runs_dir, store.tokenizer())

    def upload_ui(path, secret):
        if not path:
            return gr.skip(), ""
        try:
            added = guarded(add_uploaded_run, path, secret)
        except UserError as e:
            return gr.skip(), error_line(str(e))
        return gr.Dropdown(choices=run_names(), value=added), html.escape(
            f"已加入：{added} / added: {added}")

    upload.upload(upload_ui, [upload, password], [home_run, home_message], api_name="ui_run_upload",
                  api_visibility="undocumented", concurrency_limit=1)

    # ---- the named API ----
    def train_start(*args) -> dict:
        """Start the shared training run. Unset hyperparameters come from the preset, else config.yaml; minutes > 0
        sizes max_steps to that time budget. Refused beyond the Space's limits, and without the teacher password
        when the server has one."""
        given = dict(zip(start_signature.parameters, args))
        values = {k: given[k] for k in NAMES}
        try:
            return guarded(start_run, values, given["minutes"], given["preset"], given["name"],
                           given["extra_rows"], given["teacher_password"])
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    extra_params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=a)
                    for n, d, a in (("preset", "", str), ("minutes", 0.0, float), ("name", "", str),
                                    ("extra_rows", None, list | None), ("teacher_password", "", str))]
    start_signature, train_start.__annotations__ = api_signature(extra_params)
    train_start.__signature__ = start_signature

    def train_estimate(preset: str = "", minutes: float = 0.0) -> dict:
        """What a preset (and time budget) would run: its config's hyperparameters, the estimated seconds, and
        how many runs it starts (a series preset such as adamw_vs_muon: one per optimizer, seconds of all)."""
        try:
            runs = planner.plan_runs({}, minutes, preset)
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None
        cfg_run = runs[0][0]
        return {"hyperparameters": {h.name: cfg_run[h.section][h.name] for h in HYPERPARAMETERS},
                "estimated_seconds": round(sum(seconds for _, seconds, _, _ in runs), 1), "runs": len(runs)}

    def train_status() -> dict:
        """state (idle|running|paused|finished|stopped|failed), step, max_steps, losses, elapsed, message; series:
        {index, total, label, runs} while a series preset's runs go one after the other ("第 1/2 次：AdamW")."""
        return run.status()

    def controlled(fn, api_name):
        def endpoint(teacher_password: str = "") -> dict:
            try:
                return guarded(fn, teacher_password)
            except UserError as e:
                raise gr.Error(str(e), print_exception=False) from None
        endpoint.__name__ = api_name
        return endpoint

    gr.api(train_start, api_name="train_start", concurrency_limit=1)
    gr.api(train_estimate, api_name="train_estimate", concurrency_limit=None)
    gr.api(train_status, api_name="train_status", concurrency_limit=None)
    for fn, api in ((run.pause, "train_pause"), (run.resume, "train_resume"), (run.stop, "train_stop"),
                    (run.reset, "train_reset"), (promote_run, "train_promote")):
        gr.api(controlled(fn, api), api_name=api, concurrency_limit=1 if api == "train_promote" else None)

    gr.api(run_command, api_name="run_command", concurrency_limit=None)
    return timer
