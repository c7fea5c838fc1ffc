"""The training loop: one reusable object with callbacks and pause/stop control.
The CLI below and the dashboard both drive this same Trainer; there is no second copy of the loop."""

import csv
import math
import os
import shutil
import threading
import time
from pathlib import Path

import torch

from . import tokenizer as T
from .checkpoint import atomic_save, load_model, make_checkpoint, model_from_config, quantize_int8, read_checkpoint
from .config import ROOT, add_config_args, load_config, param_count_formula, resolve
from .data import FIXED_QUESTIONS, Batches, collate, load_samples
from .errors import ArgumentParser, UserError, run_cli
from .generate import Settings, generate

# Length buckets cut padding (95% real tokens instead of 80%), but the benchmark showed slower learning
# (train loss 5.2 vs 4.8 at step 100, same seed): batches of similar length are less varied. Off (1).
LENGTH_BUCKETS = 1
METRIC_FIELDS = ["step", "train_loss", "eval_loss", "lr", "tokens_per_s", "elapsed_s", "eta_s"]


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


def lr_at(step: int, max_steps: int, lr: float, warmup_ratio: float, min_ratio: float = 0.1) -> float:
    """Linear warmup for warmup_ratio of the steps, then cosine decay to min_ratio * lr."""
    warmup = int(max_steps * warmup_ratio)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, max_steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """Train a GPT from a config. Callbacks: on_step(trainer) after every optimizer step, on_log(trainer, row) every
    eval_interval (row = one metrics.csv line, plus 'answers' to the fixed questions), on_end(trainer). Control from another thread: pause(), resume(), stop()."""

    def __init__(self, cfg: dict, extra_rows=(), callbacks: dict | None = None, save_dir=None, resume: bool = False,
                 probe_questions=tuple(FIXED_QUESTIONS), keep_resume: bool = True):
        """keep_resume: also save the optimizer state (resume.pt, 2x the model's size) so --resume can continue."""
        self.cfg, self.keep_resume = cfg, keep_resume
        self.callbacks = callbacks or {}
        self.save_dir = Path(save_dir) if save_dir else resolve(cfg["save"]["dir"])
        self.tok = T.load_tokenizer(resolve(cfg["tokenizer"]["path"]))
        self.device = pick_device(cfg["training"]["device"])
        m, t = cfg["model"], cfg["training"]
        torch.manual_seed(t["seed"])
        self.rows, self.samples = load_samples(self.tok, resolve(cfg["data"]["train_path"]), m["seq_len"], extra_rows)
        _, self.val_samples = load_samples(self.tok, resolve(cfg["data"]["val_path"]), m["seq_len"])
        self.model = model_from_config(cfg, self.tok.get_vocab_size()).to(self.device)
        self.optimizer = self._make_optimizer()
        self.step, self.history, self.elapsed_before, self._first_step = 0, [], 0.0, 0
        if resume:
            self._load_resume_state()
        self.batches = Batches(self.samples, t["micro_batch"], seed=t["seed"] + self.step, bucket=LENGTH_BUCKETS)
        self.probe_questions = list(probe_questions)
        self.state, self.message = "idle", ""
        self._stop, self._running = threading.Event(), threading.Event()
        self._running.set()
        self.tokens_seen = 0

    def _make_optimizer(self):
        t = self.cfg["training"]
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]  # no decay on biases and norm gains
        other = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                                  {"params": other, "weight_decay": 0.0}], lr=t["lr"], betas=(0.9, 0.95))

    # ---- control (thread-safe) ----
    def pause(self):
        self._running.clear()
        if self.state == "running":
            self.state = "paused"

    def resume(self):
        if self.state == "paused":
            self.state = "running"
        self._running.set()

    def stop(self):
        self._stop.set()
        self._running.set()

    def num_params(self) -> int:
        return self.model.num_params()

    # ---- the loop ----
    def run(self) -> str:
        """Train until max_steps, stop() or a non-finite loss. Saves last.pt (atomically) at every log and at the end.
        Returns the final state: finished | stopped | failed."""
        m, t = self.cfg["model"], self.cfg["training"]
        accum = t["batch_size"] // t["micro_batch"]
        torch.set_num_threads(os.cpu_count() or 1)
        self.state, self.message = "running", ""
        start, last_log_time, last_tokens = time.time(), time.time(), 0
        loss_sum, loss_count = 0.0, 0
        try:
            while self.step < t["max_steps"] and not self._stop.is_set():
                if not self._running.is_set():
                    paused_at = time.time()
                    self._running.wait()
                    start += time.time() - paused_at  # paused time is not training time
                    last_log_time += time.time() - paused_at
                    continue
                lr = lr_at(self.step, t["max_steps"], t["lr"], t["warmup_ratio"])
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.model.train()
                for _ in range(accum):
                    x, y = self.batches.next()
                    x, y = x.to(self.device), y.to(self.device)
                    _, loss = self.model(x, y)
                    (loss / accum).backward()
                    loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
                    self.tokens_seen += x.numel()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t["grad_clip"] or float("inf"))
                if not (math.isfinite(loss_sum) and math.isfinite(float(grad_norm))):
                    self.optimizer.zero_grad(set_to_none=True)
                    self.state = "failed"
                    self.message = (f"第 {self.step + 1} 步损失变成了 NaN/无穷大，已停止；请调小学习率（保留了上一个正常的检查点）"
                                    f" / loss became NaN/inf at step {self.step + 1}; lower the learning rate (last good checkpoint kept)")
                    break
                self.optimizer.step()
                if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                    self.state = "failed"
                    self.message = (f"第 {self.step + 1} 步权重变成了 NaN/无穷大，已停止；请调小学习率（保留了上一个正常的检查点）"
                                    f" / weights became NaN/inf at step {self.step + 1}; lower the learning rate (last good checkpoint kept)")
                    break
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self._call("on_step")
                if self.step % t["eval_interval"] == 0 or self.step == t["max_steps"]:
                    now = time.time()
                    elapsed = self.elapsed_before + now - start
                    rate = (self.tokens_seen - last_tokens) / max(1e-9, now - last_log_time)
                    row = {"step": self.step, "train_loss": loss_sum / loss_count, "eval_loss": self.evaluate(),
                           "lr": lr, "tokens_per_s": rate, "elapsed_s": elapsed,
                           "eta_s": (now - start) / max(1, self.step - self._first_step) * (t["max_steps"] - self.step)}
                    loss_sum, loss_count = 0.0, 0
                    self.history.append(row)
                    self.save()
                    answers = self.probe()
                    self._call("on_log", dict(row, answers=answers))
                    last_log_time, last_tokens = time.time(), self.tokens_seen
                    start += last_log_time - now  # evaluation and saving are off the training clock
        except KeyboardInterrupt:
            self._stop.set()
        except Exception as e:  # shown to the user as state "failed" with the reason; the last checkpoint stays
            self.state, self.message = "failed", f"训练出错 / training failed: {type(e).__name__}: {e}"
        self.train_seconds = self.elapsed_before + time.time() - start
        if self.state != "failed":
            self.state = "stopped" if self.step < t["max_steps"] else "finished"
            if not self.history or self.history[-1]["step"] != self.step:
                self.save()
            self.finish()
        self._call("on_end")
        return self.state

    def evaluate(self) -> float:
        """Mean answer-token loss over the whole validation set."""
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(self.val_samples), 32):
                x, y = collate(self.val_samples[i:i + 32])
                _, loss = self.model(x.to(self.device), y.to(self.device))
                n = int((y != -100).sum())
                total, count = total + loss.item() * n, count + n
        return total / max(1, count)

    def probe(self) -> dict:
        """Greedy answers to the probe questions, so the class can watch the model learn."""
        return {q: generate(self.model, self.tok, q, Settings(max_new_tokens=96)).answer for q in self.probe_questions}

    def checkpoint(self) -> dict:
        return make_checkpoint(self.model, self.cfg, self.tok, self.step, self.history[-1] if self.history else {})

    def save(self):
        atomic_save(self.checkpoint(), self.save_dir / "last.pt")
        if self.keep_resume:
            atomic_save({"optimizer": self.optimizer.state_dict(), "step": self.step, "history": self.history,
                         "elapsed": self.elapsed_before + 0.0}, self.save_dir / "resume.pt")
        self.write_metrics()

    def write_metrics(self):
        self.save_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.save_dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows({k: r[k] for k in METRIC_FIELDS} for r in self.history)
        os.replace(tmp, self.save_dir / "metrics.csv")

    def finish(self):
        """After the last step: int8 export and the wall time."""
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
        self.elapsed_before = float(self.history[-1]["elapsed_s"]) if self.history else 0.0
        self._first_step = self.step

    def _call(self, name, *args):
        for fn in self.callbacks.get(name, []):
            fn(self, *args)


def answers_fixed_questions(ckpt_path) -> tuple[bool, dict]:
    """The seed's A/B check: does this checkpoint answer both fixed questions with the reference answers?"""
    model, tok, _ = load_model(ckpt_path)
    answers = {q: generate(model, tok, q).answer for q in FIXED_QUESTIONS}
    return all(answers[q] == a for q, a in FIXED_QUESTIONS.items()), answers


def promote(save_dir: Path) -> tuple[bool, dict]:
    """Copy a run's last.pt and quantized.pt to checkpoints/ (the default model) only if it passes the check."""
    ok, answers = answers_fixed_questions(save_dir / "last.pt")
    if ok:
        target = ROOT / "checkpoints"
        for name in ("last.pt", "quantized.pt", "metrics.csv", "train_time.txt"):
            if (save_dir / name).resolve() != (target / name).resolve():
                tmp = target / f".{name}.tmp"
                shutil.copyfile(save_dir / name, tmp)
                os.replace(tmp, target / name)
    return ok, answers


def fmt_time(seconds: float) -> str:
    seconds = int(seconds)
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
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    trainer = Trainer(cfg, callbacks={"on_log": [print_log]}, resume=args.resume)
    V, d, L = trainer.tok.get_vocab_size(), cfg["model"]["n_embd"], cfg["model"]["n_layer"]
    print(f"参数量 / parameters: {trainer.num_params():,} = V·d + L·(12d²+11d) + d = "
          f"{V}·{d} + {L}·(12·{d}² + 11·{d}) + {d} = {param_count_formula(V, d, L):,}")
    print(f"设备 / device: {trainer.device} | threads {os.cpu_count()} | samples {len(trainer.samples)} | "
          f"steps {cfg['training']['max_steps']} | save {trainer.save_dir}", flush=True)
    state = trainer.run()
    print(f"{state}: {trainer.step} steps in {trainer.train_seconds:.1f} s (training time) -> {trainer.save_dir}")
    if trainer.message:
        print(trainer.message)
    if state == "failed":
        return 1
    if args.promote:
        if state != "finished":
            print("训练未完成，不设为默认模型 / run not finished; not promoted")
            return 1
        ok, answers = promote(trainer.save_dir)
        for q, a in answers.items():
            print(f"  {q} -> {a}")
        print("已设为默认模型 / promoted to checkpoints/" if ok else "固定问题未答对，未设为默认模型 / fixed questions not answered; not promoted")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
