"""How a run stands, readable and controllable from any thread: pause, resume and stop from the dashboard,
status() and curves() for its charts, while the Trainer's own thread trains."""

import threading
from collections import deque

MAX_LOSSES_KEPT = 20000  # per-step losses kept for the live chart


class RunControl:
    """The Trainer's state shared with other threads, behind one lock. `version` bumps whenever the curves
    change, so a chart redraws only then."""

    def __init__(self):
        self._lock = threading.Lock()
        self.step, self.history, self.tokens_seen = 0, [], 0
        self.losses: deque = deque(maxlen=MAX_LOSSES_KEPT)  # (step, train loss) for every optimizer step
        self.answers: deque = deque(maxlen=50)  # (step, {probe question: greedy answer})
        self.state, self.message, self.version = "idle", "", 0
        self._stop, self._running = threading.Event(), threading.Event()
        self._running.set()

    # ---- control (any thread) ----
    def pause(self):
        with self._lock:
            if self.state in ("idle", "running"):  # idle: paused before run() began
                self.state = "paused"
                self._running.clear()

    def resume(self):
        with self._lock:
            if self.state == "paused":
                self.state = "running"
            self._running.set()

    def stop(self):
        self._stop.set()
        self._running.set()

    # ---- reading (any thread) ----
    def status(self) -> dict:
        """How the run stands, in one consistent snapshot."""
        with self._lock:
            t = self.cfg["training"]
            last = self.history[-1] if self.history else {}
            elapsed = self.clock.elapsed()
            eta = self._eta(elapsed) if self.state in ("running", "paused") else 0.0
            rate = last.get("tokens_per_s") or (self.tokens_seen / elapsed if elapsed > 0 else 0.0)
            return {"state": self.state, "step": self.step, "max_steps": t["max_steps"],
                    "train_loss": self.losses[-1][1] if self.losses else None,
                    "eval_loss": last.get("eval_loss"), "unseen_loss": last.get("unseen_loss") or None,
                    "elapsed": round(elapsed, 2), "eta": round(eta, 1), "tokens_per_s": round(rate, 1),
                    "message": self.message, "precision": self.precision, "version": self.version,
                    "answers": dict(self.answers[-1][1]) if self.answers else {}}

    def curves(self) -> dict:
        """Copies of the logs for plotting: per-step losses, eval rows, answers at each eval."""
        with self._lock:
            return {"losses": list(self.losses), "evals": [{k: v for k, v in r.items()} for r in self.history],
                    "answers": list(self.answers), "version": self.version}

    def _wait_while_paused(self) -> bool:
        """Block while paused (the clock stands still); True if we waited."""
        if self._running.is_set():
            return False
        self.clock.halt()
        self._running.wait()
        return True

    def _set(self, state: str, message: str = ""):
        with self._lock:
            self.state, self.message = state, message
            self.version += 1

    def _record(self, loss: float):
        with self._lock:
            self.step += 1
            self.losses.append((self.step, loss))
            self.version += 1

    def _eta(self, elapsed: float) -> float:
        """Seconds left at this session's pace (a resumed run's earlier time is not this session's pace)."""
        done = self.step - self.first_step
        return (elapsed - self.first_elapsed) / done * (self.cfg["training"]["max_steps"] - self.step) if done else 0.0

