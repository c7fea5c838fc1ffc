"""Checkpoints the dashboard may load, and a small cache of loaded models.

The browser only ever sends a key from the list built here (scan of checkpoints/ and the runs folder);
a key that is not in the list is refused, so no path chosen by a visitor is ever opened."""

import json
import threading
from collections import OrderedDict
from pathlib import Path

from gpt_mini import runs
from gpt_mini import tokenizer as bpe
from gpt_mini.checkpoint import load_model
from gpt_mini.config import resolve
from gpt_mini.errors import UserError
from gpt_mini.knowledge import course_of
from gpt_mini.visualize import initial_model

DEFAULT_KEY = "default-fp32"
DEFAULT_KEYS = (DEFAULT_KEY, "default-int8")
CHECKPOINT_DIR = runs.DEFAULT_DIR


class ModelStore:
    """Lists checkpoints and keeps the last few loaded models (keyed by path and file time)."""

    def __init__(self, runs_dir: Path, cfg: dict, cache_size: int = 4):
        self.runs_dir, self.cfg = Path(runs_dir), cfg
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._initial: dict = {}  # freshly initialised models ("step 0"), one per config
        self._lock = threading.Lock()

    def run_dirs(self) -> list[Path]:
        """Saved runs with a model to load, newest first."""
        return runs.run_dirs(self.runs_dir, with_model=True)

    def choices(self, snapshots: bool = True) -> list[tuple[str, str]]:
        """(label, key) pairs for a dropdown: default fp32, default int8, then each saved run (newest first) and,
        with snapshots, the run at each snapshot step ("run X at step S")."""
        out = []
        if (CHECKPOINT_DIR / runs.LAST).is_file():
            out.append(("默认模型 fp32 / default fp32", DEFAULT_KEY))
        if (CHECKPOINT_DIR / runs.QUANTIZED).is_file():
            out.append(("默认模型 int8 / default int8", "default-int8"))
        for d in self.run_dirs():
            out.append((f"训练 run: {d.name}", runs.run_key(d.name)))
            if snapshots:
                for step in runs.saved_snapshots(d):
                    out.append((f"训练 run: {d.name} · 第 {step} 步 / step {step}", runs.snap_key(d.name, step)))
        return out

    def path_of(self, key: str) -> Path:
        defaults = {DEFAULT_KEY: CHECKPOINT_DIR / runs.LAST, "default-int8": CHECKPOINT_DIR / runs.QUANTIZED}
        if key in defaults:
            return defaults[key]
        if key in (k for _, k in self.choices()):  # only listed runs, never a free path
            kind, name, step = runs.parse_key(key)
            if kind == "snap":
                return runs.snapshot_path(self.runs_dir / name, step)
            return runs.model_file(self.runs_dir / name)
        raise UserError(f"没有这个检查点：{key}（请从列表中选择）",
                        f"no such checkpoint: {key} (pick one from the list)")

    def get(self, key: str = DEFAULT_KEY):
        """(model, tokenizer, checkpoint dict) for a listed key; loaded once, reloaded when the file changes."""
        path = self.path_of(key or DEFAULT_KEY)
        try:
            stamp = (str(path), path.stat().st_mtime_ns)
        except FileNotFoundError:
            raise UserError(f"找不到检查点 {path.name}", f"checkpoint not found: {path.name}") from None
        with self._lock:
            if stamp in self._cache:
                self._cache.move_to_end(stamp)
                return self._cache[stamp]
            loaded = load_model(path)
            self._cache[stamp] = loaded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return loaded

    def warm(self, key: str = DEFAULT_KEY) -> threading.Thread:
        """Load a model and its course index (for refusals) in the background now, so that the first question of
        the lesson does not wait ~2 s for them. Returns the thread; a missing checkpoint is left to the chat."""
        def load():
            try:
                course_of(self.get(key)[2])
            except UserError:
                pass

        thread = threading.Thread(target=load, daemon=True, name="gpt-mini-warm")
        thread.start()
        return thread

    def snapshot_steps(self, run: str) -> list[int]:
        """The steps at which a saved run kept a snapshot, in order."""
        return runs.saved_snapshots(self.runs_dir / run)

    def run_of(self, key: str) -> str | None:
        """The saved run whose snapshots belong to a key: X for 'run:X' and 'snap:X:S'. For the default model, the
        run it was promoted from (checkpoints/promotion.json) when that run is in the runs folder with its snapshots
        and its final checkpoint has the same provenance; otherwise None (checkpoints/runs/ is not in the repo)."""
        key = key or DEFAULT_KEY
        if key not in DEFAULT_KEYS:
            self.path_of(key)  # only listed keys
            return runs.parse_key(key)[1]
        try:
            run = json.loads((CHECKPOINT_DIR / "promotion.json").read_text(encoding="utf-8")).get("run")
        except (OSError, ValueError, AttributeError):
            return None
        keys = [k for _, k in self.choices()]
        if not run or runs.run_key(run) not in keys or runs.snap_key(run, 0) not in keys:
            return None
        made = self.get(key)[2].get("provenance")
        return run if made and self.get(runs.run_key(run))[2].get("provenance") == made else None

    def initial(self, key: str = DEFAULT_KEY):
        """A freshly initialised model with the key's config and seed: what its training run started from (step 0),
        for when that run's snapshots are not here. Built once and kept for the latest config."""
        _, _, ckpt = self.get(key)
        stamp = (json.dumps(ckpt["config"], sort_keys=True, default=str), ckpt["vocab_size"])
        with self._lock:
            if stamp not in self._initial:
                self._initial = {stamp: initial_model(ckpt["config"], ckpt["vocab_size"])}  # keep only the latest
            return self._initial[stamp]

    def tokenizer(self):
        """The default model's tokenizer (falls back to the configured one if the model cannot load)."""
        try:
            return self.get(DEFAULT_KEY)[1]
        except UserError:
            return bpe.load_tokenizer(resolve(self.cfg["tokenizer"]["path"]))
