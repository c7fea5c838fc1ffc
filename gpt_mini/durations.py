"""Durations: the training clock, and how a duration is written everywhere ("2 分 10 秒 / 2 min 10 s" in
sentences, "2:10" on a clock)."""

import time


def duration_parts(seconds: float, clock: bool = False) -> tuple[str, str]:
    """('2 分 10 秒', '2 min 10 s'); with clock=True ('2:10', '2:10')."""
    m, s = divmod(max(0, int(round(seconds or 0))), 60)
    if clock:
        return (f"{m}:{s:02d}",) * 2
    return (f"{m} 分 {s} 秒", f"{m} min {s} s") if m else (f"{s} 秒", f"{s} s")


def fmt_duration(seconds: float, clock: bool = False) -> str:
    """'2 分 10 秒 / 2 min 10 s', or '2:10' with clock=True (the CLI log and the dashboard's tiles)."""
    zh, en = duration_parts(seconds, clock)
    return zh if clock else f"{zh} / {en}"


class Stopwatch:
    """Training time: runs only while steps are computed (not while paused, evaluating or saving)."""

    def __init__(self, before: float = 0.0):
        self.before, self.since = before, None

    def start(self):
        if self.since is None:
            self.since = time.perf_counter()

    def halt(self):
        if self.since is not None:
            self.before, self.since = self.elapsed(), None

    def elapsed(self) -> float:
        return self.before + (time.perf_counter() - self.since if self.since is not None else 0.0)
