"""The dashboard's torch thread policy (ui/torch_threads.py): long-lived threads use one torch thread, and all
cores are used only inside short-lived threads."""

import os
import threading

import pytest
import torch

from ui.torch_threads import one_thread_by_default, reset_default_for_new_threads, with_all_cores


def count_in_new_thread() -> int:
    out = []
    th = threading.Thread(target=lambda: out.append(torch.get_num_threads()))
    th.start()
    th.join()
    return out[0]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_new_threads_take_one_thread_after_startup(restore_threads):
    one_thread_by_default()
    assert torch.get_num_threads() == 1 and count_in_new_thread() == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_a_run_that_claims_all_cores_keeps_them_while_new_threads_get_one(restore_threads):
    one_thread_by_default()
    seen = {}

    def training_thread():
        torch.set_num_threads(2)  # what Trainer.run does (os.cpu_count())
        x = torch.randn(1 << 22)
        x.exp()  # a large elementwise op runs in parallel: the thread's own OpenMP team now exists
        seen["before"] = count_in_new_thread()  # without the reset, every later thread would take 2
        reset_default_for_new_threads()  # what TrainingRun does after the first step
        x.exp()
        seen["own"], seen["new"] = torch.get_num_threads(), count_in_new_thread()

    th = threading.Thread(target=training_thread)
    th.start()
    th.join()
    assert seen == {"before": 2, "own": 2, "new": 1}


def test_with_all_cores_runs_in_a_fresh_thread_and_returns(restore_threads):
    one_thread_by_default()
    caller = threading.get_ident()
    value = with_all_cores(lambda x: (torch.get_num_threads(), threading.get_ident(), x * 2), 21)
    assert value[0] == (os.cpu_count() or 1) and value[1] != caller and value[2] == 42
    assert torch.get_num_threads() == 1 and count_in_new_thread() == 1


def test_with_all_cores_reraises_in_the_caller():
    with pytest.raises(ValueError, match="boom"):
        with_all_cores(lambda: (_ for _ in ()).throw(ValueError("boom")))
