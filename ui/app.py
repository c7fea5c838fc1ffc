"""build_app(): the App, a gr.Blocks with its six tabs, the shared training run, the model cache and the chat's batch
server; wire_tabs() connects what each tab's TabParts asks for."""

import atexit
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from gpt_mini.config import ROOT, load_config
from gpt_mini.serving import BatchServer

from . import attention_tab, chat_tab, compare_tab, overview_tab, tokenizer_tab, training_tab
from .i18n import i18n, t
from .limits import Pace
from .models import CHECKPOINT_DIR, ModelStore
from .style import CSS, FONT
from .teacher import TeacherGate
from .torch_threads import one_thread_by_default
from .training_run import TrainingRun

QUEUE_MAX_SIZE = 64
MAX_UPLOAD = "60mb"  # a run's zip (int8 checkpoint and tables) is a few MB; bigger uploads stop at the door
SESSION_CAPACITY = 256  # Gradio keeps ~0.3 MB per browser session (default: 10,000 of them); a class needs ~100


@dataclass
class App:
    """The dashboard: its Blocks, the shared training run, the model cache, the chat's batch server, the measured
    training pace and the teacher gate (dashboard.py launches it; tests reach the parts)."""
    blocks: gr.Blocks
    run: TrainingRun
    store: ModelStore
    server: BatchServer
    pace: Pace
    gate: TeacherGate

    def close(self):
        """Stop a run in progress and the web server."""
        self.run.shutdown()
        self.blocks.close()


def build_app(config_path=None, runs_dir=None, teacher_password: str | None = None, promote_dir=None) -> App:
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
    store.warm()  # the default model and its course index, before the first student asks
    gate = TeacherGate(teacher_password)
    run = TrainingRun(runs_dir, chat_busy=server.active)
    atexit.register(run.shutdown)  # the daemon thread also stops when the server process ends
    # The browser-tab title stays bilingual: gr.I18n does not translate Blocks(title=...) (the raw key shows).
    with gr.Blocks(title="GPT_teacher 课堂面板 / classroom dashboard") as blocks:
        gr.HTML("<h2 style='margin:4px 0'>" + t("app.title") + "</h2>")
        tabs = {}
        with gr.Tabs(overflow_behavior="wrap"):  # a narrow screen wraps the tabs, never hides them in "…"
            with gr.Tab(t("tab.overview"), id="overview") as tab:
                tabs[tab] = overview_tab.build(store, cfg, pace)
            with gr.Tab(t("tab.tokenizer"), id="tokenizer") as tab:
                tabs[tab] = tokenizer_tab.build(store, cfg)
            with gr.Tab(t("tab.training"), id="training") as tab:
                tabs[tab] = training_tab.build(
                    run, store, cfg, config_path, runs_dir, pace, gate, Path(promote_dir or CHECKPOINT_DIR))
            with gr.Tab(t("tab.attention"), id="attention") as tab:
                tabs[tab] = attention_tab.build(store, cfg)
            with gr.Tab(t("tab.chat"), id="chat") as tab:
                tabs[tab] = chat_tab.build(store, cfg, server)
            with gr.Tab(t("tab.compare"), id="compare") as tab:
                tabs[tab] = compare_tab.build(store, server, last_series=run.last_series)
        wire_tabs(blocks, tabs, store)
    blocks.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=2)
    return App(blocks, run, store, server, pace, gate)


def wire_tabs(blocks: gr.Blocks, tabs: dict, store: ModelStore):
    """What each tab's TabParts asks for: page-load steps (chained), a step when the tab is shown, checkpoint
    pickers listed again when it is shown, and a poll timer that ticks only while it is shown."""
    for parts in tabs.values():
        if parts.on_load:
            first, *rest = parts.on_load
            event = blocks.load(first.fn, first.inputs, first.outputs, api_name=first.api_name,
                                api_visibility=first.visibility, **first.options)
            for step in rest:
                event = event.then(step.fn, step.inputs, step.outputs, api_name=step.api_name,
                                   api_visibility=step.visibility, **step.options)
    for tab, parts in tabs.items():
        if parts.poll_timer is not None:  # e.g. only a browser that shows the training tab polls the run
            # one queue for every switch, so two quick tab clicks are answered in the order they were made
            switch = dict(api_visibility="private", concurrency_id="tab_timers", concurrency_limit=1)
            tab.select(lambda: gr.Timer(active=True), None, parts.poll_timer, api_name=f"ui_{tab.id}_shown",
                       **switch)
            for other in tabs:
                if other is not tab:
                    other.select(lambda: gr.Timer(active=False), None, parts.poll_timer,
                                 api_name=f"ui_{tab.id}_hidden_{other.id}", **switch)
        for dropdown in parts.checkpoint_dropdowns:
            tab.select(lambda: gr.Dropdown(choices=store.choices()), None, dropdown,
                       api_name=f"ui_refresh_{tab.id}_{dropdown.elem_id or 'ckpt'}", api_visibility="private")
        if parts.on_show is not None:
            step = parts.on_show
            tab.select(step.fn, step.inputs, step.outputs, api_name=step.api_name, api_visibility=step.visibility,
                       **step.options)


def launch_kwargs() -> dict:
    """Look, limits and UI text tables passed to demo.launch (Gradio 6 takes theme, css and i18n here)."""
    theme = gr.themes.Soft(font=[FONT.split(",")[0].strip('"'), "sans-serif"], font_mono=["monospace"])
    return {"theme": theme, "css": CSS, "max_threads": 80, "footer_links": ["api"],
            "state_session_capacity": SESSION_CAPACITY, "i18n": i18n(),
            "max_file_size": MAX_UPLOAD}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(app: App, timeout: float = 60.0) -> str:
    """Start the app on a free localhost port without blocking and return its URL once it answers
    ("Running on local URL" is printed before the server is ready). Used by the tests."""
    _, url, _ = app.blocks.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                  quiet=True, **launch_kwargs())
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
