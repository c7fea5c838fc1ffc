"""The model, part by part, against independent references: torch.nn.RMSNorm, F.scaled_dot_product_attention,
RoPE as complex rotation, causality, the parameter formula and weight tying."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ROOT, sharpen

from gpt_mini import model as M
from gpt_mini.checkpoint import model_from_config
from gpt_mini.config import load_config, param_count_formula
from gpt_mini.model import GPT, CausalSelfAttention, RMSNorm, apply_rope, rope_tables

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

# ---- RMSNorm ------------------------------------------------------------------------------------------------

def test_rmsnorm_matches_torch_rmsnorm_with_same_weight():
    torch.manual_seed(0)
    dim = 48
    ours, ref = RMSNorm(dim), nn.RMSNorm(dim, eps=1e-5)
    w = torch.randn(dim)
    with torch.no_grad():
        ours.weight.copy_(w)
        ref.weight.copy_(w)
    x = torch.randn(3, 7, dim) * 3 + 0.5
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)
    tiny = torch.randn(4, dim) * 1e-3  # mean square ~1e-6, below eps: the eps must be the same too
    torch.testing.assert_close(ours(tiny), ref(tiny), rtol=1e-5, atol=1e-7)


# ---- attention ----------------------------------------------------------------------------------------------

def reference_attention(attn: CausalSelfAttention, x, cos, sin, causal=True, return_heads=False):
    """Same weights, computed by hand and with F.scaled_dot_product_attention."""
    B, T, C = x.shape
    H, hd = attn.n_head, C // attn.n_head
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    q, k, v = (t.reshape(B, T, H, hd).permute(0, 2, 1, 3) for t in (q, k, v))
    q, k = apply_rope(q, cos[:T], sin[:T]), apply_rope(k, cos[:T], sin[:T])
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    y = heads.permute(0, 2, 1, 3).reshape(B, T, C) @ attn.proj.weight.T + attn.proj.bias
    return (y, q, k, v, heads) if return_heads else y


def make_attention(seed=0, n_embd=32, n_head=4, seq_len=16):
    torch.manual_seed(seed)
    attn = CausalSelfAttention(n_embd, n_head, seq_len, dropout=0.0).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape) * 0.4)  # sharp attention, non-zero biases
    cos, sin = rope_tables(n_embd // n_head, seq_len)
    return attn, cos, sin


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_scaled_dot_product_attention(fused, causal):
    attn, cos, sin = make_attention()
    attn.fused, attn.causal = fused, causal
    x = torch.randn(2, 11, 32)
    torch.testing.assert_close(attn(x, cos[:11], sin[:11]), reference_attention(attn, x, cos, sin, causal),
                               rtol=1e-4, atol=1e-5)


def test_explicit_attention_weights_are_causal_softmax_rows():
    attn, cos, sin = make_attention(seed=1)
    attn.fused = False
    x = torch.randn(2, 9, 32)
    weights = []
    attn(x, cos[:9], sin[:9], weights_out=weights)
    assert len(weights) == 1
    att = weights[0]
    assert att.shape == (2, 4, 9, 9)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 9))
    future = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
    assert torch.all(att[..., future] == 0)
    _, _, _, v, heads = reference_attention(attn, x, cos, sin, return_heads=True)
    torch.testing.assert_close(att @ v, heads, rtol=1e-4, atol=1e-5)  # the weights really are the ones applied


def test_fused_attention_still_returns_weights_when_asked():
    attn, cos, sin = make_attention(seed=2)
    attn.fused = True
    weights = []
    attn(torch.randn(1, 5, 32), cos[:5], sin[:5], weights_out=weights)
    assert len(weights) == 1 and weights[0].shape == (1, 4, 5, 5)


@pytest.mark.parametrize("causal", [True, False])
def test_model_fused_equals_explicit(causal, monkeypatch):
    model = sharpen(GPT(60, n_layer=2, n_head=2, n_embd=32, seq_len=32, causal=causal)).eval()
    idx = torch.randint(0, 60, (2, 20), generator=torch.Generator().manual_seed(0))
    calls = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(M.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real_sdpa(*a, **k))
    for block in model.blocks:
        block.attn.fused = True
    fused, _ = model(idx)
    assert len(calls) == 2  # the fused path really ran, once per layer
    for block in model.blocks:
        block.attn.fused = False
    explicit, _ = model(idx)
    assert len(calls) == 2  # the explicit path does not call it
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-4)


# ---- RoPE ---------------------------------------------------------------------------------------------------

def rope_at(vec, pos, cos, sin):
    hd = vec.numel()
    return apply_rope(vec.view(1, 1, 1, hd), cos[pos:pos + 1], sin[pos:pos + 1]).view(hd)


def test_rope_keeps_vector_norms_and_rotates():
    torch.manual_seed(0)
    cos, sin = rope_tables(16, 20)
    x = torch.randn(2, 3, 20, 16)
    y = apply_rope(x, cos, sin)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])  # position 0: angle 0
    assert (y[:, :, 1:] - x[:, :, 1:]).abs().max() > 0.1  # later positions really are rotated


def test_rope_equals_complex_rotation_reference():
    torch.manual_seed(1)
    hd, T = 8, 12
    cos, sin = rope_tables(hd, T)
    x = torch.randn(1, 2, T, hd)
    freqs = torch.tensor([10000.0 ** (-2 * i / hd) for i in range(hd // 2)], dtype=torch.float64)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None, :]
    xc = torch.view_as_complex(x.double().reshape(1, 2, T, hd // 2, 2).contiguous())
    expected = torch.view_as_real(xc * torch.polar(torch.ones_like(angles), angles)).reshape(1, 2, T, hd)
    torch.testing.assert_close(apply_rope(x, cos, sin).double(), expected, rtol=1e-4, atol=1e-5)


def test_rope_dot_product_depends_only_on_offset():
    torch.manual_seed(2)
    hd = 16
    cos, sin = rope_tables(hd, 64)
    q, k = torch.randn(hd), torch.randn(hd)
    for m, n in [(3, 1), (10, 2), (0, 5), (7, 7)]:
        base = torch.dot(rope_at(q, m, cos, sin), rope_at(k, n, cos, sin))
        for s in (1, 4, 20):
            shifted = torch.dot(rope_at(q, m + s, cos, sin), rope_at(k, n + s, cos, sin))
            torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-4)
    # ... and it does depend on the offset (otherwise the test above would be empty)
    d1 = torch.dot(rope_at(q, 5, cos, sin), rope_at(k, 2, cos, sin))
    d2 = torch.dot(rope_at(q, 5, cos, sin), rope_at(k, 4, cos, sin))
    assert abs(float(d1 - d2)) > 1e-2


# ---- causality ----------------------------------------------------------------------------------------------

def _logits_before_and_after_change(model, at=10, T=16, V=60):
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(3))
    changed = idx.clone()
    changed[:, at] = (idx[:, at] + 7) % V
    with torch.no_grad():
        return model(idx)[0], model(changed)[0]


@pytest.mark.parametrize("fused", [True, False])
def test_changing_later_token_changes_no_earlier_logit(fused):
    model = sharpen(GPT(60, n_layer=2, n_head=2, n_embd=32, seq_len=32)).eval()
    for block in model.blocks:
        block.attn.fused = fused
    a, b = _logits_before_and_after_change(model, at=10)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=1e-5)
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-2  # the change itself is visible from its position on


@pytest.mark.parametrize("fused", [True, False])
def test_without_causal_mask_later_token_changes_earlier_logits(fused):
    model = sharpen(GPT(60, n_layer=2, n_head=2, n_embd=32, seq_len=32)).eval()
    model.set_causal(False)
    for block in model.blocks:
        block.attn.fused = fused
    a, b = _logits_before_and_after_change(model, at=10)
    assert (a[:, :10] - b[:, :10]).abs().max() > 1e-2


# ---- size, tying, loss --------------------------------------------------------------------------------------

def test_default_shape_parameter_count_is_3368192():
    cfg = load_config(ROOT / "config.yaml")
    m = cfg["model"]
    assert (m["n_layer"], m["n_head"], m["n_embd"], m["seq_len"]) == (4, 4, 256, 256)
    model = model_from_config(cfg, 824)
    assert model.num_params() == 3_368_192
    assert sum(p.numel() for p in model.parameters()) == 3_368_192
    assert param_count_formula(824, 256, 4) == 3_368_192


@pytest.mark.parametrize("V,d,L,H", [(300, 32, 1, 2), (517, 64, 3, 4)])
def test_parameter_count_equals_formula_for_other_shapes(V, d, L, H):
    model = GPT(V, n_layer=L, n_head=H, n_embd=d, seq_len=16)
    by_hand = V * d + L * (12 * d * d + 11 * d) + d
    assert model.num_params() == by_hand == param_count_formula(V, d, L)


def test_output_layer_is_the_tied_embedding():
    V, d = 60, 32
    model = sharpen(GPT(V, n_layer=2, n_head=2, n_embd=d, seq_len=32)).eval()
    hidden = []
    model.norm.register_forward_hook(lambda mod, inp, out: hidden.append(out))
    idx = torch.tensor([[1, 5, 9, 13, 17, 21]])
    logits, _ = model(idx)
    torch.testing.assert_close(logits, hidden[0] @ model.tok_emb.weight.T, rtol=1e-5, atol=1e-5)
    assert [n for n, p in model.named_parameters() if p.shape == (V, d)] == ["tok_emb.weight"]
    # A token that never appears in the input can only get an embedding gradient through the output layer.
    logits.logsumexp(-1).sum().backward()
    assert model.tok_emb.weight.grad[40].abs().sum() > 0


def test_loss_is_cross_entropy_over_non_ignored_targets():
    model = sharpen(GPT(60, n_layer=1, n_head=2, n_embd=32, seq_len=32)).eval()
    idx = torch.randint(0, 60, (2, 8), generator=torch.Generator().manual_seed(4))
    targets = torch.randint(0, 60, (2, 8), generator=torch.Generator().manual_seed(5))
    targets[0, :3] = -100
    targets[1, 6:] = -100
    with torch.no_grad():
        logits, loss = model(idx, targets)
    logp = torch.log_softmax(logits.double(), -1)
    picked = [-logp[b, t, targets[b, t]] for b in range(2) for t in range(8) if targets[b, t] != -100]
    assert math.isclose(float(loss), float(sum(picked) / len(picked)), rel_tol=1e-4)
