"""The classroom in a real browser: one server with a teacher password, two browser contexts (teacher and student).
The student sees the teacher's run live and cannot start or stop it; the teacher can. Screenshots of the training
tab in Chinese and English go to a temporary folder, or to docs/ with UPDATE_SCREENSHOTS=1."""

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, TEACHER_PASSWORD, idle, new_page, open_hyperparameters, set_slider
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

pytestmark = pytest.mark.slow
UPDATE = os.environ.get("UPDATE_SCREENSHOTS") == "1"
DOCS = ROOT / "docs" if UPDATE else Path(tempfile.mkdtemp(prefix="gpt_mini_shots_"))
SECRET = TEACHER_PASSWORD


@pytest.fixture(scope="module")
def classroom(teacher_server, chromium):
    """Three browsers on the teacher-mode server, each on the training tab: the teacher, a student, and an
    English-language visitor. The run starts idle."""
    app = idle(teacher_server)["app"]
    contexts, pages = [], {}
    for role, locale in (("teacher", "zh-CN"), ("student", "zh-CN"), ("english", "en-US")):
        context, page = new_page(chromium, teacher_server["url"], locale)
        show_training(page, app)
        contexts.append(context)
        pages[role] = page
    yield pages, app
    for context in contexts:
        context.close()
    idle(teacher_server)


def show_training(page, app):
    """Open the training tab so that its poll runs: through another tab, and again until the page polls, since a
    click on a tab before a busy page has wired its events selects it without telling the server."""
    expect(page.get_by_role("tab", name=re.compile("概览|Overview"))).to_be_visible()
    poll = next(key for key, fn in app.blocks.fns.items() if fn.api_name == "ui_train_poll")
    polls = lambda r: "queue/join" in r.url and json.loads(r.post_data or "{}").get("fn_index") == poll  # noqa: E731
    for _ in range(5):
        page.get_by_role("tab", name=re.compile("对比|Compare")).click()
        page.get_by_role("tab", name=re.compile("训练|Training")).click()
        try:
            page.wait_for_event("request", polls, timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    else:
        raise AssertionError("the training tab never started its poll")
    expect(page.locator("#train-status")).to_be_visible()


def test_student_watches_the_teachers_run_read_only(classroom):
    pages, app = classroom
    teacher, student = pages["teacher"], pages["student"]
    # before the teacher logs in, every page's controls are read-only, with one line saying why
    for page in (teacher, student):
        expect(page.locator("#train-locked")).to_contain_text("训练由老师控制")
        for button in ("#train-start", "#train-pause", "#train-stop", "#train-reset"):
            expect(page.locator(button)).to_be_disabled()
    # the teacher's password opens the teacher's page only; a small model from the sliders, the lesson preset
    teacher.locator("#teacher-password input").fill(SECRET)
    expect(teacher.locator("#train-start")).to_be_enabled()
    expect(teacher.locator("#train-locked")).to_contain_text("已作为老师登录")
    for name, value in (("n_layer", 1), ("n_embd", 32), ("n_head", 2), ("max_steps", 3000)):
        set_slider(teacher, name, value)
    set_slider(teacher, "eval_interval", 1000)
    expect(teacher.locator("#train-estimate")).to_contain_text("预计")
    teacher.locator("#train-start").click()
    expect(teacher.locator("#train-status")).to_contain_text("训练中")
    # the student's page follows the run live, and its panel describes the teacher's run, not the defaults
    expect(student.locator("#train-status")).to_contain_text("训练中")
    # the first step comes after the course data is encoded: minutes on a busy machine (a hang detector only)
    expect(student.locator("#train-status")).to_contain_text(re.compile(r"[1-9]\d*/3000"), timeout=300_000)
    expect(student.locator("#train-estimate")).to_contain_text("老师的训练：本课模型")
    expect(student.locator("#train-estimate")).to_contain_text("3,000")
    open_hyperparameters(student)
    expect(student.locator("#hp-n_embd input[type=number]")).to_have_value("32")
    expect(student.locator("#hp-max_steps input[type=number]")).to_be_disabled()
    expect(student.locator("#train-stop")).to_be_disabled()
    assert re.fullmatch(r"lesson_\d{4}_\d{6}", app.run.status()["name"])  # named by preset and time
    # a wrong password opens nothing and says so on Enter; the server refuses it too
    student.locator("#teacher-password input").fill("guess")
    student.locator("#teacher-password input").press("Enter")
    expect(student.get_by_text("教师密码不对").first).to_be_visible()
    expect(student.locator("#train-stop")).to_be_disabled()
    assert app.run.status()["state"] == "running"
    # the teacher stops it; both pages see it stopped
    teacher.locator("#train-stop").click()
    expect(teacher.locator("#train-status")).to_contain_text(re.compile("已停止|已完成"), timeout=60_000)
    expect(student.locator("#train-status")).to_contain_text(re.compile("已停止|已完成"), timeout=60_000)
    for page in (teacher, student):
        assert SECRET not in page.content()


def test_presets_fill_the_sliders_and_screenshots_in_both_languages(classroom):
    pages, _ = classroom
    teacher, english = pages["teacher"], pages["english"]
    teacher.locator("#teacher-password input").fill(SECRET)
    expect(teacher.locator("#train-start")).to_be_enabled()
    open_hyperparameters(teacher)
    teacher.get_by_label(re.compile("学习率太大会怎样")).check()
    expect(teacher.locator("#hp-lr input")).to_have_value("0.1")
    expect(teacher.locator("#hp-max_steps input[type=number]")).to_have_value("200")
    teacher.get_by_label(re.compile("30 秒演示")).check()
    expect(teacher.locator("#hp-n_layer input[type=number]")).to_have_value("2")
    expect(teacher.locator("#hp-max_steps input[type=number]")).to_have_value("150")
    expect(teacher.locator("#train-estimate")).to_contain_text("预计")
    set_slider(teacher, "n_head", 3)  # 128 is not divisible by 3: one line next to the controls
    expect(teacher.locator("#train-estimate")).to_contain_text("不能被 n_head=3 整除")
    teacher.locator("#train-reset").click()
    expect(teacher.locator("#hp-n_head input[type=number]")).to_have_value("4")
    expect(teacher.locator("#hp-n_layer input[type=number]")).to_have_value("4")
    teacher.locator("#hp-lr-log input[type=number]").fill("-3")
    teacher.locator("#hp-lr-log input[type=number]").press("Enter")
    teacher.locator("#hp-lr-log input[type=range]").focus()
    teacher.keyboard.press("ArrowLeft")  # the log slider moves the exact learning rate with it
    expect(teacher.locator("#hp-lr input")).not_to_have_value("0.003")
    DOCS.mkdir(exist_ok=True)
    teacher.locator("#train-clear").click()  # the teacher clears the stopped run's chart for a fresh start
    expect(teacher.locator("#train-status")).to_contain_text("空闲")
    expect(english.locator("#train-status")).to_contain_text("idle")
    expect(english.locator("#train-status")).not_to_contain_text("空闲")  # one language in the tiles
    teacher.locator("#train-reset").click()
    expect(teacher.locator("#train-estimate")).to_contain_text("预计")
    teacher.screenshot(path=str(DOCS / "screenshot_training.png"), full_page=True)
    expect(english.get_by_role("button", name="Start")).to_be_visible()
    expect(english.get_by_text("Teacher login")).to_be_visible()
    expect(english.locator("#train-estimate")).to_contain_text("about")
    english.screenshot(path=str(DOCS / "screenshot_training_en.png"), full_page=True)


def test_compare_tab_puts_a_run_beside_its_own_snapshot(classroom):
    pages, app = classroom
    student = pages["student"]  # comparing changes nothing shared: students may do it
    run_name = next(d.name for d in app.store.run_dirs())
    student.get_by_role("tab", name="对比").click()
    snapshot = f"训练 run: {run_name} · 第 0 步 / step 0"
    for box, label in (("#compare-a", f"训练 run: {run_name}"), ("#compare-b", snapshot)):
        student.locator(f"{box} input").click()
        student.get_by_role("option", name=label, exact=True).last.click()  # the list just opened
        expect(student.locator(f"{box} input")).to_have_value(label)
    student.locator("#compare-show").click()
    table = student.locator("#compare-table")
    expect(table.locator("tr.differs").first).to_contain_text("训练到第几步")  # the step differs
    expect(table.locator("tr", has_text="层数").first).not_to_have_class("differs")  # same run, same config
    student.locator("#compare-question textarea").fill("什么是注意力机制？")
    student.locator("#compare-ask").click()
    expect(student.locator("#compare-answer-a textarea")).to_have_value(re.compile("把握"))
    expect(student.locator("#compare-answer-b textarea")).to_have_value(re.compile("把握"))


PROJECTOR = (1280, 800)


def on_one_screen(page, selector: str) -> dict:
    """The element's box in the page, asserted inside the projector's first screen: seen without scrolling either
    way (a click may have scrolled the page a little; positions are measured from the page's top)."""
    box = page.locator(selector).bounding_box()
    top = box["y"] + page.evaluate("window.scrollY") if box else None
    assert box and top >= 0 and top + box["height"] <= PROJECTOR[1], (selector, box, top)
    assert box["x"] >= 0 and box["x"] + box["width"] <= PROJECTOR[0], (selector, box)
    return box


def test_projector_shows_buttons_numbers_curves_and_answers_and_the_demo_ends_answering(classroom, teacher_server,
                                                                                       chromium):
    """At 1280x800 the teacher starts the 30-second demo: the buttons, the big numbers, the loss chart and the
    latest answers (wrapped) stay on one screen while it runs, and its last evaluation answers both fixed questions
    word for word and at least one rewording."""
    _, app = classroom
    idle(teacher_server)
    context, page = new_page(chromium, teacher_server["url"], viewport=PROJECTOR)
    show_training(page, app)
    page.locator("#teacher-password input").fill(SECRET)
    page.get_by_label(re.compile("30 秒演示")).check()
    expect(page.locator("#preset-note-demo30")).to_contain_text("150 步")
    expect(page.locator("#train-start")).to_be_enabled()
    page.locator("#train-start").click()
    latest = page.locator("#train-latest")
    expect(latest).to_contain_text(re.compile(r"第 (7[5-9]|[89]\d|1[0-4]\d) 步"), timeout=240_000)
    for selector in ("#train-start", "#train-pause", "#train-resume", "#train-stop", "#train-status",
                     "#train-plot", "#train-latest"):
        on_one_screen(page, selector)
    assert page.evaluate("document.documentElement.scrollWidth") <= PROJECTOR[0]
    assert latest.evaluate("e => e.scrollWidth <= e.clientWidth")  # answers wrap: nothing hidden to the right
    expect(latest.locator(".qa")).to_have_count(4)
    DOCS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the screen the class sees
    page.screenshot(path=str(DOCS / "screenshot_training_projector.png"))  # a run in progress
    expect(page.locator("#train-status")).to_contain_text("已完成", timeout=240_000)
    expect(latest).to_contain_text("第 150 步")
    assert app.run.status()["name"].startswith("demo30_")
    for fixed in ("q1", "q2"):  # both fixed questions, word for word
        expect(latest.locator(f".qa.right[data-probe={fixed}]")).to_have_count(1)
    assert latest.locator(".qa.right[data-probe$=r]").count() >= 1, latest.inner_text()  # and a rewording
    context.close()
