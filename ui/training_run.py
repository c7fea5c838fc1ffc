"""The one shared training run of this server process.

A background thread drives gpt_mini.train.Trainer (the engine's own loop). Every visitor sees the same run;
the browser polls status() and the bounded logs below. Control: start / pause / resume / stop. A start may queue
more runs (a series, e.g. AdamW then Muon): the same thread starts each when the one before finished normally."""

import ctypes
import gc
import os
import shutil
import threading
import time
from pathlib import Path

from gpt_mini import runs
from gpt_mini.data import check_row
from gpt_mini.errors import UserError
from gpt_mini.run_archive import new_run_dir, safe_name
from gpt_mini.train import Trainer

from .planner import run_names
from .torch_threads import reset_default_for_new_threads

MAX_EXTRA_ROWS = 200
MAX_KEPT_RUNS = 30  # a public Space must not fill its disk: older dashboard runs are removed, with a message
# answers first: while a class is asking (serving.active), training rests, at most this long per step, at the
# next pause point (between two blocks of the forward or backward pass, or after the step)
YIELD_SECONDS = 3.0


def sanitize_name(name: str) -> str:
    """Only letters, digits, '_' and '-'; empty -> 'run' and the time (planner.run_names names every run). The
    result is a folder name under runs/."""
    return safe_name(name, run_names("", "")[0])


def release_free_memory():
    """Hand memory freed by a finished run back to the OS; glibc keeps it otherwise and a long lesson of
    start/stop cycles grows. Linux only; elsewhere nothing to do."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def prune_runs(runs_dir: Path, keep: int) -> list[str]:
    """Remove the oldest run folders so that at most `keep` remain; returns the removed names.
    Only direct children of runs_dir that hold a run's files are touched."""
    found = runs.run_dirs(runs_dir)  # newest first
    removed = found[max(0, keep):]
    for d in removed:
        shutil.rmtree(d, ignore_errors=True)
    return [d.name for d in removed]


def check_extra_rows(rows) -> list[dict]:
    """Students' own question/answer pairs: [[prompt, completion], ...] or dicts; blank rows are skipped."""
    out = []
    for n, row in enumerate(rows or [], 1):
        if not isinstance(row, dict):
            cells = [("" if c is None else str(c)) for c in list(row)[:2]] + ["", ""]
            row = {"prompt": cells[0], "completion": cells[1]}
        if not str(row.get("prompt", "") or "").strip() and not str(row.get("completion", "") or "").strip():
            continue
        out.append(check_row(row, f"自定义数据第 {n} 行", f"custom data row {n}"))
    if len(out) > MAX_EXTRA_ROWS:
        raise UserError(f"自定义数据最多 {MAX_EXTRA_ROWS} 行", f"at most {MAX_EXTRA_ROWS} custom rows")
    return out


class TrainingRun:
    """Owner of the one training thread. How the run stands lives in its Trainer (status(), curves()); this class
    only starts the thread, passes control on, and keeps the last finished run's figures for display."""

    def __init__(self, runs_dir, chat_busy=None):
        """chat_busy: a function that says whether students are waiting for answers (the run then yields)."""
        self.runs_dir, self.chat_busy = Path(runs_dir), chat_busy
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.trainer: Trainer | None = None
        self.name, self.cfg, self.save_dir = "", None, None
        self._stop_requested = self._pause_requested = False
        self._preparing = ""  # message while data and model load (no Trainer yet)
        self._final: dict = {"state": "idle", "step": 0, "max_steps": 0, "train_loss": None, "eval_loss": None,
                             "unseen_loss": None, "elapsed": 0.0, "eta": 0.0, "tokens_per_s": 0.0, "message": "",
                             "precision": "", "version": 0, "answers": {}}
        self._final_curves: dict = {"losses": [], "evals": [], "answers": [], "version": 0}
        self._runs_started = 0  # bumps with every new run, so pollers re-draw
        self._rest_budget: float | None = None  # time.time() until which this step may still rest for questions
        self._queue: list = []  # runs still to come in this series: (cfg, name)
        self._series: dict | None = None  # {"labels": [...], "runs": [folder names so far]} while a series is shown
        self._last_series: tuple = ()  # folder names of the last series that finished every run
        self._about: dict = {}  # the start's preset, size, steps and estimate (RunPlanner.about)

    # ---- control ----
    def start(self, cfg: dict, name: str = "", extra_rows=(), then=(), label: str = "", about=None) -> dict:
        """then: more runs [(cfg, name, label), ...] that the training thread starts one after the other, each when
        the one before finished normally (a stop or a failure cancels the rest); label: how status() calls each run
        of such a series ("第 1/2 次：AdamW"); about: what every page shows of this start (preset, size, steps,
        estimate), returned by status() as 'about'."""
        with self.lock:
            if self._active():
                return dict(self._status(), started=False, message=self._busy_message())
            self._stop_requested = self._pause_requested = False
            self._about = dict(about or {})
            self._queue = [(c, n) for c, n, _ in then]
            self._series = {"labels": [label] + [lab for _, _, lab in then], "runs": []} if then else None
            removed = self._begin(cfg, name)
            self.thread = threading.Thread(target=self._run, args=(cfg, list(extra_rows), self.save_dir),
                                           daemon=True, name="gpt-mini-training")
            self.thread.start()
            note = (f"（只保留最近 {MAX_KEPT_RUNS} 次训练，已删除 {', '.join(removed)} / only the last "
                    f"{MAX_KEPT_RUNS} runs are kept, removed {', '.join(removed)}）") if removed else ""
            message = f"训练已开始：{self.name} / training started: {self.name}{note}"
            return dict(self._status(), started=True, message=self._in_series(message))

    def _begin(self, cfg: dict, name: str) -> list[str]:
        """Pick the folder of a run about to start and empty the figures; returns the old runs removed to make room.
        Call with the lock held."""
        removed = prune_runs(self.runs_dir, MAX_KEPT_RUNS - 1)
        save_dir = new_run_dir(self.runs_dir, sanitize_name(name))
        self.name, self.save_dir, self.cfg, self.trainer = save_dir.name, save_dir, cfg, None
        self._preparing = "正在准备数据和模型 / preparing data and model"
        self._clear("running", cfg["training"]["max_steps"])
        if self._series:
            self._series["runs"].append(self.name)
        return removed

    def pause(self) -> dict:
        with self.lock:
            if self._active():
                self._pause_requested = True
                if self.trainer:
                    self.trainer.pause()
            return self._status()

    def resume(self) -> dict:
        with self.lock:
            self._pause_requested = False
            if self.trainer:
                self.trainer.resume()
            return self._status()

    def stop(self, wait: float = 2.0) -> dict:
        with self.lock:
            thread = self.thread if self._active() else None
            self._stop_requested = True
            if self.trainer:
                self.trainer.stop()
        if thread:
            thread.join(wait)
        return self.status()

    def reset(self) -> dict:
        """Back to an empty chart (the saved run stays on disk); refused while a run is going."""
        with self.lock:
            if self._active():
                return dict(self._status(), message=self._busy_message())
            self.name, self.cfg, self._series, self._about = "", None, None, {}
            self._clear("idle", 0)
            return self._status()

    def _clear(self, state: str, max_steps: int):
        """Empty figures and curves for a run about to start (or none); pollers re-draw. Call with the lock held."""
        self._final = dict(self._final, state=state, step=0, max_steps=max_steps, train_loss=None, eval_loss=None,
                           unseen_loss=None, elapsed=0.0, eta=0.0, tokens_per_s=0.0, message="", answers={})
        self._final_curves = {"losses": [], "evals": [], "answers": [], "version": 0}
        self._runs_started += 1

    def shutdown(self):
        self.stop(wait=1.0)

    # ---- the thread ----
    def _run(self, cfg, extra_rows, save_dir):
        while cfg is not None:  # the runs of a series, one after the other
            cfg, save_dir = self._train(cfg, extra_rows, save_dir)

    def _train(self, cfg, extra_rows, save_dir):
        """One run; returns the next run's (cfg, save_dir), or (None, None)."""
        try:
            trainer = Trainer(cfg, extra_rows=extra_rows, save_dir=save_dir,
                              callbacks={"on_step": [self._on_step], "on_block": [self._rest_while_asked]},
                              keep_resume=False, threads=os.cpu_count() or 1)  # the dashboard has no resume button
        except UserError as e:
            return self._finish(None, "failed", str(e))
        except Exception as e:  # noqa: BLE001 - shown as state failed with the reason
            return self._finish(None, "failed", f"训练出错 / training failed: {type(e).__name__}: {e}")
        with self.lock:
            self.trainer, self._preparing = trainer, ""
            trainer.message = f"精度 / precision: {trainer.precision} · {trainer.precision_reason}"
            if self._pause_requested:
                trainer.pause()
            if self._stop_requested:
                trainer.stop()
        try:
            state = trainer.run()
        except Exception as e:  # noqa: BLE001
            state, trainer.message = "failed", f"训练出错 / training failed: {type(e).__name__}: {e}"
        done = {"finished": f"训练完成，已保存到 runs/{self.name} / finished, saved to runs/{self.name}",
                "stopped": f"训练已停止，已保存到 runs/{self.name} / stopped, saved to runs/{self.name}"}
        message = trainer.message if state == "failed" else done.get(state, "")
        following = self._finish(trainer, state, message)
        del trainer
        release_free_memory()
        return following

    def _finish(self, trainer, state: str, message: str):
        """Keep the finished run's figures and let the Trainer (model, optimizer, data) go. In a series, a run that
        finished normally hands over to the next one at once (no moment without a running state); anything else
        cancels the rest. Returns the next run's (cfg, save_dir), or (None, None)."""
        with self.lock:
            if trainer is not None:
                self._final, self._final_curves = trainer.status(), trainer.curves()
            self._final.update(state=state, message=message, eta=0.0)
            self.trainer, self._preparing = None, ""
            self._runs_started += 1
            if state == "finished" and self._queue and not self._stop_requested:
                cfg, name = self._queue.pop(0)
                self._begin(cfg, name)
                return cfg, self.save_dir
            self._queue = []
            if state == "finished" and self._series and len(self._series["runs"]) == len(self._series["labels"]):
                self._last_series = tuple(self._series["runs"])
                self._final["message"] = (f"{message} · 两次训练都完成了：在“对比”页看两条曲线 / both runs "
                                          "finished: see both curves in the Compare tab")
            return None, None

    def _on_step(self, trainer):
        if trainer.step == trainer.first_step + 1:  # run() claimed all cores; threads started later keep one
            reset_default_for_new_threads()
        self._rest_while_asked(trainer)
        self._rest_budget = None  # the next step may rest again

    def _rest_while_asked(self, trainer):
        """Two cores cannot train at full speed and answer a class at once: while questions are waiting, the run
        rests at its next pause point (a question asked mid-step waits for one block, not for the whole step), at
        most YIELD_SECONDS per step. Training keeps stepping, only slower."""
        if self._rest_budget is None:
            self._rest_budget = time.time() + YIELD_SECONDS
        while self.chat_busy and self.chat_busy() and time.time() < self._rest_budget and not self._stop_requested:
            time.sleep(0.01)

    # ---- reading ----
    def _active(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and self._final["state"] in ("running", "paused")

    def _status(self) -> dict:
        s = self.trainer.status() if self.trainer else dict(self._final)
        if self.trainer and s["state"] == "finished":  # the last step is done, the files not yet: not finished
            s.update(state="running", message="正在保存检查点 / saving the checkpoint")
        if self._preparing:
            s["message"] = self._preparing
        if self._pause_requested and s["state"] == "running" and not self.trainer:
            s["state"] = "paused"
        if s["state"] == "running" and self.chat_busy and self.chat_busy():
            resting = "正在先回答同学的提问，训练暂时放慢 / answering questions first, training slowed"
            s["message"] = f"{s['message']} · {resting}" if s["message"] else resting
        s.update(name=self.name, causal=self.cfg["model"]["causal"] if self.cfg else True,
                 version=(self._runs_started, s["version"]), series=None, about=dict(self._about))
        if self._series:
            labels, runs = self._series["labels"], self._series["runs"]
            s["series"] = {"index": len(runs), "total": len(labels), "label": labels[len(runs) - 1],
                           "runs": list(runs)}
            if s["state"] in ("running", "paused"):
                s["message"] = self._in_series(s["message"])
        return s

    def _in_series(self, message: str) -> str:
        """'第 1/2 次：AdamW / run 1 of 2: AdamW · message' while a series runs. Call with the lock held."""
        if not self._series:
            return message
        i, n = len(self._series["runs"]), len(self._series["labels"])
        where = f"第 {i}/{n} 次：{self._series['labels'][i - 1]} / run {i} of {n}: {self._series['labels'][i - 1]}"
        return f"{where} · {message}" if message else where

    def _busy_message(self) -> str:
        s = self._status()
        return (f"已有一个训练在进行（{s['name']}，第 {s['step']}/{s['max_steps']} 步），请等待或先停止 / "
                f"a run is already going ({s['name']}, step {s['step']}/{s['max_steps']}); wait or stop it first")

    def status(self) -> dict:
        with self.lock:
            return self._status()

    def last_series(self) -> tuple:
        """Folder names of the last series whose runs all finished (oldest first), or ()."""
        with self.lock:
            return self._last_series

    def curves(self) -> dict:
        """Copies of the logs for plotting: per-step losses, eval rows, answers at each eval; `before`: the
        earlier runs of the current series (their saved curves belong beside this one)."""
        with self.lock:
            c = self.trainer.curves() if self.trainer else dict(self._final_curves)
            c.update(version=(self._runs_started, c["version"]), name=self.name, cfg=self.cfg,
                     before=self._series["runs"][:-1] if self._series else [])
            return c
