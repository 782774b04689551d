import json

import pytest
import torch

from mcaclip.config import EncoderConfig, load_preset
from mcaclip.errors import CheckpointError, ShapeError
from mcaclip.nn.encoder import Encoder4Editing, load_encoder


def _tiny(seed: int = 0) -> Encoder4Editing:
    torch.manual_seed(seed)
    return Encoder4Editing(load_preset("tiny-32").encoder, n_latent=8, style_dim=64).eval()


def test_layout_matches_e4e_ffhq_encode(data_dir):
    """tests/data/e4e_ffhq_encode_keys.json: the IR-SE50 backbone's keys from the real
    model_ir_se50.pth layout and e4e's pyramid and style blocks, prefixed as in the file."""
    ref = json.loads((data_dir / "e4e_ffhq_encode_keys.json").read_text())
    with torch.device("meta"):  # 267 M parameters: shapes only
        net = Encoder4Editing(load_preset("ffhq-1024").encoder, n_latent=18, style_dim=512)
    ours = {f"encoder.{k}": list(v.shape) for k, v in net.state_dict().items()}
    assert ours.pop("encoder.latent_avg") == ref["latent_avg"]
    assert ours == ref["state_dict"]


def _e4e_file(net: Encoder4Editing, path, latent_avg: torch.Tensor | None, **extra) -> None:
    state = {f"encoder.{k}": v for k, v in net.state_dict().items() if k != "latent_avg"}
    state["decoder.style.1.weight"] = torch.zeros(2, 2)  # the generator rides along in e4e
    ckpt = {"state_dict": state, "opts": {"encoder_type": "Encoder4Editing", "lr": 1e-4}}
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    torch.save({**ckpt, **extra}, path)


def test_reads_an_e4e_checkpoint_strictly_and_adds_latent_avg(tmp_path):
    net = _tiny()
    config = net.config
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    path = tmp_path / "e4e.pt"
    avg = torch.randn(64)
    _e4e_file(net, path, avg)
    loaded = load_encoder(path, config, 8, 64)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        w = loaded(x)
        assert w.shape == (2, 8, 64)
        assert torch.allclose(w - avg, net(x), atol=1e-5)  # net's own latent_avg is zero
    _e4e_file(net, path, avg.expand(8, 64).clone())  # the [L, D] form e4e saves
    assert torch.allclose(load_encoder(path, config, 8, 64).latent_avg[3], avg)
    _e4e_file(net, path, None)
    with pytest.raises(CheckpointError, match="has no latent_avg"):
        load_encoder(path, config, 8, 64)
    state = {f"encoder.{k}": v for k, v in net.state_dict().items() if k != "latent_avg"}
    del state["encoder.latlayer2.bias"]
    torch.save({"state_dict": state, "latent_avg": avg}, path)
    with pytest.raises(CheckpointError, match="missing keys.*latlayer2.bias"):
        load_encoder(path, config, 8, 64)
    torch.save({"g_ema": {}}, path)
    with pytest.raises(CheckpointError, match="not an e4e checkpoint"):
        load_encoder(path, config, 8, 64)
    torch.save({"state_dict": state, "latent_avg": avg, "opts": torch.nn.Linear(1, 1)}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_encoder(path, config, 8, 64)
    with pytest.raises(CheckpointError, match="file not found"):
        load_encoder(tmp_path / "none.pt", config, 8, 64)


def test_own_file_round_trips_and_checks_the_architecture(tmp_path):
    net = _tiny()
    net.latent_avg.normal_()
    path = tmp_path / "encoder.safetensors"
    net.save(path)
    loaded = load_encoder(path, net.config, 8, 64)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    other = EncoderConfig(input_size=32, units=(1, 1, 1, 1), widths=(8, 16, 16, 16))
    with pytest.raises(CheckpointError, match="the preset names"):
        load_encoder(path, other, 8, 64)
    with pytest.raises(CheckpointError, match=r"W\+ \[8, 64\], the generator needs \[10, 128\]"):
        load_encoder(path, net.config, 10, 128)


def test_every_layer_reads_its_own_level_and_shapes_are_checked():
    net = _tiny()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        base = net(x)
        net.styles[5].linear.bias.add_(1.0)  # a middle layer's offset: only layer 5 moves
        moved = (net(x) - base).abs().amax(-1)[0]
    assert moved[5] > 0.5 and moved[torch.arange(8) != 5].max() < 1e-6
    with pytest.raises(ShapeError, match=r"faces \[B, 3, 32, 32\]"):
        net(torch.zeros(1, 3, 64, 64))


def test_encoder_configs_are_checked():
    with pytest.raises(Exception, match="power of two"):
        EncoderConfig(input_size=100)
    with pytest.raises(Exception, match="4 stages"):
        EncoderConfig(units=(1, 1, 1))
    assert EncoderConfig().style_spatial == (16, 32, 64)  # e4e at 256 px


def test_editor_carries_the_encoder_through_save_load_and_attach(tmp_path):
    import dataclasses

    from mcaclip.errors import ConfigError
    from mcaclip.nn.editor import MCAEditor

    torch.manual_seed(0)
    editor = MCAEditor.from_preset("tiny-32", random_weights=True, encoder="random")
    assert editor.encoder is not None and not editor.encoder.training
    assert not any(p.requires_grad for p in editor.encoder.parameters())
    assert all(p.requires_grad for p in editor.trainable_parameters())  # the encoder stays out
    editor.encoder.save(tmp_path / "encoder.safetensors")
    editor.save(tmp_path / "editor.safetensors", encoder="encoder.safetensors")
    loaded = MCAEditor.load(tmp_path / "editor.safetensors", random_weights=True)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.encoder(x), editor.encoder(x))
    (tmp_path / "encoder.safetensors").unlink()
    with pytest.raises(Exception, match="its encoder file .* is missing"):
        MCAEditor.load(tmp_path / "editor.safetensors", random_weights=True)
    # a checkpoint from before encoders: attach takes the shipped preset's architecture
    old = MCAEditor.from_preset("tiny-32", random_weights=True)
    old.preset = dataclasses.replace(old.preset, encoder=None)
    old.attach_encoder("random")
    assert old.preset.encoder == load_preset("tiny-32").encoder and old.encoder is not None
    custom = dataclasses.replace(load_preset("tiny-32"), name="custom", encoder=None)
    with pytest.raises(ConfigError, match="names no encoder"):
        MCAEditor.from_preset(custom, random_weights=True, encoder="random")
