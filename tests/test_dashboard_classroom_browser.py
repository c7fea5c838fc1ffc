"""The classroom in a real browser: one server with a teacher password, two browser contexts (teacher and student).
The student sees the teacher's run live and cannot start or stop it; the teacher can. Screenshots of the training
tab in Chinese and English go to a temporary folder, or to docs/ with UPDATE_SCREENSHOTS=1."""

import os
import re
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, TEACHER_PASSWORD, idle, new_page
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
        page.get_by_role("tab", name=re.compile("训练|Training")).click()
        contexts.append(context)
        pages[role] = page
    yield pages, app
    for context in contexts:
        context.close()
    idle(teacher_server)


def set_slider(page, name: str, value):
    box = page.locator(f"#hp-{name} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_student_watches_live_but_cannot_control_the_teachers_run(classroom):
    pages, app = classroom
    teacher, student = pages["teacher"], pages["student"]
    # the student tries first: refused with one line, nothing starts
    student.locator("#train-start").click()
    expect(student.get_by_text("只有老师可以控制训练").first).to_be_visible()
    assert app.run.status()["state"] == "idle"
    # the teacher: password, a small model from the sliders, start
    teacher.locator("#teacher-password input").fill(SECRET)
    for name, value in (("n_layer", 1), ("n_embd", 32), ("n_head", 2), ("max_steps", 5000)):
        set_slider(teacher, name, value)
    set_slider(teacher, "eval_interval", 1000)
    expect(teacher.locator("#train-estimate")).to_contain_text("预计")
    teacher.locator("#train-start").click()
    expect(teacher.locator("#train-status")).to_contain_text("训练中 running")
    # the student's page follows the run live
    expect(student.locator("#train-status")).to_contain_text("训练中 running")
    expect(student.locator("#train-status")).to_contain_text(re.compile(r"[1-9]\d*/5000"))
    student.locator("#train-stop").click()
    expect(student.get_by_text("只有老师可以控制训练").first).to_be_visible()
    student.locator("#train-pause").click()
    assert app.run.status()["state"] == "running"  # neither pause nor stop reached the run
    # a wrong password is refused too, and never shown back
    student.locator("#teacher-password input").fill("guess")
    student.locator("#train-stop").click()
    expect(student.get_by_text("教师密码不对").first).to_be_visible()
    assert app.run.status()["state"] == "running"
    # the teacher stops it; both pages see it stopped
    teacher.locator("#train-stop").click()
    expect(teacher.locator("#train-status")).to_contain_text(re.compile("已停止 stopped|已完成 finished"))
    expect(student.locator("#train-status")).to_contain_text(re.compile("已停止 stopped|已完成 finished"))
    for page in (teacher, student):
        assert SECRET not in page.content()


def test_presets_fill_the_sliders_and_screenshots_in_both_languages(classroom):
    pages, _ = classroom
    teacher, english = pages["teacher"], pages["english"]
    teacher.get_by_label(re.compile("学习率太大会怎样")).check()
    expect(teacher.locator("#hp-lr input")).to_have_value("0.1")
    expect(teacher.locator("#hp-max_steps input[type=number]")).to_have_value("200")
    teacher.get_by_label(re.compile("30 秒演示")).check()
    expect(teacher.locator("#hp-n_layer input[type=number]")).to_have_value("2")
    expect(teacher.locator("#train-minutes input[type=number]")).to_have_value("0.5")
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
    expect(teacher.locator("#train-status")).to_contain_text("空闲 idle")
    expect(english.locator("#train-status")).to_contain_text("空闲 idle")
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
