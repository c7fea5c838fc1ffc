"""Muon next to AdamW (which weights each one updates, checkpoints and --resume keep both states), and packed
batches (attention stays inside each sample, positions restart, the per-sample loss is the one of the sample alone,
and almost every token of a step is real)."""

import random

import pytest
import torch
import torch.nn.functional as F
from conftest import PAIRS, VAL_PAIRS, sharpen

from gpt_mini import checkpoint as C
from gpt_mini import data as D
from gpt_mini import optim as O
from gpt_mini import tokenizer as bpe
from gpt_mini.model import GPT
from gpt_mini.optim import make_optimizer
from gpt_mini.train import Trainer

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

SMALL = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2"]
MUON = ["training.optimizer=muon", "training.pack=true"]


def _samples(tok, pairs, seq_len=64):
    return [D.encode_row(tok, {"prompt": p, "completion": c}, seq_len) for p, c in pairs]


def _per_token_loss(logits, y):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100,
                           reduction="none").view(y.shape)


# ---- packing ----------------------------------------------------------------------------------------------

def test_packed_rows_give_each_sample_the_loss_and_logits_it_has_alone(tok):
    torch.manual_seed(0)
    model = sharpen(GPT(tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, seq_len=64)).eval()
    samples = _samples(tok, PAIRS + VAL_PAIRS)
    x, y, docs, left = D.pack(samples, 64)
    assert not left and x.shape[0] < len(samples)  # several samples share a row
    with torch.no_grad():
        packed_logits, packed_loss = model(x, y, docs=docs)
        per_token = _per_token_loss(packed_logits, y)
        alone_losses, weights = [], []
        for r in range(x.shape[0]):
            for d in range(int(docs[r].max()) + 1):
                cols = (docs[r] == d).nonzero().flatten()
                xs, ys = x[r, cols][None], y[r, cols][None]
                alone_logits, alone_loss = model(xs, ys)
                torch.testing.assert_close(packed_logits[r, cols], alone_logits[0], rtol=1e-5, atol=1e-5)
                keep = ys[0] != -100
                torch.testing.assert_close(per_token[r, cols][keep].mean(), alone_loss, rtol=1e-5, atol=1e-6)
                alone_losses.append(alone_loss * keep.sum())
                weights.append(keep.sum())
    # the step's loss is the mean over every answer token of the batch, packed or not
    torch.testing.assert_close(packed_loss, sum(alone_losses) / sum(weights), rtol=1e-5, atol=1e-6)


def test_packed_attention_is_block_diagonal_and_positions_restart(tok):
    torch.manual_seed(0)
    model = sharpen(GPT(tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=32, seq_len=64)).eval()
    x, y, docs, _ = D.pack(_samples(tok, PAIRS[:3]), 64)
    weights = []
    with torch.no_grad():
        model(x, docs=docs, weights_out=weights)
    att = weights[0][0, 0]  # row 0, head 0: (T, T)
    same = docs[0][:, None] == docs[0][None, :]
    assert (att[~same & (docs[0][:, None] >= 0)] == 0).all()  # no weight on another sample's tokens
    assert (att.triu(1) == 0).all()  # nor on later tokens
    # a sample's first token attends only to itself, wherever it sits in the row
    starts = [c for c in range(1, x.shape[1]) if docs[0, c] != docs[0, c - 1] and docs[0, c] >= 0]
    assert starts, "the row holds more than one sample"
    for c in starts:
        assert att[c, c] == pytest.approx(1.0)


def test_pack_fills_rows_and_keeps_every_sample_once(tok):
    rng = random.Random(0)
    samples = [D.encode_row(tok, {"text": "字" * rng.randint(20, 70)}, seq_len=256) for _ in range(300)]
    x, y, docs, left = D.pack(samples, 256)
    lengths = sorted(int((docs[r] == d).sum()) for r in range(x.shape[0]) for d in range(int(docs[r].max()) + 1))
    assert lengths == sorted(len(s[0]) for s in samples) and not left
    assert x.shape[1] <= 256


def test_packed_batches_are_95_percent_real_tokens_and_visit_every_sample(tok):
    rng = random.Random(1)
    samples = [D.encode_row(tok, {"text": "字" * rng.randint(15, 90)}, seq_len=256) for _ in range(640)]
    for i, (x, _) in enumerate(samples):
        x[1] = 4 + i  # a tag in each sample's second token, to count visits (ids are not decoded here)
    batches = D.Batches(samples, batch_size=64, seed=0, pack_to=256)
    real = total = 0
    seen = []
    for _ in range(30):  # three epochs of 10 batches
        x, y, docs = batches.next()
        real, total = real + int((x != bpe.PAD_ID).sum()), total + x.numel()
        begins = (docs >= 0) & torch.cat((torch.ones_like(docs[:, :1], dtype=torch.bool),
                                          docs[:, 1:] != docs[:, :-1]), 1)
        seen += [int(x[r, c + 1]) - 4 for r, c in begins.nonzero().tolist()]
    assert real / total >= 0.95
    counts = [seen.count(i) for i in range(len(samples))]
    assert max(counts) - min(counts) <= 1 and min(counts) >= 2  # each sample once per epoch (a few carried over)


# ---- Muon -------------------------------------------------------------------------------------------------

def test_muon_updates_the_block_matrices_and_adamw_the_rest(tok):
    model = GPT(tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, seq_len=64)
    training = {"optimizer": "muon", "lr": 3e-3, "muon_lr": 0.02, "weight_decay": 0.01}
    opt = make_optimizer(model, training)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.parts["muon"].param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in opt.parts["adamw"].param_groups for p in g["params"]}
    assert muon == {n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("blocks.")}
    assert len(muon) == 4 * 2 and "tok_emb.weight" in adamw and not muon & adamw
    assert muon | adamw == set(names.values())
    only_adamw = make_optimizer(model, dict(training, optimizer="adamw"))
    assert set(only_adamw.parts) == {"adamw"}


def test_muon_step_is_an_orthogonalised_momentum_update(tok):
    """With lr 1 and no decay, a Muon step on a fresh matrix moves it by an orthogonalised gradient: the singular
    values of the update sit near 1 (five Newton-Schulz steps leave them roughly in 0.3..1.5), while the nearly
    rank-one gradient's spread over more than 50x."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(32, 16))
    w.grad = torch.randn(32, 1) @ torch.randn(1, 16) + 0.01 * torch.randn(32, 16)  # nearly rank one
    before = w.detach().clone()
    torch.optim.Muon([w], lr=1.0, weight_decay=0.0, adjust_lr_fn=None).step()
    update = (before - w.detach()) / max(1.0, 32 / 16) ** 0.5  # "original" scaling sqrt(max(1, A/B))
    s = torch.linalg.svdvals(update)
    g = torch.linalg.svdvals(w.grad)
    assert g.max() / g.min() > 50
    assert s.min() > 0.25 and s.max() < 1.6 and s.max() / s.min() < 5


@pytest.mark.parametrize("overrides", [MUON, ["training.optimizer=adamw", "training.pack=true"]])
def test_training_learns_and_resume_keeps_every_optimizer_state(project, tmp_path, overrides):
    cfg = project.cfg(*SMALL, *overrides, "training.max_steps=6", "training.eval_interval=3")
    first = Trainer(cfg, save_dir=tmp_path, probe_questions=())
    assert first.run() == "finished"
    losses = [loss for _, loss in first.losses]
    assert losses[-1] < losses[0]
    state = first.optimizer.state_dict()
    second = Trainer(project.cfg(*SMALL, *overrides, "training.max_steps=9", "training.eval_interval=3"),
                     save_dir=tmp_path, probe_questions=(), resume=True)
    assert set(second.optimizer.state_dict()) == set(state) == set(first.optimizer.parts)
    for name, opt in second.optimizer.parts.items():
        saved = state[name]["state"]
        assert saved and opt.state_dict()["state"].keys() == saved.keys(), name
        for key, value in saved.items():
            for field, tensor in value.items():
                if torch.is_tensor(tensor):
                    assert torch.equal(opt.state_dict()["state"][key][field], tensor), (name, field)
    assert second.run() == "finished" and second.step == 9
    ckpt = C.read_checkpoint(tmp_path / "last.pt")
    assert ckpt["config"]["training"]["optimizer"] == cfg["training"]["optimizer"]


def test_resume_with_the_other_optimizer_is_a_clear_error(project, tmp_path):
    Trainer(project.cfg(*SMALL, "training.max_steps=3", "training.eval_interval=3"), save_dir=tmp_path,
            probe_questions=()).run()
    with pytest.raises(ValueError, match="muon"):
        Trainer(project.cfg(*SMALL, *MUON, "training.max_steps=6"), save_dir=tmp_path, probe_questions=(),
                resume=True)


def test_unknown_optimizer_is_a_config_error(project):
    from gpt_mini.errors import UserError

    with pytest.raises(UserError, match="adamw/muon"):
        project.cfg("training.optimizer=sgd")


@pytest.mark.parametrize("shape", [(48, 16), (16, 48)])
def test_orthogonalize_in_bf16_is_torchs_newton_schulz_and_fp32_is_the_same_closer(shape):
    """A bf16 run orthogonalises exactly as torch.optim.Muon does; an fp32 run (a CPU without bf16 units) runs the
    same iterations in fp32: within bf16's rounding of torch's result, singular values in the same band."""
    torch.manual_seed(0)
    g = torch.randn(*shape)
    with O.orthogonalizing_in(torch.bfloat16):
        assert torch.equal(O.orthogonalize(g, (3.4445, -4.7750, 2.0315), 5, 1e-7),
                           O.TORCH_ORTHOGONALIZE(g, (3.4445, -4.7750, 2.0315), 5, 1e-7))
    with O.orthogonalizing_in(torch.float32):
        fp32 = O.orthogonalize(g, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    reference = O.TORCH_ORTHOGONALIZE(g, (3.4445, -4.7750, 2.0315), 5, 1e-7).float()
    assert fp32.dtype == torch.float32 and fp32.shape == g.shape
    assert (fp32 - reference).abs().max() < 0.05 and not torch.equal(fp32, reference)
    s = torch.linalg.svdvals(fp32)
    assert s.min() > 0.3 and s.max() < 1.6


def test_an_fp32_run_takes_muon_steps_orthogonalised_in_fp32(tok):
    """make_optimizer(..., "fp32"): one Muon step on a block matrix is p*(1 - lr*wd) - lr*sqrt(max(1, A/B)) * the
    fp32 Newton-Schulz of the Nesterov momentum update (recomputed here step by step), not its bf16 version."""
    torch.manual_seed(0)
    model = GPT(tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=32, seq_len=64)
    training = {"optimizer": "muon", "lr": 3e-3, "muon_lr": 0.02, "weight_decay": 0.01}
    opt = make_optimizer(model, training, "fp32")
    w = model.blocks[0].mlp.fc.weight  # 128 x 32: tall, orthogonalised as its transpose
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before, grad = w.detach().clone(), w.grad.clone()
    opt.step()
    update = grad.lerp((1 - 0.95) * grad, 0.95)  # first step: momentum buffer (1 - m)*g, Nesterov g.lerp(buf, m)
    a, b, c = 3.4445, -4.7750, 2.0315
    x = update.T if update.size(0) > update.size(1) else update
    x = x / x.norm()
    for _ in range(5):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    x = x.T if update.size(0) > update.size(1) else x
    lr = 0.02 * max(1, w.size(0) / w.size(1)) ** 0.5
    torch.testing.assert_close(w.detach(), before * (1 - 0.02 * 0.01) - lr * x, rtol=0, atol=2e-6)
