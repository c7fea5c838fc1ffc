"""Tab 概览 Overview: the pipeline and where each step lives in gpt_mini; the model-size calculator.

build() = layout() + wire_calculator(); the page load fills the calculator at once, then once the training pace is
measured adds the time (TabParts.on_load)."""

import html

import gradio as gr

from gpt_mini.visualize import model_size

from .i18n import lang_of, say, t
from .style import big_numbers, error_line, figure
from .tabs import Step, TabParts, View

PIPELINE = [  # (stage: TEXT overview.stage.<stage> and overview.stage.<stage>.say, where in gpt_mini)
    ("tokenize", "tokenizer.py · encode(), train_tokenizer()"),
    ("batch", "data.py · encode_row(), Batches, pack()"),
    ("forward", "model.py · GPT.forward(), Block, CausalSelfAttention"),
    ("loss", "model.py · GPT.forward(targets) → cross_entropy"),
    ("backward", "train.py · Trainer.run() → loss.backward()"),
    ("optimize", "optim.py · Muon + AdamW; train.py · lr_at(), clip_grad_norm_"),
    ("save", "checkpoint.py · atomic_save(), make_checkpoint(), quantize_int8()"),
    ("inference", "generate.py · Decoding, sampling_stages(); serving.py · BatchServer"),
]


def pipeline_html(lang: str = "zh") -> str:
    """The eight steps as boxes in one language: the step's name, one plain sentence, where it lives in gpt_mini.
    Built in Chinese with the page; a page load re-renders it for an English browser."""
    parts = []
    for i, (stage, where) in enumerate(PIPELINE):
        if i:
            parts.append('<div class="arrow">→</div>')
        parts.append(f'<div class="stage"><b>{html.escape(say(f"overview.stage.{stage}", lang))}</b>'
                     f'<div class="say">{html.escape(say(f"overview.stage.{stage}.say", lang))}</div>'
                     f'<code style="font-size:0.78em">{html.escape(where)}</code></div>')
    return '<div class="pipeline" id="pipeline">' + "".join(parts) + "</div>"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def _flops(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n < 1e9 else f"{n / 1e9:.2f} G"


def calculate(cfg, pace, n_layer, n_head, n_embd, seq_len, vocab, measure: bool = True, lang: str = "zh"):
    """Model-size calculator: numbers, formula, a bar chart of where the parameters are, in one language (the
    error line stays bilingual). measure=False answers at once and leaves the time out until the training pace
    has been measured."""
    n_layer, n_head, n_embd, seq_len, vocab = (int(v or 0) for v in (n_layer, n_head, n_embd, seq_len, vocab))
    if min(n_layer, n_head, n_embd, seq_len, vocab) <= 0 or n_embd % n_head:
        msg = "n_embd 必须能被 n_head 整除，且各项大于 0 / n_embd must be divisible by n_head; all sizes positive"
        return error_line(msg), "", figure()
    optimizer = cfg["training"]["optimizer"]
    size = model_size(n_layer, n_head, n_embd, seq_len, vocab, optimizer)
    base = pace.measure()["base"] if measure or pace.ready() else None
    per_100 = say("overview.measuring", lang)
    if base:
        sized = {**cfg, "model": {**cfg["model"], "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
                                  "seq_len": seq_len}, "tokenizer": {**cfg["tokenizer"], "vocab_size": vocab}}
        per_100 = say("overview.seconds", lang, n=f"{pace.step_seconds(sized) * 100:.0f}")
    numbers = big_numbers([
        (f"{size['params']:,}", say("overview.tile.params", lang)),
        (_mb(size["weights_bytes"]), say("overview.tile.weights", lang)),
        (_mb(size["train_bytes"]), say("overview.tile.train_memory", lang)),
        (_flops(size["flops_train_per_token"]), say("overview.tile.flops", lang)),
        (per_100, say("overview.tile.per_100", lang)),
    ])
    d, L, T = n_embd, n_layer, seq_len
    explain = "\n\n".join([
        say("overview.explain.params", lang, formula=size["formula"]),
        say("overview.explain.memory", lang, weights=_mb(size["weights_bytes"]), int8=_mb(size["int8_bytes"]),
            state=say(f"overview.state.{optimizer}", lang, m=f"{size['muon_params']:,}"),
            train=_mb(size["train_bytes"])),
        say("overview.explain.flops", lang, n=f"{size['params']:,}", L=L, T=T, d=d,
            total=f"{size['flops_train_per_token']:,}"),
        say("overview.explain.time", lang, seconds=f"{base['seconds_per_step']:.3f}",
            tokens=f"{base['tokens_per_step']:.0f}") if base else say("overview.explain.timing", lang)])
    fig = figure(say("overview.chart_title", lang), say("overview.tile.params", lang), "", height=300)
    parts = [(say("overview.bar.embedding", lang), vocab * d),
             (say("overview.bar.attention", lang, L=L), L * (4 * d * d + 4 * d)),
             (say("overview.bar.mlp", lang, L=L), L * (8 * d * d + 5 * d)),
             (say("overview.bar.norm", lang, n=2 * L + 1), (2 * L + 1) * d)]
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
    # Chinese at build time; the page load re-renders it for an English browser (gr.I18n translates one key per
    # string and the diagram has sixteen)
    v.pipeline = gr.HTML(pipeline_html())
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


def calculate_ui(cfg, pace):
    """calculate() for a browser: the five sizes in, everything out in the browser's language."""
    def sized(n_layer, n_head, n_embd, seq_len, vocab, request: gr.Request):
        return calculate(cfg, pace, n_layer, n_head, n_embd, seq_len, vocab, lang=lang_of(request))
    return sized


def wire_calculator(v: View, cfg, pace):
    gr.on([c.change for c in v.sizes], calculate_ui(cfg, pace), v.sizes, v.outputs,
          api_name="ui_model_size", api_visibility="undocumented", trigger_mode="always_last", concurrency_limit=None)
    v.reset.click(lambda: default_sizes(cfg), None, v.sizes, api_name="ui_model_size_reset", api_visibility="private")


def build(store, cfg, pace) -> TabParts:
    v = layout(store, cfg)
    wire_calculator(v, cfg, pace)

    # page load: numbers at once (and the pipeline in English for an English browser), then (first visitor only)
    # time one real step and fill in the estimate
    def loaded(request: gr.Request):
        lang = lang_of(request)
        return (*calculate(cfg, pace, *default_sizes(cfg), measure=False, lang=lang),
                pipeline_html(lang) if lang != "zh" else gr.skip())

    fast = Step(loaded, None, v.outputs + [v.pipeline], "ui_overview_load")
    measured = Step(calculate_ui(cfg, pace), v.sizes, v.outputs, "ui_overview_measure",
                    options={"show_progress": "minimal"})
    return TabParts(on_load=(fast, measured))
