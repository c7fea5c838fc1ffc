"""One language at a time: every t(...) key has Chinese and English text, and a browser gets the UI in its own
language (zh-CN: Chinese, en-US: English), checked in Debian's chromium."""

import ast
import re

import pytest
from conftest import ROOT, idle, new_page

from ui.i18n import TEXT, i18n, t

CJK = re.compile(r"[\u4e00-\u9fff]")


def keys_used() -> dict[str, str]:
    """Every literal key passed to t(...) in ui/*.py -> the file it is in."""
    used = {}
    for path in sorted((ROOT / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "t"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                used[node.args[0].value] = path.name
    return used


def test_every_key_used_has_both_languages():
    used = keys_used()
    assert len(used) > 40 and "tab.overview" in used and "chat.send" in used
    tables = i18n().translations_dict
    assert set(tables) >= {"zh-CN", "zh", "en"}
    for key, where in used.items():
        assert key in TEXT, f"{where}: t({key!r}) has no text in ui/i18n.py"
        assert tables["zh-CN"][key].strip() and tables["zh"][key] == tables["zh-CN"][key], key
        assert tables["en"][key].strip(), key
    for key, (zh, en) in TEXT.items():
        assert CJK.search(zh) and not CJK.search(en), f"{key}: Chinese first, English second"


def test_unknown_key_fails_when_the_app_is_built():
    with pytest.raises(KeyError, match="no.such.key"):
        t("no.such.key")


# ---- in a real browser ----

@pytest.fixture(scope="module")
def app_url(open_server):  # a laptop: no teacher mode
    yield idle(open_server)["url"]
    idle(open_server)


def no_raw_keys(page):
    body = page.locator("body").inner_text()
    assert "__i18n__" not in body
    assert not [key for key in TEXT if key in body]  # a key with no text would show as itself


@pytest.mark.slow
def test_english_browser_gets_english(chromium, app_url):
    from playwright.sync_api import expect

    context, page = new_page(chromium, app_url, "en-US")
    try:
        for name in ("Overview", "Tokenizer", "Training", "Attention", "Chat", "Compare"):
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        tabs = page.get_by_role("tablist").first.inner_text()
        assert not CJK.search(tabs), tabs
        expect(page.get_by_text("Model-size calculator")).to_be_visible()
        expect(page.get_by_label("Attention heads n_head").first).to_be_visible()
        expect(page.get_by_role("button", name="Reset", exact=True)).to_be_visible()
        expect(page.get_by_text("模型大小计算器")).to_have_count(0)
        expect(page.locator(".big-numbers").first).to_contain_text("parameters")  # tiles a handler builds
        expect(page.locator("#pipeline")).to_contain_text(TEXT["overview.stage.tokenize.say"][1])  # re-rendered
        assert not CJK.search(page.locator("#pipeline").inner_text())
        no_raw_keys(page)

        page.get_by_role("tab", name="Tokenizer", exact=True).click()
        expect(page.get_by_role("button", name="Tokenize", exact=True)).to_be_visible()
        expect(page.get_by_label("Decoded round trip")).to_be_visible()
        expect(page.locator("#token-spans .tok-legend")).to_contain_text("partial characters")
        expect(page.locator("#tokenizer-compare")).to_contain_text("rebuilt (V=500)")

        page.get_by_role("tab", name="Chat", exact=True).click()
        expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
        expect(page.get_by_placeholder("Type a question, Enter sends")).to_be_visible()
        expect(page.get_by_label("Temperature (0 = greedy decoding)").first).to_be_visible()
        expect(page.get_by_role("button", name="发送")).to_have_count(0)
        no_raw_keys(page)
    finally:
        context.close()


@pytest.mark.slow
def test_chinese_browser_gets_chinese(chromium, app_url):
    from playwright.sync_api import expect

    context, page = new_page(chromium, app_url, "zh-CN")
    try:
        for name in ("概览", "分词器", "训练", "注意力", "对话", "对比"):
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        expect(page.get_by_text("模型大小计算器")).to_be_visible()
        expect(page.get_by_role("button", name="恢复默认", exact=True)).to_be_visible()
        expect(page.get_by_text("Model-size calculator")).to_have_count(0)
        no_raw_keys(page)

        page.get_by_role("tab", name="对话", exact=True).click()
        expect(page.get_by_role("button", name="发送", exact=True)).to_be_visible()
        expect(page.get_by_placeholder("输入问题，回车发送")).to_be_visible()
        expect(page.get_by_label("温度（0 = 贪心解码）").first).to_be_visible()
        expect(page.get_by_role("button", name="Send")).to_have_count(0)
        no_raw_keys(page)
    finally:
        context.close()


def test_an_answer_to_one_clause_says_which_clause_in_the_readers_language():
    """shown_answer: when only a part of a long question was understood (knowledge.parts), the chat names that
    part under the answer; an answer to the whole question, or a refusal, names none."""
    from gpt_mini.knowledge import Reply
    from ui.chat_tab import shown_answer

    part = Reply("地震是岩层断裂释放能量。", "地震是岩层断裂释放能量。", 0.9, True, part="地震是咋产生的")
    zh, en = shown_answer(part, "zh"), shown_answer(part, "en")
    assert zh.startswith("地震是岩层断裂释放能量。") and "“地震是咋产生的”" in zh and "把握 90%" in zh
    assert "the part “地震是咋产生的”" in en and "confidence 90%" in en
    whole = Reply("地震是岩层断裂释放能量。", "地震是岩层断裂释放能量。", 0.9, True)
    refused = Reply("这个问题我还没学过。", "乱七八糟", 0.05, False, part="地震是咋产生的")
    assert "地震是咋产生的" not in shown_answer(whole, "zh") and "地震是咋产生的" not in shown_answer(refused, "zh")


def test_a_refusal_says_why_with_the_figures_in_the_readers_language():
    """shown_answer: under a refusal of the gate, which check refused it and the figures it compared (judge's
    Reply.why); nothing under an answer, nor under a raw answer shown with the refusal off."""
    from gpt_mini.knowledge import CONFIDENCE_THRESHOLD, REFUSAL, SIMILARITY_THRESHOLD, Reply
    from ui.chat_tab import shown_answer

    line = f"{REFUSAL}。"
    like = Reply(line, "插座接太多电器会过热。", 0.97, False, similarity=0.31, refused_similarity=0.62,
                 why="refused_like", withheld=True)
    assert "学过要拒答的问题（相似度 0.62）" in shown_answer(like, "zh") and "（0.31）" in shown_answer(like, "zh")
    assert "taught to refuse (0.62)" in shown_answer(like, "en")
    unsure = Reply(line, "乱七八糟", 0.04, False, why="unsure", withheld=True)
    assert f"只有 4%，低于 {round(100 * CONFIDENCE_THRESHOLD)}%" in shown_answer(unsure, "zh")
    unlike = Reply(line, "乱七八糟", 0.9, False, similarity=0.12, why="unlike", withheld=True)
    assert f"similarity 0.12, below {SIMILARITY_THRESHOLD:.2f}" in shown_answer(unlike, "en")
    own = Reply(line + "你可以试试问我：什么是注意力机制？", line, 0.99, False, said_no=True, why="model",
                withheld=True)
    assert "模型自己写出了" in shown_answer(own, "zh")
    bare = Reply(line, line, 0.99, False, said_no=True, why="model", withheld=True)  # 😂😂😂: nothing to suggest
    assert "模型自己写出了" in shown_answer(bare, "zh")  # the line is shown though the text equals the answer
    answered = Reply("注意力机制让模型关注关键位置。", "注意力机制让模型关注关键位置。", 0.99, True)
    raw = Reply("乱七八糟", "乱七八糟", 0.04, False, why="unsure")  # refusal off: the raw answer is shown
    assert "为什么没答" not in shown_answer(answered, "zh") and "为什么没答" not in shown_answer(raw, "zh")
