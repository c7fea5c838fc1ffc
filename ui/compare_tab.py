"""Tab 对比 Compare: two runs (or one run at two snapshot steps) side by side: loss curves overlaid, configs and final
figures in one table with the differences marked, and one question answered by both.

build() = layout() + wire_compare() + wire_api(); opening the tab (TabParts.on_show) lists the runs again and puts
a series that just finished into A and B."""

import html
from pathlib import Path

import gradio as gr

from gpt_mini import runs
from gpt_mini.checkpoint import describe
from gpt_mini.errors import UserError
from gpt_mini.generate import Settings
from gpt_mini.knowledge import course_of, judge
from gpt_mini.visualize import model_size

from .charts import compare_chart
from .endpoints import one_line
from .hyperparameters import HYPERPARAMETERS
from .i18n import lang_of, say, t
from .limits import CHAT_CONCURRENCY, MODEL_CONCURRENCY
from .models import DEFAULT_KEY
from .style import error_line
from .tabs import Step, TabParts, View

# final figures, each labelled by TEXT["compare.figure.<name>"]
FIGURES = ["step", "params", "train_loss", "eval_loss", "unseen_loss", "train_seconds", "precision_used"]


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


def labels(lang: str) -> list[tuple[str, str, str]]:
    """(name, label in `lang`, both languages) of every row: the hyperparameters, then the final figures."""
    out = [(h.name, h.en if lang == "en" else h.zh, f"{h.zh} / {h.en}") for h in HYPERPARAMETERS]
    for name in FIGURES:
        zh, en = say(f"compare.figure.{name}", "zh"), say(f"compare.figure.{name}", "en")
        out.append((name, en if lang == "en" else zh, f"{zh} / {en}"))
    return out


def comparison(store, a: str, b: str, lang: str = "zh") -> tuple[list[dict], str]:
    """Rows {name, label, a, b, differs} (label in both languages: API data) and an HTML table in `lang`, the
    differing rows highlighted."""
    sa, sb = summary(store, a), summary(store, b)
    rows, body = [], []
    for name, shown_label, both in labels(lang):
        r = {"name": name, "label": both, "a": sa.get(name), "b": sb.get(name),
             "differs": _shown(sa.get(name)) != _shown(sb.get(name))}
        rows.append(r)
        body.append(f"<tr class='{'differs' if r['differs'] else ''}'><td>{html.escape(shown_label)}</td>"
                    f"<td>{html.escape(_shown(r['a']))}</td><td>{html.escape(_shown(r['b']))}</td></tr>")
    table = ("<table class='compare'><tr><th></th><th>A</th><th>B</th></tr>" + "".join(body) + "</table>"
             f"<div class='en'>{html.escape(say('compare.differs', lang))}</div>")
    return rows, table


def compare_figure(store, a: str, b: str, lang: str = "zh"):
    """A's and B's loss curves over each run's progress (ui.charts.compare_chart); a snapshot is marked where it
    was taken on its run's curve."""
    curves = []
    for ab, key in (("A", a), ("B", b)):
        snapshot = step_of(key) if runs.parse_key(key)[0] == "snap" else None
        curves.append((ab, metrics_path(store, key), summary(store, key).get("max_steps"), snapshot))
    return compare_chart(curves, lang)


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
    """Curves and table of two checkpoints in one language: (figure, table, "") or (skip, skip, one error line,
    bilingual)."""
    def show(key_a, key_b, lang: str = "zh"):
        try:
            _, html_table = comparison(store, key_a, key_b, lang)
            return compare_figure(store, key_a, key_b, lang), html_table, ""
        except UserError as e:
            return gr.skip(), gr.skip(), error_line(str(e))
    return show


def answer_line(reply: dict, lang: str) -> str:
    """One model's answer with how sure it was, in one language."""
    answer = reply["answer"] or say("compare.empty_answer", lang)
    return say("compare.answer", lang, answer=answer, pct=round(100 * reply["confidence"]))


def wire_compare(v: View, store, server):
    show = show_ui(store)

    def show_clicked(key_a, key_b, request: gr.Request):
        return show(key_a, key_b, lang_of(request))

    v.show.click(show_clicked, [v.a, v.b], [v.plot, v.table, v.error], api_name="ui_compare",
                 api_visibility="undocumented", concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")

    def ask_ui(key_a, key_b, text, request: gr.Request):
        try:
            ra, rb = ask_both(store, server, key_a, key_b, text)
        except UserError as e:
            return gr.skip(), gr.skip(), error_line(str(e))
        lang = lang_of(request)
        return answer_line(ra, lang), answer_line(rb, lang), ""

    gr.on([v.ask.click, v.question.submit], ask_ui, [v.a, v.b, v.question], [v.answer_a, v.answer_b, v.error],
          api_name="ui_compare_ask", api_visibility="undocumented", concurrency_limit=CHAT_CONCURRENCY,
          concurrency_id="chat")


def on_open(v: View, store, last_series) -> Step:
    """Opening the tab: fresh run lists; a series that finished since this browser last looked becomes A and B,
    drawn. last_series: a function giving the run names of the last finished series (TrainingRun.last_series)."""
    show = show_ui(store)

    def opened(shown: list, request: gr.Request):
        choices = store.choices()
        names = list(last_series() if last_series else ())
        if len(names) < 2 or names == shown:
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.skip(), gr.skip(), gr.skip(), shown
        key_a, key_b = runs.run_key(names[0]), runs.run_key(names[1])
        return (gr.Dropdown(choices=choices, value=key_a), gr.Dropdown(choices=choices, value=key_b),
                *show(key_a, key_b, lang_of(request)), names)

    return Step(opened, [v.shown_series], [v.a, v.b, v.plot, v.table, v.error, v.shown_series], "ui_compare_opened",
                visibility="undocumented", options={"concurrency_limit": MODEL_CONCURRENCY, "concurrency_id": "model"})


def wire_api(store, server):
    """/compare, /compare_ask and /checkpoints."""
    def compare(a: str, b: str) -> list[dict]:
        """Two checkpoint keys (see /checkpoints): each hyperparameter and final figure of both, and whether
        they differ."""
        with one_line():
            return comparison(store, a, b)[0]

    def compare_ask(a: str, b: str, question: str) -> list[dict]:
        """One question answered by both checkpoints (greedy): [{checkpoint, answer, confidence, known}] x 2."""
        with one_line():
            return ask_both(store, server, a, b, question)

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
