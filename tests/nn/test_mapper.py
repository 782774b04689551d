import pytest
import torch

from mcaclip.nn.mapper import LevelsMapper, level_groups


def test_level_groups_paper_bounds():
    assert level_groups(18, (4, 8)) == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 18)}
    assert level_groups(8, (4, 8)) == {"coarse": (0, 4), "medium": (4, 8)}


def test_shape_and_every_layer_edited():
    torch.manual_seed(0)
    m = LevelsMapper(18, 32)
    dw = m(torch.randn(2, 18, 32))
    assert dw.shape == (2, 18, 32)
    assert torch.all(dw.abs().amax(dim=(0, 2)) > 0)


@pytest.mark.parametrize("off", ["coarse", "medium", "fine"])
def test_disabled_group_gives_zero_delta(off):
    levels = tuple(n for n in ("coarse", "medium", "fine") if n != off)
    m = LevelsMapper(18, 32, levels=levels)
    dw = m(torch.randn(2, 18, 32))
    start, stop = level_groups(18, (4, 8))[off]
    assert torch.all(dw[:, start:stop] == 0)
    assert off not in m.mappers
    other = [i for i in range(18) if not start <= i < stop]
    assert torch.all(dw[:, other].abs().amax(dim=(0, 2)) > 0)


def test_groups_are_independent():
    torch.manual_seed(0)
    m = LevelsMapper(18, 32)
    t = torch.randn(1, 18, 32)
    t2 = t.clone()
    t2[:, 10] += 1  # a fine layer
    diff = (m(t2) - m(t)).abs().amax(dim=(0, 2))
    assert torch.all(diff[:8] == 0) and diff[10] > 0


def test_equalized_lr_parameters():
    m = LevelsMapper(18, 32, n_layers=4, lr_mul=0.01)
    mlp = m.mappers["coarse"]
    linears = [layer for layer in mlp if hasattr(layer, "lr_mul")]
    assert len(linears) == 4 and all(layer.lr_mul == 0.01 for layer in linears)
    # stored weights are N(0, 1/lr_mul^2): effective weights stay unit-variance / sqrt(fan_in)
    assert 50 < linears[0].weight.std() < 200
