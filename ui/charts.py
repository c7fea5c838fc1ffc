"""Loss curves without Gradio: the training tab's live chart, saved runs' curves (metrics.csv) to overlay, and the
layout every loss figure shares (the compare tab and bench draw with these too)."""

import threading
from pathlib import Path

import pandas as pd
from plotly.subplots import make_subplots

from gpt_mini import runs
from gpt_mini.train import lr_at

from .style import EVAL_COLOR, FONT, LR_COLOR, TITLE_AND_LEGEND, TRAIN_COLOR, UNSEEN_COLOR

UNSEEN_NAME = "新知识：小模型学不会 / unseen facts: a small model cannot learn them"
MAX_POINTS = 600
_chart_cache: dict = {}
_chart_lock = threading.Lock()


def run_metrics(runs_dir: Path) -> dict:
    """Runs' curves to overlay or compare: {label: metrics.csv path} (the default model's own curve first)."""
    found = {}
    if (runs.DEFAULT_DIR / runs.METRICS).is_file():
        found["默认模型 default"] = runs.DEFAULT_DIR / runs.METRICS
    for d in runs.run_dirs(runs_dir):
        if (d / runs.METRICS).is_file():
            found[d.name] = d / runs.METRICS
    return found


def _thin(points):
    k = max(1, len(points) // MAX_POINTS)
    return points[::k] if k > 1 else points


def add_metrics_curves(fig, label: str, path: Path, dash: str, opacity: float = 0.5) -> bool:
    """A saved run's train and eval loss from its metrics.csv; False if the file cannot be read."""
    try:
        df = pd.read_csv(path)
    except Exception:  # noqa: BLE001 - a half-written or foreign file is skipped
        return False
    fig.add_scatter(x=df["step"], y=df["train_loss"], name=f"{label} 训练 train", opacity=opacity,
                    line=dict(color=TRAIN_COLOR, dash=dash))
    fig.add_scatter(x=df["step"], y=df["eval_loss"], name=f"{label} 验证 eval", opacity=opacity,
                    line=dict(color=EVAL_COLOR, dash=dash), mode="lines+markers")
    return True


def style_loss_figure(fig, title: str):
    fig.update_layout(height=440, template="plotly_white", font=dict(family=FONT, size=13), **TITLE_AND_LEGEND)
    fig.update_layout(title_text=title, margin_r=70)
    fig.update_xaxes(title_text="步 / steps")
    fig.update_yaxes(title_text="损失（交叉熵）/ loss", secondary_y=False)


def chart(run, runs_dir: Path, overlay=()):
    """Train loss (every step), eval loss (each eval), lr (second axis), plus dashed curves of earlier runs.
    run: a TrainingRun (its curves()); figures are cached by the run's version and the overlay."""
    curves = run.curves()
    overlay = list(overlay or ()) + [n for n in curves["before"] if n not in (overlay or ())]  # a series' earlier runs
    key = (curves["version"], curves["name"], tuple(overlay))
    with _chart_lock:
        if key in _chart_cache:
            return _chart_cache[key]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    files = run_metrics(runs_dir)
    for i, label in enumerate(overlay or ()):
        if label in files and label != curves["name"]:
            add_metrics_curves(fig, label, files[label], ["dash", "dot", "dashdot", "longdash"][i % 4])
    losses = _thin(curves["losses"])
    if losses:
        fig.add_scatter(x=[s for s, _ in losses], y=[v for _, v in losses], name="训练损失 train loss",
                        line=dict(color=TRAIN_COLOR, width=2))
    if curves["evals"]:
        fig.add_scatter(x=[r["step"] for r in curves["evals"]], y=[r["eval_loss"] for r in curves["evals"]],
                        name="验证损失（学过的知识、新问法）/ eval loss (taught facts, new wordings)",
                        mode="lines+markers", line=dict(color=EVAL_COLOR, width=3))
        unseen = [r for r in curves["evals"] if r.get("unseen_loss") not in (None, "")]
        if unseen:
            fig.add_scatter(x=[r["step"] for r in unseen], y=[r["unseen_loss"] for r in unseen], name=UNSEEN_NAME,
                            mode="lines+markers", line=dict(color=UNSEEN_COLOR, width=2, dash="dot"))
    if losses and curves["cfg"]:
        tr = curves["cfg"]["training"]
        steps = [s for s, _ in losses]
        fig.add_scatter(x=steps, y=[lr_at(s - 1, tr["max_steps"], tr["lr"], tr["warmup_ratio"]) for s in steps],
                        name="学习率 lr", line=dict(color=LR_COLOR, dash="dot", width=1.5), secondary_y=True)
    style_loss_figure(fig, "损失曲线 / loss curves" if losses or overlay else
                      "点“开始”后曲线会出现在这里 / press start to see the curves")
    fig.update_yaxes(title_text="学习率 / learning rate", secondary_y=True, showgrid=False, tickformat=".1e")
    with _chart_lock:
        if len(_chart_cache) > 16:
            _chart_cache.clear()
        _chart_cache[key] = fig
    return fig
