"""Answer many questions at once: one worker thread, one batched forward pass per step for all of them.

A classroom asks 30 questions in the same second. One at a time, each step of each answer pays the full cost
of a forward pass; in one batch the whole class shares it (python -m gpt_mini.bench times 32 questions both
ways). Rows join the batch as soon as they arrive and leave as soon as they finish ("continuous batching").
Rows of different lengths are left-padded; GPT.forward(pad=...) gives each row its own positions and hides the
pads, so every answer is the one generate() would give for that question alone."""

import queue
import threading
import time
import weakref
from collections import OrderedDict

import torch

from . import tokenizer as bpe
from .data import normalize_prompt
from .errors import UserError
from .generate import Decoding, Result, Settings, pick_greedy

LINGER_SECONDS = 1.0  # after a class's last question or answer, the next one is usually on its way


class _Request:
    def __init__(self, model, decoding: Decoding, progress: bool = True):
        """progress: the caller reads every step (stream); False: only the Result (one wake-up instead of one per
        token, which 30 waiting threads would otherwise spend competing for the interpreter lock)."""
        self.model, self.decoding, self.progress = model, decoding, progress
        self.events: queue.Queue = queue.Queue()
        self.cancelled = False


class BatchServer:
    """stream() or answer() from any thread; a single daemon worker runs the model. max_batch caps the rows per step;
    threads is the worker's torch thread count (1 leaves the other cores to a training run). The worker survives
    any error: the questions it was answering get a one-line error, later questions are answered as usual."""

    CACHE_SIZE = 256  # greedy answers kept (least recently asked dropped first)

    def __init__(self, max_batch: int = 32, threads: int = 1, timeout: float | None = 120.0):
        """timeout: seconds a caller waits for the next step of its answer before it is told to ask again; None
        waits as long as answering takes (an evaluation)."""
        self.max_batch, self.threads, self.timeout = max_batch, threads, timeout
        self._pending: list[_Request] = []
        self._taken: list[_Request] = []  # taken from _pending and not finished: they get the error if a step fails
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self.steps_run = 0  # batched forward passes so far (for tests and the benchmark)
        self.largest_batch = 0
        self.failures = 0  # steps that failed (each failure went to the questions in that step)
        self._closed = False
        self._cache: OrderedDict = OrderedDict()  # greedy answers: key -> (weak reference to the model, Result)
        self._cache_lock = threading.Lock()
        self._asking: dict = {}  # greedy questions being answered now: key -> Event set when the answer is cached
        self.cache_hits = 0
        self._last_activity = float("-inf")  # time.monotonic() of the last question asked or answered

    def busy(self) -> bool:
        """True while any question is waiting or being answered."""
        return bool(self._pending) or bool(self._taken)

    def active(self, linger: float = LINGER_SECONDS) -> bool:
        """busy(), or a question was asked or answered less than `linger` seconds ago: a student who just got an
        answer is typing the next question, so a class keeps the server active between its questions."""
        return self.busy() or time.monotonic() - self._last_activity < linger

    def stream(self, model, tok, prompt: str, s: Settings | None = None, top_n: int = 5, history=()):
        """Like generate.generate_steps: yields (answer_so_far, step_info) items, then the Result.
        Bad input raises UserError here, in the caller's thread, before anything is queued."""
        return self._ask(model, tok, prompt, s, top_n, history, progress=True)

    def _ask(self, model, tok, prompt, s, top_n, history, progress: bool):
        """Queue one question and return its events (every step with progress, else only the Result)."""
        req = _Request(model, Decoding(tok, prompt, s, model.seq_len, top_n, history), progress)
        self._submit([req])
        return self._events(req)

    def _submit(self, requests):
        with self._wake:
            self._last_activity = time.monotonic()
            self._pending.extend(requests)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, daemon=True, name="gpt-mini-serving")
                self._worker.start()
            self._wake.notify()

    def _events(self, req: _Request):
        try:
            while True:
                try:
                    item = req.events.get(timeout=self.timeout)
                except queue.Empty:
                    raise UserError(f"等了 {self.timeout:.0f} 秒还没有回答，请再问一次",
                                    f"no answer after {self.timeout:.0f} s; please ask again") from None
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Result):
                    return
        finally:
            req.cancelled = True  # the caller went away (closed tab): the worker drops the row

    def answer(self, model, tok, prompt: str, s: Settings | None = None, history=(), top_n: int = 0) -> Result:
        """The finished Result only; top_n > 0 keeps each step's top candidates in it (the per-token view).
        A greedy answer is the same every time, so one asked again (same model object, question, settings and
        earlier exchange) comes from a small cache: a class often asks the same question."""
        s = s or Settings()
        if s.temperature != 0:
            return self._answer_now(model, tok, prompt, s, history, top_n)
        key = (id(model), normalize_prompt(prompt), s.top_k, s.top_p, s.repetition_penalty, s.max_new_tokens,
               tuple(s.stop_strings), tuple(tuple(turn) for turn in history), top_n)
        while True:
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None and hit[0]() is model:  # the same model still (ids can be reused)
                    self._cache.move_to_end(key)
                    self.cache_hits += 1
                    return hit[1]
                asking = self._asking.get(key)
                if asking is None:  # nobody asks it now: this caller answers it for everyone
                    asking = self._asking[key] = threading.Event()
                    break
            asking.wait(self.timeout)  # the same question asked at the same moment is answered once
            with self._cache_lock:
                if self._asking.get(key) is asking:  # the first asker is stuck: answer without it
                    break
        try:
            item = self._answer_now(model, tok, prompt, s, history, top_n)
            with self._cache_lock:
                self._cache[key] = (weakref.ref(model), item)
                while len(self._cache) > self.CACHE_SIZE:
                    self._cache.popitem(last=False)
            return item
        finally:  # also after an error: the waiting callers then ask again themselves
            with self._cache_lock:
                if self._asking.get(key) is asking:
                    del self._asking[key]
            asking.set()

    def _answer_now(self, model, tok, prompt, s, history, top_n) -> Result:
        for item in self._ask(model, tok, prompt, s, top_n, history, progress=False):
            pass
        return item

    def answer_many(self, model, tok, prompts, s: Settings | None = None, histories=None) -> list[Result]:
        """Many questions from one caller (evaluation, --prompts_file): all queued at once, answered in batches."""
        histories = histories or [()] * len(prompts)
        requests = [_Request(model, Decoding(tok, p, s, model.seq_len, 0, h), progress=False)
                    for p, h in zip(prompts, histories)]
        self._submit(requests)
        results = []
        for req in requests:
            for item in self._events(req):
                pass
            results.append(item)
        return results

    def close(self):
        """Let the worker thread end once it has nothing left to do (a server made for one evaluation)."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    # ---- the worker ----
    def _take(self, model, room: int) -> list[_Request] | None:
        """Pending requests for `model`, oldest first, stopping at the first one for another model (fairness).
        With no model (nothing in progress) it waits for work; None when closed and idle."""
        with self._wake:
            while model is None and not self._pending and not self._closed:
                self._wake.wait()
            if model is None and not self._pending:
                return None
            model = model or self._pending[0].model
            taken = []
            while self._pending and len(taken) < room and self._pending[0].model is model:
                taken.append(self._pending.pop(0))
            self._taken += taken
            return taken

    @torch.no_grad()
    def _loop(self):
        torch.set_num_threads(self.threads)  # this thread only; a training thread keeps its own count
        batch = _Batch()
        while True:
            try:
                if not self._advance(batch):
                    return
            except Exception as e:  # noqa: BLE001 - every question in this step gets the error; the worker goes on
                self.failures += 1
                error = e if isinstance(e, UserError) else UserError(
                    f"生成出错，请再问一次：{type(e).__name__}",
                    f"generation failed, please ask again: {type(e).__name__}")
                for req in list(self._taken):
                    self._finish(req, error)
                batch = _Batch()

    def _advance(self, batch: "_Batch") -> bool:
        """One step: take newcomers, prefill them, run one batched forward pass for every row. False = stop."""
        if not batch.rows or self._pending:
            joining = self._take(batch.rows[0].model if batch.rows else None, self.max_batch - len(batch.rows))
            if joining is None:
                return False
            if joining:
                rows, cache, pad = self._prefill_all(joining)
                if rows:
                    batch.rows += rows
                    batch.cache, batch.pad = _merge(batch.cache, batch.pad, [(cache, pad)])
        self._keep(batch, [i for i, r in enumerate(batch.rows) if not r.cancelled])
        if batch.rows:
            feed = torch.tensor([[r.decoding.answer_ids[-1]] for r in batch.rows], device=batch.pad.device)
            logits, _ = batch.rows[0].model(feed, cache=batch.cache, pad=batch.pad)
            self.steps_run, self.largest_batch = self.steps_run + 1, max(self.largest_batch, len(batch.rows))
            self._keep(batch, self._emit_all(batch.rows, logits[:, -1]))
        return True

    def _keep(self, batch: "_Batch", keep: list[int]):
        dropped = [r for i, r in enumerate(batch.rows) if i not in set(keep)]
        batch.rows, batch.cache, batch.pad = _select(batch.rows, batch.cache, batch.pad, keep)
        self._done(dropped)

    def _done(self, requests):
        gone = set(map(id, requests))
        self._taken = [r for r in self._taken if id(r) not in gone]

    def _finish(self, req: _Request, last_event):
        """The question's last event, sent only after it left _taken: a caller that has its answer (or its error)
        never sees busy() still counting it."""
        self._done([req])
        self._last_activity = time.monotonic()
        req.events.put(last_event)

    def _prefill_all(self, joining: list[_Request]):
        """Newcomers' prompts in one left-padded forward pass (a class asks at once: one pass, not thirty).
        Returns (rows that go on, their cache, their padding). If that pass fails, each prompt is run alone, so
        only a question that fails by itself gets the error."""
        if len(joining) > 1:
            model = joining[0].model.eval()
            width = max(len(r.decoding.ids) for r in joining)
            pad = torch.tensor([width - len(r.decoding.ids) for r in joining])
            ids = torch.tensor([[bpe.PAD_ID] * int(p) + r.decoding.ids for r, p in zip(joining, pad)])
            cache = [{} for _ in model.blocks]
            try:
                device = next(model.parameters()).device
                logits, _ = model(ids.to(device), cache=cache, pad=pad.to(device))
            except Exception:  # noqa: BLE001 - retried one by one below
                cache = None
            if cache is not None:
                keep = self._emit_all(joining, logits[:, -1])
                self._done([req for i, req in enumerate(joining) if i not in keep])
                return _select(joining, cache, pad.to(device), keep)
        ones = [(req, one) for req in joining for one in [self._prefill(req)] if one is not None]
        if not ones:
            return [], None, None
        cache, pad = _merge(None, None, [(one, None) for _, one in ones])
        return [req for req, _ in ones], cache, pad

    def _prefill(self, req: _Request):
        """Run the newcomer's prompt alone; its one-row cache, or None if it already finished (or failed alone)."""
        model = req.model.eval()
        one = [{} for _ in model.blocks]
        try:
            logits, _ = model(torch.tensor([req.decoding.ids], device=next(model.parameters()).device), cache=one)
        except Exception:  # noqa: BLE001 - only this question fails
            self._finish(req, UserError("生成出错，请再问一次", "generation failed, please ask again"))
            return None
        if self._emit(req, logits[0, -1]):
            return one
        self._done([req])
        return None

    def _emit_all(self, rows: list[_Request], logits) -> list[int]:
        """Every row's next token from logits (B, V): plain-greedy rows pick theirs together (pick_greedy), the
        others one by one. Returns the indices of the rows that go on."""
        greedy = [i for i, r in enumerate(rows) if r.decoding.plain_greedy]
        picks = dict.fromkeys(range(len(rows)))
        if greedy:
            try:
                picks.update(zip(greedy, pick_greedy([rows[i].decoding for i in greedy], logits[greedy])))
            except Exception:  # noqa: BLE001 - each row then samples alone, so only a row that fails alone fails
                pass
        return [i for i, r in enumerate(rows) if self._emit(r, logits[i], picks[i])]

    def _emit(self, req: _Request, logits, picked=None) -> bool:
        """Let the row pick its token (or take the one picked for it) and tell the caller; True while the row goes
        on. A row whose sampling fails gets the error and leaves; the other rows go on."""
        d = req.decoding
        try:
            progress = d.step(logits, picked)
        except Exception:  # noqa: BLE001
            self._finish(req, UserError("生成出错，请再问一次", "generation failed, please ask again"))
            return False
        if progress and req.progress:
            req.events.put(progress)
        if d.result is not None:
            self._finish(req, d.result)
            return False
        return not req.cancelled


class _Batch:
    """The rows being answered together, their merged KV cache and each row's left padding."""

    def __init__(self):
        self.rows: list[_Request] = []
        self.cache, self.pad = None, None


def _merge(cache, pad, parts):
    """Add (cache, pad) parts to the batch in one copy (pad None: one row without padding); shorter rows are
    left-padded so all end at the same column."""
    parts = ([(cache, pad)] if cache is not None else []) + \
        [(c, p if p is not None else torch.zeros(1, dtype=torch.long, device=c[0]["k"].device)) for c, p in parts]
    width = max(c[0]["k"].shape[2] for c, _ in parts)
    pad = torch.cat([p + width - c[0]["k"].shape[2] for c, p in parts])
    merged = []
    for layer in range(len(parts[0][0])):
        merged.append({name: torch.cat([_left_pad(c[layer][name], width) for c, _ in parts]) for name in ("k", "v")})
    return merged, pad


def _left_pad(t, width: int):
    """(B, H, S, hd) -> (B, H, width, hd) with zeros before the first column."""
    return t if t.shape[2] == width else torch.nn.functional.pad(t, (0, 0, width - t.shape[2], 0))


def _select(rows, cache, pad, keep):
    """Keep only the rows at `keep`; drop the columns that are padding for every remaining row."""
    if len(keep) == len(rows):
        return rows, cache, pad
    if not keep:
        return [], None, None
    index = torch.tensor(keep, device=pad.device)
    pad = pad[index]
    cut = int(pad.min())
    for layer in cache:
        for name in ("k", "v"):
            layer[name] = layer[name][index, :, cut:]
    return [rows[i] for i in keep], cache, pad - cut
