"""Every hyperparameter a student can change, defined once.

From HYPERPARAMETERS come the training tab's sliders, the /train_start signature, the dashboard's range checks and
the translated labels; the type is config.SCHEMA's and the default is config.yaml's. PRESETS are named starting
points; make_config() turns form values into a checked config.
"""

import inspect
import math
from dataclasses import dataclass

from gpt_mini.config import SCHEMA, load_config
from gpt_mini.errors import UserError

from .limits import LIMITS


@dataclass(frozen=True)
class Hyper:
    name: str
    section: str  # config.yaml section: model | training
    zh: str
    en: str
    help_zh: str
    help_en: str
    minimum: float = 0
    maximum: float = 1
    step: float = 1
    log: bool = False  # a slider over log10(value): the learning rate
    choices: tuple = ()

    @property
    def kind(self) -> type:
        return SCHEMA[self.section][self.name]

    def check(self, value):
        """Type from the schema, range from the slider: one line that says what to change."""
        zh, en = f"{self.zh} {self.name}", f"{self.en} ({self.name})"
        if self.choices:
            if value not in self.choices:
                shown = "/".join(self.choices)
                raise UserError(f"{zh} 只能是 {shown}", f"{en} must be one of {shown}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise UserError(f"{zh} 应为 true/false", f"{en} must be true or false")
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{zh} 应为数字，收到 {value!r}", f"{en} must be a number, got {value!r}") from None
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            raise UserError(f"{zh} 应在 {self.minimum:g} 到 {self.maximum:g} 之间，收到 {value}",
                            f"{en} must be between {self.minimum:g} and {self.maximum:g}, got {value}")
        if self.kind is int:
            if not number.is_integer():
                raise UserError(f"{zh} 应为整数，收到 {value}", f"{en} must be a whole number, got {value}")
            return int(number)
        return number


HYPERPARAMETERS = [
    Hyper("n_layer", "model", "层数", "layers", "堆叠的 Transformer 块数", "Transformer blocks stacked", 1, 8),
    Hyper("n_head", "model", "注意力头数", "attention heads", "每层的注意力头；隐藏维度须能被它整除",
          "heads per layer; the hidden size must divide by it", 1, 8),
    Hyper("n_embd", "model", "隐藏维度", "hidden size", "每个词元的向量长度 d", "the vector length d of a token",
          32, 512, 32),
    Hyper("seq_len", "model", "上下文长度", "context length", "模型一次能看的最多词元数", "most tokens seen at once",
          32, LIMITS.max_seq_len, 32),
    Hyper("dropout", "model", "丢弃率", "dropout", "训练时随机置零的比例", "share of activations zeroed in training",
          0, 0.5, 0.05),
    Hyper("causal", "model", "因果掩码", "causal mask", "关掉后能偷看后面的词元（演示用）",
          "off: positions can peek at later tokens (a demo)"),
    Hyper("optimizer", "training", "优化器", "optimizer", "muon：块内矩阵用正交化的动量更新，其余用 AdamW",
          "muon: orthogonalised momentum for the block matrices, AdamW for the rest", choices=("muon", "adamw")),
    Hyper("lr", "training", "学习率", "learning rate", "AdamW 每步沿梯度走多远；对数刻度",
          "how far each AdamW step moves; log scale", 1e-5, 0.1, 0.05, log=True),
    Hyper("muon_lr", "training", "Muon 学习率", "Muon learning rate", "Muon 更新块内矩阵的步长（优化器为 muon 时）",
          "Muon's step for the block matrices (when the optimizer is muon)", 0.001, 0.1, 0.001),
    Hyper("warmup_ratio", "training", "线性预热比例", "warmup share", "学习率从 0 升到最大所用的步数比例",
          "share of steps to ramp the learning rate up", 0, 0.5, 0.01),
    Hyper("max_steps", "training", "步数", "steps", "参数更新的次数", "optimizer steps", 1, LIMITS.max_steps, 10),
    Hyper("batch_size", "training", "批大小", "batch size", "每次参数更新用的样本数", "samples per optimizer step",
          1, LIMITS.max_batch_size),
    Hyper("micro_batch", "training", "微批", "micro-batch", "每次前向的样本数；批大小 ÷ 微批 = 梯度累积步数",
          "samples per forward pass; batch size / micro-batch = accumulation steps", 1, LIMITS.max_batch_size),
    Hyper("pack", "training", "样本打包", "packing", "把短样本首尾相接装进一行，不浪费在填充上",
          "pack short samples end to end: no compute spent on padding"),
    Hyper("weight_decay", "training", "权重衰减", "weight decay", "把权重往 0 拉的力度", "how hard weights are pulled "
          "toward 0", 0, 0.3, 0.01),
    Hyper("grad_clip", "training", "梯度裁剪", "gradient clipping", "梯度范数的上限；0 = 不裁剪",
          "the largest gradient norm; 0 = off", 0, 5, 0.1),
    Hyper("eval_interval", "training", "评估间隔", "eval interval", "每隔多少步算一次验证损失并回答固定问题",
          "steps between evaluations", 1, 5000),
    Hyper("seed", "training", "随机种子", "seed", "同样的种子得到同样的训练", "the same seed gives the same run",
          0, 9999),
    Hyper("precision", "training", "精度", "precision", "auto：bf16 更快时才用", "auto: bf16 only where faster",
          choices=("auto", "fp32", "bf16")),
]
BY_NAME = {h.name: h for h in HYPERPARAMETERS}

PRESETS = {  # key -> (中文, English, values; "minutes" = a time budget)
    "lesson": ("本课模型", "the lesson's model", {}),
    "demo30": ("30 秒演示", "30-second demo",
               {"n_layer": 2, "n_embd": 128, "n_head": 4, "seq_len": 128, "max_steps": 150, "eval_interval": 25}),
    "high_lr": ("学习率太大会怎样", "too high a learning rate", {"lr": 0.1, "max_steps": 200, "eval_interval": 50,
                                                           "warmup_ratio": 0.0, "grad_clip": 0.0}),
    "no_causal": ("去掉因果掩码", "no causal mask", {"causal": False, "max_steps": 300, "eval_interval": 50}),
    "adamw_vs_muon": ("AdamW 对比 Muon", "AdamW vs Muon", {"max_steps": 120, "eval_interval": 30}),
}
# A preset may also train on a small part of the course: the 30-second demo learns 8 facts (the two fixed questions
# among them) well enough to answer them, where 30 seconds of the whole course only shows noise. Its steps are fixed,
# not a time budget: on a busy or slow laptop it takes longer but still ends with answers (150 steps: 18 s here).
PRESET_DATA = {"demo30": {"train_path": "data/demo_train.jsonl", "val_path": "data/demo_val.jsonl"}}
# A series preset starts one run per value of one hyperparameter, one after the other, everything else (seed, steps,
# data) the same; the compare tab then shows them as A and B. key -> (hyperparameter, [(value, label), ...]).
SERIES = {"adamw_vs_muon": ("optimizer", [("adamw", "AdamW"), ("muon", "Muon")])}


def defaults(cfg: dict) -> dict:
    """Each hyperparameter's value in config.yaml."""
    return {h.name: cfg[h.section][h.name] for h in HYPERPARAMETERS}


def preset_values(cfg: dict, key: str) -> dict:
    """config.yaml's values with a preset applied (the time budget key 'minutes' included, 0 = none)."""
    if key not in PRESETS:
        raise UserError(f"没有这个预设：{key}", f"no such preset: {key} (one of {', '.join(PRESETS)})")
    return {**defaults(cfg), "minutes": 0, **PRESETS[key][2]}


def make_config(config_path, values: dict, check_ranges: bool = True) -> dict:
    """config.yaml plus the given hyperparameters (None = keep the file's value), each checked against its slider's
    range (check_ranges), then the whole config checked by the engine."""
    updates: dict = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in BY_NAME:
            raise UserError(f"未知超参数 {name}", f"unknown hyperparameter {name}")
        h = BY_NAME[name]
        updates.setdefault(h.section, {})[name] = h.check(value) if check_ranges else value
    return load_config(config_path, updates=updates)


def api_signature(extra: list[inspect.Parameter]) -> tuple[inspect.Signature, dict]:
    """A typed signature with every hyperparameter as an optional keyword (None = config.yaml's value), then
    `extra`: what gr.api reads to describe /train_start."""
    annotations = {}
    params = []
    for h in HYPERPARAMETERS:
        annotations[h.name] = h.kind | None
        params.append(inspect.Parameter(h.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=annotations[h.name]))
    for p in extra:
        annotations[p.name] = p.annotation
    return inspect.Signature(params + list(extra), return_annotation=dict), annotations


def cli_command(run_cfg: dict, base_cfg: dict, save_dir: str) -> str:
    """The command that trains the same run from a terminal: only what differs from config.yaml."""
    parts = ["python -m gpt_mini.train"]
    for h in HYPERPARAMETERS:
        value = run_cfg[h.section][h.name]
        if value != base_cfg[h.section][h.name]:
            shown = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
                else str(value)
            parts.append(f"--set {h.section}.{h.name}={shown}")
    for key in ("train_path", "val_path"):
        if run_cfg["data"][key] != base_cfg["data"][key]:
            parts.append(f"--set data.{key}={run_cfg['data'][key]}")
    parts.append(f"--set save.dir={save_dir}")
    return " ".join(parts)


def hyperparameter_text() -> dict:
    """Each hyperparameter's label and help for the UI text tables (ui/i18n.py): 'hp.NAME', 'hp.NAME.help'."""
    out = {}
    for h in HYPERPARAMETERS:
        out[f"hp.{h.name}"] = (f"{h.zh} {h.name}", f"{h.en[0].upper()}{h.en[1:]} ({h.name})")
        out[f"hp.{h.name}.help"] = (h.help_zh, h.help_en)
    return out
