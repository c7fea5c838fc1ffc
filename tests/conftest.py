"""Shared fixtures: a real tiny tokenizer, a tiny project in a temporary folder, tiny models, one end-to-end training
run shared by several tests, a helper that runs the CLIs, and for the dashboard one server without a password, one in
teacher mode and one Chromium, each started once per session.

Markers (pyproject.toml): `slow` (browser, torchrun, long training; `pytest -m "not slow"` skips them) and
`single_thread` (torch runs on one thread in that test or module, see one_torch_thread)."""

import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gpt_mini import tokenizer as bpe
from gpt_mini.build_tokenizer import corpus_texts
from gpt_mini.config import load_config
from gpt_mini.errors import run_cli
from gpt_mini.model import GPT

ROOT = Path(__file__).resolve().parent.parent  # the repository

# The tiny course: short pairs in Chinese, English and emoji. Prompts use full-width ？ as students type them.
PAIRS = [
    ("什么是注意力机制？", "注意力机制让模型关注关键位置。"),
    ("天空为什么是蓝色的？", "阳光中的蓝光被空气散射得最多。"),
    ("What is AI?", "AI lets computers learn from data. 🤖"),
    ("如何保持健康？", "规律作息，均衡饮食，适量运动。"),
    ("水的化学式是什么？", "水的化学式是H2O。"),
]
VAL_PAIRS = [  # held-out wordings of the training facts
    ("注意力机制是啥？", "注意力机制让模型关注关键位置。"),
    ("天空为啥是蓝的", "阳光中的蓝光被空气散射得最多。"),
]
UNSEEN_PAIRS = [  # facts the training set never taught
    ("月亮为什么会发光？", "月亮本身不发光，它反射太阳的光。"),
    ("什么是机器学习？", "机器学习让计算机从数据中学习规律。"),
]
TOKENIZER_EXTRA = ["Hello, world! The quick brown fox jumps over the lazy dog.", "表情 😊🎉👍 emoji", "GPT 模型 2024年"]
VOCAB = 400

# A tiny model shape that trains the pairs above to exact answers in a few seconds on 2 cores.
TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 64, "dropout": 0.0, "causal": True}
TINY_TRAINING = {"max_steps": 200, "batch_size": 5, "micro_batch": 5, "lr": 0.003, "warmup_ratio": 0.05,
                 "weight_decay": 0.01, "grad_clip": 1.0, "eval_interval": 50, "seed": 42, "device": "cpu"}


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_rows(pairs):
    return [{"prompt": p, "completion": c} for p, c in pairs]


# The machine has 2 cores shared with other jobs: two torch threads fighting other processes run a tiny model
# ~10x slower than one thread. Tests and modules marked `single_thread` run torch single-threaded; Trainer.run's
# set_num_threads(os.cpu_count()) request is recorded (TORCH_THREAD_REQUESTS, checked in test_engine_train.py)
# and honoured as 1 thread. The dashboard's own tests are not marked: they check its thread handling.
TORCH_THREAD_REQUESTS = []
_real_set_num_threads = torch.set_num_threads


@contextlib.contextmanager
def torch_single_thread():
    before = torch.get_num_threads()
    mp = pytest.MonkeyPatch()
    _real_set_num_threads(1)
    mp.setattr(torch, "set_num_threads", lambda n: (TORCH_THREAD_REQUESTS.append(n), _real_set_num_threads(1))[1])
    try:
        yield TORCH_THREAD_REQUESTS
    finally:
        mp.undo()
        _real_set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _single_thread_module(request):
    """A module marked single_thread (pytestmark) runs on one torch thread from its first module fixture (a training
    run in a fixture is covered) to its end. True when it does."""
    if request.node.get_closest_marker("single_thread") is None:
        yield False
        return
    with torch_single_thread():
        yield True


@pytest.fixture(autouse=True)
def one_torch_thread(request, _single_thread_module):
    """The recorded set_num_threads requests. A test marked single_thread in an unmarked module gets one torch
    thread for itself."""
    if _single_thread_module or request.node.get_closest_marker("single_thread") is None:
        yield TORCH_THREAD_REQUESTS
        return
    with torch_single_thread() as requests:
        yield requests


@pytest.fixture(scope="session")
def tok():
    """A real byte-level BPE tokenizer trained by the engine on the tiny course (plus a few extra strings)."""
    texts = corpus_texts(pair_rows(PAIRS + VAL_PAIRS + UNSEEN_PAIRS)) + TOKENIZER_EXTRA
    return bpe.train_tokenizer(texts, VOCAB)


class Project:
    """A project folder: data/, tokenizer/, config.yaml (absolute paths), save dir under runs/."""

    def __init__(self, root: Path, tok):
        self.root = root
        self.train_path = write_jsonl(root / "data" / "train.jsonl", pair_rows(PAIRS))
        self.val_path = write_jsonl(root / "data" / "val.jsonl", pair_rows(VAL_PAIRS))
        self.unseen_path = write_jsonl(root / "data" / "unseen.jsonl", pair_rows(UNSEEN_PAIRS))
        self.tokenizer_path = root / "tokenizer" / "tokenizer.json"
        self.tokenizer_path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(self.tokenizer_path))
        self.config_path = root / "config.yaml"
        raw = {
            "model": dict(TINY_MODEL),
            "training": dict(TINY_TRAINING),
            "data": {"train_path": str(self.train_path), "val_path": str(self.val_path),
                     "unseen_path": str(self.unseen_path)},
            "tokenizer": {"type": "bytelevel_bpe", "path": str(self.tokenizer_path), "vocab_size": VOCAB},
            "save": {"dir": str(root / "runs" / "default")},
        }
        self.config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    def cfg(self, *overrides, **sections):
        """load_config on the project's config.yaml with --set style overrides and/or nested updates."""
        return load_config(self.config_path, overrides, sections or None)


@pytest.fixture(scope="session")
def project(tmp_path_factory, tok):
    return Project(tmp_path_factory.mktemp("project"), tok)


def sharpen(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Re-initialise with larger random weights (non-zero biases, non-unit gains) so attention is far from
    uniform and any mistake in masking, RoPE or caching shows up as a large difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture
def tiny_model(tok):
    """A random 2-layer model over the real tokenizer's vocabulary, in eval mode."""
    torch.manual_seed(0)
    model = GPT(tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, seq_len=64, dropout=0.0)
    return sharpen(model).eval()


class TrainedRun:
    def __init__(self, trainer, state, logs, ends, save_dir, cfg):
        self.trainer, self.state, self.logs, self.ends = trainer, state, logs, ends
        self.save_dir, self.cfg = save_dir, cfg
        self.model, self.tok = trainer.model, trainer.tok


@pytest.fixture(scope="session")
def trained_run(project, tmp_path_factory):
    """The end-to-end run: tiny model, tokenizer trained on the tiny data, 200 steps at lr 3e-3 on the pairs."""
    from gpt_mini.train import Trainer

    save_dir = tmp_path_factory.mktemp("e2e_run")
    cfg = project.cfg()
    logs, ends = [], []
    trainer = Trainer(cfg, save_dir=save_dir, probe_questions=[p for p, _ in PAIRS], threads=os.cpu_count(),
                      callbacks={"on_log": [lambda t, row: logs.append(row)],
                                 "on_end": [lambda t: ends.append(t.state)]})
    with torch_single_thread():
        state = trainer.run()
    trainer.model.eval()
    return TrainedRun(trainer, state, logs, ends, save_dir, cfg)


# ---- CLI helper ---------------------------------------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH = re.compile(r"[A-Za-z]{3,}")


def run_module(module: str, *args, timeout: float = 180):
    """Run `python -m module args` from the repository root, as a student would."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout, env=env)


def call_module(module: str, *args):
    """What `python -m module args` does, in this process: the module's main through run_cli (every CLI's
    __main__ is `raise SystemExit(run_cli(main))`), stdout and stderr captured. Milliseconds instead of the ~1.5 s
    a fresh interpreter takes to import torch."""
    main = importlib.import_module(module).main
    out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_cli(main, [str(a) for a in args])
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess([module, *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture(params=["in_process", pytest.param("python_m", marks=pytest.mark.slow)])
def cli(request):
    """Runs a CLI: in this process (fast), and in the full suite also as `python -m` in a fresh interpreter, as a
    student would. Same arguments and result (returncode, stdout, stderr) as run_module."""
    return call_module if request.param == "in_process" else run_module


def assert_one_line_user_error(proc, *must_contain):
    """Non-zero exit, stderr is exactly one line with Chinese and English, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode != 0, f"exit code 0; stdout={proc.stdout!r} stderr={proc.stderr!r}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, f"stderr is not one line: {proc.stderr!r}"
    assert CJK.search(err), f"no Chinese in {err!r}"
    assert ENGLISH.search(err), f"no English in {err!r}"
    for text in must_contain:
        assert text in err, f"{text!r} not in {err!r}"
    return err


# ---- the dashboard: one server of each kind and one browser per session -----------------------------------------

TEACHER_PASSWORD = "correct horse 7"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium: a test tool's own browser download cannot work here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@contextlib.contextmanager
def served_app(runs_dir, **build_kwargs):
    """The dashboard on a free localhost port with a gradio_client Client: {app, client, runs_dir, url}."""
    from gradio_client import Client

    from ui.app import build_app, launch_local

    app = build_app(runs_dir=runs_dir, **build_kwargs)
    url = launch_local(app)
    client = Client(url, verbose=False)
    try:
        yield {"app": app, "client": client, "runs_dir": runs_dir, "url": url}
    finally:
        client.close()
        app.close()


def idle(served: dict) -> dict:
    """A shared server's training run stopped and back to an empty chart: each module using it starts from idle
    and leaves nothing training behind (a run a failed test left going would slow every later test)."""
    run = served["app"].run
    run.stop(wait=60)
    run.reset()
    return served


@pytest.fixture(scope="session")
def open_server(tmp_path_factory):
    """The dashboard as on a student's laptop: no teacher password, every control open. Modules take it through a
    module fixture that calls idle() before and after."""
    with served_app(tmp_path_factory.mktemp("runs"), teacher_password="") as served:
        yield served


@pytest.fixture(scope="session")
def teacher_server(tmp_path_factory):
    """The dashboard as on a class Space: TEACHER_PASSWORD guards the controls; promoting copies to a temporary
    folder, never to checkpoints/."""
    with served_app(tmp_path_factory.mktemp("teacher_runs"), teacher_password=TEACHER_PASSWORD,
                    promote_dir=tmp_path_factory.mktemp("promoted")) as served:
        yield served


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium (Playwright) for every browser test; each module opens its own contexts in it."""
    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium (/usr/bin/chromium) is not installed: apt-get install chromium fonts-noto-cjk")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a shared 2-core machine: be patient (retrying assertions), never sleep
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, url: str, locale: str = "zh-CN", viewport: tuple[int, int] = (1280, 900)):
    """A fresh context (its own cookies and session) with one page on `url`: (context, page). viewport: (width,
    height), e.g. (390, 844) for a phone."""
    context = browser.new_context(locale=locale, viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    return context, page


def open_hyperparameters(page):
    """Unfold the training tab's hyperparameter panel (folded so the run fits one projector screen)."""
    if not page.locator("#hp-max_steps").is_visible():
        page.locator("#train-hyperparameters > button").first.click()
    page.locator("#hp-max_steps").wait_for(state="visible")


def set_slider(page, name: str, value):
    """Type a value into a training-tab slider's number box, as a student does."""
    open_hyperparameters(page)
    box = page.locator(f"#hp-{name} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def wait_status(client, predicate, timeout=600.0):
    """Poll /train_status until predicate(status) holds; AssertionError with the last status after `timeout`. The
    timeout only catches a hung run: starting a run on the course data encodes 41,970 rows, which a busy 2-core
    machine may take minutes over."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        s = client.predict(api_name="/train_status")
        if predicate(s):
            return s
        time.sleep(0.3)
    raise AssertionError(f"status never matched; last: {s}")
