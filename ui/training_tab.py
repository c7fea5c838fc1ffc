"""Tab 训练 Training: presets, a time budget and sliders generated from hyperparameters.HYPERPARAMETERS, teacher-only
controls on a shared Space, live curves, the fixed questions at each eval, and taking a run home (command and zip).

build() = layout() (the components) + TrainingActions (what the controls and the API do) + one wiring function per
part of the tab: the form, the controls, watching the run, taking it home, and the named API."""

import html
import inspect
import math
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from gpt_mini import run_archive, runs
from gpt_mini.checkpoint import read_checkpoint
from gpt_mini.data import FIXED_QUESTIONS, PROBE_QUESTIONS, REWORDED_PROBES
from gpt_mini.errors import UserError
from gpt_mini.promote import promote

from .charts import chart, run_metrics
from .endpoints import one_line
from .hyperparameters import HYPERPARAMETERS, PRESETS, api_signature, cli_command, defaults, preset_values
from .i18n import TEXT, lang_of, say, t
from .limits import LIMITS
from .planner import RunPlanner, about, about_html, run_names
from .style import big_numbers, error_line, fmt_seconds
from .tabs import TabParts, View
from .training_run import MAX_KEPT_RUNS, check_extra_rows, prune_runs

NAMES = [h.name for h in HYPERPARAMETERS]
CHART_HEIGHT = 360  # beside the answers, on one projector screen with the buttons


def status_html(s: dict, lang: str = "zh") -> str:
    """The run's large numbers, in the page's language."""
    loss = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    state = say(f"train.state.{s['state']}", lang) if f"train.state.{s['state']}" in TEXT else s["state"]
    return big_numbers([(state, say("train.tile.state", lang)),
                        (f"{s['step']}/{s['max_steps']}", say("train.tile.steps", lang)),
                        (fmt_seconds(s["elapsed"]), say("train.tile.elapsed", lang)),
                        (fmt_seconds(s["eta"]), say("train.tile.eta", lang)),
                        (f"{s['tokens_per_s']:.0f}", say("train.tile.tokens_per_s", lang)),
                        (loss(s["train_loss"]), say("train.tile.train_loss", lang)),
                        (loss(s["eval_loss"]), say("train.tile.eval_loss", lang)),
                        (loss(s.get("unseen_loss")), say("train.tile.unseen_loss", lang))])


def probe_columns() -> list[str]:
    """Q1, Q2 as taught, then the same two questions the way a student types them (never in the training data)."""
    return [f"Q{i % 2 + 1}{'' if i < 2 else ' 新问法 reworded'}: {q}" for i, q in enumerate(PROBE_QUESTIONS)]


def expected_answer(question: str) -> str:
    """The course answer to a probe question (a rewording expects its fixed question's answer)."""
    return FIXED_QUESTIONS[REWORDED_PROBES.get(question, question)]


def latest_answers_html(evals: list, lang: str = "zh") -> str:
    """The last evaluation's four answers, wrapped one under another: Q1, Q2, then their rewordings, each marked ✓
    when it is the course answer word for word. evals: the run's curves()["answers"]."""
    if not evals:
        return f"<div class='latest'><p class='en'>{html.escape(say('train.latest_empty', lang))}</p></div>"
    step, answers = evals[-1]
    items = []
    for i, q in enumerate(PROBE_QUESTIONS):
        a = (answers.get(q) or "").strip()
        right = a == expected_answer(q)
        tag = f"Q{i % 2 + 1}" + ("" if i < 2 else " · " + say("train.reworded", lang))
        probe = f"q{i % 2 + 1}" + ("" if i < 2 else "r")
        items.append(f"<div class='qa {'right' if right else ''}' data-probe='{probe}'><div class='q'>"
                     f"{'✓' if right else '·'} {tag}：{html.escape(q)}</div>"
                     f"<div class='a'>{html.escape(a) or '—'}</div></div>")
    return (f"<div class='latest'><b>{html.escape(say('train.latest', lang, step=step))}</b>"
            + "".join(items) + "</div>")


def answers_frame(evals: list) -> pd.DataFrame:
    """Every evaluation's answers, newest first. evals: the run's curves()["answers"]."""
    columns = probe_columns()
    rows = [{"步 step": step, **{c: a.get(q) or "（空 / empty）" for c, q in zip(columns, PROBE_QUESTIONS)}}
            for step, a in reversed(evals)]
    return pd.DataFrame(rows, columns=["步 step"] + columns)


def hyperparameter_form(values: dict, interactive: bool = True) -> dict:
    """One control per hyperparameter, from the schema: sliders for numbers (the learning rate on a log10 slider
    plus its exact value), a checkbox for the mask, a radio for the precision. Returns {name: component}; the
    log slider is returned as '_lr_log'."""
    inputs, on = {}, dict(interactive=interactive)
    for section, title in (("model", "train.section_model"), ("training", "train.section_training")):
        gr.Markdown("#### " + t(title))
        for h in (h for h in HYPERPARAMETERS if h.section == section):
            label, info = t(f"hp.{h.name}"), t(f"hp.{h.name}.help")
            if h.choices:
                inputs[h.name] = gr.Radio(list(h.choices), value=values[h.name], label=label, info=info, **on)
            elif h.kind is bool:
                inputs[h.name] = gr.Checkbox(values[h.name], label=label, info=info, **on)
            elif h.log:
                with gr.Group():
                    inputs["_lr_log"] = gr.Slider(math.log10(h.minimum), math.log10(h.maximum), step=h.step,
                                                  value=round(math.log10(values[h.name]), 2),
                                                  label=t("train.lr_log"), info=info, elem_id="hp-lr-log", **on)
                    inputs[h.name] = gr.Number(values[h.name], label=label, minimum=h.minimum,
                                               maximum=h.maximum, elem_id="hp-lr", **on)
            else:
                inputs[h.name] = gr.Slider(h.minimum, h.maximum, step=h.step, value=values[h.name], label=label,
                                           info=info, elem_id=f"hp-{h.name}", **on)
    return inputs


class TrainingActions:
    """What the tab's controls and named API do to the shared run and the runs folder, without components. Every
    action that changes shared state goes through guarded() (the teacher password when the server has one)."""

    def __init__(self, run, store, cfg, planner: RunPlanner, gate, runs_dir: Path, promote_dir: Path):
        self.run, self.store, self.cfg, self.planner, self.gate = run, store, cfg, planner, gate
        self.runs_dir, self.promote_dir = runs_dir, promote_dir
        self.download_dir = Path(tempfile.mkdtemp(prefix="gpt_mini_zips_"))

    def run_names(self) -> list[str]:
        return [d.name for d in self.store.run_dirs()]

    def guarded(self, fn, *args):
        """Run a control action for the teacher; a refusal is one line, and nothing changes."""
        *rest, secret = args
        self.gate.check(secret)
        return fn(*rest)

    def start_run(self, values: dict, budget, preset_key, run_name, rows, series=None):
        """One run, or each run of a series preset one after the other (same seed and steps)."""
        planned = self.planner.plan_runs(values, budget, preset_key, series)
        rows = check_extra_rows(rows)
        kind = series or preset_key
        names = run_names(kind, run_name, [value for _, _, value, _ in planned])
        queued = [(cfg_run, name, label) for (cfg_run, _, _, label), name in zip(planned, names)]
        return self.run.start(queued[0][0], names[0], rows, then=queued[1:], label=queued[0][2],
                              about=about(planned, kind))

    def form_of_run(self) -> dict:
        """The running (or last) run's hyperparameters, as the form shows them; {} before any run."""
        cfg = self.run.cfg
        return {h.name: cfg[h.section][h.name] for h in HYPERPARAMETERS} if cfg else {}

    def promote_run(self):
        s = self.run.status()
        if s["state"] not in ("finished", "stopped") or not s["name"]:
            raise UserError("先完成一次训练，才能设为默认模型", "finish a run before making it the default model")
        ok, report = promote(self.runs_dir / s["name"], target=self.promote_dir)
        if not ok:
            raise UserError(f"{s['name']} 还没达标，没有设为默认模型：{report}",
                            f"{s['name']} is below the bar and was not made the default: {report}")
        return {"promoted": s["name"], **report}

    def run_dir_of(self, run_name: str) -> Path:
        if run_name not in self.run_names():  # only listed runs, never a free path
            raise UserError("请从列表中选择一次训练", "pick a run from the list")
        return self.runs_dir / run_name

    def run_command(self, run_name: str) -> str:
        """The terminal command that trains this run again (what differs from config.yaml)."""
        d = self.run_dir_of(run_name)
        ckpt = read_checkpoint(runs.model_file(d))
        return cli_command(ckpt["config"], self.cfg, f"checkpoints/runs/{run_name}")

    def export_zip(self, run_name: str) -> str:
        return str(run_archive.export_zip(self.run_dir_of(run_name), self.download_dir))

    def add_uploaded_run(self, path) -> str:
        """An uploaded zip becomes a run (it writes to the shared disk: the teacher's, on a Space); the oldest
        runs beyond MAX_KEPT_RUNS are removed, as when a run starts."""
        with self.run.lock:  # not while a starting run picks its folder
            prune_runs(self.runs_dir, MAX_KEPT_RUNS - 1)
            return run_archive.import_zip(path, self.runs_dir, self.store.tokenizer())

    def chart(self, overlay=(), lang: str = "zh"):
        return chart(self.run, self.runs_dir, overlay, lang=lang, height=CHART_HEIGHT)

    def overlay_choices(self) -> list[str]:
        return list(run_metrics(self.runs_dir))


def layout(actions: TrainingActions, base: dict) -> View:
    """The tab's components. Left: teacher login, presets, time budget, estimate, and the hyperparameters folded
    into one panel. Right, one projector screen (1280×800) without scrolling: the buttons, the big numbers, the
    loss chart and beside it the latest answers; the history of answers, saved runs and taking a run home below.
    In teacher mode every control starts read-only and opens when the teacher's password is typed."""
    v = View()
    locked, evals = actions.gate.enabled, actions.run.curves()["answers"]
    on = dict(interactive=not locked)
    gr.Markdown(t("train.intro"), elem_classes="tab-intro")
    with gr.Row():
        with gr.Column(scale=1, min_width=300, elem_id="train-form"):
            with gr.Accordion(t("train.teacher"), open=True, visible=locked):
                v.lock_line = gr.Markdown(t("train.locked"), elem_id="train-locked")
                v.password = gr.Textbox(label=t("train.password"), type="password", max_length=200,
                                        elem_id="teacher-password")
            v.preset = gr.Radio([(f"{zh} / {en}", key) for key, (zh, en, _) in PRESETS.items()], value="lesson",
                                label=t("train.preset"), elem_id="train-preset", **on)
            v.preset_notes = {key: gr.Markdown(t(f"train.preset_note.{key}"), visible=False,
                                               elem_id=f"preset-note-{key}")
                              for key in PRESETS if f"train.preset_note.{key}" in TEXT}
            v.minutes = gr.Slider(0, LIMITS.max_seconds / 60, step=0.5, value=0, label=t("train.minutes"),
                                  info=t("train.minutes_info"), elem_id="train-minutes", **on)
            v.estimate = gr.HTML(actions.planner.describe(base, 0), elem_id="train-estimate")
            v.name = gr.Textbox(label=t("train.name"), max_length=40, **on)
            with gr.Row():
                v.reset_form = gr.Button(t("train.reset_form"), elem_id="train-reset", min_width=80, size="sm", **on)
                v.clear = gr.Button(t("train.clear"), elem_id="train-clear", min_width=80, size="sm", **on)
                v.make_default = gr.Button(t("train.promote"), elem_id="train-promote", min_width=80, size="sm",
                                           **on)
            with gr.Accordion(t("train.hyperparameters"), open=False, elem_id="train-hyperparameters"):
                v.inputs = hyperparameter_form(base, interactive=not locked)
            v.causal_note = gr.Markdown(t("train.causal_note"), visible=not base["causal"], elem_id="causal-note")
        with gr.Column(scale=3, elem_id="train-screen"):
            with gr.Row(elem_id="train-buttons"):
                v.start = gr.Button(t("train.start"), variant="primary", min_width=80, elem_id="train-start", **on)
                v.pause = gr.Button(t("train.pause"), min_width=80, elem_id="train-pause", **on)
                v.resume = gr.Button(t("train.resume"), min_width=80, elem_id="train-resume", **on)
                v.stop = gr.Button(t("train.stop"), variant="stop", min_width=80, elem_id="train-stop", **on)
            v.error = gr.HTML(elem_id="train-error")
            v.status = gr.HTML(status_html(actions.run.status()), elem_id="train-status")
            v.message = gr.Markdown(elem_id="train-message")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=400):
                    v.plot = gr.Plot(actions.chart(), show_label=False, elem_id="train-plot")
                with gr.Column(scale=2, min_width=280):
                    v.latest = gr.HTML(latest_answers_html(evals), elem_id="train-latest")
            with gr.Accordion(t("train.answers"), open=False):
                v.answers = gr.Dataframe(answers_frame(evals), interactive=False, wrap=True, max_height=260,
                                         show_label=False)
            with gr.Row():
                v.overlay = gr.CheckboxGroup(actions.overlay_choices(), label=t("train.overlay"), scale=4)
                v.refresh = gr.Button(t("train.refresh"), scale=1, min_width=80)
            with gr.Accordion(t("train.home"), open=False):
                v.home_run = gr.Dropdown(actions.run_names(), label=t("train.home_run"),
                                         elem_id="home-run", allow_custom_value=True)  # run_dir_of() checks it
                v.command = gr.Code(label=t("train.command"), language="shell", interactive=False,
                                    elem_id="home-command")
                with gr.Row():
                    v.pack = gr.Button(t("train.zip"), elem_id="home-zip")
                    v.zip_file = gr.File(label="zip", interactive=False, elem_id="home-zip-file")
                v.upload = gr.File(label=t("train.upload"), file_types=[".zip"], type="filepath",
                                   elem_id="home-upload", **on)
                v.home_message = gr.HTML()
            with gr.Accordion(t("train.extra"), open=False):
                v.extra = gr.Dataframe(pd.DataFrame({"问题 prompt": [""] * 3, "回答 completion": [""] * 3}),
                                       row_count=3, column_count=2, wrap=True, label=t("train.extra_label"), **on)
    v.fields = [v.inputs[k] for k in NAMES]
    v.lr_log = v.inputs["_lr_log"]
    v.locked_parts = ([v.preset, v.minutes, v.name, v.reset_form, v.clear, v.make_default] + v.fields
                      + [v.lr_log, v.start, v.pause, v.resume, v.stop, v.upload, v.extra])
    v.seen = gr.State({})
    v.teacher = gr.State(not locked)  # this page may control the run: always without teacher mode
    v.timer = gr.Timer(1.0, active=False)  # ticks only while this tab is shown (app.py): 40 idle tabs cost CPU
    return v


def running_html(info: dict, lang: str) -> str:
    """What a student's panel says about the teacher's run: the preset's name, then its size, steps and time."""
    names = PRESETS.get(info["preset"])
    name = (names[1] if lang == "en" else names[0]) if names else say("train.custom", lang)
    return (f"<div class='running-about'><b>{html.escape(say('train.running_about', lang, preset=name))}</b></div>"
            + about_html(info, lang))


def form_values(values) -> dict:
    return dict(zip(NAMES, values))


def wire_form(v: View, cfg: dict, actions: TrainingActions):
    """The estimate follows every change (on a read-only page: the teacher's run, whose values fill the form); the
    log-lr slider and the exact lr follow each other; presets and the reset button fill the form."""
    # request sits before *values: Gradio fills in a gr.Request only among the positional parameters
    def describe(teacher, budget, preset_key, request: gr.Request, *values):
        info = actions.run.status()["about"]
        if not teacher and info:
            return running_html(info, lang_of(request))
        return actions.planner.describe(form_values(values), budget, preset_key, lang_of(request))

    estimate_inputs = [v.teacher, v.minutes, v.preset] + v.fields
    gr.on([f.change for f in v.fields] + [v.minutes.change, v.preset.change], describe, estimate_inputs,
          v.estimate, api_name="ui_estimate", api_visibility="undocumented", trigger_mode="always_last",
          concurrency_limit=None, show_progress="hidden")
    v.lr_log.input(lambda x: float(f"{10 ** x:.3g}"), v.lr_log, v.inputs["lr"], api_name="ui_lr_from_log",
                   api_visibility="private", show_progress="hidden")
    v.inputs["lr"].input(lambda lr: round(math.log10(lr), 2) if lr and lr > 0 else gr.skip(), v.inputs["lr"],
                         v.lr_log, api_name="ui_lr_to_log", api_visibility="private", show_progress="hidden")

    def causal_note(on):
        return gr.Markdown(visible=not on)  # why the mask exists, shown while it is off

    v.inputs["causal"].change(causal_note, v.inputs["causal"], v.causal_note,
                              api_name="ui_causal_note", api_visibility="private", show_progress="hidden")

    notes = list(v.preset_notes.values())

    def apply_preset(key):
        """The form filled with the preset; the causal note is set here too, not left to the checkbox's change
        event, which a busy server may answer after this update."""
        values = preset_values(cfg, key)
        return ([values[k] for k in NAMES] + [round(math.log10(values["lr"]), 2), values["minutes"], ""]
                + [gr.Markdown(visible=k == key) for k in v.preset_notes] + [causal_note(values["causal"])])

    filled = v.fields + [v.lr_log, v.minutes, v.error] + notes + [v.causal_note]
    # A filled form is described once more after the fill, from the values now on the page: the change events'
    # own estimate may be deferred behind one still running for the old values (Gradio's always_last), and a
    # cancelled estimate never runs its deferred successor (a stale error line stayed under a reset form).
    for name, event in (("preset", v.preset.input(apply_preset, v.preset, filled, api_name="ui_apply_preset",
                                                   api_visibility="private")),
                        ("reset", v.reset_form.click(lambda: apply_preset("lesson") + ["lesson"], None,
                                                     filled + [v.preset], api_name="ui_train_reset",
                                                     api_visibility="private"))):
        event.then(describe, estimate_inputs, v.estimate, api_name=f"ui_estimate_after_{name}",
                   api_visibility="private", concurrency_limit=None, show_progress="hidden")


def wire_controls(v: View, actions: TrainingActions):
    """Start, pause, resume, stop, clear and promote: the teacher's, when the server has a password."""
    def start_ui(secret, budget, preset_key, *values):
        *hyper, run_name, rows = values
        rows = rows.values.tolist() if isinstance(rows, pd.DataFrame) else rows
        try:  # the form holds the preset's values; a series preset also decides how many runs start
            s = actions.guarded(actions.start_run, form_values(hyper), budget, "", run_name, rows, preset_key,
                                secret)
        except UserError as e:
            return error_line(str(e)), gr.skip()
        return ("" if s["started"] else error_line(s["message"])), html.escape(s["message"])

    v.start.click(start_ui, [v.password, v.minutes, v.preset] + v.fields + [v.name, v.extra], [v.error, v.message],
                  api_name="ui_train_start", api_visibility="undocumented", concurrency_limit=1)

    def control_ui(fn):
        def handler(secret):
            try:
                return status_html(actions.guarded(fn, secret)), ""
            except UserError as e:
                return gr.skip(), error_line(str(e))
        return handler

    run = actions.run
    for button, fn, api in ((v.pause, run.pause, "ui_train_pause"), (v.resume, run.resume, "ui_train_resume"),
                            (v.stop, run.stop, "ui_train_stop"), (v.clear, run.reset, "ui_train_clear")):
        button.click(control_ui(fn), v.password, [v.status, v.error], api_name=api, api_visibility="undocumented",
                     concurrency_limit=None)

    def promote_ui(secret):
        try:
            done = actions.guarded(actions.promote_run, secret)
        except UserError as e:
            return error_line(str(e))
        return html.escape(f"已设为默认模型 / now the default model: {done['promoted']}")

    v.make_default.click(promote_ui, v.password, v.error, api_name="ui_train_promote", api_visibility="undocumented",
                         concurrency_limit=1)


def wire_teacher(v: View, actions: TrainingActions):
    """In teacher mode the controls open on this page once the teacher's password is typed (the server still checks
    it with every action); Enter with a wrong password says so."""
    if not actions.gate.enabled:
        return

    def unlock(secret):
        ok = actions.gate.allows(secret)
        return ([gr.update(interactive=ok)] * len(v.locked_parts)
                + [str(t("train.unlocked") if ok else t("train.locked")), ok])

    v.password.change(unlock, v.password, v.locked_parts + [v.lock_line, v.teacher], api_name="ui_teacher_unlock",
                      api_visibility="private", trigger_mode="always_last", show_progress="hidden")

    def check(secret):
        try:
            actions.gate.check(secret)
        except UserError as e:
            return error_line(str(e))
        return ""

    v.password.submit(check, v.password, v.error, api_name="ui_teacher_check", api_visibility="private",
                      show_progress="hidden")


def wire_watching(v: View, actions: TrainingActions):
    """The poll (status, curves, answers; the run lists once a run ends), overlays of saved runs, refreshing."""
    def poll(seen: dict, chosen, teacher: bool, request: gr.Request):
        lang, s = lang_of(request), actions.run.status()
        changed = (s["version"] != seen.get("version") or s["state"] != seen.get("state")
                   or lang != seen.get("lang"))
        refresh_runs = seen.get("state") in ("running", "paused") and s["state"] not in ("running", "paused")
        new_seen = {"version": s["version"], "state": s["state"], "lang": lang, "about": s["about"]}
        evals = actions.run.curves()["answers"] if changed else []
        return (status_html(s, lang), html.escape(s["message"]), actions.chart(chosen, lang) if changed else gr.skip(),
                answers_frame(evals) if changed else gr.skip(),
                latest_answers_html(evals, lang) if changed else gr.skip(),
                gr.CheckboxGroup(choices=actions.overlay_choices()) if refresh_runs else gr.skip(),
                gr.Dropdown(choices=actions.run_names()) if refresh_runs else gr.skip(), new_seen,
                *follow_run(teacher, s["about"], seen.get("about"), lang))

    def follow_run(teacher: bool, info: dict, shown: dict | None, lang: str) -> list:
        """A student's read-only form describes the teacher's run (its preset, values and estimate), updated when a
        new run starts; the teacher's own form is left alone."""
        values = actions.form_of_run() if not teacher and info and info != shown else {}
        if not values:
            return [gr.skip()] * (len(v.fields) + 3)
        preset = info["preset"] if info["preset"] in PRESETS else gr.skip()
        return ([preset] + [values[k] for k in NAMES] + [round(math.log10(values["lr"]), 2)]
                + [running_html(info, lang)])

    v.timer.tick(poll, [v.seen, v.overlay, v.teacher],
                 [v.status, v.message, v.plot, v.answers, v.latest, v.overlay, v.home_run, v.seen, v.preset]
                 + v.fields + [v.lr_log, v.estimate],
                 api_name="ui_train_poll", api_visibility="undocumented", concurrency_limit=None,
                 show_progress="hidden")
    def overlay_chart(chosen, request: gr.Request):
        return actions.chart(chosen, lang_of(request))

    v.overlay.change(overlay_chart, v.overlay, v.plot, api_name="ui_overlay", api_visibility="undocumented",
                     concurrency_limit=None)

    def refresh_lists():
        return gr.CheckboxGroup(choices=actions.overlay_choices()), gr.Dropdown(choices=actions.run_names())

    v.refresh.click(refresh_lists, None, [v.overlay, v.home_run], api_name="ui_refresh_runs",
                    api_visibility="undocumented")


def wire_home(v: View, actions: TrainingActions):
    """Take a run home: the command that trains it again, its zip; and bring one back (an upload, the teacher's)."""
    def command_ui(run_name):
        try:
            return actions.run_command(run_name), ""
        except UserError as e:
            return "", error_line(str(e))

    v.home_run.change(command_ui, v.home_run, [v.command, v.home_message], api_name="ui_run_command",
                      api_visibility="undocumented")

    def pack_ui(run_name):
        try:
            return actions.export_zip(run_name), ""
        except UserError as e:
            return gr.skip(), error_line(str(e))

    v.pack.click(pack_ui, v.home_run, [v.zip_file, v.home_message], api_name="ui_run_zip",
                 api_visibility="undocumented")

    def upload_ui(path, secret):
        if not path:
            return gr.skip(), ""
        try:
            added = actions.guarded(actions.add_uploaded_run, path, secret)
        except UserError as e:
            return gr.skip(), error_line(str(e))
        return gr.Dropdown(choices=actions.run_names(), value=added), html.escape(f"已加入：{added} / added: {added}")

    v.upload.upload(upload_ui, [v.upload, v.password], [v.home_run, v.home_message], api_name="ui_run_upload",
                    api_visibility="undocumented", concurrency_limit=1)


def wire_api(actions: TrainingActions):
    """The named endpoints: /train_start (one parameter per hyperparameter), /train_estimate, /train_status, the
    controls, /train_promote and /run_command."""
    def train_start(*args) -> dict:
        """Start the shared training run. Unset hyperparameters come from the preset, else config.yaml; minutes > 0
        sizes max_steps to that time budget. Refused beyond the Space's limits, and without the teacher password
        when the server has one."""
        given = dict(zip(start_signature.parameters, args))
        values = {k: given[k] for k in NAMES}
        with one_line():
            return actions.guarded(actions.start_run, values, given["minutes"], given["preset"], given["name"],
                                   given["extra_rows"], given["teacher_password"])

    extra_params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=a)
                    for n, d, a in (("preset", "", str), ("minutes", 0.0, float), ("name", "", str),
                                    ("extra_rows", None, list | None), ("teacher_password", "", str))]
    start_signature, train_start.__annotations__ = api_signature(extra_params)
    train_start.__signature__ = start_signature

    def train_estimate(preset: str = "", minutes: float = 0.0) -> dict:
        """What a preset (and time budget) would run: its config's hyperparameters, the estimated seconds, and
        how many runs it starts (a series preset such as adamw_vs_muon: one per optimizer, seconds of all)."""
        with one_line():
            planned = actions.planner.plan_runs({}, minutes, preset)
        cfg_run = planned[0][0]
        return {"hyperparameters": {h.name: cfg_run[h.section][h.name] for h in HYPERPARAMETERS},
                "estimated_seconds": round(sum(seconds for _, seconds, _, _ in planned), 1), "runs": len(planned)}

    def train_status() -> dict:
        """state (idle|running|paused|finished|stopped|failed), step, max_steps, losses, elapsed, message; series:
        {index, total, label, runs} while a series preset's runs go one after the other ("第 1/2 次：AdamW")."""
        return actions.run.status()

    def controlled(fn, api_name):
        def endpoint(teacher_password: str = "") -> dict:
            with one_line():
                return actions.guarded(fn, teacher_password)
        endpoint.__name__ = api_name
        return endpoint

    run = actions.run
    gr.api(train_start, api_name="train_start", concurrency_limit=1)
    gr.api(train_estimate, api_name="train_estimate", concurrency_limit=None)
    gr.api(train_status, api_name="train_status", concurrency_limit=None)
    for fn, api in ((run.pause, "train_pause"), (run.resume, "train_resume"), (run.stop, "train_stop"),
                    (run.reset, "train_reset"), (actions.promote_run, "train_promote")):
        gr.api(controlled(fn, api), api_name=api, concurrency_limit=1 if api == "train_promote" else None)

    def run_command(run_name: str) -> str:
        """The terminal command that trains a listed run again (what differs from config.yaml)."""
        with one_line():
            return actions.run_command(run_name)

    gr.api(run_command, api_name="run_command", concurrency_limit=None)


def build(run, store, cfg, config_path, runs_dir: Path, pace, gate, promote_dir: Path) -> TabParts:
    planner = RunPlanner(config_path, cfg, pace)
    actions = TrainingActions(run, store, cfg, planner, gate, runs_dir, promote_dir)
    v = layout(actions, defaults(cfg))
    wire_form(v, cfg, actions)
    wire_controls(v, actions)
    wire_teacher(v, actions)
    wire_watching(v, actions)
    wire_home(v, actions)
    wire_api(actions)
    return TabParts(poll_timer=v.timer)
