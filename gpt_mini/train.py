"""The training loop: one reusable object with callbacks and pause/stop control.
The CLI below and the dashboard both drive this same Trainer; there is no second copy of the loop."""

import csv
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

import torch

from . import tokenizer as T
from .checkpoint import atomic_save, load_model, make_checkpoint, model_from_config, quantize_int8
from .config import ROOT, add_config_args, load_config, param_count_formula, resolve
from .data import FIXED_QUESTIONS, PROBE_QUESTIONS, Batches, collate, load_samples, read_jsonl
from .errors import ArgumentParser, UserError, run_cli
from .generate import Settings, generate
from .knowledge import Course, course_of
from .optim import make_optimizer
from .quality import USABLE, dev_summary, usable

MAX_LOSSES_KEPT = 20000  # per-step losses kept for the live chart
METRIC_FIELDS = ["step", "train_loss", "eval_loss", "unseen_loss", "lr", "tokens_per_s", "elapsed_s", "eta_s"]
ANSWER_FIELDS = ["step", "question", "answer"]
DEV_CLASS = ROOT / "data" / "dev_class.jsonl"  # class-like questions, kept out of training
SNAPSHOT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)  # small int8 copies of the model along the run, to chat with later


def snapshot_steps(max_steps: int) -> list[int]:
    """The steps at which a run keeps an int8 snapshot: about 0%, 10%, 25%, 50% and 100% of max_steps."""
    return sorted({round(f * max_steps) for f in SNAPSHOT_FRACTIONS})


def snapshot_path(save_dir: Path, step: int) -> Path:
    return Path(save_dir) / "snapshots" / f"step_{step:06d}.pt"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("没有可用的 CUDA 设备，请用 device: cpu 或 auto", "no CUDA device; use device: cpu or auto")
    return torch.device(name)


_PRECISION_CACHE: dict = {}


def _time_steps(device: torch.device, rounds: int = 5) -> tuple[float, float]:
    """Fastest seconds of a forward+backward through one block shaped like the lesson's model (d 256, 4 heads,
    rows of 256 tokens packed with two samples each), in fp32 and in bf16. A lone matrix multiply is not enough:
    on some CPUs (AMD with AVX512-bf16) it runs bf16 slower while the whole model runs it 2x faster. The two are
    timed in turns and the fastest of each is kept, so a burst of load from another program slows both alike
    instead of deciding the choice."""
    from .model import GPT

    model = GPT(824, n_layer=1, n_head=4, n_embd=256, seq_len=256).to(device)
    idx = torch.randint(4, 824, (4, 256), device=device)
    docs = (torch.arange(256, device=device) >= 128).long().expand(4, 256)
    times: dict = {None: [], torch.bfloat16: []}
    for r in range(rounds + 1):  # the first round warms up
        for dtype in times:
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                model(idx, idx, docs=docs)[1].backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r >= 1:
                times[dtype].append(time.perf_counter() - start)
    return min(times[None]), min(times[torch.bfloat16])


def pick_precision(name: str, device: torch.device) -> tuple[str, str]:
    """'auto' -> bf16 only where it is measurably faster on this CPU/GPU (many laptops lack bf16 units and would be
    slower), else fp32. Measured once per process and device. Returns (precision, reason)."""
    if name != "auto":
        return name, "配置指定 / set in the config"
    if device.type not in _PRECISION_CACHE:
        try:
            fp32, bf16 = _time_steps(device)
        except RuntimeError:  # no bf16 kernels on this device
            fp32, bf16 = 1.0, float("inf")
        speedup = fp32 / bf16
        choice = "bf16" if speedup >= 1.2 else "fp32"
        reason = (f"自动：bf16 比 fp32 快 {speedup:.1f} 倍 / "
                  f"auto: bf16 is {speedup:.1f}x the speed of fp32 on this {device.type}")
        _PRECISION_CACHE[device.type] = (choice, reason)
    return _PRECISION_CACHE[device.type]


def lr_at(step: int, max_steps: int, lr: float, warmup_ratio: float, min_ratio: float = 0.1) -> float:
    """Linear warmup for warmup_ratio of the steps, then cosine decay to min_ratio * lr."""
    warmup = int(max_steps * warmup_ratio)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, max_steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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


class Trainer:
    """Train a GPT from a config, and be the one place that knows how the run stands (status(), curves()).

    Callbacks: on_step(trainer) after every optimizer step, on_log(trainer, row) every eval_interval (row = one
    metrics.csv line plus 'answers' to the probe questions), on_end(trainer). pause(), resume() and stop() may be
    called from any thread. The trainer changes no process-wide torch state: it seeds its own generator and sets
    the torch thread count (`threads`) only in the thread that calls run()."""

    def __init__(self, cfg: dict, extra_rows=(), callbacks: dict | None = None, save_dir=None, resume: bool = False,
                 probe_questions=PROBE_QUESTIONS, keep_resume: bool = True, threads: int | None = None,
                 rank: int = 0, world_size: int = 1, device: torch.device | None = None):
        """keep_resume: also save the optimizer state (resume.pt, 2x the model's size) so --resume can continue.
        rank / world_size: this process's place in a torchrun job (DistributedDataParallel, see main())."""
        self.cfg, self.keep_resume, self.threads = cfg, keep_resume, threads
        self.rank, self.world_size, self.is_main = rank, world_size, rank == 0
        self.callbacks = callbacks or {}
        self.save_dir = Path(save_dir) if save_dir else resolve(cfg["save"]["dir"])
        self.tok = T.load_tokenizer(resolve(cfg["tokenizer"]["path"]))
        self.device = device or pick_device(cfg["training"]["device"])
        m, t = cfg["model"], cfg["training"]
        self.generator = torch.Generator().manual_seed(t["seed"])
        self.rows, self.samples = load_samples(self.tok, resolve(cfg["data"]["train_path"]), m["seq_len"], extra_rows)
        self.val_rows, self.val_samples = load_samples(self.tok, resolve(cfg["data"]["val_path"]), m["seq_len"])
        # Facts the training set never taught: their loss shows what a small model cannot learn (optional file).
        unseen = cfg["data"]["unseen_path"]
        self.unseen_samples = load_samples(self.tok, resolve(unseen), m["seq_len"])[1] if unseen else []
        self.course = Course.from_rows(self.rows).facts  # stored in checkpoints: suggestions when refusing
        self.model = model_from_config(cfg, self.tok.get_vocab_size(), self.generator).to(self.device)
        # bf16 only inside the forward pass (autocast): weights, optimizer state and checkpoints stay fp32.
        self.precision, self.precision_reason = pick_precision(t["precision"], self.device)
        if world_size > 1:  # every rank uses rank 0's choice
            choice = [self.precision, self.precision_reason]
            torch.distributed.broadcast_object_list(choice, src=0)
            self.precision, self.precision_reason = choice
        self.optimizer = make_optimizer(self.model, t)
        # Several processes: every rank computes gradients on its shard, DDP averages them before each update.
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.model) if world_size > 1 else None
        self._lock = threading.Lock()
        self.step, self.history, self.tokens_seen = 0, [], 0
        self.losses: deque = deque(maxlen=MAX_LOSSES_KEPT)  # (step, train loss) for every optimizer step
        self.answers: deque = deque(maxlen=50)  # (step, {probe question: greedy answer})
        self.state, self.message, self.version = "idle", "", 0  # version bumps whenever the curves change
        self.clock = Stopwatch()
        if resume:
            self._load_resume_state()
        self.first_step, self.first_elapsed = self.step, self.clock.elapsed()  # where this session began
        if t["micro_batch"] % world_size:
            raise UserError(f"micro_batch={t['micro_batch']} 应是进程数 {world_size} 的整数倍",
                            f"micro_batch={t['micro_batch']} must be a multiple of the {world_size} processes")
        # Every rank draws the same global micro-batches (same seed) and keeps its own rows of each.
        self.batches = Batches(self.samples, t["micro_batch"], seed=t["seed"] + self.step, min_batch=world_size,
                               pack_to=m["seq_len"] if t["pack"] else None)
        self.probe_questions = list(probe_questions)
        self._stop, self._running = threading.Event(), threading.Event()
        self._running.set()
        self.provenance = provenance(cfg, self.tok, self.precision)

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

    def num_params(self) -> int:
        return self.model.num_params()

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

    # ---- the loop ----
    def run(self) -> str:
        """Train until max_steps, stop() or a non-finite loss. Saves last.pt (atomically) at every log and at the end.
        Returns the final state: finished | stopped | failed."""
        if self.threads:
            torch.set_num_threads(self.threads)  # this thread only
        self._set("running" if self._running.is_set() else "paused", self.message)
        try:
            self._snapshot_if_due()  # step 0: the untrained model
            while self.step < self.cfg["training"]["max_steps"] and not self._stop.is_set():
                if self._wait_while_paused():
                    continue
                loss = self.train_step()
                if loss is None:
                    break
                self._record(loss)
                self._call("on_step")
                if self.is_main and self._log_due():  # one process evaluates, logs and saves
                    self._log()
                self._snapshot_if_due()
        except KeyboardInterrupt:
            self._stop.set()
        except Exception as e:  # noqa: BLE001 - shown as state "failed" with the reason; the last checkpoint stays
            self._set("failed", f"训练出错 / training failed: {type(e).__name__}: {e}")
        self.clock.halt()
        self.train_seconds = self.clock.elapsed()
        if self.state != "failed":
            self._set("stopped" if self.step < self.cfg["training"]["max_steps"] else "finished")
        if self.state != "failed" and self.is_main:
            if not self.history or self.history[-1]["step"] != self.step:
                self.save()
            self.finish()
        self._call("on_end")
        return self.state

    def _wait_while_paused(self) -> bool:
        """Block while paused (the clock stands still); True if we waited."""
        if self._running.is_set():
            return False
        self.clock.halt()
        self._running.wait()
        return True

    def train_step(self) -> float | None:
        """One optimizer step: learning rate, micro-batches (gradient accumulation), clipping, update.
        Returns the mean loss, or None when the loss or the weights became non-finite (the run then fails)."""
        t = self.cfg["training"]
        self.clock.start()
        accum = t["batch_size"] // t["micro_batch"]
        self.optimizer.scale_lr(lr_at(self.step, t["max_steps"], 1.0, t["warmup_ratio"]))
        self.model.train()
        model = self.ddp or self.model
        total = 0.0
        for _ in range(accum):
            x, y, docs = self.batches.next(self.rank, self.world_size)  # this rank's rows of the global batch
            x, y = x.to(self.device), y.to(self.device)
            docs = docs.to(self.device) if docs is not None else None
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                _, loss = model(x, y, docs=docs)
            (loss / accum).backward()
            total += loss.item()
            self.tokens_seen += int((x != T.PAD_ID).sum())
        if self.world_size > 1:  # the logged loss is the mean over every rank's shard, like one process
            total_t = torch.tensor([total], device=self.device)
            torch.distributed.all_reduce(total_t)
            total = float(total_t) / self.world_size
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t["grad_clip"] or float("inf"))
        if not (math.isfinite(total) and math.isfinite(float(grad_norm))):
            self.optimizer.zero_grad(set_to_none=True)
            return self._diverged("损失", "loss")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            return self._diverged("权重", "weights")
        return total / accum

    def _diverged(self, what_zh: str, what_en: str) -> None:
        self._set("failed", f"第 {self.step + 1} 步{what_zh}变成了 NaN/无穷大，已停止；"
                            "请调小学习率（保留了上一个正常的检查点）"
                            f" / {what_en} became NaN/inf at step {self.step + 1}; lower the learning rate "
                            "(last good checkpoint kept)")
        return None

    def _record(self, loss: float):
        with self._lock:
            self.step += 1
            self.losses.append((self.step, loss))
            self.version += 1

    def _eta(self, elapsed: float) -> float:
        """Seconds left at this session's pace (a resumed run's earlier time is not this session's pace)."""
        done = self.step - self.first_step
        return (elapsed - self.first_elapsed) / done * (self.cfg["training"]["max_steps"] - self.step) if done else 0.0

    def _log_due(self) -> bool:
        t = self.cfg["training"]
        return self.step % t["eval_interval"] == 0 or self.step == t["max_steps"]

    def _log(self):
        """Evaluate, save and ask the probe questions, off the training clock; then tell the callbacks."""
        self.clock.halt()
        t = self.cfg["training"]
        since = [loss for step, loss in self.losses if step > (self.history[-1]["step"] if self.history else 0)]
        elapsed = self.clock.elapsed()
        previous = self.history[-1] if self.history else {"elapsed_s": 0.0, "tokens": 0}
        rate = (self.tokens_seen - previous.get("tokens", 0)) / max(1e-9, elapsed - previous["elapsed_s"])
        row = {"step": self.step, "train_loss": sum(since) / max(1, len(since)),
               "eval_loss": self.evaluate(self.val_samples),
               "unseen_loss": self.evaluate(self.unseen_samples) if self.unseen_samples else "",
               "lr": lr_at(self.step - 1, t["max_steps"], t["lr"], t["warmup_ratio"]), "tokens_per_s": rate,
               "elapsed_s": elapsed, "eta_s": self._eta(elapsed), "tokens": self.tokens_seen}
        with self._lock:
            self.history.append(row)
            self.version += 1
        self.save()
        answers = self.probe()
        with self._lock:
            self.answers.append((self.step, answers))
            self.version += 1
        self.write_answers()
        self._call("on_log", dict(row, answers=answers))

    def _snapshot_if_due(self):
        """Keep an int8 copy of the model at the snapshot steps (rank 0 only, off the training clock)."""
        if not self.is_main or self.step not in snapshot_steps(self.cfg["training"]["max_steps"]):
            return
        path = snapshot_path(self.save_dir, self.step)
        if not path.is_file():
            self.clock.halt()
            atomic_save(quantize_int8(self.checkpoint()), path)

    def _set(self, state: str, message: str = ""):
        with self._lock:
            self.state, self.message = state, message
            self.version += 1

    def evaluate(self, samples) -> float:
        """Mean answer-token loss over a whole held-out set."""
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(samples), 32):
                x, y = collate(samples[i:i + 32])
                _, loss = self.model(x.to(self.device), y.to(self.device))
                n = int((y != -100).sum())
                total, count = total + loss.item() * n, count + n
        return total / max(1, count)

    def probe(self) -> dict:
        """Greedy answers to the probe questions, so the class can watch the model learn."""
        answers = {}
        for q in self.probe_questions:
            if self._stop.is_set():  # stop answers within one question, not four
                break
            answers[q] = generate(self.model, self.tok, q, Settings(max_new_tokens=96)).answer
        return answers

    def checkpoint(self) -> dict:
        prov = dict(self.provenance, train_seconds=round(self.clock.elapsed(), 1), steps=self.step)
        return make_checkpoint(self.model, self.cfg, self.tok, self.step, self.history[-1] if self.history else {},
                               self.course, prov)

    def save(self):
        atomic_save(self.checkpoint(), self.save_dir / "last.pt")
        if self.keep_resume:
            atomic_save({"optimizer": self.optimizer.state_dict(), "step": self.step, "history": self.history},
                        self.save_dir / "resume.pt")
        self.write_metrics()

    def _write_csv(self, name: str, fields: list[str], rows):
        """save_dir/name from dict rows, via a temporary file: readers see the old table or the new one."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.save_dir / f".{name}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.save_dir / name)

    def write_metrics(self):
        self._write_csv("metrics.csv", METRIC_FIELDS, self.history)

    def write_answers(self):
        """answers.csv: the probe questions' greedy answers at each evaluation (step, question, answer)."""
        self._write_csv("answers.csv", ANSWER_FIELDS, [{"step": step, "question": q, "answer": a}
                                                       for step, answers in list(self.answers)
                                                       for q, a in answers.items()])

    def finish(self):
        """After the last step: int8 export and the training time."""
        atomic_save(quantize_int8(self.checkpoint()), self.save_dir / "quantized.pt")
        (self.save_dir / "train_time.txt").write_text(
            f"steps={self.step} train_seconds={self.train_seconds:.1f}\n", encoding="utf-8")

    def _load_resume_state(self):
        last, state_file = self.save_dir / "last.pt", self.save_dir / "resume.pt"
        if not last.is_file() or not state_file.is_file():
            raise UserError(f"{self.save_dir} 中没有可继续的训练", f"nothing to resume in {self.save_dir}")
        model, _, ckpt = load_model(last, self.tok, str(self.device))
        self.model.load_state_dict(model.state_dict())
        extra = torch.load(state_file, map_location=self.device, weights_only=True)
        if extra.get("step") != ckpt["step"]:
            raise UserError("last.pt 与 resume.pt 的步数不一致", "last.pt and resume.pt disagree on the step")
        self.optimizer.load_state_dict(extra["optimizer"])
        self.step, self.history = ckpt["step"], list(extra.get("history", []))
        self.tokens_seen = int(self.history[-1].get("tokens", 0)) if self.history else 0
        self.clock = Stopwatch(float(self.history[-1]["elapsed_s"]) if self.history else 0.0)

    def _call(self, name, *args):
        for fn in self.callbacks.get(name, []):
            fn(self, *args)


def provenance(cfg: dict, tok, precision: str) -> dict:
    """What made a checkpoint: config, tokenizer and data hashes, versions, the code commit when known."""
    def sha(path_text):
        path = resolve(path_text) if path_text else None
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path and path.is_file() else None

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"config": cfg, "tokenizer": T.fingerprint(tok),
            "data": {k: sha(v) for k, v in cfg["data"].items()}, "torch": str(torch.__version__),
            "python": platform.python_version(), "commit": commit, "precision": precision,
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def promote(save_dir: Path, target: Path = ROOT / "checkpoints", fixed: dict = FIXED_QUESTIONS,
            force: bool = False, dev: Path | None = DEV_CLASS) -> tuple[bool, dict]:
    """Copy a run's last.pt and quantized.pt to checkpoints/ (the default model) only if it is usable
    (quality.usable: the fixed questions exact, training and held-out wordings answered), or with force=True
    even if not. checkpoints/promotion.json records the check and whether it was forced."""
    model, tok, ckpt = load_model(save_dir / "last.pt")
    cfg = ckpt["config"]
    train_rows = read_jsonl(resolve(cfg["data"]["train_path"]))
    ok, report = usable(model, tok, train_rows, read_jsonl(resolve(cfg["data"]["val_path"])), fixed)
    if ok or force:
        if dev and dev.is_file():  # what the chat tab shows next to the character lookup
            report["dev"] = dev_summary(model, tok, course_of(ckpt), train_rows, dev)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("last.pt", "quantized.pt", "metrics.csv", "train_time.txt"):
            if (save_dir / name).resolve() != (target / name).resolve():
                tmp = target / f".{name}.tmp"
                shutil.copyfile(save_dir / name, tmp)
                os.replace(tmp, target / name)
        record = {"run": save_dir.name, "usable": ok, "forced": force and not ok, "bar": USABLE, **report}
        (target / "promotion.json").write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n",
                                               encoding="utf-8")
    return ok, report


def print_promotion(ok: bool, report: dict, force: bool) -> int:
    for q, a in report["fixed_answers"].items():
        print(f"  {q} -> {a}")
    print(f"训练问法答对 / training wordings right: {report['train_f1_ok']:.1%} (≥95%) | "
          f"新问法答对 / held-out wordings right: {report['val_f1_ok']:.1%} (≥80%)")
    if "dev" in report:
        d = report["dev"]
        print(f"学生式新问题（开发集 {d['split']}，{d['n']} 题）答对 / class-like dev questions right: "
              f"{d['right']:.1%} "
              f"(不拒答 / raw {d['raw']:.1%}; 按字查找 / character lookup {d['lookup_right']:.1%})")
    if ok:
        print("已设为默认模型 / promoted to checkpoints/")
    elif force:
        print("未达标，但按 --force 设为默认模型（记录在 checkpoints/promotion.json）/ below the bar; promoted "
              "anyway because of --force (recorded in checkpoints/promotion.json)")
    else:
        print("未达标，未设为默认模型 / below the bar; not promoted")
    return 0 if ok or force else 1


def fmt_time(seconds: float) -> str:
    """Seconds as m:ss (the CLI log and the dashboard use the same)."""
    seconds = int(seconds or 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def print_log(trainer: Trainer, row: dict):
    print(f"step {row['step']:5d}/{trainer.cfg['training']['max_steps']} | train {row['train_loss']:.4f} | "
          f"eval {row['eval_loss']:.4f} | lr {row['lr']:.2e} | {row['tokens_per_s']:.0f} tok/s | "
          f"elapsed {fmt_time(row['elapsed_s'])} | ETA {fmt_time(row['eta_s'])}", flush=True)
    for q, a in row["answers"].items():
        print(f"    {q} -> {a}", flush=True)


def main(argv=None):
    parser = ArgumentParser(description="训练 gpt_mini / train gpt_mini")
    add_config_args(parser)
    parser.add_argument("--resume", action="store_true", help="从 save.dir/last.pt 继续训练 / continue from last.pt")
    parser.add_argument("--promote", action="store_true",
                        help="训练完成且答对固定问题时设为默认模型 / make the run the default model if it passes")
    parser.add_argument("--promote_dir", default=None, metavar="RUN_DIR",
                        help="不训练，只检查并提升一个已有的训练 / promote an existing run without training")
    parser.add_argument("--force", action="store_true",
                        help="未达标也设为默认模型（会记录下来）/ promote even below the bar (recorded)")
    args = parser.parse_args(argv)
    if args.promote_dir is not None:
        run_dir = resolve(args.promote_dir)
        if not (run_dir / "last.pt").is_file() or not (run_dir / "quantized.pt").is_file():
            raise UserError(f"{run_dir} 里没有完成的训练", f"no finished run in {run_dir}")
        return print_promotion(*promote(run_dir, force=args.force), args.force)
    cfg = load_config(args.config, args.overrides)
    rank, world, device, threads = distributed_setup(cfg)
    try:
        code = _train(cfg, args, rank, world, device, threads)
        if world > 1:  # wait for rank 0's last eval and save: gloo aborts a rank that tears down alone
            torch.distributed.barrier()
        return code
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def distributed_setup(cfg: dict):
    """Under torchrun (WORLD_SIZE > 1): join the process group, gloo on CPU and nccl on CUDA, one GPU per local
    rank, the CPU cores shared between the local processes. Alone: rank 0 of 1 with every core."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None, os.cpu_count() or 1
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg["training"]["device"])
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    elif device.type != "cpu":
        raise UserError("多进程训练只支持 CPU 和 CUDA", "multi-process training supports CPU and CUDA only")
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return rank, world, device, max(1, (os.cpu_count() or 1) // local_world)


def _train(cfg, args, rank: int, world: int, device, threads: int) -> int:
    say = print if rank == 0 else (lambda *a, **k: None)
    trainer = Trainer(cfg, callbacks={"on_log": [print_log]}, resume=args.resume, threads=threads, rank=rank,
                      world_size=world, device=device)
    V, d, L = trainer.tok.get_vocab_size(), cfg["model"]["n_embd"], cfg["model"]["n_layer"]
    say(f"参数量 / parameters: {trainer.num_params():,} = V·d + L·(12d²+11d) + d = "
        f"{V}·{d} + {L}·(12·{d}² + 11·{d}) + {d} = {param_count_formula(V, d, L):,}")
    say(f"精度 / precision: {trainer.precision} ({trainer.precision_reason})")
    say(f"设备 / device: {trainer.device} | processes {world} | threads {threads} | samples {len(trainer.samples)} | "
        f"steps {cfg['training']['max_steps']} | save {trainer.save_dir}", flush=True)
    state = trainer.run()
    say(f"{state}: {trainer.step} steps in {trainer.train_seconds:.1f} s (training time) -> {trainer.save_dir}")
    if trainer.message:
        say(trainer.message)
    if state == "failed":
        return 1
    if args.promote and rank == 0:
        if state != "finished":
            print("训练未完成，不设为默认模型 / run not finished; not promoted")
            return 1
        return print_promotion(*promote(trainer.save_dir, force=args.force), args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
