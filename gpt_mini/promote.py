"""Make a finished run the default model (checkpoints/), only if it is usable, and say why or why not."""

import json
import os
import shutil
from pathlib import Path

from . import runs
from .checkpoint import load_model
from .config import ROOT, resolve
from .data import FIXED_QUESTIONS, read_jsonl
from .errors import UserError
from .knowledge import course_of
from .quality import USABLE, dev_summary, usable

DEV_CLASS = ROOT / "data" / "dev_class.jsonl"  # class-like questions, kept out of training


def promote(save_dir: Path, target: Path = runs.DEFAULT_DIR, fixed: dict = FIXED_QUESTIONS,
            force: bool = False, dev: Path | None = DEV_CLASS, finished: bool = False) -> tuple[bool, dict]:
    """Copy a run's last.pt and quantized.pt to checkpoints/ (the default model) only if it is usable
    (quality.usable: the fixed questions exact, training and held-out wordings answered), or with force=True
    even if not. checkpoints/promotion.json records the check and whether it was forced. finished: the run must
    have ended (its int8 copy exists), as for `train --promote_dir`."""
    if finished and not ((save_dir / runs.LAST).is_file() and (save_dir / runs.QUANTIZED).is_file()):
        raise UserError(f"{save_dir} 里没有完成的训练", f"no finished run in {save_dir}")
    model, tok, ckpt = load_model(save_dir / runs.LAST)
    cfg = ckpt["config"]
    train_rows = read_jsonl(resolve(cfg["data"]["train_path"]))
    ok, report = usable(model, tok, train_rows, read_jsonl(resolve(cfg["data"]["val_path"])), fixed)
    if ok or force:
        if dev and dev.is_file():  # what the chat tab shows next to the character lookup
            report["dev"] = dev_summary(model, tok, course_of(ckpt), train_rows, dev)
        target.mkdir(parents=True, exist_ok=True)
        for name in (runs.LAST, runs.QUANTIZED, runs.METRICS, runs.TRAIN_TIME):
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
