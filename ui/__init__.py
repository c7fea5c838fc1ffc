"""The classroom dashboard (Gradio 6): one module per tab, one shared training run, a model cache.
All model math lives in gpt_mini (gpt_mini.visualize for the pictures); these modules only wire and plot."""

from .app import build_app

__all__ = ["build_app"]
