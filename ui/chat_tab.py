"""Tab 对话 Chat: streaming answers, sampling settings, checkpoint choice, and the per-token panel.

build() = layout() + wire_chat() (asking, suggestions, settings) + wire_api() (/generate, /ask, /ask_after)."""

import html
import json
from pathlib import Path

import gradio as gr
import pandas as pd

from gpt_mini.checkpoint import describe, summary_line
from gpt_mini.config import ROOT
from gpt_mini.data import FIXED_QUESTIONS, check_history
from gpt_mini.errors import UserError
from gpt_mini.generate import DEFAULT, SAMPLING, Result, Settings
from gpt_mini.knowledge import course_of, judge, reply_in_context, why_values
from gpt_mini.serving import BatchServer
from gpt_mini.visualize import next_token_stages, token_text

from .endpoints import one_line
from .i18n import lang_of, say, t
from .limits import CHAT_CONCURRENCY, MODEL_CONCURRENCY
from .models import DEFAULT_KEY
from .style import error_line, figure
from .tabs import Step, TabParts, View

MAX_PROMPT_CHARS = 1000
STAGE_NAMES = {"raw": "原始 raw", "temperature": "温度后 temperature", "top_k": "Top-k 后", "top_p": "Top-p 后"}
STAGE_COLORS = {"raw": "#9ecae1", "temperature": "#4292c6", "top_k": "#2171b5", "top_p": "#08306b"}


def flatten_content(content) -> str:
    """Gradio 6 message content: a string, or a list of blocks like {"type": "text", "text": ...}."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(flatten_content(c) for c in content)
    return "" if content is None else str(content)


def flatten_history(history) -> list[dict]:
    return [{"role": m.get("role", "user"), "content": flatten_content(m.get("content"))}
            for m in (history or []) if isinstance(m, dict)]


def as_text(text: str) -> str:
    """Chat shows HTML and script as text, never as markup."""
    return html.escape(text, quote=False)


def make_settings(temperature, top_k, top_p, repetition_penalty, max_new_tokens, stop_strings) -> Settings:
    stops = [s for part in str(stop_strings or "").split("\n") for s in part.split("|") if s]
    try:
        values = (float(temperature), int(top_k), float(top_p), float(repetition_penalty), int(max_new_tokens))
    except (TypeError, ValueError):
        raise UserError("采样参数应为数字", "sampling parameters must be numbers") from None
    return Settings(*values, stop_strings=stops).check()


def cut_prompt(prompt: str) -> tuple[str, list[str]]:
    prompt = "" if prompt is None else str(prompt)
    if len(prompt) > MAX_PROMPT_CHARS:
        return prompt[:MAX_PROMPT_CHARS], [f"问题超过 {MAX_PROMPT_CHARS} 个字符，已截断 / prompt cut to "
                                           f"{MAX_PROMPT_CHARS} characters"]
    return prompt, []


def _shown(text: str) -> str:
    if "\ufffd" in text:
        return "〈半个字 partial〉"
    return text.replace(" ", "␣").replace("\n", "↵") or "<eos>"


def steps_frame(tok, steps) -> pd.DataFrame:
    """One row per generated token: the chosen token, its probability, the top-5 candidates."""
    rows = []
    for i, st in enumerate(steps):
        row = {"步 step": i, "选中 chosen": token_text(tok, st["id"]), "概率 prob": round(st["prob"], 3)}
        for j, (text, p) in enumerate(st["top"][:5], 1):
            row[f"候选{j} top{j}"] = f"{_shown(text)} {p:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def stages_figure(store, last: dict, step: int):
    """Bar chart: the next-token distribution at one step before and after each sampling stage."""
    if not last or not last.get("prompt"):
        return figure("下一个词元的分布 / next-token distribution", "候选词元 / candidate token", "概率 / probability")
    model, tok, _ = store.get(last["checkpoint"])
    s = make_settings(*last["settings"])
    step = max(0, min(int(step), max(0, len(last["ids"]))))
    data = next_token_stages(model, tok, last["prompt"], last["ids"], step, s, history=last.get("history", ()))
    labels = [f"{lab}·{i}" if data["tokens"].count(lab) > 1 else lab for lab, i in zip(data["tokens"], data["ids"])]
    greedy = "（温度 0 = 贪心，四个阶段相同 / greedy: stages equal）" if s.temperature == 0 else ""
    fig = figure(f"第 {step} 步：下一个词元的分布 / step {step}: next-token distribution{greedy}",
                 "候选词元 / candidate token", "概率 / probability (0–1)", height=400)
    for name, probs in data["probs"].items():
        fig.add_bar(x=labels, y=probs, name=f"{STAGE_NAMES[name]}（{data['kept'][name]} 个 kept）",
                    marker_color=STAGE_COLORS[name])
    fig.update_layout(barmode="group")
    return fig


def confidence_badge(reply, lang: str = "zh") -> str:
    """The small 把握 badge in the browser's language: how sure the model was of the answer it wrote, and what the
    student sees."""
    pct = round(100 * reply.confidence)
    color, verdict = ("#1a7f37", "chat.badge.known") if reply.known else ("#b35900", "chat.badge.not_learned")
    return (f'<span class="badge" style="background:{color}">{say("chat.badge.confidence", lang, pct=pct)}</span> '
            f'<span class="en">{say(verdict, lang)}</span>')


def shown_answer(reply, lang: str = "zh") -> str:
    """The answer as the chat shows it, with its confidence under it, the part of the question it answers when
    only a part was understood (knowledge.parts), and under a refusal why the gate refused."""
    part = f"\n{say('chat.answered_part', lang, part=as_text(reply.part))}" if reply.known and reply.part else ""
    why = f"\n{why_refused(reply, lang)}" if reply.withheld else ""
    return (f"{as_text(reply.text) or say('chat.empty_answer', lang)}\n"
            f"{say('chat.answer_confidence', lang, pct=round(100 * reply.confidence))}{part}{why}")


def why_refused(reply, lang: str = "zh") -> str:
    """One line: which check refused the answer, with the figures it compared (the chat's thresholds)."""
    return say(f"chat.why.{reply.why}", lang, **why_values(reply))


def checkpoint_info(store, key) -> str:
    """A short line under the picker; hovering it shows everything the checkpoint records about its making."""
    try:
        ckpt = store.get(key)[2]
    except UserError as e:
        return error_line(str(e))
    full = json.dumps({k: v for k, v in describe(ckpt).items() if k != "config"}, ensure_ascii=False, indent=1)
    return (f'<div class="en" title="{html.escape(full, quote=True)}">ⓘ {html.escape(summary_line(ckpt))}</div>')


def failure_line(e: Exception) -> str:
    """One visible line for the chat panel: a UserError as it is, anything else with its type."""
    return error_line(str(e) if isinstance(e, UserError) else f"生成出错 / generation failed: {type(e).__name__}: {e}")


def lookup_line(lang: str = "zh", promotion: Path = ROOT / "checkpoints" / "promotion.json") -> str:
    """The default model next to a character lookup on class-like questions it never saw (recorded by --promote):
    the lesson that a GPT has to beat a lookup to be worth it."""
    try:
        d = json.loads(promotion.read_text(encoding="utf-8"))["dev"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    line = say("chat.lookup", lang, n=d["n"], right=d["right"], raw=d["raw"], lookup=d["lookup_right"])
    return f'<div class="en">{html.escape(line)}</div>'


def layout(store) -> View:
    """Settings and the checkpoint on the left, the conversation on the right, the per-token panel below."""
    v = View()
    gr.Markdown(t("chat.intro"), elem_classes="tab-intro")
    v.lookup = gr.HTML(lookup_line(), elem_id="chat-lookup")  # in the browser's language when the tab is shown
    with gr.Row(elem_classes="chat-row"):  # on a phone the conversation comes first (CSS order in style.py)
        with gr.Column(scale=1, min_width=280, elem_classes="chat-settings"):
            v.ckpt = gr.Dropdown(store.choices(), value=DEFAULT_KEY, label=t("common.checkpoint"),
                                 allow_custom_value=True)  # runs saved later: ModelStore checks every key
            v.ckpt_info = gr.HTML(checkpoint_info(store, DEFAULT_KEY))  # a handler's output too: not translated
            v.sampling = [gr.Slider(lo, hi, value=value, step=step, label=t(f"chat.{name}"))
                          for name, (value, lo, hi, step) in SAMPLING.items()]
            v.sampling.append(gr.Textbox(label=t("chat.stop_strings"), value=""))
            v.reset = gr.Button(t("common.reset"))
        with gr.Column(scale=3, elem_classes="chat-main"):
            v.bot = gr.Chatbot(label=t("chat.chatbot"), height=380, render_markdown=False, sanitize_html=True,
                               feedback_options=None, buttons=["copy"], elem_classes="chat-bot")
            with gr.Row():
                v.msg = gr.Textbox(placeholder=t("chat.placeholder"), show_label=False,
                                   max_length=MAX_PROMPT_CHARS, scale=5)
                v.send = gr.Button(t("chat.send"), variant="primary", scale=1, min_width=100, elem_classes="chat-send")
            with gr.Row(elem_classes="chat-verdict"):
                v.refuse = gr.Checkbox(True, label=t("chat.refuse"), scale=3)
                v.badge = gr.HTML(scale=2)
            # the samples are questions to the model, in Chinese for every browser (gr.I18n leaves samples alone)
            v.suggest = gr.Dataset(components=[v.msg], samples=[[q] for q in FIXED_QUESTIONS], type="values",
                                   label=t("chat.suggestions"))
            v.err = gr.HTML()
    gr.Markdown("### " + t("chat.candidates_heading"))
    v.step = gr.Slider(0, 1, value=0, step=1, label=t("chat.step"))
    v.chart = gr.Plot(show_label=False)
    v.table = gr.Dataframe(label=t("chat.candidates_table"), interactive=False, max_height=380, wrap=True)
    v.last = gr.State({})
    v.exchanges = gr.State([])  # this visitor's answered (question, answer) pairs: the follow-up context
    return v


def wire_chat(v: View, store, server: BatchServer):
    """Asking (typed or a suggestion), clearing, the checkpoint line, the stage chart and the settings reset."""
    # request sits before *sampling_values: Gradio fills in a gr.Request only among the positional parameters
    def chat(message, history, earlier, checkpoint, use_refusal, request: gr.Request, *sampling_values):
        history, skip = flatten_history(history), (gr.skip(),) * 7
        try:
            s = make_settings(*sampling_values)
            prompt, notices = cut_prompt(message)
            model, tok, ckpt = store.get(checkpoint)
            context = list(earlier or [])[-1:]  # the previous exchange, kept if it fits in the context
            history += [{"role": "user", "content": as_text(prompt)}, {"role": "assistant", "content": "…"}]
            if use_refusal:  # the answer is shown once the model's confidence is known
                yield history, "", "", *skip
                item, reply, used = reply_in_context(
                    lambda h, q: server.answer(model, tok, q, s, history=h, top_n=5), prompt, context,
                    course_of(ckpt))
            else:  # raw output, token by token
                for item in server.stream(model, tok, prompt, s, history=context):
                    if isinstance(item, Result):
                        break
                    history[-1]["content"] = as_text(item[0])
                    yield history, "", "", *skip
                reply, used = judge(item, prompt, course_of(ckpt), refuse=False), context
        except Exception as e:  # noqa: BLE001 - shown in the panel, never a traceback
            yield history, message, failure_line(e), *skip
            return
        history[-1]["content"] = shown_answer(reply, lang_of(request))
        notes = " · ".join(item.notices + notices)
        state = {"prompt": reply.part or prompt, "ids": item.token_ids, "checkpoint": checkpoint,
                 "settings": list(sampling_values), "history": list(used)}
        pick = min(range(len(item.steps)), key=lambda i: item.steps[i]["prob"]) if item.steps else 0
        earlier = (list(earlier or []) + [[prompt, item.answer]])[-4:] if reply.known else list(earlier or [])
        # a refusal's suggestions, or the fixed questions again: old suggestions never sit under a new answer
        suggestions = gr.Dataset(samples=[[q] for q in reply.suggestions or FIXED_QUESTIONS])
        yield (history, "", html.escape(notes), steps_frame(tok, item.steps),  # chart: the least certain step
               gr.Slider(0, max(1, len(item.steps) - 1), value=pick, step=1), stages_figure(store, state, pick), state,
               confidence_badge(reply, lang_of(request)), suggestions, earlier)

    inputs = [v.msg, v.bot, v.exchanges, v.ckpt, v.refuse] + v.sampling
    outputs = [v.bot, v.msg, v.err, v.table, v.step, v.chart, v.last, v.badge, v.suggest, v.exchanges]
    gr.on([v.send.click, v.msg.submit], chat, inputs, outputs, api_name="ui_chat",
          api_visibility="undocumented", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    v.suggest.click(lambda sample: sample[0], v.suggest, v.msg, api_name="ui_suggest", api_visibility="private").then(
        chat, inputs, outputs, api_name="ui_chat_suggested", api_visibility="private",
        concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    v.bot.clear(lambda: [], None, v.exchanges, api_name="ui_chat_clear", api_visibility="private")
    v.ckpt.change(lambda key: checkpoint_info(store, key), v.ckpt, v.ckpt_info, api_name="ui_checkpoint_info",
                  api_visibility="private")
    v.step.release(lambda st, i: stages_figure(store, st, i), [v.last, v.step], v.chart, api_name="ui_stages",
                   api_visibility="undocumented", concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")
    v.reset.click(lambda: (*DEFAULT.values(), "", True), None, v.sampling + [v.refuse], api_name="ui_chat_reset",
                  api_visibility="private")


def wire_api(store, server: BatchServer):
    """/generate (the answer text), /ask (the answer with its verdict) and /ask_after (a follow-up after earlier
    exchanges). Their parameters only ever grow at the end: raw HTTP clients send every value by position."""
    def reply_to(prompt, temperature, top_k, top_p, repetition_penalty, max_new_tokens, stop_strings, checkpoint,
                 refuse, history):
        with one_line():
            s = make_settings(temperature, top_k, top_p, repetition_penalty, max_new_tokens, stop_strings)
            # as in the chat: the last earlier exchange is the context (a follow-up such as 那它有什么用)
            context = [(cut_prompt(q)[0], a) for q, a in check_history(history or [], "接口参数", "parameter")][-1:]
            model, tok, ckpt = store.get(checkpoint or DEFAULT_KEY)
            prompt = cut_prompt(prompt)[0]
            return reply_in_context(lambda h, q: server.answer(model, tok, q, s, history=h), prompt, context,
                                    course_of(ckpt), refuse=bool(refuse))[1]

    def generate(prompt: str, temperature: float = DEFAULT["temperature"], top_k: int = DEFAULT["top_k"],
                 top_p: float = DEFAULT["top_p"], repetition_penalty: float = DEFAULT["repetition_penalty"],
                 max_new_tokens: int = DEFAULT["max_new_tokens"], stop_strings: str = "",
                 checkpoint: str = DEFAULT_KEY, refuse: bool = True) -> str:
        """Answer one question; stop_strings are separated by '|' or new lines. Returns the answer text, or (with
        refuse, the default) a line starting 这个问题我还没学过 when the model is not confident."""
        return reply_to(prompt, temperature, top_k, top_p, repetition_penalty, max_new_tokens, stop_strings,
                        checkpoint, refuse, None).text

    def ask(prompt: str, temperature: float = DEFAULT["temperature"], top_k: int = DEFAULT["top_k"],
            top_p: float = DEFAULT["top_p"], repetition_penalty: float = DEFAULT["repetition_penalty"],
            max_new_tokens: int = DEFAULT["max_new_tokens"], stop_strings: str = "",
            checkpoint: str = DEFAULT_KEY, refuse: bool = True) -> dict:
        """Like /generate, with the verdict: {answer, confidence, known, suggestions, raw_answer, part, why} (part:
        the clause of a long question that was answered, when the whole was not understood; why: which check refused
        it, "model" | "refused_like" | "unsure" | "unlike" | "empty", else "")."""
        return verdict(reply_to(prompt, temperature, top_k, top_p, repetition_penalty, max_new_tokens, stop_strings,
                                checkpoint, refuse, None))

    def ask_after(prompt: str, history: list, checkpoint: str = DEFAULT_KEY, refuse: bool = True) -> dict:
        """/ask after earlier exchanges, history = [[question, answer], ...] oldest first: as in the chat, the last
        one is the context, so a follow-up such as 那它有什么用 is about it. Greedy decoding; the same verdict."""
        return verdict(reply_to(prompt, DEFAULT["temperature"], DEFAULT["top_k"], DEFAULT["top_p"],
                                DEFAULT["repetition_penalty"], DEFAULT["max_new_tokens"], "", checkpoint, refuse,
                                history))

    def verdict(r) -> dict:
        return {"answer": r.text, "confidence": round(r.confidence, 4), "known": r.known,
                "suggestions": r.suggestions, "raw_answer": r.answer, "part": r.part, "why": r.why}

    gr.api(generate, api_name="generate", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    gr.api(ask, api_name="ask", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    gr.api(ask_after, api_name="ask_after", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")


def build(store, cfg, server: BatchServer) -> TabParts:
    v = layout(store)
    wire_chat(v, store, server)
    wire_api(store, server)
    def lookup_ui(request: gr.Request):
        return lookup_line(lang_of(request))

    return TabParts(checkpoint_dropdowns=(v.ckpt,), on_show=Step(lookup_ui, None, [v.lookup], "ui_chat_lookup"))
