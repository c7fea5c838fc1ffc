"""The dashboard in a real browser: Playwright driving Debian's chromium. Screenshots go to a temporary folder;
UPDATE_SCREENSHOTS=1 writes them to docs/ instead (so a test run leaves the tree clean)."""

import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, idle, new_page, set_slider
from playwright.sync_api import expect

from gpt_mini.checkpoint import load_model
from gpt_mini.data import FIXED_QUESTIONS
from gpt_mini.generate import generate
from gpt_mini.knowledge import REFUSAL, course_of, reply_in_context
from gpt_mini.visualize import LAYER_STAGES, step_stage, trace
from ui.attention_tab import lens_models
from ui.i18n import TEXT
from ui.models import DEFAULT_KEY
from ui.tokenizer_tab import tokenize_data

pytestmark = pytest.mark.slow
UPDATE = os.environ.get("UPDATE_SCREENSHOTS") == "1"
DOCS = ROOT / "docs" if UPDATE else Path(tempfile.mkdtemp(prefix="gpt_mini_shots_"))
Q1 = list(FIXED_QUESTIONS)[0]
REWORDED = "注意力机制是啥呀"  # data.REWORDED_PROBES: never in the training data
OUTSIDE = "今天天气怎么样"
SERVER: dict = {}


@pytest.fixture(scope="module")
def page(open_server, chromium):  # a laptop: no teacher mode
    SERVER["app"] = idle(open_server)["app"]
    context, pg = new_page(chromium, open_server["url"])  # the Chinese UI
    yield pg
    context.close()
    idle(open_server)


def open_tab(page, name: str):
    page.get_by_role("tab", name=re.compile(name)).click()


def shoot(page, tab: str):
    DOCS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)  # let plotly finish drawing
    page.screenshot(path=str(DOCS / f"screenshot_{tab}.png"), full_page=True)


def test_overview(page):
    open_tab(page, "概览")
    tiles = page.locator(".big-numbers").first
    expect(tiles).to_contain_text("参数量")
    expect(tiles).not_to_contain_text("parameters")  # one language at a time
    expect(page.locator("#pipeline")).to_contain_text(TEXT["overview.stage.forward.say"][0])  # a sentence per box
    expect(page.get_by_text("V·d + L·(12d²+11d) + d").first).to_be_visible()
    expect(page.get_by_text("每 100 步约").first).to_be_visible(timeout=60_000)
    shoot(page, "overview")


def test_tokenizer(page):
    open_tab(page, "分词器")
    box = page.get_by_label("输入文本")
    box.fill("什么是注意力机制? <b>不是粗体</b>")
    page.get_by_role("button", name="分词", exact=True).click()
    typed = tokenize_data(SERVER["app"].store.tokenizer(), "什么是注意力机制? <b>不是粗体</b>")
    for number in (typed["n_tokens"], typed["chars"]):  # the comparison follows the typed text
        expect(page.locator("#tokenizer-compare")).to_contain_text(str(number))
    expect(page.locator("#token-spans .tok-legend")).to_contain_text("半个字")  # the partial-character legend
    spans = page.locator("#token-spans .tokens")
    expect(spans).to_contain_text("粗")
    expect(spans).to_contain_text("<")  # escaped, shown as text
    expect(spans.locator("b")).to_have_count(0)  # not markup
    expect(page.get_by_label("解码回来（往返）")).to_have_value("什么是注意力机制? <b>不是粗体</b>")
    page.get_by_role("button", name="重建并比较").click()
    expect(page.get_by_text("重建（V=500）").first).to_be_visible()
    shoot(page, "tokenizer")


def test_attention(page):
    open_tab(page, "注意力")
    page.get_by_role("button", name="显示注意力").click()
    expect(page.locator(".js-plotly-plot:visible")).to_have_count(6, timeout=30_000)  # with one forward pass
    expect(page.get_by_text("第 0 层 第 0 个头").first).to_be_visible()
    shoot(page, "attention")


def shoot_plot(page, name: str):
    """The viewport with the forward pass's plot scrolled into view."""
    page.locator("#trace-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # let plotly finish drawing
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / f"screenshot_{name}.png"))


def shoot_region(page, name: str, first: str, last: str):
    """The page from the top of element `first` to the bottom of element `last`, full width."""
    page.locator(last).scroll_into_view_if_needed()
    page.locator(first).scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    top, bottom = page.locator(first).bounding_box(), page.locator(last).bounding_box()
    y = page.evaluate("window.scrollY")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / f"screenshot_{name}.png"), full_page=True,
                    clip={"x": 0, "y": y + top["y"] - 8, "width": 1280,
                          "height": bottom["y"] + bottom["height"] - top["y"] + 16})


def walk_every_stage(page, n_layer: int, top_id: int, shots=None) -> None:
    """From the tokens stage, 下一步 through every stage of every layer to the top-10 next tokens, checking each
    stage's title and sentence; the first bar of the top-10 is the model's own likeliest token (top_id).
    shots: {(stage, layer): name} plot screenshots taken on the way."""
    title, text = page.locator("#trace-plot .gtitle"), page.locator("#trace-text")
    expect(text).to_contain_text(TEXT["trace.say.tokens"][0])
    expect(text).to_contain_text("→ id")  # the worked example: the last token's id
    expect(page.locator("#trace-stage input")).to_have_value(TEXT["trace.stage.tokens"][0])
    at, steps = ("tokens", 0), 0
    while (nxt := step_stage(*at, n_layer, 1)) != at:
        at, steps = nxt, steps + 1
        page.locator("#trace-next").click()
        stage, layer = at
        expect(title).to_contain_text(TEXT[f"trace.stage.{stage}"][0])
        if stage in LAYER_STAGES:
            expect(title).to_contain_text(f"第 {layer} 层")
        expect(text).to_contain_text(TEXT[f"trace.say.{stage}"][0])
        expect(text).to_contain_text("=")
        if at in (shots or {}):
            shoot_plot(page, shots[at])
    assert steps == 1 + n_layer * len(LAYER_STAGES) + 3 and at == ("top", n_layer - 1)
    expect(page.locator("#trace-plot .bars path")).to_have_count(10)  # the top-10 next tokens
    expect(page.locator("#trace-plot .xtick").first).to_contain_text(f"#{top_id}")


def expect_lens_compare(page, key: str, question: str):
    """The side-by-side logit lens shows the columns lens_models picks for this checkpoint, each with that model's
    likeliest token after the last layer."""
    models, tok, fresh = lens_models(SERVER["app"].store, key)
    table = page.locator("#trace-lens-compare")
    for label, model in models.items():
        expect(table).to_contain_text(label)
        expect(table).to_contain_text(trace(model, tok, question)["lens"][-1]["top"][0]["token"])
    expect(page.locator("#trace-lens-note")).to_contain_text("新初始化" if fresh else "快照")
    return models, fresh


def test_one_forward_pass_steps_through_every_stage(page):
    """A Chinese question on the default model, then 下一步 through every stage of every layer to the top-10 next
    tokens; the logit lens next to a fresh 'step 0' (the default model's snapshots are not in the repository).
    Screenshots: the attention weights, the scores with the mask, the logit lens and the top-10 next tokens."""
    open_tab(page, "注意力")
    page.locator("#trace-question textarea").fill(REWORDED)
    page.locator("#trace-run").click()
    model, tok, ckpt = SERVER["app"].store.get()
    n_layer = len(model.blocks)
    expect(page.locator("#trace-lens")).to_contain_text(f"第 {n_layer - 1} 层")  # the logit lens, every layer
    models, fresh = expect_lens_compare(page, DEFAULT_KEY, REWORDED)
    assert fresh and list(models)[0] == "第 0 步（新初始化）/ step 0 (fresh init)" and len(models) == 2
    assert list(models)[-1] == f"最终：第 {ckpt['step']} 步 / final, step {ckpt['step']}"
    expect(page.locator("#trace-lens-compare")).to_contain_text(f"第 {n_layer - 1} 层")
    shoot_region(page, "logit_lens", "#trace-lens", "#trace-lens-note")
    top_id = int(trace(model, tok, REWORDED)["probs"][-1].argmax())
    walk_every_stage(page, n_layer, top_id, {("softmax", 0): "forward_pass", ("mask", 0): "forward_scores"})
    shoot_plot(page, "forward_top10")
    page.locator("#trace-prev").click()
    expect(page.locator("#trace-plot .gtitle")).to_contain_text(TEXT["trace.stage.logits"][0])
    page.locator("#trace-question textarea").fill("")
    page.locator("#trace-run").click()
    expect(page.get_by_text("请输入一个问题").first).to_be_visible()  # the error next to the controls


def engine_reply(question: str, earlier=()):
    """What the engine itself says to this question with the shipped model (greedy, refusal on), after the
    earlier exchanges the chat keeps (the previous one is in the context when it helps)."""
    model, tok, ckpt = load_model(ROOT / "checkpoints" / "last.pt")
    return reply_in_context(lambda h, q: generate(model, tok, q, history=h), question, list(earlier)[-1:],
                            course_of(ckpt))[1]


def ask_in_chat(page, question: str):
    """Send a question and wait for the new answer (not the placeholder) to appear; returns its locator."""
    before = page.get_by_test_id("bot").count()
    box = page.get_by_placeholder(re.compile("输入问题"))
    box.fill(question)
    box.press("Enter")
    expect(page.get_by_test_id("bot")).to_have_count(before + 1, timeout=60_000)
    answer = page.get_by_test_id("bot").last
    expect(answer).to_contain_text("把握", timeout=60_000)  # the final answer carries its confidence
    return answer


def test_chat_answers_rewordings_and_refuses_what_it_has_not_learned(page):
    open_tab(page, "对话")
    expect(ask_in_chat(page, Q1)).to_contain_text(FIXED_QUESTIONS[Q1])
    expect(page.get_by_text(re.compile(r"第 \d+ 步：下一个词元")).first).to_be_visible()  # the next-token chart
    expect(page.locator(".badge").first).to_have_text(re.compile(r"^把握 \d+%$"))  # the badge, in Chinese only
    reworded = engine_reply(REWORDED, [(Q1, FIXED_QUESTIONS[Q1])])
    assert reworded.known and reworded.text == FIXED_QUESTIONS[Q1]  # the shipped model generalises to it
    expect(ask_in_chat(page, REWORDED)).to_contain_text(reworded.text)
    refused = engine_reply(OUTSIDE, [(REWORDED, FIXED_QUESTIONS[Q1])])
    assert not refused.known and refused.text.startswith(REFUSAL) and refused.suggestions
    expect(ask_in_chat(page, OUTSIDE)).to_contain_text(REFUSAL)
    suggestion = page.get_by_text(refused.suggestions[0], exact=True).last  # clickable suggested questions
    expect(suggestion).to_be_visible()
    shoot(page, "chat")
    answers = page.get_by_test_id("bot").count()
    suggestion.click()
    expect(page.get_by_test_id("user").last).to_contain_text(refused.suggestions[0].rstrip("？?"), timeout=60_000)
    expect(page.get_by_test_id("bot")).to_have_count(answers + 1)
    expect(page.get_by_test_id("bot").last).to_contain_text("把握", timeout=60_000)  # answered: no race with the next
    box = page.get_by_placeholder(re.compile("输入问题"))
    box.fill("<script>window.hacked=1</script><b>bold?</b>")
    box.press("Enter")
    expect(page.get_by_test_id("user").last).to_contain_text("<script>window.hacked=1</script>")
    assert page.evaluate("window.hacked === undefined")


def test_training_updates_chart_and_status(page):
    open_tab(page, "训练")
    expect(page.get_by_text("教师登录")).to_have_count(0)  # a laptop: no teacher mode, every control open
    set_slider(page, "max_steps", 30)
    set_slider(page, "eval_interval", 10)
    expect(page.locator("#train-estimate")).to_contain_text("30")
    page.get_by_label(re.compile("运行名")).fill("browser_test")
    page.locator("#train-start").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text("训练中")
    expect(status).to_contain_text(re.compile(r"[1-9]\d*/30"), timeout=300_000)  # after the data is encoded
    expect(page.locator("#train-plot").get_by_text("训练损失", exact=True).first).to_be_visible()  # legend
    expect(page.get_by_text("验证损失（学过的知识、新问法）").first).to_be_visible(timeout=300_000)
    expect(page.get_by_text("新知识：小模型学不会").first).to_be_visible()
    page.locator("#train-stop").click()
    expect(status).to_contain_text(re.compile("已停止|已完成"), timeout=60_000)
    expect(page.get_by_label("browser_test")).to_be_visible()  # the saved run can be overlaid
    page.get_by_label("默认模型 default").check()  # overlay the default model's curves (checkpoints/metrics.csv)
    expect(page.get_by_text("默认模型 default 验证").first).to_be_visible()
    # take it home: the command and the zip of the saved run
    page.get_by_text("带回家：命令和 zip").click()
    page.locator("#home-run input").click()
    page.get_by_role("option", name="browser_test").click()
    expect(page.locator("#home-command")).to_contain_text("--set training.max_steps=30")
    page.locator("#home-zip").click()
    expect(page.locator("#home-zip-file")).to_contain_text(re.compile(r"browser_test\s*\.zip"))
    page.get_by_label(re.compile("因果掩码 causal")).uncheck()
    expect(page.locator("#causal-note")).to_be_visible()  # shown (not only present) before the reset below: the
    expect(page.locator("#causal-note")).to_contain_text("偷看")  # two change events must not cross on a busy machine
    set_slider(page, "n_head", 3)
    expect(page.get_by_text("不能被 n_head=3 整除").first).to_be_visible()  # error next to the controls
    page.locator("#train-reset").click()
    expect(page.locator("#hp-n_head input[type=number]")).to_have_value("4")
    expect(page.get_by_label(re.compile("因果掩码 causal"))).to_be_checked()
    expect(page.locator("#causal-note")).to_be_hidden()
    expect(page.get_by_text("不能被 n_head=3 整除")).to_have_count(0)
    open_tab(page, "对话")  # the finished run and its snapshots are now checkpoint choices in chat
    page.get_by_label("检查点", exact=True).last.click()
    expect(page.get_by_role("option", name="训练 run: browser_test", exact=True)).to_be_visible()
    expect(page.get_by_role("option", name=re.compile(r"browser_test · 第 3 步"))).to_be_visible()


def test_only_a_shown_training_tab_polls_the_run(page):
    run, calls = SERVER["app"].run, []
    real = run.status
    run.status = lambda: (calls.append(time.time()), real())[1]  # the training tab's poll reads run.status()
    try:
        open_tab(page, "训练")
        expect(page.locator("#train-status")).to_be_visible()
        shown_from = len(calls)
        for _ in range(60):  # polled about once a second while shown (a busy machine may be slower)
            if len(calls) >= shown_from + 2:
                break
            page.wait_for_timeout(500)
        assert len(calls) >= shown_from + 2
        open_tab(page, "对话")
        for _ in range(10):  # no polling while another tab is shown: a 3-second window with no poll comes soon
            hidden_from = len(calls)  # (a tick already in flight may still land in the first window)
            page.wait_for_timeout(3000)
            if len(calls) == hidden_from:
                break
        assert len(calls) == hidden_from
    finally:
        run.status = real


STEP0_QUESTION = "蒸馏水和纯水有什么区别？"


def step0_run(store) -> str:
    """A saved run with a step-0 snapshot: the one the training test trained through the UI, or (this test alone)
    a 4-step run of the default config trained here (snapshots at steps 0, 1 = 25%, 2 and 4)."""
    for _, key in store.choices():
        if key.startswith("snap:") and key.endswith(":0"):
            return key.split(":")[1]
    from gpt_mini.config import load_config
    from gpt_mini.train import Trainer

    cfg = load_config(overrides=["training.max_steps=4", "training.eval_interval=4"])
    assert Trainer(cfg, save_dir=store.runs_dir / "tiny4", keep_resume=False, probe_questions=()).run() == "finished"
    return "tiny4"


def test_one_forward_pass_on_a_step_0_snapshot(page):
    """The same walk on the untrained model: a run's step-0 snapshot picked in the list, with the logit lens of the
    run's step 0, 25% (when kept) and final model side by side."""
    store = SERVER["app"].store
    run = step0_run(store)
    key = f"snap:{run}:0"
    open_tab(page, "对话")
    open_tab(page, "注意力")  # showing the tab refreshes its checkpoint lists
    page.locator("#trace-question textarea").fill(STEP0_QUESTION)
    page.locator("#trace-ckpt input").click()
    page.get_by_role("option", name=f"训练 run: {run} · 第 0 步 / step 0", exact=True).click()
    models, fresh = expect_lens_compare(page, key, STEP0_QUESTION)  # the new checkpoint's trace has landed
    page.locator("#trace-stage input").click()
    page.get_by_role("option", name=TEXT["trace.stage.tokens"][0], exact=True).click()
    assert not fresh and list(models)[0] == "第 0 步 / step 0"
    model, tok, ckpt = store.get(key)
    assert ckpt["step"] == 0
    walk_every_stage(page, len(model.blocks), int(trace(model, tok, STEP0_QUESTION)["probs"][-1].argmax()))
