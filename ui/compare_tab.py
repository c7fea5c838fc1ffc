"""Tab 对比 Compare: two runs (or one run at two snapshot steps) side by side: loss curves overlaid, configs and final
figures in one table with the differences marked, and one question answered by both.

build() = layout() + wire_compare() + wire_api(); opening the tab (TabParts.on_show) lists the runs again and puts
a series that just finished into A and B."""

import html
from pathlib import Path

import gradio as gr
from plotly.subplots import make_subplots

from gpt_mini import runs
from gpt_mini.checkpoint import describe
from gpt_mini.errors import UserError
from gpt_mini.generate import Settings
from gpt_mini.knowledge import course_of, judge
from gpt_mini.visualize import model_size

from .charts import add_metrics_curves, style_loss_figure
from .hyperparameters import HYPERPARAMETERS
from .i18n import t
from .limits import CHAT_CONCURRENCY, MODEL_CONCURRENCY
from .models import DEFAULT_KEY
from .style import error_line
from .tabs import Step, TabParts, View

FIGURES = [("step", "训练到第几步 / trained steps"), ("params", "参数量 / parameters"),
           ("train_loss", "训练损失 / train loss"), ("eval_loss", "验证损失 / eval loss"),
           ("unseen_loss", "新知识损失 / unseen-facts loss"),
           ("train_seconds", "训练时间（秒）/ training time (s)"), ("precision_used", "实际训练精度 / precision used")]


def metrics_path(store, key: str) -> Path | None:
    """The metrics.csv behind a checkpoint key: the run's own (a snapshot shares its run's curve)."""
    run = runs.parse_key(key)[1]
    path = (store.runs_dir / run if run else runs.DEFAULT_DIR) / runs.METRICS
    return path if path.is_file() else None


def summary(store, key: str) -> dict:
    """Hyperparameters and final figures of one checkpoint, by the names used in the table."""
    ckpt = store.get(key)[2]
    d = describe(ckpt)
    cfg = d["config"] or ckpt["config"]
    m, metrics = cfg["model"], d.get("metrics") or {}
    out = {h.name: cfg[h.section].get(h.name) for h in HYPERPARAMETERS}
    out.update(step=d["step"], params=model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"],
                                                 d["vocab_size"])["params"],
               train_loss=metrics.get("train_loss"), eval_loss=metrics.get("eval_loss"),
               unseen_loss=metrics.get("unseen_loss"), train_seconds=d.get("train_seconds"),
               precision_used=d.get("precision") or cfg["training"].get("precision"))
    return out


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value in (None, "") else str(value)


def comparison(store, a: str, b: str) -> tuple[list[dict], str]:
    """Rows {name, a, b, differs} and the same as an HTML table, the differing rows highlighted."""
    sa, sb = summary(store, a), summary(store, b)
    labels = [(h.name, f"{h.zh} / {h.en}") for h in HYPERPARAMETERS] + FIGURES
    rows = [{"name": name, "label": label, "a": sa.get(name), "b": sb.get(name),
             "differs": _shown(sa.get(name)) != _shown(sb.get(name))} for name, label in labels]
    body = "".join(
        f"<tr class='{'differs' if r['differs'] else ''}'><td>{html.escape(r['label'])}</td>"
        f"<td>{html.escape(_shown(r['a']))}</td><td>{html.escape(_shown(r['b']))}</td></tr>" for r in rows)
    table = ("<table class='compare'><tr><th></th><th>A</th><th>B</th></tr>" + body + "</table>"
             "<div class='en'>黄色的行：两者不同 / highlighted rows differ</div>")
    return rows, table


def compare_figure(store, a: str, b: str, step_a: int, step_b: int):
    fig = make_subplots()
    for key, label, dash, step in ((a, "A", "solid", step_a), (b, "B", "dash", step_b)):
        path = metrics_path(store, key)
        if path:
            add_metrics_curves(fig, label, path, dash, opacity=0.9)
        if runs.parse_key(key)[0] == "snap":  # where on its run's curve this snapshot was taken
            fig.add_vline(x=step, line_dash=dash, line_color="#888", annotation_text=f"{label} @ {step}")
    style_loss_figure(fig, "A 与 B 的损失曲线 / loss curves of A and B")
    return fig


def ask_both(store, server, a: str, b: str, question: str) -> list[dict]:
    """The same question to both models (greedy), with how sure each was."""
    question = (question or "").strip()
    if not question:
        raise UserError("请先输入一个问题", "type a question first")
    out = []
    for key in (a, b):
        model, tok, ckpt = store.get(key)
        reply = judge(server.answer(model, tok, question[:500], Settings(max_new_tokens=96)), question,
                      course_of(ckpt), refuse=False)
        out.append({"checkpoint": key, "answer": reply.answer, "confidence": round(reply.confidence, 4),
                    "known": reply.known})
    return out


def layout(store) -> View:
    v = View()
    gr.Markdown(t("compare.intro"))
    choices = store.choices()
    second = choices[1][1] if len(choices) > 1 else DEFAULT_KEY
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            # allow_custom_value: runs saved later; ModelStore accepts only listed keys
            v.a = gr.Dropdown(choices, value=DEFAULT_KEY, label=t("compare.a"), elem_id="compare-a",
                              allow_custom_value=True)
            v.b = gr.Dropdown(choices, value=second, label=t("compare.b"), elem_id="compare-b",
                              allow_custom_value=True)
            v.show = gr.Button(t("compare.show"), variant="primary", elem_id="compare-show")
            v.question = gr.Textbox(label=t("compare.question"), elem_id="compare-question")
            v.ask = gr.Button(t("compare.ask"), elem_id="compare-ask")
            v.answer_a = gr.Textbox(label=t("compare.answer_a"), interactive=False, elem_id="compare-answer-a")
            v.answer_b = gr.Textbox(label=t("compare.answer_b"), interactive=False, elem_id="compare-answer-b")
            v.error = gr.HTML()
        with gr.Column(scale=3):
            v.plot = gr.Plot(show_label=False)
            v.table = gr.HTML(elem_id="compare-table")
    v.shown_series = gr.State([])  # the last series this browser was shown in A and B
    return v


def step_of(key: str) -> int:
    return runs.parse_key(key)[2] or 0


def show_ui(store):
    """Curves and table of two checkpoints: (figure, table, "") or (skip, skip, one error line)."""
    def show(key_a, key_b):
        try:
            _, html_table = comparison(store, key_a, key_b)
            return compare_figure(store, key_a, key_b, step_of(key_a), step_of(key_b)), html_table, ""
        except UserError as e:
            return gr.skip(), gr.skip(), error_line(str(e))
    return show


def wire_compare(v: View, store, server):
    v.show.click(show_ui(store), [v.a, v.b], [v.plot, v.table, v.error], api_name="ui_compare",
                 api_visibility="undocumented", concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")

    def ask_ui(key_a, key_b, text):
        try:
            ra, rb = ask_both(store, server, key_a, key_b, text)
        except UserError as e:
            return gr.skip(), gr.skip(), error_line(str(e))
        shown = lambda r: f"{r['answer'] or '（空回答 / empty answer）'}（把握 {round(100 * r['confidence'])}%）"  # noqa
        return shown(ra), shown(rb), ""

    gr.on([v.ask.click, v.question.submit], ask_ui, [v.a, v.b, v.question], [v.answer_a, v.answer_b, v.error],
          api_name="ui_compare_ask", api_visibility="undocumented", concurrency_limit=CHAT_CONCURRENCY,
          concurrency_id="chat")


def on_open(v: View, store, last_series) -> Step:
    """Opening the tab: fresh run lists; a series that finished since this browser last looked becomes A and B,
    drawn. last_series: a function giving the run names of the last finished series (TrainingRun.last_series)."""
    show = show_ui(store)

    def opened(shown: list):
        choices = store.choices()
        names = list(last_series() if last_series else ())
        if len(names) < 2 or names == shown:
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.skip(), gr.skip(), gr.skip(), shown
        key_a, key_b = runs.run_key(names[0]), runs.run_key(names[1])
        return (gr.Dropdown(choices=choices, value=key_a), gr.Dropdown(choices=choices, value=key_b),
                *show(key_a, key_b), names)

    return Step(opened, [v.shown_series], [v.a, v.b, v.plot, v.table, v.error, v.shown_series], "ui_compare_opened",
                visibility="undocumented", options={"concurrency_limit": MODEL_CONCURRENCY, "concurrency_id": "model"})


def wire_api(store, server):
    """/compare, /compare_ask and /checkpoints."""
    def compare(a: str, b: str) -> list[dict]:
        """Two checkpoint keys (see /checkpoints): each hyperparameter and final figure of both, and whether
        they differ."""
        try:
            return comparison(store, a, b)[0]
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def compare_ask(a: str, b: str, question: str) -> list[dict]:
        """One question answered by both checkpoints (greedy): [{checkpoint, answer, confidence, known}] x 2."""
        try:
            return ask_both(store, server, a, b, question)
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def checkpoints() -> list[list[str]]:
        """Every checkpoint key the dashboard can load, with its label: defaults, runs, and runs at each
        snapshot step."""
        return [[label, key] for label, key in store.choices()]

    gr.api(compare, api_name="compare", concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")
    gr.api(compare_ask, api_name="compare_ask", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    gr.api(checkpoints, api_name="checkpoints", concurrency_limit=None)


def build(store, server, last_series=None) -> TabParts:
    """last_series: TrainingRun.last_series, whose newest series opening the tab puts into A and B once."""
    v = layout(store)
    wire_compare(v, store, server)
    wire_api(store, server)
    return TabParts(on_show=on_open(v, store, last_series))
