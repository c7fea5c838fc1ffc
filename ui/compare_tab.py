"""Tab 对比 Compare: two runs (or one run at two snapshot steps) side by side: loss curves overlaid, configs and final
figures in one table with the differences marked, and one question answered by both."""

import html
from pathlib import Path

import gradio as gr
from plotly.subplots import make_subplots

from gpt_mini.checkpoint import describe
from gpt_mini.errors import UserError
from gpt_mini.generate import Settings
from gpt_mini.knowledge import course_of, judge
from gpt_mini.visualize import model_size

from .chat_tab import CHAT_CONCURRENCY
from .hyperparameters import HYPERPARAMETERS
from .i18n import t
from .models import CHECKPOINT_DIR, DEFAULT_KEY
from .style import error_line
from .training_tab import add_metrics_curves, style_loss_figure

FIGURES = [("step", "训练到第几步 / trained steps"), ("params", "参数量 / parameters"),
           ("train_loss", "训练损失 / train loss"), ("eval_loss", "验证损失 / eval loss"),
           ("unseen_loss", "新知识损失 / unseen-facts loss"),
           ("train_seconds", "训练时间（秒）/ training time (s)"), ("precision_used", "实际训练精度 / precision used")]


def metrics_path(store, key: str) -> Path | None:
    """The metrics.csv behind a checkpoint key: the run's own (a snapshot shares its run's curve)."""
    if key.startswith(("run:", "snap:")):
        path = store.runs_dir / key.split(":")[1] / "metrics.csv"
    else:
        path = CHECKPOINT_DIR / "metrics.csv"
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
        if key.startswith("snap:"):  # where on its run's curve this snapshot was taken
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


def build(store, server, tab=None, last_series=None):
    """tab: this tab, whose opening refreshes the pickers; last_series: a function giving the run names of the last
    finished series (TrainingRun.last_series), which opening the tab puts into A and B once, and shows."""
    gr.Markdown(t("compare.intro"))
    choices = store.choices()
    second = choices[1][1] if len(choices) > 1 else DEFAULT_KEY
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            # allow_custom_value: runs saved later; ModelStore accepts only listed keys
            a = gr.Dropdown(choices, value=DEFAULT_KEY, label=t("compare.a"), elem_id="compare-a",
                            allow_custom_value=True)
            b = gr.Dropdown(choices, value=second, label=t("compare.b"), elem_id="compare-b", allow_custom_value=True)
            show = gr.Button(t("compare.show"), variant="primary", elem_id="compare-show")
            question = gr.Textbox(label=t("compare.question"), elem_id="compare-question")
            ask = gr.Button(t("compare.ask"), elem_id="compare-ask")
            answer_a = gr.Textbox(label=t("compare.answer_a"), interactive=False, elem_id="compare-answer-a")
            answer_b = gr.Textbox(label=t("compare.answer_b"), interactive=False, elem_id="compare-answer-b")
            error = gr.HTML()
        with gr.Column(scale=3):
            plot = gr.Plot(show_label=False)
            table = gr.HTML(elem_id="compare-table")

    def step_of(key: str) -> int:
        return int(key.split(":")[2]) if key.startswith("snap:") else 0

    def show_ui(key_a, key_b):
        try:
            _, html_table = comparison(store, key_a, key_b)
            return compare_figure(store, key_a, key_b, step_of(key_a), step_of(key_b)), html_table, ""
        except UserError as e:
            return gr.skip(), gr.skip(), error_line(str(e))

    show.click(show_ui, [a, b], [plot, table, error], api_name="ui_compare", api_visibility="undocumented",
               concurrency_limit=4, concurrency_id="model")

    def ask_ui(key_a, key_b, text):
        try:
            ra, rb = ask_both(store, server, key_a, key_b, text)
        except UserError as e:
            return gr.skip(), gr.skip(), error_line(str(e))
        shown = lambda r: f"{r['answer'] or '（空回答 / empty answer）'}（把握 {round(100 * r['confidence'])}%）"  # noqa
        return shown(ra), shown(rb), ""

    def opened(shown: list):
        """Fresh run lists; a series that finished since this browser last looked becomes A and B, drawn."""
        choices = store.choices()
        names = list(last_series() if last_series else ())
        if len(names) < 2 or names == shown:
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.skip(), gr.skip(), gr.skip(), shown
        key_a, key_b = f"run:{names[0]}", f"run:{names[1]}"
        return (gr.Dropdown(choices=choices, value=key_a), gr.Dropdown(choices=choices, value=key_b),
                *show_ui(key_a, key_b), names)

    if tab is not None:
        shown_series = gr.State([])
        tab.select(opened, shown_series, [a, b, plot, table, error, shown_series], api_name="ui_compare_opened",
                   api_visibility="undocumented", concurrency_limit=4, concurrency_id="model")

    gr.on([ask.click, question.submit], ask_ui, [a, b, question], [answer_a, answer_b, error],
          api_name="ui_compare_ask", api_visibility="undocumented", concurrency_limit=CHAT_CONCURRENCY,
          concurrency_id="chat")

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

    gr.api(compare, api_name="compare", concurrency_limit=4, concurrency_id="model")
    gr.api(compare_ask, api_name="compare_ask", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    gr.api(checkpoints, api_name="checkpoints", concurrency_limit=None)
    return a, b
