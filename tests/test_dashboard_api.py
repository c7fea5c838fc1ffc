"""The dashboard's named API through gradio_client against a real server on a free localhost port."""

import json
import os
import threading
import time

import pytest
from conftest import ROOT, idle, wait_status
from gradio_client import Client
from gradio_client.exceptions import AppError

from gpt_mini import tokenizer as bpe
from gpt_mini.checkpoint import load_model, read_checkpoint
from gpt_mini.data import FIXED_QUESTIONS
from gpt_mini.generate import generate
from gpt_mini.knowledge import REFUSAL, course_of, judge, reply_in_context
from gpt_mini.visualize import trace
from ui.charts import chart
from ui.hyperparameters import make_config
from ui.training_run import MAX_KEPT_RUNS, YIELD_SECONDS, TrainingRun, prune_runs, sanitize_name

Q1, Q2 = list(FIXED_QUESTIONS)


@pytest.fixture(scope="module")
def server(open_server):  # a laptop: every control open
    yield idle(open_server)
    idle(open_server)


def plotly_data(value) -> dict:
    assert isinstance(value, dict) and value.get("type") == "plotly", value
    fig = json.loads(value["plot"])
    assert fig["data"], "figure has no traces"
    return fig


def test_every_named_endpoint_is_listed(server):
    names = set(server["client"].view_api(print_info=False, return_format="dict")["named_endpoints"])
    for name in ("/tokenize", "/generate", "/ask", "/ask_after", "/train_start", "/train_status", "/train_pause",
                 "/train_resume", "/train_stop", "/run_command", "/attention", "/rope", "/trace"):
        assert name in names


def test_tokenize(server):
    tok = server["app"].store.tokenizer()
    text = "什么是注意力机制? GPT <b>&</b> 😀"
    r = server["client"].predict(text, api_name="/tokenize")
    assert r["ids"] == bpe.encode(tok, text)
    assert r["decoded"] == text
    assert r["n_tokens"] == len(r["ids"]) and r["chars"] == len(text)
    assert r["without_decoder"] != text  # the 乱码 lesson: byte symbols, not Chinese
    assert [t["id"] for t in r["tokens"]] == r["ids"]


def test_generate_matches_engine_on_first_fixed_question(server):
    model, tok, _ = load_model(ROOT / "checkpoints" / "last.pt")
    expected = generate(model, tok, Q1).answer
    assert server["client"].predict(Q1, api_name="/generate") == expected
    assert expected == FIXED_QUESTIONS[Q1]  # the shipped default model answers the fixed question


def test_generate_refuses_what_the_model_has_not_learned_unless_told_not_to(server):
    c, question = server["client"], "今天天气怎么样"
    model, tok, ckpt = load_model(ROOT / "checkpoints" / "last.pt")
    raw = generate(model, tok, question)
    assert not judge(raw, question, course_of(ckpt)).known  # the shipped model has not learned this ...
    refused = c.predict(question, api_name="/generate")
    assert refused.startswith(REFUSAL)  # ... so it says so
    assert c.predict(question, refuse=False, api_name="/generate") == raw.answer  # raw output on request
    info = c.predict(question, api_name="/ask")
    assert info["known"] is False and info["answer"] == refused and info["raw_answer"] == raw.answer
    assert info["why"] == judge(raw, question, course_of(ckpt)).why != ""  # which check refused it
    assert info["confidence"] == pytest.approx(raw.confidence, abs=1e-4)
    assert 1 <= len(info["suggestions"]) <= 3 and all(s in refused for s in info["suggestions"])
    known = c.predict(Q1, api_name="/ask")
    assert known["known"] is True and known["answer"] == FIXED_QUESTIONS[Q1] and known["suggestions"] == []
    assert known["why"] == ""


def test_ask_after_answers_a_follow_up_about_the_earlier_exchange(server):
    """/ask_after with history=[[question, answer], ...] answers as the chat does after those exchanges
    (reply_in_context with the last one as the context); /ask judges the same follow-up on its own."""
    c, follow = server["client"], "那它有什么用呢"
    earlier = [["这个问题先不问", "好的。"], [Q1, FIXED_QUESTIONS[Q1]]]  # the last exchange is the context
    model, tok, ckpt = load_model(ROOT / "checkpoints" / "last.pt")

    def local(history):
        return reply_in_context(lambda h, q: generate(model, tok, q, history=h), follow, history, course_of(ckpt))[1]

    with_context, alone = local([tuple(earlier[-1])]), local(())
    assert with_context.text != alone.text  # the shipped model needs the earlier exchange for this follow-up
    info = c.predict(follow, history=earlier, api_name="/ask_after")
    assert info["answer"] == with_context.text and info["known"] == with_context.known
    assert c.predict(follow, api_name="/ask")["answer"] == alone.text


@pytest.mark.parametrize("history", [[["只有问题"]], "什么是注意力机制？", [[Q1, "  "]]])
def test_ask_after_with_a_malformed_history_is_one_clear_line(server, history):
    with pytest.raises(AppError) as info:
        server["client"].predict(Q1, history=history, api_name="/ask_after")
    assert "history" in str(info.value) and " / " in str(info.value) and "Traceback" not in str(info.value)


@pytest.mark.parametrize("run_name", ["../../etc", "没有这次训练"])
def test_run_command_for_a_run_not_listed_is_one_clear_line(server, run_name):
    with pytest.raises(AppError) as info:
        server["client"].predict(run_name, api_name="/run_command")
    assert "请从列表中选择一次训练" in str(info.value) and " / " in str(info.value)


def test_generate_int8_and_settings(server):
    c = server["client"]
    answer = c.predict(Q2, checkpoint="default-int8", api_name="/generate")
    assert isinstance(answer, str) and answer
    sampled = c.predict(Q1, temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=1.2, max_new_tokens=16,
                        stop_strings="。|,", refuse=False, api_name="/generate")  # raw output: stop strings apply
    assert isinstance(sampled, str)
    assert "。" not in sampled


@pytest.mark.parametrize("kwargs, needle", [
    ({"prompt": "   "}, "问题不能为空"),
    ({"prompt": Q1, "top_p": 0.0}, "top_p"),
    ({"prompt": Q1, "temperature": -1.0}, "温度"),
    ({"prompt": Q1, "max_new_tokens": 0}, "max_new_tokens"),
    ({"prompt": Q1, "checkpoint": "../../etc/passwd"}, "没有这个检查点"),
])
def test_generate_bad_input_is_one_clear_line(server, kwargs, needle):
    with pytest.raises(AppError) as info:
        server["client"].predict(**kwargs, api_name="/generate")
    assert needle in str(info.value) and " / " in str(info.value) and "Traceback" not in str(info.value)


def test_generate_edge_inputs_still_answer(server):
    c = server["client"]
    prompts = ("<script>alert(1)</script>什么是注意力机制?", "注" * 1500, "😀 what is 注意力？", "什么是注意力机制？")
    for prompt in prompts:
        assert isinstance(c.predict(prompt, max_new_tokens=8, api_name="/generate"), str)


def test_attention_and_rope_return_figures(server):
    c = server["client"]
    fig, error = c.predict("注意力机制", 1, 2, api_name="/attention")
    heat = plotly_data(fig)["data"][0]
    n = len(heat["x"])
    assert heat["type"] == "heatmap" and len(heat["z"]) == n and error == ""
    assert all(abs(sum(row) - 1) < 1e-4 for row in heat["z"])  # softmax rows
    assert all(heat["z"][i][j] == 0 for i in range(n) for j in range(i + 1, n))  # causal: no future
    figs = c.predict(api_name="/rope")
    assert len(figs) == 3
    for f in figs:
        plotly_data(f)
    figs = c.predict(head_dim=32, freq_index=3, positions=40, api_name="/rope")
    assert len(plotly_data(figs[0])["data"][0]["x"]) == 40


def test_trace_is_the_engines_forward_pass_in_bounded_json(server):
    c = server["client"]
    model, tok, _ = load_model(ROOT / "checkpoints" / "quantized.pt")
    tr = trace(model, tok, Q1)
    r = c.predict(Q1, checkpoint="default-int8", layer=2, head=1, api_name="/trace")
    assert r["ids"] == tr["ids"] and r["layer"] == 2 and r["head"] == 1
    assert r["top"][0]["id"] == int(tr["probs"][-1].argmax()) and len(r["lens"]) == len(tr["layers"]) + 1
    for got, row in zip(r["stages"]["weights"]["values"], tr["layers"][2]["weights"][1].tolist(), strict=True):
        assert got == pytest.approx(row, abs=1e-4)
    long = c.predict("注意力" * 100, api_name="/trace")  # the default checkpoint, the last 24 tokens
    assert len(long["ids"]) == 24 and len(json.dumps(long, ensure_ascii=False)) < 200_000
    with pytest.raises(AppError, match="请输入"):
        c.predict("   ", api_name="/trace")


def test_bad_hyperparameter_is_a_clear_message(server):
    with pytest.raises(AppError) as info:
        server["client"].predict(n_embd=250, n_head=4, api_name="/train_start")
    message = str(info.value)
    assert "n_embd=250" in message and "n_head=4" in message and "Traceback" not in message
    assert server["client"].predict(api_name="/train_status")["state"] != "running"
    with pytest.raises(AppError, match="lr"):
        server["client"].predict(lr=-1.0, api_name="/train_start")


@pytest.mark.slow
def test_training_run_lifecycle(server):
    c, runs_dir = server["client"], server["runs_dir"]
    s = c.predict(max_steps=30, eval_interval=10, batch_size=16, micro_batch=16, name="api test/../x",
                  api_name="/train_start")
    assert s["started"] and s["state"] == "running" and s["max_steps"] == 30
    assert s["name"] == "api_test_x"  # sanitised: no path from the browser
    first = wait_status(c, lambda s: s["step"] >= 1)
    again = c.predict(max_steps=5, api_name="/train_start")
    assert not again["started"] and "already" in again["message"] and "已有" in again["message"]
    assert c.predict(Q1, api_name="/generate")  # chat keeps answering while training runs
    later = wait_status(c, lambda s: s["step"] > first["step"])
    assert later["train_loss"] is not None and later["elapsed"] > 0

    paused = c.predict(api_name="/train_pause")
    assert paused["state"] == "paused"
    step_paused, deadline = -1, time.time() + 60
    while time.time() < deadline:  # the step in progress when pausing still finishes (longer on a busy machine)
        now = c.predict(api_name="/train_status")["step"]
        if now == step_paused:
            break
        step_paused = now
        time.sleep(1.0)
    time.sleep(2.0)
    assert c.predict(api_name="/train_status")["step"] == step_paused  # then no step while paused
    assert c.predict(api_name="/train_resume")["state"] == "running"

    wait_status(c, lambda s: s["eval_loss"] is not None or s["state"] == "finished")
    c.predict(api_name="/train_stop")  # returns within ~2 s; the step in progress may take longer on a busy machine
    stopped = wait_status(c, lambda s: s["state"] in ("stopped", "finished"))
    assert (runs_dir / "api_test_x" / "last.pt").is_file()
    assert (runs_dir / "api_test_x" / "metrics.csv").is_file()
    assert set(stopped) >= {"state", "step", "max_steps", "train_loss", "eval_loss", "elapsed", "message"}
    # the saved run is selectable by its key, and answers
    assert isinstance(c.predict(Q1, max_new_tokens=8, checkpoint="run:api_test_x", api_name="/generate"), str)


@pytest.mark.slow
def test_causal_demo_switch_and_extra_rows(server):
    c = server["client"]
    s = c.predict(max_steps=2, eval_interval=1, batch_size=16, micro_batch=16, causal=False, name="nocausal",
                  extra_rows=[{"prompt": "老师叫什么?", "completion": "老师叫小明。"}], api_name="/train_start")
    assert s["started"] and s["causal"] is False
    s = wait_status(c, lambda s: s["state"] in ("finished", "stopped", "failed"))
    assert s["state"] == "finished", s
    with pytest.raises(AppError, match="prompt"):
        c.predict(max_steps=2, extra_rows=[{"prompt": "只有问题"}], api_name="/train_start")


def test_failure_inside_the_thread_shows_failed_with_reason(tmp_path):
    run = TrainingRun(tmp_path)
    cfg = make_config(None, {"max_steps": 2})
    cfg["data"]["train_path"] = str(tmp_path / "missing.jsonl")
    run.start(cfg, "broken")
    run.thread.join(600)
    s = run.status()
    assert s["state"] == "failed" and "找不到数据文件" in s["message"]


@pytest.mark.slow
def test_concurrent_clients_during_training_get_the_engines_answers(server):
    """Eight gradio_client clients ask at once while a run trains: every answer is the one the engine gives
    alone, the questions really shared batched forward passes, and training kept stepping."""
    c, batcher = server["client"], server["app"].server
    rows = [json.loads(line) for line in (ROOT / "data" / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    prompts = [r["prompt"] for r in rows[:16]]
    model, tok, _ = load_model(ROOT / "checkpoints" / "last.pt")
    expected = {p: generate(model, tok, p).answer for p in prompts}
    c.predict(n_layer=2, n_embd=128, batch_size=16, micro_batch=16, max_steps=5000, eval_interval=1000,
              name="concurrent", api_name="/train_start")
    step_before = wait_status(c, lambda s: s["step"] >= 1)["step"]
    clients = [Client(server["url"], verbose=False) for _ in range(8)]
    got, errors, start = {}, [], threading.Barrier(8)
    batcher.largest_batch = 0

    def ask(i):
        start.wait()
        for p in prompts[2 * i:2 * i + 2]:
            try:
                got[p] = clients[i].predict(p, refuse=False, api_name="/generate")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    wait_status(c, lambda s: s["step"] > step_before)
    c.predict(api_name="/train_stop")
    for client in clients:
        client.close()
    assert not errors and got == expected
    assert batcher.largest_batch >= 2


@pytest.mark.slow
def test_training_rests_while_questions_wait_but_keeps_stepping(tmp_path):
    run = TrainingRun(tmp_path, chat_busy=lambda: True)  # a class that never stops asking
    began = time.time()
    run.start(make_config(None, {"max_steps": 3, "eval_interval": 100, "n_layer": 1, "n_embd": 32, "n_head": 2}))
    deadline = time.time() + 600  # a hang detector: the first step follows encoding the course data
    while "answering questions first" not in run.status()["message"] and time.time() < deadline:
        time.sleep(0.05)
    assert "answering questions first" in run.status()["message"]  # the class sees why training slowed
    run.thread.join(600)  # only catches a hang: encoding the course data can take minutes on a busy machine
    s = run.status()
    assert s["state"] == "finished" and s["step"] == 3  # still trains to the end
    assert time.time() - began >= 3 * YIELD_SECONDS * 0.9  # rested in each step
    assert s["elapsed"] < time.time() - began - 2 * YIELD_SECONDS  # resting is not training time


@pytest.mark.slow
def test_only_the_newest_runs_are_kept_and_nothing_else_is_touched(tmp_path):
    for i in range(MAX_KEPT_RUNS + 4):
        run_dir = tmp_path / f"run_{i:02d}"
        run_dir.mkdir()
        (run_dir / "last.pt").write_bytes(b"x")
        os.utime(run_dir, (1000 + i, 1000 + i))  # run_00 is the oldest
    (tmp_path / "notes").mkdir()  # not a run: no last.pt or metrics.csv
    (tmp_path / "readme.txt").write_text("keep me")
    run = TrainingRun(tmp_path)
    started = run.start(make_config(None, {"max_steps": 1, "n_layer": 1, "n_embd": 32, "n_head": 2}), "new")
    run.thread.join(600)
    assert "run_00" in started["message"] and "run_04" in started["message"]
    left = sorted(d.name for d in tmp_path.iterdir())
    assert [n for n in left if n.startswith("run_")] == [f"run_{i:02d}" for i in range(5, MAX_KEPT_RUNS + 4)]
    assert {"notes", "readme.txt", "new"} <= set(left)
    assert (tmp_path / "new" / "last.pt").is_file()
    assert not (tmp_path / "new" / "resume.pt").exists()  # dashboard runs keep no optimizer state
    assert prune_runs(tmp_path / "missing", 3) == []


def series_configs(project, steps):
    return [project.cfg(training={"max_steps": steps, "eval_interval": 2, "optimizer": optimizer})
            for optimizer in ("adamw", "muon")]


def test_a_series_runs_one_after_the_other_with_the_same_seed(tmp_path, project):
    run = TrainingRun(tmp_path)
    first, second = series_configs(project, 4)
    started = run.start(first, "cmp_adamw", then=[(second, "cmp_muon", "Muon")], label="AdamW")
    run.pause()  # hold the first run at its first step, to read its status
    assert started["started"] and "第 1/2 次：AdamW" in started["message"] and "run 1 of 2: AdamW" in started["message"]
    s = run.status()
    assert s["series"] == {"index": 1, "total": 2, "label": "AdamW", "runs": ["cmp_adamw"]}
    assert "第 1/2 次：AdamW" in s["message"]
    run.resume()
    run.thread.join(600)
    s = run.status()
    assert s["state"] == "finished" and s["name"] == "cmp_muon" and s["step"] == 4
    assert s["series"]["runs"] == ["cmp_adamw", "cmp_muon"] and s["series"]["index"] == 2
    assert "在“对比”页看两条曲线" in s["message"] and "see both curves in the Compare tab" in s["message"]
    assert run.last_series() == ("cmp_adamw", "cmp_muon")
    trained = [read_checkpoint(tmp_path / name / "last.pt")["config"]["training"] for name in run.last_series()]
    assert [t["optimizer"] for t in trained] == ["adamw", "muon"]
    assert trained[0]["seed"] == trained[1]["seed"] and trained[0]["max_steps"] == trained[1]["max_steps"] == 4
    adamw_done = (tmp_path / "cmp_adamw" / "last.pt").stat().st_mtime
    assert adamw_done <= (tmp_path / "cmp_muon" / "metrics.csv").stat().st_mtime  # Muon trained after AdamW ended
    assert run.curves()["before"] == ["cmp_adamw"]
    shown = [line.name for line in chart(run, tmp_path).data]  # the training chart keeps AdamW's curve beside Muon's
    assert any(name.startswith("cmp_adamw") for name in shown) and "训练损失" in shown


def test_stopping_the_first_run_of_a_series_cancels_the_rest(tmp_path, project):
    run = TrainingRun(tmp_path)
    first, second = series_configs(project, 5000)
    run.start(first, "long_adamw", then=[(second, "long_muon", "Muon")], label="AdamW")
    deadline = time.time() + 60
    while run.status()["step"] < 1 and time.time() < deadline:
        time.sleep(0.05)
    run.stop(wait=60)
    assert not run.thread.is_alive()
    s = run.status()
    assert s["state"] == "stopped" and s["name"] == "long_adamw" and s["series"]["runs"] == ["long_adamw"]
    assert not (tmp_path / "long_muon").exists() and run.last_series() == ()
    again = run.start(project.cfg(training={"max_steps": 1}), "after")
    run.thread.join(600)
    assert again["started"] and again["series"] is None and run.status()["state"] == "finished"


def test_sanitize_name():
    assert sanitize_name("../../etc") == "etc"
    assert sanitize_name("我的 run!") == "run"
    assert sanitize_name("").startswith("run_")


def test_load_test_clients_get_the_engines_answers(server):
    """bench.load_test's stdlib HTTP client (Gradio's documented /call API, one session each) against the real
    server: a burst of three clients gets the answers the engine gives alone, without errors."""
    from bench.load_test import HttpClient, burst, connect, percentile

    model, tok, _ = load_model(ROOT / "checkpoints" / "last.pt")
    assert HttpClient(server["url"]).predict(Q1) == generate(model, tok, Q1).answer
    latencies, errors = burst(connect(server["url"], 3, "http"), [Q1, Q2], questions=2)
    assert errors == [] and len(latencies) == 6
    assert percentile([3, 1, 2], 0.5) == 2 and percentile([1, 2, 3, 4], 1.0) == 4
