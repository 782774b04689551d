import json

import pytest
import torch

from mcaclip.errors import CheckpointError
from mcaclip.nn.parsing import BiSeNet, small_bisenet


def test_layout_matches_79999_iter(data_dir):
    ref = json.loads((data_dir / "bisenet_keys.json").read_text())
    ours = {k: list(v.shape) for k, v in BiSeNet().state_dict().items()}
    assert ours == ref


def test_parse_labels_and_file_loading(tmp_path):
    net = small_bisenet().eval()
    labels = net.parse(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < 19
    path = tmp_path / "79999_iter.pth"
    torch.save({"cp.resnet.conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match="face-parser weights.*missing keys"):
        BiSeNet.from_file(path)
    torch.save(BiSeNet().state_dict(), path)
    loaded = BiSeNet.from_file(path)
    assert loaded.input_size == 512 and not loaded.training
