"""The dashboard on a phone (390×844) in Debian's chromium: every tab reachable without Gradio's "…" menu, in Chinese
and English; in the chat tab the answers and the input come before the settings, and the confidence badge fits its
pill in one language. The screenshot goes to a temporary folder, or to docs/ with UPDATE_SCREENSHOTS=1."""

import os
import re
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, idle, new_page
from playwright.sync_api import expect

from gpt_mini.data import FIXED_QUESTIONS
from ui.i18n import TEXT

pytestmark = pytest.mark.slow
UPDATE = os.environ.get("UPDATE_SCREENSHOTS") == "1"
DOCS = ROOT / "docs" if UPDATE else Path(tempfile.mkdtemp(prefix="gpt_mini_shots_"))
PHONE = (390, 844)
TABS = ("tab.overview", "tab.tokenizer", "tab.training", "tab.attention", "tab.chat", "tab.compare")
Q1 = list(FIXED_QUESTIONS)[0]


@pytest.fixture(scope="module")
def app_url(open_server):  # a laptop's server, seen from a phone
    yield idle(open_server)["url"]
    idle(open_server)


@pytest.fixture
def phone(chromium, app_url):
    """A phone-sized page per locale: phone(locale) -> page; contexts closed after the test."""
    contexts = []

    def open_phone(locale: str):
        context, page = new_page(chromium, app_url, locale, viewport=PHONE)
        contexts.append(context)
        return page

    yield open_phone
    for context in contexts:
        context.close()


def box(locator) -> dict:
    locator.scroll_into_view_if_needed()
    b = locator.bounding_box()
    assert b is not None, locator
    return {**b, "top": b["y"] + locator.page.evaluate("window.scrollY")}  # y from the top of the page


@pytest.mark.parametrize("locale, lang", [("zh-CN", 0), ("en-US", 1)])
def test_every_tab_is_a_button_on_a_phone(phone, locale, lang):
    page = phone(locale)
    names = [TEXT[key][lang] for key in TABS]
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_count(len(names))  # none moved into the overflow menu
    expect(page.get_by_label("More tabs")).to_have_count(0)
    for name in names:
        tab = page.get_by_role("tab", name=name, exact=True)
        expect(tab).to_be_visible()
        b = tab.bounding_box()
        assert b["x"] >= 0 and b["x"] + b["width"] <= PHONE[0], (name, b)
        assert tab.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{name!r} is cut short"
    for name in reversed(names):  # each one opens its tab
        page.get_by_role("tab", name=name, exact=True).click()
        expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute("aria-selected", "true")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]  # no sideways scrolling


@pytest.mark.parametrize("locale, lang", [("zh-CN", 0), ("en-US", 1)])
def test_chat_comes_before_its_settings_on_a_phone(phone, locale, lang):
    page = phone(locale)
    page.get_by_role("tab", name=TEXT["tab.chat"][lang], exact=True).click()
    question = page.get_by_placeholder(TEXT["chat.placeholder"][lang])
    expect(question).to_be_visible()
    answers, asked = box(page.locator(".chat-bot")), box(question)
    settings = box(page.locator(".chat-settings .block").first)  # the checkpoint picker
    send = box(page.get_by_role("button", name=TEXT["chat.send"][lang], exact=True))
    assert answers["top"] < asked["top"] < settings["top"], (answers, asked, settings)
    assert asked["top"] + asked["height"] <= PHONE[1] and send["top"] + send["height"] <= PHONE[1], \
        "the input is not on the first screen"
    slider = box(page.locator(".chat-settings input[type=range]").first)
    assert asked["top"] < slider["top"]

    question.fill(Q1)
    question.press("Enter")
    expect(page.get_by_test_id("bot").last).to_contain_text(FIXED_QUESTIONS[Q1], timeout=60_000)
    badge = page.locator(".chat-main .badge")
    confidence = re.escape(TEXT["chat.badge.confidence"][lang].format(pct="@")).replace("@", r"\d+")
    expect(badge).to_have_text(re.compile(f"^{confidence}$"))  # one language
    verdict = badge.locator("xpath=following-sibling::span[1]")
    expect(verdict).to_have_text(re.compile(rf"^({TEXT['chat.badge.known'][lang]}|"
                                            rf"{TEXT['chat.badge.not_learned'][lang]})$"))
    pill, holder = box(badge), box(badge.locator("xpath=ancestor::div[contains(@class,'block')][1]"))
    assert badge.evaluate("e => e.scrollWidth <= e.clientWidth"), "the badge's text overflows its pill"
    assert pill["height"] < 30, pill  # one line
    right = min(holder["x"] + holder["width"], PHONE[0])
    for b in (pill, box(verdict)):
        assert holder["x"] <= b["x"] and b["x"] + b["width"] <= right, (b, holder)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    if lang == 0 or not UPDATE:
        DOCS.mkdir(exist_ok=True)
        name = "screenshot_phone_chat.png" if lang == 0 else "screenshot_phone_chat_en.png"
        page.wait_for_timeout(300)
        # from the top of the page to the first sliders: the answers, the input and the badge above the settings
        page.screenshot(path=str(DOCS / name), full_page=True,
                        clip={"x": 0, "y": 0, "width": PHONE[0], "height": slider["top"] + 60})
