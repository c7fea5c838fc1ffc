"""Tab 分词器 Tokenizer: coloured token spans, ids, counts, the 乱码 lesson, the vocabulary, rebuilding with
another size.

build() = layout() (filled with the example, in Chinese) + wire_tokenizer() + the /tokenize endpoint; a page load
re-renders what a handler builds (tiles, legend, comparison) for an English browser (TabParts.on_load)."""

import html
import threading

import gradio as gr
import pandas as pd

from gpt_mini import tokenizer as bpe
from gpt_mini.build_tokenizer import build as build_tokenizer
from gpt_mini.errors import UserError

from .i18n import lang_of, say, t
from .style import TOKEN_PALETTE, big_numbers, error_line
from .tabs import Step, TabParts, View

MAX_TEXT = 2000
EXAMPLE = "什么是注意力机制? GPT 用 byte-level BPE 分词。"
FIRST_VOCAB = 500  # the rebuilt size compared when the page opens
_rebuilt: dict = {}
_rebuilt_lock = threading.Lock()


def tokenize_data(tok, text: str) -> dict:
    """Everything the tab shows, as plain data (also the /tokenize API answer)."""
    text = (text or "")[:MAX_TEXT]
    rows = bpe.explain(tok, text)
    ids = [r["id"] for r in rows]
    return {"tokens": rows, "ids": ids, "chars": len(text), "n_tokens": len(ids),
            "chars_per_token": round(len(text) / len(ids), 3) if ids else 0.0, "decoded": bpe.decode(tok, ids),
            "without_decoder": bpe.decode_without_decoder(tok, ids), "vocab_size": tok.get_vocab_size()}


def _visible(text: str) -> str:
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def token_spans_html(rows, lang: str = "zh") -> str:
    """One coloured box per token (neighbours always differ), with its id and bytes below, and a legend under them
    that explains the boxes and, when there are any, the dashed partial-character boxes. All text escaped."""
    if not rows:
        return f'<div class="tokens"><i>{html.escape(say("tokenizer.empty", lang))}</i></div>'
    boxes = []
    for i, r in enumerate(rows):
        colour = TOKEN_PALETTE[i % len(TOKEN_PALETTE)]
        shown = _visible(r["text"]) + ("…" if r["partial"] else "")
        tip = f"id {r['id']} · bytes {r['bytes']}" + (f" · {say('tokenizer.partial', lang)}" if r["partial"] else "")
        boxes.append(f'<span class="tok{" partial" if r["partial"] else ""}" style="background:{colour}" '
                     f'title="{html.escape(tip)}">'
                     f'{html.escape(shown)}<small>{r["id"]}<br>{html.escape(r["bytes"])}</small></span>')
    partial = sum(r["partial"] for r in rows)
    legend = say("tokenizer.legend", lang) + (" " + say("tokenizer.partial_legend", lang, n=partial) if partial else "")
    return f'<div class="tokens">{"".join(boxes)}</div><div class="tok-legend">{html.escape(legend)}</div>'


def counts_html(data: dict, lang: str = "zh") -> str:
    return big_numbers([(data["chars"], say("tokenizer.tile.chars", lang)),
                        (data["n_tokens"], say("tokenizer.tile.tokens", lang)),
                        (data["chars_per_token"], say("tokenizer.tile.chars_per_token", lang))])


def view(tok, text: str, lang: str = "zh"):
    data = tokenize_data(tok, text)
    return (token_spans_html(data["tokens"], lang), counts_html(data, lang), " ".join(map(str, data["ids"])),
            data["decoded"], data["without_decoder"], data["decoded"])


def vocab_frame(tok) -> pd.DataFrame:
    df = pd.DataFrame(bpe.vocab_table(tok))
    df["text"] = df["text"].map(_visible)
    return df.rename(columns={"id": "id", "symbol": "符号 symbol", "text": "文本 text", "bytes": "字节数 bytes"})


def rebuilt_tokenizer(cfg, vocab_size: int):
    """Train a tokenizer on the course data in memory (never written to disk); a few are cached."""
    vocab_size = int(vocab_size)
    if not 300 <= vocab_size <= 4000:
        raise UserError("词表大小应在 300 到 4000 之间", "vocab size must be between 300 and 4000")
    with _rebuilt_lock:
        if vocab_size not in _rebuilt:
            if len(_rebuilt) >= 6:
                _rebuilt.pop(next(iter(_rebuilt)))
            _rebuilt[vocab_size] = build_tokenizer(cfg, vocab_size)
        return _rebuilt[vocab_size]


def compare(tok, cfg, text: str, vocab_size, lang: str = "zh"):
    """The current and a rebuilt tokenizer on the same text: a table in one language and the rebuilt one's tokens
    (or an empty table and one bilingual error line)."""
    try:
        new = rebuilt_tokenizer(cfg, vocab_size)
    except UserError as e:
        return pd.DataFrame(), error_line(str(e))
    rows = []
    for key, tokenizer in (("tokenizer.current", tok), ("tokenizer.rebuilt", new)):
        d = tokenize_data(tokenizer, text)
        rows.append({say("tokenizer.col.tokenizer", lang): say(key, lang, v=tokenizer.get_vocab_size()),
                     say("tokenizer.col.tokens", lang): d["n_tokens"], say("tokenizer.col.chars", lang): d["chars"],
                     say("tokenizer.col.chars_per_token", lang): d["chars_per_token"]})
    return pd.DataFrame(rows), token_spans_html(tokenize_data(new, text)["tokens"], lang)


def follow(tok, cfg, text: str, built: int, lang: str = "zh"):
    """The text's tokens and, for the same text, the comparison with the last rebuilt size `built`: view() + compare()
    outputs, so the table always shows the sentence above it."""
    return (*view(tok, text, lang), *compare(tok, cfg, text, built, lang))


def layout(tok, cfg) -> View:
    v = View()
    first = view(tok, EXAMPLE)
    gr.Markdown(t("tokenizer.intro"), elem_classes="tab-intro")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            v.text = gr.Textbox(label=t("tokenizer.text"), value=EXAMPLE, lines=4, max_length=MAX_TEXT)
            v.tokenize = gr.Button(t("tokenizer.tokenize"), variant="primary")
            v.counts = gr.HTML(first[1])  # Chinese here; a page load re-renders it for an English browser
        with gr.Column(scale=3):
            v.spans = gr.HTML(first[0], label=t("tokenizer.tokens"), elem_id="token-spans")
            v.ids = gr.Textbox(label=t("tokenizer.ids"), value=first[2], lines=2)
            v.roundtrip = gr.Textbox(label=t("tokenizer.round_trip"), value=first[3])
    gr.Markdown("### " + t("tokenizer.garbled_heading"))
    with gr.Row():
        v.garbled = gr.Textbox(label=t("tokenizer.without_decoder"), value=first[4], lines=2)
        v.fixed = gr.Textbox(label=t("tokenizer.with_decoder"), value=first[5], lines=2)
    v.outputs = [v.spans, v.counts, v.ids, v.roundtrip, v.garbled, v.fixed]

    gr.Markdown("### " + t("tokenizer.rebuild_heading"))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            v.vocab = gr.Slider(300, 4000, value=500, step=50, label=t("tokenizer.vocab_size"))
            v.rebuild = gr.Button(t("tokenizer.rebuild"))
        with gr.Column(scale=3):
            first_table, first_spans = compare(tok, cfg, EXAMPLE, FIRST_VOCAB)
            # gr.I18n does not translate Dataframe column names: built in Chinese, re-rendered on an English page load
            v.table = gr.Dataframe(first_table, label=t("tokenizer.counts"), interactive=False,
                                   elem_id="tokenizer-compare")
            v.new_spans = gr.HTML(first_spans)
    v.built = gr.State(FIRST_VOCAB)  # the vocab size the comparison uses until 重建并比较 is pressed again
    v.followers = v.outputs + [v.table, v.new_spans]

    with gr.Accordion(t("tokenizer.vocabulary"), open=False):  # column names stay bilingual (static, large)
        gr.Dataframe(vocab_frame(tok), interactive=False, show_search="search", max_height=400)
    return v


def follow_ui(store, cfg):
    """follow() for a browser, in its language."""
    def followed(text, built, request: gr.Request):
        return follow(store.tokenizer(), cfg, text, built, lang_of(request))
    return followed


def wire_tokenizer(v: View, store, cfg):
    # typing, Enter or 分词: the tokens, the counts and the comparison table all follow the text
    gr.on([v.tokenize.click, v.text.submit, v.text.change], follow_ui(store, cfg), [v.text, v.built], v.followers,
          api_name="ui_tokenize", api_visibility="undocumented", trigger_mode="always_last", concurrency_limit=None)

    def rebuild(text, size, built, request: gr.Request):
        table, spans = compare(store.tokenizer(), cfg, text, size, lang_of(request))
        return table, spans, (int(size) if table.shape[0] else built)

    v.rebuild.click(rebuild, [v.text, v.vocab, v.built], [v.table, v.new_spans, v.built],
                    api_name="ui_rebuild_tokenizer", api_visibility="undocumented", concurrency_limit=1)


def wire_api(store):
    def tokenize(text: str) -> dict:
        """Text -> tokens (id, bytes, text), ids, counts and the decoded round trip."""
        return tokenize_data(store.tokenizer(), text)

    gr.api(tokenize, api_name="tokenize", concurrency_limit=None)


def build(store, cfg) -> TabParts:
    v = layout(store.tokenizer(), cfg)
    wire_tokenizer(v, store, cfg)
    wire_api(store)
    followed = follow_ui(store, cfg)

    def loaded(text, built, request: gr.Request):  # a Chinese page keeps what layout() built
        return followed(text, built, request) if lang_of(request) != "zh" else [gr.skip()] * len(v.followers)

    return TabParts(on_load=(Step(loaded, [v.text, v.built], v.followers, "ui_tokenizer_load"),))
