"""build_app(): the gr.Blocks with its five tabs, the shared training run and the model cache."""

import atexit
import socket
import time
import urllib.request
from pathlib import Path

import gradio as gr

from gpt_mini.config import ROOT, load_config
from gpt_mini.serving import BatchServer

from . import attention_tab, chat_tab, compare_tab, overview_tab, tokenizer_tab, training_tab
from .i18n import I18N, t
from .limits import Pace
from .models import CHECKPOINT_DIR, ModelStore
from .style import CSS, FONT
from .teacher import TeacherGate
from .torch_threads import one_thread_by_default
from .training_run import TrainingRun

QUEUE_MAX_SIZE = 64
MAX_UPLOAD = "60mb"  # a run's zip (int8 checkpoint and tables) is a few MB; bigger uploads stop at the door
SESSION_CAPACITY = 256  # Gradio keeps ~0.3 MB per browser session (default: 10,000 of them); a class needs ~100


def build_app(config_path=None, runs_dir=None, teacher_password: str | None = None, promote_dir=None) -> gr.Blocks:
    """config_path: config.yaml to start from; runs_dir: where dashboard runs are saved (default checkpoints/runs);
    teacher_password: None reads TEACHER_PASSWORD, '' means no teacher mode; promote_dir: where "make it the
    default model" copies a run (default checkpoints/)."""
    one_thread_by_default()  # only a training run uses all cores (see torch_threads.py)
    cfg = load_config(config_path)
    runs_dir = Path(runs_dir) if runs_dir else ROOT / "checkpoints" / "runs"
    store = ModelStore(runs_dir, cfg)
    server = BatchServer()  # one worker answers all chat questions together
    pace = Pace(cfg)
    pace.measure(cfg["training"]["precision"])  # a few seconds, now, while nothing else runs: a fair measurement
    gate = TeacherGate(teacher_password)
    run = TrainingRun(runs_dir, chat_busy=server.busy)
    atexit.register(run.shutdown)  # the daemon thread also stops when the server process ends
    # The browser-tab title stays bilingual: gr.I18n does not translate Blocks(title=...) (the raw key shows).
    with gr.Blocks(title="GPT_teacher 课堂面板 / classroom dashboard") as demo:
        gr.HTML("<h2 style='margin:4px 0'>" + t("app.title") + "</h2>")
        with gr.Tabs():
            with gr.Tab(t("tab.overview"), id="overview") as overview:
                overview_fast, overview_measured, overview_in, overview_out = overview_tab.build(store, cfg, pace)
            with gr.Tab(t("tab.tokenizer"), id="tokenizer") as tokenizer:
                tokenizer_tab.build(store, cfg)
            with gr.Tab(t("tab.training"), id="training") as training:
                training_poll = training_tab.build(
                    run, store, cfg, config_path, runs_dir, pace, gate, Path(promote_dir or CHECKPOINT_DIR))
            with gr.Tab(t("tab.attention"), id="attention") as attention:
                attention_load, attention_out, (attention_ckpt, trace_ckpt) = attention_tab.build(store, cfg)
            with gr.Tab(t("tab.chat"), id="chat") as chat:
                chat_ckpt = chat_tab.build(store, cfg, server)
            with gr.Tab(t("tab.compare"), id="compare") as compare:
                compare_tab.build(store, server, tab=compare, last_series=run.last_series)
        demo.load(overview_fast, None, overview_out, api_name="ui_overview_load", api_visibility="private").then(
            overview_measured, overview_in, overview_out, api_name="ui_overview_measure", api_visibility="private",
            show_progress="minimal")
        demo.load(attention_load, None, attention_out, api_name="ui_attention_load", api_visibility="private")
        # Only a browser that shows the training tab polls the run every second.
        training.select(lambda: gr.Timer(active=True), None, training_poll, api_name="ui_training_shown",
                        api_visibility="private")
        for tab in (overview, tokenizer, attention, chat, compare):
            tab.select(lambda: gr.Timer(active=False), None, training_poll, api_name=f"ui_training_hidden_{tab.id}",
                       api_visibility="private")
        for tab, dropdown in ((attention, attention_ckpt), (attention, trace_ckpt), (chat, chat_ckpt)):
            tab.select(lambda: gr.Dropdown(choices=store.choices()), None, dropdown,
                       api_name=f"ui_refresh_{tab.id}_{dropdown.elem_id or 'ckpt'}", api_visibility="private")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=2)
    demo.training_run, demo.model_store, demo.batch_server = run, store, server  # for tests and shutdown
    demo.pace, demo.teacher_gate = pace, gate
    return demo


def launch_kwargs() -> dict:
    """Look, limits and UI text tables passed to demo.launch (Gradio 6 takes theme, css and i18n here)."""
    theme = gr.themes.Soft(font=[FONT.split(",")[0].strip('"'), "sans-serif"], font_mono=["monospace"])
    return {"theme": theme, "css": CSS, "max_threads": 80, "footer_links": ["api"],
            "state_session_capacity": SESSION_CAPACITY, "i18n": I18N,
            "max_file_size": MAX_UPLOAD}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(demo: gr.Blocks, timeout: float = 60.0) -> str:
    """Start the app on a free localhost port without blocking and return its URL once it answers
    ("Running on local URL" is printed before the server is ready). Used by the tests."""
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            **launch_kwargs())
    return wait_until_up(url, timeout)


def wait_until_up(url: str, timeout: float = 60.0) -> str:
    """Poll the server's API description until it answers; the URL, or RuntimeError after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                if r.status == 200:
                    return url
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"server at {url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)
