from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mcaclip.config import load_preset

DATA = Path(__file__).parent / "data"


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need a CUDA GPU, ``trt`` tests TensorRT too: skipped (with that reason)
    where they are missing, as on CI."""
    gpu = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (PyTorch sees none here)")
    skip_trt = pytest.mark.skip(reason="needs TensorRT and a CUDA GPU (not installed here)")
    for item in items:
        if "trt" in item.keywords and not (gpu and _has_tensorrt()):
            item.add_marker(skip_trt)
        elif "gpu" in item.keywords and not gpu:
            item.add_marker(skip_gpu)


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


BUNDLE_PROMPTS = ["blue goatee", "red hair"]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A tiny-32 bundle with random weights (a random photo encoder too), FP32 and FP16 graphs,
    2 cached prompts (built once)."""
    from mcaclip.export.builder import BatchProfile, build_bundle
    from mcaclip.nn.editor import MCAEditor

    torch.manual_seed(0)
    editor = MCAEditor.from_preset("tiny-32", random_weights=True, encoder="random")
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    build_bundle(
        editor,
        out,
        BUNDLE_PROMPTS,
        precision="fp16",
        backend="onnxruntime",
        profile=BatchProfile(1, 2, 4, max_prompts=4),
        random_weights=True,
    )
    return out


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle, for tests that damage it."""
    import shutil

    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run a CLI entry point in-process: cli(main, *args) -> (exit code, stdout, stderr)."""
    import sys

    def invoke(main, *args):
        monkeypatch.setattr(sys, "argv", ["prog", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def triton_interpret():
    """``run(script) -> stdout``: ``script`` in a fresh Python process under Triton's CPU
    interpreter (TRITON_INTERPRET must be set before Triton loads); skipped without Triton."""
    import os
    import subprocess
    import sys

    pytest.importorskip(
        "triton", reason="Triton is not installed (it comes with torch's CUDA wheels)"
    )

    def run(script: str) -> str:
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    return run
