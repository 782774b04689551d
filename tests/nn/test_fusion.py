import pytest
import torch

from mcaclip.errors import ShapeError
from mcaclip.nn.fusion import CrossAttention, FeatureFusion, TextEmbeddingMapping


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 6, 32, generator=g), torch.randn(3, 16, generator=g)


def test_ff_shape_and_dtype(inputs):
    w, e = inputs
    t_w = FeatureFusion(6, 32, 16, heads=2)(w, e)
    assert t_w.shape == (3, 6, 32) and t_w.dtype == torch.float32


def test_ff_layers_are_chained(inputs):
    """Layer i depends on w_0..w_i (through the K/V chain), never on later w."""
    torch.manual_seed(0)
    ff = FeatureFusion(6, 32, 16, heads=2, tokens=4)
    w, e = inputs
    base = ff(w, e)
    w2 = w.clone()
    w2[:, 3] += 1.0
    changed = (ff(w2, e) - base).abs().amax(dim=(0, 2))
    assert torch.all(changed[:3] == 0)
    assert torch.all(changed[3:] > 0)
    e2 = e + 1.0
    assert torch.all((ff(w, e2) - base).abs().amax(dim=(0, 2)) > 0)


def test_single_token_attention_ignores_the_query():
    """The documented property of the paper's form: one key token gets weight 1 whatever Q."""
    torch.manual_seed(0)
    attn = CrossAttention(32, heads=4)
    kv = torch.randn(2, 1, 32)
    a, b = attn(torch.randn(2, 1, 32), kv), attn(torch.randn(2, 1, 32), kv)
    assert torch.allclose(a, b, atol=1e-6)
    kv4 = torch.randn(2, 4, 8)
    attn4 = CrossAttention(8, heads=2)
    assert not torch.allclose(attn4(torch.randn(2, 4, 8), kv4), attn4(torch.randn(2, 4, 8), kv4))


def test_single_key_attention_skips_query_and_key_exactly():
    """With one key the attention is that key's value projected: the same numbers, bit for
    bit, as the attention written out (scores, softmax, weighted values), in FP32 and FP16,
    for one query or several. Where gradients are wanted the attention runs as written, so
    that every parameter gets one (zero for the query's: DDP expects them all)."""
    torch.manual_seed(0)
    attn = CrossAttention(32, heads=4)
    calls = []
    attn.q.register_forward_hook(lambda *a: calls.append("q"))
    for t in (1, 3):
        q, kv = torch.randn(5, t, 32), torch.randn(5, 1, 32)
        calls.clear()
        with torch.no_grad():
            short = attn(q, kv)
        assert not calls  # no query projection
        assert short.shape == (5, t, 32) and torch.equal(short, attn.attend(q, kv))
        assert calls == ["q"]  # the written-out form does project the query
    with torch.inference_mode():
        half = CrossAttention(32, heads=4).half()
        q, kv = torch.randn(5, 1, 32).half(), torch.randn(5, 1, 32).half()
        assert torch.equal(half(q, kv), half.attend(q, kv))
    calls.clear()
    kv = torch.randn(2, 1, 32, requires_grad=True)
    attn(torch.randn(2, 1, 32), kv).sum().backward()
    assert calls == ["q"]  # training: as written
    assert attn.v.weight.grad.abs().sum() > 0 and attn.out.weight.grad.abs().sum() > 0
    assert attn.q.weight.grad is not None and attn.q.weight.grad.abs().sum() == 0
    attn.requires_grad_(False)  # frozen weights, a gradient for the input only: short
    calls.clear()
    attn(torch.randn(2, 1, 32), kv).sum().backward()
    assert not calls and kv.grad.abs().sum() > 0
    # several keys: the attention as written (the query matters)
    kv4 = torch.randn(2, 4, 8)
    attn4 = CrossAttention(8, heads=2)
    q4 = torch.randn(2, 4, 8)
    assert torch.equal(attn4(q4, kv4), attn4.attend(q4, kv4))


def test_tem_text_branch_does_not_see_w(inputs):
    torch.manual_seed(0)
    tem = TextEmbeddingMapping(6, 32, 16)
    w, e = inputs
    assert tem(w, e).shape == (3, 6, 32)
    text = torch.stack([mlp(e) for mlp in tem.text_mlps], dim=1)
    assert text.shape == (3, 6, 32)
    # t_w is one equalized-lr layer over [w ; T(e_t)]
    expected = tem.join(torch.cat([w, text], dim=-1))
    assert torch.allclose(tem(w, e), expected)


@pytest.mark.parametrize("cls", [FeatureFusion, TextEmbeddingMapping])
def test_bad_shapes(cls, inputs):
    module = cls(6, 32, 16)
    w, e = inputs
    with pytest.raises(ShapeError, match=r"W\+ latent must be \[B, 6, 32\]"):
        module(w[:, :5], e)
    with pytest.raises(ShapeError, match=r"text embedding must be \[B, 16\]"):
        module(w, e[:, :8])
    with pytest.raises(ShapeError, match="batch of e_t"):
        module(w, e[:2])


def test_tokens_must_divide_width():
    with pytest.raises(ShapeError):
        FeatureFusion(6, 32, 16, tokens=5)
