"""This machine: which device and precision to train with, and every timing measurement (a block's forward and
backward, a matrix multiply, real training steps). bench, the overview tab and the dashboard's time estimate all
measure through here."""

import os
import statistics
import time

import torch

from .errors import UserError


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


def time_block(device: torch.device, rounds: int = 5) -> tuple[float, float]:
    """Fastest seconds of a forward+backward through one block shaped like the lesson's model (d 256, 4 heads,
    rows of 256 tokens packed with two samples each), in fp32 and in bf16. A lone matrix multiply is not enough:
    on some CPUs (AMD with AVX512-bf16) it runs bf16 slower while the whole model runs it 2x faster. The two are
    timed in turns and the fastest of each is kept, so a burst of load from another program slows both alike
    instead of deciding the choice; a bf16 more than 4x slower ends the timing after one round."""
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
        if r >= 1 and times[torch.bfloat16][-1] > 4 * times[None][-1]:
            break  # no bf16 units (~20x slower): more rounds would only cost seconds at every start
    return min(times[None]), min(times[torch.bfloat16])


_PRECISION_CACHE: dict = {}


def pick_precision(name: str, device: torch.device, distributed: bool = False) -> tuple[str, str]:
    """'auto' -> bf16 only where it is measurably faster on this CPU/GPU (many laptops lack bf16 units and would be
    slower), else fp32. Measured once per process and device. Returns (precision, reason). distributed: every
    process of a torchrun job takes rank 0's choice."""
    if name != "auto":
        return name, "配置指定 / set in the config"
    if distributed:
        choice = list(pick_precision(name, device))
        torch.distributed.broadcast_object_list(choice, src=0)
        return choice[0], choice[1]
    if device.type not in _PRECISION_CACHE:
        try:
            fp32, bf16 = time_block(device)
        except RuntimeError:  # no bf16 kernels on this device
            fp32, bf16 = 1.0, float("inf")
        speedup = fp32 / bf16
        choice = "bf16" if speedup >= 1.2 else "fp32"
        reason = (f"自动：bf16 的速度是 fp32 的 {speedup:.2g} 倍 / "
                  f"auto: bf16 is {speedup:.2g}x the speed of fp32 on this {device.type}")
        _PRECISION_CACHE[device.type] = (choice, reason)
    return _PRECISION_CACHE[device.type]


def matmul_peak(dtype=torch.float32, m: int = 2048, k: int = 256, n: int = 1024, repeats: int = 9) -> float:
    """GFLOP/s of one matrix multiply shaped like the model's MLP (2048 tokens x 256 -> 1024) in one precision:
    the ceiling MFU is measured against. Square 1024 x 1024 products run bf16 at half this speed here."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    return 2 * m * k * n / statistics.median(time_windows(lambda: a @ b, 1, repeats, warmup=False)) / 1e9


def time_windows(step, steps: int, windows: int, warmup: bool = True) -> list[float]:
    """Seconds of each window of `steps` calls to step() (e.g. one training step), after one warm-up window."""
    out = []
    for w in range(windows + warmup):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if w or not warmup:
            out.append(time.perf_counter() - start)
    return out


def measure_train_step(trainer, repeats: int = 3) -> dict:
    """Time real steps of a Trainer (its train_step: the loop users run, with its precision, clipping and
    accumulation). Returns the median seconds per step, the tokens in a step, and the seconds for one evaluation
    (held-out losses and the probe answers), estimated from a part of it."""
    before = []

    def step():
        before.append(trainer.tokens_seen)
        trainer.train_step()

    times = time_windows(step, 1, repeats)
    tokens = (trainer.tokens_seen - before[1]) / repeats
    held_out = trainer.val_samples + trainer.unseen_samples
    start = time.perf_counter()
    trainer.evaluate(held_out[:64])
    eval_seconds = (time.perf_counter() - start) * len(held_out) / max(1, min(64, len(held_out)))
    probes, start = len(trainer.probe_questions), time.perf_counter()
    trainer.probe_questions = trainer.probe_questions[:1]
    trainer.probe()
    eval_seconds += (time.perf_counter() - start) * probes
    return {"seconds_per_step": statistics.median(times), "tokens_per_step": tokens, "params": trainer.num_params(),
            "precision": trainer.precision, "seconds_per_eval": eval_seconds}


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
