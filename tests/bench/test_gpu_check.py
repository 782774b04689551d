"""The GPU check's plan runs end to end on CPU (--dry-run), and its FLOP count is the paper's."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.gpu_check import feature_bytes, main, summarize, synthesis_flops, up_form
from mcaclip.config import load_preset


def test_flops_of_a_1024_edit():
    # two synthesis passes of config-f at 1024 px: about 297 GFLOP (the figure)
    g = load_preset("ffhq-1024").generator
    assert 2 * synthesis_flops(g) / 1e9 == pytest.approx(297, abs=1)
    # what the GPU runs: the folded 6x6 up-sampling kernels (or their 3x3 sub-pixel phases)
    # have 4x the transposed conv's taps, the 2x2 phases 16/9 of them
    assert 2 * synthesis_flops(g, "folded") / 1e9 == pytest.approx(567.5, abs=0.1)
    assert 2 * synthesis_flops(g, "phases") / 1e9 == pytest.approx(367.2, abs=0.1)


def test_up_form_of_a_mode():
    assert up_form("cuda-fp16-nhwc-foldblur-subpixel-compile-cudagraphs") == "folded"
    assert up_form("cuda-fp16-nhwc-phaseconv-tritonmask-compile-cudagraphs") == "phases"
    assert up_form("cuda-fp16-nhwc-compile-cudagraphs") == "transposed"
    assert up_form(None) == "transposed"  # ONNX Runtime, TensorRT: as exported


def test_summary_ratios():
    rows = lambda ms, b1=None: [  # noqa: E731
        {"batch": 8, "stage": "end_to_end_device", "p50_ms": ms},
        {"batch": 8, "stage": "fusion", "p50_ms": 1.0},
        {"batch": 1, "stage": "end_to_end_device", "p50_ms": b1 or ms / 4},
    ]
    bench = {
        "baseline": "torch-cuda-fp32-eager",
        "variants": {
            "torch-cuda-fp32-eager": {"rows": rows(80.0)},
            "fast": {"rows": rows(20.0), "mode": "cuda-fp16-nhwc-foldblur-compile-cudagraphs"},
            "fast-at-b8-only": {"rows": rows(20.0, b1=10.0)},  # 2x at batch 1
        },
    }
    executed = {"transposed": 297e9, "folded": 567e9, "phases": 367e9}
    s = summarize(bench, 297e9, 742.5, bytes_per_edit=1e9, bandwidth_gbs=2500, executed=executed)
    assert s["executed_gflop_per_edit"]["fast"] == pytest.approx(567)
    assert s["executed_gflop_per_edit"]["torch-cuda-fp32-eager"] == pytest.approx(297)
    assert s["achieved_tflops_b8"]["fast"] == pytest.approx(567e9 / 2.5e-3 / 1e12)
    assert s["lower_bound_ms_per_edit"] == pytest.approx(0.4)
    assert s["memory_floor_ms_per_edit"] == pytest.approx(0.4)
    assert s["x_memory_floor"]["fast"]["b8:end_to_end_device"] == pytest.approx(6.25)
    t = s["targets"]
    assert t["baseline_is_fp32_eager"]
    assert t["min_speedup_vs_baseline"]["fast"] == pytest.approx(4.0)
    assert t["min_speedup_vs_baseline"]["fast-at-b8-only"] == pytest.approx(2.0)  # batch 1
    assert t["speedup_3x_met"] == ["fast"]
    assert t["x_lower_bound_b8"]["fast"] == pytest.approx(6.25)
    assert t["within_4x_of_lower_bound_b8_met"] == []  # 6.25x: missed
    unmeasured = summarize(bench, flops=297e9, peak_tflops=None)["targets"]
    assert unmeasured["within_4x_of_lower_bound_b8_met"] is None  # no peak: no verdict
    assert s["ms_per_edit"]["fast"]["b8:end_to_end_device"] == pytest.approx(2.5)
    assert s["speedup_vs_baseline"]["fast"]["b8:end_to_end_device"] == pytest.approx(4.0)
    assert s["x_lower_bound"]["fast"]["b8:end_to_end_device"] == pytest.approx(6.25)


def test_feature_bytes_of_a_1024_edit():
    # 131.4 M feature elements per pass (17 styled convs, 4 px to 1024 px), FP16, written and
    # read once: 0.53 GB per pass, 1.05 GB per edit
    g = load_preset("ffhq-1024").generator
    assert feature_bytes(g) / 1e9 == pytest.approx(0.5256, abs=1e-3)
    assert feature_bytes(g, bytes_per_element=4) == 2 * feature_bytes(g)


def test_layer_work_of_a_1024_call():
    """Per layer of a batch-8 call (16 samples: both streams): the conv's GFLOP add up to the
    edit's count without the ToRGBs; the last layer's epilogue traffic, worked out by hand."""
    from benchmarks.gpu_check import layer_work

    g = load_preset("ffhq-1024").generator
    work = layer_work(g, batch=8, up="folded")
    assert len(work) == 17 and work[15]["resolution"] == 1024 and work[15]["in_channels"] == 64
    rgb = sum(r * r * c * 3 for i, (r, c) in enumerate(zip(g.layer_resolutions(),
              g.layer_channels())) if i % 2 == 0)  # fmt: skip
    per_edit = (synthesis_flops(g) - 2 * rgb) * 2  # two streams
    assert sum(w["bound_gflop"] for w in work) == pytest.approx(8 * per_edit / 1e9)
    assert work[15]["gflop"] == pytest.approx(4 * work[15]["bound_gflop"])  # folded: 4x taps
    assert work[16]["gflop"] == work[16]["bound_gflop"]
    # layer 16: conv output read (16 x 1024^2 x 32 FP16), no next input, 8 masks (FP16), the
    # new skips (16 x 3 x 1024^2 FP32), the previous ones (at 512 px)
    mb = lambda n: n / 1e6  # noqa: E731
    rest = mb(8 * 2**20 * 2 + 16 * 3 * 2**20 * 4 + 16 * 3 * 2**18 * 4)
    assert work[16]["epilogue_mb"] == pytest.approx(mb(16 * 2**20 * 32 * 2) + rest)
    assert work[16]["fused_mb"] == work[16]["epilogue_mb"]  # a 3x3 conv: input as big as output
    # layer 15 (the up-sampling conv): its input is the 512 px map, 64 channels; no skip
    next_input = mb(16 * 2**20 * 32 * 2)
    assert work[15]["fused_mb"] == pytest.approx(
        mb(16 * 2**18 * 64 * 2) + next_input + mb(8 * 2**20 * 2)
    )


def test_layer_times_split_a_profile_at_the_epilogues():
    """A call's kernels in launch order, split into layers after each epilogue launch: the
    prelude before the first conv, convs, epilogue and the rest per layer, a layer without a
    conv kernel (the conv in the epilogue), and the rates from each layer's work."""
    from benchmarks.gpu_check import layer_times

    work = [
        {"layer": i, "resolution": 4 << i, "channels": 8, "gflop": g, "bound_gflop": b,
         "epilogue_mb": mb, "fused_mb": f}
        for i, (g, b, mb, f) in enumerate([(2.0, 2.0, 100.0, 100.0), (8.0, 2.0, 200.0, 50.0),
                                           (6.0, 6.0, 300.0, 90.0)])
    ]  # fmt: skip
    conv = "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc"
    epi = "triton_layer_epilogue"
    kernels = [
        ("void gemmSN_TN_kernel<float, 128, cublasGemvTensorStridedBatched>", 0.25),  # prelude
        ("void at::native::vectorized_elementwise_kernel<4, conversion_op>", 0.25),
        (conv, 1.0), (epi, 0.5),  # layer 0
        ("void gemmSN_TN_kernel<float, 128, cublasGemvTensorStridedBatched>", 0.125),
        (conv, 2.0), (conv + "_splitk_reduction", 0.5), (epi, 1.0),  # layer 1
        (epi, 3.0),  # layer 2: the conv in the epilogue kernel
        ("void at::native::elementwise_kernel<direct_copy_kernel_cuda>", 0.75),  # after
    ]  # fmt: skip
    t = layer_times(kernels, work, peak_tflops=500.0, copy_gbs=400.0, convs_in_kernel=True)
    assert t["prelude_ms"] == 0.5 and t["after_ms"] == 0.75
    assert t["total_ms"] == pytest.approx(9.375) and t["layers_ms"] == pytest.approx(8.125)
    l0, l1, l2 = t["rows"]
    assert (l0["conv_ms"], l0["epilogue_ms"], l0["other_ms"]) == (1.0, 0.5, 0.0)
    assert (l1["conv_ms"], l1["epilogue_ms"], l1["other_ms"]) == (2.5, 1.0, 0.125)
    assert l1["conv_tflops"] == pytest.approx(8.0 / 2.5) and l1["epilogue_gbs"] == 200.0
    assert l1["x_lower_bound"] == pytest.approx(3.625 / (2.0 / 500.0))
    assert l2["conv_in_epilogue"] and l2["conv_ms"] == 0 and l2["conv_tflops"] is None
    assert l2["epilogue_tflops"] == 2.0 and l2["epilogue_gbs"] == 30.0  # the input's traffic
    assert l2["epilogue_over_copy_bandwidth"] == pytest.approx(30.0 / 400.0)
    assert t["x_lower_bound"] == pytest.approx(9.375 / (10.0 / 500.0))
    # without --triton-convs a layer with no conv kernel is not one whose conv is in the kernel
    plain = layer_times(kernels, work)["rows"][2]
    assert not plain["conv_in_epilogue"] and plain["epilogue_tflops"] is None
    assert plain["epilogue_gbs"] == 100.0  # the conv output's traffic
    # no epilogue launches (the PyTorch form), or not one per layer: no split
    assert layer_times([k for k in kernels if k[0] != epi], work) is None
    assert layer_times(kernels[:-3], work) is None


def test_dry_run_writes_every_step(tmp_path):
    out = tmp_path / "check.json"
    assert main(["--dry-run", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    report = json.loads(out.read_text())
    assert report["dry_run"] and all(step["ok"] for step in report["steps"].values())
    assert report["left_out_for_time"] == []  # the dry run fits its budget
    assert set(report["steps"]) == {"environment", "gpu_tests", "bundle", "parity", "bench",
                                    "epilogue_tuning", "profile", "edit", "summary"}  # fmt: skip
    tuning = report["epilogue_tuning"]  # the plan: the 32 and 16 px launches of both
    if "skipped" not in tuning:  # up-sampling forms and of --triton-convs (Triton missing:
        forms = ("subpixel", "convs", "phases")  # said so)
        assert tuning["dry_run"] and set(tuning["options_per_launch"]) == {
            f"{form} layer {layer}" for form in forms for layer in (3, 4, 5, 6)
        }
        assert all(n >= 1 for n in tuning["options_per_launch"].values())
    edit = report["edit"]  # mcarun edit into PNG files, timed per output form
    assert edit["mode"] == "cpu-fp32-fused-eager" and edit["latents"] == 4
    for form in ("edit_only", "default", "jpg", "level6_main_thread"):
        assert edit[form]["edits_per_s"] > 0
    assert edit["default"]["mib_per_edit_on_disk"] > 0
    assert "gpu_peak_reserved_mib" not in edit  # GPU only
    profile = report["profile"]
    assert profile["plain"]["mode"] == "cpu-fp32-eager"
    assert profile["default"]["mode"] == "cpu-fp32-foldblur-subpixel-fused-stacked-eager"
    assert profile["plain"]["kernels"] and profile["plain"]["total_ms"] > 0
    assert "compiled" not in profile  # GPU only
    by_kind = profile["plain"]["by_kind"]
    assert list(by_kind) == ["cpu"] and by_kind["cpu"] == pytest.approx(
        profile["plain"]["total_ms"]
    )
    ops = profile["default"]["operators"]  # the top ones: which depends on the CPU's timing
    assert ops and all(op["op"].startswith("aten::") for op in ops)
    assert any(op["shapes"].startswith("[[") for op in ops)  # input shapes recorded
    assert report["gpu_tests"]["rc"] == 0  # the gpu/trt tests are collected
    assert "torch-cpu-fp32-eager" in report["bench"]["variants"]
    assert "tensorrt" in " ".join(report["bench"]["skipped"])  # named, not hidden


def test_quality_benchmark_quick(tmp_path):
    """The toy-world quality benchmark end to end at smoke size, on the shipped toy networks."""
    from benchmarks.quality_toyfaces import METHODS, NO_EDIT
    from benchmarks.quality_toyfaces import main as quality

    assert quality(["--quick", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quality_toyfaces_quick.json").read_text())
    assert set(report["results"]) == {"per-prompt", "multi"}  # both settings by default
    for setting, results in report["results"].items():
        assert set(results) == {*METHODS, NO_EDIT}
        for method, per_prompt in results.items():
            assert set(per_prompt) == {*report["prompts"], "all"}
            for row in per_prompt.values():
                assert 0 <= row["success"] <= 1 and 0 <= row["attributes_kept"] <= 1
                assert row["success_std"] == 0  # one seed in --quick
                unmasked = ("styleclip-mapper", "cf-clip", "mca-wo-pre", NO_EDIT)
                assert (row["mask_iou"] is None) == (method in unmasked)
        seed_rows = report["runs"][setting]["0"]["mca-clip"]
        mean = sum(r["success"] for r in seed_rows.values()) / len(seed_rows)
        assert results["mca-clip"]["all"]["success"] == pytest.approx(mean)
    assert (tmp_path / "quality_toyfaces_quick.png").is_file()
    assert (tmp_path / "quality_toyfaces_quick_multi.png").is_file()
    md = (tmp_path / "quality_toyfaces_quick.md").read_text()
    assert "## per-prompt" in md and "## multi" in md and "| mca-clip |" in md and " ± " in md
    # a sweep: one method, other mask weights, its own files; trained runs are keyed by setting
    args = ["--quick", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)]
    sweep = [*args, "--methods", "mca-clip", "--area-weight", "0.02", "--name", "sweep"]
    assert quality(sweep) == 0
    report = json.loads((tmp_path / "sweep.json").read_text())
    assert set(report["results"]["multi"]) == {"mca-clip", NO_EDIT}
    assert report["mask_weights"]["area"] == 0.02
    assert len(list((tmp_path / "runs_quick").glob("*/mca-clip"))) == 2  # two mask weights
    toy = [*sweep[:-1], "toy", "--nce-distortion", "0.25", "--mask-init", "0.9"]
    assert quality(toy) == 0
    assert json.loads((tmp_path / "toy.json").read_text())["recipe"] == {
        "nce_distortion": 0.25,
        "mask_init": 0.9,
    }
    assert len(list((tmp_path / "runs_quick").glob("*-mi0.9-nd0.25/mca-clip"))) == 1
    with pytest.raises(SystemExit):
        quality([*args, "--methods", "mca-clap"])


def test_compiler_warnings_are_kept_once():
    """What made the stacked compiled run slow on an H100 (run 2's log): recorded in the JSON."""
    from benchmarks.gpu_check import compiler_warnings

    prefix = "W1127 01:06:13.755000 623 torch/_dynamo/convert_frame.py:1743] [8/8] "
    stderr = "\n".join(
        [
            "batch stage  p50 ms",
            prefix + "torch._dynamo hit config.recompile_limit (8)",
            prefix + "   function: 'mask' (/work/main/mcaclip/nn/editor.py:101)",
            prefix + "   last reason: 8/7: layer == 7",
            prefix + 'To log all recompilation reasons, use TORCH_LOGS="recompiles".',
            prefix.replace("[8/8]", "[9/8]") + "torch._dynamo hit config.recompile_limit (8)",
        ]
    )
    assert compiler_warnings(stderr) == [
        "torch._dynamo hit config.recompile_limit (8)",
        "function: 'mask' (/work/main/mcaclip/nn/editor.py:101)",
        "last reason: 8/7: layer == 7",
    ]
    assert compiler_warnings("batch stage  p50 ms\n    8 end_to_end  5.5") == []


def test_kernel_kinds():
    """Names of the kernels in the H100 profiles (gpu_check.json) sorted into kinds."""
    from benchmarks.gpu_check import kernel_kind

    names = {
        "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x64": "conv",
        "sm90_xmma_dgrad_implicit_gemm_indexed_f16f16_f16f32_f32_nhwckrsc_nhwc_tiles": "conv",
        "void at::native::(anonymous namespace)::conv_depthwise2d_forward_kernel_generic": "conv",
        "void cudnn::winograd_nonfused::winogradForwardData4x4<float, __half>": "conv",
        "void gemmSN_TN_kernel<float, 128, 16, 2, 4, 8, 9, false, cublasGemvTensor": "matmul",
        "void at::native::unrolled_elementwise_kernel<convert_float_half>": "elementwise",
        "void at::native::vectorized_elementwise_kernel<4, conversion_op>": "elementwise",
        "cutlass::Kernel<cutlass_80_tensorop_f16_s16816fprop_optimized_f16_64x64_64x5>": "conv",
        "triton_poi_fused_add_clamp_leaky_relu_mul_0": "triton",
        "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::"
        "native::direct_copy_kernel_cuda": "copy",
        "void at::native::vectorized_elementwise_kernel<8, at::native::(anonymous namespace)::"
        "leaky_relu_kernel": "elementwise",
    }
    assert {n: kernel_kind(n) for n in names} == names


def test_triton_kernel_stats_read_the_kernel_caches(monkeypatch):
    """Registers and spills per compiled specialization, from Triton's per-device caches (a
    stand-in cache here: the CPU compiles none)."""
    from types import SimpleNamespace

    from benchmarks.gpu_check import triton_kernel_stats
    from mcaclip.runtime.kernels import triton_ops

    compiled = SimpleNamespace(
        n_regs=96, n_spills=0, metadata=SimpleNamespace(num_warps=4, shared=0)
    )
    fn = SimpleNamespace(device_caches={0: ({"key": compiled}, {}, None, None, None)})
    monkeypatch.setattr(triton_ops, "_EPILOGUE", fn)
    monkeypatch.setattr(triton_ops, "_KERNEL", None)
    assert triton_kernel_stats() == [
        {"kernel": "layer_epilogue", "device": "0", "n_regs": 96, "n_spills": 0, "num_warps": 4,
         "shared_bytes": 0}
    ]  # fmt: skip


def test_epilogue_tuning_runs_in_its_own_process(monkeypatch):
    """On a GPU the tuning step runs benchmarks/triton_tuning.py in a subprocess and reads its
    JSON back; a failing run is a failed step with the run's last words."""
    pytest.importorskip("triton", reason="Triton is not installed (torch's CUDA wheels bring it)")
    from benchmarks import gpu_check

    calls = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw))
        out = Path(cmd[cmd.index("--json") + 1])
        rows = [{"form": "subpixel", "layer": 16, "chosen": True, "gbs": 1500.0},
                {"form": "subpixel", "layer": 16, "chosen": False, "gbs": 1800.0}]  # fmt: skip
        out.write_text(json.dumps({"rows": rows}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    monkeypatch.setattr(gpu_check, "DEADLINE", [time.perf_counter() + 400])
    got = gpu_check.epilogue_tuning("ffhq-1024", 8, dry=False, copy_gbs=3000.0)
    cmd, kw = calls[0]
    assert cmd[1:3] == ["-m", "benchmarks.triton_tuning"] and kw["timeout"] > 60
    assert cmd[cmd.index("--smallest") + 1] == str(512 * 512)
    assert got["chosen_over_copy_bandwidth"] == {"subpixel layer 16": 0.5}

    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "CUDA error: an illegal memory access")

    monkeypatch.setattr(gpu_check.subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        gpu_check.epilogue_tuning("ffhq-1024", 8, dry=False)


def test_a_bench_stopped_part_way_keeps_what_it_measured(monkeypatch, tmp_path):
    """mcarun bench rewrites its JSON after each configuration: stopped by its time limit (or
    failing) part-way, the check keeps the configurations timed, names the ones not run and
    records the step as failed; stopped before any, the step fails with nothing kept."""
    from benchmarks import gpu_check

    partial = {"variants": {"torch-cuda-fp32-eager": {"rows": []}}, "complete": False,
               "pending": ["torch-cuda-fp16-cudagraphs"]}  # fmt: skip

    def stopped(write: bool):
        def fake_run(cmd, **kw):
            if write:
                Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps(partial))
            raise subprocess.TimeoutExpired(cmd, kw["timeout"], output=b"", stderr=b"timing")

        return fake_run

    monkeypatch.setattr(gpu_check, "DEADLINE", [time.perf_counter() + 400])
    monkeypatch.setattr(gpu_check, "SAVE", [])  # (a dry run's test may have set one)
    report = {"steps": {}}
    monkeypatch.setattr(gpu_check.subprocess, "run", stopped(True))
    got = gpu_check.step(report, "bench", lambda: gpu_check.bench(tmp_path, "1,8", 3, 1, 300))
    assert list(got["variants"]) == ["torch-cuda-fp32-eager"]
    step = report["steps"]["bench"]
    assert step["ok"] is False and "300 s limit" in step["error"], step
    assert "torch-cuda-fp16-cudagraphs" in step["error"]

    monkeypatch.setattr(gpu_check.subprocess, "run", stopped(False))
    got = gpu_check.step(report, "bench", lambda: gpu_check.bench(tmp_path, "1,8", 3, 1, 300))
    assert got is None and report["steps"]["bench"]["ok"] is False
    assert "limit" in report["steps"]["bench"]["error"]

    def done(cmd, **kw):  # a whole run: not marked
        Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({**partial, "complete": True}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(gpu_check.subprocess, "run", done)
    got = gpu_check.step(report, "bench", lambda: gpu_check.bench(tmp_path, "1,8", 3, 1, 300))
    assert report["steps"]["bench"]["ok"] is True and "incomplete" not in got


def test_quality_aggregate_over_seeds():
    """Mean over seeds of each seed's mean over prompts, +- the seeds' standard deviation."""
    from benchmarks.quality_toyfaces import COLUMNS, aggregate, summary_table

    def row(success):
        return {key: None for key, _, _ in COLUMNS} | {"success": success}

    runs = {
        0: {"m": {"a": row(0.2), "b": row(0.4)}},
        1: {"m": {"a": row(0.6), "b": row(0.8)}},
    }
    out = aggregate(runs)["m"]
    assert out["all"]["success"] == pytest.approx(0.5)  # seeds' means 0.3 and 0.7
    assert out["all"]["success_std"] == pytest.approx(0.2)
    assert out["a"]["success"] == pytest.approx(0.4) and out["a"]["success_std"] == pytest.approx(
        0.2
    )
    assert out["all"]["mask_iou"] is None
    table = summary_table(aggregate(runs))
    assert "| m | 50% ± 20% |" in table and "| m | 40% ± 20% | 60% ± 20% |" in table


def test_quality_benchmark_demo_quick(tmp_path):
    """--demo scores the shipped demo editor, no training, on a tuned and an untuned prompt."""
    from benchmarks.quality_toyfaces import UNTUNED_PROMPTS, prompt_changes
    from benchmarks.quality_toyfaces import main as quality

    assert prompt_changes("green beard") == ({"beard": "full", "beard_colour": "green"}, "beard")
    assert quality(["--demo", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quality_toyfaces_demo_quick.json").read_text())
    assert report["untuned_prompts"] == [UNTUNED_PROMPTS[-1]]
    summary = report["summary"]["demo editor"]
    assert 0 <= summary["untuned prompts"]["success"] <= 1
    assert summary["benchmark prompts"]["mask_iou"] is not None
    assert (
        "| demo editor | untuned prompts |"
        in (tmp_path / "quality_toyfaces_demo_quick.md").read_text()
    )


def test_quality_diagnose_quick(tmp_path):
    """The chain's diagnosis at smoke size (links 1-3) on the shipped toy networks."""
    from benchmarks.quality_diagnose import NCE_DISTORTIONS
    from benchmarks.quality_diagnose import main as diagnose

    args = ["--quick", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)]
    assert diagnose(args) == 0
    report = json.loads((tmp_path / "quality_diagnose_quick.json").read_text())
    assert len(report["clip"]["prompts"]) == 2
    for row in report["clip"]["prompts"].values():
        for share in ("cosine_oracle_over_original", "direction_oracle_over_wrong_parts"):
            assert 0 <= row[share] <= 1
        for d in NCE_DISTORTIONS[1:]:
            assert row[f"nce_d{d:g}_oracle"] > 0 and row["nce_oracle"] > 0
    assert set(report["upper_bound"]) == set(report["clip"]["prompts"])
    mapper = report["mapper"]["mca-clip"]
    assert all(len(r["mask_inside_per_layer"]) == 9 for r in mapper.values())
    md = (tmp_path / "quality_diagnose_quick.md").read_text()
    assert "distortion 0.25" in md and "Mapper (link 3)" in md and "Upper bound (link 2)" in md
