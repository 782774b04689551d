import pytest
import torch

from mcaclip.errors import ShapeError
from mcaclip.nn.masknet import MaskNet


def _features():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, r, r, generator=g) for c, r in [(16, 4), (16, 8), (8, 16)]]


def test_masks_per_layer_in_unit_interval():
    net = MaskNet([16, 16, 8], hidden=32)
    masks = net(_features())
    assert [tuple(m.shape) for m in masks] == [(2, 1, 4, 4), (2, 1, 8, 8), (2, 1, 16, 16)]
    assert all(((m > 0) & (m < 1)).all() for m in masks)


def test_head_is_two_1x1_convs():
    net = MaskNet([16, 16, 8], hidden=32)
    head = net.heads[2]
    assert head.conv1.weight.shape == (32, 8, 1, 1) and head.conv2.weight.shape == (1, 32, 1, 1)
    assert head.cond is None and not net.conditioned


def test_text_condition_changes_masks_and_is_required():
    torch.manual_seed(0)
    net = MaskNet([16, 16, 8], hidden=32, cond_dim=10)
    feats = _features()
    a = net(feats, torch.randn(2, 10))
    b = net(feats, torch.randn(2, 10))
    assert not torch.allclose(a[0], b[0])
    with pytest.raises(ShapeError, match="text-conditioned"):
        net(feats)


def test_masks_can_start_open_everywhere_and_still_learn():
    torch.manual_seed(0)
    net = MaskNet([16, 16, 8], hidden=32, cond_dim=10, init=0.95)
    masks = net(_features(), torch.randn(2, 10))
    for m in masks:  # near 0.95 at every pixel of every layer, not exactly flat
        assert (m - 0.95).abs().max() < 0.02 and m.std() > 0
    masks[0].sum().backward()
    assert net.heads[0].conv1.weight.grad.abs().sum() > 0  # small output weights, not zero
    default = MaskNet([16, 16, 8], hidden=32)(_features())
    assert (default[0] - 0.95).abs().max() > 0.2  # the default init is PyTorch's (~0.5)


def test_wrong_number_of_features():
    with pytest.raises(ShapeError, match="expects 3 feature maps"):
        MaskNet([16, 16, 8])(_features()[:2])


TRITON_CHECK = """
import torch
from mcaclip.nn.masknet import MaskHead, triton_masks
from mcaclip.nn import triton_kernels

torch.manual_seed(0)
worst = 0.0
# channels (one K block, a ragged one, several), hidden widths (32, 16, and 8 and 24 that the
# kernel rounds up and masks), text condition with 1 or 3 prompts per latent, pixels not a
# multiple of the 128-pixel block
cases = [(32, 32, None, 2, 5, 6, 1), (48, 32, None, 1, 7, 8, 1), (512, 32, 8, 3, 4, 5, 1),
         (64, 16, None, 2, 16, 9, 1), (16, 8, 8, 2, 4, 4, 3), (40, 24, 8, 1, 12, 12, 2)]
for c, hidden, cond_dim, b, h, w, prompts in cases:
    head = MaskHead(c, hidden, cond_dim)
    for p in head.parameters():
        p.data.normal_(0, 0.3)
    f = torch.randn(b, c, h, w).half().contiguous(memory_format=torch.channels_last)
    cond = torch.randn(b * prompts, cond_dim).half() if cond_dim else None
    f_rep = f.repeat_interleave(prompts, 0)  # what the PyTorch head reads per prompt
    ref = head(f_rep.float(), None if cond is None else cond.float())  # float32, PyTorch
    head = head.half()
    plain = head(f_rep, cond)  # FP16, PyTorch
    triton_masks(head)
    assert triton_kernels.usable(f)
    got = head(f, cond, prompts)
    assert got.shape == (b * prompts, 1, h, w) and got.dtype == torch.float16
    worst = max(worst, (got.float() - ref).abs().max().item())
    assert (got.float() - plain.float()).abs().max().item() < 2e-3
    # where the kernel cannot run, the head keeps its PyTorch form (repeating per prompt)
    nchw = f.contiguous()
    assert not triton_kernels.usable(nchw) and not triton_kernels.usable(f.float())
    assert (head(nchw, cond, prompts).float() - plain.float()).abs().max().item() < 1e-3
    # nor where gradients are wanted
    head.requires_grad_(True)
    with torch.enable_grad():
        assert head(f, cond, prompts).requires_grad
print("worst", worst)
assert worst < 1e-3
"""


def test_triton_mask_head_matches_pytorch(triton_interpret):
    """The fused Triton mask head (--triton-masks) against the PyTorch head, run in Triton's
    CPU interpreter in a fresh process."""
    assert "worst" in triton_interpret(TRITON_CHECK)
