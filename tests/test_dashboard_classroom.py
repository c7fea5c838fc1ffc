"""The classroom on one Space, through a real server and gradio_client: teacher password on every control endpoint,
limits that hold with or without it, presets and the time budget, snapshots, side-by-side comparison, and the zip
round trip."""

import urllib.request
import zipfile

import pandas as pd
import pytest
from conftest import TEACHER_PASSWORD, idle, wait_status
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from gpt_mini.checkpoint import read_checkpoint
from gpt_mini.config import load_config
from gpt_mini.runs import snapshot_steps
from gpt_mini.train import lr_at

SECRET = TEACHER_PASSWORD
TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2}
CONTROLS = ["/train_pause", "/train_resume", "/train_stop", "/train_reset", "/train_promote"]


@pytest.fixture(scope="module")
def server(teacher_server):
    yield idle(teacher_server)
    idle(teacher_server)


def wait_done(client):
    """Until the run (or series) ends (wait_status: a hang detector, not a speed check)."""
    return wait_status(client, lambda s: s["state"] in ("finished", "stopped", "failed"))


def tiny_run(client, name, steps=20, **extra):
    s = client.predict(**TINY, max_steps=steps, eval_interval=10, name=name, teacher_password=SECRET,
                       api_name="/train_start", **extra)
    assert s["started"], s
    done = wait_done(client)
    assert done["state"] == "finished", done
    return done


def test_every_control_endpoint_refuses_a_missing_or_wrong_password(server):
    c, runs_dir = server["client"], server["runs_dir"]
    before = c.predict(api_name="/train_status")
    for password in ("", "wrong password"):
        with pytest.raises(AppError, match="老师|教师密码") as info:
            c.predict(**TINY, max_steps=5, name="student_try", teacher_password=password, api_name="/train_start")
        assert "teacher" in str(info.value)
        for api in CONTROLS:
            with pytest.raises(AppError, match="老师|教师密码"):
                c.predict(teacher_password=password, api_name=api)
    assert not (runs_dir / "student_try").exists()  # nothing changed
    after = c.predict(api_name="/train_status")
    assert (after["state"], after["name"], after["step"]) == (before["state"], before["name"], before["step"])


@pytest.mark.slow
def test_the_teacher_starts_pauses_resumes_and_stops(server):
    c = server["client"]
    s = c.predict(**TINY, max_steps=5000, eval_interval=1000, name="teacher_run", teacher_password=SECRET,
                  api_name="/train_start")
    assert s["started"]
    with pytest.raises(AppError, match="老师"):  # a student cannot stop the teacher's run
        c.predict(api_name="/train_stop")
    assert c.predict(teacher_password=SECRET, api_name="/train_pause")["state"] == "paused"
    assert c.predict(teacher_password=SECRET, api_name="/train_resume")["state"] == "running"
    c.predict(teacher_password=SECRET, api_name="/train_stop")  # waits up to 2 s; a busy machine may need longer
    wait_status(c, lambda st: st["state"] in ("stopped", "finished"))
    assert c.predict(teacher_password=SECRET, api_name="/train_reset")["state"] == "idle"


@pytest.mark.slow  # refusing a run over the time limit first times both models again (Pace.remeasure)
@pytest.mark.parametrize("password", ["", SECRET])
def test_an_oversize_run_is_refused_with_or_without_the_password(server, password):
    c, runs_dir = server["client"], server["runs_dir"]
    oversize = [{"n_layer": 8, "n_embd": 512, "n_head": 8},  # 25.6M parameters
                {"seq_len": 1024}, {"max_steps": 10**9}, {"batch_size": 4096},
                {"max_steps": 20000, "batch_size": 64}]  # the lesson's model, 20,000 steps of 64: hours
    for values in oversize:
        with pytest.raises(AppError) as info:
            c.predict(**values, name="too_big", teacher_password=password, api_name="/train_start")
        assert "Traceback" not in str(info.value)
    assert not (runs_dir / "too_big").exists()
    with pytest.raises(AppError, match="上限|limit"):  # with the password the reason is the limit itself
        c.predict(max_steps=20000, batch_size=64, teacher_password=SECRET, api_name="/train_start")


@pytest.mark.slow
def test_the_password_never_reaches_the_page_or_the_status(server, capfd):
    c = server["client"]
    tiny_run(c, "secret_check", steps=3)
    with urllib.request.urlopen(server["url"]) as r:
        page = r.read().decode("utf-8")
    with urllib.request.urlopen(server["url"] + "config") as r:
        config = r.read().decode("utf-8")
    status = str(c.predict(api_name="/train_status"))
    out, err = capfd.readouterr()
    for text in (page, config, status, out, err):
        assert SECRET not in text


def test_presets_and_time_budget_size_the_run(server):
    c = server["client"]
    base = load_config()
    lesson = c.predict(preset="lesson", api_name="/train_estimate")
    assert lesson["hyperparameters"]["max_steps"] == base["training"]["max_steps"]
    assert lesson["hyperparameters"]["n_embd"] == base["model"]["n_embd"]
    demo = c.predict(preset="demo30", api_name="/train_estimate")
    assert demo["hyperparameters"]["n_layer"] == 2 and demo["hyperparameters"]["max_steps"] == 150
    assert 0 < demo["estimated_seconds"] < lesson["estimated_seconds"] / 20
    assert c.predict(preset="high_lr", api_name="/train_estimate")["hyperparameters"]["lr"] == 0.1
    assert c.predict(preset="no_causal", api_name="/train_estimate")["hyperparameters"]["causal"] is False
    one = c.predict(preset="lesson", minutes=1.0, api_name="/train_estimate")
    two = c.predict(preset="lesson", minutes=2.0, api_name="/train_estimate")
    assert 1 <= one["hyperparameters"]["max_steps"] < two["hyperparameters"]["max_steps"] < 3000
    assert 50 <= one["estimated_seconds"] <= 60 and 110 <= two["estimated_seconds"] <= 120
    with pytest.raises(AppError, match="preset"):
        c.predict(preset="nope", api_name="/train_estimate")


@pytest.mark.slow
def test_a_time_budget_run_ends_its_cosine_schedule_at_the_budget(server):
    c, runs_dir = server["client"], server["runs_dir"]
    planned = c.predict(preset="demo30", minutes=0.1, api_name="/train_estimate")["hyperparameters"]
    s = c.predict(preset="demo30", minutes=0.1, name="budget", teacher_password=SECRET, api_name="/train_start")
    assert s["started"] and s["max_steps"] == planned["max_steps"]
    done = wait_done(c)
    assert done["state"] == "finished" and done["step"] == planned["max_steps"]
    metrics = pd.read_csv(runs_dir / "budget" / "metrics.csv")
    assert metrics["step"].iloc[-1] == planned["max_steps"]
    last_lr = metrics["lr"].iloc[-1]  # the cosine was planned for exactly the budget's steps: it ends with the run
    assert last_lr == pytest.approx(lr_at(planned["max_steps"] - 1, planned["max_steps"], planned["lr"], 0.05))


@pytest.mark.slow
def test_snapshots_are_listed_and_answer(server):
    c, runs_dir = server["client"], server["runs_dir"]
    tiny_run(c, "snaps", steps=20)
    keys = [key for _, key in c.predict(api_name="/checkpoints")]
    steps = snapshot_steps(20)
    assert steps == [0, 2, 5, 10, 20]
    for step in steps:
        assert f"snap:snaps:{step}" in keys
        ckpt = read_checkpoint(runs_dir / "snaps" / "snapshots" / f"step_{step:06d}.pt")
        assert ckpt["step"] == step and ckpt["format"] == "int8"
    reply = c.predict("什么是注意力机制？", refuse=False, checkpoint="snap:snaps:10", api_name="/ask")
    assert isinstance(reply["answer"], str)
    fig = c.predict("什么是注意力机制？", 0, 0, "snap:snaps:0", api_name="/attention")
    assert fig  # the attention tab reads a snapshot too


@pytest.mark.slow
def test_compare_two_runs_side_by_side(server):
    c = server["client"]
    tiny_run(c, "cmp_a", steps=20)
    tiny_run(c, "cmp_b", steps=20, lr=0.001)
    rows = {r["name"]: r for r in c.predict("run:cmp_a", "run:cmp_b", api_name="/compare")}
    assert rows["lr"]["differs"] and rows["lr"]["b"] == 0.001
    assert not rows["n_layer"]["differs"] and rows["n_layer"]["a"] == 1
    assert rows["train_loss"]["differs"]
    early = {r["name"]: r for r in c.predict("run:cmp_a", "snap:cmp_a:5", api_name="/compare")}
    assert early["step"]["a"] == 20 and early["step"]["b"] == 5 and not early["lr"]["differs"]
    both = c.predict("default-fp32", "snap:cmp_a:0", "什么是注意力机制？", api_name="/compare_ask")
    assert [r["checkpoint"] for r in both] == ["default-fp32", "snap:cmp_a:0"]
    assert both[0]["answer"] and both[0]["confidence"] > both[1]["confidence"]  # trained vs untrained


@pytest.mark.slow
def test_the_adamw_vs_muon_preset_trains_both_and_compares_them(server):
    c = server["client"]
    planned = c.predict(preset="adamw_vs_muon", minutes=1.0, api_name="/train_estimate")  # sized: never refused
    assert planned["runs"] == 2 and planned["hyperparameters"]["eval_interval"] == 30
    s = c.predict(preset="adamw_vs_muon", **TINY, max_steps=6, eval_interval=3, teacher_password=SECRET,
                  api_name="/train_start")
    assert s["started"] and s["series"]["total"] == 2 and "第 1/2 次：AdamW" in s["message"]
    done = wait_done(c)  # no "finished" between the two runs: the second starts at once
    assert done["state"] == "finished" and done["series"]["index"] == 2, done
    assert "在“对比”页看两条曲线" in done["message"] and "see both curves in the Compare tab" in done["message"]
    adamw, muon = done["series"]["runs"]
    assert adamw.startswith("adamw_vs_muon_adamw_") and muon.startswith("adamw_vs_muon_muon_")
    assert server["app"].run.last_series() == (adamw, muon)  # what the compare tab puts into A and B
    keys = [key for _, key in c.predict(api_name="/checkpoints")]
    assert f"run:{adamw}" in keys and f"run:{muon}" in keys
    rows = {r["name"]: r for r in c.predict(f"run:{adamw}", f"run:{muon}", api_name="/compare")}
    assert (rows["optimizer"]["a"], rows["optimizer"]["b"]) == ("adamw", "muon") and rows["optimizer"]["differs"]
    for same in ("seed", "max_steps", "n_layer", "lr"):
        assert not rows[same]["differs"], rows[same]
    assert rows["step"]["a"] == rows["step"]["b"] == 6
    picker_a, picker_b, plot, table, _ = c.predict(api_name="/ui_compare_opened")  # opening the compare tab
    assert (picker_a["value"], picker_b["value"]) == (f"run:{adamw}", f"run:{muon}")
    assert plot and "adamw" in table and "muon" in table
    picker_a, *_ = c.predict(api_name="/ui_compare_opened")  # once: the browser's own choice stays after that
    assert "value" not in picker_a and [f"run:{adamw}" in key for _, key in picker_a["choices"]].count(True) >= 1


@pytest.mark.slow
def test_zip_round_trip_and_bad_uploads(server, tmp_path):
    c, runs_dir = server["client"], server["runs_dir"]
    tiny_run(c, "home", steps=20)
    command = c.predict("home", api_name="/run_command")
    assert command.startswith("python -m gpt_mini.train") and "--set model.n_layer=1" in command
    zipped, _ = c.predict("home", api_name="/ui_run_zip")
    with zipfile.ZipFile(zipped) as z:
        assert sorted(z.namelist()) == ["answers.csv", "config.yaml", "metrics.csv", "quantized.pt"]
    _, message = c.predict(handle_file(zipped), "", api_name="/ui_run_upload")  # a student may not add runs
    assert "老师" in message and not any(d.name.startswith("home_") for d in runs_dir.iterdir())
    dropdown, message = c.predict(handle_file(zipped), SECRET, api_name="/ui_run_upload")
    assert "home" in message
    added = [d.name for d in runs_dir.iterdir() if d.name.startswith("home") and d.name != "home"]
    assert len(added) == 1
    keys = [key for _, key in c.predict(api_name="/checkpoints")]
    assert f"run:{added[0]}" in keys
    question = "什么是注意力机制？"
    same = c.predict(question, refuse=False, checkpoint="snap:home:20", api_name="/generate")
    assert c.predict(question, refuse=False, checkpoint=f"run:{added[0]}", api_name="/generate") == same
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../config.yaml", "x: 1")
    _, message = c.predict(handle_file(str(evil)), SECRET, api_name="/ui_run_upload")
    assert "不能用" in message and "cannot be used" in message
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello", encoding="utf-8")
    _, message = c.predict(handle_file(str(not_zip)), SECRET, api_name="/ui_run_upload")
    assert "zip" in message
    assert not (runs_dir / "evil").exists() and not (runs_dir / "notes").exists()
