"""Shared look: fonts, the two loss colours, the token palette, page CSS, and the tab header line."""

import html

import plotly.graph_objects as go

from gpt_mini.durations import fmt_duration

FONT = '"Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif'
TRAIN_COLOR, EVAL_COLOR, LR_COLOR = "#1f77b4", "#d62728", "#7f7f7f"  # train loss, eval loss: same everywhere
UNSEEN_COLOR = "#ff7f0e"  # loss on facts never taught
COMPARE_COLORS = {"A": (TRAIN_COLOR, EVAL_COLOR), "B": ("#17becf", "#e377c2")}  # compare: (train, eval) of A, B
TOKEN_PALETTE = ["#fde2a7", "#b8e0d2", "#f7c6c7", "#c9d7f8", "#e2d0f5", "#d4edbc", "#ffd6a5", "#cce3f0"]
SEQUENTIAL = "Blues"

CSS = f"""
body, .gradio-container, .prose {{ font-family: {FONT}; }}
.en {{ font-size: 0.8em; color: #667; }}
.tab-intro {{ font-size: 1.05em; margin: 2px 0 8px 0; }}
.big-numbers {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.big-numbers .num {{ background: #f4f6fb; border-radius: 8px; padding: 6px 12px; min-width: 110px; }}
.big-numbers .num b {{ display: block; font-size: 1.7em; line-height: 1.2; }}
.big-numbers .num span {{ font-size: 0.8em; color: #556; }}
.tokens {{ line-height: 2.6; font-size: 1.15em; }}
.tok {{ display: inline-block; margin: 2px 1px; padding: 0 4px; border-radius: 4px; text-align: center;
        vertical-align: top; line-height: 1.3; }}
.tok small {{ display: block; font-size: 0.6em; color: #444; font-family: monospace; }}
.tok.partial {{ outline: 2px dashed #889; outline-offset: -2px; }}  /* part of one character's bytes */
.tok-legend {{ font-size: 0.85em; color: #445; margin-top: 4px; }}
.error-line {{ color: #b00020; font-weight: 600; }}
.badge {{ color: white; border-radius: 10px; padding: 2px 10px; font-size: 0.9em; font-weight: 600; }}
.pipeline {{ display: flex; flex-wrap: wrap; align-items: stretch; gap: 4px; }}
.pipeline .stage {{ background: #eef3fb; border: 1px solid #c9d7f8; border-radius: 8px; padding: 6px 8px;
                    min-width: 90px; }}
.pipeline .stage b {{ font-size: 1.2em; }}
.pipeline .stage {{ flex: 1 1 230px; }}  /* a sentence per box: four boxes a row at 1280 px, one on a phone */
.pipeline .stage .say {{ font-size: 0.88em; margin: 2px 0 4px 0; line-height: 1.35; }}
.pipeline .arrow {{ align-self: center; font-size: 1.4em; color: #889; }}
table.compare {{ border-collapse: collapse; width: 100%; }}
table.compare td, table.compare th {{ border-bottom: 1px solid #e3e6ef; padding: 3px 8px; text-align: left; }}
table.compare tr.differs {{ background: #fff3bf; font-weight: 600; }}
/* ---- training tab on a projector (1280x800) ---- */
#train-status .big-numbers {{ gap: 6px; flex-wrap: nowrap; }}
#train-status .num {{ flex: 1 1 0; min-width: 0; padding: 4px 8px; }}
#train-status .num b {{ font-size: 1.35em; white-space: nowrap; }}
#train-status .num span {{ white-space: nowrap; }}
.latest {{ font-size: 0.95em; }}
.latest .qa {{ border-left: 4px solid #d0d5e2; padding: 2px 8px; margin: 6px 0; }}
.latest .qa.right {{ border-left-color: #1a7f37; }}
.latest .q {{ color: #556; font-size: 0.85em; }}
.latest .a {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
.running-about {{ margin-bottom: 4px; }}
#train-error:not(:has(.error-line)) {{ display: none; }}  /* no empty band between the buttons and the numbers */
/* ---- narrow screens: phones (390 px) ---- */
@media (max-width: 767px) {{
  [role="tablist"] > button[role="tab"] {{ padding: 0 var(--size-2); }}  /* six tabs in a row or two, no "…" */
  /* chat: the answers and the input first, the settings below them */
  .chat-row > .chat-main, .chat-row > .chat-settings {{ flex-basis: 100%; min-width: 100% !important; }}
  .chat-row > .chat-main {{ order: -1; }}
  .chat-bot {{ height: 260px !important; }}  /* the input stays on the first screen */
  .chat-send {{ min-width: 64px !important; }}  /* room for the input's placeholder on one line */
  .chat-verdict > * {{ flex-basis: 100%; min-width: 100% !important; }}  /* the badge gets a line of its own */
  /* training: the run (buttons, numbers, chart, answers) first, the form below; numbers in rows of three */
  #train-screen {{ order: -1; }}
  #train-status .big-numbers {{ flex-wrap: wrap; }}
  #train-status .num {{ flex: 1 1 28%; }}
}}
.badge {{ display: inline-block;  /* one pill on any width: never split over two lines */
          max-width: 100%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
          vertical-align: middle; }}
"""


def big_numbers(items) -> str:
    """[(value, label), ...] -> large labelled numbers."""
    cells = "".join(f'<div class="num"><b>{html.escape(str(v))}</b><span>{html.escape(label)}</span></div>'
                    for v, label in items)
    return f'<div class="big-numbers">{cells}</div>'


def in_language(pair: tuple[str, str], lang: str, **values) -> str:
    """(中文, English) in one language ('en' or else Chinese), with {name} fields filled from values."""
    text = pair[1] if lang == "en" else pair[0]
    return text.format(**values) if values else text


def error_line(message: str) -> str:
    return f'<div class="error-line">⚠ {html.escape(message)}</div>' if message else ""


TITLE_AND_LEGEND = dict(  # title on top, legend at the bottom of the figure: however many rows it wraps to, the
    # legend pushes the bottom margin (plotly's automargin) and never reaches the title
    title=dict(x=0.01, y=0.98, yanchor="top", xanchor="left", font=dict(size=15)),
    legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, x=0, font=dict(size=12)),
    margin=dict(l=60, r=30, t=50, b=50))


def figure(title: str = "", x: str = "", y: str = "", height: int = 420) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(xaxis_title=x, yaxis_title=y, height=height, font=dict(family=FONT, size=13),
                      template="plotly_white", **TITLE_AND_LEGEND)
    fig.update_layout(title_text=title)
    return fig


def fmt_seconds(seconds: float) -> str:
    """m:ss, the same as the CLI log."""
    return fmt_duration(seconds, clock=True)
