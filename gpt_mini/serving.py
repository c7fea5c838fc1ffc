"""Answer many questions at once: one worker thread, one batched forward pass per step for all of them.

A classroom asks 30 questions in the same second. One at a time, each step of each answer pays the full cost
of a forward pass; in one batch the whole class shares it (python -m gpt_mini.bench times 32 questions both
ways). Rows join the batch as soon as they arrive and leave as soon as they finish ("continuous batching"). Rows of different lengths
are left-padded; GPT.forward(pad=...) gives each row its own positions and hides the pads, so every answer is
the one generate() would give for that question alone."""

import queue
import threading

import torch

from .generate import Decoding, Result, Settings


class _Request:
    def __init__(self, model, decoding: Decoding):
        self.model, self.decoding = model, decoding
        self.events: queue.Queue = queue.Queue()
        self.cancelled = False


class BatchServer:
    """stream() or answer() from any thread; a single daemon worker runs the model. max_batch caps the rows per step;
    threads is the worker's torch thread count (1 leaves the other cores to a training run)."""

    def __init__(self, max_batch: int = 32, threads: int = 1, timeout: float = 120.0):
        self.max_batch, self.threads, self.timeout = max_batch, threads, timeout
        self._pending: list[_Request] = []
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self.steps_run = 0  # batched forward passes so far (for tests and the benchmark)
        self.largest_batch = 0
        self.active = 0  # rows in the batch right now

    def busy(self) -> bool:
        """True while any question is waiting or being answered."""
        return bool(self._pending) or self.active > 0

    def stream(self, model, tok, prompt: str, s: Settings | None = None, top_n: int = 5):
        """Like generate.generate_steps: yields (answer_so_far, step_info) items, then the Result.
        Bad input raises UserError here, in the caller's thread, before anything is queued."""
        req = _Request(model, Decoding(tok, prompt, s, model.seq_len, top_n))
        with self._wake:
            self._pending.append(req)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, daemon=True, name="gpt-mini-serving")
                self._worker.start()
            self._wake.notify()
        try:
            while True:
                item = req.events.get(timeout=self.timeout)
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Result):
                    return
        finally:
            req.cancelled = True  # the caller went away (closed tab): the worker drops the row

    def answer(self, model, tok, prompt: str, s: Settings | None = None) -> Result:
        for item in self.stream(model, tok, prompt, s, top_n=0):
            pass
        return item

    # ---- the worker ----
    def _take(self, model, room: int) -> list[_Request]:
        """Pending requests for `model`, oldest first, stopping at the first one for another model (fairness)."""
        with self._wake:
            while model is None and not self._pending:
                self._wake.wait()
            model = model or self._pending[0].model
            taken = []
            while self._pending and len(taken) < room and self._pending[0].model is model:
                taken.append(self._pending.pop(0))
            return taken

    @torch.no_grad()
    def _loop(self):
        torch.set_num_threads(self.threads)  # this thread only; a training thread keeps its own count
        rows: list[_Request] = []
        cache, pad = None, None
        while True:
            joining = self._take(rows[0].model if rows else None, self.max_batch - len(rows)) \
                if not rows or self._pending else []
            self.active = len(rows) + len(joining)  # busy() stays true while newcomers are prefilled
            ones = []
            for req in joining:
                try:
                    one = self._prefill(req)
                except Exception as e:  # noqa: BLE001 - that caller gets the error; the others go on
                    req.events.put(e)
                    continue
                if one is not None:
                    ones.append(one)
                    rows.append(req)
            if ones:
                cache, pad = _merge(cache, pad, ones)
            rows, cache, pad = _select(rows, cache, pad, [i for i, r in enumerate(rows) if not r.cancelled])
            self.active = len(rows)
            if not rows:
                continue
            try:
                feed = torch.tensor([[r.decoding.answer_ids[-1]] for r in rows], device=pad.device)
                logits, _ = rows[0].model(feed, cache=cache, pad=pad)
                self.steps_run, self.largest_batch = self.steps_run + 1, max(self.largest_batch, len(rows))
                keep = [i for i, r in enumerate(rows) if self._emit(r, logits[i, -1])]
                rows, cache, pad = _select(rows, cache, pad, keep)
                self.active = len(rows)
            except Exception as e:  # noqa: BLE001 - every waiting caller gets the error; the worker goes on
                for r in rows:
                    r.events.put(e)
                rows, cache, pad, self.active = [], None, None, 0

    def _prefill(self, req: _Request):
        """Run the newcomer's prompt alone; its one-row cache, or None if it already finished."""
        model = req.model.eval()
        one = [{} for _ in model.blocks]
        logits, _ = model(torch.tensor([req.decoding.ids], device=next(model.parameters()).device), cache=one)
        return one if self._emit(req, logits[0, -1]) else None

    @staticmethod
    def _emit(req: _Request, logits) -> bool:
        """Let the row pick its token and tell the caller; True while the row goes on."""
        d = req.decoding
        progress = d.step(logits)
        if progress:
            req.events.put(progress)
        if d.result is not None:
            req.events.put(d.result)
            return False
        return not req.cancelled


def _merge(cache, pad, ones):
    """Add one-row caches to the batch in one copy; shorter rows are left-padded so all end at the same column."""
    parts = ([(cache, pad)] if cache is not None else []) + \
        [(one, torch.zeros(1, dtype=torch.long, device=one[0]["k"].device)) for one in ones]
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
