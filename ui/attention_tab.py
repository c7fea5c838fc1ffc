"""Tab 注意力 Attention: causal mask, the trained model's attention weights, how rotary position embedding works, and
one forward pass of the model with its real numbers.

build() = three sections (attention, RoPE, one forward pass), each a layout function and its wiring function, plus
the /trace endpoint; the page load fills every plot (TabParts.on_load)."""

import gradio as gr
import numpy as np
from plotly.subplots import make_subplots

from gpt_mini import runs
from gpt_mini.errors import UserError
from gpt_mini.visualize import (
    STAGES,
    attention_maps,
    causal_mask,
    logit_lens_compare,
    qk_vs_offset,
    rope_frequencies,
    rope_rotation,
    stage_view,
    step_stage,
    trace,
    trace_json,
)

from .endpoints import one_line
from .i18n import TEXT, t
from .limits import MODEL_CONCURRENCY
from .models import DEFAULT_KEY
from .style import FONT, SEQUENTIAL, error_line, figure
from .tabs import Step, TabParts, View

EXAMPLE = "注意力机制通过分配权重让模型关注关键位置。"
MAX_TEXT = 300


def mask_figure(n: int):
    n = max(1, min(int(n), 64))
    labels = [str(i) for i in range(n)]
    fig = figure(f"因果掩码（下三角）/ causal mask, {n} 个词元", "键：被看的位置 / key position",
                 "查询：当前位置 / query position", height=380)
    fig.add_heatmap(z=causal_mask(n), x=labels, y=labels, zmin=0, zmax=1, xgap=1, ygap=1,
                    colorscale=[[0, "#eeeeee"], [0.5, "#eeeeee"], [0.5, "#2b6cb0"], [1, "#2b6cb0"]],
                    colorbar=dict(title="1 = 可以看 / visible<br>0 = 遮住 / masked", tickvals=[0, 1]))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(margin_t=50)
    return fig


def attention_figure(store, text: str, layer: int, head: int, checkpoint: str = DEFAULT_KEY):
    """Heatmap of one head's weights: row = query token, column = key token; rows sum to 1."""
    text = (text or "").strip()[:MAX_TEXT]
    if not text:
        raise UserError("请输入一句话", "type a sentence first")
    model, tok, _ = store.get(checkpoint or DEFAULT_KEY)
    maps = attention_maps(model, tok, text)
    layer = max(0, min(int(layer), maps["n_layer"] - 1))
    head = max(0, min(int(head), maps["n_head"] - 1))
    z, labels = maps["weights"][layer][head], maps["tokens"]
    shape = f"（共 {maps['n_layer']} 层 × {maps['n_head']} 头）"
    fig = figure(f"第 {layer} 层 第 {head} 个头 / layer {layer}, head {head}{shape}",
                 "键：被关注的词元 / key token", "查询：当前词元 / query token", height=560)
    fig.add_heatmap(z=z, x=labels, y=labels, colorscale=SEQUENTIAL, zmin=0, zmax=1,
                    colorbar=dict(title="注意力权重<br>weight"),
                    hovertemplate="查询 query %{y}<br>键 key %{x}<br>权重 weight %{z:.3f}<extra></extra>")
    fig.update_layout(margin_t=50)
    small = dict(family=FONT, size=11 if len(labels) <= 40 else 8)
    fig.update_yaxes(autorange="reversed", tickfont=small, tickmode="array", tickvals=labels, ticktext=labels)
    fig.update_xaxes(tickangle=-60, tickfont=small, tickmode="array", tickvals=labels, ticktext=labels)
    return fig


def rope_figures(head_dim: int = 64, freq_index: int = 0, positions: int = 32):
    head_dim, positions = max(2, int(head_dim) // 2 * 2), max(2, min(int(positions), 512))
    freq_index = max(0, min(int(freq_index), head_dim // 2 - 1))
    rot = rope_rotation(head_dim, freq_index, positions)
    f1 = figure(f"一对 (x, y) 随位置旋转 / one pair rotating（i={freq_index}，每个位置转 "
                f"{rope_frequencies(head_dim)['freq'][freq_index]:.3f} 弧度 rad）", "x", "y", height=420)
    f1.add_scatter(x=rot["x"], y=rot["y"], mode="lines+markers+text", text=[str(p) for p in rot["position"]],
                   textposition="top center", marker=dict(color=rot["position"], colorscale="Viridis", size=9,
                                                          colorbar=dict(title="位置<br>position")),
                   line=dict(color="#bbb"), name="位置 position")
    f1.update_yaxes(scaleanchor="x", scaleratio=1, range=[-1.3, 1.3])
    f1.update_xaxes(range=[-1.3, 1.3])
    freqs = rope_frequencies(head_dim)
    f2 = figure("旋转频率 / frequency per pair", "维度对序号 i / pair index",
                "θ_i 弧度/位置 / rad per position", height=380)
    f2.add_scatter(x=freqs["pair"], y=freqs["freq"], mode="lines+markers", name="θ_i = 10000^(-2i/d)")
    f2.add_scatter(x=[freq_index], y=[freqs["freq"][freq_index]], mode="markers", marker=dict(size=14, color="#d62728"),
                   name=f"i={freq_index}")
    f2.update_yaxes(type="log")
    qk = qk_vs_offset(head_dim, max_offset=min(positions, 64))
    f3 = figure("q·k 只看相对距离 / only the offset matters",
                f"相对距离 m−n / offset（三条线重合 overlap，最大差 {qk['max_difference']:.0e}）", "q·k 得分 / score",
                height=380)
    for start, scores in qk["scores"].items():
        f3.add_scatter(x=qk["offset"], y=scores, mode="lines+markers" if start == 0 else "lines",
                       name=f"键在 key at {start}", line=dict(width=6 - 2 * list(qk["scores"]).index(start)))
    return f1, f2, f3


# ---- one forward pass ----

TRACE_EXAMPLE = "什么是注意力机制？"
BAR_AXIS = {"tokens": "词元 id / token id", "logits": "logit", "top": "概率 / probability"}


def stage_figure(view: dict):
    """A stage's panels side by side: heatmaps (rows are tokens, each with its own colour bar) or one bar chart."""
    panels = view["panels"]
    zh, en = TEXT[f"trace.stage.{view['stage']}"]
    where = f"第 {view['layer']} 层 第 {view['head']} 个头 · " if view["per_layer"] else ""
    where_en = f" · layer {view['layer']}, head {view['head']}" if view["per_layer"] else ""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p["name"] for p in panels], shared_yaxes=True,
                        horizontal_spacing=0.09 if len(panels) > 1 else 0.02)
    for k, p in enumerate(panels, 1):
        if p["kind"] == "bar":
            fig.add_bar(x=p["x"], y=p["y"], marker_color="#2b6cb0", text=[f"{v:.3g}" for v in p["y"]],
                        textposition="outside", row=1, col=k, hovertemplate="%{x}: %{y}<extra></extra>")
            fig.update_xaxes(title_text="词元 / token", row=1, col=k)
            fig.update_yaxes(title_text=BAR_AXIS[view["stage"]], row=1, col=k)
            continue
        fig.update_xaxes(title_text="键 / key" if p["x"] else "维度 / dimension", row=1, col=k)
        probs = p.get("zmin") == 0
        z = np.array(p["z"], dtype=np.float32)  # None (masked) -> NaN, a gap; arrays are 5x faster to draw than lists
        fig.add_heatmap(z=z, y=p["rows"], x=p["x"], zmin=p.get("zmin"), zmax=p.get("zmax"),
                        zmid=None if probs else 0, colorscale=SEQUENTIAL if probs else "RdBu_r", row=1, col=k,
                        colorbar=dict(x=fig.layout[f"xaxis{k if k > 1 else ''}"].domain[1] + 0.005, thickness=8,
                                      len=0.9),
                        hovertemplate="%{y}<br>[%{x}] = %{z:.4f}<extra></extra>")
    fig.update_layout(title_text=f"{where}{zh} / {en}{where_en}", height=460, font=dict(family=FONT, size=12),
                      template="plotly_white", margin=dict(l=80, r=40, t=70, b=50), showlegend=False)
    if panels[0]["kind"] == "heatmap":
        fig.update_yaxes(autorange="reversed", tickfont=dict(size=10))
        fig.update_yaxes(title_text="词元 / token", row=1, col=1)
    fig.update_annotations(font_size=12)
    return fig


def trace_view(store, question: str, checkpoint: str, stage: str, layer: int, head: int, delta: int = 0):
    """Trace the question (a few ms), move `delta` stages, and draw that stage: (view, figure, markdown, logit-lens
    rows, shape). The markdown's first line is the stage's sentence in the browser's language."""
    if stage not in STAGES:
        stage = STAGES[0]
    model, tok, _ = store.get(checkpoint or DEFAULT_KEY)
    tr = trace(model, tok, (question or "").strip()[:MAX_TEXT])
    shape = tr["shape"]
    stage, layer = step_stage(stage, layer, shape["n_layer"], delta)
    view = stage_view(tr, stage, layer, head)
    text = f"{t(f'trace.say.{stage}')}\n\n- `` {view['formula']} ``\n- `` {view['worked']} ``"
    lens = [["词嵌入 / embedding" if r["layer"] < 0 else f"第 {r['layer']} 层 / layer {r['layer']}"]
            + [f"{c['token']}  {c['prob']:.3f}" for c in r["top"]] for r in tr["lens"]]
    return view, stage_figure(view), text, lens, shape


def lens_models(store, checkpoint: str) -> tuple[dict, object, bool]:
    """The models whose logit lens is compared, {column label: model}: the checkpoint's run at step 0, at 25% of its
    steps and the final model, only the snapshots that exist. Without the run's snapshots (the default model: the
    runs folder is not in the repository) step 0 is a fresh model with the same config and seed. Also returns the
    tokenizer and whether step 0 is that fresh model."""
    key = checkpoint or DEFAULT_KEY
    model, tok, ckpt = store.get(key)
    run, columns = store.run_of(key), {}
    if run:
        if runs.parse_key(key)[0] == "snap":  # a snapshot: its run's final model
            model, _, ckpt = store.get(runs.run_key(run))
        steps, quarter = store.snapshot_steps(run), round(0.25 * ckpt["config"]["training"]["max_steps"])
        for step, label in ((0, "第 0 步 / step 0"), (quarter, f"第 {quarter} 步（25%）/ step {quarter} (25%)")):
            if step in steps and step < ckpt["step"] and step not in columns:
                columns[step] = label
        columns = {label: store.get(runs.snap_key(run, step))[0] for step, label in columns.items()}
    else:
        columns["第 0 步（新初始化）/ step 0 (fresh init)"] = store.initial(key)
    columns[f"最终：第 {ckpt['step']} 步 / final, step {ckpt['step']}"] = model
    return columns, tok, not run


def lens_compare_view(store, question: str, checkpoint: str):
    """The side-by-side logit lens as a table (rows: after the embedding and after each layer; columns: the
    models of lens_models; cells: the top-3 tokens and their probabilities) and the note under it."""
    models, tok, fresh = lens_models(store, checkpoint)
    cmp = logit_lens_compare(models, tok, (question or "").strip()[:MAX_TEXT])
    rows = []
    for i, layer in enumerate(cmp["layers"]):
        name = "词嵌入 / embedding" if layer < 0 else f"第 {layer} 层 / layer {layer}"
        rows.append([name] + [" · ".join(f"{c['token']} {c['prob']:.3f}" for c in cmp["lens"][label][i])
                              if i < len(cmp["lens"][label]) else "" for label in cmp["labels"]])
    table = {"headers": ["之后 / after", *cmp["labels"]], "data": rows}
    return table, str(t("trace.cmp.fresh") if fresh else t("trace.cmp.snapshots"))


def attention_layout(store, m: dict) -> View:
    v = View()
    gr.Markdown(t("attention.intro"), elem_classes="tab-intro")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            v.text = gr.Textbox(label=t("attention.text"), value=EXAMPLE, lines=3, max_length=MAX_TEXT)
            v.ckpt = gr.Dropdown(store.choices(), value=DEFAULT_KEY, label=t("common.checkpoint"),
                                 allow_custom_value=True)  # runs saved later: ModelStore checks every key
            v.layer = gr.Slider(0, m["n_layer"] - 1, value=0, step=1, label=t("attention.layer"))
            v.head = gr.Slider(0, m["n_head"] - 1, value=0, step=1, label=t("attention.head"))
            v.show = gr.Button(t("attention.show"), variant="primary")
            v.err = gr.HTML()
            v.n_mask = gr.Slider(2, 32, value=8, step=1, label=t("attention.mask_tokens"))
        with gr.Column(scale=3):
            v.att_plot = gr.Plot(show_label=False)
            v.mask_plot = gr.Plot(mask_figure(8), show_label=False)
    return v


def attention_ui(store):
    """The heatmap handler: (figure, "") or (skip, one error line)."""
    def attention(text: str, layer: int = 0, head: int = 0, checkpoint: str = DEFAULT_KEY):
        try:
            return attention_figure(store, text, layer, head, checkpoint), ""
        except UserError as e:
            return gr.skip(), error_line(str(e))
    return attention


def wire_attention(v: View, store):
    gr.on([v.show.click, v.text.submit, v.layer.release, v.head.release, v.ckpt.input], attention_ui(store),
          [v.text, v.layer, v.head, v.ckpt], [v.att_plot, v.err], api_name="attention",
          concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")
    v.n_mask.release(mask_figure, v.n_mask, v.mask_plot, api_name="ui_mask", api_visibility="undocumented")


def rope_layout(m: dict) -> View:
    v = View()
    gr.Markdown("### " + t("attention.rope_heading"))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            v.head_dim = gr.Slider(2, 128, value=m["n_embd"] // m["n_head"], step=2, label=t("attention.head_dim"))
            v.freq = gr.Slider(0, 63, value=3, step=1, label=t("attention.freq_index"))
            v.positions = gr.Slider(4, 128, value=24, step=1, label=t("attention.positions"))
            v.draw = gr.Button(t("attention.draw_rope"))
            gr.Markdown(t("attention.rope_explain"))
        with gr.Column(scale=3):
            v.rot_plot = gr.Plot(show_label=False)
            with gr.Row():
                v.freq_plot = gr.Plot(show_label=False)
                v.qk_plot = gr.Plot(show_label=False)
    return v


def wire_rope(v: View):
    gr.on([v.draw.click, v.head_dim.release, v.freq.release, v.positions.release], rope_figures,
          [v.head_dim, v.freq, v.positions], [v.rot_plot, v.freq_plot, v.qk_plot], api_name="rope",
          concurrency_limit=4)


def trace_layout(store, m: dict) -> View:
    v = View()
    gr.Markdown("### " + t("trace.heading"))
    gr.Markdown(t("trace.intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            v.question = gr.Textbox(label=t("trace.question"), value=TRACE_EXAMPLE, max_length=MAX_TEXT,
                                    elem_id="trace-question")
            v.ckpt = gr.Dropdown(store.choices(), value=DEFAULT_KEY, label=t("common.checkpoint"),
                                 allow_custom_value=True, elem_id="trace-ckpt")
            v.run = gr.Button(t("trace.run"), elem_id="trace-run")
            with gr.Row():
                v.prev = gr.Button(t("trace.prev"), elem_id="trace-prev", min_width=80)
                v.next = gr.Button(t("trace.next"), variant="primary", elem_id="trace-next", min_width=80)
            v.stage = gr.Dropdown([(t(f"trace.stage.{s}"), s) for s in STAGES], value=STAGES[0],
                                  label=t("trace.stage"), elem_id="trace-stage")
            v.layer = gr.Slider(0, m["n_layer"] - 1, value=0, step=1, label=t("attention.layer"))
            v.head = gr.Slider(0, m["n_head"] - 1, value=0, step=1, label=t("attention.head"))
            v.err = gr.HTML()
        with gr.Column(scale=3):
            v.plot = gr.Plot(show_label=False, elem_id="trace-plot")
            v.text = gr.Markdown(elem_id="trace-text")
            v.lens = gr.Dataframe(headers=["之后 / after", "1", "2", "3"], label=t("trace.lens"), interactive=False,
                                  elem_id="trace-lens")
            v.lens_cmp = gr.Dataframe(headers=["之后 / after"], label=t("trace.cmp"), interactive=False, wrap=True,
                                      elem_id="trace-lens-compare")
            v.lens_note = gr.Markdown(elem_id="trace-lens-note")
    return v


def trace_ui(store):
    """The forward-pass handlers: show (a stage, `delta` stages on) and compare (the logit lens side by side)."""
    def show(question, checkpoint, stage, layer, head, delta=0):
        try:
            view, fig, text, rows, shape = trace_view(store, question, checkpoint, stage, layer, head, delta)
        except UserError as e:
            return (gr.skip(),) * 6 + (error_line(str(e)),)
        return (view["stage"], gr.Slider(value=view["layer"], maximum=shape["n_layer"] - 1),
                gr.Slider(value=view["head"], maximum=shape["n_head"] - 1), fig, text, rows, "")

    def compare(question, checkpoint):
        try:
            return lens_compare_view(store, question, checkpoint)
        except UserError:  # show() puts the error next to the controls
            return gr.skip(), gr.skip()

    return show, compare


def wire_trace(v: View, store):
    show, compare = trace_ui(store)
    gr.on([v.run.click, v.question.submit, v.ckpt.input], compare, [v.question, v.ckpt], [v.lens_cmp, v.lens_note],
          api_name="ui_trace_lens_compare", api_visibility="undocumented", concurrency_limit=MODEL_CONCURRENCY,
          concurrency_id="model")

    trace_in = [v.question, v.ckpt, v.stage, v.layer, v.head]
    trace_out = [v.stage, v.layer, v.head, v.plot, v.text, v.lens, v.err]
    gr.on([v.run.click, v.question.submit, v.ckpt.input, v.stage.input, v.layer.release, v.head.release], show,
          trace_in, trace_out, api_name="ui_trace", api_visibility="undocumented",
          concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")
    for button, delta in ((v.prev, -1), (v.next, 1)):
        button.click(lambda *a, d=delta: show(*a, d), trace_in, trace_out, api_name=f"ui_trace_step{delta:+d}",
                     api_visibility="undocumented", concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")


def wire_api(store):
    def trace_api(question: str, checkpoint: str = DEFAULT_KEY, layer: int = 0, head: int = 0) -> dict:
        """One forward pass of a checkpoint on the chat prompt of `question` (its last 24 tokens): every stage's
        shape, its values (rounded, first 8 numbers per row) for one layer and head, the top-10 next tokens and
        the logit lens."""
        with one_line():
            model, tok, _ = store.get(checkpoint or DEFAULT_KEY)
            return trace_json(trace(model, tok, (question or "").strip()[:MAX_TEXT]), layer, head)

    gr.api(trace_api, api_name="trace", concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")


def first_view(store, m: dict):
    """What a page shows when it opens: the example's attention, the RoPE figures and the example's forward pass."""
    show, compare = trace_ui(store)

    attention = attention_ui(store)

    def load():
        heatmap = attention(EXAMPLE, 0, 0, DEFAULT_KEY)[0]
        forward = show(TRACE_EXAMPLE, DEFAULT_KEY, STAGES[0], 0, 0)[3:6] + compare(TRACE_EXAMPLE, DEFAULT_KEY)
        return (heatmap, *rope_figures(m["n_embd"] // m["n_head"], 3, 24), *forward)
    return load


def build(store, cfg) -> TabParts:
    m = cfg["model"]
    attention = attention_layout(store, m)
    wire_attention(attention, store)
    rope = rope_layout(m)
    wire_rope(rope)
    forward = trace_layout(store, m)
    wire_trace(forward, store)
    wire_api(store)
    outputs = [attention.att_plot, rope.rot_plot, rope.freq_plot, rope.qk_plot, forward.plot, forward.text,
               forward.lens, forward.lens_cmp, forward.lens_note]
    return TabParts(on_load=(Step(first_view(store, m), None, outputs, "ui_attention_load"),),
                    checkpoint_dropdowns=(attention.ckpt, forward.ckpt))
