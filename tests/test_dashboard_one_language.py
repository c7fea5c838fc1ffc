"""One language at a time in what handlers build (tiles, tables, chart titles and legends), chosen from the
request's Accept-Language; the compare chart on each run's progress with A and B in their own colours; the
tokenizer's comparison following the typed text; the overview's sentence per pipeline box."""

import json
import re
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import ROOT, idle
from gradio_client import Client

from gpt_mini import runs
from gpt_mini.checkpoint import atomic_save, read_checkpoint
from gpt_mini.config import load_config
from ui import charts, compare_tab, overview_tab, tokenizer_tab
from ui.i18n import TEXT, lang_of
from ui.models import DEFAULT_KEY, ModelStore
from ui.style import COMPARE_COLORS

CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORD = re.compile(r"\b(?!FLOPs\b|AdamW\b|RMSNorm\b)[A-Za-z]{4,}\b")  # acronyms and terms kept in Chinese
PARTIAL_TEXT = "蘑菇"  # rare characters: the tokenizer splits their bytes


def request(accept_language: str | None):
    return SimpleNamespace(headers={"accept-language": accept_language} if accept_language else {})


def tile_labels(html_text: str) -> list[str]:
    return re.findall(r"<span>([^<]*)</span>", html_text)


def write_metrics(path, steps):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": steps, "train_loss": [5 / (1 + s) for s in steps], "eval_loss": [6 / (1 + s) for s in steps],
                  "unseen_loss": [7.0] * len(steps)}).to_csv(path, index=False)
    return path


def test_lang_of_follows_the_first_browser_language():
    assert lang_of(request("en-US,en;q=0.9,zh-CN;q=0.8")) == "en"
    assert lang_of(request("zh-CN,zh;q=0.9,en;q=0.8")) == "zh"
    assert lang_of(request(None)) == "zh" and lang_of(None) == "zh"


# ---- compare: progress axis, two colours ----

def test_compare_chart_spreads_a_short_and_a_long_run_over_the_same_axis(tmp_path):
    short = write_metrics(tmp_path / "short.csv", list(range(10, 350, 10)) + [349])
    long = write_metrics(tmp_path / "long.csv", list(range(100, 6001, 100)))
    fig = charts.compare_chart([("A", short, 349, None), ("B", long, 6000, 3000)], "zh")
    traces = {t.name: t for t in fig.data}
    assert len(traces) == 4
    for t in fig.data:
        assert all(0 <= x <= 1 for x in t.x), t.name
        assert max(t.x) == pytest.approx(1.0), t.name  # each run reaches 100% of its own steps
        assert list(t.customdata)[-1] in (349, 6000)  # hovering shows the real step
    a_train, a_eval, b_train, b_eval = fig.data
    assert a_train.name.startswith("A") and b_eval.name.startswith("B") and "349" in a_train.name
    assert {a_train.line.color, a_eval.line.color} == set(COMPARE_COLORS["A"])
    assert a_train.line.color != b_train.line.color and a_eval.line.color != b_eval.line.color  # A vs B: hue
    assert a_train.line.color != a_eval.line.color  # train vs eval
    assert a_train.line.dash == "solid" and b_train.line.dash == "dash"
    assert fig.layout.xaxis.tickformat == ".0%" and "%" in fig.layout.xaxis.title.text
    assert [shape.x0 for shape in fig.layout.shapes] == [pytest.approx(0.5)]  # B's snapshot at step 3000 of 6000


def test_compare_chart_in_english_has_no_chinese(tmp_path):
    path = write_metrics(tmp_path / "m.csv", [50, 100])
    fig = charts.compare_chart([("A", path, 100, None), ("B", path, 200, 50)], "en")
    texts = ([fig.layout.title.text, fig.layout.xaxis.title.text, fig.layout.yaxis.title.text]
             + [t.name for t in fig.data] + [a.text for a in fig.layout.annotations])
    assert not [text for text in texts if CJK.search(text)], texts
    zh = charts.compare_chart([("A", path, 100, None), ("B", path, 200, 50)], "zh")
    assert all(CJK.search(t.name) and not ENGLISH_WORD.search(t.name) for t in zh.data)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The default model and a 349-step run 'short' with a snapshot at step 100 (the default model's
    int8 weights under a shorter config: only the curves and the config matter here)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    ckpt = read_checkpoint(runs.DEFAULT_DIR / runs.QUANTIZED)
    ckpt["config"]["training"]["max_steps"] = 349
    for path, step in ((runs_dir / "short" / runs.QUANTIZED, 349), (runs.snapshot_path(runs_dir / "short", 100), 100)):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({**ckpt, "step": step}, path)
    write_metrics(runs_dir / "short" / runs.METRICS, list(range(25, 349, 25)) + [349])
    return ModelStore(runs_dir, load_config())


def test_compare_figure_uses_each_runs_own_steps(store):
    fig = compare_tab.compare_figure(store, DEFAULT_KEY, "snap:short:100", "en")
    a_train, _, b_train, _ = fig.data
    steps = read_checkpoint(runs.DEFAULT_DIR / runs.QUANTIZED)["config"]["training"]["max_steps"]  # the default
    assert max(a_train.x) == pytest.approx(1.0) and max(a_train.customdata) == steps
    assert max(b_train.x) == pytest.approx(1.0) and max(b_train.customdata) == 349
    assert f"{steps:,}" in a_train.name and "349" in b_train.name
    assert [shape.x0 for shape in fig.layout.shapes] == [pytest.approx(100 / 349)]
    assert fig.layout.annotations[0].text == "B: step 100"


def test_compare_table_and_answers_in_one_language(store):
    show = compare_tab.show_ui(store)
    _, table_en, error = show(DEFAULT_KEY, "run:short", "en")
    _, table_zh, _ = show(DEFAULT_KEY, "run:short", "zh")
    assert not error and not CJK.search(table_en) and "trained steps" in table_en
    assert "训练到第几步" in table_zh and "trained steps" not in table_zh and "层数" in table_zh
    rows = compare_tab.comparison(store, DEFAULT_KEY, "run:short")[0]  # the API's rows keep both languages
    assert {r["name"]: r for r in rows}["max_steps"]["differs"] and rows[0]["label"] == "层数 / layers"
    reply = {"answer": "", "confidence": 0.42}
    assert compare_tab.answer_line(reply, "en") == "(empty answer) (confidence 42%)"
    assert compare_tab.answer_line(reply, "zh") == "（空回答）（把握 42%）"


# ---- training chart: the lang parameter ----

class FakeRun:
    def curves(self):
        losses = [(s, 5 / s) for s in range(1, 41)]
        evals = [{"step": s, "eval_loss": 4 / s, "unseen_loss": 6.0} for s in (10, 20, 30, 40)]
        return {"version": (1, 1), "name": "now", "cfg": load_config(), "losses": losses, "evals": evals,
                "before": []}


def test_training_chart_titles_follow_lang(tmp_path):
    en = charts.chart(FakeRun(), tmp_path, lang="en")
    texts = [en.layout.title.text, en.layout.xaxis.title.text, en.layout.yaxis.title.text,
             en.layout.yaxis2.title.text] + [t.name for t in en.data]
    assert not [text for text in texts if CJK.search(text)], texts
    zh = charts.chart(FakeRun(), tmp_path)  # the default stays Chinese
    assert zh.layout.title.text == "损失曲线" and zh.layout.xaxis.title.text == "步"
    assert zh.layout.legend.yref == "container" and zh.layout.legend.y == 0  # legend under the plot, title on top


# ---- overview and tokenizer: tiles, sentences, the comparison that follows the text ----

class Unmeasured:
    def ready(self):
        return False


def test_overview_tiles_chart_and_boxes_in_one_language():
    cfg = load_config()
    sizes = overview_tab.default_sizes(cfg)
    numbers_en, formula_en, fig_en = overview_tab.calculate(cfg, Unmeasured(), *sizes, measure=False, lang="en")
    numbers_zh, formula_zh, fig_zh = overview_tab.calculate(cfg, Unmeasured(), *sizes, measure=False)
    assert tile_labels(numbers_en)[0] == "parameters" and not CJK.search(numbers_en + formula_en)
    assert tile_labels(numbers_zh)[0] == "参数量" and not [w for w in tile_labels(numbers_zh) if ENGLISH_WORD.search(w)]
    assert fig_en.layout.title.text == "Where the parameters are" and not CJK.search(json.dumps(list(fig_en.data[0].y)))
    assert fig_zh.layout.title.text == "参数都在哪里" and "/" not in fig_zh.layout.title.text
    boxes_en, boxes_zh = overview_tab.pipeline_html("en"), overview_tab.pipeline_html("zh")
    assert boxes_zh.count('class="say"') == len(overview_tab.PIPELINE) == 8
    assert TEXT["overview.stage.loss.say"][0] in boxes_zh and TEXT["overview.stage.loss.say"][1] in boxes_en
    assert not CJK.search(boxes_en)


@pytest.fixture(scope="module")
def tok_cfg():
    cfg = load_config()
    return ModelStore(ROOT / "checkpoints" / "runs", cfg).tokenizer(), cfg


def test_partial_characters_are_explained_on_the_page(tok_cfg):
    tok, _ = tok_cfg
    rows = tokenizer_tab.tokenize_data(tok, PARTIAL_TEXT)["tokens"]
    partial = sum(r["partial"] for r in rows)
    assert partial
    shown = tokenizer_tab.token_spans_html(rows)
    assert f"{partial} 个词元是半个字" in shown and shown.count("tok partial") == partial
    assert "partial characters" in tokenizer_tab.token_spans_html(rows, "en")
    plain = tokenizer_tab.token_spans_html(tokenizer_tab.tokenize_data(tok, "GPT")["tokens"])
    assert "半个字" not in plain and "tok-legend" in plain


def test_tokenizer_comparison_follows_the_typed_text(tok_cfg):
    tok, cfg = tok_cfg
    typed = "蘑菇和蘑菇汤"
    spans, counts, *_, table, new_spans = tokenizer_tab.follow(tok, cfg, typed, 500, "en")
    assert list(table["characters"]) == [len(typed), len(typed)]  # both rows count the typed text, not EXAMPLE
    assert list(table["tokens"]) == [tokenizer_tab.tokenize_data(t, typed)["n_tokens"]
                                     for t in (tok, tokenizer_tab.rebuilt_tokenizer(cfg, 500))]
    assert list(table["tokenizer"]) == [f"current (V={tok.get_vocab_size()})", "rebuilt (V=500)"]
    assert tile_labels(counts) == ["characters", "tokens", "characters per token"]
    zh_table = tokenizer_tab.follow(tok, cfg, typed, 500)[-2]
    assert list(zh_table.columns) == ["分词器", "词元数", "字符数", "字符/词元"]


# ---- through a real server: the browser's language picks the text ----

@pytest.fixture(scope="module")
def server(open_server):
    yield idle(open_server)
    idle(open_server)


@pytest.fixture(scope="module")
def english(server):
    client = Client(server["url"], verbose=False, headers={"Accept-Language": "en-US,en;q=0.9"})
    yield client
    client.close()


def test_an_english_request_gets_english_and_a_chinese_one_chinese(server, english):
    chinese = server["client"]  # no Accept-Language: Chinese, as a zh-CN browser
    sizes = (4, 4, 128, 128, 1000)
    numbers_en = english.predict(*sizes, api_name="/ui_model_size")[0]
    numbers_zh = chinese.predict(*sizes, api_name="/ui_model_size")[0]
    assert tile_labels(numbers_en)[0] == "parameters" and not CJK.search(numbers_en)
    assert tile_labels(numbers_zh)[0] == "参数量" and "parameters" not in numbers_zh
    typed = "蘑菇汤好喝"
    out_en = english.predict(typed, 500, api_name="/ui_tokenize")
    assert "partial characters" in out_en[0] and tile_labels(out_en[1])[0] == "characters"
    assert [row[2] for row in out_en[-2]["data"]] == [len(typed)] * 2  # the table follows the text
    out_zh = chinese.predict(typed, 500, api_name="/ui_tokenize")
    assert "半个字" in out_zh[0] and out_zh[-2]["headers"][0] == "分词器"
    fig, table, error = english.predict(DEFAULT_KEY, "default-int8", api_name="/ui_compare")
    layout = json.loads(fig["plot"])["layout"]
    assert not error and "progress" in layout["xaxis"]["title"]["text"] and not CJK.search(table)
    fig, table, _ = chinese.predict(DEFAULT_KEY, "default-int8", api_name="/ui_compare")
    assert "训练进度" in json.loads(fig["plot"])["layout"]["xaxis"]["title"]["text"] and "训练到第几步" in table
    assert len(english.predict(api_name="/ui_compare_opened")) == 5  # opening the tab: no finished series yet
