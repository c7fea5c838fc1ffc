"""Checkpoints as plain dicts (safe to load with weights_only=True), atomic saves, int8 export."""

import hashlib
import os
import pickle
import platform
import subprocess
import time
from pathlib import Path

import torch

from . import tokenizer as bpe
from .config import ROOT, resolve
from .errors import UserError
from .model import GPT


def model_from_config(cfg: dict, vocab_size: int, generator: torch.Generator | None = None) -> GPT:
    """With a generator the weights come from it alone, and torch's global generator is left as it was
    (nn.Linear draws default weights from it before GPT re-initialises them)."""
    m = cfg["model"]
    with torch.random.fork_rng(devices=[]):
        return GPT(vocab_size, m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], m["dropout"], m["causal"],
                   generator=generator)


def atomic_save(obj, path) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over the target:
    a crash at any moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_checkpoint(model: GPT, cfg: dict, tok, step: int, metrics: dict, course=None, provenance=None) -> dict:
    """course: a knowledge.Course of the training data (its questions grouped by fact, and the facts' answers).
    provenance: what made it (train.provenance). Plain types only, so it loads with weights_only=True."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "config": cfg,
            "tokenizer_fingerprint": bpe.fingerprint(tok), "vocab_size": tok.get_vocab_size(),
            "step": step, "metrics": metrics, "format": "fp32",
            "course": [list(f) for f in course.facts] if course else [],
            "course_answers": list(course.answers) if course else [],
            "course_refused": list(course.refused) if course else [],
            "provenance": provenance or {}}


def quantize_int8(ckpt: dict) -> dict:
    """Symmetric per-row int8 for every 2-D weight (linear layers and the tied embedding):
    w ≈ q * scale, q in [-127, 127], one fp32 scale per output row. About 4x smaller on disk.
    At load time the weights are expanded back to fp32, so speed equals fp32 and answers stay nearly the same."""
    out = dict(ckpt, model={}, format="int8")
    for name, w in ckpt["model"].items():
        if w.dim() == 2 and w.dtype == torch.float32:
            scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-12)
            out["model"][name + ".int8"] = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
            out["model"][name + ".scale"] = scale
        else:
            out["model"][name] = w
    return out


def dequantize(state: dict) -> dict:
    out = {}
    for name, w in state.items():
        if name.endswith(".int8"):
            base = name[: -len(".int8")]
            out[base] = w.float() * state[base + ".scale"]
        elif not name.endswith(".scale"):
            out[name] = w
    return out


def read_checkpoint(path) -> dict:
    """torch.load with weights_only=True: a file that tries to run code is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"找不到检查点 {path}", f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"检查点 {path} 含有不安全的内容，已拒绝加载",
                        f"checkpoint {path} holds unsafe objects; refused") from None
    except Exception:  # truncated, garbage or foreign files fail in many ways inside torch.load
        raise UserError(f"检查点 {path} 已损坏或不是检查点文件", f"{path} is damaged or not a checkpoint") from None
    if not isinstance(ckpt, dict) or not {"model", "config", "tokenizer_fingerprint", "vocab_size"} <= set(ckpt):
        raise UserError(f"{path} 不是 gpt_mini 的检查点", f"{path} is not a gpt_mini checkpoint")
    return ckpt


def load_model(path, tok=None, device: str = "cpu"):
    """Checkpoint (fp32 or int8) -> (model in eval mode, tokenizer, checkpoint dict).
    The tokenizer defaults to the one named in the checkpoint's config and must match its fingerprint."""
    from .config import validate

    ckpt = read_checkpoint(path)
    try:
        cfg = validate(ckpt["config"])
    except UserError as e:
        raise UserError(f"检查点 {path} 的配置无效：{e.zh}",
                        f"checkpoint {path} has an invalid config: {e.en}") from None
    if tok is None:
        tok = bpe.load_tokenizer(resolve(cfg["tokenizer"]["path"]))
    if bpe.fingerprint(tok) != ckpt["tokenizer_fingerprint"] or tok.get_vocab_size() != ckpt["vocab_size"]:
        raise UserError(f"检查点 {path} 与当前分词器不匹配（词表大小 {ckpt['vocab_size']} vs {tok.get_vocab_size()}）",
                        f"checkpoint {path} does not match this tokenizer "
                        f"(vocab {ckpt['vocab_size']} vs {tok.get_vocab_size()})")
    state = dequantize(ckpt["model"]) if ckpt.get("format") == "int8" else ckpt["model"]
    model = model_from_config(cfg, ckpt["vocab_size"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError):
        raise UserError(f"检查点 {path} 的权重与配置的形状不符",
                        f"checkpoint {path} weights do not fit its config") from None
    model.to(device).eval()
    return model, tok, ckpt


def describe(ckpt: dict) -> dict:
    """What made a checkpoint, for `infer --info` and the chat's checkpoint picker (no weights)."""
    prov = ckpt.get("provenance") or {}
    return {"format": ckpt.get("format", "fp32"), "step": ckpt.get("step"), "vocab_size": ckpt.get("vocab_size"),
            "tokenizer": ckpt.get("tokenizer_fingerprint"), "facts_known": len(ckpt.get("course") or []),
            "metrics": ckpt.get("metrics", {}), **{k: v for k, v in prov.items() if k != "config"},
            "config": prov.get("config", ckpt.get("config"))}


def summary_line(ckpt: dict) -> str:
    """One line for a student: step, precision, training time, date, commit."""
    d = describe(ckpt)
    parts = [f"第 {d['step']} 步 / step {d['step']}", d["format"]]
    if d.get("precision"):
        parts.append(f"训练精度 {d['precision']}")
    if d.get("train_seconds") is not None:
        parts.append(f"训练 {d['train_seconds']:.0f} 秒 / s")
    parts += [x for x in (d.get("created"), f"commit {d['commit']}" if d.get("commit") else None, d.get("torch")) if x]
    return " · ".join(str(p) for p in parts)


def file_sha(path_text) -> str | None:
    """The hash provenance records for a data file (None when it is missing)."""
    path = resolve(path_text) if path_text else None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path and path.is_file() else None


def provenance(cfg: dict, tok, precision: str) -> dict:
    """What made a checkpoint: config, tokenizer and data hashes, versions, the code commit when known."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"config": cfg, "tokenizer": bpe.fingerprint(tok),
            "data": {k: file_sha(v) for k, v in cfg["data"].items()}, "torch": str(torch.__version__),
            "python": platform.python_version(), "commit": commit, "precision": precision,
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}
