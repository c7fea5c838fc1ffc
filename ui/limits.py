"""What one shared Space can serve: the bounds every dashboard run must stay within, and the time a run will take.

A free Space has 2 vCPU and 16 GB for the whole class. The bounds hold with or without the teacher password; the
command-line trainer has none (it runs on the user's own machine). The time estimate comes from real training
steps timed on this machine (visualize.measure_train_step), scaled by FLOPs, and is corrected by every finished run.
"""

import math
import threading
from dataclasses import dataclass

from gpt_mini.errors import UserError
from gpt_mini.train import pick_device, pick_precision
from gpt_mini.visualize import measure_train_step, model_size

from .torch_threads import with_all_cores


@dataclass(frozen=True)
class Limits:
    max_params: int = 12_000_000  # 3.5x the lesson's model
    max_seq_len: int = 512
    max_steps: int = 20_000
    max_batch_size: int = 64
    max_seconds: float = 20 * 60  # a run must end well inside a 45-minute lesson


LIMITS = Limits()


def fmt_duration(seconds: float) -> str:
    """'预计 2 分 10 秒 / about 2 min 10 s'."""
    s = max(0, int(round(seconds)))
    m, s = divmod(s, 60)
    return f"{m} 分 {s} 秒 / {m} min {s} s" if m else f"{s} 秒 / {s} s"


def work_per_step(cfg: dict) -> float:
    """Training FLOPs of one optimizer step, up to a constant: tokens per step x FLOPs per token."""
    m, t = cfg["model"], cfg["training"]
    size = model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"])
    return t["batch_size"] * size["flops_train_per_token"]


class Pace:
    """Seconds per unit of work on this machine, per precision: measured once (a few real Trainer steps of the
    default config, in a short-lived thread with every core), then replaced by what finished runs took."""

    def __init__(self, base_cfg: dict):
        self.base_cfg = base_cfg
        self._measured: dict = {}  # precision -> {"step": s per work unit, "eval": s per eval per work unit, ...}
        self._lock = threading.Lock()

    def measure(self, precision: str = "auto") -> dict:
        chosen = self.resolve(precision)
        with self._lock:
            if chosen not in self._measured:
                cfg = {**self.base_cfg, "training": {**self.base_cfg["training"], "precision": chosen}}
                m = with_all_cores(measure_train_step, cfg)
                work = work_per_step(cfg)
                self._measured[chosen] = {"step": m["seconds_per_step"] / work, "eval": m["seconds_per_eval"] / work,
                                          "setup": m["setup_seconds"], "base_step": m["seconds_per_step"]}
            return dict(self._measured[chosen])

    def resolve(self, precision: str) -> str:
        """auto -> the precision a run on this machine would pick (bf16 only where it is faster)."""
        return pick_precision(precision, pick_device(self.base_cfg["training"]["device"]))[0]

    def observe(self, cfg: dict, steps_done: int, train_seconds: float):
        """A finished run's own pace replaces the estimate for its precision (runs of 20 steps or more)."""
        if steps_done < 20 or train_seconds <= 0:
            return
        chosen = self.resolve(cfg["training"]["precision"])
        with self._lock:
            if chosen in self._measured:
                self._measured[chosen]["step"] = train_seconds / steps_done / work_per_step(cfg)

    def seconds(self, cfg: dict, steps: int | None = None) -> float:
        """Estimated wall time of a run: setup, the steps, and an evaluation every eval_interval steps."""
        t = cfg["training"]
        steps = t["max_steps"] if steps is None else steps
        p, work = self.measure(t["precision"]), work_per_step(cfg)
        evals = steps // t["eval_interval"] + (steps % t["eval_interval"] != 0)
        return p["setup"] + steps * p["step"] * work + evals * p["eval"] * work

    def steps_for(self, cfg: dict, seconds: float) -> int:
        """The most steps that fit in `seconds` (evaluations included), at least 1."""
        t = cfg["training"]
        p, work = self.measure(t["precision"]), work_per_step(cfg)
        per_step = p["step"] * work + p["eval"] * work / t["eval_interval"]
        return max(1, math.floor((seconds - p["setup"]) / per_step))


def check_limits(cfg: dict, pace: Pace, limits: Limits = LIMITS) -> float:
    """Raise UserError (one line, Chinese and English) if a run is beyond what the Space can serve; else return
    its estimated seconds."""
    m, t = cfg["model"], cfg["training"]
    params = model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"])["params"]
    checks = [(params, limits.max_params, "参数量", "parameters"),
              (m["seq_len"], limits.max_seq_len, "上下文长度 seq_len", "seq_len"),
              (t["max_steps"], limits.max_steps, "步数 max_steps", "max_steps"),
              (t["batch_size"], limits.max_batch_size, "批大小 batch_size", "batch_size")]
    for value, bound, zh, en in checks:
        if value > bound:
            raise UserError(f"{zh} {value:,} 超过了共享课堂的上限 {bound:,}，请调小",
                            f"{en} {value:,} is over this shared classroom's limit of {bound:,}; make it smaller")
    seconds = pace.seconds(cfg)
    if seconds > limits.max_seconds:
        raise UserError(f"预计要 {fmt_duration(seconds).split(' / ')[0]}，超过上限 {limits.max_seconds / 60:.0f} 分钟，"
                        "请减少步数或缩小模型",
                        f"about {fmt_duration(seconds).split(' / ')[1]}, over the {limits.max_seconds / 60:.0f}-minute "
                        "limit; use fewer steps or a smaller model")
    return seconds
