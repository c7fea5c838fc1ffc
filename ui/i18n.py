"""Static UI text in one language at a time: the zh-CN and en tables for gr.I18n, and t(key) to use them.

The browser's language picks the table: zh-CN (and zh-TW, through the "zh" table) gets Chinese, everything
else gets English, because Gradio's frontend falls back to "en" for a browser language it has no table for.
Keep the words of /work/shared/UI.md's term table.

What gr.I18n translates (checked in chromium with Gradio 6.31): labels, info, placeholders, button values, tab
names, accordion labels, and gr.Markdown / gr.HTML values, where a value may hold HTML or Markdown around the
key. Only the first key in one string is translated, so each string gets at most one t(...). Not translated:
gr.Blocks(title=...) (the raw key would show in the browser tab), gr.Dataset samples and gr.Dataframe column
names, and text a handler builds itself (status lines, error lines, big numbers, plot titles); those stay as one
bilingual line "中文 / English", as the project's error-message rule asks. A Markdown value a handler returns with
one str(t(...)) in it is translated (checked in chromium: the one-forward-pass sentences use it).
"""

import functools

from gpt_mini.knowledge import PART_NOTE, WHY_NOTES

from .charts import CHART_TEXT
from .hyperparameters import hyperparameter_text
from .style import in_language

TEXT = {  # key: (中文, English)
    # ---- app ----
    "app.title": ("GPT_teacher 课堂面板 <span class='en'>一个 337 万参数的中文 GPT</span>",
                  "GPT_teacher classroom dashboard <span class='en'>a 3.37M-parameter Chinese GPT</span>"),
    "tab.overview": ("概览", "Overview"),
    "tab.tokenizer": ("分词器", "Tokenizer"),
    "tab.training": ("训练", "Training"),
    "tab.attention": ("注意力", "Attention"),  # short: six tabs fit a phone (RoPE is in its intro)
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
    "overview.muon_title": ("优化器：Muon 和 AdamW 有什么不同？", "The optimizer: how Muon differs from AdamW"),
    "overview.muon": (
        "每一步，优化器都拿梯度决定每个权重往哪边改、改多少。**AdamW** 给每个数字单独定步长。**Muon** 先像普通动量"
        "一样把最近几步的梯度平均起来，再把整块权重矩阵的更新“正交化”（几次牛顿-舒尔茨迭代）：矩阵的每个方向都走差"
        "不多一样远，而不是让少数几个大方向占掉整步。本课模型里，Muon 管每层的 16 个矩阵（qkv、输出投影、前馈两层），"
        "词嵌入、RMSNorm 增益和偏置仍用 AdamW。在同样的数据上，它用约三分之一的步数就学会（见 README 的配方表）；"
        "训练页的“AdamW 对比 Muon”可以亲眼看两条曲线。最后，本课的配置把最后 40% 步的权重取平均当作最终模型"
        "（`training.average_last`）：最后这些步在谷底附近来回晃，平均值更靠近谷底中间，对没见过的问法答对得更多。",
        "Every step the optimizer turns the gradient into a change of each weight. **AdamW** sizes the step of every "
        "number on its own. **Muon** averages recent gradients like plain momentum, then *orthogonalises* the update "
        "of each whole weight matrix (a few Newton–Schulz iterations): every direction of the matrix moves about "
        "equally far, instead of a few large directions taking the whole step. In the lesson's model Muon updates "
        "the 16 block matrices (qkv, output projection, the two MLP layers); the embedding, RMSNorm gains and biases "
        "stay with AdamW. On the same data it learns in about a third of the steps (see the README's recipe table); "
        "the training tab's “AdamW vs Muon” preset shows both curves. Finally, the lesson's config makes the final "
        "model the mean of the weights over the last 40% of steps (`training.average_last`): those steps wander "
        "around the bottom of a valley, their mean sits nearer its middle and answers more new wordings right."),
    "overview.n_layer": ("层数 n_layer（L）", "Layers n_layer (L)"),
    "overview.n_head": ("注意力头数 n_head", "Attention heads n_head"),
    "overview.n_embd": ("隐藏维度 n_embd（d）", "Hidden size n_embd (d)"),
    "overview.seq_len": ("上下文长度 seq_len（T）", "Context length seq_len (T)"),
    "overview.vocab_size": ("词表大小 vocab_size（V）", "Vocab size vocab_size (V)"),
    "overview.stage.tokenize": ("分词", "Tokenize"),
    "overview.stage.tokenize.say": ("把文字切成小块（词元），每块换成词表里的一个编号。",
                                    "Cut the text into small pieces (tokens) and turn each into a number from the "
                                    "vocabulary."),
    "overview.stage.batch": ("批处理", "Batch"),
    "overview.stage.batch.say": ("把很多条问答首尾相接拼成一批，一次交给模型。",
                                 "Put many question–answer pairs end to end into one batch for the model."),
    "overview.stage.forward": ("前向", "Forward pass"),
    "overview.stage.forward.say": ("模型一层一层地计算，在每个位置猜下一个词元。",
                                   "The model computes layer by layer and guesses the next token at every position."),
    "overview.stage.loss": ("损失", "Loss"),
    "overview.stage.loss.say": ("只看回答部分，比较猜测和正确答案：猜得越离谱，损失越大。",
                                "Compare the guesses with the right answer (the answer part only): the worse the "
                                "guess, the larger the loss."),
    "overview.stage.backward": ("反向", "Backward pass"),
    "overview.stage.backward.say": ("算出每个权重往哪边调能让损失变小：这就是梯度。",
                                    "Work out which way each weight should move to make the loss smaller: the "
                                    "gradient."),
    "overview.stage.optimize": ("优化", "Optimize"),
    "overview.stage.optimize.say": ("优化器按梯度把每个权重改一小步；重复几千步，模型就学会了。",
                                    "The optimizer moves every weight a small step along the gradient; after "
                                    "thousands of steps the model has learned."),
    "overview.stage.save": ("保存", "Save"),
    "overview.stage.save.say": ("把学到的权重存成检查点文件，以后直接拿来用。",
                                "Store the learned weights in a checkpoint file, ready to use later."),
    "overview.stage.inference": ("推理", "Inference"),
    "overview.stage.inference.say": ("用训练好的模型回答新问题：一次生成一个词元，全班的问题一起算。",
                                     "The trained model answers new questions one token at a time, the whole "
                                     "class's questions in one batch."),
    "overview.tile.params": ("参数量", "parameters"),
    "overview.tile.weights": ("权重（fp32）", "weights (fp32)"),
    "overview.tile.train_memory": ("训练内存（权重 + 梯度 + 优化器）", "training memory (weights + grads + optimizer)"),
    "overview.tile.flops": ("训练 FLOPs / 词元", "training FLOPs per token"),
    "overview.tile.per_100": ("每 100 步约", "per 100 steps"),
    "overview.measuring": ("测量中…", "measuring…"),
    "overview.seconds": ("{n} 秒", "{n} s"),
    "overview.explain.params": ("**参数量**：{formula}", "**Parameter count**: {formula}"),
    "overview.explain.memory": ("**内存**：权重 4 字节×N = {weights}；int8 量化后约 {int8}；训练时再加梯度 4N 和"
                                "优化器的状态（{state}）→ {train}（不含激活）",
                                "**Memory**: weights 4 bytes×N = {weights}; about {int8} after int8 quantization; "
                                "training adds the gradients 4N and the optimizer's state ({state}) → {train} "
                                "(activations not included)"),
    "overview.state.adamw": ("AdamW 给每个参数存两个动量 8N", "AdamW's two moments per parameter 8N"),
    "overview.state.muon": ("Muon 给块内的 M = 12·L·d² = {m} 个矩阵参数各存一个动量 4M，AdamW 给其余参数存两个 "
                            "8(N−M)；本课默认用 Muon",
                            "Muon keeps one momentum for the M = 12·L·d² = {m} matrix weights inside the blocks "
                            "4M, AdamW two moments for the rest 8(N−M); this course uses Muon by default"),
    "overview.explain.flops": ("**计算量（每个词元）**：训练 ≈ 6N + 12·L·T·d = 6·{n} + 12·{L}·{T}·{d} = {total}。"
                               "一次乘加 = 2 FLOPs，前向每个参数 2 FLOPs（2N），反向约是前向的 2 倍（4N）；"
                               "注意力的 q·kᵀ 和加权求和 v 每层每词元各 2·T·d，前向 4·L·T·d，训练 ×3。",
                               "**FLOPs per token**: training ≈ 6N + 12·L·T·d = 6·{n} + 12·{L}·{T}·{d} = {total}. "
                               "One multiply-add = 2 FLOPs: the forward pass costs 2 FLOPs per parameter (2N), the "
                               "backward pass about twice that (4N); attention's q·kᵀ and weighted sum of v cost "
                               "2·T·d each per layer and token, 4·L·T·d forward, ×3 for training."),
    "overview.explain.time": ("**时间**：在这台机器上实测默认配置一步 {seconds} 秒（每步约 {tokens} 个词元），"
                              "再实测一个小模型，按 FLOPs 在两者之间估算（小模型的一步主要是固定开销）。",
                              "**Time**: one step of the default config measured on this machine: {seconds} s (about "
                              "{tokens} tokens per step), and a small model's step too; other sizes are estimated by "
                              "FLOPs between the two (a small model's step is mostly fixed overhead)."),
    "overview.explain.timing": ("**时间**：正在实测一步…", "**Time**: timing one step…"),
    "overview.chart_title": ("参数都在哪里", "Where the parameters are"),
    "overview.bar.embedding": ("词嵌入 = 输出层（V·d）", "token embedding = output layer (V·d)"),
    "overview.bar.attention": ("自注意力（{L}×(4d²+4d)）", "self-attention ({L}×(4d²+4d))"),
    "overview.bar.mlp": ("前馈网络（{L}×(8d²+5d)）", "feed-forward network ({L}×(8d²+5d))"),
    "overview.bar.norm": ("均方根归一化 RMSNorm（{n}×d）", "RMSNorm ({n}×d)"),
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
    "tokenizer.tile.chars": ("字符", "characters"),
    "tokenizer.tile.tokens": ("词元", "tokens"),
    "tokenizer.tile.chars_per_token": ("字符/词元", "characters per token"),
    "tokenizer.empty": ("（空）", "(empty)"),
    "tokenizer.partial": ("半个字", "partial character"),
    "tokenizer.legend": ("每个方框是一个词元，下面的小字是它的 id 和字节（十六进制）。",
                         "Each box is one token; the small print under it is its id and its bytes (hex)."),
    "tokenizer.partial_legend": ("虚线框、带 … 的 {n} 个词元是半个字：一个汉字在 UTF-8 里占 3 个字节，"
                                 "这几个字节被分进了不同的词元，每个词元只有其中一部分。",
                                 "The {n} dashed boxes marked … are partial characters: a Chinese character is 3 "
                                 "bytes in UTF-8, and here its bytes were split across tokens, each holding only "
                                 "part of it."),
    "tokenizer.col.tokenizer": ("分词器", "tokenizer"),
    "tokenizer.col.tokens": ("词元数", "tokens"),
    "tokenizer.col.chars": ("字符数", "characters"),
    "tokenizer.col.chars_per_token": ("字符/词元", "characters per token"),
    "tokenizer.current": ("当前分词器（V={v}）", "current (V={v})"),
    "tokenizer.rebuilt": ("重建（V={v}）", "rebuilt (V={v})"),
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
    "trace.heading": ("一次前向计算", "One forward pass"),
    "trace.intro": ("输入一个问题，一步一步看模型怎样把它变成下一个词元的概率：每个数字都是这个模型真实算出来的。",
                    "Type a question and step through how the model turns it into next-token probabilities: every "
                    "number is the model's own."),
    "trace.question": ("问题", "Question"),
    "trace.run": ("计算", "Compute"),
    "trace.prev": ("上一步", "Previous"),
    "trace.next": ("下一步", "Next"),
    "trace.stage": ("步骤", "Stage"),
    "trace.lens": ("逐层解读：每一层之后，最后一个位置最可能的 3 个词元",
                   "Logit lens: the top-3 tokens at the last position after each layer"),
    "trace.cmp": ("逐层解读，训练前后对比：预测回答第一个词元的位置上，每一层之后最可能的 3 个词元",
                  "Logit lens across training: the top-3 tokens after each layer at the position that predicts the "
                  "answer's first token"),
    "trace.cmp.snapshots": ("每一列是同一次训练的一个快照：第 0 步（还没训练）、训练到 25% 和最终的模型"
                            "（只显示存在的快照）。训练前每一层都猜不出来；训练后越往后的层越接近最终答案。"
                            "形如 `<e6 b3>` 的词元是一个汉字的前几个字节（UTF-8），下一个词元把它补完整。",
                            "Each column is a snapshot of the same training run: step 0 (untrained), 25% of the "
                            "steps and the final model (only the snapshots that exist). Untrained, no layer can guess; "
                            "trained, later layers get closer to the final answer. A token like `<e6 b3>` is the first "
                            "bytes of a Chinese character (UTF-8); the next token completes it."),
    "trace.cmp.fresh": ("第 0 步是用同样的配置和随机种子新初始化的模型，和这次训练开始时的模型一样；"
                        "这个模型训练时的快照不在这里（checkpoints/runs/ 不随仓库提供），"
                        "所以没有 25% 这一列。在训练页训练一次，再选它的检查点，就能看到三列。"
                        "形如 `<e6 b3>` 的词元是一个汉字的前几个字节（UTF-8），下一个词元把它补完整。",
                        "Step 0 is a freshly initialised model with the same config and seed, the model this training "
                        "run started from; the run's snapshots are not here (checkpoints/runs/ is not in the "
                        "repository), so there is no 25% column. Train a run on the training tab and pick its "
                        "checkpoint to see all three. A token like `<e6 b3>` is the first bytes of a Chinese "
                        "character (UTF-8); the next token completes it."),
    "trace.stage.tokens": ("词元", "Tokens"),
    "trace.stage.embedding": ("词嵌入", "Token embedding"),
    "trace.stage.norm": ("均方根归一化 RMSNorm", "RMSNorm"),
    "trace.stage.qkv": ("查询 q、键 k、值 v", "Query q, key k, value v"),
    "trace.stage.rope": ("旋转位置编码 RoPE", "Rotary position embedding (RoPE)"),
    "trace.stage.scores": ("注意力得分 q·k/√d", "Attention scores q·k/√d"),
    "trace.stage.mask": ("因果掩码", "Causal mask"),
    "trace.stage.softmax": ("softmax：注意力权重", "Softmax: attention weights"),
    "trace.stage.weighted": ("加权求和", "Weighted sum"),
    "trace.stage.residual1": ("残差流：加上注意力", "Residual stream: add attention"),
    "trace.stage.mlp": ("前馈网络、SiLU 激活", "Feed-forward network, SiLU"),
    "trace.stage.residual2": ("残差流：加上前馈网络", "Residual stream: add the feed-forward network"),
    "trace.stage.final_norm": ("最后的 RMSNorm", "Final RMSNorm"),
    "trace.stage.logits": ("logits（权重共享）", "Logits (weight tying)"),
    "trace.stage.top": ("下一个词元：前 10 个", "Next token: top 10"),
    "trace.say.tokens": ("问题先套上对话格式，再被切成词元：每个词元是词表里的一个 id。",
                         "The question is put in the chat format and cut into tokens: each token is one id of the "
                         "vocabulary."),
    "trace.say.embedding": ("每个 id 取出词嵌入矩阵 E 的一行向量：这就是残差流的起点。",
                            "Each id picks one row of the embedding matrix E: the start of the residual stream."),
    "trace.say.norm": ("RMSNorm 把每个向量缩放到均方根为 1，再乘以学到的增益 g。",
                       "RMSNorm scales each vector to a root-mean-square of 1, then multiplies it by a learned "
                       "gain g."),
    "trace.say.qkv": ("一个线性层从每个向量算出查询 q、键 k 和值 v，再分给各个注意力头。",
                      "One linear layer turns each vector into a query q, a key k and a value v, split across the "
                      "attention heads."),
    "trace.say.rope": ("RoPE 把 q 和 k 的每一对数字按位置旋转：位置越靠后，转得越多。",
                       "RoPE rotates each pair of numbers in q and k by an angle that grows with the position."),
    "trace.say.scores": ("每个查询和每个键做点积，再除以 √d_h：得分越高，越相关。",
                         "Each query is dotted with each key and divided by √d_h: a higher score means more relevant."),
    "trace.say.mask": ("因果掩码把后面位置的得分设成 −∞：每个词元只能看自己和前面的词元。",
                       "The causal mask sets the scores of later positions to −∞: each token sees only itself and "
                       "earlier tokens."),
    "trace.say.softmax": ("softmax 把每一行得分变成加起来等于 1 的注意力权重。",
                          "Softmax turns each row of scores into attention weights that add up to 1."),
    "trace.say.weighted": ("每个位置按注意力权重，把各个位置的值 v 加起来。",
                           "Each position adds up the values v of all positions, weighted by its attention weights."),
    "trace.say.residual1": ("各个头的结果拼起来，经过输出投影，加回残差流。",
                            "The heads' outputs are put side by side, projected, and added back to the residual "
                            "stream."),
    "trace.say.mlp": ("前馈网络把每个向量放宽到 4 倍，经过 SiLU 激活，再压回原来的宽度。",
                      "The feed-forward network widens each vector 4×, applies SiLU, and projects it back."),
    "trace.say.residual2": ("前馈网络的输出加回残差流，送进下一层。",
                            "The feed-forward output is added to the residual stream, which goes on to the next "
                            "layer."),
    "trace.say.final_norm": ("所有层之后，再做一次 RMSNorm。", "After the last layer, one more RMSNorm."),
    "trace.say.logits": ("和词嵌入矩阵的每一行做点积（权重共享），每个词元得到一个 logit。",
                         "A dot product with every row of the embedding matrix (weight tying) gives each token one "
                         "logit."),
    "trace.say.top": ("softmax 把最后一个位置的 logits 变成下一个词元的概率。",
                      "Softmax turns the last position's logits into the next token's probabilities."),
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
    "chat.lookup": ("默认模型在 {n} 个没见过的学生式问题上答对 {right:.0%}（不拒答时 {raw:.0%}）；"
                    "只按共享的字去找最像的训练问题，能找对 {lookup:.0%}。GPT 要比这种查找强，才值得用。",
                    "The default model answers {right:.0%} of {n} unseen student-style questions right ({raw:.0%} "
                    "raw); a lookup by shared characters finds the right fact for {lookup:.0%}. A GPT must beat the "
                    "lookup to be worth it."),
    "chat.answer_confidence": ("（把握 {pct}%）", "(confidence {pct}%)"),
    "chat.answered_part": PART_NOTE,
    "chat.empty_answer": ("（空回答）", "(empty answer)"),
    # under a refusal: why the gate refused (knowledge.judge's Reply.why), with the figures it compared
    **{f"chat.why.{why}": note for why, note in WHY_NOTES.items()},
    "chat.badge.confidence": ("把握 {pct}%", "Confidence {pct}%"),  # the badge after an answer (say())
    "chat.badge.known": ("学过", "learned"),
    "chat.badge.not_learned": ("没学过", "not learned"),
    # ---- training ----
    "train.intro": ("选一个预设或拖动滑块，开始训练：曲线每秒更新，每次评估时模型回答两个固定问题和它们的新问法，"
                    "看它从背答案到听懂问题。",
                    "Pick a preset or move the sliders and start training: the curves update every second, and at "
                    "each evaluation the model answers the two fixed questions, as taught and reworded."),
    "train.tile.params": ("参数量", "parameters"),
    "train.tile.steps": ("步数", "steps"),
    "train.tile.runs_steps": ("训练次数 × 步数", "runs × steps"),
    "train.tile.about": ("约 {time}", "about {time}"),
    "train.tile.estimate": ("预计用时", "estimated time"),
    "train.tile.state": ("状态", "state"),
    "train.tile.elapsed": ("已用时间", "elapsed"),
    "train.tile.eta": ("预计剩余", "time left"),
    "train.tile.tokens_per_s": ("每秒词元数", "tokens/s"),
    "train.tile.train_loss": ("训练损失", "train loss"),
    "train.tile.eval_loss": ("验证损失", "eval loss"),
    "train.tile.unseen_loss": ("新知识损失", "unseen-facts loss"),
    "train.state.idle": ("空闲", "idle"),
    "train.state.running": ("训练中", "running"),
    "train.state.paused": ("已暂停", "paused"),
    "train.state.finished": ("已完成", "finished"),
    "train.state.stopped": ("已停止", "stopped"),
    "train.state.failed": ("失败", "failed"),
    "train.locked": ("**训练由老师控制**：你可以实时观看曲线和回答，左边显示的是老师正在训练的设置；"
                     "老师输入密码后才能修改。",
                     "**The teacher controls training**: watch the curves and answers live; the settings on the left "
                     "are the teacher's run. They open once the teacher's password is typed."),
    "train.unlocked": ("已作为老师登录：可以开始、暂停、停止训练和修改设置。",
                       "Logged in as the teacher: start, pause, stop and change the settings."),
    "train.running_about": ("老师的训练：{preset}", "The teacher's run: {preset}"),
    "train.custom": ("自定义设置", "custom settings"),
    "train.hyperparameters": ("超参数：模型大小和训练设置", "Hyperparameters: model size and training"),
    "train.latest": ("第 {step} 步评估时的回答（✓ = 和课程答案一字不差）",
                     "Answers at the evaluation of step {step} (✓ = the course answer word for word)"),
    "train.latest_empty": ("第一次评估后，这里会出现模型对两个固定问题和它们新问法的回答。",
                           "After the first evaluation the model's answers to the two fixed questions and their "
                           "rewordings appear here."),
    "train.reworded": ("新问法", "reworded"),
    "train.teacher": ("教师登录", "Teacher login"),
    "train.teacher_note": ("这个课堂由老师控制训练：同学们可以实时观看、对话和做可视化。",
                           "The teacher controls training in this classroom: students watch live, chat and "
                           "visualise."),
    "train.password": ("教师密码", "Teacher password"),
    "train.preset": ("预设", "Presets"),
    "train.preset_note.demo30": (
        "**30 秒演示：** 一个 2 层的小模型只学课程里的 8 个事实（包括两个固定问题，`data/demo_train.jsonl`），"
        "训练 150 步（2 核电脑上约 20 秒，电脑忙时会久一点）。每 25 步评估一次：右边的回答从乱码变成逐字答对两个"
        "固定问题，最后连新问法也答对（打 ✓）。用整套课程训练 30 秒只会看到乱码：要学会全部 595 个事实，本课的模型"
        "在 2 核电脑上要约 16–24 分钟（CPU 有 bf16 时），没有 bf16 的要约 1 小时；"
        "页面上的预计用时是在这台电脑上实测的。",
        "**30-second demo:** a small 2-layer model learns only 8 facts of the course (the two fixed questions among "
        "them, `data/demo_train.jsonl`) in 150 steps (about 20 s on a 2-core laptop, longer when it is busy). It is "
        "evaluated every 25 steps: the answers on the right go from noise to both fixed questions word for word, and "
        "at the end a rewording too (marked ✓). Thirty seconds on the whole course only shows noise: the lesson's "
        "model needs about 16–24 minutes on 2 cores with bf16 (about an hour without) for all 595 facts; the estimate "
        "on the page is timed on this computer."),
    "train.preset_note.adamw_vs_muon": (
        "**AdamW 对比 Muon：** 点“开始”后先用 AdamW、再用 Muon 各训练一次本课的模型（同一个随机种子、同样的步数，"
        "下面的预计用时是两次合计）。第二次训练时，AdamW 的曲线以虚线留在图上：同样的步数，Muon 的损失降得更快。"
        "两次都完成后，“对比”页已经选好 A 和 B。",
        "**AdamW vs Muon:** Start trains the lesson's model twice, first with AdamW, then with Muon (the same seed, "
        "the same steps; the estimate below is for both). During the second run AdamW's curve stays on the chart, "
        "dashed: at the same step, Muon's loss has fallen further. When both are done, the Compare tab has them as "
        "A and B."),
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
    "compare.differs": ("黄色的行：两者不同", "Highlighted rows: A and B differ"),
    "compare.answer": ("{answer}（把握 {pct}%）", "{answer} (confidence {pct}%)"),
    "compare.empty_answer": ("（空回答）", "(empty answer)"),
    "compare.figure.step": ("训练到第几步", "trained steps"),
    "compare.figure.params": ("参数量", "parameter count"),
    "compare.figure.train_loss": ("训练损失", "train loss"),
    "compare.figure.eval_loss": ("验证损失", "eval loss"),
    "compare.figure.unseen_loss": ("新知识损失", "unseen-facts loss"),
    "compare.figure.train_seconds": ("训练时间（秒）", "training time (s)"),
    "compare.figure.precision_used": ("实际训练精度", "precision used"),
}
TEXT.update(hyperparameter_text())
TEXT.update(CHART_TEXT)  # chart text lives in ui/charts.py, which must work without Gradio



@functools.cache
def i18n():
    """The gr.I18n tables (zh-CN, zh, en) for demo.launch(i18n=...). Gradio is imported here, not at the top: tiles,
    charts and the planner read TEXT through say() without it."""
    import gradio as gr

    zh = {key: zh for key, (zh, _) in TEXT.items()}
    return gr.I18n(**{"zh-CN": zh, "zh": dict(zh), "en": {key: en for key, (_, en) in TEXT.items()}})


def lang_of(request) -> str:
    """'zh' or 'en' for text a handler builds itself (tiles, chart titles), chosen as gr.I18n chooses its table:
    a browser whose first language is Chinese gets Chinese, any other English; no request or no header (the
    Python API, gradio_client) gets Chinese."""
    header = (request.headers.get("accept-language", "") if request is not None else "") or ""
    first = header.split(",")[0].strip().lower()
    return "en" if first and not first.startswith("zh") else "zh"


def say(key: str, lang: str, **values) -> str:
    """TEXT[key] in one language as a plain string, with {name} fields filled from values."""
    return in_language(TEXT[key], lang, **values)


def t(key: str):
    """The translatable text for `key` (a gr.I18n value). A key missing from TEXT raises KeyError when the app is
    built, instead of showing the bare key in the browser."""
    if key not in TEXT:
        raise KeyError(f"no UI text for {key!r}: add it to TEXT in ui/i18n.py")
    return i18n()(key)
