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


def test_a_fused_form_replaces_the_head_or_falls_back():
    """``MaskHead.fused`` (a runtime's kernel) gets the head's arguments and gives the mask;
    where it returns None the PyTorch form runs."""
    torch.manual_seed(0)
    head = MaskNet([8], hidden=16, cond_dim=10).heads[0]
    f, cond = torch.randn(2, 8, 4, 4), torch.randn(6, 10)
    plain = head(f.repeat_interleave(3, 0), cond)
    calls = []
    head.fused = lambda h, *args: calls.append((h, *args)) or torch.zeros(6, 1, 4, 4)
    assert torch.equal(head(f, cond, 3), torch.zeros(6, 1, 4, 4))
    assert calls[0][0] is head and calls[0][1] is f and calls[0][2] is cond and calls[0][3] == 3
    head.fused = lambda *args: None  # cannot take this call: the PyTorch form
    assert torch.equal(head(f, cond, 3), plain)
    with pytest.raises(ShapeError, match="text-conditioned"):  # checked before the fused form
        head(f)
