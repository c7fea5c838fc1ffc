"""Tab 分词器 Tokenizer: coloured token spans, ids, counts, the 乱码 lesson, the vocabulary, rebuilding with
another size.

build() = layout() (filled with the example) + wire_tokenizer() + the /tokenize endpoint."""

import html
import threading

import gradio as gr
import pandas as pd

from gpt_mini import tokenizer as bpe
from gpt_mini.build_tokenizer import build as build_tokenizer
from gpt_mini.errors import UserError

from .i18n import t
from .style import TOKEN_PALETTE, big_numbers, error_line
from .tabs import TabParts, View

MAX_TEXT = 2000
EXAMPLE = "什么是注意力机制? GPT 用 byte-level BPE 分词。"
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


def token_spans_html(rows) -> str:
    """One coloured box per token (neighbours always differ), with its id and bytes below. All text escaped."""
    if not rows:
        return '<div class="tokens"><i>（空 / empty）</i></div>'
    boxes = []
    for i, r in enumerate(rows):
        colour = TOKEN_PALETTE[i % len(TOKEN_PALETTE)]
        shown = _visible(r["text"]) + ("…" if r["partial"] else "")
        tip = f"id {r['id']} · bytes {r['bytes']}" + (" · 半个字 partial character" if r["partial"] else "")
        boxes.append(f'<span class="tok" style="background:{colour}" title="{html.escape(tip)}">'
                     f'{html.escape(shown)}<small>{r["id"]}<br>{html.escape(r["bytes"])}</small></span>')
    return '<div class="tokens">' + "".join(boxes) + "</div>"


def counts_html(data: dict) -> str:
    return big_numbers([(data["chars"], "字符 / characters"), (data["n_tokens"], "词元 / tokens"),
                        (data["chars_per_token"], "字符/词元 / chars per token")])


def view(tok, text: str):
    data = tokenize_data(tok, text)
    return (token_spans_html(data["tokens"]), counts_html(data), " ".join(map(str, data["ids"])), data["decoded"],
            data["without_decoder"], data["decoded"])


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


def compare(tok, cfg, text: str, vocab_size):
    try:
        new = rebuilt_tokenizer(cfg, vocab_size)
    except UserError as e:
        return pd.DataFrame(), error_line(str(e))
    rows = []
    for label, tokenizer in ((f"当前分词器 / current (V={tok.get_vocab_size()})", tok),
                             (f"重建 / rebuilt (V={new.get_vocab_size()})", new)):
        d = tokenize_data(tokenizer, text)
        rows.append({"分词器 tokenizer": label, "词元数 tokens": d["n_tokens"], "字符数 chars": d["chars"],
                     "字符/词元 chars per token": d["chars_per_token"]})
    return pd.DataFrame(rows), token_spans_html(tokenize_data(new, text)["tokens"])


def layout(tok, cfg) -> View:
    v = View()
    first = view(tok, EXAMPLE)
    gr.Markdown(t("tokenizer.intro"), elem_classes="tab-intro")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            v.text = gr.Textbox(label=t("tokenizer.text"), value=EXAMPLE, lines=4, max_length=MAX_TEXT)
            v.tokenize = gr.Button(t("tokenizer.tokenize"), variant="primary")
            v.counts = gr.HTML(first[1])  # a handler's output too: stays bilingual
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
            first_table, first_spans = compare(tok, cfg, EXAMPLE, 500)
            # gr.I18n does not translate Dataframe column names: they stay bilingual, here and in the vocabulary
            v.table = gr.Dataframe(first_table, label=t("tokenizer.counts"), interactive=False)
            v.new_spans = gr.HTML(first_spans)

    with gr.Accordion(t("tokenizer.vocabulary"), open=False):
        gr.Dataframe(vocab_frame(tok), interactive=False, show_search="search", max_height=400)
    return v


def wire_tokenizer(v: View, store, cfg):
    for event in (v.tokenize.click, v.text.submit):
        event(lambda s: view(store.tokenizer(), s), v.text, v.outputs, api_name="ui_tokenize",
              api_visibility="undocumented", concurrency_limit=None)
    v.rebuild.click(lambda s, size: compare(store.tokenizer(), cfg, s, size), [v.text, v.vocab],
                    [v.table, v.new_spans], api_name="ui_rebuild_tokenizer", api_visibility="undocumented",
                    concurrency_limit=1)


def wire_api(store):
    def tokenize(text: str) -> dict:
        """Text -> tokens (id, bytes, text), ids, counts and the decoded round trip."""
        return tokenize_data(store.tokenizer(), text)

    gr.api(tokenize, api_name="tokenize", concurrency_limit=None)


def build(store, cfg) -> TabParts:
    v = layout(store.tokenizer(), cfg)
    wire_tokenizer(v, store, cfg)
    wire_api(store)
    return TabParts()
