"""Training on several processes with torchrun (DistributedDataParallel, gloo on the CPU) must match one process
that sees the same global batches: each rank takes its own rows of every global micro-batch and DDP averages the
gradients. Only rank 0 evaluates, logs and saves."""

from collections import defaultdict

import pandas as pd
import pytest
import torch
from conftest import PAIRS, pair_rows, run_module, write_jsonl

from gpt_mini import checkpoint as C
from gpt_mini import tokenizer as bpe

pytestmark = [pytest.mark.slow,  # torchrun starts 2 processes that each import torch: seconds per test
              pytest.mark.single_thread]  # a shared 2-core machine: torch on one thread


def equal_length_rows(tok, n=8):
    """n different plain-text rows of the same token count: then every shard holds the same number of tokens and
    two processes must reproduce one process up to float rounding."""
    by_length = defaultdict(list)
    for c in "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥":
        by_length[len(bpe.encode(tok, c * 4))].append({"text": c * 4})
    rows = max(by_length.values(), key=len)
    assert len(rows) >= n
    return rows[:n]


def _args(project, data, save_dir, steps=6, recipe=()):
    return [*recipe, "--config", project.config_path, "--set", f"data.train_path={data}",
            "--set", f"save.dir={save_dir}",
            "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.n_head=2",
            "--set", f"training.max_steps={steps}", "--set", "training.eval_interval=3",
            "--set", "training.batch_size=4", "--set", "training.micro_batch=4", "--set", "training.precision=fp32"]


MUON_PACKED = ("--set", "training.optimizer=muon", "--set", "training.pack=true")


@pytest.mark.parametrize("recipe", [(), MUON_PACKED], ids=["adamw", "muon-packed"])
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(project, tok, tmp_path, recipe):
    data = write_jsonl(tmp_path / "train.jsonl", equal_length_rows(tok))  # 8 rows: whole batches of 4
    one = run_module("gpt_mini.train", *_args(project, data, tmp_path / "one", recipe=recipe))
    assert one.returncode == 0, one.stderr
    two = run_module("torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gpt_mini.train",
                     *_args(project, data, tmp_path / "two", recipe=recipe), timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-1500:]
    assert two.stdout.count("finished: 6 steps") == 1  # rank 0 alone reports, logs and saves
    assert "processes 2" in two.stdout
    one_ckpt, two_ckpt = (C.read_checkpoint(tmp_path / d / "last.pt") for d in ("one", "two"))
    assert two_ckpt["metrics"]["tokens"] * 2 == one_ckpt["metrics"]["tokens"]  # rank 0 computed half of each batch
    a, b = one_ckpt["model"], two_ckpt["model"]
    assert a.keys() == b.keys()
    # AdamW: equal shards give the same update up to float rounding (gloo sums in another order). Muon maps every
    # singular direction of a gradient to full size, the rounding noise in the tiny ones too (and orthogonalises
    # in bf16): its weights drift apart by a few percent of one update, so there the losses are what must agree.
    if not recipe:
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    for column in ("train_loss", "eval_loss"):
        loss_a = pd.read_csv(tmp_path / "one" / "metrics.csv")[column]
        loss_b = pd.read_csv(tmp_path / "two" / "metrics.csv")[column]
        assert ((loss_a - loss_b).abs() / loss_a).max() < (1e-3 if recipe else 1e-4), column
    assert recipe != MUON_PACKED or set(torch.load(tmp_path / "two" / "resume.pt", weights_only=True)["optimizer"]) \
        == {"adamw", "muon"}  # rank 0 saved both optimizers' states


def test_torchrun_resume_continues_from_the_saved_step(project, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", pair_rows(PAIRS[:4] * 2))
    torchrun = ["torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gpt_mini.train"]
    first = run_module(*torchrun, *_args(project, data, tmp_path / "run", steps=3), timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_module(*torchrun, *_args(project, data, tmp_path / "run", steps=6), "--resume", timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert C.read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 6
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["step"].tolist() == [3, 6]
