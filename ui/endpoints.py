"""How every tab's named API endpoints report bad input."""

from contextlib import contextmanager

import gradio as gr

from gpt_mini.errors import UserError


@contextmanager
def one_line():
    """Inside an API endpoint: bad input (a UserError) reaches the caller as its one clear line, never as Gradio's
    generic "the upstream app has raised an exception" nor as a traceback in the server log."""
    try:
        yield
    except UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
