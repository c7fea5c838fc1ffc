"""Static UI text in one language at a time: the zh-CN and en tables for gr.I18n, and t(key) to use them.

The browser's language picks the table: zh-CN (and zh-TW, through the "zh" table) gets Chinese, everything
else gets English, because Gradio's frontend falls back to "en" for a browser language it has no table for.
Keep the words of /work/shared/UI.md's term table.

What gr.I18n translates (checked in chromium with Gradio 6.31): labels, info, placeholders, button values, tab
names, accordion labels, and gr.Markdown / gr.HTML values, where a value may hold HTML or Markdown around the
key. Only the first key in one string is translated, so each string gets at most one t(...). Not translated:
gr.Blocks(title=...) (the raw key would show in the browser tab), gr.Dataset samples and gr.Dataframe column
names, and anything a handler returns (status lines, error lines, big numbers, plot titles); those stay as one
bilingual line "中文 / English", as the project's error-message rule asks.
"""

import gradio as gr

from .hyperparameters import hyperparameter_text

TEXT = {  # key: (中文, English)
    # ---- app ----
    "app.title": ("GPT_teacher 课堂面板 <span class='en'>一个 337 万参数的中文 GPT</span>",
                  "GPT_teacher classroom dashboard <span class='en'>a 3.37M-parameter Chinese GPT</span>"),
    "tab.overview": ("概览", "Overview"),
    "tab.tokenizer": ("分词器", "Tokenizer"),
    "tab.training": ("训练", "Training"),
    "tab.attention": ("注意力与RoPE", "Attention & RoPE"),
    "tab.chat": ("对话", "Chat"),
    # ---- shared ----
    "common.reset": ("恢复默认", "Reset"),
    "common.checkpoint": ("检查点", "Checkpoint"),
    # ---- overview ----
    "overview.intro": ("一个 GPT 从文字到回答的八步，以及每一步在 gpt_mini 的哪个文件；"
                       "改变模型大小，看参数量、内存和时间。",
                       "The eight steps from text to answer and where each lives in gpt_mini; change the model size "
                       "and see the parameter count, memory and time."),
    "overview.model_loaded": ("已加载默认模型（参数量 · 词表大小 · 训练步数）：",
                              "Default model loaded (parameter count · vocab size · steps):"),
    "overview.model_not_loaded": ("默认模型无法加载：", "Default model not loaded:"),
    "overview.calculator": ("模型大小计算器", "Model-size calculator"),
    "overview.n_layer": ("层数 n_layer（L）", "Layers n_layer (L)"),
    "overview.n_head": ("注意力头数 n_head", "Attention heads n_head"),
    "overview.n_embd": ("隐藏维度 n_embd（d）", "Hidden size n_embd (d)"),
    "overview.seq_len": ("上下文长度 seq_len（T）", "Context length seq_len (T)"),
    "overview.vocab_size": ("词表大小 vocab_size（V）", "Vocab size vocab_size (V)"),
    # ---- tokenizer ----
    "tokenizer.intro": ("输入任意文本，看它被切成哪些词元（每个词元一种颜色，下面是 id 和字节）；"
                        "再看看忘了解码器会出现的乱码。",
                        "Type any text and see its tokens (one colour each, id and bytes below); then see the garbled "
                        "text you get without the ByteLevel decoder."),
    "tokenizer.text": ("输入文本", "Text"),
    "tokenizer.tokenize": ("分词", "Tokenize"),
    "tokenizer.tokens": ("词元", "Tokens"),
    "tokenizer.ids": ("词元 id 列表", "Token ids"),
    "tokenizer.round_trip": ("解码回来（往返）", "Decoded round trip"),
    "tokenizer.garbled_heading": ("乱码的一课", "The garbled-text lesson"),
    "tokenizer.without_decoder": ("不用字节级解码器（乱码）", "Without the ByteLevel decoder (garbled text)"),
    "tokenizer.with_decoder": ("用解码器（正确）", "With the decoder (correct)"),
    "tokenizer.rebuild_heading": ("换一个词表大小（只在内存中重建）",
                                  "Rebuild with another vocab size (in memory only)"),
    "tokenizer.vocab_size": ("词表大小", "Vocab size"),
    "tokenizer.rebuild": ("重建并比较", "Rebuild and compare"),
    "tokenizer.counts": ("同一段文本的词元数", "Token counts of the same text"),
    "tokenizer.vocabulary": ("词表（可搜索）", "Vocabulary (searchable)"),
    # ---- attention ----
    "attention.intro": ("看模型在读一句话时每个词元在“看”哪些词元（只能看前面：因果掩码），"
                        "再看 RoPE 怎样用旋转记住位置。",
                        "See which earlier tokens each token attends to (the causal mask hides the future), and how "
                        "RoPE encodes position by rotating pairs of numbers."),
    "attention.text": ("输入一句话", "A sentence"),
    "attention.layer": ("层", "Layer"),
    "attention.head": ("注意力头", "Attention head"),
    "attention.show": ("显示注意力", "Show attention"),
    "attention.mask_tokens": ("掩码的词元数 n", "Tokens in the mask n"),
    "attention.rope_heading": ("旋转位置编码 RoPE", "Rotary position embedding (RoPE)"),
    "attention.head_dim": ("每个头的维度", "Head dim"),
    "attention.freq_index": ("频率序号 i", "Frequency index i"),
    "attention.positions": ("位置数", "Positions"),
    "attention.draw_rope": ("画出 RoPE", "Draw RoPE"),
    "attention.rope_explain": ("每对维度 (x, y) 在位置 p 旋转 p·θ_i 角度。q 和 k 都旋转后，q·k 只和它们的距离有关。",
                               "Each pair (x, y) turns by p·θ_i at position p; after rotating both q and k, q·k only "
                               "depends on their distance."),
    # ---- chat ----
    "chat.intro": ("向模型提问，看它一个词元一个词元地生成；调温度、Top-k、Top-p，看每一步的候选词和概率怎样变化。",
                   "Ask the model a question and watch it generate token by token; change temperature, top-k and "
                   "top-p and see how each step's candidates and probabilities change."),
    "chat.temperature": ("温度（0 = 贪心解码）", "Temperature (0 = greedy decoding)"),
    "chat.top_k": ("Top-k 采样（0 = 关）", "Top-k sampling (0 = off)"),
    "chat.top_p": ("Top-p（核）采样（1 = 关）", "Top-p (nucleus) sampling (1 = off)"),
    "chat.repetition_penalty": ("重复惩罚（1 = 关）", "Repetition penalty (1 = off)"),
    "chat.max_new_tokens": ("最多生成词元数", "Max new tokens"),
    "chat.stop_strings": ("停止词（用 | 分隔）", "Stop strings (separated by |)"),
    "chat.chatbot": ("对话", "Chat"),
    "chat.placeholder": ("输入问题，回车发送", "Type a question, Enter sends"),
    "chat.send": ("发送", "Send"),
    "chat.refuse": ("没把握时说“还没学过”", "Say \"not learned yet\" when unsure"),
    "chat.suggestions": ("试试这些问题（点一下就问）", "Try these questions (click to ask)"),
    "chat.candidates_heading": ("每个词元的候选（前 5 个）", "Per-token candidates (top-5)"),
    "chat.step": ("看第几步的分布（默认：最不确定的一步）", "Which step to show (default: the least certain one)"),
    "chat.candidates_table": ("每一步的前 5 个候选", "Top-5 candidates per step"),
    # ---- training ----
    "train.intro": ("选一个预设或拖动滑块，开始训练：曲线每秒更新，每次评估时模型回答两个固定问题和它们的新问法，"
                    "看它从背答案到听懂问题。",
                    "Pick a preset or move the sliders and start training: the curves update every second, and at "
                    "each evaluation the model answers the two fixed questions, as taught and reworded."),
    "train.teacher": ("教师登录", "Teacher login"),
    "train.teacher_note": ("这个课堂由老师控制训练：同学们可以实时观看、对话和做可视化。",
                           "The teacher controls training in this classroom: students watch live, chat and "
                           "visualise."),
    "train.password": ("教师密码", "Teacher password"),
    "train.preset": ("预设", "Presets"),
    "train.minutes": ("训练 N 分钟（0 = 按步数）", "Train for N minutes (0 = use the steps)"),
    "train.minutes_info": ("按这台机器实测的速度换算成步数，余弦退火正好在时间用完时结束",
                           "converted to steps at this machine's measured speed; the cosine decay ends with it"),
    "train.name": ("运行名（字母数字_-，留空用时间）", "Run name (letters, digits, _ -; empty = the time)"),
    "train.start": ("开始", "Start"),
    "train.pause": ("暂停", "Pause"),
    "train.resume": ("继续", "Resume"),
    "train.stop": ("停止", "Stop"),
    "train.reset_form": ("恢复默认", "Reset"),
    "train.clear": ("清空图表", "Clear the chart"),
    "train.promote": ("设为默认模型", "Make it the default model"),
    "train.section_model": ("模型", "Model"),
    "train.section_training": ("训练", "Training"),
    "train.causal_note": ("**去掉因果掩码时：** 训练时每个位置都能“偷看”后面的答案词元，训练损失很快掉到接近 0；"
                          "但生成时后面还没有词元可看，回答会变成乱七八糟的重复。这就是为什么需要因果掩码。",
                          "**Without the causal mask** every position can peek at the next token: the training loss "
                          "collapses toward 0, but at generation time there is no future to peek at, so the answers "
                          "fail. That is why the mask exists."),
    "train.lr_log": ("学习率（对数刻度 log₁₀）", "Learning rate (log₁₀ scale)"),
    "train.answers": ("每次评估时的贪心回答：固定问题和它们的新问法",
                      "Greedy answers at each eval: the fixed questions, as taught and reworded"),
    "train.overlay": ("叠加以前的运行", "Overlay earlier runs"),
    "train.refresh": ("刷新", "Refresh"),
    "train.home": ("带回家：命令和 zip", "Take it home: command and zip"),
    "train.home_run": ("选择一次训练", "Pick a run"),
    "train.command": ("在自己电脑上重现这次训练的命令", "The command that trains this run on your own computer"),
    "train.zip": ("打包下载 zip", "Download as zip"),
    "train.upload": ("上传 zip，加入为一次训练", "Upload a zip as a run"),
    "train.extra": ("加入你自己的问答", "Add your own question–answer pairs"),
    "train.extra_label": ("和课程数据一起训练", "Trained together with the course data"),
    # ---- compare ----
    "tab.compare": ("对比", "Compare"),
    "compare.intro": ("选两次训练（或同一次训练的不同步数），看损失曲线叠在一起、配置差在哪里，再问它们同一个问题。",
                      "Pick two runs (or one run at two steps): overlaid loss curves, the differences in their "
                      "configs, and one question answered by both."),
    "compare.a": ("模型 A", "Model A"),
    "compare.b": ("模型 B", "Model B"),
    "compare.show": ("对比", "Compare"),
    "compare.question": ("问两个模型同一个问题", "Ask both models one question"),
    "compare.ask": ("一起回答", "Ask both"),
    "compare.answer_a": ("A 的回答", "A's answer"),
    "compare.answer_b": ("B 的回答", "B's answer"),
}
TEXT.update(hyperparameter_text())

_ZH = {key: zh for key, (zh, _) in TEXT.items()}
I18N = gr.I18n(**{"zh-CN": _ZH, "zh": dict(_ZH), "en": {key: en for key, (_, en) in TEXT.items()}})


def t(key: str):
    """The translatable text for `key` (a gr.I18n value). A key missing from TEXT raises KeyError when the app is
    built, instead of showing the bare key in the browser."""
    if key not in TEXT:
        raise KeyError(f"no UI text for {key!r}: add it to TEXT in ui/i18n.py")
    return I18N(key)
