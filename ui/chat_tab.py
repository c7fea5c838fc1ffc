"""Tab 对话 Chat: streaming answers, sampling settings, checkpoint choice, and the per-token panel."""

import html

import gradio as gr
import pandas as pd

from gpt_mini.data import FIXED_QUESTIONS
from gpt_mini.errors import UserError
from gpt_mini.generate import Result, Settings
from gpt_mini.serving import BatchServer
from gpt_mini.visualize import next_token_stages, token_text

from .models import DEFAULT_KEY
from .style import figure, intro

MAX_PROMPT_CHARS = 1000
CHAT_CONCURRENCY = 48  # handlers only wait on the batch server; it runs one forward pass for all of them
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
    data = next_token_stages(model, tok, last["prompt"], last["ids"], step, s)
    labels = [f"{lab}·{i}" if data["tokens"].count(lab) > 1 else lab for lab, i in zip(data["tokens"], data["ids"])]
    greedy = "（温度 0 = 贪心，四个阶段相同 / greedy: stages equal）" if s.temperature == 0 else ""
    fig = figure(f"第 {step} 步：下一个词元的分布 / step {step}: next-token distribution{greedy}",
                 "候选词元 / candidate token", "概率 / probability (0–1)", height=400)
    for name, probs in data["probs"].items():
        fig.add_bar(x=labels, y=probs, name=f"{STAGE_NAMES[name]}（{data['kept'][name]} 个 kept）",
                    marker_color=STAGE_COLORS[name])
    fig.update_layout(barmode="group")
    return fig


def failure_line(e: Exception) -> str:
    """One visible line for the chat panel: a UserError as it is, anything else with its type."""
    text = str(e) if isinstance(e, UserError) else f"生成出错 / generation failed: {type(e).__name__}: {e}"
    return f'<div class="error-line">⚠ {html.escape(text)}</div>'


def build(store, cfg, server: BatchServer):
    gr.HTML(intro("向模型提问，看它一个词元一个词元地生成；调温度、Top-k、Top-p，看每一步的候选词和概率怎样变化。",
                  "Ask the model a question and watch it generate token by token; change temperature, top-k and "
                  "top-p and see how each step's candidates and probabilities change."))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            ckpt = gr.Dropdown(store.choices(), value=DEFAULT_KEY, label="检查点 / checkpoint")
            temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="温度 / temperature（0 = 贪心解码 greedy）")
            top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k 采样 / top-k（0 = 关 off）")
            top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p（核）采样 / top-p（1 = 关 off）")
            rep = gr.Slider(0.5, 2, value=1.0, step=0.05, label="重复惩罚 / repetition penalty（1 = 关 off）")
            max_new = gr.Slider(1, 256, value=128, step=1, label="最多生成词元数 / max new tokens")
            stops = gr.Textbox(label="停止词 / stop strings（用 | 分隔 / separated by |）", value="")
            reset = gr.Button("恢复默认 / reset")
        with gr.Column(scale=3):
            bot = gr.Chatbot(label="对话 / chat", height=380, render_markdown=False, sanitize_html=True,
                             feedback_options=None, buttons=["copy"])
            with gr.Row():
                msg = gr.Textbox(placeholder="输入问题，回车发送 / type a question, Enter sends", show_label=False,
                                 max_length=MAX_PROMPT_CHARS, scale=5)
                send = gr.Button("发送 / send", variant="primary", scale=1, min_width=100)
            gr.Examples([[q] for q in FIXED_QUESTIONS], inputs=msg, label="固定问题 / the fixed questions")
            err = gr.HTML()
    gr.Markdown("### 每个词元的候选 <span class='en'>per-token candidates (top-5)</span>")
    step = gr.Slider(0, 1, value=0, step=1, label="看第几步的分布（默认：最不确定的一步）/ which step (default: the "
                     "least certain one)")
    chart = gr.Plot(show_label=False)
    table = gr.Dataframe(label="每一步的前 5 个候选 / top-5 candidates per step", interactive=False,
                         max_height=380, wrap=True)
    last = gr.State({})
    sampling = [temperature, top_k, top_p, rep, max_new, stops]

    def chat(message, history, checkpoint, *sampling_values):
        history = flatten_history(history)
        try:
            s = make_settings(*sampling_values)
            prompt, notices = cut_prompt(message)
            model, tok, _ = store.get(checkpoint)
            steps = server.stream(model, tok, prompt, s)
            history += [{"role": "user", "content": as_text(prompt)}, {"role": "assistant", "content": ""}]
            for item in steps:
                if isinstance(item, Result):
                    break
                history[-1]["content"] = as_text(item[0])
                yield history, "", "", gr.skip(), gr.skip(), gr.skip(), gr.skip()
        except Exception as e:  # noqa: BLE001 - shown in the panel, never a traceback
            yield history, message, failure_line(e), *(gr.skip(),) * 4
            return
        history[-1]["content"] = as_text(item.answer) or "（空回答 / empty answer）"
        notes = " · ".join(item.notices + notices)
        state = {"prompt": prompt, "ids": item.token_ids, "checkpoint": checkpoint, "settings": list(sampling_values)}
        pick = min(range(len(item.steps)), key=lambda i: item.steps[i]["prob"]) if item.steps else 0
        yield (history, "", html.escape(notes), steps_frame(tok, item.steps),  # chart: the least certain step
               gr.Slider(0, max(1, len(item.steps) - 1), value=pick, step=1), stages_figure(store, state, pick), state)

    outputs = [bot, msg, err, table, step, chart, last]
    gr.on([send.click, msg.submit], chat, [msg, bot, ckpt] + sampling, outputs, api_name="ui_chat",
          api_visibility="undocumented", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    step.release(lambda st, i: stages_figure(store, st, i), [last, step], chart, api_name="ui_stages",
                 api_visibility="undocumented", concurrency_limit=4, concurrency_id="model")
    reset.click(lambda: (0.0, 0, 1.0, 1.0, 128, ""), None, sampling, api_name="ui_chat_reset", api_visibility="private")

    def generate(prompt: str, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 repetition_penalty: float = 1.0, max_new_tokens: int = 128, stop_strings: str = "",
                 checkpoint: str = DEFAULT_KEY) -> str:
        """Answer one question; stop_strings are separated by '|' or new lines. Returns the answer text."""
        try:
            s = make_settings(temperature, top_k, top_p, repetition_penalty, max_new_tokens, stop_strings)
            model, tok, _ = store.get(checkpoint or DEFAULT_KEY)
            return server.answer(model, tok, cut_prompt(prompt)[0], s).answer
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    gr.api(generate, api_name="generate", concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat")
    return ckpt
