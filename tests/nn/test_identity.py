import json

import pytest
import torch

from mcaclip.errors import CheckpointError
from mcaclip.nn.identity import IRSE, small_irse


def test_layout_matches_model_ir_se50(data_dir):
    ref = json.loads((data_dir / "irse50_keys.json").read_text())
    ours = {k: list(v.shape) for k, v in IRSE().state_dict().items()}
    assert ours == ref


def test_loads_a_state_dict_file_strictly(tmp_path):
    net = small_irse().eval()
    path = tmp_path / "model_ir_se50.pth"
    torch.save(IRSE().state_dict(), path)
    loaded = IRSE.from_file(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    state = IRSE().state_dict()
    del state["output_layer.3.weight"]
    torch.save(state, path)
    with pytest.raises(
        CheckpointError, match="ArcFace weights.*missing keys.*output_layer.3.weight"
    ):
        IRSE.from_file(path)
    out = net(torch.rand(2, 3, 112, 112) * 2 - 1)
    assert out.shape == (2, 64) and torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="112x112"):
        net(torch.zeros(1, 3, 64, 64))
