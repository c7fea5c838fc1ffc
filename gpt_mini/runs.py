"""A run folder: the files a training run writes, their names and columns, which folders are runs, and the keys
the dashboard uses for a run's models. Everyone who reads or writes a run asks this module."""

import csv
import os
from pathlib import Path

import torch

from .checkpoint import atomic_save, load_model
from .config import ROOT
from .errors import UserError

DEFAULT_DIR = ROOT / "checkpoints"  # the default model: a run folder without snapshots
LAST, QUANTIZED, RESUME = "last.pt", "quantized.pt", "resume.pt"  # fp32 model, int8 copy, optimizer state
METRICS, ANSWERS, TRAIN_TIME = "metrics.csv", "answers.csv", "train_time.txt"
METRIC_FIELDS = ["step", "train_loss", "eval_loss", "unseen_loss", "lr", "tokens_per_s", "elapsed_s", "eta_s"]
ANSWER_FIELDS = ["step", "question", "answer"]
SNAPSHOT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)  # small int8 copies of the model along the run, to chat with later


def snapshot_steps(max_steps: int) -> list[int]:
    """The steps at which a run keeps an int8 snapshot: about 0%, 10%, 25%, 50% and 100% of max_steps."""
    return sorted({round(f * max_steps) for f in SNAPSHOT_FRACTIONS})


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "snapshots" / f"step_{step:06d}.pt"


def saved_snapshots(run_dir: Path) -> list[int]:
    """The steps at which a saved run kept a snapshot, in order."""
    return sorted(int(p.stem[5:]) for p in (Path(run_dir) / "snapshots").glob("step_*.pt"))


def is_run(d: Path) -> bool:
    """A folder a run wrote (or an upload unpacked): it holds a model or a curve. Hidden and linked folders are
    never runs (uploads are unpacked under a hidden name first)."""
    return (d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
            and any((d / name).is_file() for name in (LAST, QUANTIZED, METRICS)))


def run_dirs(runs_dir: Path, with_model: bool = False) -> list[Path]:
    """The runs directly under runs_dir, newest first; with_model: only those that hold a model to load."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [d for d in runs_dir.iterdir() if is_run(d) and (not with_model or model_file(d).is_file())]
    return sorted(runs, key=lambda d: d.stat().st_mtime, reverse=True)


def model_file(run_dir: Path) -> Path:
    """The run's best model file: last.pt (fp32, trained here) or else quantized.pt (int8, finished or uploaded)."""
    last = Path(run_dir) / LAST
    return last if last.is_file() else Path(run_dir) / QUANTIZED


def write_csv(run_dir: Path, name: str, fields: list[str], rows) -> None:
    """run_dir/name from dict rows, via a temporary file: readers see the old table or the new one."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{name}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, run_dir / name)


def save(run_dir: Path, ckpt: dict, history: list, resume: dict | None = None) -> None:
    """The model (last.pt), the optimizer state to resume from (resume.pt, when given) and the curve (metrics.csv),
    each written atomically."""
    atomic_save(ckpt, Path(run_dir) / LAST)
    if resume is not None:
        atomic_save(resume, Path(run_dir) / RESUME)
    write_csv(run_dir, METRICS, METRIC_FIELDS, history)


def write_answers(run_dir: Path, answers: list) -> None:
    """answers.csv from [(step, {probe question: greedy answer})]."""
    write_csv(run_dir, ANSWERS, ANSWER_FIELDS, [{"step": step, "question": q, "answer": a}
                                                for step, by_question in answers for q, a in by_question.items()])


def finish(run_dir: Path, int8_ckpt: dict, steps: int, seconds: float) -> None:
    """A finished run: its int8 copy and its training time."""
    atomic_save(int8_ckpt, Path(run_dir) / QUANTIZED)
    (Path(run_dir) / TRAIN_TIME).write_text(f"steps={steps} train_seconds={seconds:.1f}\n", encoding="utf-8")


def read_resume(run_dir: Path, tok, device) -> tuple:
    """(model, checkpoint, resume state) of a run to continue; a clear error when there is nothing to resume."""
    last, state_file = Path(run_dir) / LAST, Path(run_dir) / RESUME
    if not last.is_file() or not state_file.is_file():
        raise UserError(f"{run_dir} 中没有可继续的训练", f"nothing to resume in {run_dir}")
    model, _, ckpt = load_model(last, tok, str(device))
    extra = torch.load(state_file, map_location=device, weights_only=True)
    if extra.get("step") != ckpt["step"]:
        raise UserError("last.pt 与 resume.pt 的步数不一致", "last.pt and resume.pt disagree on the step")
    return model, ckpt, extra


# ---- the dashboard's keys for a run's models: "run:NAME" (its final model), "snap:NAME:STEP" (a snapshot) ----
def run_key(name: str) -> str:
    return f"run:{name}"


def snap_key(name: str, step: int) -> str:
    return f"snap:{name}:{step}"


def parse_key(key: str) -> tuple[str, str | None, int | None]:
    """('run', name, None), ('snap', name, step), or (key, None, None) for any other key (the default models)."""
    kind, _, rest = key.partition(":")
    if kind == "run" and rest:
        return "run", rest, None
    if kind == "snap":
        name, _, step = rest.rpartition(":")
        if name and step.isdigit():
            return "snap", name, int(step)
    return key, None, None
