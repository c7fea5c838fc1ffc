"""The training loop: schedule, the end-to-end run, outputs, callbacks, NaN stop, pause/resume/stop, --resume."""

import json
import math
import threading
import time
from collections import Counter

import pandas as pd
import pytest
import torch
from conftest import PAIRS, write_jsonl

from gpt_mini import checkpoint as C
from gpt_mini import hardware
from gpt_mini.generate import generate
from gpt_mini.train import Trainer, lr_at

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

EXPECTED_COLUMNS = ["step", "train_loss", "eval_loss", "unseen_loss", "lr", "tokens_per_s", "elapsed_s", "eta_s"]
SMALL = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2"]  # even smaller than the e2e model


# ---- learning-rate schedule ---------------------------------------------------------------------------------

def test_lr_linear_warmup_then_cosine_decay_at_known_steps():
    f = lambda step, mr=0.1: lr_at(step, 100, 2.0, 0.1, min_ratio=mr)  # noqa: E731  warmup = 10 steps
    assert math.isclose(f(0), 0.2) and math.isclose(f(4), 1.0) and math.isclose(f(9), 2.0)  # linear warmup
    assert math.isclose(f(10), 2.0)  # peak right after warmup
    assert math.isclose(f(55), (2.0 + 0.2) / 2)  # half way through the decay: midway between peak and floor
    assert math.isclose(f(100), 0.2)  # floor = min_ratio * lr
    assert math.isclose(f(100, mr=0.0), 0.0, abs_tol=1e-12)
    assert math.isclose(f(32.5), 0.2 + 1.8 * (1 + math.cos(math.pi * 0.25)) / 2)  # a quarter into the decay
    warm = [f(s) for s in range(10)]
    assert all(math.isclose(b - a, 0.2) for a, b in zip(warm, warm[1:]))
    decay = [f(s) for s in range(10, 101)]
    assert all(b <= a + 1e-12 for a, b in zip(decay, decay[1:]))
    assert math.isclose(lr_at(0, 100, 1.0, 0.0), 1.0)  # no warmup: start at the peak


# ---- the end-to-end run (shared fixture: trains the tiny model once) ---------------------------------------

def test_end_to_end_tiny_model_answers_every_training_pair_exactly(trained_run):
    assert trained_run.state == "finished"
    assert trained_run.trainer.step == 200
    for prompt, answer in PAIRS:
        assert generate(trained_run.model, trained_run.tok, prompt).answer == answer


def test_trainer_sets_the_thread_count_it_is_given_and_only_then(project, tmp_path, one_torch_thread):
    """The run sets torch's thread count only when the caller passes one (the CLI passes all cores)."""
    before = len(one_torch_thread)
    Trainer(project.cfg(*SMALL, "training.max_steps=2"), save_dir=tmp_path / "a", probe_questions=()).run()
    assert len(one_torch_thread) == before
    Trainer(project.cfg(*SMALL, "training.max_steps=2"), save_dir=tmp_path / "b", probe_questions=(), threads=3).run()
    assert one_torch_thread[before:] == [3]


def test_trainer_leaves_torch_global_random_state_alone(project, tmp_path):
    """Unseeded chat sampling draws from torch's global generator: a training run must not reseed or advance it."""
    state = torch.random.get_rng_state()
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=3"), save_dir=tmp_path, probe_questions=())
    trainer.run()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_same_seed_same_model(project, tmp_path):
    a = Trainer(project.cfg(*SMALL), save_dir=tmp_path / "a", probe_questions=())
    torch.manual_seed(123)  # the global generator does not matter
    b = Trainer(project.cfg(*SMALL), save_dir=tmp_path / "b", probe_questions=())
    c = Trainer(project.cfg(*SMALL, "training.seed=7"), save_dir=tmp_path / "c", probe_questions=())
    wa, wb, wc = (t.model.tok_emb.weight for t in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_gradient_accumulation_equals_one_big_batch(project, tmp_path):
    """batch_size 4 as 2 micro-batches of 2 makes the same update as one micro-batch of 4 (equal token counts,
    so the mean of the micro-batch means is the mean over the batch)."""
    torch.manual_seed(0)
    x = torch.randint(4, 300, (4, 9))
    y = torch.randint(4, 300, (4, 9))
    results = []
    for micro in (2, 4):
        trainer = Trainer(project.cfg(*SMALL, "training.batch_size=4", f"training.micro_batch={micro}"),
                          save_dir=tmp_path / str(micro), probe_questions=())
        parts = iter([(x[i:i + micro], y[i:i + micro], None) for i in range(0, 4, micro)])
        trainer.batches.next = lambda *rank_world, parts=parts: next(parts)
        loss = trainer.train_step()
        results.append((loss, [p.detach().clone() for p in trainer.model.parameters()]))
    (loss_a, params_a), (loss_b, params_b) = results
    assert math.isclose(loss_a, loss_b, rel_tol=1e-5)
    for pa, pb in zip(params_a, params_b):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)


def test_run_writes_all_outputs(trained_run):
    d = trained_run.save_dir
    for name in ("last.pt", "quantized.pt", "train_time.txt", "metrics.csv", "resume.pt"):
        assert (d / name).is_file(), name
    assert "steps=200" in (d / "train_time.txt").read_text(encoding="utf-8")
    ckpt = C.read_checkpoint(d / "last.pt")
    assert ckpt["step"] == 200 and ckpt["config"] == trained_run.cfg
    assert ckpt["metrics"] == trained_run.trainer.history[-1]
    assert not [p.name for p in d.iterdir() if "tmp" in p.name]


def test_checkpoint_holds_each_facts_wordings_and_its_answer(trained_run):
    """The refusal needs, per fact, the training questions and the answer (to find the fact the model answered)."""
    ckpt = C.read_checkpoint(trained_run.save_dir / "last.pt")
    pairs = {(q, a) for q, a in PAIRS}
    assert len(ckpt["course"]) == len(ckpt["course_answers"]) == len({a for _, a in PAIRS})
    for wordings, answer in zip(ckpt["course"], ckpt["course_answers"]):
        assert all((q, answer) in pairs for q in wordings)


def test_metrics_csv_readable_by_pandas_with_expected_columns(trained_run):
    df = pd.read_csv(trained_run.save_dir / "metrics.csv")
    assert list(df.columns) == EXPECTED_COLUMNS
    assert df["step"].tolist() == [50, 100, 150, 200]
    assert df.notna().all().all()
    # held-out wordings of taught facts are learned; facts never taught are not
    assert df["eval_loss"].iloc[-1] < df["eval_loss"].iloc[0]
    assert df["unseen_loss"].iloc[-1] > 5 * df["eval_loss"].iloc[-1]
    assert (df["tokens_per_s"] > 0).all() and (df["elapsed_s"] > 0).all() and (df["eval_loss"] > 0).all()
    assert df["eta_s"].iloc[-1] == 0
    assert df["train_loss"].iloc[-1] < df["train_loss"].iloc[0] / 5
    t = trained_run.cfg["training"]
    for step, lr in zip(df["step"], df["lr"]):  # the lr used for the step that was just taken
        assert math.isclose(lr, lr_at(step - 1, t["max_steps"], t["lr"], t["warmup_ratio"]), rel_tol=1e-6)


def test_on_log_receives_rows_with_answers_and_on_end_once(trained_run):
    logs = trained_run.logs
    assert [r["step"] for r in logs] == [50, 100, 150, 200]
    for row in logs:
        assert set(EXPECTED_COLUMNS) <= set(row)
        assert list(row["answers"]) == [p for p, _ in PAIRS]
        assert all(isinstance(a, str) for a in row["answers"].values())
    assert logs[-1]["answers"] == dict(PAIRS)
    assert trained_run.ends == ["finished"]


# ---- failure, control, resume -------------------------------------------------------------------------------

def test_nan_loss_stops_with_message_and_keeps_a_good_checkpoint(project, tmp_path):
    cfg = project.cfg(*SMALL, "training.lr=1000000.0", "training.grad_clip=0", "training.warmup_ratio=0",
                      "training.eval_interval=1", "training.max_steps=40")
    ends = []
    trainer = Trainer(cfg, save_dir=tmp_path, probe_questions=(),
                      callbacks={"on_end": [lambda t: ends.append(t.state)]})
    state = trainer.run()
    assert state == "failed" and trainer.state == "failed" and ends == ["failed"]
    assert "NaN" in trainer.message
    assert trainer.step < 40
    last = tmp_path / "last.pt"
    if last.exists():  # the last checkpoint must be a good one: loadable, finite weights, finite logits
        model, tok, ckpt = C.load_model(last, trainer.tok)
        bad = [n for n, p in model.state_dict().items() if not torch.isfinite(p).all()]
        assert not bad, f"last.pt (step {ckpt['step']}) holds non-finite weights: {bad[:3]}"
        with torch.no_grad():
            assert torch.isfinite(model(torch.tensor([[1, 10, 20, 30]]))[0]).all()


def _run_in_thread(trainer):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("state", trainer.run()), daemon=True)
    thread.start()
    return thread, out


def _wait(cond, timeout=30.0):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def test_on_step_is_called_once_after_every_optimizer_step(project, tmp_path):
    seen = []
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=7", "training.eval_interval=100"), save_dir=tmp_path,
                      probe_questions=(), callbacks={"on_step": [lambda t: seen.append(t.step)]})
    assert trainer.run() == "finished"
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_on_block_runs_before_every_block_forward_and_backward_and_changes_nothing(project, tmp_path):
    """A dashboard lends the cores to a class mid-step: on_block runs before each block's forward and before each
    block's backward pass (2 x n_layer per micro-batch), the training clock is halted while it runs, and a run that
    waits there ends with exactly the weights of a run that does not."""
    cfg = project.cfg("model.n_layer=2", "model.n_embd=32", "model.n_head=2", "training.max_steps=3",
                      "training.eval_interval=100", "training.batch_size=8", "training.micro_batch=4")
    calls = []

    def on_block(t):
        if t.model.training:  # the probe and the evaluation at the end run in eval mode
            calls.append((t.step, t.clock.since is None))
        time.sleep(0.002)

    plain = Trainer(cfg, save_dir=tmp_path / "plain", probe_questions=())
    paused = Trainer(cfg, save_dir=tmp_path / "paused", probe_questions=(), callbacks={"on_block": [on_block]})
    assert plain.run() == paused.run() == "finished"
    per_step = Counter(step for step, _ in calls)
    assert per_step == {0: 8, 1: 8, 2: 8}  # 2 micro-batches x 2 blocks x (forward + backward)
    assert all(halted for _, halted in calls)
    for a, b in zip(plain.model.parameters(), paused.model.parameters()):
        assert torch.equal(a, b)


def test_pause_and_resume_from_another_thread(project, tmp_path):
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=100000", "training.eval_interval=100000"),
                      save_dir=tmp_path, probe_questions=())
    thread, out = _run_in_thread(trainer)
    try:
        _wait(lambda: trainer.step >= 3)
        trainer.pause()
        time.sleep(0.3)  # let the step in flight finish
        assert trainer.state == "paused"
        paused_at = trainer.step
        time.sleep(0.4)
        assert trainer.step == paused_at  # no steps while paused
        trainer.resume()
        assert trainer.state == "running"
        _wait(lambda: trainer.step >= paused_at + 3)
    finally:
        trainer.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert out["state"] == "stopped"


def test_stop_from_another_thread_ends_within_a_second_and_saves(project, tmp_path):
    # eval_interval is far away: Stop is pressed before the first log, as a student would
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=100000", "training.eval_interval=100000"),
                      save_dir=tmp_path, probe_questions=())
    thread, out = _run_in_thread(trainer)
    _wait(lambda: trainer.step >= 5)
    t0 = time.time()
    trainer.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert time.time() - t0 < 1.0
    assert out["state"] == "stopped" == trainer.state
    assert (tmp_path / "last.pt").is_file(), f"stopped at step {trainer.step} but last.pt was not saved"
    model, _, ckpt = C.load_model(tmp_path / "last.pt", trainer.tok)
    assert ckpt["step"] == trainer.step
    for name, p in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), name


def test_stop_while_paused_ends_the_run(project, tmp_path):
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=100000", "training.eval_interval=2"),
                      save_dir=tmp_path, probe_questions=())
    thread, out = _run_in_thread(trainer)
    _wait(lambda: trainer.step >= 3)
    trainer.pause()
    time.sleep(0.1)
    t0 = time.time()
    trainer.stop()
    thread.join(5)
    assert not thread.is_alive() and time.time() - t0 < 1.0
    assert out["state"] == "stopped"
    assert C.load_model(tmp_path / "last.pt", trainer.tok)[2]["step"] == trainer.step


def test_ctrl_c_during_training_stops_cleanly_and_saves(project, tmp_path):
    def interrupt(trainer, row):
        raise KeyboardInterrupt

    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=1000", "training.eval_interval=3"), save_dir=tmp_path,
                      probe_questions=(), callbacks={"on_log": [interrupt]})
    assert trainer.run() == "stopped"
    assert trainer.step == 3
    assert C.load_model(tmp_path / "last.pt", trainer.tok)[2]["step"] == 3
    assert (tmp_path / "quantized.pt").is_file() and (tmp_path / "train_time.txt").is_file()


def test_exception_in_loop_ends_in_failed_state_with_reason(project, tmp_path):
    def boom(trainer, row):
        raise RuntimeError("disk full (simulated)")

    ends = []
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=1000", "training.eval_interval=2"), save_dir=tmp_path,
                      probe_questions=(), callbacks={"on_log": [boom], "on_end": [lambda t: ends.append(t.state)]})
    assert trainer.run() == "failed"
    assert "disk full (simulated)" in trainer.message and ends == ["failed"]
    assert C.load_model(tmp_path / "last.pt", trainer.tok)[2]["step"] == 2  # the checkpoint before it is kept


def test_resume_continues_from_saved_step(project, tmp_path):
    first = Trainer(project.cfg(*SMALL, "training.max_steps=6", "training.eval_interval=3"), save_dir=tmp_path,
                    probe_questions=())
    assert first.run() == "finished"
    saved = {k: v.clone() for k, v in first.model.state_dict().items()}
    second = Trainer(project.cfg(*SMALL, "training.max_steps=10", "training.eval_interval=3"), save_dir=tmp_path,
                     probe_questions=(), resume=True)
    assert second.step == 6
    for name, p in second.model.state_dict().items():
        assert torch.equal(p, saved[name]), name
    assert len(second.optimizer.state) > 0  # AdamW moments restored too
    assert [r["step"] for r in second.history] == [3, 6]
    assert second.run() == "finished" and second.step == 10
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert df["step"].tolist() == [3, 6, 9, 10]
    assert C.read_checkpoint(tmp_path / "last.pt")["step"] == 10
    e6, e9 = df["elapsed_s"][1], df["elapsed_s"][2]
    assert df["eta_s"][2] == pytest.approx((e9 - e6) / 3 * 1, rel=1e-6)  # this session's pace, not the first run's


def test_weight_average_makes_the_final_model_the_mean_of_the_last_steps_weights(project, tmp_path):
    """average_last 0.5 of 8 steps: the saved model is the plain mean of the weights after steps 4..8 of the same
    run without averaging (torch.stack(...).mean, not the running mean), and the last evaluation measures it."""
    steps = []
    keep = lambda t: steps.append({k: v.clone() for k, v in t.model.state_dict().items()})  # noqa: E731
    plain = Trainer(project.cfg(*SMALL, "training.max_steps=8", "training.eval_interval=4"),
                    save_dir=tmp_path / "plain", probe_questions=(), callbacks={"on_step": [keep]})
    assert plain.run() == "finished"
    averaged = Trainer(project.cfg(*SMALL, "training.max_steps=8", "training.eval_interval=4",
                                   "training.average_last=0.5"), save_dir=tmp_path / "avg", probe_questions=())
    assert averaged.run() == "finished"
    saved = C.read_checkpoint(tmp_path / "avg" / "last.pt")["model"]
    for name, weights in saved.items():
        expected = torch.stack([s[name].float() for s in steps[3:]]).mean(0)
        torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(saved["tok_emb.weight"], steps[-1]["tok_emb.weight"])
    assert averaged.history[-1]["eval_loss"] == pytest.approx(averaged.evaluate(averaged.val_samples))
    assert averaged.history[-1]["eval_loss"] != pytest.approx(plain.history[-1]["eval_loss"])


def test_resume_keeps_the_weight_average(project, tmp_path):
    """A run stopped inside the averaging window saves the mean so far; the resumed run goes on adding to it: its
    model is the mean over the weights of both parts (3 steps before the stop, 2 after)."""
    cfg = project.cfg(*SMALL, "training.max_steps=8", "training.eval_interval=2", "training.average_last=0.5")
    first = Trainer(cfg, save_dir=tmp_path, probe_questions=(),
                    callbacks={"on_step": [lambda t: t.stop() if t.step == 6 else None]})
    assert first.run() == "stopped" and first.average.count == 3
    second = Trainer(cfg, save_dir=tmp_path, probe_questions=(), resume=True)
    assert second.step == 6 and second.average.count == 3
    for name, mean in first.average.mean.items():
        assert torch.equal(second.average.mean[name], mean), name
    later, update = [], second.average.update
    second.average.update = lambda step: (later.append({k: v.clone() for k, v in second.model.state_dict().items()}),
                                          update(step))
    assert second.run() == "finished" and len(later) == 2
    for name, weights in second.model.state_dict().items():
        expected = (3 * first.average.mean[name] + later[0][name] + later[1][name]) / 5
        torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)


def test_pause_after_the_run_ended_does_not_change_its_state(project, tmp_path):
    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=2"), save_dir=tmp_path, probe_questions=())
    assert trainer.run() == "finished"
    trainer.pause()
    trainer.resume()
    trainer.pause()
    assert trainer.state == "finished" and trainer.status()["state"] == "finished"


def test_status_elapsed_is_the_training_clock_of_metrics_csv(project, tmp_path):
    """One number for one run: status()'s elapsed is the clock that metrics.csv's elapsed_s comes from
    (evaluation, saving and probes are off it)."""
    def slow_probe(trainer, row):
        time.sleep(0.5)  # a slow log is not training time

    trainer = Trainer(project.cfg(*SMALL, "training.max_steps=4", "training.eval_interval=2"), save_dir=tmp_path,
                      probe_questions=(), callbacks={"on_log": [slow_probe]})
    trainer.run()
    s = trainer.status()
    assert s["elapsed"] == pytest.approx(trainer.train_seconds, abs=0.01)
    assert trainer.history[-1]["elapsed_s"] == pytest.approx(trainer.train_seconds, abs=0.01)
    assert trainer.train_seconds < 0.5
    assert [st for st, _ in trainer.curves()["losses"]] == [1, 2, 3, 4]


def test_promote_copies_a_usable_run_and_refuses_one_that_is_not(trained_run, tmp_path):
    from gpt_mini.promote import promote

    target = tmp_path / "checkpoints"
    ok, report = promote(trained_run.save_dir, target)  # the real fixed questions: the tiny model does not know them
    assert not ok and not report["fixed_ok"] and not target.exists()
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"prompt": p, "completion": c, "kind": "course", "split": "report"}
                                               for p, c in PAIRS] + [{"prompt": "给我讲个笑话", "kind": "other",
                                                                      "split": "report"}])
    ok, report = promote(trained_run.save_dir, target, fixed=dict(PAIRS[:2]), dev=dev)
    assert ok, report
    assert report["train_f1_ok"] >= 0.95 and report["val_f1_ok"] >= 0.8
    recorded = json.loads((target / "promotion.json").read_text(encoding="utf-8"))["dev"]
    assert recorded["n"] == len(PAIRS) and recorded["lookup_right"] == 1.0  # the training questions themselves
    assert recorded["raw"] == 1.0 and 0 <= recorded["right"] <= recorded["raw"]
    for name in ("last.pt", "quantized.pt", "metrics.csv", "train_time.txt"):
        assert (target / name).read_bytes() == (trained_run.save_dir / name).read_bytes(), name


def test_resume_with_nothing_saved_is_user_error(project, tmp_path):
    from gpt_mini.errors import UserError

    with pytest.raises(UserError):
        Trainer(project.cfg(*SMALL), save_dir=tmp_path / "empty", probe_questions=(), resume=True)


def test_cli_resume_continues_from_saved_step(cli, project, tmp_path):
    args = ["--config", project.config_path, "--set", f"save.dir={tmp_path}", "--set", "model.n_layer=1",
            "--set", "model.n_embd=32", "--set", "training.eval_interval=4"]
    first = cli("gpt_mini.train", *args, "--set", "training.max_steps=4")
    assert first.returncode == 0, first.stderr
    assert C.read_checkpoint(tmp_path / "last.pt")["step"] == 4
    second = cli("gpt_mini.train", *args, "--set", "training.max_steps=6", "--resume")
    assert second.returncode == 0, second.stderr
    assert "step     6/6" in second.stdout and "step     4/" not in second.stdout  # steps 1-4 not redone
    assert C.read_checkpoint(tmp_path / "last.pt")["step"] == 6
    assert pd.read_csv(tmp_path / "metrics.csv")["step"].tolist() == [4, 6]


# ---- precision ----------------------------------------------------------------------------------------------

def _train_losses(project, tmp_path, precision: str) -> tuple[list[float], Trainer]:
    trainer = Trainer(project.cfg(f"training.precision={precision}", "training.max_steps=100"),
                      save_dir=tmp_path / precision, probe_questions=(), keep_resume=False, threads=1)
    assert trainer.precision == precision
    trainer.run()
    return [loss for _, loss in trainer.losses], trainer


@pytest.mark.slow  # two 100-step runs
def test_fp32_and_bf16_loss_curves_agree_for_the_same_seed(project, tmp_path):
    """bf16 autocast changes rounding, not learning: over 100 steps of the same seed and batches, every 10-step mean
    of the bf16 loss is within 0.05 + 5% of the fp32 one (measured here: within 0.003 while the loss falls from 5.2
    to 0.19)."""
    fp32, _ = _train_losses(project, tmp_path, "fp32")
    bf16, trainer = _train_losses(project, tmp_path, "bf16")
    assert len(fp32) == len(bf16) == 100
    means = [(sum(fp32[i:i + 10]) / 10, sum(bf16[i:i + 10]) / 10) for i in range(0, 100, 10)]
    for a, b in means:
        assert abs(a - b) <= 0.05 + 0.05 * a, means
    assert means[-1][0] < means[0][0] / 3 and means[-1][1] < means[0][1] / 3  # both really learned
    for p in trainer.model.parameters():  # master weights stay fp32 under bf16 autocast
        assert p.dtype == torch.float32


@pytest.mark.slow  # a 200-step run
def test_bf16_run_answers_every_training_pair_exactly(project, tmp_path):
    trainer = Trainer(project.cfg("training.precision=bf16"), save_dir=tmp_path, probe_questions=(), threads=1)
    trainer.run()
    trainer.model.eval()
    for prompt, answer in PAIRS:
        assert generate(trainer.model, trainer.tok, prompt).answer == answer
    assert torch.load(tmp_path / "last.pt", weights_only=True)["model"]["tok_emb.weight"].dtype == torch.float32


@pytest.mark.parametrize("fp32_s,bf16_s,expected", [(1.0, 0.5, "bf16"), (1.0, 0.9, "fp32"), (1.0, 1.5, "fp32")])
def test_auto_precision_picks_bf16_only_when_it_is_at_least_1_2x_faster(monkeypatch, fp32_s, bf16_s, expected):
    monkeypatch.setattr(hardware, "_PRECISION_CACHE", {})
    monkeypatch.setattr(hardware, "time_block", lambda device: (fp32_s, bf16_s))
    choice, reason = hardware.pick_precision("auto", torch.device("cpu"))
    assert choice == expected and f"{fp32_s / bf16_s:.2g}x" in reason
    assert hardware.pick_precision("fp32", torch.device("cpu"))[0] == "fp32"  # a set precision is not measured


def test_precision_timing_measures_both_precisions_on_this_cpu():
    fp32_s, bf16_s = hardware.time_block(torch.device("cpu"), rounds=2)
    assert 0 < fp32_s < float("inf") and 0 < bf16_s < float("inf")  # seconds, not a speed bar: no timing limits


def test_a_finished_averaged_run_given_more_steps_goes_on_from_its_last_weights(project, tmp_path):
    """last.pt of a finished averaged run holds the mean; --resume with a larger max_steps continues from the weights
    after its last step (those of the same run without averaging), and the old window's mean is not carried into the
    new window (which starts after step 8 of 16 here)."""
    plain = Trainer(project.cfg(*SMALL, "training.max_steps=8", "training.eval_interval=4"),
                    save_dir=tmp_path / "plain", probe_questions=())
    assert plain.run() == "finished"
    first = Trainer(project.cfg(*SMALL, "training.max_steps=8", "training.eval_interval=4",
                                "training.average_last=0.5"), save_dir=tmp_path / "avg", probe_questions=())
    assert first.run() == "finished"
    longer = Trainer(project.cfg(*SMALL, "training.max_steps=16", "training.eval_interval=4",
                                 "training.average_last=0.25"), save_dir=tmp_path / "avg", probe_questions=(),
                     resume=True)
    assert longer.step == 8 and longer.average.count == 0 and longer.average.mean is None
    for name, weights in plain.model.state_dict().items():
        assert torch.equal(longer.model.state_dict()[name], weights), name
    again = Trainer(project.cfg(*SMALL, "training.max_steps=8", "training.eval_interval=4",
                                "training.average_last=0.5"), save_dir=tmp_path / "avg", probe_questions=(),
                    resume=True)  # nothing left to train: the model stays the mean
    for name, weights in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], weights), name
