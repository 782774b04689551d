"""The toy world as the trainer and the runtime use it: loaders, mcatrain --world toy, the demo
editor and the embedded default bundle (all on a micro build, tiny-32)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mcaclip.errors import McaError, WeightsMissingError
from mcaclip.toyfaces import world


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory):
    from mcaclip.toyfaces.build import MICRO, build

    root = tmp_path_factory.mktemp("toyworld")
    build(root, MICRO, seed=0)
    return root


@pytest.fixture
def toy_env(micro_world, monkeypatch, tmp_path):
    root = tmp_path / "assets"
    shutil.copytree(micro_world, root)
    monkeypatch.setenv("MCACLIP_TOYFACES_ASSETS", str(root))
    monkeypatch.setenv("MCACLIP_CACHE", str(tmp_path / "cache"))
    return root


def test_loaders_and_vocabulary(toy_env):
    assert world.preset() == "tiny-32"
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert world.load_identity()(images).shape[0] == 2
    assert world.load_parser()(images).shape == (2, 7, 32, 32)
    assert world.load_probe().predict(images).shape == (2, 12)
    assert all(p.endswith((".safetensors", ".pt")) for p in world.sources().values())
    vocab = world.vocabulary()
    assert len(vocab) == len(set(vocab)) == 48 and "blue goatee" in vocab
    (toy_env / "train_latents.pt").unlink()
    with pytest.raises(WeightsMissingError, match="python -m mcaclip.toyfaces build"):
        world.sources()


def test_mcatrain_world_toy_uses_the_toy_networks(toy_env, tmp_path):
    from mcaclip.toyfaces.nets import ToyIdentity, ToyParser
    from mcaclip.training.trainer import TrainConfig, Trainer

    config = TrainConfig(
        prompts=["red hair", "blue goatee"], out=str(tmp_path / "run"), world="toy", steps=2,
        batch_size=2, val_every=2, ckpt_every=2, val_size=2,
    )  # fmt: skip
    trainer = Trainer(config)
    assert trainer.preset.name == "tiny-32"
    assert isinstance(trainer.losses["id"].net, ToyIdentity)
    assert isinstance(trainer.losses["bg"].parser, ToyParser)
    trainer.fit()
    assert (tmp_path / "run" / "editor.safetensors").is_file()
    with pytest.raises(McaError, match="drop --random-weights"):
        Trainer(TrainConfig(prompts=["red hair"], out=str(tmp_path / "r2"), world="toy",
                            random_weights=True))  # fmt: skip
    with pytest.raises(McaError, match="drop --preset"):
        Trainer(TrainConfig(prompts=["red hair"], out=str(tmp_path / "r3"), world="toy",
                            preset="toy-64"))  # fmt: skip


def test_demo_editor_and_embedded_default(toy_env, tmp_path, cli):
    from mcaclip.runtime.cli import main as mcarun
    from mcaclip.toyfaces.demo import DEMO_RECIPE, demo_bundle, train_demo

    editor = train_demo(steps=2, batch_size=2)
    assert editor == toy_env / "demo" / "editor.safetensors"
    config = json.loads(editor.with_suffix(".json").read_text())["config"]["preset"]["editor"]
    assert config["mask_init"] == DEMO_RECIPE["mask_init"]  # the demo's recipe, not the defaults
    bundle = demo_bundle()
    assert demo_bundle() == bundle  # cached: built once
    out = tmp_path / "edits"
    code, stdout, err = cli(
        mcarun, "edit", "--seeds", "0-1", "--prompt", "blue goatee", "--grid", "--out", out
    )
    assert code == 0, err
    assert "toy-world demo bundle" in err and (out / "grid.png").is_file()
    assert "RANDOM" not in err  # trained networks, not random stand-ins
