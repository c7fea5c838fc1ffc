"""Tab 概览 Overview: the pipeline and where each step lives in gpt_mini; the model-size calculator.

build() = layout() + wire_calculator(); the page load fills the calculator at once, then once the training pace is
measured adds the time (TabParts.on_load)."""

import html

import gradio as gr

from gpt_mini.visualize import model_size

from .i18n import t
from .style import big_numbers, error_line, figure
from .tabs import Step, TabParts, View

PIPELINE = [  # (中文, English, where in gpt_mini)
    ("分词", "tokenize", "tokenizer.py · encode(), train_tokenizer()"),
    ("批处理", "batch", "data.py · encode_row(), Batches, pack()（样本首尾相接 / packed rows）"),
    ("前向", "forward", "model.py · GPT.forward(), Block, CausalSelfAttention"),
    ("损失", "loss", "model.py · GPT.forward(targets) → cross_entropy（只算回答 / answer only）"),
    ("反向", "backward", "train.py · Trainer.run() → loss.backward()"),
    ("优化", "optimize", "optim.py · Muon + AdamW; train.py · lr_at(), clip_grad_norm_"),
    ("保存", "save", "checkpoint.py · atomic_save(), make_checkpoint(), quantize_int8()"),
    ("推理", "inference",
     "generate.py · Decoding, sampling_stages(); serving.py · BatchServer（全班一起答 / one batch for the class）"),
]

def pipeline_html() -> str:
    parts = []
    for i, (zh, en, where) in enumerate(PIPELINE):
        if i:
            parts.append('<div class="arrow">→</div>')
        parts.append(f'<div class="stage"><b>{zh}</b> <span class="en">{en}</span><br>'
                     f'<code style="font-size:0.78em">{html.escape(where)}</code></div>')
    return '<div class="pipeline">' + "".join(parts) + "</div>"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def _flops(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n < 1e9 else f"{n / 1e9:.2f} G"


def calculate(cfg, pace, n_layer, n_head, n_embd, seq_len, vocab, measure: bool = True):
    """Model-size calculator: numbers, formula, a bar chart of where the parameters are.
    measure=False answers at once and leaves the time out until the training pace has been measured."""
    n_layer, n_head, n_embd, seq_len, vocab = (int(v or 0) for v in (n_layer, n_head, n_embd, seq_len, vocab))
    if min(n_layer, n_head, n_embd, seq_len, vocab) <= 0 or n_embd % n_head:
        msg = "n_embd 必须能被 n_head 整除，且各项大于 0 / n_embd must be divisible by n_head; all sizes positive"
        return error_line(msg), "", figure()
    size = model_size(n_layer, n_head, n_embd, seq_len, vocab)
    base = pace.measure()["base"] if measure or pace.ready() else None
    per_100 = "测量中…"
    if base:
        sized = {**cfg, "model": {**cfg["model"], "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
                                  "seq_len": seq_len}, "tokenizer": {**cfg["tokenizer"], "vocab_size": vocab}}
        per_100 = f"{pace.step_seconds(sized) * 100:.0f} 秒"
    numbers = big_numbers([
        (f"{size['params']:,}", "参数量 / parameters"),
        (_mb(size["weights_bytes"]), "权重 fp32 / weights"),
        (_mb(size["train_bytes"]), "训练内存 / weights+grads+AdamW"),
        (_flops(size["flops_train_per_token"]), "训练 FLOPs/词元 / per token"),
        (per_100, "每 100 步约 / per 100 steps"),
    ])
    d, L, T = n_embd, n_layer, seq_len
    explain = (f"**参数量 / parameters**: {size['formula']}\n\n"
               f"**内存 / memory**: 权重 weights 4 字节×N = {_mb(size['weights_bytes'])}；int8 量化后约 "
               f"{_mb(size['int8_bytes'])}；训练时再加梯度 grads 4N 和 AdamW 两个动量 8N → {_mb(size['train_bytes'])}"
               f"（不含激活 / activations not included）\n\n"
               f"**计算量 / FLOPs per token**: 训练 ≈ 6N + 12·L·T·d = 6·{size['params']:,} + 12·{L}·{T}·{d} = "
               f"{size['flops_train_per_token']:,}。一次乘加 = 2 FLOPs，前向每个参数 2 FLOPs（2N），"
               "反向约是前向的 2 倍（4N）；注意力的 q·kᵀ 和加权求和 v 每层每词元各 2·T·d，前向 4·L·T·d，训练 ×3 / "
               "forward 2N + 4LTd, training 3× that.\n\n"
               + (f"**时间 / time**: 在这台机器上实测默认配置一步 {base['seconds_per_step']:.3f} 秒"
                  f"（每步约 {base['tokens_per_step']:.0f} 个词元），再实测一个小模型，按 FLOPs 在两者之间估算"
                  f"（小模型的一步主要是固定开销）/ measured a default step and a small model's step on this "
                  f"machine, other sizes by FLOPs between them." if base else
                  "**时间 / time**: 正在实测一步 / timing one step…"))
    fig = figure("参数都在哪里 / where the parameters are", "参数量 / parameters", "", height=300)
    parts = [("词嵌入 = 输出层 embedding (V·d)", vocab * d),
             (f"注意力 attention ({L}×(4d²+4d))", L * (4 * d * d + 4 * d)),
             (f"前馈网络 MLP ({L}×(8d²+5d))", L * (8 * d * d + 5 * d)), (f"RMSNorm ({2 * L + 1}×d)", (2 * L + 1) * d)]
    fig.add_bar(x=[v for _, v in parts], y=[k for k, _ in parts], orientation="h", marker_color="#4c78a8",
                text=[f"{v:,}" for _, v in parts], textposition="auto")
    fig.update_yaxes(autorange="reversed")
    return numbers, explain, fig


def model_line(store) -> str:
    """The default model's size, vocabulary and step, or why it could not be loaded (the page still opens)."""
    try:
        model, tok, ckpt = store.get()
        return t("overview.model_loaded") + f" {model.num_params():,} · {tok.get_vocab_size()} · {ckpt.get('step')}"
    except Exception as e:  # noqa: BLE001 - the page still opens and says why
        return t("overview.model_not_loaded") + " " + html.escape(str(e))


def layout(store, cfg) -> View:
    v = View()
    gr.Markdown(t("overview.intro"), elem_classes="tab-intro")
    # Bilingual on purpose: gr.I18n translates only one key per string and the diagram has eight stage names.
    gr.HTML(pipeline_html())
    gr.Markdown(model_line(store))
    with gr.Accordion(t("overview.muon_title"), open=False):
        gr.Markdown(t("overview.muon"))
    m = cfg["model"]
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            gr.Markdown("### " + t("overview.calculator"))
            v.sizes = [gr.Slider(1, 24, value=m["n_layer"], step=1, label=t("overview.n_layer")),
                       gr.Slider(1, 16, value=m["n_head"], step=1, label=t("overview.n_head")),
                       gr.Slider(32, 1024, value=m["n_embd"], step=32, label=t("overview.n_embd")),
                       gr.Slider(16, 1024, value=m["seq_len"], step=16, label=t("overview.seq_len")),
                       gr.Slider(300, 50000, value=cfg["tokenizer"]["vocab_size"], step=1,
                                 label=t("overview.vocab_size"))]
            v.reset = gr.Button(t("common.reset"))
        with gr.Column(scale=3):
            v.numbers = gr.HTML()
            v.chart = gr.Plot(show_label=False)
            v.formula = gr.Markdown()
    v.outputs = [v.numbers, v.formula, v.chart]
    return v


def default_sizes(cfg) -> tuple:
    m = cfg["model"]
    return m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"]


def wire_calculator(v: View, cfg, pace):
    gr.on([c.change for c in v.sizes], lambda *sizes: calculate(cfg, pace, *sizes), v.sizes, v.outputs,
          api_name="ui_model_size", api_visibility="undocumented", trigger_mode="always_last", concurrency_limit=None)
    v.reset.click(lambda: default_sizes(cfg), None, v.sizes, api_name="ui_model_size_reset", api_visibility="private")


def build(store, cfg, pace) -> TabParts:
    v = layout(store, cfg)
    wire_calculator(v, cfg, pace)
    # page load: numbers at once, then (first visitor only) time one real step and fill in the estimate
    fast = Step(lambda: calculate(cfg, pace, *default_sizes(cfg), measure=False), None, v.outputs, "ui_overview_load")
    measured = Step(lambda *sizes: calculate(cfg, pace, *sizes), v.sizes, v.outputs, "ui_overview_measure",
                    options={"show_progress": "minimal"})
    return TabParts(on_load=(fast, measured))
