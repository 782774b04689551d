import json

import pytest

from mcaclip.config import GeneratorConfig, load_preset, preset_names
from mcaclip.errors import ConfigError


def test_shipped_presets():
    assert {"ffhq-1024", "toy-64", "tiny-32"} <= set(preset_names())


@pytest.mark.parametrize("name", ["ffhq-1024", "toy-64", "tiny-32"])
def test_every_preset_loads_and_round_trips(name, tmp_path):
    preset = load_preset(name)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset.to_dict()))
    assert load_preset(path) == preset


def test_ffhq_is_the_paper_setting():
    p = load_preset("ffhq-1024")
    g = p.generator
    assert (g.size, g.style_dim, g.n_mlp, g.channel_multiplier) == (1024, 512, 8, 2)
    assert g.n_latent == 18 and g.num_layers == 17
    # rosinality config-f widths
    assert [g.channels_at(2**i) for i in range(2, 11)] == [512] * 5 + [256, 128, 64, 32]
    assert p.clip.model == "ViT-B-32" and p.clip.embed_dim == 512


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*tiny-32"):
        load_preset("nope")


def test_malformed_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        load_preset(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_preset(tmp_path / "none.json")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"generator": {"size": 48}}, "power of two"),
        ({"generator": {"size": 2048}}, "power of two"),
        ({"generator": {"sise": 64}}, "unknown keys"),
        ({"generator": {"size": "64"}}, "expected int"),
        ({"generator": {"channels": [32, 32]}}, "needs 4"),
        ({"generator": {"channel_base": 16}}, "no channels left at 32 px"),
        ({"editor": {"fusion": "mlp"}}, "choose 'ff', 'tem' or 'none'"),
        ({"editor": {"levels": ["coarse", "ultra"]}}, "ultra"),
        ({"editor": {"fusion_tokens": 3}}, "fusion_tokens=3"),
        ({"editor": {"use_masks": 1}}, "expected bool"),
        ({"editor": {"mask_init": 1.0}}, "mask_init=1.0"),
        ({"editor": {"mask_init": -0.5}}, "mask_init=-0.5"),
        ({"extra": 1}, "unknown keys"),
    ],
)
def test_bad_configs_are_rejected(tmp_path, patch, message):
    data = load_preset("tiny-32").to_dict()
    for key, value in patch.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_preset(path)


def test_layer_layout():
    g = GeneratorConfig(size=64, channel_max=128, channel_base=8192, channel_multiplier=1)
    assert g.layer_resolutions() == [4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert g.layer_channels() == [128] * 9
    assert g.n_latent == 10
