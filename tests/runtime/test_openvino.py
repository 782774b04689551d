"""The OpenVINO backend against ONNX Runtime on the same graphs (tiny random, toy trained)."""

import json
import math
import shutil
import sys

import numpy as np
import pytest

from mcaclip.errors import McaError
from mcaclip.runtime.backends import openvino
from mcaclip.runtime.backends.base import BackendError
from mcaclip.runtime.cli import main as mcarun
from mcaclip.runtime.pipeline import EditPipeline

pytest.importorskip("openvino", reason="needs OpenVINO (pip install 'mcaclip[openvino]')")
PROMPTS = ["blue goatee", "glasses"]  # one cached, one through the text encoder


def psnr(a, b) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


@pytest.fixture(scope="module")
def reference(tiny_bundle):
    with EditPipeline(tiny_bundle) as p:
        w = p.seeds_to_latents([0, 1, 2])
        return w, next(p.edit(w, PROMPTS, batch_size=3))


def test_fp32_matches_onnxruntime(tiny_bundle, reference):
    w, ref = reference
    with EditPipeline(tiny_bundle, backend="openvino", precision="fp32") as p:
        assert p.precision == "fp32" and p.device_editor is None
        assert np.abs(p.seeds_to_latents([0, 1, 2]) - w).max() <= 1e-5  # the mapping graph
        got = next(p.edit(w, PROMPTS, batch_size=3))
        assert got.images.shape == ref.images.shape == (3, 2, 3, 32, 32)
        assert np.abs(got.images - ref.images).max() <= 1e-4
        assert np.abs(got.originals - ref.originals).max() <= 1e-4
        assert len(got.masks) == 7
        assert max(np.abs(a - b).max() for a, b in zip(got.masks, ref.masks)) <= 1e-5
        # no masks: the same pictures; pixels: uint8 as ONNX Runtime's (within one level)
        bare = next(p.edit(w, PROMPTS, batch_size=3, masks=False, pixels=True))
        assert bare.masks == [] and bare.images.dtype == np.uint8
        # each call's outputs are its own (the request's buffers are reused)
        again = next(p.edit(w[:1], PROMPTS[:1], batch_size=1))
        assert np.abs(got.images[0, 0] - again.images[0, 0]).max() <= 1e-4
        assert np.abs(got.images - ref.images).max() <= 1e-4
        assert p.runner("masked_generator").settings["precision"] == "fp32"


def test_default_precision_is_bf16_where_the_cpu_has_it(tiny_bundle, reference):
    w, ref = reference
    with EditPipeline(tiny_bundle, backend="openvino") as p:
        expected = "bf16" if "bf16" in openvino.native_precisions() else "fp32"
        assert p.precision == expected
        got = next(p.edit(w, PROMPTS, batch_size=3))
    # random weights are harder than trained ones (52 dB on the toy editor: docs/benchmarks.md)
    assert psnr(got.images, ref.images) >= (35 if expected == "bf16" else 80)


def test_compiled_models_are_cached_per_openvino_version(bundle_copy):
    cache = bundle_copy / "ov_cache"
    shutil.rmtree(cache, ignore_errors=True)  # the copy may hold the other tests' blobs
    with EditPipeline(bundle_copy, backend="openvino", precision="fp32") as p:
        p.runner("mapper")
    record = json.loads((cache / "manifest.json").read_text())
    assert record == {"openvino": openvino.version(), "device": openvino.device_name()}
    blobs = sorted(cache.glob("*.blob"))
    assert blobs
    # another version's cache is cleared before use, then filled again
    (cache / "manifest.json").write_text(json.dumps({**record, "openvino": "2020.1"}))
    (cache / "stale.blob").write_bytes(b"old")
    with EditPipeline(bundle_copy, backend="openvino", precision="fp32") as p:
        p.runner("mapper")
    assert not (cache / "stale.blob").exists()
    assert json.loads((cache / "manifest.json").read_text()) == record
    assert sorted(cache.glob("*.blob")) == blobs


def test_threads_and_streams_reach_openvino(tiny_bundle):
    with EditPipeline(tiny_bundle, backend="openvino", threads=1, streams=1) as p:
        assert p.runner("mapper").settings == {
            "precision": p.precision,
            "threads": 1,
            "streams": 1,
        }
    with pytest.raises(BackendError, match="settings of openvino, not onnxruntime"):
        EditPipeline(tiny_bundle, threads=1)
    with pytest.raises(BackendError, match="streams=0: at least 1"):
        with EditPipeline(tiny_bundle, backend="openvino", streams=0) as p:
            p.runner("mapper")


def test_precision_errors(tiny_bundle, monkeypatch):
    with pytest.raises(BackendError, match="precision 'int8': the openvino backend runs"):
        EditPipeline(tiny_bundle, backend="openvino", precision="int8")
    monkeypatch.setattr(openvino, "native_precisions", lambda device="CPU": ["fp32"])
    with pytest.raises(BackendError, match="does not compute bf16 natively.*--precision fp32"):
        EditPipeline(tiny_bundle, backend="openvino", precision="bf16")
    with EditPipeline(tiny_bundle, backend="openvino") as p:  # the default falls back to fp32
        assert p.precision == "fp32"


def test_bad_feed_is_one_line_error(tiny_bundle):
    with EditPipeline(tiny_bundle, backend="openvino", precision="fp32") as p:
        runner = p.runner("mapper")
        with pytest.raises(BackendError, match="mapper: OpenVINO cannot run it"):
            runner.infer({"w": np.zeros((1, 3, 5), np.float32), "t_w": np.zeros((1, 3, 5))})
        with pytest.raises(BackendError, match="missing inputs"):
            runner.infer({"w": np.zeros((1, 8, 64), np.float32)})
        with pytest.raises(McaError, match="no output 'mask'"):
            runner.infer({"w": np.zeros((1, 8, 64)), "t_w": np.zeros((1, 8, 64))}, ["mask"])


def test_cli_edit_and_errors(tiny_bundle, cli, tmp_path, monkeypatch):
    args = ["edit", "--engine", tiny_bundle, "--seeds", "0-1", "--prompt", "red hair"]
    code, out, err = cli(mcarun, *args, "--backend", "openvino", "--out", tmp_path / "ov",
                         "--form", "threads=1")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "ov").glob("*.png")) == [
        "00000_original.png", "00000_red-hair.png", "00001_original.png", "00001_red-hair.png"
    ]  # fmt: skip
    code, _, err = cli(mcarun, *args, "--out", tmp_path / "o", "--form", "streams=2")
    assert code == 2 and "--form streams: forms of the openvino backend, not onnxruntime" in err
    code, _, err = cli(mcarun, *args, "--out", tmp_path / "o", "--precision", "bf16")
    assert code == 2 and "onnxruntime runs the bundle's FP32 graphs" in err
    # no OpenVINO installed: one line saying how to install it, no traceback, nothing written
    monkeypatch.setitem(sys.modules, "openvino", None)
    code, _, err = cli(mcarun, *args, "--backend", "openvino", "--out", tmp_path / "none")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: the openvino backend needs OpenVINO: pip install 'mcaclip[openvino]'"
    )
    assert not (tmp_path / "none").exists()


@pytest.fixture(scope="module")
def toy_generator(tmp_path_factory):
    """The shipped demo editor's masked generator as an ONNX graph (the trained toy world)."""
    from mcaclip.export.exporter import export_graph
    from mcaclip.export.specs import export_spec, graph_module
    from mcaclip.nn.editor import MCAEditor
    from mcaclip.toyfaces.demo import DEMO
    from mcaclip.toyfaces.world import asset

    editor = MCAEditor.load(asset(DEMO))
    path = tmp_path_factory.mktemp("toy") / "masked_generator.onnx"
    name = "masked_generator"
    export_graph(graph_module(editor, name), export_spec(editor, name), editor, path, "fp32",
                 max_batch=2, max_prompts=2)  # fmt: skip
    import torch

    bank = torch.load(asset("test_latents.pt"), weights_only=True).float().numpy()[:2]
    with torch.no_grad():
        e = editor.clip.embed_prompts(["blue goatee"]).float().numpy()
        w_edit, _ = editor.edit_latent(torch.from_numpy(bank), torch.from_numpy(e).repeat(2, 1))
    feed = {"w": bank, "w_edit": w_edit.numpy()[:, None], "e_t": np.repeat(e, 2, 0)[:, None]}
    return path, feed


def test_trained_toy_editor_keeps_40_db_at_the_default_precision(toy_generator):
    from mcaclip.runtime.backends.onnxruntime import OrtRunner
    from mcaclip.runtime.backends.openvino import OvRunner

    path, feed = toy_generator
    ref = OrtRunner("masked_generator", path).infer(feed)
    for precision in openvino.native_precisions():
        got = OvRunner("masked_generator", path, precision).infer(feed)
        assert set(got) == set(ref)
        if precision == "fp32":
            assert np.abs(got["image"] - ref["image"]).max() <= 1e-4
        else:  # bf16, the default: measured 52 dB on this editor (docs/benchmarks.md)
            assert psnr(got["image"], ref["image"]) >= 40, precision
