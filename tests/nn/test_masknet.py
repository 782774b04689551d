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


def test_wrong_number_of_features():
    with pytest.raises(ShapeError, match="expects 3 feature maps"):
        MaskNet([16, 16, 8])(_features()[:2])
