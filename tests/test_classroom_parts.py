"""The parts behind the classroom features, without a server: the hyperparameter schema, the teacher gate, the
limits and time estimate, and the zip archive's checks on untrusted uploads."""

import inspect
import re
import zipfile

import pytest
import yaml

from gpt_mini import run_archive
from gpt_mini.config import SCHEMA, load_config, parse_override, resolve
from gpt_mini.data import FIXED_QUESTIONS, PROBE_QUESTIONS, REWORDED_PROBES, read_jsonl
from gpt_mini.durations import fmt_duration
from gpt_mini.errors import UserError
from gpt_mini.generate import generate
from gpt_mini.train import Trainer
from ui.hyperparameters import (
    BY_NAME,
    HYPERPARAMETERS,
    PRESETS,
    api_signature,
    cli_command,
    defaults,
    make_config,
    preset_values,
)
from ui.i18n import TEXT
from ui.limits import LIMITS, Limits, Pace, check_limits
from ui.planner import RunPlanner, run_names
from ui.teacher import ENV_NAME, TeacherGate

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread


def test_every_hyperparameter_is_a_config_key_with_its_default_inside_its_range():
    cfg = load_config()
    for h in HYPERPARAMETERS:
        assert h.name in SCHEMA[h.section]
        value = cfg[h.section][h.name]
        assert h.check(value) == value  # config.yaml's value is a valid slider position
        assert f"hp.{h.name}" in TEXT and f"hp.{h.name}.help" in TEXT  # label and help in both languages
    assert BY_NAME["seq_len"].maximum == LIMITS.max_seq_len and BY_NAME["max_steps"].maximum == LIMITS.max_steps


def test_range_and_type_checks_name_the_hyperparameter():
    for name, bad in (("lr", -1.0), ("lr", float("nan")), ("n_layer", 2.5), ("n_layer", "many"), ("causal", "yes"),
                      ("precision", "fp8"), ("seq_len", LIMITS.max_seq_len + 1)):
        with pytest.raises(UserError, match=name):
            make_config(None, {name: bad})
    assert make_config(None, {"n_layer": 2.0})["model"]["n_layer"] == 2  # a slider's 2.0 is the integer 2
    assert make_config(None, {"max_steps": 10**6}, check_ranges=False)["training"]["max_steps"] == 10**6


def test_api_signature_lists_every_hyperparameter_with_its_type():
    extra = [inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="", annotation=str)]
    sig, annotations = api_signature(extra)
    assert list(sig.parameters) == [h.name for h in HYPERPARAMETERS] + ["name"]
    assert annotations["lr"] == (float | None) and annotations["n_layer"] == (int | None)
    assert all(sig.parameters[h.name].default is None for h in HYPERPARAMETERS)


def test_presets_are_valid_configs():
    cfg = load_config()
    assert preset_values(cfg, "lesson") == {**defaults(cfg), "minutes": 0}
    for key in PRESETS:
        values = preset_values(cfg, key)
        values.pop("minutes")
        make_config(None, values)
    assert preset_values(cfg, "no_causal")["causal"] is False
    with pytest.raises(UserError, match="preset"):
        preset_values(cfg, "nope")


def test_the_cli_command_reproduces_the_run_config():
    base = load_config()
    run = make_config(None, {"n_layer": 2, "lr": 0.001, "causal": False, "max_steps": 300})
    command = cli_command(run, base, "checkpoints/runs/x")
    assert "n_embd" not in command  # only what differs from config.yaml
    overrides = command.split("--set ")[1:]
    again = load_config(overrides=[o.strip() for o in overrides])
    assert again["model"] == run["model"] and again["training"] == run["training"]
    assert parse_override(overrides[-1].strip()) == ("save", "dir", "checkpoints/runs/x")


def test_teacher_gate(monkeypatch):
    gate = TeacherGate("s3cret")
    assert gate.enabled and "s3cret" not in repr(gate)
    gate.check("s3cret")
    for given in ("", None, "S3CRET", "s3cret "):
        with pytest.raises(UserError):
            gate.check(given)
    TeacherGate("").check(None)  # no teacher mode: everything open
    monkeypatch.setenv(ENV_NAME, "from-env")
    assert TeacherGate().enabled
    with pytest.raises(UserError, match="wrong"):
        TeacherGate().check("other")
    monkeypatch.delenv(ENV_NAME)
    assert not TeacherGate().enabled


class FixedPace(Pace):
    """A pace with known numbers (no timing): 0.1 s per step + 0 per work, 1 s per evaluation, 2 s setup."""

    def measure(self, precision="auto"):
        return {"step": (0.1, 0.0), "eval": (1.0, 0.0), "setup": 2.0}

    def remeasure(self, precision="auto", force=False, wait=True):
        return False


def test_time_estimate_and_budget_with_a_known_pace():
    pace = FixedPace(load_config())
    cfg = make_config(None, {"max_steps": 100, "eval_interval": 50})
    assert pace.seconds(cfg) == pytest.approx(2 + 100 * 0.1 + 2 * 1.0)
    steps = pace.steps_for(cfg, 60)
    assert pace.seconds(cfg, steps) <= 60 < pace.seconds(cfg, steps + 1)


def test_one_duration_formatter_writes_words_and_a_clock():
    assert fmt_duration(130) == "2 分 10 秒 / 2 min 10 s" and fmt_duration(9) == "9 秒 / 9 s"
    assert fmt_duration(130, clock=True) == "2:10" and fmt_duration(59.6, clock=True) == "1:00"


def test_a_series_preset_plans_one_run_per_optimizer_with_the_same_seed_and_steps():
    planner = RunPlanner(None, load_config(), FixedPace(load_config()))
    runs = planner.plan_runs({}, 0, "adamw_vs_muon")
    assert [(value, label) for _, _, value, label in runs] == [("adamw", "AdamW"), ("muon", "Muon")]
    (a, seconds_a, _, _), (b, seconds_b, _, _) = runs
    assert a["training"]["optimizer"] == "adamw" and b["training"]["optimizer"] == "muon"
    assert a["model"] == b["model"] and dict(a["training"], optimizer="muon") == b["training"]  # nothing else differs
    assert a["training"]["max_steps"] == PRESETS["adamw_vs_muon"][2]["max_steps"]
    assert seconds_a == seconds_b == pytest.approx(2 + 120 * 0.1 + 4 * 1.0)
    shared = planner.plan_runs({}, 1.0, "adamw_vs_muon")  # one minute for both
    assert sum(seconds for _, seconds, _, _ in shared) <= 60
    assert len(planner.plan_runs({}, 0, "lesson")) == 1 and planner.plan_runs({}, 0, "", "lesson")[0][2] == ""
    with pytest.raises(UserError, match="together"):  # each run fits, both together do not
        planner.plan_runs({"max_steps": 12000}, 0, "adamw_vs_muon")
    names = run_names("adamw_vs_muon", "", ["adamw", "muon"])
    assert re.fullmatch(r"adamw_vs_muon_adamw_\d{4}_\d{6}", names[0]) and names[1].startswith("adamw_vs_muon_muon_")
    assert names[0][-11:] == names[1][-11:]  # one time stamp for both
    assert run_names("adamw_vs_muon", "my class!", ["adamw", "muon"]) == ["my_class_adamw", "my_class_muon"]
    assert re.fullmatch(r"demo30_\d{4}_\d{6}", run_names("demo30", "")[0])  # a run is named by preset and time
    assert run_names("demo30", "mine") == ["mine"] and run_names("", "")[0].startswith("run_")
    assert "train.preset_note.adamw_vs_muon" in TEXT


def test_limits_refuse_with_one_line():
    pace = FixedPace(load_config())
    assert check_limits(make_config(None, {"max_steps": 100}), pace) > 0
    small = Limits(max_params=1000, max_seconds=5)
    with pytest.raises(UserError, match="parameters"):
        check_limits(make_config(None, {}), pace, small)
    with pytest.raises(UserError, match="minute"):
        check_limits(make_config(None, {"n_layer": 1, "n_embd": 32, "n_head": 2, "max_steps": 1000}), pace,
                     Limits(max_seconds=5))


def _zip(path, members: dict):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def packed(tmp_path_factory, project, tok):
    """A real finished run (the engine's Trainer, 4 steps) packed as a zip."""
    from gpt_mini.train import Trainer
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    cfg = load_config(project.config_path, ["training.max_steps=4", "training.eval_interval=2"])
    Trainer(cfg, save_dir=run_dir, keep_resume=False).run()
    return run_archive.export_zip(run_dir, tmp_path_factory.mktemp("zips")), run_dir


def test_zip_round_trip_keeps_the_run(packed, tok, tmp_path):
    path, run_dir = packed
    name = run_archive.import_zip(path, tmp_path, tok)
    assert name == "tiny"
    for member in ("config.yaml", "metrics.csv", "quantized.pt", "answers.csv"):
        assert (tmp_path / name / member).read_bytes() == (
            (run_dir / member).read_bytes() if member != "config.yaml" else zipfile.ZipFile(path).read(member))
    assert run_archive.import_zip(path, tmp_path, tok) == "tiny_2"  # never overwrites


def test_untrusted_zips_are_refused_without_a_trace(packed, tok, tmp_path):
    path, _ = packed
    good = {n: zipfile.ZipFile(path).read(n) for n in zipfile.ZipFile(path).namelist()}
    config = yaml.safe_load(good["config.yaml"])
    bad_model = yaml.safe_dump({**config, "model": {**config["model"], "n_layer": config["model"]["n_layer"] + 1}})
    cases = {
        "traversal": {**good, "../config.yaml": b"x"},
        "absolute": {"/etc/passwd": b"x"},
        "missing": {k: v for k, v in good.items() if k != "quantized.pt"},
        "not_yaml": {**good, "config.yaml": b"model: [unclosed"},
        "bad_config": {**good, "config.yaml": b"model: {n_layer: two}"},
        "other_model": {**good, "config.yaml": bad_model.encode()},
        "garbage_ckpt": {**good, "quantized.pt": b"not a checkpoint"},
        "bad_metrics": {**good, "metrics.csv": b"step,loss\n1,2\n"},
        "bomb": {**good, "metrics.csv": b"0" * (run_archive.MAX_MEMBER_BYTES["metrics.csv"] + 1)},
    }
    out = tmp_path / "runs"
    for label, members in cases.items():
        with pytest.raises(UserError) as info:
            run_archive.import_zip(_zip(tmp_path / f"{label}.zip", members), out, tok)
        assert "不能用" in info.value.zh and "cannot be used" in info.value.en, label
    (tmp_path / "plain.zip").write_bytes(b"just text")
    with pytest.raises(UserError, match="zip"):
        run_archive.import_zip(tmp_path / "plain.zip", out, tok)
    assert not out.exists() or not any(out.iterdir())  # nothing half-unpacked


def test_pace_measures_once_per_process_and_config(monkeypatch):
    import ui.limits as limits
    calls = []
    monkeypatch.setattr(limits, "measure_train_step", lambda cfg: calls.append(cfg["model"]["n_embd"]) or {
        "seconds_per_step": cfg["model"]["n_embd"] / 1000, "seconds_per_eval": 1.0, "setup_seconds": 2.0,
        "tokens_per_step": 100.0})
    monkeypatch.setattr(limits.Pace, "_fits", {})
    cfg = load_config()
    pace = Pace(cfg)
    assert not pace.ready()
    pace.seconds(make_config(None, {}))
    Pace(load_config()).seconds(make_config(None, {"n_layer": 1}))  # a second app in the same process
    assert calls == [cfg["model"]["n_embd"], 64] and pace.ready()
    # the straight line through the two timed models gives both of them back
    assert pace.step_seconds(cfg) == pytest.approx(cfg["model"]["n_embd"] / 1000)


def test_a_runs_setup_is_the_build_that_found_the_course_data_encoded(monkeypatch):
    """The app's timing builds two Trainers on the course data; only the first encodes it (data.load_samples keeps
    it), so a Start pays the second build's setup, not the first's."""
    import ui.limits as limits
    builds = iter([9.0, 0.2])
    monkeypatch.setattr(limits, "measure_train_step", lambda cfg: {
        "seconds_per_step": cfg["model"]["n_embd"] / 1000, "seconds_per_eval": 1.0, "setup_seconds": next(builds),
        "tokens_per_step": 100.0})
    monkeypatch.setattr(limits.Pace, "_fits", {})
    pace, lesson = Pace(load_config()), make_config(None, {})
    assert pace.seconds(lesson, 0) == pytest.approx(0.2)
    assert pace.seconds(lesson, 1) == pytest.approx(0.2 + pace.step_seconds(lesson) + 1.0)


def test_a_slow_first_timing_never_refuses_the_lesson(monkeypatch):
    """Started while the machine was busy, the first timing says the lesson takes hours; the refusal re-times
    the machine (now idle) and the lesson runs. A later busy timing does not undo the good one."""
    import ui.limits as limits
    slow = {"value": 50.0}  # seconds per step of the lesson model while another program loads the machine
    monkeypatch.setattr(limits, "measure_train_step", lambda cfg: {
        "seconds_per_step": (slow["value"] if cfg["model"]["n_embd"] > 64 else 0.01), "seconds_per_eval": 1.0,
        "setup_seconds": 2.0, "tokens_per_step": 100.0})
    monkeypatch.setattr(limits.Pace, "_fits", {})
    monkeypatch.setattr(limits.Pace, "RETRY_SECONDS", 0.0)
    pace = Pace(load_config())
    lesson = make_config(None, {})  # the lesson preset is the committed config
    assert pace.seconds(lesson) > LIMITS.max_seconds  # the busy first timing alone would refuse it
    slow["value"] = 0.5  # the machine is idle again
    assert check_limits(lesson, pace) < LIMITS.max_seconds
    slow["value"] = 80.0  # busy again: the faster timing is kept
    assert pace.remeasure(force=True) and pace.seconds(lesson) < LIMITS.max_seconds
    with pytest.raises(UserError, match="100 steps"):  # a run that is really too long says how long and why
        check_limits(make_config(None, {"max_steps": 20000}), pace)
    slow["value"] = 500.0
    assert pace.remeasure(force=True) and pace.seconds(lesson) < LIMITS.max_seconds  # still the faster timing
    monkeypatch.setattr(limits.Pace, "_fits", {})  # a process whose only timing met a very busy machine
    assert Pace(load_config()).seconds(lesson) > LIMITS.max_seconds
    assert check_limits(lesson, Pace(load_config())) > LIMITS.max_seconds  # the lesson still runs


def test_the_page_estimate_never_waits_for_a_timing_again(monkeypatch):
    """A busy first timing makes a long run look over the limit; the estimate under the sliders answers at once
    from the figures at hand while the machine is timed again in the background, and the next estimate uses the
    new figures. A start (wait=True) waits for its own timing."""
    import threading

    import ui.limits as limits
    busy, timing = {"value": 50.0}, threading.Event()

    def timed_step(cfg):
        if busy["value"] < 50:  # the second timing: hold it until the estimate below has answered
            assert timing.wait(30)
        return {"seconds_per_step": busy["value"] if cfg["model"]["n_embd"] > 64 else 0.01, "seconds_per_eval": 1.0,
                "setup_seconds": 2.0, "tokens_per_step": 100.0}

    monkeypatch.setattr(limits, "measure_train_step", timed_step)
    monkeypatch.setattr(limits.Pace, "_fits", {})
    monkeypatch.setattr(limits.Pace, "_measuring", {})
    monkeypatch.setattr(limits.Pace, "RETRY_SECONDS", 0.0)
    planner = RunPlanner(None, load_config(), Pace(load_config()))
    planner.pace.measure()  # the first timing meets a busy machine
    longer = {"max_steps": 3000}  # not the lesson itself: its estimate may refuse it
    busy["value"] = 0.2
    line = planner.describe(longer, 0)  # answers while the timing again is held
    assert "上限" in line and not timing.is_set()
    started = []  # a start meanwhile waits for the background timing, then runs on its figures
    start = threading.Thread(target=lambda: started.append(planner.plan(longer)[1]))
    start.start()
    timing.set()
    start.join(600)
    assert started and started[0] < LIMITS.max_seconds
    assert "上限" not in planner.describe(longer, 0) and "3,000" in planner.describe(longer, 0)
    busy["value"] = 50.0  # busy again: the start times again and keeps the faster figures
    assert planner.plan(longer)[1] < LIMITS.max_seconds


def test_the_30_second_demo_trains_on_a_course_subset_that_holds_both_fixed_questions():
    """demo30 trains on data/demo_train.jsonl: rows of train.jsonl only (same wordings, same answers), the two fixed
    questions' facts among them, held-out wordings of the same facts as its val; the take-home command says so."""
    base = load_config()
    cfg, _ = RunPlanner(None, base, FixedPace(base)).plan({}, 0, "demo30")
    subset, val = read_jsonl(resolve(cfg["data"]["train_path"])), read_jsonl(resolve(cfg["data"]["val_path"]))
    course = {(r["prompt"], r["completion"]) for r in read_jsonl(resolve(base["data"]["train_path"]))
              if not r.get("history")}
    assert subset and all((r["prompt"], r["completion"]) in course for r in subset)
    facts = {r["completion"] for r in subset}
    assert set(FIXED_QUESTIONS.values()) <= facts and len(facts) < 20
    assert val and {r["completion"] for r in val} <= facts
    assert not {r["prompt"] for r in val} & {r["prompt"] for r in subset}
    assert "--set data.train_path=data/demo_train.jsonl" in cli_command(cfg, base, "checkpoints/runs/demo")
    lesson, _ = RunPlanner(None, base, FixedPace(base)).plan({}, 0, "lesson")
    assert lesson["data"] == base["data"]
    # started from the form (its values, the preset chosen in the radio) it trains on the same subset
    form = {k: v for k, v in preset_values(base, "demo30").items() if k != "minutes"}
    (started, _, _, _), = RunPlanner(None, base, FixedPace(base)).plan_runs(form, 0, "", "demo30")
    assert started["data"] == cfg["data"] and started["model"] == cfg["model"]


@pytest.mark.slow
def test_the_30_second_demo_ends_with_the_fixed_questions_and_a_rewording_answered(tmp_path):
    """The demo preset's model and data, trained for 60 steps (a 30-second budget plans more on this 2-core CPU):
    both fixed questions come out exactly, and at least one student rewording the data never taught."""
    base = load_config()
    cfg, _ = RunPlanner(None, base, FixedPace(base)).plan({"max_steps": 60}, 0, "demo30")
    trainer = Trainer(cfg, save_dir=tmp_path, probe_questions=(), keep_resume=False)
    assert trainer.run() == "finished"
    answers = {q: generate(trainer.model, trainer.tok, q).answer for q in PROBE_QUESTIONS}
    assert all(answers[q] == a for q, a in FIXED_QUESTIONS.items())
    assert any(answers[q] == FIXED_QUESTIONS[fixed] for q, fixed in REWORDED_PROBES.items())
