"""What every tab's build() returns to app.py, by name: what to run when the page loads or the tab is shown, which
checkpoint pickers to refresh, and the timer that should tick only while the tab is visible."""

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass(frozen=True)
class Step:
    """One event app.py wires for a tab: fn(inputs) -> outputs, under the tab's own endpoint name and visibility;
    `options` are further event arguments (concurrency_limit, show_progress...)."""
    fn: Callable
    inputs: list | None
    outputs: list
    api_name: str
    visibility: str = "private"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TabParts:
    """on_load: steps run one after the other when a page opens (the first fills the tab at once, a later one may
    finish slower work); on_show: a step run each time the tab is selected; checkpoint_dropdowns: pickers whose
    choices are listed again when the tab is selected (runs saved since); poll_timer: a gr.Timer that ticks only
    while this tab is shown."""
    on_load: tuple[Step, ...] = ()
    on_show: Step | None = None
    checkpoint_dropdowns: tuple = ()
    poll_timer: object | None = None


class View(SimpleNamespace):
    """The components a tab's layout function made, by name, for its wiring functions."""
