from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mcaclip.config import load_preset

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny():
    return load_preset("tiny-32")


@pytest.fixture
def tiny_editor(tiny):
    from mcaclip.nn.editor import MCAEditor

    torch.manual_seed(0)
    return MCAEditor.from_preset(tiny, random_weights=True)


@pytest.fixture
def tiny_w(tiny_editor):
    """Two W+ latents from the mapping network, [2, 8, 64]."""
    g = tiny_editor.generator
    with torch.no_grad():
        z = torch.randn(2, g.style_dim, generator=torch.Generator().manual_seed(1))
        return g.broadcast(g.mapping(z)).clone()


@pytest.fixture
def rosinality_ckpt() -> Path:
    return DATA / "rosinality_tiny.pt"


@pytest.fixture
def rosinality_expected() -> dict:
    return torch.load(DATA / "rosinality_tiny_expected.pt", weights_only=True)
