"""Take a run home and bring it back: one zip with config.yaml, metrics.csv, the int8 checkpoint and the answers.

An uploaded zip is untrusted: size and entry limits (no zip bombs), fixed file names only (no paths), the config
checked like config.yaml, the checkpoint loaded with weights_only=True and matched to this tokenizer and config,
the tables parsed as CSV with the expected columns.
"""

import csv
import io
import re
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

import yaml

from .checkpoint import load_model, read_checkpoint
from .config import validate
from .errors import UserError
from .runs import ANSWER_FIELDS, ANSWERS, METRIC_FIELDS, METRICS
from .runs import QUANTIZED as CHECKPOINT

MEMBERS = ("config.yaml", METRICS, CHECKPOINT, ANSWERS)
REQUIRED = ("config.yaml", METRICS, CHECKPOINT)
MAX_ZIP_BYTES = 60 * 2**20
MAX_MEMBER_BYTES = {"config.yaml": 64 * 2**10, METRICS: 8 * 2**20, CHECKPOINT: 60 * 2**20, ANSWERS: 8 * 2**20}


def safe_name(name: str, fallback: str) -> str:
    """A run folder's name: only letters, digits, '_' and '-', at most 40 characters; `fallback` if none is left."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", (name or "").strip()).strip("_")[:40] or fallback


def new_run_dir(runs_dir: Path, name: str) -> Path:
    """runs_dir/name, or name_2, name_3, ... if taken: a new run never overwrites another."""
    target, n = Path(runs_dir) / name, 2
    while target.exists():
        target, n = Path(runs_dir) / f"{name}_{n}", n + 1
    return target


def export_zip(run_dir: Path, out_dir: Path) -> Path:
    """Write out_dir/<run name>.zip from a finished run's folder and return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise UserError(f"{run_dir.name} 还没有完成，没有 int8 检查点可以打包",
                        f"{run_dir.name} has not finished: no int8 checkpoint to pack")
    ckpt = read_checkpoint(run_dir / CHECKPOINT)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{run_dir.name}.zip"
    tmp = out_dir / f".{run_dir.name}.{uuid.uuid4().hex}.zip.tmp"  # two visitors packing at once never collide
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.yaml", yaml.safe_dump(ckpt["config"], allow_unicode=True, sort_keys=False))
        for name in (METRICS, CHECKPOINT, ANSWERS):
            if (run_dir / name).is_file():
                z.write(run_dir / name, name)
    tmp.replace(target)
    return target


def _bad(zh: str, en: str) -> UserError:
    return UserError(f"上传的文件不能用：{zh}", f"the uploaded file cannot be used: {en}")


def _read_members(path: Path) -> dict[str, bytes]:
    if path.stat().st_size > MAX_ZIP_BYTES:
        raise _bad(f"超过 {MAX_ZIP_BYTES // 2**20} MB", f"over {MAX_ZIP_BYTES // 2**20} MB")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > len(MEMBERS):
                raise _bad("文件太多", "too many files inside")
            out = {}
            for info in infos:
                if info.filename not in MEMBERS:
                    raise _bad(f"不认识的文件 {info.filename!r}", f"unexpected entry {info.filename!r}")
                if info.file_size > MAX_MEMBER_BYTES[info.filename]:
                    raise _bad(f"{info.filename} 太大", f"{info.filename} is too large")
                with z.open(info) as f:  # read at most the limit: the declared size may lie
                    data = f.read(MAX_MEMBER_BYTES[info.filename] + 1)
                if len(data) > MAX_MEMBER_BYTES[info.filename]:
                    raise _bad(f"{info.filename} 太大", f"{info.filename} is too large")
                out[info.filename] = data
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError):
        raise _bad("不是 zip 文件或已损坏", "not a zip file or damaged") from None
    missing = [m for m in REQUIRED if m not in out]
    if missing:
        raise _bad(f"缺少 {', '.join(missing)}", f"missing {', '.join(missing)}")
    return out


def _check_table(data: bytes, name: str, columns: list[str]) -> None:
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error):
        raise _bad(f"{name} 不是 UTF-8 的 CSV", f"{name} is not UTF-8 CSV") from None
    if not rows or rows[0] != columns:
        raise _bad(f"{name} 的表头应为 {','.join(columns)}", f"{name} must have the header {','.join(columns)}")
    if name == METRICS:
        for row in rows[1:]:
            try:
                int(row[0]), float(row[1]), float(row[2])
            except (ValueError, IndexError):
                raise _bad("metrics.csv 里有不是数字的行", "metrics.csv has a row that is not numbers") from None


def import_zip(path, runs_dir: Path, tok) -> str:
    """Check an uploaded zip and unpack it as a new run under runs_dir; returns the run's folder name."""
    path = Path(path)
    members = _read_members(path)
    try:
        cfg = validate(yaml.safe_load(members["config.yaml"].decode("utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        raise _bad("config.yaml 不是合法的 YAML 配置", "config.yaml is not a valid YAML config") from None
    except UserError as e:
        raise _bad(f"config.yaml：{e.zh}", f"config.yaml: {e.en}") from None
    _check_table(members[METRICS], METRICS, METRIC_FIELDS)
    if ANSWERS in members:
        _check_table(members[ANSWERS], ANSWERS, ANSWER_FIELDS)
    with tempfile.TemporaryDirectory(prefix="gpt_mini_upload_") as tmp:
        ckpt_path = Path(tmp) / CHECKPOINT
        ckpt_path.write_bytes(members[CHECKPOINT])
        try:
            _, _, ckpt = load_model(ckpt_path, tok)  # weights_only, tokenizer fingerprint, shapes
        except UserError as e:
            raise _bad(f"检查点：{e.zh}", f"checkpoint: {e.en}") from None
        if ckpt.get("format") != "int8" or validate(ckpt["config"])["model"] != cfg["model"]:
            raise _bad("检查点与 config.yaml 的模型不一致", "the checkpoint does not match config.yaml's model")
        target = new_run_dir(runs_dir, safe_name(path.stem, "uploaded"))
        staging = Path(runs_dir) / f".{target.name}.incoming"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            for member, data in members.items():
                (staging / member).write_bytes(data)
            staging.rename(target)  # the run appears whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target.name
