"""The classroom dashboard (Gradio 6): one module per tab, one shared training run, a model cache.
All model math lives in gpt_mini (gpt_mini.visualize for the pictures); these modules only wire and plot.
Gradio is imported with ui.app (and the tabs), not with the package: ui.charts, ui.planner, ui.limits and
ui.training_run work without it (bench.estimate uses them)."""

__all__ = ["build_app"]


def __getattr__(name):  # `from ui import build_app` still works, and loads Gradio only then
    if name == "build_app":
        from .app import build_app

        return build_app
    raise AttributeError(f"module 'ui' has no attribute {name!r}")
