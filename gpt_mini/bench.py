"""python -m gpt_mini.bench: how fast is this machine, and how fast is gpt_mini on it?

Prints a table (and JSON with --json) and saves bench/results.json with the machine's description.
Numbers are medians of repeated measurements taken in one run. --quick skips the time-to-usable training."""

import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

from . import tokenizer as T
from .checkpoint import load_model, model_from_config
from .config import ROOT, add_config_args, load_config, resolve
from .data import Batches, load_samples, read_jsonl
from .errors import ArgumentParser, run_cli
from .generate import Settings, generate, generate_steps
from .quality import answer_report
from .serving import BatchServer
from .train import LENGTH_BUCKETS, Trainer


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform()}


def matmul_peak(n: int = 1024, repeats: int = 7) -> float:
    """fp32 GFLOP/s of a square matrix multiply: the ceiling MFU is measured against."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def flops_per_token(cfg: dict, n_params: int, T_ctx: float) -> float:
    """Training FLOPs per processed token: 6N for the weights (forward 2N, backward 4N; the tied embedding counts
    once, as the output layer) + 12·L·T·d for attention scores and weighted sums."""
    m = cfg["model"]
    return 6 * n_params + 12 * m["n_layer"] * T_ctx * m["n_embd"]


def train_throughput(cfg: dict, naive: bool, steps: int = 8, windows: int = 5) -> dict:
    """Median tokens/s over several windows of optimizer steps. naive = the seed's recipe: every sample padded to
    seq_len, explicit (unfused) attention, batch 16 x 4 accumulation."""
    tok = T.load_tokenizer(resolve(cfg["tokenizer"]["path"]))
    _, samples = load_samples(tok, resolve(cfg["data"]["train_path"]), cfg["model"]["seq_len"])
    torch.manual_seed(0)
    model = model_from_config(cfg, tok.get_vocab_size())
    t = cfg["training"]
    micro, accum = (16, 4) if naive else (t["micro_batch"], t["batch_size"] // t["micro_batch"])
    if naive:
        for block in model.blocks:
            block.attn.fused = False
    batches = Batches(samples, micro, seed=0, pad_to=cfg["model"]["seq_len"] if naive else None,
                      bucket=1 if naive else LENGTH_BUCKETS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    rates, useful_rates, lengths = [], [], []
    for w in range(windows + 1):  # the first window warms up
        tokens = useful = 0
        start = time.perf_counter()
        for _ in range(steps):
            for _ in range(accum):
                x, y = batches.next()
                _, loss = model(x, y)
                (loss / accum).backward()
                tokens += x.numel()
                useful += int((x != T.PAD_ID).sum())
                lengths.append(x.shape[1])
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if w:
            dt = time.perf_counter() - start
            rates.append(tokens / dt)
            useful_rates.append(useful / dt)
    rate = statistics.median(rates)
    return {"tokens_per_s": rate, "useful_tokens_per_s": statistics.median(useful_rates),
            "gflops": rate * flops_per_token(cfg, model.num_params(), statistics.mean(lengths)) / 1e9,
            "steps_per_s": rate / (micro * accum * statistics.mean(lengths))}


def time_to_usable(cfg: dict, threshold: float = 0.8, share: float = 0.95, save_dir=None) -> dict:
    """Train from scratch with the config; after each log (once train loss < 1), check greedy answers off the clock.
    Usable = both fixed questions exact AND >= share of training prompts with character F1 >= threshold."""
    rows = read_jsonl(resolve(cfg["data"]["train_path"]))
    found = {}

    def check(trainer, row):
        if found or row["train_loss"] > 1.0:
            return
        report = answer_report(trainer.model, trainer.tok, rows, threshold)
        print(f"  step {row['step']}: {row['elapsed_s']:.1f}s train loss {row['train_loss']:.3f} -> "
              f"F1>={threshold}: {report['f1_ok']:.1%}, exact {report['exact']:.1%}, fixed {report['fixed_ok']}", flush=True)
        if report["fixed_ok"] and report["f1_ok"] >= share:
            found.update(step=row["step"], seconds=row["elapsed_s"], f1_ok=report["f1_ok"], exact=report["exact"])
            trainer.stop()

    save_dir = save_dir or ROOT / "bench" / "tmp"
    wall = time.perf_counter()
    trainer = Trainer(cfg, callbacks={"on_log": [check]}, save_dir=save_dir)
    trainer.run()
    last = trainer.history[-1] if trainer.history else {}
    return {"usable": bool(found), "seconds": found.get("seconds"), "step": found.get("step"),
            "f1_ok": found.get("f1_ok"), "exact": found.get("exact"), "final_train_loss": last.get("train_loss"),
            "final_eval_loss": last.get("eval_loss"), "wall_s_with_checks": time.perf_counter() - wall}


def generation_speed(ckpt_path: Path, use_cache: bool, prompts, repeats: int = 3) -> dict:
    """Batch-1 greedy generation: ms per token and first-token latency, medians over prompts x repeats."""
    model, tok, _ = load_model(ckpt_path)
    per_token, first = [], []
    for _ in range(repeats):
        for prompt in prompts:
            start = time.perf_counter()
            n, t_first = 0, None
            for item in generate_steps(model, tok, prompt, Settings(max_new_tokens=100), use_cache):
                if t_first is None:
                    t_first = time.perf_counter() - start
                n += 1
            per_token.append((time.perf_counter() - start) / max(1, n))
            first.append(t_first)
    ms = statistics.median(per_token) * 1000
    return {"ms_per_token": ms, "tokens_per_s": 1000 / ms, "first_token_ms": statistics.median(first) * 1000}


def serving_speed(ckpt_path: Path, prompts, repeats: int = 3) -> dict:
    """A class asking at once: len(prompts) greedy questions answered one after another vs all together by the
    BatchServer (one thread per question, one batched forward pass per step). Medians over repeats."""
    model, tok, _ = load_model(ckpt_path)
    one_by_one, together, tokens = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = sum(len(generate(model, tok, p).token_ids) for p in prompts)
        one_by_one.append(time.perf_counter() - start)
        server, threads = BatchServer(), []
        start = time.perf_counter()
        for p in prompts:
            threads.append(threading.Thread(target=server.answer, args=(model, tok, p)))
            threads[-1].start()
        for th in threads:
            th.join()
        together.append(time.perf_counter() - start)
    a, b = statistics.median(one_by_one), statistics.median(together)
    return {"questions": len(prompts), "tokens": tokens, "one_by_one_s": a, "batched_s": b,
            "one_by_one_tokens_per_s": tokens / a, "batched_tokens_per_s": tokens / b, "speedup": a / b,
            "largest_batch": server.largest_batch}


def main(argv=None):
    parser = ArgumentParser(description="gpt_mini 基准测试 / benchmark")
    add_config_args(parser)
    parser.add_argument("--quick", action="store_true", help="跳过从零训练的可用时间 / skip time-to-usable")
    parser.add_argument("--json", action="store_true", help="输出 JSON / print JSON")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(os.cpu_count() or 1)
    res = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    log = (lambda *a: None) if args.json else print
    res["matmul_peak_gflops"] = matmul_peak()
    log(f"matmul peak: {res['matmul_peak_gflops']:.0f} GFLOP/s")
    for name, naive in (("train_default", False), ("train_naive", True)):
        r = train_throughput(cfg, naive)
        r["mfu"] = r["gflops"] / res["matmul_peak_gflops"]
        res[name] = r
        log(f"{name}: {r['tokens_per_s']:.0f} tok/s ({r['useful_tokens_per_s']:.0f} non-pad), MFU {r['mfu']:.0%}")
    res["train_speedup_useful_tokens"] = res["train_default"]["useful_tokens_per_s"] / res["train_naive"]["useful_tokens_per_s"]
    prompts = [r["prompt"] for r in read_jsonl(resolve(cfg["data"]["train_path"]))[:8]]
    ckpts = {"fp32": ROOT / "checkpoints" / "last.pt", "int8": ROOT / "checkpoints" / "quantized.pt"}
    for fmt, path in ckpts.items():
        for cache in (True, False):
            key = f"gen_{fmt}_{'kv' if cache else 'nocache'}"
            res[key] = generation_speed(path, cache, prompts)
            log(f"{key}: {res[key]['tokens_per_s']:.0f} tok/s, {res[key]['ms_per_token']:.2f} ms/token, "
                f"first token {res[key]['first_token_ms']:.1f} ms")
    class_prompts = [r["prompt"] for r in read_jsonl(resolve(cfg["data"]["train_path"]))[:32]]
    res["serving_32"] = r = serving_speed(ckpts["fp32"], class_prompts)
    log(f"32 questions at once: one by one {r['one_by_one_s']:.2f} s ({r['one_by_one_tokens_per_s']:.0f} tok/s), "
        f"batched {r['batched_s']:.2f} s ({r['batched_tokens_per_s']:.0f} tok/s), {r['speedup']:.1f}x")
    res["sizes_mb"] = {fmt: path.stat().st_size / 1e6 for fmt, path in ckpts.items()}
    res["int8_size_ratio"] = res["sizes_mb"]["int8"] / res["sizes_mb"]["fp32"]
    log(f"sizes: fp32 {res['sizes_mb']['fp32']:.2f} MB, int8 {res['sizes_mb']['int8']:.2f} MB "
        f"(ratio {res['int8_size_ratio']:.2f})")
    if not args.quick:
        log("time-to-usable (training from scratch with the default config) ...")
        res["time_to_usable"] = time_to_usable(cfg)
        log(f"time-to-usable: {res['time_to_usable']['seconds']} s at step {res['time_to_usable']['step']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(res, ensure_ascii=False, indent=2))
    else:
        print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
