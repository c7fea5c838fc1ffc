"""Torch threads in the dashboard's single process.

A Python thread that runs torch work on more than one thread keeps an OpenMP team for as long as it lives, and
an idle team anywhere in the process slows a training run on 2 cores by about 15% (training in threads one
after another, tokens/s: 7,254 and 6,886 alone, 6,198 while another thread's team was alive, 7,415 after that
thread ended). So the long-lived threads (main, Gradio's workers, the chat worker) use one torch thread, and
all cores are used only by short-lived threads: a training run and the speed measurement."""

import os
import threading

import torch


def one_thread_by_default():
    """This thread and every thread started later use one torch thread. Call at startup."""
    torch.set_num_threads(1)


def reset_default_for_new_threads():
    """torch.set_num_threads also sets the count that threads not yet started will take, and a training run sets
    it to all cores. Set it back to 1 from a throwaway thread, so the caller keeps its own count."""
    helper = threading.Thread(target=torch.set_num_threads, args=(1,), name="torch-threads-reset")
    helper.start()
    helper.join()


def with_all_cores(fn, *args):
    """fn(*args) in a fresh thread that uses every core and then ends, so its OpenMP team ends with it."""
    out: dict = {}

    def target():
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = e

    worker = threading.Thread(target=target, name="torch-all-cores")
    worker.start()
    worker.join()
    reset_default_for_new_threads()
    if "error" in out:
        raise out["error"]
    return out["value"]
