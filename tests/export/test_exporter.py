import math

import numpy as np
import onnx
import pytest
import torch

from mcaclip.bundle import Bundle
from mcaclip.export.exporter import ExportValidationError, check_fp16, export_graph, validate_onnx
from mcaclip.export.specs import DUMMY_BATCH, ExportSpec, export_spec, graph_module
from mcaclip.nn.graphs import Fp16Graph, TensorSpec, graph_names


def test_every_graph_validated_against_pytorch(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    for name, entry in b.graphs.items():
        errors = entry["validation"]["fp32"]["max_abs"]
        assert set(errors) == {t["name"] for t in entry["outputs"]}, name
        assert max(errors.values()) <= 1e-4, name


def test_graphs_have_dynamic_batch_and_opset(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    for name in b.graphs:
        model = onnx.load(str(b.graph_path(name)))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        for inp in model.graph.input:
            first = inp.type.tensor_type.shape.dim[0]
            assert first.dim_param and not first.dim_value, (name, inp.name)
    gen = onnx.load(str(b.graph_path("masked_generator")))
    w_edit = next(i for i in gen.graph.input if i.name == "w_edit")
    assert w_edit.type.tensor_type.shape.dim[1].dim_param  # prompts per latent is dynamic too
    assert DUMMY_BATCH == 2


def test_validator_collects_every_failing_output(tiny_editor, tmp_path):
    spec = export_spec(tiny_editor, "masked_generator")
    module = graph_module(tiny_editor, "masked_generator")
    export_graph(module, spec, tiny_editor, tmp_path / "g.onnx")
    with torch.no_grad():  # the PyTorch side drifts away from what was exported
        tiny_editor.masknet.heads[0].conv2.bias += 1.0
        tiny_editor.generator.synthesis.to_rgbs[-1].bias += 0.5
    with pytest.raises(ExportValidationError) as err:
        validate_onnx(tmp_path / "g.onnx", module, spec, tiny_editor)
    message = str(err.value)
    assert "image at batch 1" in message and "image at batch 3" in message
    assert "mask_00 at batch 1" in message and "original" in message
    assert "mask_03" not in message  # outputs that still agree are not listed


def test_fp16_graph_is_finite_with_psnr(tiny_editor, tmp_path):
    spec = export_spec(tiny_editor, "masked_generator")
    module = graph_module(tiny_editor, "masked_generator")
    report = export_graph(module, spec, tiny_editor, tmp_path / "g.fp16.onnx", precision="fp16")
    assert report.precision == "fp16" and report.runtime_check == "torch-fp16-cpu"
    assert 35 < report.psnr_db["image"] < math.inf
    model = onnx.load(str(tmp_path / "g.fp16.onnx"))
    f32 = onnx.TensorProto.FLOAT
    assert all(i.type.tensor_type.elem_type == f32 for i in model.graph.input)
    assert all(o.type.tensor_type.elem_type == f32 for o in model.graph.output)
    inits = {t.data_type for t in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in inits


class _Overflow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.linear.weight.data.fill_(3e4)  # fine in FP32, +-inf in FP16

    def forward(self, x):
        return self.linear(x)


def test_fp16_overflow_is_refused(tiny_editor, monkeypatch):
    from mcaclip.export import exporter

    spec = ExportSpec("toy", (TensorSpec("x", ("batch", 4)),), (TensorSpec("y", ("batch", 4)),))
    monkeypatch.setattr(
        exporter,
        "example_inputs",
        lambda editor, spec, batch, seed, prompts=1: (torch.ones(batch, 4),),
    )
    module = _Overflow()
    with pytest.raises(ExportValidationError, match="not finite on CPU.*y at batch 1: 4 NaN/Inf"):
        check_fp16(module, Fp16Graph(module), spec, tiny_editor)


def test_no_masknet_without_masks(tiny):
    from mcaclip.nn.editor import MCAEditor

    preset = type(tiny)(tiny.name, tiny.generator, tiny.clip, type(tiny.editor)(use_masks=False))
    editor = MCAEditor.from_preset(preset, random_weights=True)
    assert "masknet" not in graph_names(editor)
    assert "text_encoder" not in graph_names(editor, text_encoder=False)
    w = torch.zeros(1, 8, 64)
    out = graph_module(editor, "masked_generator")(w, w[:, None] + 0.1, torch.zeros(1, 1, 64))
    assert len(out) == 2 and out[0].shape == (1, 1, 3, 32, 32)
    assert np.isfinite(out[0].numpy()).all()


def test_external_data_is_named_after_the_final_file(tiny_editor, tmp_path):
    spec = export_spec(tiny_editor, "mapper")
    module = graph_module(tiny_editor, "mapper")
    export_graph(module, spec, tiny_editor, tmp_path / "mapper.onnx", external_data=True)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "mapper.onnx" and len(files) == 2, files  # graph + its weights
    model = onnx.load(str(tmp_path / "mapper.onnx"), load_external_data=False)
    locations = {
        e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {files[1]}
    validate_onnx(tmp_path / "mapper.onnx", module, spec, tiny_editor)  # loads and agrees
