"""What one shared Space can serve: the bounds every dashboard run must stay within, and the time a run will take.

A free Space has 2 vCPU and 16 GB for the whole class. The bounds hold with or without the teacher password; the
command-line trainer has none (it runs on the user's own machine). The time estimate comes from real training
steps timed on this machine (hardware.measure_train_step) for two model sizes, interpolated by FLOPs.
"""

import json
import math
import threading
import time
from dataclasses import dataclass

from gpt_mini import hardware
from gpt_mini.durations import duration_parts, fmt_duration
from gpt_mini.errors import UserError
from gpt_mini.hardware import pick_device, pick_precision
from gpt_mini.train import Trainer
from gpt_mini.visualize import model_size

from .torch_threads import with_all_cores


@dataclass(frozen=True)
class Limits:
    max_params: int = 12_000_000  # 3.5x the lesson's model
    max_seq_len: int = 512
    max_steps: int = 20_000
    max_batch_size: int = 64
    max_seconds: float = 30 * 60  # a run must end inside a 45-minute lesson (the lesson preset is exempt)


LIMITS = Limits()

# Events that share a Gradio concurrency_id share its limit, across tabs: "chat" (chat, compare's question) and
# "model" (attention, the forward pass, compare's curves and the chat's stage chart).
CHAT_CONCURRENCY = 48  # handlers only wait on the batch server; it runs one forward pass for all of them
MODEL_CONCURRENCY = 4  # each handler runs the model itself, on one torch thread


def measure_train_step(cfg: dict, repeats: int = 3) -> dict:
    """Real training steps of cfg's model on the course data (hardware.measure_train_step), and the seconds to
    build its Trainer (data, model)."""
    start = time.perf_counter()
    trainer = Trainer(cfg, save_dir=None, keep_resume=False)
    setup = time.perf_counter() - start
    return dict(hardware.measure_train_step(trainer, repeats), setup_seconds=setup)


def work_per_step(cfg: dict) -> float:
    """Training FLOPs of one optimizer step, up to a constant: tokens per step x FLOPs per token."""
    m, training = cfg["model"], cfg["training"]
    size = model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"])
    return training["batch_size"] * size["flops_train_per_token"]


class Pace:
    """How long training takes on this machine, per precision: real Trainer steps of two models are timed once (the
    default config and a small one, in a short-lived thread with every core), and a straight line through them,
    seconds = fixed cost + cost per unit of work, gives any other config's time. The fixed part matters: a small
    model's step is mostly overhead, not FLOPs."""

    _fits: dict = {}  # (precision, config) -> {"step": (fixed, per work), "eval": (fixed, per work), "setup": s}
    _measuring: dict = {}  # key -> Event set when its timing again ends
    _lock = threading.Lock()  # one measurement per process and config, shared by every app built in it

    def __init__(self, base_cfg: dict):
        self.base_cfg = base_cfg
        self._key = json.dumps(base_cfg, sort_keys=True)

    def _variant(self, precision: str, small: bool) -> dict:
        cfg = {k: dict(v) for k, v in self.base_cfg.items()}
        cfg["training"]["precision"] = precision
        if small:
            cfg["model"].update(n_layer=1, n_embd=64, n_head=2)
        return cfg

    RETRY_SECONDS = 30  # an estimate that would refuse a run is timed again, at most this often

    def measure(self, precision: str = "auto") -> dict:
        """The figures for `precision`, timed on first use; a timing again in progress does not hold them up."""
        chosen = self.resolve(precision)
        key = (chosen, self._key)
        fit = self._fits.get(key)
        if fit is None:
            with self._lock:
                if key not in self._fits:
                    self._fits[key] = self._timed(chosen)
                fit = self._fits[key]
        return dict(fit)

    def _timed(self, precision: str) -> dict:
        points = []
        for small in (False, True):
            cfg = self._variant(precision, small)
            points.append((work_per_step(cfg), with_all_cores(measure_train_step, cfg)))
        (w1, m1), (w2, m2) = points
        fit = {}
        for part, name in (("step", "seconds_per_step"), ("eval", "seconds_per_eval")):
            per_work = max(0.0, (m1[name] - m2[name]) / (w1 - w2))
            fit[part] = (max(0.0, m2[name] - per_work * w2), per_work)
        # The first build encodes the course data, the second finds it in memory (data.load_samples), as every
        # Start after the app's own timing does: a run's setup is the faster one.
        fit["setup"] = min(m1["setup_seconds"], m2["setup_seconds"])
        fit["base"], fit["at"] = m1, time.monotonic()
        return fit

    def remeasure(self, precision: str = "auto", force: bool = False, wait: bool = True) -> bool:
        """Time the two models again (when the timing is stale, or `force`d) and keep, part by part, the faster of
        the old and new figures: other programs can only slow a measurement down, so a run is never refused for
        the rest of a lesson because the machine was busy once. wait=False times in a background thread (an
        estimate on the page must not wait ~20-30 s for it). Returns whether it measured (or started to)."""
        key = (self.resolve(precision), self._key)
        with self._lock:
            running = self._measuring.get(key)
            old = self._fits.get(key)
            age = time.monotonic() - old.get("at", 0.0) if old else float("inf")
            if running is None and old and not force and age < self.RETRY_SECONDS:
                return False
            started = running is None
            if started:
                running = self._measuring[key] = threading.Event()
        if not started:  # a start during a background timing waits for that timing; an estimate does not
            return wait and running.wait(timeout=300)
        if wait:
            self._time_again(key, old, running)
        else:
            threading.Thread(target=self._time_again, args=(key, old, running), daemon=True, name="pace").start()
        return True

    def _time_again(self, key: tuple, old: dict | None, done: threading.Event):
        try:
            new = self._timed(key[0])
            if old:
                total = lambda f: f["step"][0] + f["step"][1] * work_per_step(self.base_cfg)  # noqa: E731
                if total(old) < total(new):
                    new = dict(old, at=new["at"])
            self._fits[key] = new
        finally:
            with self._lock:
                self._measuring.pop(key, None)
            done.set()

    def ready(self, precision: str = "auto") -> bool:
        """Whether measure() would answer at once."""
        return (self.resolve(precision), self._key) in self._fits

    def step_seconds(self, cfg: dict) -> float:
        """Seconds for one optimizer step of cfg (no evaluation)."""
        fit = self.measure(cfg["training"]["precision"])
        return fit["step"][0] + fit["step"][1] * work_per_step(cfg)

    def resolve(self, precision: str) -> str:
        """auto -> the precision a run on this machine would pick (bf16 only where it is faster)."""
        return pick_precision(precision, pick_device(self.base_cfg["training"]["device"]))[0]

    def seconds(self, cfg: dict, steps: int | None = None) -> float:
        """Estimated wall time of a run: setup, the steps, and an evaluation every eval_interval steps."""
        training = cfg["training"]
        steps = training["max_steps"] if steps is None else steps
        fit, work = self.measure(training["precision"]), work_per_step(cfg)
        evals = steps // training["eval_interval"] + (steps % training["eval_interval"] != 0)
        return fit["setup"] + steps * self.step_seconds(cfg) + evals * (fit["eval"][0] + fit["eval"][1] * work)

    def steps_for(self, cfg: dict, seconds: float) -> int:
        """The most steps that fit in `seconds` (evaluations included), at least 1."""
        training = cfg["training"]
        per_step = (self.seconds(cfg, training["eval_interval"]) - self.seconds(cfg, 0)) / training["eval_interval"]
        steps = max(1, math.floor((seconds - self.seconds(cfg, 0)) / per_step))
        while steps > 1 and self.seconds(cfg, steps) > seconds:  # the last evaluation may not fit
            steps -= 1
        return steps


def check_limits(cfg: dict, pace: Pace, limits: Limits = LIMITS, wait: bool = True) -> float:
    """Raise UserError (one line, Chinese and English) if a run is beyond what the Space can serve; else return
    its estimated seconds. The committed config (the lesson preset) is never refused for its estimated time: a
    busy machine must not cancel the lesson. wait=False (the page's estimate): a timing again runs in the
    background and this answer uses the figures at hand; a start waits for it (wait=True)."""
    m, training = cfg["model"], cfg["training"]
    params = model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"])["params"]
    checks = [(params, limits.max_params, "参数量", "parameters"),
              (m["seq_len"], limits.max_seq_len, "上下文长度 seq_len", "seq_len"),
              (training["max_steps"], limits.max_steps, "步数 max_steps", "max_steps"),
              (training["batch_size"], limits.max_batch_size, "批大小 batch_size", "batch_size")]
    for value, bound, zh, en in checks:
        if value > bound:
            raise UserError(f"{zh} {value:,} 超过了共享课堂的上限 {bound:,}，请调小",
                            f"{en} {value:,} is over this shared classroom's limit of {bound:,}; make it smaller")
    seconds = pace.seconds(cfg)
    # the first timing may have met a busy CPU: time again before refusing
    if seconds > limits.max_seconds and pace.remeasure(training["precision"], wait=wait) and wait:
        seconds = pace.seconds(cfg)
    lesson = {k: v for k, v in cfg.items() if k != "save"} == {k: v for k, v in pace.base_cfg.items() if k != "save"}
    if seconds > limits.max_seconds and not lesson:  # the lesson's own model always runs, whatever the estimate
        zh, en = duration_parts(seconds)
        per = fmt_duration(100 * pace.step_seconds(cfg))
        raise UserError(f"按这台机器刚测的速度（每 100 步 {per.split(' / ')[0]}）预计要 {zh}，超过上限 "
                        f"{limits.max_seconds / 60:.0f} 分钟，请减少步数或缩小模型",
                        f"about {en} at this machine's measured pace ({per.split(' / ')[1]} per 100 steps), over "
                        f"the {limits.max_seconds / 60:.0f}-minute limit; use fewer steps or a smaller model")
    return seconds
