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


def test_frozen_linear_layers_give_the_same_numbers():
    """freeze_weights scales every equalized-lr layer's weight and bias once (two kernels fewer
    per layer and call): the mapper's output is the same, bit for bit, with and without the
    activation."""
    from mcaclip.nn.stylegan2 import EqualLinear, freeze_weights

    torch.manual_seed(0)
    mapper = LevelsMapper(6, 32, level_bounds=(2, 4)).eval()
    plain = EqualLinear(32, 16, bias_init=1.0, lr_mul=0.01)
    t_w = torch.randn(3, 6, 32)
    x = torch.randn(3, 32)
    with torch.no_grad():
        for p in mapper.parameters():
            p.add_(torch.randn_like(p))
        before, before_plain = mapper(t_w), plain(x)
        freeze_weights(mapper)
        freeze_weights(plain)
        layers = [m for m in mapper.modules() if isinstance(m, EqualLinear)]
        assert len(layers) == 12 and all(m.frozen for m in layers) and plain.frozen
        assert torch.equal(mapper(t_w), before) and torch.equal(plain(x), before_plain)
        calls = []
        mul = torch.Tensor.__mul__
        try:  # a frozen layer scales nothing on the call
            torch.Tensor.__mul__ = lambda a, b: calls.append(1) or mul(a, b)
            plain(x)
            frozen_muls = len(calls)
            plain.frozen = False
            calls.clear()
            plain(x)
        finally:
            torch.Tensor.__mul__ = mul
        assert len(calls) == frozen_muls + 2
