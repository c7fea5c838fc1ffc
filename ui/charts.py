"""Loss curves without Gradio: the training tab's live chart, saved runs' curves (metrics.csv) to overlay, the compare
tab's two runs on one progress axis, and the layout every loss figure shares (the compare tab and bench draw with
these too). Text is in one language (lang 'zh' or 'en'); CHART_TEXT joins ui/i18n.py's TEXT."""

import threading
from pathlib import Path

import pandas as pd
from plotly.subplots import make_subplots

from gpt_mini import runs
from gpt_mini.train import lr_at

from .style import COMPARE_COLORS, EVAL_COLOR, FONT, LR_COLOR, TITLE_AND_LEGEND, TRAIN_COLOR, UNSEEN_COLOR, in_language

CHART_TEXT = {  # key: (中文, English); no Gradio here, so the texts live beside the charts and join TEXT
    "chart.title": ("损失曲线", "Loss curves"),
    "chart.empty": ("点“开始”后曲线会出现在这里", "Press Start to see the curves"),
    "chart.steps": ("步", "steps"),
    "chart.loss": ("损失（交叉熵）", "loss (cross-entropy)"),
    "chart.lr_axis": ("学习率", "learning rate"),
    "chart.train_loss": ("训练损失", "train loss"),
    "chart.eval_loss": ("验证损失（学过的知识、新问法）", "eval loss (taught facts, new wordings)"),
    "chart.unseen": ("新知识：小模型学不会", "unseen facts: a small model cannot learn them"),
    "chart.lr": ("学习率", "learning rate"),
    "chart.default_model": ("默认模型", "default model"),
    "chart.run_train": ("{label} 训练", "{label} train"),
    "chart.run_eval": ("{label} 验证", "{label} eval"),
    "chart.compare_title": ("A 与 B 的损失曲线：横轴是各自训练的进度",
                            "Loss curves of A and B, each over its own run"),
    "chart.progress": ("训练进度（占这次训练总步数的 %）", "progress (% of the run's steps)"),
    "chart.ab_train": ("{ab} 训练损失（共 {steps} 步）", "{ab} train loss ({steps} steps)"),
    "chart.ab_eval": ("{ab} 验证损失", "{ab} eval loss"),
    "chart.ab_snapshot": ("{ab}：第 {step} 步", "{ab}: step {step}"),
    "chart.hover_step": ("第 %{customdata} 步：%{y:.3f}", "step %{customdata}: %{y:.3f}"),  # plotly template
}
DEFAULT_LABEL = "默认模型 default"  # the default model's curve among the runs (a checkbox label on the training tab)
MAX_POINTS = 600
_chart_cache: dict = {}
_chart_lock = threading.Lock()


def say(key: str, lang: str = "zh", **values) -> str:
    """CHART_TEXT[key] in one language ('en' or else Chinese), {name} fields filled from values."""
    return in_language(CHART_TEXT[key], lang, **values)



def run_metrics(runs_dir: Path) -> dict:
    """Runs' curves to overlay or compare: {label: metrics.csv path} (the default model's own curve first)."""
    found = {}
    if (runs.DEFAULT_DIR / runs.METRICS).is_file():
        found[DEFAULT_LABEL] = runs.DEFAULT_DIR / runs.METRICS
    for d in runs.run_dirs(runs_dir):
        if (d / runs.METRICS).is_file():
            found[d.name] = d / runs.METRICS
    return found


def _thin(points):
    k = max(1, len(points) // MAX_POINTS)
    return points[::k] if k > 1 else points


def _read_metrics(path: Path):
    """A metrics.csv as a DataFrame, or None if it cannot be read (half-written or foreign)."""
    try:
        return pd.read_csv(path)
    except Exception:  # noqa: BLE001 - a half-written or foreign file is skipped
        return None


def add_metrics_curves(fig, label: str, path: Path, dash: str, opacity: float = 0.5, lang: str = "zh") -> bool:
    """A saved run's train and eval loss from its metrics.csv; False if the file cannot be read."""
    df = _read_metrics(path)
    if df is None:
        return False
    label = say("chart.default_model", lang) if label == DEFAULT_LABEL and lang == "en" else label
    fig.add_scatter(x=df["step"], y=df["train_loss"], name=say("chart.run_train", lang, label=label),
                    opacity=opacity, line=dict(color=TRAIN_COLOR, dash=dash))
    fig.add_scatter(x=df["step"], y=df["eval_loss"], name=say("chart.run_eval", lang, label=label), opacity=opacity,
                    line=dict(color=EVAL_COLOR, dash=dash), mode="lines+markers")
    return True


def style_loss_figure(fig, title: str, lang: str = "zh", height: int = 440):
    fig.update_layout(height=height, template="plotly_white", font=dict(family=FONT, size=13), **TITLE_AND_LEGEND)
    fig.update_layout(title_text=title, margin_r=70)
    fig.update_xaxes(title_text=say("chart.steps", lang))
    fig.update_yaxes(title_text=say("chart.loss", lang), secondary_y=False)


def compare_chart(curves, lang: str = "zh"):
    """Two runs on one axis of progress: step / that run's max_steps (0-100%), so a 349-step run and a 6000-step run
    both span the width and their warmup and cosine decay line up. curves: [(ab, metrics_path or None, max_steps,
    snapshot_step or None)], ab 'A' or 'B'; A solid, B dashed, each in its own pair of colours (train, eval);
    a snapshot is a vertical line where it was taken. Hovering shows the real step."""
    fig = make_subplots()
    for ab, path, max_steps, snapshot in curves:
        df = _read_metrics(path) if path else None
        train_color, eval_color = COMPARE_COLORS[ab]
        dash = "solid" if ab == "A" else "dash"
        if df is not None and len(df):
            total = int(max_steps or 0) or int(df["step"].max()) or 1
            x = df["step"] / total
            hover = say("chart.hover_step", lang)
            fig.add_scatter(x=x, y=df["train_loss"], customdata=df["step"], hovertemplate=hover,
                            name=say("chart.ab_train", lang, ab=ab, steps=f"{total:,}"), legendgroup=ab,
                            mode="lines", line=dict(color=train_color, dash=dash, width=2))  # eval: with markers
            fig.add_scatter(x=x, y=df["eval_loss"], customdata=df["step"], hovertemplate=hover,
                            name=say("chart.ab_eval", lang, ab=ab), legendgroup=ab, mode="lines+markers",
                            line=dict(color=eval_color, dash=dash, width=2.5))
            if snapshot is not None:  # where on its run's curve this snapshot was taken
                fig.add_vline(x=snapshot / total, line_dash=dash, line_color=train_color,
                              annotation_text=say("chart.ab_snapshot", lang, ab=ab, step=snapshot))
    style_loss_figure(fig, say("chart.compare_title", lang), lang)
    fig.update_xaxes(title_text=say("chart.progress", lang), tickformat=".0%", range=[0, 1.02])
    return fig


def chart(run, runs_dir: Path, overlay=(), lang: str = "zh", height: int = 440):
    """Train loss (every step), eval loss (each eval), lr (second axis), plus dashed curves of earlier runs.
    run: a TrainingRun (its curves()); figures are cached by the run's version, the overlay and the language."""
    curves = run.curves()
    overlay = list(overlay or ()) + [n for n in curves["before"] if n not in (overlay or ())]  # a series' earlier runs
    key = (curves["version"], curves["name"], tuple(overlay), lang, height)
    with _chart_lock:
        if key in _chart_cache:
            return _chart_cache[key]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    files = run_metrics(runs_dir)
    for i, label in enumerate(overlay or ()):
        if label in files and label != curves["name"]:
            add_metrics_curves(fig, label, files[label], ["dash", "dot", "dashdot", "longdash"][i % 4], lang=lang)
    losses = _thin(curves["losses"])
    if losses:
        fig.add_scatter(x=[s for s, _ in losses], y=[v for _, v in losses], name=say("chart.train_loss", lang),
                        line=dict(color=TRAIN_COLOR, width=2))
    if curves["evals"]:
        fig.add_scatter(x=[r["step"] for r in curves["evals"]], y=[r["eval_loss"] for r in curves["evals"]],
                        name=say("chart.eval_loss", lang), mode="lines+markers", line=dict(color=EVAL_COLOR, width=3))
        unseen = [r for r in curves["evals"] if r.get("unseen_loss") not in (None, "")]
        if unseen:
            fig.add_scatter(x=[r["step"] for r in unseen], y=[r["unseen_loss"] for r in unseen],
                            name=say("chart.unseen", lang), mode="lines+markers",
                            line=dict(color=UNSEEN_COLOR, width=2, dash="dot"))
    if losses and curves["cfg"]:
        tr = curves["cfg"]["training"]
        steps = [s for s, _ in losses]
        fig.add_scatter(x=steps, y=[lr_at(s - 1, tr["max_steps"], tr["lr"], tr["warmup_ratio"]) for s in steps],
                        name=say("chart.lr", lang), line=dict(color=LR_COLOR, dash="dot", width=1.5), secondary_y=True)
    style_loss_figure(fig, say("chart.title" if losses or overlay else "chart.empty", lang), lang, height)
    fig.update_yaxes(title_text=say("chart.lr_axis", lang), secondary_y=True, showgrid=False, tickformat=".1e")
    with _chart_lock:
        if len(_chart_cache) > 16:
            _chart_cache.clear()
        _chart_cache[key] = fig
    return fig
