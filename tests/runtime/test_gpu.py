"""GPU fast paths of the torch backend (marker ``gpu``: skipped without a CUDA GPU), and the
refusals that CPU machines see."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mcaclip.export.exporter import psnr
from mcaclip.runtime.backends.base import BackendError
from mcaclip.runtime.io import to_uint8
from mcaclip.runtime.kernels.cuda_graphs import CudaGraphed
from mcaclip.runtime.pipeline import EditPipeline


def _latents(pipeline, n):
    return pipeline.seeds_to_latents(list(range(n)))


def test_gpu_options_refused_on_cpu(tiny_bundle, cli):
    with pytest.raises(BackendError, match="need a CUDA GPU"):
        with EditPipeline(tiny_bundle, backend="torch", device="cpu", precision="fp16") as p:
            p.edit_batch(_latents(p, 1), p.embed(["red hair"]))
    from mcaclip.runtime.cli import main as mcarun

    code, _, err = cli(
        mcarun, "edit", "--engine", tiny_bundle, "--backend", "torch", "--device", "cpu",
        "--precision", "fp16", "--seeds", "0", "--prompt", "red hair", "--out", "unused",
    )  # fmt: skip
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "need a CUDA GPU" in last
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "switches, mode",
    [
        ({}, "cpu-fp32-fused-eager"),  # fused tails: the CPU default
        ({"stack_streams": True}, "cpu-fp32-fused-stacked-eager"),
        ({"fold_blur": True, "subpixel": True}, "cpu-fp32-foldblur-subpixel-fused-eager"),
        ({"phase_conv": True}, "cpu-fp32-phaseconv-fused-eager"),
    ],
)
def test_torch_cpu_edit_matches_onnxruntime(tiny_bundle, switches, mode):
    """The torch backend (weights frozen per module, the switches asked for) against the
    exported graphs."""
    with EditPipeline(tiny_bundle, backend="onnxruntime") as ort_p:
        w = _latents(ort_p, 2)
        e = ort_p.embed(["red hair", "blue goatee"])
        ref = ort_p.edit_batch(w, e)
    with EditPipeline(tiny_bundle, backend="torch", device="cpu", **switches) as torch_p:
        assert torch_p.device_editor.mode == mode
        got = torch_p.edit_batch(w, e)
    assert got[0].shape == ref[0].shape == (2, 2, 3, 32, 32)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-4)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-4)
    assert len(got[2]) == len(ref[2])
    for a, b in zip(got[2], ref[2]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_switch_refusals_on_cpu(tiny_bundle, cli):
    from mcaclip.runtime.cli import main as mcarun

    for args, msg in (
        (["--cudnn-benchmark"], "--cudnn-benchmark on the torch backend need a CUDA GPU"),
        (["--subpixel"], "--subpixel is a form of the folded blur: add --fold-blur"),
        (["--subpixel", "--no-fold-blur"], "--subpixel is a form of the folded blur"),
        (["--compile-autotune"], "--compile-autotune on the torch backend need a CUDA GPU"),
        (["--triton-masks"], "--triton-masks on the torch backend need a CUDA GPU"),
        (["--phase-conv", "--fold-blur"], "--phase-conv is a form of the unfolded up-sampling"),
        (["--triton-epilogues"], "--triton-epilogues on the torch backend need a CUDA GPU"),
        (["--triton-convs"], "--triton-convs on the torch backend need a CUDA GPU"),
        (["--triton-convs-auto"], "--triton-convs-auto on the torch backend need a CUDA GPU"),
    ):
        code, _, err = cli(
            mcarun, "edit", "--engine", tiny_bundle, "--backend", "torch", "--device", "cpu",
            *args, "--seeds", "0", "--prompt", "red hair", "--out", "unused",
        )  # fmt: skip
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: ") and msg in last, err
    code, _, err = cli(
        mcarun, "edit", "--engine", tiny_bundle, "--backend", "onnxruntime", "--subpixel",
        "--seeds", "0", "--prompt", "red hair", "--out", "unused",
    )  # fmt: skip
    assert code == 2 and "--subpixel: options of the torch backend" in err
    for args, msg in (
        (["--triton-convs-auto", "--no-triton-convs"], "chooses per layer: drop --triton-convs"),
        (["--triton-convs", "--triton-convs-auto"], "chooses per layer: drop --triton-convs"),
        (["--triton-convs-auto"], "--triton-convs-auto: options of the torch backend"),
    ):
        code, _, err = cli(
            mcarun, "edit", "--engine", tiny_bundle, "--backend", "onnxruntime", *args,
            "--seeds", "0", "--prompt", "red hair", "--out", "unused",
        )  # fmt: skip
        assert code == 2 and msg in err and "Traceback" not in err, err


def test_conv_tuner_times_each_batch_shape_once(monkeypatch):
    """--triton-convs-auto: the layers are timed (through the uncompiled module) before the
    first call of each input signature, then every call runs the module as it is."""
    from mcaclip.runtime.backends.torch import ConvTuner, TorchEditor
    from mcaclip.runtime.kernels import tuning

    timed, ran, eager = [], [], []
    plans = [object()]

    def tune(plans_given, call):
        assert plans_given is plans
        call()
        timed.append(len(eager))

    monkeypatch.setattr(tuning, "tune", tune)
    tuner = ConvTuner(lambda *a: ran.append(a[0].shape) or (a[0] + 1,),
                      lambda *a: eager.append(a[0].shape), plans)  # fmt: skip
    for shape in ((2, 3), (2, 3), (4, 3), (2, 3), (4, 3)):
        out = tuner(torch.ones(shape), torch.zeros(1))
        assert out[0].shape == shape and out[0][0, 0].item() == 2
    assert timed == [1, 2] and eager == [(2, 3), (4, 3)] and len(ran) == 5
    # tuners of one editor (its graphed module and its stages') share what they timed
    shared = set()
    first = ConvTuner(lambda *a: a, lambda *a: eager.append(a[0].shape), plans, shared)
    second = ConvTuner(lambda *a: a, lambda *a: eager.append(a[0].shape), plans, shared)
    eager.clear()
    first(torch.ones(8, 3))
    second(torch.ones(8, 3))
    second(torch.ones(1, 3))
    assert eager == [(8, 3), (1, 3)]
    with pytest.raises(BackendError, match="triton_convs='fast': use None, False, True or 'auto'"):
        TorchEditor(Path("unused"), True, triton_convs="fast")


def test_compile_modes(tiny_bundle):
    from mcaclip.runtime.backends.torch import TorchEditor
    from mcaclip.runtime.bench import variant_name

    with pytest.raises(BackendError, match="compile='fast': use False, True, 'default'"):
        TorchEditor(tiny_bundle, random_weights=True, compile="fast")
    base = {"backend": "torch", "device": "cuda", "precision": "fp16", "cuda_graphs": True}
    assert variant_name({**base, "compile": True}) == "torch-cuda-fp16-compile-cudagraphs"
    assert variant_name({**base, "compile": "default"}) == "torch-cuda-fp16-compile-cudagraphs"
    assert (
        variant_name({**base, "compile": "max-autotune"})
        == "torch-cuda-fp16-compile-autotune-cudagraphs"
    )
    # the Triton epilogues: named when asked for either way, except in the plain form
    assert (
        variant_name({**base, "triton_epilogues": False})
        == "torch-cuda-fp16-notritonepi-cudagraphs"
    )
    assert (
        variant_name({**base, "triton_epilogues": True}) == "torch-cuda-fp16-tritonepi-cudagraphs"
    )
    assert variant_name({**base, "triton_convs": True}) == "torch-cuda-fp16-tritonconv-cudagraphs"
    named = variant_name({**base, "triton_convs": "auto"})
    assert named == "torch-cuda-fp16-tritonconvauto-cudagraphs"
    named = variant_name({**base, "phase_conv": True, "triton_epilogues": True})
    assert named == "torch-cuda-fp16-phaseconv-tritonepi-cudagraphs"
    named = variant_name({**base, "phase_conv": False})
    assert named == "torch-cuda-fp16-nophaseconv-cudagraphs"
    named = variant_name({**base, "phase_conv": True, "triton_convs": "auto"})
    assert named == "torch-cuda-fp16-phaseconv-tritonconvauto-cudagraphs"
    plain = {"subpixel": False, "fuse_tails": False, "stack_streams": False}
    for epilogues in (None, False):
        named = variant_name({**base, **plain, "triton_epilogues": epilogues})
        assert named == "torch-cuda-fp16-plain-cudagraphs"


def test_phase_convs_are_the_default_with_the_triton_epilogues():
    """The 2x2 phase convs by default only where the Triton epilogues are, and not with
    another up-sampling form or the convs in the kernel asked for, either way."""
    from mcaclip.runtime.backends.torch import _phase_conv_default

    assert _phase_conv_default(True, None, None, None, None)
    assert _phase_conv_default(True, None, None, True, False)  # --triton-epilogues
    assert not _phase_conv_default(False, None, None, None, None)  # CPU, FP32, no Triton...
    assert not _phase_conv_default(True, None, None, False, None)  # --no-triton-epilogues
    for fold, sub in ((True, None), (False, None), (None, True), (None, False), (True, True)):
        assert not _phase_conv_default(True, fold, sub, None, None), (fold, sub)
    for convs in (True, "auto"):
        assert not _phase_conv_default(True, None, None, None, convs)


def test_triton_epilogues_default_needs_triton_and_an_sm80_gpu(monkeypatch):
    import importlib.util

    from mcaclip.runtime.backends.torch import _triton_compiles_for

    cuda, find = torch.device("cuda"), importlib.util.find_spec
    has_triton = find("triton") is not None
    for capability, on in (((8, 9), has_triton), ((12, 0), has_triton), ((7, 5), False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert _triton_compiles_for(cuda) == on, capability
    assert not _triton_compiles_for(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "triton" else find(n, *a)
    )
    assert not _triton_compiles_for(cuda)  # no Triton: the PyTorch form


def test_a_triton_failure_is_one_actionable_line():
    from mcaclip.runtime.backends.torch import TritonGuard

    compile_error = type("CompilationError", (Exception,), {"__module__": "triton.compiler"})

    def fails(exc):
        def fn(*args):
            raise exc

        return fn

    guard = TritonGuard(fails(compile_error("at 12:4:\nout of registers")), ["--triton-epilogues"])
    with pytest.raises(BackendError) as info:
        guard(torch.ones(1))
    message = str(info.value)
    assert "\n" not in message and "CompilationError: at 12:4:" in message
    assert "run with --no-triton-epilogues (the PyTorch form)" in message
    launch = RuntimeError("Triton Error [CUDA]: misaligned address")
    with pytest.raises(BackendError, match="--no-triton-epilogues --no-triton-masks"):
        TritonGuard(fails(launch), ["--triton-epilogues", "--triton-masks"])(torch.ones(1))
    both = ["--triton-convs", "--triton-epilogues"]  # what TorchEditor names with the convs on
    with pytest.raises(BackendError, match="run with --no-triton-convs --no-triton-epilogues"):
        TritonGuard(fails(launch), both)(torch.ones(1))
    auto = ["--triton-convs-auto", "--triton-epilogues"]  # its negative: --no-triton-convs
    with pytest.raises(BackendError, match="run with --no-triton-convs --no-triton-epilogues"):
        TritonGuard(fails(launch), auto)(torch.ones(1))
    with pytest.raises(ValueError, match="not ours"):  # anything else passes through
        TritonGuard(fails(ValueError("not ours")), ["--triton-epilogues"])(torch.ones(1))
    assert TritonGuard(lambda x: (x + 1,), ["--triton-masks"])(torch.ones(1))[0].item() == 2


@pytest.mark.gpu
def test_triton_epilogues_are_the_default_on_cuda(tiny_bundle):
    """FP16 on a GPU of compute capability 8.0+: the Triton epilogues by default, with the 2x2
    phase convs (sub-pixel ones where another up-sampling form or the convs in the kernel are
    asked for), unless a switch they replace is asked for; --no-triton-epilogues gives the
    PyTorch form (sub-pixel, fused, stacked)."""
    from mcaclip.runtime.backends.torch import _triton_compiles_for

    expected = _triton_compiles_for(torch.device("cuda"))
    for switches, on, phases in (({}, expected, expected),
                                 ({"triton_epilogues": False}, False, False),
                                 ({"phase_conv": True}, expected, True),
                                 ({"phase_conv": False}, expected, False),
                                 ({"subpixel": True}, expected, False),
                                 ({"fold_blur": False}, False, False),
                                 ({"stack_streams": True}, False, False),
                                 ({"fuse_tails": True}, False, False),
                                 ({"triton_masks": True}, False, False)):  # fmt: skip
        with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                          cuda_graphs=True, **switches) as p:  # fmt: skip
            mode = p.device_editor.mode
        assert ("tritonepi" in mode) == on, (switches, mode)
        assert ("phaseconv" in mode) == phases, (switches, mode)
        folded = not phases and switches.get("fold_blur") is not False
        assert ("subpixel" in mode) == ("foldblur" in mode) == folded, (switches, mode)
        assert ("stacked" in mode) == ("fused" in mode) == (not on), mode


def test_cudnn_benchmark_wrapper_restores_the_flag():
    from mcaclip.runtime.backends.torch import CudnnBenchmark

    seen = []

    def fn(x):
        seen.append(torch.backends.cudnn.benchmark)
        if x is None:
            raise ValueError("boom")
        return (x,)

    before = torch.backends.cudnn.benchmark
    try:
        for start in (False, True):
            torch.backends.cudnn.benchmark = start
            CudnnBenchmark(fn)(torch.ones(1))
            assert torch.backends.cudnn.benchmark is start
        torch.backends.cudnn.benchmark = False
        with pytest.raises(ValueError):
            CudnnBenchmark(fn)(None)
        assert torch.backends.cudnn.benchmark is False  # restored after a failure too
    finally:
        torch.backends.cudnn.benchmark = before
    assert seen == [True, True, True]


@pytest.mark.gpu
def test_cuda_graphed_replays_new_inputs():
    lin = torch.nn.Linear(16, 8).cuda()

    def fn(x):
        return (torch.relu(lin(x)) * 2,)

    graphed = CudaGraphed(fn)
    with torch.inference_mode():
        for _ in range(3):
            x = torch.randn(4, 16, device="cuda", generator=None)
            (out,) = graphed(x)
            torch.testing.assert_close(out, fn(x)[0])
        graphed(torch.randn(2, 16, device="cuda"))
    assert graphed.captured == 2  # one graph per input shape


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_fp16_cuda_matches_fp32(tiny_bundle, cuda_graphs):
    with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp32",
                      cuda_graphs=False) as p32:  # fmt: skip
        w = _latents(p32, 3)
        e = p32.embed(["red hair", "blue goatee"])
        ref = p32.edit_batch(w, e)
    with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                      cuda_graphs=cuda_graphs) as p16:  # fmt: skip
        first = p16.edit_batch(w, e)
        again = p16.edit_batch(w[::-1].copy(), e)  # replays see new inputs
        # uint8 pictures converted on the GPU and copied through pinned buffers: the same
        # bytes as converting on the host, and not overwritten by the next call
        pix = p16.edit_batch(w, e, masks=False, pixels=True)
        kept = pix[0].copy()
        p16.edit_batch(w[::-1].copy(), e, masks=False, pixels=True)
    assert np.array_equal(pix[0], to_uint8(first[0])) and np.array_equal(pix[0], kept)
    assert np.array_equal(pix[1], to_uint8(first[1])) and pix[2] == []
    assert np.isfinite(first[0]).all()
    assert psnr(first[0], ref[0]) > 40 and psnr(first[1], ref[1]) > 40
    np.testing.assert_allclose(again[0][::-1], first[0], atol=2e-3)
    for m16, m32 in zip(first[2], ref[2]):
        assert np.abs(m16 - m32).max() < 2e-2


@pytest.mark.gpu
def test_last_batch_replays_the_same_cuda_graph(tiny_bundle):
    """5 latents at batch 2 with CUDA graphs: the last latent goes out padded to 2, so the
    whole edit is captured once, not once more for a batch of 1."""
    with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                      cuda_graphs=True) as p:  # fmt: skip
        assert p.pad_batches
        w = _latents(p, 5)
        batches = list(p.edit(w, ["red hair"], batch_size=2, masks=False))
        assert p.device_editor._edit.captured == 1
        whole = next(p.edit(w[4:], ["red hair"], batch_size=2, masks=False))
    assert [b.indices for b in batches] == [[0, 1], [2, 3], [4]]
    assert psnr(batches[-1].images, whole.images) > 40  # other batch shape, other kernels


@pytest.mark.gpu
def test_fused_tails_and_stacked_streams_on_cuda(tiny_bundle):
    """Fused tails, stacked streams, sub-pixel up-sampling convs and cuDNN's algorithm timing
    (FP16, NHWC, CUDA graphs), one more at a time, against the plain form (the PyTorch forms:
    no Triton epilogues)."""
    runs = []
    chain = ((False, False, False), (True, False, False), (True, True, False), (True, True, True))
    for fused, stacked, phases in chain:
        with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                          cuda_graphs=True, fuse_tails=fused, stack_streams=stacked,
                          subpixel=phases, cudnn_benchmark=phases,
                          triton_epilogues=False) as p:  # fmt: skip
            mode = p.device_editor.mode
            assert ("fused" in mode) == fused and ("stacked" in mode) == stacked
            assert ("subpixel" in mode) == phases and ("cudnnbench" in mode) == phases
            w = _latents(p, 3)
            runs.append(p.edit_batch(w, p.embed(["red hair", "blue goatee"])))
    plain = runs[0]
    for other in runs[1:]:
        assert np.isfinite(other[0]).all()
        assert psnr(other[0], plain[0]) > 40 and psnr(other[1], plain[1]) > 40
        for a, b in zip(other[2], plain[2]):
            assert np.abs(a - b).max() < 2e-2


@pytest.mark.gpu
def test_triton_masks_on_cuda(tiny_bundle, monkeypatch):
    """Each mask head as one Triton kernel (FP16, NHWC, CUDA graphs) against the default's
    PyTorch form (the Triton epilogues, on by default, do the mask heads themselves)."""
    from mcaclip.runtime.kernels import triton_ops

    calls = []
    real = triton_ops.fused_mask_head
    monkeypatch.setattr(triton_ops, "fused_mask_head", lambda *a: calls.append(1) or real(*a))
    runs = []
    for on in (False, True):
        with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                          cuda_graphs=True, triton_masks=on,
                          triton_epilogues=False) as p:  # fmt: skip
            assert ("tritonmask" in p.device_editor.mode) == on
            runs.append(p.edit_batch(_latents(p, 3), p.embed(["red hair", "blue goatee"])))
    plain, fused = runs
    assert calls  # the kernel ran (the tiny preset's 8 hidden channels padded to 16)
    assert psnr(fused[0], plain[0]) > 40 and np.abs(fused[1] - plain[1]).max() < 1e-3
    for a, b in zip(fused[2], plain[2]):
        assert np.abs(a - b).max() < 2e-3


@pytest.mark.gpu
@pytest.mark.parametrize("form", [{"subpixel": True}, {"subpixel": False}, {"phase_conv": True}])
def test_triton_epilogues_on_cuda(tiny_bundle, monkeypatch, form):
    """One Triton kernel between two styled convs (FP16, NHWC, CUDA graphs; the sub-pixel
    phases read in place, the folded transposed conv's output, or the 2x2 phases shuffled and
    blurred in the kernel) against the PyTorch form of the same convs."""
    from mcaclip.runtime.kernels import triton_ops

    calls = []
    real = triton_ops.layer_epilogue
    monkeypatch.setattr(triton_ops, "layer_epilogue", lambda *a: calls.append(1) or real(*a))
    runs = []
    for on in (False, True):
        switches = {**form, "triton_epilogues": on}
        with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                          cuda_graphs=True, **switches) as p:  # fmt: skip
            assert ("tritonepi" in p.device_editor.mode) == on
            runs.append(p.edit_batch(_latents(p, 3), p.embed(["red hair", "blue goatee"])))
    plain, fused = runs
    assert calls  # the kernel ran
    assert psnr(fused[0], plain[0]) > 40 and psnr(fused[1], plain[1]) > 40
    for a, b in zip(fused[2], plain[2]):
        assert np.abs(a - b).max() < 3e-3


@pytest.mark.gpu
def test_triton_convs_on_cuda(tiny_bundle, monkeypatch):
    """--triton-convs: the epilogue kernel computes the convs of up to 64 channels (all of the
    tiny preset's) itself: with one prompt per latent cuDNN runs none of them, with two only
    the original stream's (3 rows, not 3 + 6), and the edits match the default's; it needs the
    Triton epilogues."""
    from mcaclip.runtime.backends.torch import TorchEditor

    rows = []  # the batch of every cuDNN conv's input
    real = torch.nn.functional.conv2d
    monkeypatch.setattr(
        torch.nn.functional,
        "conv2d",
        lambda x, *a, **k: rows.append(x.shape[0]) or real(x, *a, **k),
    )
    for prompts in (["red hair"], ["red hair", "blue goatee"]):
        runs = []
        for on in (False, True):
            rows.clear()
            with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                              cuda_graphs=False, triton_convs=on) as p:  # fmt: skip
                mode = p.device_editor.mode
                assert ("tritonepi-tritonconv" in mode) == on, mode
                runs.append(p.edit_batch(_latents(p, 3), p.embed(prompts)))
            if not on:  # the styled convs: cuDNN's, both streams as one batch
                assert rows and set(rows) == {3 + 3 * len(prompts)}, rows
            elif len(prompts) == 1:
                assert not rows, rows  # none at all
            else:  # the original's once (not in each prompt's program), the edited in the kernel
                assert rows and set(rows) == {3}, rows
        plain, fused = runs
        assert psnr(fused[0], plain[0]) > 40 and psnr(fused[1], plain[1]) > 40
        for a, b in zip(fused[2], plain[2]):
            assert np.abs(a - b).max() < 3e-3
    with pytest.raises(BackendError, match="--triton-convs computes convs in the Triton"):
        TorchEditor(tiny_bundle, True, "cuda", "fp16", triton_epilogues=False, triton_convs=True)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_triton_convs_auto_on_cuda(tiny_bundle, cuda_graphs, monkeypatch):
    """--triton-convs-auto: each batch shape's layers are timed both ways on the GPU (CUDA
    events, before the graph is captured), the choice is kept per layer, and the edits match
    the default's."""
    from mcaclip.runtime.kernels import tuning

    runs, tunings = [], []
    for convs in (None, "auto"):
        with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                          cuda_graphs=cuda_graphs, triton_convs=convs) as p:  # fmt: skip
            editor = p.device_editor
            assert ("tritonconvauto" in editor.mode) == (convs == "auto"), editor.mode
            w, e = _latents(p, 3), p.embed(["red hair"])
            runs.append(p.edit_batch(w, e))
            again = p.edit_batch(w, e)  # the same shape: the choice, not timed again
            tunings.append(editor.conv_tuning)
    assert tunings[0] == {}
    ((key, t),) = tunings[1].items()
    assert key == "b3p1" and len(t["cudnn_ms"]) == len(t["kernel_ms"]) == len(t["in_kernel"])
    assert all(ms > 0 for ms in t["cudnn_ms"] + t["kernel_ms"]) and t["refused"] is None
    assert all(f or not k for f, k in zip(t["fits"], t["in_kernel"])) and any(t["fits"])
    plain, auto = runs
    assert psnr(auto[0], plain[0]) > 40 and psnr(auto[1], plain[1]) > 40
    assert np.array_equal(again[0], auto[0])

    class Alternate(tuning.LayerClock):  # the kernel "faster" at every other layer
        def __init__(self, plan):
            super().__init__(True)
            self.plan = plan

        def layers(self):
            real = super().layers()
            inside = self.plan.override
            return [(1.0 if j % 2 else 3.0) if inside[j] else 2.0 for j in range(len(real))]

    real_tune = tuning.tune
    monkeypatch.setattr(tuning, "tune", lambda plans, call: real_tune(
        plans, call, clock=Alternate(plans[0])))  # fmt: skip
    with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                      cuda_graphs=cuda_graphs, triton_convs="auto") as p:  # fmt: skip
        mixed = p.edit_batch(_latents(p, 3), p.embed(["red hair"]))
        (t,) = p.device_editor.conv_tuning.values()
    assert t["in_kernel"] == [f and j % 2 == 1 for j, f in enumerate(t["fits"])]
    assert any(t["in_kernel"]) and not all(t["in_kernel"])  # a mix of the two
    assert psnr(mixed[0], plain[0]) > 40 and psnr(mixed[1], plain[1]) > 40


@pytest.mark.gpu
@pytest.mark.parametrize("flag", ["triton_masks", "triton_epilogues", "triton_convs"])
def test_triton_switches_need_fp16_nhwc(tiny_bundle, flag):
    """Refused in FP32 or NCHW, naming the flag typed (--triton-convs, not the Triton
    epilogues it turns on)."""
    from mcaclip.runtime.backends.torch import TorchEditor

    word = "--" + flag.replace("_", "-")
    for precision, nhwc in (("fp32", None), ("fp16", False)):
        with pytest.raises(BackendError, match=f"{word} runs on FP16 NHWC features"):
            TorchEditor(tiny_bundle, True, "cuda", precision, channels_last=nhwc, **{flag: True})


@pytest.mark.gpu
def test_phase_conv_on_cuda(tiny_bundle):
    """Up-sampling convs as 2x2 phases + blur (FP16, NHWC by default, CUDA graphs; the PyTorch
    forms) against the folded sub-pixel form."""
    runs = []
    for on in (False, True):
        with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp16",
                          cuda_graphs=True, phase_conv=on,
                          triton_epilogues=False) as p:  # fmt: skip
            mode = p.device_editor.mode
            assert ("phaseconv" in mode) == bool(on) and ("foldblur" in mode) != bool(on)
            assert "nhwc" in mode
            runs.append(p.edit_batch(_latents(p, 3), p.embed(["red hair", "blue goatee"])))
    folded, phases = runs
    assert np.isfinite(phases[0]).all()
    assert psnr(phases[0], folded[0]) > 40 and psnr(phases[1], folded[1]) > 40
    for a, b in zip(phases[2], folded[2]):
        assert np.abs(a - b).max() < 2e-2


@pytest.mark.gpu
def test_fp32_cuda_matches_cpu(tiny_bundle):
    with EditPipeline(tiny_bundle, backend="torch", device="cpu") as cpu:
        w = _latents(cpu, 2)
        e = cpu.embed(["red hair"])
        ref = cpu.edit_batch(w, e)
    with EditPipeline(tiny_bundle, backend="torch", device="cuda", precision="fp32",
                      cuda_graphs=True) as gpu:  # fmt: skip
        got = gpu.edit_batch(w, e)
    # cuDNN may use TF32 for FP32 convolutions (PyTorch's default)
    assert psnr(got[0], ref[0]) > 45


@pytest.mark.gpu
def test_bench_all_backends_on_gpu(tiny_bundle, cli, tmp_path):
    import json

    from mcaclip.runtime.cli import main as mcarun

    path = tmp_path / "bench.json"
    code, stdout, err = cli(
        mcarun, "bench", "--engine", tiny_bundle, "--all-backends", "--batch-sizes", "1,2",
        "--iters", "3", "--warmup", "1", "--json", path,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(path.read_text())
    assert "torch-cuda-fp32-eager" in data["variants"]
    rows = data["variants"]["torch-cuda-fp16-cudagraphs"]["rows"]
    assert all(r["timer"] == "cuda-events" for r in rows)
    assert data["machine"]["gpu"] and data["machine"]["compute_capability"]
    timed = {n: v["mode"] for n, v in data["variants"].items() if n.startswith("torch-cuda-fp16")}
    prefix, phases = "cuda-fp16-nhwc-foldblur", "cuda-fp16-nhwc-phaseconv"
    assert timed == {  # the default (Triton epilogues, 2x2 phase convs), its plain form, the
        # PyTorch form, the convs in the kernel (all, or where faster; where faster with the
        # 2x2 phase convs), the sub-pixel convs with the epilogues, cuDNN's algorithm timing
        "torch-cuda-fp16-cudagraphs": f"{phases}-tritonepi-cudagraphs",
        "torch-cuda-fp16-plain-cudagraphs": f"{prefix}-cudagraphs",
        "torch-cuda-fp16-notritonepi-cudagraphs": f"{prefix}-subpixel-fused-stacked-cudagraphs",
        "torch-cuda-fp16-tritonconv-cudagraphs": f"{prefix}-subpixel-tritonepi-tritonconv"
        "-cudagraphs",
        "torch-cuda-fp16-tritonconvauto-cudagraphs": f"{prefix}-subpixel-tritonepi"
        "-tritonconvauto-cudagraphs",
        "torch-cuda-fp16-phaseconv-tritonconvauto-cudagraphs": f"{phases}-tritonepi"
        "-tritonconvauto-cudagraphs",
        "torch-cuda-fp16-nophaseconv-cudagraphs": f"{prefix}-subpixel-tritonepi-cudagraphs",
        "torch-cuda-fp16-cudnnbench-cudagraphs": f"{phases}-cudnnbench-tritonepi-cudagraphs",
    }, data.get("skipped")
    for name in ("tritonconvauto", "phaseconv-tritonconvauto"):
        tuning = data["variants"][f"torch-cuda-fp16-{name}-cudagraphs"]["conv_tuning"]
        assert set(tuning) == {"b1p1", "b2p1"}, (name, tuning)  # each batch size timed, once


def test_fp16_graph_channels_last_matches_fp32_on_cpu(tiny_editor, tiny_w):
    """The FP16 wrapper with NHWC inputs and 4-D weights: finite, close to FP32 (CPU half)."""
    from mcaclip.nn.graphs import Fp16Graph, build_graph
    from mcaclip.nn.stylegan2 import fuse_tails

    module = build_graph(tiny_editor, "masked_generator").eval()
    w_edit = tiny_w[:, None] + 0.1
    e = torch.randn(
        2, 1, tiny_editor.preset.clip.embed_dim, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ref = module(tiny_w, w_edit, e)
        for channels_last, fused in ((False, False), (True, False), (False, True), (True, True)):
            half = fuse_tails(Fp16Graph(module, channels_last=channels_last).eval(), fused)
            out = half(tiny_w, w_edit, e)
            assert out[0].dtype == torch.float32 and torch.isfinite(out[0]).all()
            assert psnr(out[0].numpy(), ref[0].numpy()) > 40
            convs = [p for p in half.parameters() if p.ndim == 4]
            assert (
                all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
                == (channels_last)
                or not convs
            )


@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="needs a C++ compiler (torch.compile's CPU code generator)",
)
@pytest.mark.parametrize("stacked", [False, True])
def test_compiled_fast_forms_match_eager_on_cpu(tiny_editor, stacked):
    """What --compile runs on a GPU (stencil FIR filters, here with the fused tails and frozen
    NHWC weights; with stacked streams, in-place blends into views and folded sub-pixel
    up-sampling convs, else the 2x2 phase convs and their blur) traces through torch.compile
    and matches the plain eager masked generator (CPU, FP32, ~25 s each)."""
    from mcaclip.nn.editor import stack_streams
    from mcaclip.nn.graphs import build_graph
    from mcaclip.nn.stylegan2 import (
        StyledConv,
        fold_blur,
        freeze_weights,
        fuse_tails,
        phase_conv,
        stencil_blur,
        subpixel,
    )

    for m in tiny_editor.modules():
        if isinstance(m, StyledConv):
            m.noise.weight.data.fill_(0.5)
    module = build_graph(tiny_editor, "masked_generator").eval()
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(
        2, tiny_editor.generator.n_latent, tiny_editor.generator.style_dim, generator=gen
    )
    w_edit = w[:, None] + 0.1 * torch.randn(2, 1, *w.shape[1:], generator=gen)
    e = torch.randn(2, 1, tiny_editor.preset.clip.embed_dim, generator=gen)
    with torch.inference_mode():
        ref = module(w, w_edit, e)
        fast = stack_streams(stencil_blur(fuse_tails(module)), stacked)
        freeze_weights(subpixel(fold_blur(fast)) if stacked else phase_conv(fast), True)
        w, w_edit, e = (t.contiguous() for t in (w, w_edit, e))
        compiled = torch.compile(fast, dynamic=False)
        try:
            out = compiled(w, w_edit, e)
        finally:
            torch._dynamo.reset()
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("stacked, phases", [(False, False), (True, False), (False, True)])
def test_fast_forms_trace_as_one_graph(tiny_editor, tiny_w, stacked, phases):
    """The masked generator as --compile gets it on a GPU (FP16, NHWC, folded sub-pixel convs
    or 2x2 phase convs, frozen weights, stencil FIR; stacked streams or not) traces without a
    graph break: with
    breaks, the pieces recompile per layer past Dynamo's limit and run eagerly. torch 2.11
    broke the graph at each in-place blend into an NHWC slice of the stacked batch (2.9x slower
    on an H100); the torch CI runs traces that form, so this test guards against new breaks,
    and the 2.11 case was checked by hand (26 graphs before the fix, 1 after)."""
    from mcaclip.nn.editor import stack_streams
    from mcaclip.nn.graphs import Fp16Graph, build_graph
    from mcaclip.nn.stylegan2 import fold_blur, freeze_weights, phase_conv, stencil_blur, subpixel

    module = Fp16Graph(build_graph(tiny_editor, "masked_generator"), channels_last=True).eval()
    stack_streams(
        stencil_blur(phase_conv(module) if phases else subpixel(fold_blur(module))), stacked
    )
    freeze_weights(module, channels_last=True)
    w_edit = tiny_w[:, None] + 0.1
    e = torch.randn(tiny_w.shape[0], 1, tiny_editor.preset.clip.embed_dim)
    try:
        with torch.inference_mode():
            explained = torch._dynamo.explain(module)(tiny_w, w_edit, e)
    finally:
        torch._dynamo.reset()
    reasons = [str(r.reason).splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_break_count == 0 and explained.graph_count == 1, reasons
