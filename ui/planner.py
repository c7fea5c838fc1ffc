"""From form or API values to checked run configs, without Gradio: the training tab and bench.estimate plan runs the
same way (preset, then the given values, then a time budget, then the Space's limits)."""

import copy
import html
import math
import time

from gpt_mini import run_archive
from gpt_mini.durations import duration_parts
from gpt_mini.errors import UserError
from gpt_mini.visualize import model_size

from .hyperparameters import BY_NAME, PRESET_DATA, SERIES, make_config, preset_values
from .i18n import say
from .limits import LIMITS, check_limits
from .style import big_numbers, error_line


class RunPlanner:
    """From form or API values to a checked config: preset, then the given values, then the time budget (which
    sets max_steps, so the cosine schedule ends exactly where the budget does), then the Space's limits."""

    def __init__(self, config_path, base_cfg: dict, pace):
        """base_cfg: config_path's config as loaded (the presets' starting point and the CLI command's base)."""
        self.config_path, self.base_cfg, self.pace = config_path, base_cfg, pace

    def plan(self, values: dict, minutes: float | None = 0, preset: str = "", data: str | None = None,
             wait: bool = True) -> tuple[dict, float]:
        """data: whose course data to train on (hyperparameters.PRESET_DATA), default the preset's; the form passes
        its values with preset='' and the chosen preset as data. wait: see limits.check_limits."""
        merged = preset_values(self.base_cfg, preset) if preset else {}
        merged.update({k: v for k, v in values.items() if v is not None})
        preset_minutes = merged.pop("minutes", 0)
        minutes = minutes or preset_minutes  # a budget given with the request wins over the preset's
        def config(values: dict) -> dict:
            cfg = make_config(self.config_path, values)
            cfg["data"].update(PRESET_DATA.get(preset if data is None else data, {}))  # timed and trained alike
            return cfg

        cfg = config(merged)
        if minutes:
            if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and 0 < minutes <= 60):
                raise UserError("训练分钟数应在 0 到 60 之间", "minutes must be between 0 and 60")
            steps = min(LIMITS.max_steps, self.pace.steps_for(cfg, minutes * 60))
            cfg = config(dict(merged, max_steps=steps))
        return cfg, check_limits(cfg, self.pace, wait=wait)

    def plan_runs(self, values: dict, minutes: float | None = 0, preset: str = "",
                  series: str | None = None, wait: bool = True) -> list[tuple[dict, float, str, str]]:
        """The runs one start makes, [(config, seconds, value, label)]: one run, or for a series preset
        (hyperparameters.SERIES; `series`, default `preset`) one run per value with the same seed and steps. A time
        budget is shared by the runs, and together they must fit the time limit."""
        key = preset if series is None else series
        if key not in SERIES:
            cfg, seconds = self.plan(values, minutes, preset, data=key, wait=wait)
            return [(cfg, seconds, "", "")]
        name, options = SERIES[key]
        first, _ = self.plan(dict(values, **{name: options[0][0]}), (minutes or 0) / len(options), preset,
                             data=key, wait=wait)
        runs = []
        for value, label in options:
            cfg = copy.deepcopy(first)
            cfg[BY_NAME[name].section][name] = value
            runs.append((cfg, check_limits(cfg, self.pace, wait=wait), value, label))
        total = sum(seconds for _, seconds, _, _ in runs)
        if total > LIMITS.max_seconds:
            zh, en = duration_parts(total)
            raise UserError(f"这 {len(runs)} 次训练一共预计要 {zh}，超过上限 {LIMITS.max_seconds / 60:.0f} 分钟，"
                            "请减少步数或缩小模型", f"these {len(runs)} runs take about {en} together, over the "
                            f"{LIMITS.max_seconds / 60:.0f}-minute limit; use fewer steps or a smaller model")
        return runs

    def describe(self, values: dict, minutes: float, preset: str = "", lang: str = "zh") -> str:
        """Parameter count, formula and the estimated time (of every run of a series preset), or one line saying
        what to change. Never waits for a timing again (the page's estimate follows every slider)."""
        try:
            runs = self.plan_runs(values, minutes, "", preset, wait=False)
        except UserError as e:
            return error_line(str(e))
        return about_html(about(runs, preset), lang)


def about(planned: list, preset: str) -> dict:
    """What a start runs, as every page shows it: preset key, parameter count, formula, steps, runs, seconds.
    planned: RunPlanner.plan_runs()."""
    cfg = planned[0][0]
    m = cfg["model"]
    size = model_size(m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"], cfg["tokenizer"]["vocab_size"])
    return {"preset": preset, "params": size["params"], "formula": size["formula"],
            "steps": cfg["training"]["max_steps"], "runs": len(planned),
            "seconds": round(sum(seconds for _, seconds, _, _ in planned), 1)}


def about_html(a: dict, lang: str = "zh") -> str:
    """Tiles of about(): parameter count, (runs ×) steps, estimated time, in the page's language."""
    zh, en = duration_parts(a["seconds"])
    steps = f"{a['steps']:,}"
    return (big_numbers([(f"{a['params']:,}", say("train.tile.params", lang)),
                         (f"{a['runs']} × {steps}", say("train.tile.runs_steps", lang)) if a["runs"] > 1 else
                         (steps, say("train.tile.steps", lang)),
                         (say("train.tile.about", lang, time=en if lang == "en" else zh),
                          say("train.tile.estimate", lang))])
            + f"<div class='en'>{html.escape(a['formula'])}</div>")


def run_names(kind: str, name: str, values=("",)) -> list[str]:
    """Folder names a student recognises in every list: what ran and when (demo30_1204_155236, and for each run of
    a series adamw_vs_muon_muon_1204_155236), or the student's own name (NAME; NAME_adamw, NAME_muon)."""
    base, stamp = run_archive.safe_name(name, "")[:30], time.strftime("%m%d_%H%M%S")
    kind = run_archive.safe_name(kind, "run")
    return ["_".join(p for p in ((base, v) if base else (kind, v, stamp)) if p) for v in values]
