"""python -m gpt_mini.bench: how fast is this machine, and how fast is gpt_mini on it?

Prints a table (and JSON with --json) and saves bench/results.json with the machine's description.
Numbers are medians of repeated measurements taken in one run. --quick skips the time-to-usable training."""

import copy
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from . import optim
from . import tokenizer as bpe
from .checkpoint import load_model
from .config import ROOT, add_config_args, load_config, resolve
from .data import read_jsonl
from .errors import ArgumentParser, UserError, run_cli
from .generate import Settings, generate, generate_steps
from .hardware import matmul_peak, pick_precision, time_windows
from .knowledge import CONFIDENCE_THRESHOLD, SIMILARITY_THRESHOLD, course_of, lookup_right, read_dev, read_questions
from .promote import DEV_CLASS
from .quality import USABLE, answer_report, refusal_report, usable
from .serving import BatchServer
from .train import Trainer
from .visualize import model_size


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform()}


def train_flops_per_token(cfg: dict, vocab: int, mean_len: float) -> float:
    """visualize.model_size's formula (6N + 12·L·T·d) at the batches' mean real length T."""
    m = cfg["model"]
    return model_size(m["n_layer"], m["n_head"], m["n_embd"], round(mean_len), vocab)["flops_train_per_token"]


def train_throughput(cfg: dict, precision: str, steps: int = 8, windows: int = 5) -> dict:
    """Trainer.train_step itself (the loop users run) in one precision: median tokens/s over windows of steps,
    real (non-padding) tokens/s, model FLOP/s counted on real tokens, seconds per 100 steps."""
    cfg = copy.deepcopy(cfg)
    cfg["training"]["precision"] = precision
    trainer = Trainer(cfg, probe_questions=(), keep_resume=False, threads=os.cpu_count() or 1)
    sizes = []  # (real tokens, all tokens) of every batch the steps draw
    real_next = trainer.batches.next

    def counting_next(*args):
        x, y, docs = real_next(*args)
        sizes.append((int((x != bpe.PAD_ID).sum()), x.numel()))
        return x, y, docs

    trainer.batches.next = counting_next
    def step():
        trainer.train_step()
        trainer.step += 1

    window = steps * (cfg["training"]["batch_size"] // cfg["training"]["micro_batch"])  # batches drawn per window
    seconds = time_windows(step, steps, windows)
    drawn = [sizes[(w + 1) * window:(w + 2) * window] for w in range(windows)]  # after the warm-up window
    rates = [sum(n for _, n in d) / dt for d, dt in zip(drawn, seconds)]
    real_rates = [sum(r for r, _ in d) / dt for d, dt in zip(drawn, seconds)]
    step_s = [dt / steps for dt in seconds]
    real_rate = statistics.median(real_rates)
    mean_len = sum(r for r, _ in sizes) / len(sizes) / cfg["training"]["micro_batch"]
    return {"precision": precision, "tokens_per_s": statistics.median(rates), "real_tokens_per_s": real_rate,
            "real_fraction": sum(r for r, _ in sizes) / sum(n for _, n in sizes),
            "gflops_real": real_rate * train_flops_per_token(cfg, trainer.tok.get_vocab_size(), mean_len) / 1e9,
            "seconds_per_100_steps": 100 * statistics.median(step_s)}


def orthogonalize_speed(cfg: dict, repeats: int = 3) -> dict:
    """Muon's Newton-Schulz iterations for every block matrix of the configured model (one optimizer step's worth),
    in bf16 (as torch.optim.Muon does) and in fp32 (what an fp32 run now uses): median seconds over repeats."""
    d, L = cfg["model"]["n_embd"], cfg["model"]["n_layer"]
    grads = [torch.randn(r, c) for _ in range(L) for r, c in ((3 * d, d), (d, d), (4 * d, d), (d, 4 * d))]
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with optim.orthogonalizing_in(dtype):
            out[name] = statistics.median(time_windows(
                lambda: [optim.orthogonalize(g, optim.NS_COEFFICIENTS, optim.NS_STEPS, optim.NS_EPS) for g in grads],
                1, repeats))
    return dict(out, matrices=len(grads), bf16_over_fp32=out["bf16"] / out["fp32"])


def time_to_usable(cfg: dict, precision: str, every: int = 250, save_dir=None) -> dict:
    """Train the default config from scratch; every `every` steps once the train loss is below 0.3, check off the
    clock whether the model is usable (quality.usable: both fixed questions exact, >= 95% of training wordings and
    >= 80% of held-out wordings with character-F1 >= 0.8). Also records the raw answers to the development set's
    course questions (data/dev_class.jsonl, report half) at each check. Seconds are the Trainer's own training
    clock."""
    cfg = copy.deepcopy(cfg)
    cfg["training"]["precision"] = precision
    cfg["training"]["eval_interval"] = every  # evaluate only where we check
    train_rows = read_jsonl(resolve(cfg["data"]["train_path"]))
    val_rows = read_jsonl(resolve(cfg["data"]["val_path"]))
    dev_in = read_dev(DEV_CLASS, "report")[0]
    found, checks = {}, []

    def check(trainer, row):
        last_step = row["step"] == trainer.cfg["training"]["max_steps"]
        if found or row["train_loss"] > 0.3 or (row["step"] % every and not last_step):
            return
        # the cheap parts of the bar first: the held-out wordings decide most checks
        val = answer_report(trainer.model, trainer.tok, val_rows)
        dev = answer_report(trainer.model, trainer.tok, dev_in, fixed={})
        entry = {"step": row["step"], "seconds": round(row["elapsed_s"], 1), "fixed_ok": val["fixed_ok"],
                 "val_f1_ok": val["f1_ok"], "val_exact": val["exact"], "dev_in_f1_ok": dev["f1_ok"],
                 "train_f1_ok": None}
        if val["fixed_ok"] and val["f1_ok"] >= USABLE["val_f1_ok"]:
            ok, report = usable(trainer.model, trainer.tok, train_rows, val_rows)
            entry["train_f1_ok"] = report["train_f1_ok"]
            if ok:
                found.update(step=row["step"], seconds=row["elapsed_s"], **report)
                trainer.stop()
        checks.append(entry)
        print(f"  [{precision}] step {row['step']}: {row['elapsed_s']:.1f}s train loss {row['train_loss']:.3f} -> "
              f"val {val['f1_ok']:.1%}, dev_in {dev['f1_ok']:.1%}, fixed {val['fixed_ok']}, "
              f"train {entry['train_f1_ok']}", file=sys.stderr, flush=True)

    wall = time.perf_counter()
    trainer = Trainer(cfg, callbacks={"on_log": [check]}, save_dir=save_dir or ROOT / "bench" / "tmp" / precision,
                      probe_questions=(), keep_resume=False, threads=os.cpu_count() or 1)
    trainer.run()
    last = trainer.history[-1] if trainer.history else {}
    first = trainer.history[0] if trainer.history else {}
    found.pop("fixed_answers", None)
    return {"precision": precision, "usable": bool(found), "seconds": found.get("seconds"), "step": found.get("step"),
            "train_f1_ok": found.get("train_f1_ok"), "val_f1_ok": found.get("val_f1_ok"), "checks": checks,
            "first_eval_loss": first.get("eval_loss"), "final_train_loss": last.get("train_loss"),
            "final_eval_loss": last.get("eval_loss"), "final_unseen_loss": last.get("unseen_loss"),
            "steps_run": trainer.step, "train_seconds": trainer.train_seconds,
            "wall_s_with_checks": time.perf_counter() - wall}


# The recipes `--sweep` compares: overrides of the committed config, each trained from scratch.
RECIPES = {
    "default": [],
    "adamw-b16": ["training.optimizer=adamw", "training.batch_size=16", "training.micro_batch=16",
                  "training.pack=false", "training.max_steps=3000"],
    "adamw-b64": ["training.optimizer=adamw"],
    "muon-b32": ["training.batch_size=32", "training.micro_batch=32"],
    "muon-b64-nopack": ["training.pack=false"],
    "muon-lr0.03": ["training.muon_lr=0.03"],
    "muon-700": ["training.max_steps=700"],
    "muon-b96-600": ["training.batch_size=96", "training.micro_batch=96", "training.max_steps=600"],
}


def sweep(cfg_args: tuple, names: list[str], precision: str, every: int) -> list[dict]:
    """Train each named recipe from scratch; one row per recipe: steps and seconds to usable, the scores at the
    last check, seconds per step on this machine."""
    rows = []
    for name in names:
        cfg = load_config(cfg_args[0], list(cfg_args[1]) + RECIPES[name])
        print(f"recipe {name}: {' '.join(RECIPES[name]) or '(committed config)'}", file=sys.stderr, flush=True)
        r = time_to_usable(cfg, precision, every=every, save_dir=ROOT / "bench" / "tmp" / f"sweep_{name}")
        last = r["checks"][-1] if r["checks"] else {}
        t = cfg["training"]
        rows.append({"recipe": name, "optimizer": t["optimizer"], "batch": t["batch_size"], "pack": t["pack"],
                     "max_steps": t["max_steps"], "usable_step": r["step"], "usable_s": r["seconds"],
                     "val": last.get("val_f1_ok"), "train": r["train_f1_ok"] or last.get("train_f1_ok"),
                     "dev": last.get("dev_in_f1_ok"), "at_step": last.get("step"),
                     "s_per_step": r["train_seconds"] / max(1, r["steps_run"])})
        print_sweep(rows[-1:], header=len(rows) == 1)
    return rows


def print_sweep(rows, header: bool = True):
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    if header:
        print("| recipe | optimizer | batch | pack | steps | usable at step | usable at s | val | train | dev | "
              "at step | s/step |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['optimizer']} | {r['batch']} | {r['pack']} | {r['max_steps']} | "
              f"{r['usable_step'] or 'no'} | {r['usable_s'] or '-'} | {pct(r['val'])} | {pct(r['train'])} | "
              f"{pct(r['dev'])} | {r['at_step']} | {r['s_per_step']:.3f} |", flush=True)


def course_quality(ckpt_path: Path, cfg: dict) -> dict:
    """The shipped model on held-out wordings (val) and on the development set: the report half and the calibration
    part of dev_class.jsonl (class-like questions; model and thresholds chosen on calib_new) and the old easy
    dev_in/dev_out; next to each, the character-pair lookup's share of course questions matched to the right fact."""
    model, tok, ckpt = load_model(ckpt_path)
    train_rows = read_jsonl(resolve(cfg["data"]["train_path"]))
    val = answer_report(model, tok, read_jsonl(resolve(cfg["data"]["val_path"])))
    sets = {"report": read_dev(DEV_CLASS, "report"), "calib_new": read_dev(DEV_CLASS, "calib_new"),
            "easy": (read_questions(ROOT / "data" / "dev_in.jsonl"), read_questions(ROOT / "data" / "dev_out.jsonl"))}
    out = {"val_f1_ok": val["f1_ok"], "val_exact": val["exact"], "val_n": val["n"],
           "val_lookup_right": lookup_right(train_rows, read_jsonl(resolve(cfg["data"]["val_path"])))}
    for name, (dev_in, dev_out) in sets.items():
        dev = refusal_report(model, tok, course_of(ckpt), dev_in, dev_out, CONFIDENCE_THRESHOLD, SIMILARITY_THRESHOLD)
        dev.pop("scores")
        out[name] = dict(dev, lookup_right=lookup_right(train_rows, dev_in))
    return out


def print_quality(q: dict, log=print):
    log(f"held-out wordings (val, n={q['val_n']}): F1>=0.8 {q['val_f1_ok']:.1%}, exact {q['val_exact']:.1%}, "
        f"lookup {q['val_lookup_right']:.1%}")
    for name in ("report", "calib_new", "easy"):
        d = q[name]
        log(f"dev {name}: course n={d['dev_in']}: right {d['in_answered_right']:.1%} (raw model {d['in_f1_ok_raw']:.1%}"
            f", character lookup {d['lookup_right']:.1%}), wrong but answered {d['in_wrong_but_answered']:.1%}, "
            f"refused but right {d['in_right_but_refused']:.1%}, refused and wrong {d['in_refused_and_wrong']:.1%} "
            f"| by kind {d['in_right_by_kind']} | to refuse n={d['dev_out']}: refused {d['out_refused']:.1%} "
            f"(by the model itself {d['out_refused_by_model']:.1%}) {d['out_refused_by_kind']}")


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
    parser.add_argument("--ttu_precisions", default="fp32,bf16",
                        help="可用时间测哪些精度（逗号分隔）/ precisions to time to usable, comma-separated")
    parser.add_argument("--sweep", nargs="?", const="all", default=None, metavar="RECIPES",
                        help="从零训练一组配方并打印一张表（逗号分隔的名字，默认全部）/ train recipes from scratch, "
                             f"print one table (comma-separated names, default all): {', '.join(RECIPES)}")
    parser.add_argument("--every", type=int, default=100, help="--sweep 每隔多少步检查一次 / check every N steps")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.sweep:
        names = list(RECIPES) if args.sweep == "all" else args.sweep.split(",")
        unknown = [n for n in names if n not in RECIPES]
        if unknown:
            raise UserError(f"没有这个配方：{', '.join(unknown)}", f"unknown recipe: {', '.join(unknown)}")
        rows = sweep((args.config, args.overrides), names, pick_precision(cfg["training"]["precision"],
                                                                          torch.device("cpu"))[0], args.every)
        print("\n汇总 / summary:")
        print_sweep(rows)
        return 0
    res = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    log = (lambda *a: None) if args.json else print
    res["matmul_peak_gflops"] = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    log(f"matmul peak: fp32 {res['matmul_peak_gflops']['fp32']:.0f} GFLOP/s, "
        f"bf16 {res['matmul_peak_gflops']['bf16']:.0f} GFLOP/s")
    res["auto_precision"] = pick_precision("auto", torch.device("cpu"))
    peaks = res["matmul_peak_gflops"]
    precisions = ("fp32", "bf16") if peaks["bf16"] >= 0.25 * peaks["fp32"] else ("fp32",)  # else: no bf16 units
    if len(precisions) == 1:
        log(f"train bf16: skipped, bf16 matrix multiplies run at {peaks['bf16'] / peaks['fp32']:.2g}x fp32 here "
            "(no bf16 units; training would take ~20x longer)")
    res["muon_orthogonalize_s"] = r = orthogonalize_speed(cfg)
    log(f"Muon orthogonalisation of the {r['matrices']} block matrices, one step: bf16 {r['bf16'] * 1000:.0f} ms, "
        f"fp32 {r['fp32'] * 1000:.0f} ms ({r['bf16_over_fp32']:.2g}x; a run orthogonalises in its own precision)")
    for precision in precisions:
        r = train_throughput(cfg, precision)
        r["mfu"] = r["gflops_real"] / res["matmul_peak_gflops"][precision]
        res[f"train_{precision}"] = r
        log(f"train {precision}: {r['tokens_per_s']:.0f} tok/s ({r['real_tokens_per_s']:.0f} real), "
            f"{r['seconds_per_100_steps']:.1f} s per 100 steps, MFU {r['mfu']:.0%} of the {precision} peak")
    if "train_bf16" in res:
        res["bf16_train_speedup"] = (res["train_fp32"]["seconds_per_100_steps"]
                                     / res["train_bf16"]["seconds_per_100_steps"])
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
    res["course_quality"] = q = course_quality(ckpts["fp32"], cfg)
    print_quality(q, log)
    if not args.quick:
        for precision in [p for p in args.ttu_precisions.split(",") if p and (p != "bf16" or "bf16" in precisions)]:
            log(f"time-to-usable ({precision}, training from scratch with the default config) ...")
            res[f"time_to_usable_{precision}"] = r = time_to_usable(cfg, precision)
            log(f"time-to-usable {precision}: {r['seconds']} s at step {r['step']} "
                f"({r['steps_run']} steps in {r['train_seconds']:.0f} s; eval loss {r['first_eval_loss']:.2f} -> "
                f"{r['final_eval_loss']:.2f}; checks {r['checks']})")
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
