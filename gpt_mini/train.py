"""The training loop: one reusable object with callbacks and pause/stop control.
The CLI below and the dashboard both drive this same Trainer; there is no second copy of the loop."""

import math
from pathlib import Path

import torch

from . import runs
from . import tokenizer as bpe
from .checkpoint import atomic_save, make_checkpoint, model_from_config, provenance, quantize_int8
from .config import add_config_args, load_config, param_count_formula, resolve
from .data import PROBE_QUESTIONS, Batches, load_samples
from .durations import Stopwatch, fmt_duration
from .errors import ArgumentParser, UserError, run_cli
from .generate import Settings, generate
from .hardware import distributed_setup, pick_device, pick_precision
from .knowledge import Course
from .optim import WeightAverage, make_optimizer
from .promote import print_promotion, promote
from .quality import mean_loss
from .run_control import RunControl


def lr_at(step: int, max_steps: int, lr: float, warmup_ratio: float, min_ratio: float = 0.1) -> float:
    """Linear warmup for warmup_ratio of the steps, then cosine decay to min_ratio * lr."""
    warmup = int(max_steps * warmup_ratio)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, max_steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer(RunControl):
    """Train a GPT from a config, and be the one place that knows how the run stands (status(), curves()).

    Callbacks: on_step(trainer) after every optimizer step, on_block(trainer) before each block's forward and
    backward pass inside a step (a point where a dashboard can lend the cores to others; that wait is not training
    time), on_log(trainer, row) every eval_interval (row = one metrics.csv line plus 'answers' to the probe
    questions), on_end(trainer). pause(), resume() and stop() may be
    called from any thread. The trainer changes no process-wide torch state: it seeds its own generator and sets
    the torch thread count (`threads`) only in the thread that calls run()."""

    def __init__(self, cfg: dict, extra_rows=(), callbacks: dict | None = None, save_dir=None, resume: bool = False,
                 probe_questions=PROBE_QUESTIONS, keep_resume: bool = True, threads: int | None = None,
                 rank: int = 0, world_size: int = 1, device: torch.device | None = None):
        """keep_resume: also save the optimizer state (resume.pt, 2x the model's size) so --resume can continue.
        rank / world_size: this process's place in a torchrun job (DistributedDataParallel, see main())."""
        super().__init__()
        self.cfg, self.keep_resume, self.threads = cfg, keep_resume, threads
        self.rank, self.world_size, self.is_main = rank, world_size, rank == 0
        self.callbacks = callbacks or {}
        self.save_dir = Path(save_dir) if save_dir else resolve(cfg["save"]["dir"])
        self.tok = bpe.load_tokenizer(resolve(cfg["tokenizer"]["path"]))
        self.device = device or pick_device(cfg["training"]["device"])
        m, t = cfg["model"], cfg["training"]
        self.generator = torch.Generator().manual_seed(t["seed"])
        self.rows, self.samples = load_samples(self.tok, resolve(cfg["data"]["train_path"]), m["seq_len"], extra_rows)
        self.val_rows, self.val_samples = load_samples(self.tok, resolve(cfg["data"]["val_path"]), m["seq_len"])
        # Facts the training set never taught: their loss shows what a small model cannot learn (optional file).
        unseen = cfg["data"]["unseen_path"]
        self.unseen_samples = load_samples(self.tok, resolve(unseen), m["seq_len"])[1] if unseen else []
        self.course = Course.from_rows(self.rows)  # stored in checkpoints: refusals and suggestions
        self.model = model_from_config(cfg, self.tok.get_vocab_size(), self.generator).to(self.device)
        # bf16 only inside the forward pass (autocast): weights, optimizer state and checkpoints stay fp32.
        self.precision, self.precision_reason = pick_precision(t["precision"], self.device, world_size > 1)
        self.optimizer = make_optimizer(self.model, t, self.precision)
        self.average = WeightAverage(self.model, t["max_steps"], t["average_last"]) if t["average_last"] else None
        if self.callbacks.get("on_block"):
            for block in self.model.blocks:
                block.register_forward_hook(self._hook_backward)
                block.register_forward_pre_hook(lambda *_: self._between_blocks())
        # Several processes: every rank computes gradients on its shard, DDP averages them before each update.
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.model) if world_size > 1 else None
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
        self.provenance = provenance(cfg, self.tok, self.precision)

    def num_params(self) -> int:
        return self.model.num_params()

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
                self.clock.halt()  # what follows a step (callbacks, evaluation, saving) is not training time
                if loss is None:
                    break
                self._record(loss)
                if self.average:
                    self.average.update(self.step)
                    if self.step == self.cfg["training"]["max_steps"]:
                        self.average.apply()  # the run's model is the mean; the last evaluation measures it
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
            self.tokens_seen += int((x != bpe.PAD_ID).sum())
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
        if not self.is_main or self.step not in runs.snapshot_steps(self.cfg["training"]["max_steps"]):
            return
        path = runs.snapshot_path(self.save_dir, self.step)
        if not path.is_file():
            self.clock.halt()
            atomic_save(quantize_int8(self.checkpoint()), path)

    def evaluate(self, samples) -> float:
        return mean_loss(self.model, samples, self.device)

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
        resume = {"optimizer": self.optimizer.state_dict(), "step": self.step, "history": self.history}
        if self.average:
            resume["average"] = self.average.state_dict()
        runs.save(self.save_dir, self.checkpoint(), self.history, resume if self.keep_resume else None)

    def write_answers(self):
        runs.write_answers(self.save_dir, list(self.answers))

    def finish(self):
        """After the last step: int8 export and the training time."""
        runs.finish(self.save_dir, quantize_int8(self.checkpoint()), self.step, self.train_seconds)

    def _load_resume_state(self):
        model, ckpt, extra = runs.read_resume(self.save_dir, self.tok, self.device)
        raw = (extra.get("average") or {}).get("raw")  # a finished averaged run given more steps goes on from its
        longer = raw and ckpt["step"] < self.cfg["training"]["max_steps"]  # last weights, not from their mean
        self.model.load_state_dict(raw if longer else model.state_dict())
        self.optimizer.load_state_dict(extra["optimizer"])
        if self.average and extra.get("average"):
            self.average.load_state_dict(extra["average"])
        self.step, self.history = ckpt["step"], list(extra.get("history", []))
        self.tokens_seen = int(self.history[-1].get("tokens", 0)) if self.history else 0
        self.clock = Stopwatch(float(self.history[-1]["elapsed_s"]) if self.history else 0.0)

    def _hook_backward(self, module, args, out):
        """The backward pass reaches this block's output gradient: pause point there too."""
        if out.requires_grad:
            out.register_hook(lambda grad: self._between_blocks())

    def _between_blocks(self):
        running = self.clock.since is not None
        self.clock.halt()
        self._call("on_block")
        if running:
            self.clock.start()

    def _call(self, name, *args):
        for fn in self.callbacks.get(name, []):
            fn(self, *args)


def print_log(trainer: Trainer, row: dict):
    elapsed, eta = fmt_duration(row["elapsed_s"], clock=True), fmt_duration(row["eta_s"], clock=True)
    print(f"step {row['step']:5d}/{trainer.cfg['training']['max_steps']} | train {row['train_loss']:.4f} | "
          f"eval {row['eval_loss']:.4f} | lr {row['lr']:.2e} | {row['tokens_per_s']:.0f} tok/s | "
          f"elapsed {elapsed} | ETA {eta}", flush=True)
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
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="只用 N 个 CPU 线程（默认全部；线程数不同，浮点求和的顺序不同，结果会有微小差别）"
                             " / use N CPU threads (default: all; another count sums floats in another order)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads 至少为 1，收到 {args.threads}", f"--threads must be at least 1, got {args.threads}")
    if args.promote_dir is not None:
        run_dir = resolve(args.promote_dir)
        return print_promotion(*promote(run_dir, force=args.force, finished=True), args.force)
    cfg = load_config(args.config, args.overrides)
    rank, world, device, threads = distributed_setup(cfg)
    threads = args.threads or threads
    try:
        code = _train(cfg, args, rank, world, device, threads)
        if world > 1:  # wait for rank 0's last eval and save: gloo aborts a rank that tears down alone
            torch.distributed.barrier()
        return code
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


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
