"""TensorRT backend logic that needs no TensorRT: profiles, compatibility checks, the builder's
API call sequence against a *fake* ``tensorrt`` module (TensorRT 10 and 11 flavours), the
readiness check, and clear refusals. Tests that need real TensorRT carry the ``trt`` marker."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mcaclip.bundle import Bundle
from mcaclip.errors import ConfigError
from mcaclip.export import tensorrt as trt_build
from mcaclip.export.tensorrt import TrtBuildError, TrtOptions, profile_shapes
from mcaclip.export.trtcheck import check_bundle, check_graph
from mcaclip.runtime.backends.base import BackendError
from mcaclip.runtime.backends.tensorrt import TrtEngine, compat_problem

PROFILE = {"min": 1, "opt": 2, "max": 4, "max_prompts": 3}


def _entry(*inputs, max_batch=4):
    return {
        "inputs": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in inputs],
        "max_batch": max_batch,
    }


def test_profile_shapes_per_graph():
    gen = _entry(("w", ("batch", 8, 64)), ("w_edit", ("batch", "prompts", 8, 64)))
    shapes = profile_shapes(gen, "masked_generator", PROFILE)
    assert shapes["w"] == ((1, 8, 64), (2, 8, 64), (4, 8, 64))
    assert shapes["w_edit"] == ((1, 1, 8, 64), (2, 1, 8, 64), (4, 3, 8, 64))
    # fusion sees latents x prompts pairs: its max is the manifest's pair maximum
    fusion = _entry(("w", ("batch", 8, 64)), ("e_t", ("batch", 32)), max_batch=12)
    assert profile_shapes(fusion, "fusion", PROFILE)["e_t"] == ((1, 32), (2, 32), (12, 32))
    text = _entry(("tokens", ("batch", 77)), max_batch=12)
    assert profile_shapes(text, "text_encoder", PROFILE)["tokens"] == ((1, 77), (1, 77), (12, 77))
    with pytest.raises(TrtBuildError, match="dynamic dimension 'height'"):
        profile_shapes(_entry(("x", ("batch", "height"))), "mapping", PROFILE)


RECORD = {
    "version": "10.9.0.34",
    "gpu": "NVIDIA GeForce RTX 4090",
    "compute_capability": "8.9",
    "options": {"version_compat": False, "hardware_compat": "none"},
    "engines": {"fusion": {"plan": "trt/fusion.plan"}},
}


@pytest.mark.parametrize(
    "record, version, cc, expect",
    [
        (RECORD, "10.9.0.34", "8.9", None),
        (RECORD, "10.13.0.35", "8.9", "built with TensorRT 10.9.0.34"),
        (RECORD, "10.9.0.34", "9.0", "built for NVIDIA GeForce RTX 4090"),
        ({**RECORD, "options": {"version_compat": True}}, "11.4.0.106", "8.9", None),
        ({**RECORD, "options": {"version_compat": True}}, "10.8.0.1", "8.9", "TensorRT 10.9"),
        ({**RECORD, "options": {"hardware_compat": "ampere-plus"}}, "10.9.0.34", "9.0", None),
        ({**RECORD, "options": {"hardware_compat": "ampere-plus"}}, "10.9.0.34", "7.5", "7.5"),
        ({**RECORD, "engines": {}}, "10.9.0.34", "8.9", "has no TensorRT engines"),
        (None, "10.9.0.34", "8.9", "has no TensorRT engines"),
    ],
)
def test_compat_problem(record, version, cc, expect):
    problem = compat_problem(record, version, "NVIDIA H100", cc)
    if expect is None:
        assert problem is None
    else:
        assert expect in problem


FAKE_TRT = types.SimpleNamespace(
    TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
    DataType=types.SimpleNamespace(FLOAT="f32", HALF="f16", INT32="i32", INT64="i64",
                                   BOOL="b", INT8="i8", UINT8="u8"),
)  # fmt: skip


class FakeEngine:
    """A deserialized engine with one FP16 input ``w`` and one output ``out``."""

    num_io_tensors = 2

    def __init__(self, make_context):
        self.make_context = make_context

    def get_tensor_name(self, i):
        return ["w", "out"][i]

    def get_tensor_mode(self, name):
        return "in" if name == "w" else "out"

    def get_tensor_dtype(self, name):
        return "f16"

    def create_execution_context(self):
        return self.make_context()


def test_one_execution_context_per_input_shape(tmp_path):
    """A captured CUDA graph is bound to its context's shapes: each shape gets its own."""
    trt = FAKE_TRT
    made, fail = [], [False]

    def make_context():
        made.append(None if fail[0] else object())
        return made[-1]

    engine = FakeEngine(make_context)
    runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda plan: engine)
    plan = tmp_path / "g.plan"
    plan.write_bytes(b"plan")
    eng = TrtEngine(trt, runtime, plan, "g")
    assert eng.input_names == ["w"] and eng.output_names == ["out"] and made == []
    a = eng.context(((1, 8),))
    assert eng.context(((1, 8),)) is a and eng.context(((4, 8),)) is not a and len(made) == 2
    fail[0] = True  # TensorRT returns None when it cannot allocate the context
    with pytest.raises(BackendError, match="could not create an execution context"):
        eng.context(((8, 8),))
    runtime.deserialize_cuda_engine = lambda plan: None
    with pytest.raises(BackendError, match="could not load this engine"):
        TrtEngine(trt, runtime, plan, "g")


@pytest.mark.gpu
def test_engines_never_enqueue_on_the_default_stream(tmp_path):
    """Eager runs (default stream) enqueue on a side stream ordered both ways with the caller's
    stream; a caller's own stream is used as is. Needs a CUDA GPU, not TensorRT: the engine and
    its context are stand-ins that sleep on the stream they are given."""
    import torch

    streams, marks = [], {}
    cycles = 50_000_000  # some tens of milliseconds: an ordering mistake shows in the timings

    def event():
        return torch.cuda.Event(enable_timing=True)

    class Context:
        def set_input_shape(self, name, shape):
            self.shape = shape
            return True

        def set_tensor_address(self, name, ptr):
            pass

        def get_tensor_shape(self, name):
            return self.shape

        def execute_async_v3(self, handle):
            streams.append(handle)
            given = torch.cuda.ExternalStream(handle)
            marks["start"], marks["end"] = event(), event()
            marks["start"].record(given)
            with torch.cuda.stream(given):
                torch.cuda._sleep(cycles)
            marks["end"].record(given)
            return True

    plan = tmp_path / "g.plan"
    plan.write_bytes(b"plan")
    runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda plan: FakeEngine(Context))
    eng = TrtEngine(FAKE_TRT, runtime, plan, "g")
    w = torch.randn(2, 8, device="cuda")
    torch.cuda.synchronize()
    before, after = event(), event()
    torch.cuda._sleep(cycles)  # the caller's earlier work
    before.record()
    (out,) = eng.run([w])
    after.record()
    after.synchronize()
    assert out.shape == (2, 8) and out.dtype == torch.float16 and out.is_cuda
    assert streams[-1] not in (0, torch.cuda.default_stream().cuda_stream)
    assert before.elapsed_time(marks["start"]) >= 0  # the engine waited for the caller's work
    assert marks["end"].elapsed_time(after) >= 0  # the caller's stream waited for the engine
    mine = torch.cuda.Stream()
    with torch.cuda.stream(mine):
        eng.run([w])
    assert streams[-1] == mine.cuda_stream
    eng.run([w])
    assert streams[-1] == streams[0]  # one side stream per device, reused
    torch.cuda.synchronize()


def test_options_are_checked():
    with pytest.raises(ConfigError, match="--opt-level 7"):
        TrtOptions(opt_level=7)
    with pytest.raises(ConfigError, match="--trt-typing"):
        TrtOptions(typing="weak")
    with pytest.raises(ConfigError, match="--hardware-compat"):
        TrtOptions(hardware_compat="turing")


# -- a fake TensorRT: records the calls the builder makes ---------------------------------------


def fake_tensorrt(major: int) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0.34" if major == 10 else "11.4.0.106"
    calls: list = []
    trt.calls = calls

    class Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    class ILogger:
        def __init__(self):
            pass

    ILogger.Severity = Severity
    trt.ILogger = ILogger
    # TensorRT 11 removed EXPLICIT_BATCH and renumbered STRONGLY_TYPED to 0
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(
        STRONGLY_TYPED=1 if major == 10 else 0
    )
    flags = {"VERSION_COMPATIBLE": "VERSION_COMPATIBLE"}
    if major == 10:
        flags["FP16"] = "FP16"  # removed in TensorRT 11
    trt.BuilderFlag = types.SimpleNamespace(**flags)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.HardwareCompatibilityLevel = types.SimpleNamespace(
        NONE="NONE", AMPERE_PLUS="AMPERE_PLUS", SAME_COMPUTE_CAPABILITY="SAME_CC"
    )

    class Cache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+"

    class Config:
        def __init__(self):
            self.flags, self.pool, self.profiles = set(), {}, []
            self.cache = None
            self.hardware_compatibility_level = "NONE"
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def create_timing_cache(self, data):
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.data.startswith(b"stale"):  # another version's or GPU's cache
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return 0

    class Profile(dict):
        def set_shape(self, name, lo, opt, hi):
            self[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            self.network["onnx"] = Path(path).name
            return onnx.load(path, load_external_data=False) is not None

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return {"flags": flags}

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(
                {
                    **network,
                    "config_flags": sorted(config.flags),
                    "profile": dict(config.profiles[0]),
                    "workspace": config.pool["WORKSPACE"],
                    "opt_level": config.builder_optimization_level,
                    "hardware": config.hardware_compatibility_level,
                    "current_device": getattr(trt, "current", None),
                }
            )
            return json.dumps(calls[-1], default=list).encode()

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt


GPU = ("Fake GPU", "9.0")


class _Recording:
    """Stands in for torch.cuda.device(...) around a build (no CUDA here): the stand-in
    builder records which device is current when it builds."""

    def __init__(self, trt, device):
        self.trt, self.device = trt, device

    def __enter__(self):
        self.trt.devices.append(("build on", self.device))
        self.trt.current = self.device

    def __exit__(self, *exc):
        self.trt.current = None
        return False


@pytest.fixture
def fake_trt(monkeypatch):
    def install(major: int):
        trt = fake_tensorrt(major)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        trt.devices = []  # (gpu_identity's device, the device the build ran on)
        monkeypatch.setattr(
            trt_build, "gpu_identity", lambda device=None: trt.devices.append(device) or GPU
        )
        monkeypatch.setattr(trt_build, "on_device", lambda device: _Recording(trt, device))
        return trt

    return install


@pytest.mark.parametrize("major", [10, 11])
def test_build_engines_strongly_typed(fake_trt, bundle_copy, tmp_path, major):
    trt = fake_trt(major)
    manifest = Bundle.open(bundle_copy).manifest
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    options = TrtOptions(workspace_gib=0.5, opt_level=5, timing_cache=str(cache))
    record = trt_build.build_engines(bundle_copy, manifest, options)
    built = {c["onnx"]: c for c in trt.calls}
    assert set(record["engines"]) == {"mapping", "text_encoder", "fusion", "mapper",
                                      "masked_generator", "encoder"}  # fmt: skip
    # the masked generator and the photo encoder from their FP16 graphs, the small graphs
    # from FP32 ones
    assert "masked_generator.fp16.onnx" in built and "fusion.onnx" in built
    assert "encoder.fp16.onnx" in built
    assert built["encoder.fp16.onnx"]["profile"]["image"] == (
        (1, 3, 32, 32),
        (2, 3, 32, 32),
        (4, 3, 32, 32),
    )
    strongly = 1 << (1 if major == 10 else 0)
    assert all(c["flags"] == strongly and c["config_flags"] == [] for c in trt.calls)
    assert all(c["workspace"] == 2**29 and c["opt_level"] == 5 for c in trt.calls)
    gen = built["masked_generator.fp16.onnx"]["profile"]
    assert gen["w_edit"] == ((1, 1, 8, 64), (2, 1, 8, 64), (4, 4, 8, 64))
    # the timing cache is loaded, passed from engine to engine, and saved back
    assert cache.read_bytes() == b"old" + b"+" * len(trt.calls)
    assert record["version"] == trt.__version__ and record["compute_capability"] == "9.0"
    for rel, digest in record["files"].items():
        assert (bundle_copy / rel).is_file() and len(digest) == 64


def test_stale_timing_cache_is_replaced_not_fatal(fake_trt, bundle_copy, tmp_path):
    trt = fake_trt(10)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"stale cache of another GPU")
    options = TrtOptions(timing_cache=str(cache))
    record = trt_build.build_engines(bundle_copy, Bundle.open(bundle_copy).manifest, options)
    assert len(record["engines"]) == len(trt.calls) == 6
    # started afresh: the saved cache holds only this build's entries
    assert cache.read_bytes() == b"+" * len(trt.calls)


def test_fp16_flag_only_on_tensorrt_10(fake_trt, bundle_copy):
    manifest = Bundle.open(bundle_copy).manifest
    trt = fake_trt(10)
    trt_build.build_engines(bundle_copy, manifest, TrtOptions(typing="fp16-flag"))
    flagged = {c["onnx"]: c["config_flags"] for c in trt.calls}
    assert flagged["masked_generator.onnx"] == ["FP16"] and flagged["fusion.onnx"] == []
    assert all(c["flags"] == 0 for c in trt.calls)  # weakly typed
    fake_trt(11)
    with pytest.raises(ConfigError, match="strongly typed networks only"):
        trt_build.build_engines(bundle_copy, manifest, TrtOptions(typing="fp16-flag"))


def test_build_trt_cli_rewrites_manifest(fake_trt, bundle_copy, cli):
    from mcaclip.export.cli import main as mcaexport

    fake_trt(11)
    code, out, err = cli(mcaexport, "build-trt", bundle_copy, "--hardware-compat", "ampere-plus")
    assert code == 0, err
    assert "built 6 TensorRT 11.4.0.106 engines for Fake GPU" in out
    bundle = Bundle.open(bundle_copy, verify=True)  # every new plan is hashed
    assert bundle.manifest["backend"] == "tensorrt"
    assert bundle.manifest["tensorrt"]["options"]["hardware_compat"] == "ampere-plus"
    assert sorted(p.name for p in (bundle_copy / "trt").iterdir()) == [
        "encoder.plan", "fusion.plan", "mapper.plan", "mapping.plan", "masked_generator.plan",
        "text_encoder.plan",
    ]  # fmt: skip
    assert not [p for p in bundle_copy.iterdir() if p.name.startswith(".")]


def test_build_trt_on_a_chosen_gpu(fake_trt, bundle_copy, cli):
    """--device cuda:N: checked, and the build runs with that GPU current; the manifest records
    the GPU's name and capability, not the index (engines run on any GPU of that kind)."""
    from mcaclip.export.cli import main as mcaexport

    trt = fake_trt(10)
    code, _, err = cli(mcaexport, "build-trt", bundle_copy, "--device", "cuda:1")
    assert code == 0, err
    assert trt.devices[:2] == ["cuda:1", "cuda:1"]  # the early check, then the build's
    assert ("build on", "cuda:1") in trt.devices
    assert [c["current_device"] for c in trt.calls] == ["cuda:1"] * 6  # every engine on it
    record = Bundle.open(bundle_copy, verify=True).manifest["tensorrt"]
    assert "device" not in record["options"] and record["gpu"] == "Fake GPU"
    for bad in ("cpu", "cuda:01", "gpu1"):
        code, _, err = cli(mcaexport, "build-trt", bundle_copy, "--device", bad)
        assert code != 0 and f"--device {bad!r}: TensorRT engines are built on a CUDA GPU" in err
    code, _, err = cli(mcaexport, "build-engine", "--random-weights", "--preset", "tiny-32",
                       "--backend", "onnxruntime", "--device", "cuda:1", "--out",
                       bundle_copy.parent / "never")  # fmt: skip
    assert code != 0 and "needs --backend tensorrt (this bundle is for onnxruntime)" in err
    assert not (bundle_copy.parent / "never").exists()


def test_gpu_identity_checks_the_index(monkeypatch):
    """cuda:N against the GPUs there are (a stand-in torch.cuda with two GPUs); malformed or
    out-of-range indexes are one-line errors, never another GPU."""
    import torch

    from mcaclip.export.tensorrt import TensorRTUnavailable, gpu_identity

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (9, 0 if i else 1))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: f"GPU {i}")
    assert gpu_identity("cuda:1") == ("GPU 1", "9.0")
    assert gpu_identity(torch.device("cuda", 1)) == ("GPU 1", "9.0")
    assert gpu_identity("cuda") == ("GPU None", "9.1")  # the current device
    for missing in ("cuda:2", "cuda:256"):
        with pytest.raises(TensorRTUnavailable, match="this machine has 2 CUDA GPU"):
            gpu_identity(missing)
    for bad in ("cuda:01", "cuda:\u0663", "cuda:-1", "cpu"):
        with pytest.raises(ConfigError, match="use cuda or cuda:N"):
            gpu_identity(bad)


def test_without_tensorrt_commands_refuse_in_one_line(tiny_bundle, cli, monkeypatch):
    from mcaclip.export.cli import main as mcaexport
    from mcaclip.runtime.cli import main as mcarun

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, as on CI
    code, _, err = cli(mcaexport, "build-trt", tiny_bundle)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: TensorRT is not installed")
    code, _, err = cli(
        mcarun, "edit", "--engine", tiny_bundle, "--backend", "tensorrt", "--seeds", "0",
        "--prompt", "red hair", "--out", "unused",
    )  # fmt: skip
    assert code == 2 and "TensorRT is not installed" in err.strip().splitlines()[-1]


def test_engines_need_fp16_graphs(bundle_copy):
    manifest = Bundle.open(bundle_copy).manifest
    del manifest["graphs"]["masked_generator"]["onnx"]["fp16"]
    with pytest.raises(TrtBuildError, match="--precision fp16"):
        trt_build.engine_graph(manifest, "masked_generator", "strong")
    assert trt_build.engine_graph(manifest, "masked_generator", "fp16-flag").endswith(".onnx")


# -- check-trt -----------------------------------------------------------------------------------


def test_check_trt_passes_on_tiny_bundle(tiny_bundle, cli):
    from mcaclip.export.cli import main as mcaexport

    checks = check_bundle(Bundle.open(tiny_bundle))
    assert [c.name for c in checks] == ["mapping", "text_encoder", "fusion", "mapper",
                                        "masked_generator", "encoder"]  # fmt: skip
    assert all(not c.problems for c in checks), [c.problems for c in checks]
    gen = checks[-2]
    assert checks[-1].onnx.endswith("encoder.fp16.onnx") and checks[-1].fp16_psnr_db is None
    assert gen.onnx.endswith("fp16.onnx") and gen.opset == 18
    assert gen.ops["Conv"] > 0 and gen.fp16_psnr_db > 30
    code, out, err = cli(mcaexport, "check-trt", tiny_bundle)
    assert code == 0, err
    assert "ready for TensorRT" in out and "ConvTranspose" in out


def _model(op: str, dims, opset: int = 18, elem=TensorProto.FLOAT) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem, dims)
    y = helper.make_tensor_value_info("y", elem, dims)
    node = helper.make_node(op, ["x"], ["y"], name="n0")
    graph = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    "model, message",
    [
        (_model("Relu", ["batch", 4]), None),
        (_model("Relu", ["batch", "height"]), "dynamic dimension 'height'"),
        (_model("Relu", ["batch", 4], opset=22), "opset 22 is outside"),
        (_model("Bernoulli", ["batch", 4]), "operator Bernoulli is not supported"),
        (_model("Relu", ["batch", 4], elem=TensorProto.COMPLEX64), "type COMPLEX64"),
    ],
)
def test_check_graph_finds_problems(tmp_path, model, message):
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    result = check_graph(path, "g", "g.onnx")
    if message is None:
        assert result.problems == [] and result.ops == {"Relu": 1}
    else:
        assert any(message in p for p in result.problems), result.problems


def test_check_trt_cli_fails_clearly(bundle_copy, cli):
    from mcaclip.export.cli import main as mcaexport

    # replace the mapper graph by one with an operator TensorRT lacks (and fix its hash)
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    rel = manifest["graphs"]["mapper"]["onnx"]["fp32"]
    onnx.save(_model("Bernoulli", ["batch", 4]), str(bundle_copy / rel))
    from mcaclip.bundle import sha256

    manifest["files"][rel] = sha256(bundle_copy / rel)
    manifest_path.write_text(json.dumps(manifest))
    code, out, err = cli(mcaexport, "check-trt", bundle_copy, "--no-run")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error:") and "not ready for TensorRT" in last
    assert "mapper: operator Bernoulli is not supported" in err


@pytest.mark.trt
def test_real_tensorrt_build_and_edit(bundle_copy):
    """Real TensorRT on a GPU: engines build from the tiny bundle and edit like PyTorch."""
    from mcaclip.export.builder import rebuild_trt
    from mcaclip.runtime.pipeline import EditPipeline

    rebuild_trt(bundle_copy, TrtOptions(workspace_gib=1.0))
    with EditPipeline(bundle_copy, backend="torch", device="cuda", precision="fp32") as ref_p:
        w = ref_p.seeds_to_latents([0, 1])
        e = ref_p.embed(["red hair"])
        ref = ref_p.edit_batch(w, e)
    with EditPipeline(bundle_copy, backend="tensorrt", device="cuda") as p:
        got = p.edit_batch(w, e)
    err = np.abs(got[0] - ref[0]).max()
    assert np.isfinite(got[0]).all() and err < 0.05


@pytest.mark.gpu
def test_gpu_identity_of_a_missing_gpu_is_one_line():
    """Needs a CUDA GPU, not TensorRT."""
    import torch

    from mcaclip.export.tensorrt import TensorRTUnavailable, gpu_identity

    name, cc = gpu_identity("cuda:0")
    assert name == torch.cuda.get_device_name(0) and "." in cc
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(TensorRTUnavailable, match=f"--device {missing}: this machine has"):
        gpu_identity(missing)
