"""python -m gpt_mini.bench measures Trainer itself: throughput in each precision and time-to-usable."""

import math

import pytest
import torch

from gpt_mini import bench, hardware

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

SMALL = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2"]


def test_matmul_peak_is_positive_in_both_precisions():
    assert hardware.matmul_peak(torch.float32, m=64, k=32, n=64, repeats=3) > 0
    assert hardware.matmul_peak(torch.bfloat16, m=64, k=32, n=64, repeats=3) > 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_throughput_runs_the_trainer_and_counts_real_tokens(project, precision):
    r = bench.train_throughput(project.cfg(*SMALL), precision, steps=2, windows=1)
    assert r["precision"] == precision
    assert 0 < r["real_tokens_per_s"] <= r["tokens_per_s"]  # padding is not counted as work
    assert r["gflops_real"] > 0 and r["seconds_per_100_steps"] > 0


def test_time_to_usable_stops_at_max_steps_when_never_usable(project, tmp_path):
    """The tiny model never learns the real fixed questions: the run goes to its end and says so."""
    cfg = project.cfg(*SMALL, "training.max_steps=20", "training.eval_interval=10")
    r = bench.time_to_usable(cfg, "fp32", every=10, save_dir=tmp_path)
    assert r["usable"] is False and r["seconds"] is None and r["steps_run"] == 20
    assert math.isfinite(r["final_eval_loss"]) and r["train_seconds"] > 0


def test_orthogonalize_speed_times_every_block_matrix_in_both_precisions_and_restores_the_setting(project):
    from gpt_mini import optim
    before = dict(optim._NS_DTYPE)
    r = bench.orthogonalize_speed(project.cfg(*SMALL), repeats=1)
    assert r["matrices"] == 4 * 1 and r["bf16"] > 0 and r["fp32"] > 0
    assert r["bf16_over_fp32"] == pytest.approx(r["bf16"] / r["fp32"])
    assert optim._NS_DTYPE == before
