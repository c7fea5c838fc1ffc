"""How good is the dashboard's "预计 / about" time? Plans runs the way the training tab does (presets, a time
budget), runs each to the end in the dashboard's own TrainingRun, and prints estimate, actual wall time and ratio.

    python -m bench.estimate [--runs demo30,lesson300,tiny]
"""

import argparse
import tempfile
import time

from gpt_mini.config import load_config
from ui.limits import Pace
from ui.planner import RunPlanner
from ui.torch_threads import one_thread_by_default
from ui.training_run import TrainingRun

PLANS = {  # name -> (preset, values, minutes)
    "demo30": ("demo30", {}, None),
    "budget1min_small": ("", {"n_layer": 2, "n_embd": 128, "n_head": 4, "eval_interval": 100}, 1.0),
    "lesson300": ("lesson", {"max_steps": 300, "eval_interval": 100}, None),
    "tiny": ("", {"n_layer": 1, "n_embd": 32, "n_head": 2, "max_steps": 300, "eval_interval": 100}, None),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(PLANS))
    args = parser.parse_args(argv)
    one_thread_by_default()
    cfg = load_config()
    pace = Pace(cfg)
    t0 = time.perf_counter()
    pace.measure(cfg["training"]["precision"])
    print(f"measuring this machine: {time.perf_counter() - t0:.1f} s")
    planner = RunPlanner(None, cfg, pace)
    run = TrainingRun(tempfile.mkdtemp(prefix="gpt_mini_estimate_"))
    print(f"{'run':<18}{'steps':>7}{'estimate s':>12}{'actual s':>10}{'actual/estimate':>17}")
    for name in args.runs.split(","):
        preset, values, minutes = PLANS[name]
        planned, estimate = planner.plan(values, minutes, preset)
        t0 = time.perf_counter()
        run.start(planned, name)
        run.thread.join()
        actual = time.perf_counter() - t0
        s = run.status()
        print(f"{name:<18}{s['step']:>7}{estimate:>12.1f}{actual:>10.1f}{actual / estimate:>17.2f}  ({s['state']})")


if __name__ == "__main__":
    main()
