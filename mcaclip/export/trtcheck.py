"""``mcaexport check-trt``: will TensorRT's ONNX parser take this bundle? (no TensorRT needed)

For every graph an engine is built from (the same choice as :mod:`mcaclip.export.tensorrt`):

* the default-domain opset is inside the parser's range, and no node is from another domain;
* every node's operator is in NVIDIA's support matrix (:mod:`mcaclip.export.trt_ops`), with its
  data input's type among the types listed for that operator;
* every tensor type is one TensorRT holds;
* inputs and outputs are static except the profile's ``batch`` and ``prompts`` axes;
* the FP16 graphs were checked finite (manifest) and, unless ``run=False``, still are: the
  bundle's PyTorch weights run in half precision on the CPU, PSNR against FP32 reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from mcaclip.bundle import Bundle
from mcaclip.export.tensorrt import ENGINE_GRAPHS, FP16_GRAPHS, TrtBuildError, engine_graph
from mcaclip.export.trt_ops import (
    SUPPORTED_OPS,
    TRT_DTYPES,
    TRT_OPSET_MAX,
    TRT_OPSET_MIN,
    UNSUPPORTED_OPS,
)

DYNAMIC_AXES = ("batch", "prompts")


@dataclass
class GraphCheck:
    name: str
    onnx: str
    opset: int
    ops: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    fp16_psnr_db: float | None = None


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


def _tensor_types(model: onnx.ModelProto) -> dict[str, str]:
    """Every named tensor's element type (inputs, outputs, initializers, inferred values)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; the parser does its own
        inferred = model
    g = inferred.graph
    types = {t.name: _type_name(t.data_type) for t in g.initializer}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = _type_name(vi.type.tensor_type.elem_type)
    for node in g.node:  # Constant nodes carry their type in the attribute
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = _type_name(attr.t.data_type)
    return types


def check_graph(path: Path, name: str, rel: str) -> GraphCheck:
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    result = GraphCheck(name, rel, opset)
    if not TRT_OPSET_MIN <= opset <= TRT_OPSET_MAX:
        result.problems.append(
            f"opset {opset} is outside TensorRT's parser range {TRT_OPSET_MIN}..{TRT_OPSET_MAX}"
        )
    types = _tensor_types(model)
    local = {f.name: f for f in model.functions}
    nodes = list(model.graph.node)
    for fn in model.functions:  # local functions are inlined by the parser: check their bodies
        nodes += list(fn.node)
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            if node.op_type in local:
                continue
            result.problems.append(f"node {node.name or node.op_type}: custom domain {node.domain}")
            continue
        result.ops[node.op_type] += 1
        if node.op_type in UNSUPPORTED_OPS or node.op_type not in SUPPORTED_OPS:
            result.problems.append(f"operator {node.op_type} is not supported by TensorRT")
            continue
        allowed, _ = SUPPORTED_OPS[node.op_type]
        data = node.input[0] if node.input and node.input[0] else None
        dtype = types.get(data) if data else (types.get(node.output[0]) if node.output else None)
        if allowed and dtype and dtype not in allowed:
            result.problems.append(
                f"{node.op_type} ({node.name}) on {dtype}: TensorRT supports "
                f"{', '.join(sorted(allowed))}"
            )
    for tname, dtype in sorted(set(types.items())):
        if dtype not in TRT_DTYPES:
            result.problems.append(f"tensor {tname} has type {dtype}, which TensorRT cannot hold")
    for vi in [*model.graph.input, *model.graph.output]:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param not in DYNAMIC_AXES:
                result.problems.append(
                    f"{vi.name}: dynamic dimension {dim.dim_param!r} (only "
                    f"{' and '.join(DYNAMIC_AXES)} may be dynamic)"
                )
            elif not dim.HasField("dim_param") and not dim.HasField("dim_value"):
                result.problems.append(f"{vi.name}: a dimension with no size and no name")
    return result


def check_bundle(bundle: Bundle, run: bool = True) -> list[GraphCheck]:
    """Check every graph a TensorRT engine would be built from; see the module docstring."""
    checks = []
    for name in ENGINE_GRAPHS:
        if name not in bundle.graphs:
            continue
        try:
            rel = engine_graph(bundle.manifest, name, "strong")
        except TrtBuildError as exc:
            check = GraphCheck(name, "-", 0)
            check.problems.append(str(exc))
            checks.append(check)
            continue
        check = check_graph(bundle.root / rel, name, rel)
        if name in FP16_GRAPHS:
            recorded = bundle.graphs[name]["validation"].get("fp16", {})
            if recorded.get("psnr_db"):
                check.fp16_psnr_db = min(recorded["psnr_db"].values())
        checks.append(check)
    if run:
        _run_fp16(bundle, checks)
    return checks


def _run_fp16(bundle: Bundle, checks: list[GraphCheck]) -> None:
    """Half-precision run of the FP16 graphs' networks on CPU: finite, PSNR vs FP32."""
    from mcaclip.export.exporter import ExportValidationError, check_fp16
    from mcaclip.export.specs import export_spec
    from mcaclip.nn.editor import MCAEditor
    from mcaclip.nn.graphs import Fp16Graph, build_graph

    path = bundle.root / "torch" / "editor.safetensors"
    if not path.is_file():
        for c in checks:
            if c.name in FP16_GRAPHS:
                c.problems.append("no torch/ weights to run the FP16 check with; rebuild")
        return
    editor = MCAEditor.load(path, random_weights=bundle.random_weights).eval()
    for c in checks:
        if c.name not in FP16_GRAPHS or c.onnx == "-":
            continue
        module = build_graph(editor, c.name).eval()
        try:
            report = check_fp16(
                module, Fp16Graph(module).eval(), export_spec(editor, c.name), editor
            )
        except ExportValidationError as exc:
            c.problems.append(f"FP16 run: {exc}")
            continue
        if report.psnr_db:
            c.fp16_psnr_db = min(report.psnr_db.values())
