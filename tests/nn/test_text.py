import pytest
import torch
from safetensors.torch import save_file

from mcaclip.config import ClipConfig, load_preset
from mcaclip.errors import CheckpointError, ConfigError, PromptError, WeightsMissingError
from mcaclip.nn.text import ClipTowers


@pytest.fixture(scope="module")
def clip_cfg():
    return load_preset("tiny-32").clip


@pytest.fixture(scope="module")
def towers(clip_cfg):
    torch.manual_seed(0)
    return ClipTowers.create(clip_cfg, random_weights=True)


def test_refuses_without_weights(clip_cfg):
    with pytest.raises(WeightsMissingError, match="--clip-weights"):
        ClipTowers.create(clip_cfg)


def test_embeddings(towers):
    e = towers.embed_prompts(["blue goatee", "red hair"])
    assert e.shape == (2, 64)
    assert torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(e[0], e[1])
    img = towers.encode_image(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert img.shape == (3, 64)
    big = towers.encode_image(torch.rand(1, 3, 64, 64) * 2 - 1)  # resized to 32
    assert big.shape == (1, 64)


def test_too_long_prompt_is_an_error_not_a_truncation(towers):
    limit = towers.context_length - 2
    ok = " ".join(["a"] * limit)
    assert towers.tokenize([ok]).shape == (1, towers.context_length)
    with pytest.raises(PromptError, match=f"{limit + 1} tokens, over the text encoder's limit"):
        towers.tokenize([ok + " a"])
    with pytest.raises(PromptError, match="empty prompt"):
        towers.tokenize(["  "])


@pytest.mark.parametrize("fmt", ["bin", "safetensors", "training", "openai-jit"])
def test_loads_local_weight_files(tmp_path, clip_cfg, towers, fmt):
    state = towers.model.state_dict()
    if fmt == "bin":
        path = tmp_path / "open_clip_pytorch_model.bin"
        torch.save(state, path)
    elif fmt == "safetensors":
        path = tmp_path / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    elif fmt == "training":
        path = tmp_path / "epoch_10.pt"
        torch.save({"epoch": 10, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        path = tmp_path / "ViT-tiny.pt"
        _torchscript_archive(state, path)
    loaded = ClipTowers.create(clip_cfg, weights=path)
    prompts = ["blue goatee"]
    assert torch.allclose(loaded.embed_prompts(prompts), towers.embed_prompts(prompts))


def _torchscript_archive(state, path):
    """A TorchScript archive holding ``state`` under the same names, like OpenAI's files."""
    root = torch.nn.Module()
    for key, value in state.items():
        module, *parents = root, *key.split(".")[:-1]
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, torch.nn.Module())
            module = getattr(module, name)
        module.register_buffer(key.split(".")[-1], value.clone())
    root.register_buffer("input_resolution", torch.tensor(32))
    torch.jit.script(root).save(str(path))


def test_bad_weight_files(tmp_path, clip_cfg):
    with pytest.raises(WeightsMissingError, match="file not found"):
        ClipTowers.create(clip_cfg, weights=tmp_path / "none.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointError, match="missing keys"):
        ClipTowers.create(clip_cfg, weights=wrong)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        ClipTowers.create(clip_cfg, weights=corrupt)


def test_unknown_model_and_dim_mismatch():
    with pytest.raises(ConfigError, match="unknown CLIP model"):
        ClipTowers.create(ClipConfig(model="ViT-Q-99"), random_weights=True)
    with pytest.raises(ConfigError, match="embed_dim 512 differs"):
        ClipTowers.create(ClipConfig(model="ViT-B-32", embed_dim=64), random_weights=True)
