"""Load config.yaml, apply --set overrides, and check every key and type before anything runs."""

import argparse
import copy
from pathlib import Path

import yaml

from .errors import UserError
from .optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config.yaml"

# The schema: every allowed key with its type. config.yaml holds the values.
SCHEMA = {
    "model": {"n_layer": int, "n_head": int, "n_embd": int, "seq_len": int, "dropout": float, "causal": bool},
    "training": {
        "max_steps": int, "batch_size": int, "micro_batch": int, "lr": float, "warmup_ratio": float,
        "weight_decay": float, "grad_clip": float, "eval_interval": int, "seed": int, "device": str,
        "precision": str, "optimizer": str, "muon_lr": float, "pack": bool, "average_last": float,
    },
    "data": {"train_path": str, "val_path": str, "unseen_path": str},
    "tokenizer": {"type": str, "path": str, "vocab_size": int},
    "save": {"dir": str},
}
# Keys added after checkpoints were first shipped: an older checkpoint's config gets these values.
OPTIONAL = {("data", "unseen_path"): "", ("training", "precision"): "fp32", ("training", "optimizer"): "adamw",
            ("training", "muon_lr"): 0.02, ("training", "pack"): False, ("training", "average_last"): 0.0}
TYPE_NAMES = {int: "整数 integer", float: "数字 number", bool: "true/false", str: "字符串 string"}


def _coerce(key: str, value, kind):
    """Check one value against its type; ints are accepted where a float is expected."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise UserError(f"配置项 {key} 应为{TYPE_NAMES[kind]}，收到 {value!r}",
                    f"config key {key} must be {TYPE_NAMES[kind].split()[-1]}, got {value!r}")


def validate(cfg: dict) -> dict:
    """Return a checked copy: unknown keys, missing keys, wrong types and impossible values are errors."""
    out = {}
    for section, value in cfg.items():
        if section not in SCHEMA:
            raise UserError(f"未知配置节 {section}", f"unknown config section {section}")
        if not isinstance(value, dict):
            raise UserError(f"配置节 {section} 应为映射", f"config section {section} must be a mapping")
        out[section] = {}
        for key, v in value.items():
            if key not in SCHEMA[section]:
                raise UserError(f"未知配置项 {section}.{key}", f"unknown config key {section}.{key}")
            out[section][key] = _coerce(f"{section}.{key}", v, SCHEMA[section][key])
    for (section, key), value in OPTIONAL.items():
        out.setdefault(section, {}).setdefault(key, value)
    for section, keys in SCHEMA.items():
        for key in keys:
            if key not in out.get(section, {}):
                raise UserError(f"缺少配置项 {section}.{key}", f"missing config key {section}.{key}")
    check_values(out)
    return out


def _positive(cfg, *keys):
    for dotted in keys:
        section, key = dotted.split(".")
        if cfg[section][key] <= 0:
            raise UserError(f"{dotted} 必须大于 0，收到 {cfg[section][key]}",
                            f"{dotted} must be positive, got {cfg[section][key]}")


def check_values(cfg: dict) -> None:
    """Shapes and ranges that would otherwise fail deep inside torch."""
    _positive(cfg, "model.n_layer", "model.n_head", "model.n_embd", "model.seq_len", "training.max_steps",
              "training.batch_size", "training.micro_batch", "training.lr", "training.eval_interval",
              "tokenizer.vocab_size")
    m, t = cfg["model"], cfg["training"]
    if m["n_embd"] % m["n_head"]:
        raise UserError(f"n_embd={m['n_embd']} 不能被 n_head={m['n_head']} 整除",
                        f"n_embd={m['n_embd']} is not divisible by n_head={m['n_head']}")
    if (m["n_embd"] // m["n_head"]) % 2:
        hd = m["n_embd"] // m["n_head"]
        raise UserError(f"每个头的维度 model.n_embd/model.n_head = {hd} 是奇数，RoPE 需要成对旋转",
                        f"head dimension model.n_embd/model.n_head = {hd} is odd; RoPE rotates pairs")
    if not 0.0 <= m["dropout"] < 1.0:
        raise UserError("dropout 应在 [0, 1) 内", "dropout must be in [0, 1)")
    if t["batch_size"] % t["micro_batch"]:
        raise UserError(f"batch_size={t['batch_size']} 应是 micro_batch={t['micro_batch']} 的整数倍",
                        f"batch_size={t['batch_size']} must be a multiple of micro_batch={t['micro_batch']}")
    if not 0.0 <= t["warmup_ratio"] < 1.0:
        raise UserError("warmup_ratio 应在 [0, 1) 内", "warmup_ratio must be in [0, 1)")
    if not 0.0 <= t["average_last"] < 1.0:
        raise UserError("training.average_last 应在 [0, 1) 内", "training.average_last must be in [0, 1)")
    if t["weight_decay"] < 0 or t["grad_clip"] < 0:
        raise UserError("weight_decay 和 grad_clip 不能为负", "weight_decay and grad_clip must not be negative")
    if t["device"] not in ("cpu", "auto", "cuda", "mps"):
        raise UserError(f"未知设备 {t['device']}（可选 cpu/auto/cuda/mps）",
                        f"unknown device {t['device']} (choose cpu/auto/cuda/mps)")
    if t["precision"] not in ("auto", "fp32", "bf16"):
        raise UserError(f"未知精度 {t['precision']}（可选 auto/fp32/bf16）",
                        f"unknown precision {t['precision']} (choose auto/fp32/bf16)")
    if t["optimizer"] not in OPTIMIZERS:
        raise UserError(f"未知优化器 {t['optimizer']}（可选 adamw/muon）",
                        f"unknown optimizer {t['optimizer']} (choose adamw/muon)")
    if t["muon_lr"] <= 0:
        raise UserError(f"training.muon_lr 必须大于 0，收到 {t['muon_lr']}",
                        f"training.muon_lr must be positive, got {t['muon_lr']}")
    if cfg["tokenizer"]["type"] != "bytelevel_bpe":
        raise UserError("tokenizer.type 只支持 bytelevel_bpe", "tokenizer.type must be bytelevel_bpe")
    if cfg["tokenizer"]["vocab_size"] < 300:
        raise UserError("vocab_size 至少为 300（256 个字节 + 特殊词元）",
                        "vocab_size must be at least 300 (256 bytes + special tokens)")


def parse_override(text: str):
    """'training.lr=0.001' -> ('training', 'lr', 0.001); the value is parsed as YAML."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UserError(f"--set 的格式应为 节.键=值，收到 {text!r}",
                        f"--set must look like section.key=value, got {text!r}")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return section, key, value


def load_config(path=None, overrides=(), updates: dict | None = None) -> dict:
    """Read YAML, apply 'section.key=value' overrides and a nested updates dict, validate."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError(f"找不到配置文件 {path}", f"config file not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"配置文件 {path} 不是合法的 YAML",
                        f"config file {path} is not valid YAML ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"配置文件 {path} 应为映射", f"config file {path} must be a mapping")
    cfg = copy.deepcopy(cfg)
    changes = [parse_override(o) for o in overrides]
    changes += [(section, key, value) for section, values in (updates or {}).items() for key, value in values.items()]
    for section, key, value in changes:
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise UserError(f"未知配置项 {section}.{key}", f"unknown config key {section}.{key}")
        cfg.setdefault(section, {})[key] = value
    return validate(cfg)


def resolve(path_text: str) -> Path:
    """Paths in the config are relative to the project root, so commands work from any folder."""
    p = Path(path_text)
    return p if p.is_absolute() else ROOT / p


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="配置文件 / config file (default: config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="覆盖配置，如 training.lr=0.001（可重复）/ override, repeatable")


def param_count_formula(V: int, d: int, L: int) -> int:
    """V·d + L·(12d² + 11d) + d: tied embedding, L blocks (weights + biases + two norms), final norm."""
    return V * d + L * (12 * d * d + 11 * d) + d
