"""One GPU check, one JSON: ``bash benchmarks/gpu_check.sh`` (``--dry-run`` checks the plan on CPU).

Steps (each one's outcome is recorded; a failing step does not stop the next):

1. ``environment``: GPU, driver, versions, the measured FP16 tensor-core peak (a large matrix
   product) and copy bandwidth (a large device-to-device copy), which give the compute lower
   bound and the memory floor of an edit.
2. ``gpu_tests``: ``pytest -m "gpu or trt"`` (TensorRT tests skip where it is not installed).
3. ``bundle``: an ffhq-1024 bundle with random weights for the torch backend (no ONNX export).
4. ``parity``: FP16 + CUDA graphs vs FP32 eager on the same latents: PSNR of edited and
   original images, largest mask difference; for the default fast path (the Triton
   epilogues with the 2x2 phase convs, blurred in the kernel, where they are the default),
   its plain form (``PLAIN_FP16``: folded blur, no sub-pixel convs, fused tails, stacked
   streams or Triton epilogues), the PyTorch form (no Triton epilogues: sub-pixel), the
   sub-pixel convs with the epilogues (``subpixel``, the default before), ``triton_masks``,
   ``triton_convs`` (the big maps' convs in the epilogue kernel), ``triton_convs_auto``
   (there only where the layer was faster that way), ``phase_triton_convs_auto`` (the same
   with the 2x2 phase up-sampling convs, which stay cuDNN's) and the 2x2 phases in PyTorch
   (``phase_conv_pytorch``; a failure is recorded per form), and the registers and spills of
   every Triton kernel specialization compiled on the way.
5. ``bench``: ``mcarun bench --all-backends`` at batch 1 and 8 (CUDA-event timing): FP32 eager,
   FP16 + CUDA graphs as default, in the plain form (``PLAIN_FP16``), in the PyTorch form
   (``--no-triton-epilogues``: the default before the Triton epilogues), with
   ``--triton-convs``, with ``--triton-convs-auto`` (its variant's ``conv_tuning``: per
   batch, each layer's ms with its conv in cuDNN and in the kernel, and the choice), with
   ``--phase-conv --triton-convs-auto`` (the 2x2 phase up-sampling convs, the 512 and 1024 px
   layers' other convs in the kernel where faster), with the
   sub-pixel convs instead of the 2x2 phases (``--no-phase-conv``: the default before, 2.5 ms
   more in cuDNN per 1024 px batch-8 call on an H200, no blur in the kernel) and with
   ``--cudnn-benchmark``.
6. ``bench_compile``, ``bench_compile_<name>``: the first three of ``--compile-variants``
   (default ``default,tritonconv,subpixel,pytorch,phaseconv-tritonmask,phaseconv,
   tritonmask``; see ``COMPILE_VARIANTS``), each in its own process (with time left; so are the
   next steps): the compiled default at every batch size, then at the largest
   ``--triton-convs`` and the sub-pixel form with the epilogues (the compiled default
   before).
   ``epilogue_tuning``: the layer-epilogue Triton kernel alone on the 1024 px layers' launches
   (both up-sampling forms, and ``--triton-convs``' launches), with the options chosen from
   ptxas's reports and with others
   (``benchmarks/triton_tuning.py``): the chosen options' time over the fastest, and GB/s
   (at most ``TUNING_SECONDS``; ``--no-tuning`` leaves it out); options the GPU refuses for
   its resources are listed (``failed``), and the step fails if the chosen ones are.
7. ``profile``: the top GPU kernels, the GPU time per kind of kernel (convolutions, Triton,
   element-wise, copies), the top operators with their input shapes, and (``layers``, where
   the Triton epilogues run) the time per synthesis layer (its convs, its epilogue, the rest,
   their TFLOP/s and GB/s, and its time over its share of the lower bound), of one FP16 edit
   at the largest batch: uncompiled plain, default, its PyTorch form and ``--triton-convs``,
   and the default under ``--compile`` (with time left: it compiles for
   about a minute) to show where the best time so far goes.
8. ``edit``: what ``mcarun edit`` delivers at 1024 px, edits per second into PNG files (32
   latents, largest batch, default fast path): the edits alone, then writing with the defaults
   (level-1 PNGs on background writers, uint8 pictures converted on the GPU), as JPEG
   (``--format jpg``), and level-6 PNGs in the main thread (the old way of writing); and the
   peak GPU memory all that took (what a card needs for ``mcarun edit`` at that batch).
9. ``bench_compile_<name>``: the other variants, at the largest batch, as time allows (by
   default the PyTorch form, the phase convs with Triton mask heads, then each alone;
   ``stacked``, ``nofold``, ``autotune``, ``fused`` and the uncompiled ``eager-subpixel``, as
   ``bench_eager-subpixel``, on request).
   ``nofold`` measured as fast as the folded blur on an H100; ``stacked`` (off by default
   under compile: its one compiled measurement ran with graph breaks, fixed since),
   ``autotune`` (max-autotune: Triton conv templates with fused tails), ``fused`` (the fused
   tails compiled: ToRGB as a matrix product), ``tritonmask`` (each mask head as one Triton
   kernel) and ``phaseconv`` (up-sampling convs as 2x2 phase convs, then the blur, in
   PyTorch) have not run alone yet.
10. ``summary``: ms per edit of every variant next to the lower bound and the memory floor,
    speed-ups vs FP32 eager, which variants meet the targets; the GFLOP each variant's convs
    execute (the folded up-sampling convs run 1.9x the lower bound's count, the 2x2 phases
    1.24x) and the rate that makes at batch 8.

``--no-tests``, ``--no-profile``, ``--no-tuning`` and ``--no-edit`` leave those steps out (a
second run on the same code).

Dry run: tiny-32 on the CPU, batches 1 and 2, two timed runs; GPU-only variants are listed as
skipped, pytest only collects the GPU tests. It proves every step and the JSON layout work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# multiply-adds per output pixel and channel pair of an up-sampling 3x3 conv, in each form the
# torch backend can run it: the transposed conv (the lower bound's count); the blur folded in
# (a 6x6 transposed kernel, or its sub-pixel phases: 36 taps per four output pixels); the 2x2
# phase form (--phase-conv: 16 taps per four, every one doing work with StyleGAN2's blur,
# whose (1, 1) factor it folds in; 7 of them zero with a blur that has none)
UP_TAPS = {"transposed": 9 / 4, "folded": 9.0, "phases": 4.0}


def synthesis_flops(config, up: str = "transposed") -> float:
    """FLOPs (2 per multiply-add) of one synthesis pass: styled 3x3 convs and ToRGB 1x1 convs.
    ``up``: how the up-sampling convs are counted (``UP_TAPS``); the default, at their input
    resolution as a transposed conv computes them, gives the lower bound; the others what the
    GPU executes in that form. Modulation, blur, noise and activations are left out
    (memory-bound, no tensor cores)."""
    rgb = sum(  # a ToRGB after conv1 and after each resolution's 2nd conv
        r * r * c * 3
        for i, (r, c) in enumerate(zip(config.layer_resolutions(), config.layer_channels()))
        if i == 0 or i % 2 == 0
    )
    return 2.0 * (sum(conv_macs(config, up)) + rgb)


def conv_macs(config, up: str = "transposed") -> list[float]:
    """Multiply-adds per output sample of each styled 3x3 conv, in order; the up-sampling ones
    (the first of each resolution) counted as form ``up`` does them (``UP_TAPS``)."""
    res, ch = config.layer_resolutions(), config.layer_channels()
    macs = []
    for i, (r, c) in enumerate(zip(res, ch)):
        upsampling = i > 0 and i % 2 == 1
        macs.append(r * r * ch[max(i - 1, 0)] * c * (UP_TAPS[up] if upsampling else 9))
    return macs


def up_form(mode: str | None) -> str:
    """The up-sampling conv form (``UP_TAPS``) a bench variant ran, from its ``mode``
    (``cuda-fp16-nhwc-foldblur-subpixel-...``); ONNX Runtime and TensorRT: transposed, as
    exported."""
    words = (mode or "").split("-")
    return "folded" if "foldblur" in words else "phases" if "phaseconv" in words else "transposed"


def feature_bytes(config, bytes_per_element: int = 2) -> float:
    """The least DRAM traffic of one synthesis pass: every styled conv's output written once
    and read once, in FP16. Everything else (modulation, noise, bias, activation, clamp, blend,
    ToRGB) fused into the convs' prologues and epilogues, weights and the 3-channel RGB skip
    left out: a floor no real implementation reaches, beside the compute bound."""
    res, ch = config.layer_resolutions(), config.layer_channels()
    return 2.0 * bytes_per_element * sum(c * r * r for r, c in zip(res, ch))


def measure_copy_bandwidth(mib: int = 2048, iters: int = 20) -> float:
    """Achieved device memory bandwidth in GB/s: bytes read + written by a large tensor copy."""
    a = torch.empty(mib << 20, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / iters
    gbs = 2 * a.numel() / seconds / 1e9
    del a, b
    torch.cuda.empty_cache()  # 4 GiB back before the benchmarks
    return gbs


def measure_fp16_peak(n: int = 8192, iters: int = 20) -> float:
    """Achieved FP16 matrix-product TFLOP/s on this GPU (dense, random data)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / iters
    return 2 * n**3 / seconds / 1e12


DEADLINE = [float("inf")]  # perf_counter() time by which the whole check must be done


def remaining(reserve: float = 10.0) -> int:
    """Seconds left for a subprocess (the summary and the JSON need ``reserve``)."""
    return max(1, int(DEADLINE[0] - time.perf_counter() - reserve))


def step(report: dict, name: str, fn) -> object:
    """Run ``fn`` and record its outcome under ``report["steps"][name]``: a result with an
    ``incomplete`` reason (part of a bench) is kept and recorded as failed with that reason."""
    t0 = time.perf_counter()
    print(f"[gpu_check] {name} ...", flush=True)
    try:
        value = fn()
        report["steps"][name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1)}
        if isinstance(value, dict) and value.get("incomplete"):
            report["steps"][name].update(ok=False, error=value["incomplete"][:2000])
            print(f"[gpu_check] {name} INCOMPLETE: {value['incomplete']}", flush=True)
        return value
    except Exception as exc:  # record and go on: one JSON with everything that worked
        report["steps"][name] = {
            "ok": False,
            "seconds": round(time.perf_counter() - t0, 1),
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-3000:],
        }
        print(f"[gpu_check] {name} FAILED: {exc}", flush=True)
        return None
    finally:
        if SAVE:
            SAVE[0](report)  # after every step: a killed run still leaves its JSON


SAVE: list = []


def save_json(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(out)


def run_tests(dry_run: bool, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu or trt", "-p", "no:cacheprovider",
           "tests/runtime/test_gpu.py", "tests/export/test_tensorrt.py", "-rs"]  # fmt: skip
    if dry_run:
        cmd.append("--collect-only")
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=min(timeout, remaining())
    )
    lines = (out.stdout + out.stderr).strip().splitlines()
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR", "E  "))]
    return {
        "command": " ".join(cmd[1:]),
        "rc": out.returncode,
        "failures": failures[:40],
        "tail": lines[-12:],
    }


def build_bundle_1024(preset: str, out: Path, max_batch: int) -> dict:
    from mcaclip.export.builder import BatchProfile, build_bundle
    from mcaclip.nn.editor import MCAEditor

    torch.manual_seed(0)
    editor = MCAEditor.from_preset(preset, random_weights=True)
    manifest = build_bundle(
        editor,
        out,
        ["blue goatee"],
        backend="torch",
        profile=BatchProfile(1, max_batch, max_batch, max_prompts=1),
        random_weights=True,
        overwrite=True,
    )
    return {"path": str(out), "preset": preset, "batch_profile": manifest["batch_profile"]}


def parity(bundle: Path, device: str, n: int) -> dict:
    from mcaclip.runtime.bench import PLAIN_FP16
    from mcaclip.runtime.pipeline import EditPipeline

    with EditPipeline(bundle, backend="torch", device=device, precision="fp32",
                      cuda_graphs=False) as p32:  # fmt: skip
        w = p32.seeds_to_latents(list(range(n)))
        e = p32.embed(["blue goatee"])
        ref = p32.edit_batch(w, e)
    if device == "cpu":  # FP16 fast path is GPU-only: the dry run compares FP32 with itself
        return {"latents": n, "compared": "fp32 vs fp32 (dry)", **_compare(ref, ref)}
    result = {"latents": n, "compared": "fp16+cudagraphs vs fp32 eager"}
    # the default (with the Triton epilogues where they are the default: the 2x2 phase convs,
    # blurred in the kernel) and plain forms, then the other forms (a failure of one of those
    # is recorded under its name, not lost with the others): the PyTorch form (sub-pixel), the
    # sub-pixel convs with the epilogues (the default before), the 2x2 phase convs in PyTorch,
    # the Triton mask heads, the convs in the kernel
    configs = [
        ("default", {}),
        ("plain", PLAIN_FP16),
        ("pytorch", {"triton_epilogues": False}),
        ("subpixel", {"phase_conv": False}),
        ("triton_masks", {"triton_masks": True}),
        ("triton_convs", {"triton_convs": True}),  # the big maps' convs in the kernel
        ("triton_convs_auto", {"triton_convs": "auto"}),  # there where that was faster
        # the 2x2 phase convs, the other big maps' convs in the kernel where that was faster
        ("phase_triton_convs_auto", {"phase_conv": True, "triton_convs": "auto"}),
        ("phase_conv_pytorch", {"phase_conv": True, "triton_epilogues": False}),
    ]
    for name, switches in configs:
        if name == "phase_conv_pytorch" and remaining() < 300:
            result[name] = {"left_out_for_time": True}  # the later steps come first
            continue
        try:
            with EditPipeline(bundle, backend="torch", device=device, precision="fp16",
                              cuda_graphs=True, **switches) as p16:  # fmt: skip
                got = p16.edit_batch(w, e)
                result[name] = {"mode": p16.device_editor.mode, **_compare(got, ref)}
                if p16.device_editor.conv_tuning:  # which layers ran their conv in the kernel
                    result[name]["conv_tuning"] = p16.device_editor.conv_tuning
        except Exception as exc:  # noqa: BLE001 - recorded, the check goes on
            if name in ("default", "plain"):
                raise
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
    result.update(result["default"])  # the top-level numbers: the default fast path
    try:
        result["triton_kernels"] = triton_kernel_stats()
    except Exception as exc:  # noqa: BLE001 - Triton's internals differ between versions
        result["triton_kernels"] = f"not read: {type(exc).__name__}: {exc}"[:300]
    return result


def triton_kernel_stats() -> list[dict]:
    """Registers and spills of each compiled specialization of our Triton kernels (what a
    profile does not show), from Triton's per-device kernel caches; empty where none was
    compiled (Triton's CPU interpreter compiles nothing)."""
    from mcaclip.runtime.kernels import triton_ops

    rows = []
    for name, fn in (
        ("layer_epilogue", triton_ops._EPILOGUE),
        ("mask_head", triton_ops._KERNEL),
    ):
        for device, entry in (getattr(fn, "device_caches", None) or {}).items():
            cache = entry[0] if isinstance(entry, tuple) else entry
            for kernel in list(dict(cache).values()):
                meta = getattr(kernel, "metadata", None)
                rows.append(
                    {
                        "kernel": name,
                        "device": str(device),
                        "n_regs": getattr(kernel, "n_regs", None),
                        "n_spills": getattr(kernel, "n_spills", None),
                        "num_warps": getattr(meta, "num_warps", None),
                        "shared_bytes": getattr(meta, "shared", None),
                    }
                )
    return rows


TUNING_SECONDS = 60  # the most the epilogue_tuning step may take (compiles included)


def epilogue_tuning(preset: str, batch: int, dry: bool, copy_gbs: float | None = None) -> dict:
    """The layer-epilogue kernel's launch options timed on the largest maps' launches
    (:mod:`benchmarks.triton_tuning`). Dry run: the plan only (the kinds of launch and the
    options each would try; the kernel needs a GPU, or Triton's interpreter, to run)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return {"skipped": "Triton is not installed (it comes with torch's CUDA wheels)"}
    from benchmarks import triton_tuning

    forms = ["subpixel", "convs", "phases"]  # convs: --triton-convs' launches
    size = load_preset_size(preset)
    smallest = (size // 2) ** 2  # the full- and half-size maps' launches (15/16 of an edit's
    #                              pixels), the full-size ones first
    if dry:
        plan = {}
        for form in forms:
            for layer, _, args, meta in triton_tuning.largest(preset, batch, form, smallest):
                plan[f"{form} layer {layer}"] = len(triton_tuning.options_for(args, meta))
        return {"dry_run": True, "options_per_launch": plan}
    # in a process of its own: options never run on a GPU before must not take this one down
    seconds = min(TUNING_SECONDS, remaining(reserve=90))
    out = Path(tempfile.mkdtemp(prefix="mcaclip-tuning-")) / "tuning.json"
    cmd = [sys.executable, "-m", "benchmarks.triton_tuning", "--preset", preset, "--batch",
           str(batch), "--forms", ",".join(forms), "--smallest", str(smallest), "--iters", "10",
           "--seconds", str(seconds), "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode:
        tail = (done.stdout + done.stderr).strip()[-1500:]
        raise RuntimeError(f"triton_tuning exited with {done.returncode}: {tail}")
    result = json.loads(out.read_text())
    if copy_gbs:  # the chosen options' rate as a fraction of a plain device-to-device copy's
        result["copy_gbs"] = copy_gbs
        result["chosen_over_copy_bandwidth"] = {
            f"{r['form']} layer {r['layer']}": round(r["gbs"] / copy_gbs, 3)
            for r in result["rows"]
            if r["chosen"] and "gbs" in r  # (not where it failed: result["failed"])
        }
    return result


def load_preset_size(preset: str) -> int:
    from mcaclip.config import load_preset

    return load_preset(preset).generator.size


def edit_throughput(bundle: Path, device: str, latents: int, batch: int) -> dict:
    """What ``mcarun edit`` delivers: edits per second into PNG files at the bundle's size, one
    prompt, default fast path; the edits alone (uint8 pictures to the host, nothing written),
    then writing with the defaults (level-1 PNGs on background writers), as JPEG, and as
    mcaclip wrote before 2026-11-27 (level 6, main thread; the pictures still come as uint8).
    On a GPU also the peak GPU memory of the whole step: what ``mcarun edit`` needs at this
    batch and size (its CUDA graph included)."""
    import shutil

    from mcaclip.runtime.edit import default_writers, edit_to_dir
    from mcaclip.runtime.io import PictureFormat
    from mcaclip.runtime.pipeline import EditPipeline

    gpu = device != "cpu"
    prompt = ["blue goatee"]
    root = Path(tempfile.mkdtemp(prefix="mcaclip-edit-"))
    result: dict = {"latents": latents, "batch": batch, "prompts": 1, "writers": default_writers()}
    if gpu:  # the memory mcarun edit needs at this batch: peaks from here on
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        with EditPipeline(bundle, backend="torch", device=device,
                          precision="fp16" if gpu else "fp32", cuda_graphs=gpu) as p:  # fmt: skip
            result["mode"] = p.device_editor.mode
            w = p.seeds_to_latents(list(range(latents)))
            e = p.embed(prompt)
            # a whole untimed run first: graphs captured, the pinned-memory pool grown
            edit_to_dir(p, w, prompt, root / "warm", batch)
            t0 = time.perf_counter()
            for start in range(0, latents, batch):
                p.edit_batch(w[start : start + batch], e, masks=False, pixels=True)
            result["edit_only"] = _rate(time.perf_counter() - t0, latents)
            for name, picture, writers in (
                ("default", PictureFormat(), None),
                ("jpg", PictureFormat("jpg"), None),
                ("level6_main_thread", PictureFormat(png_level=6), 0),
            ):
                out = root / name
                t0 = time.perf_counter()
                edit_to_dir(p, w, prompt, out, batch, picture=picture, writers=writers)
                result[name] = _rate(time.perf_counter() - t0, latents)
                files = list(out.glob("*" + picture.suffix))
                result[name]["mib_per_edit_on_disk"] = (
                    sum(f.stat().st_size for f in files) / latents / 2**20
                )
        if gpu:  # the edit's CUDA graph pools included (they count as allocated)
            result["gpu_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            result["gpu_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        result["default_vs_level6_main_thread"] = (
            result["level6_main_thread"]["ms_per_edit"] / result["default"]["ms_per_edit"]
        )
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _rate(seconds: float, edits: int) -> dict:
    return {
        "seconds": seconds,
        "ms_per_edit": seconds / edits * 1e3,
        "edits_per_s": edits / seconds,
    }


def _compare(got, ref) -> dict:
    from mcaclip.export.exporter import psnr

    return {
        "image_psnr_db": _finite(psnr(got[0], ref[0])),
        "original_psnr_db": _finite(psnr(got[1], ref[1])),
        "image_max_abs": float(np.abs(got[0] - ref[0]).max()),
        "mask_max_abs": max(
            (float(np.abs(a - b).max()) for a, b in zip(got[2], ref[2])), default=0.0
        ),  # fmt: skip
        "finite": bool(np.isfinite(got[0]).all()),
    }


def _finite(x: float) -> float | None:
    """JSON has no infinity: identical images (PSNR inf) are written as null."""
    return x if np.isfinite(x) else None


def bench(bundle: Path, sizes: str, iters: int, warmup: int, timeout: int, *which: str):
    """``mcarun bench`` in a subprocess (``which``: --all-backends, or one configuration).
    Stopped by its time limit or failing part-way, what it had measured (its JSON is written
    after each configuration) comes back under ``incomplete`` (the reason; :func:`step`
    then records the step as failed); with nothing measured, it raises."""
    out = Path(tempfile.mkdtemp()) / "bench.json"
    cmd = [sys.executable, "-m", "mcaclip.runtime.cli", "bench", "--engine", str(bundle),
           "--batch-sizes", sizes, "--iters", str(iters), "--warmup", str(warmup),
           "--json", str(out), *which]  # fmt: skip
    limit = min(timeout, remaining())
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        stdout, stderr = run.stdout, run.stderr
        failure = None if run.returncode == 0 else f"mcarun bench exited {run.returncode}"
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = (_text(exc.stdout), _text(exc.stderr))
        failure = f"mcarun bench stopped at its {limit} s limit"
    print(stdout[-4000:], stderr[-2000:], flush=True)
    if failure and not out.is_file():
        raise RuntimeError(f"{failure}: {stderr[-800:]}")
    result = json.loads(out.read_text())
    result["compiler_warnings"] = compiler_warnings(stderr)
    if failure:
        result["incomplete"] = f"{failure}; not run: {result.get('pending')}: {stderr[-300:]}"
    return result


def _text(output) -> str:
    """A TimeoutExpired's captured output as text (bytes, text or None)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def compiler_warnings(stderr: str) -> list[str]:
    """The lines of torch.compile's own warnings that mean a timing is not of one compiled
    graph: recompile limits (the frame then runs eagerly) and graph breaks; each once."""
    keys = ("recompile_limit", "function:", "last reason:", "Graph break")
    seen: dict[str, None] = {}
    for line in stderr.splitlines():
        text = line.split("] ", 2)[-1].strip()  # drop the logger's prefix ("W1127 ... [8/8]")
        if any(k in text for k in keys):
            seen.setdefault(text[:300])
    return list(seen)[:20]


def summarize(
    bench_json: dict,
    flops: float,
    peak_tflops: float | None,
    bytes_per_edit: float | None = None,
    bandwidth_gbs: float | None = None,
    executed: dict[str, float] | None = None,
) -> dict:
    """ms per edit of every variant, ratios to the FP32 baseline, the compute lower bound and
    the memory floor; with ``executed`` (FLOPs per edit per ``UP_TAPS`` form) also the FLOPs
    each variant's convs run and the rate they ran at, end to end at batch 8."""
    rows = {}
    for name, v in bench_json["variants"].items():
        for r in v["rows"]:
            if r["stage"] in (
                "end_to_end_device",
                "end_to_end",
                "end_to_end_pixels",
                "masked_generator",
            ):
                rows.setdefault(name, {})[f"b{r['batch']}:{r['stage']}"] = r["p50_ms"] / r["batch"]
    base = bench_json.get("baseline")
    summary = {
        "flops_per_edit": flops,
        "gflop_per_edit": flops / 1e9,
        "measured_fp16_tflops": peak_tflops,
        "lower_bound_ms_per_edit": flops / (peak_tflops * 1e12) * 1e3 if peak_tflops else None,
        "bytes_per_edit": bytes_per_edit,
        "measured_copy_gbs": bandwidth_gbs,
        "memory_floor_ms_per_edit": (
            bytes_per_edit / (bandwidth_gbs * 1e9) * 1e3
            if bytes_per_edit and bandwidth_gbs
            else None
        ),
        "ms_per_edit": rows,
        "speedup_vs_baseline": {},
        "baseline": base,
    }
    for name, per in rows.items():
        if name == base:
            continue
        summary["speedup_vs_baseline"][name] = {
            k: rows[base][k] / ms for k, ms in per.items() if k in rows.get(base, {})
        }
    for key, bound in (
        ("x_lower_bound", summary["lower_bound_ms_per_edit"]),
        ("x_memory_floor", summary["memory_floor_ms_per_edit"]),
    ):
        if bound:
            summary[key] = {
                name: {k: ms / bound for k, ms in per.items() if "end_to_end_device" in k}
                for name, per in rows.items()
            }
    if executed:
        forms = {name: up_form(v.get("mode")) for name, v in bench_json["variants"].items()}
        summary["executed_gflop_per_edit"] = {n: executed[f] / 1e9 for n, f in forms.items()}
        summary["achieved_tflops_b8"] = {
            n: executed[forms[n]] / (per["b8:end_to_end_device"] * 1e-3) / 1e12
            for n, per in rows.items()
            if "b8:end_to_end_device" in per and n in forms
        }
    summary["targets"] = targets(summary)
    return summary


def targets(summary: dict) -> dict:
    """The issue's targets per variant: at least 3x faster than FP32 eager end to end on the
    device at every measured batch, and within 4x of the compute lower bound at batch 8."""
    e2e = "end_to_end_device"
    speed = {
        name: min(v for k, v in per.items() if e2e in k)
        for name, per in summary["speedup_vs_baseline"].items()
        if any(e2e in k for k in per)
    }
    bound = {
        name: per[f"b8:{e2e}"]
        for name, per in summary.get("x_lower_bound", {}).items()
        if f"b8:{e2e}" in per
    }
    baseline = summary.get("baseline") or ""
    measured = "x_lower_bound" in summary  # no peak measured (dry run): no verdict
    return {
        "baseline": baseline,
        "baseline_is_fp32_eager": "fp32" in baseline and "eager" in baseline,
        "min_speedup_vs_baseline": speed,
        "speedup_3x_met": sorted(n for n, v in speed.items() if v >= 3),
        "x_lower_bound_b8": bound,
        "within_4x_of_lower_bound_b8_met": (
            sorted(n for n, v in bound.items() if v <= 4) if measured else None
        ),
    }


def profile_kernels(
    bundle: Path,
    device: str,
    batch: int,
    top: int = 12,
    compiled: bool = False,
    generator=None,
    peak_tflops: float | None = None,
    copy_gbs: float | None = None,
) -> dict:
    """torch.profiler of one edit (``batch`` latents, one prompt) per configuration, uncompiled
    plain and default, on a GPU also the PyTorch form (no Triton epilogues), the convs in the
    epilogue kernel (``--triton-convs``) and the sub-pixel convs with the epilogues
    (``--no-phase-conv``), and (``compiled``, GPU only) the
    default with ``--compile``: the ``top`` kernels by GPU time, their calls, the total (CPU
    ops in the dry run) and the time per kind of kernel (``by_kind``: convolutions, matrix
    products, Triton-fused, element-wise, copies); the ``top`` operators by GPU time with their
    input shapes (which convolution is slow); on a GPU, with the ``generator``'s config, the
    time per synthesis layer (:func:`layer_times`: which layers are far from their share of
    the lower bound, and why)."""
    from torch.profiler import ProfilerActivity, profile

    from mcaclip.runtime.bench import PLAIN_FP16
    from mcaclip.runtime.pipeline import EditPipeline

    gpu = device != "cpu"
    # the dry run (CPU, FP32): the GPU's switches asked for, with the folded blur they need
    on_cpu = {"fold_blur": True, "subpixel": True, "fuse_tails": True, "stack_streams": True}
    configs = {
        "plain": PLAIN_FP16 if gpu else {"fuse_tails": False},
        "default": {} if gpu else on_cpu,
    }
    if gpu:  # the PyTorch form; the big maps' convs in the epilogue kernel; the sub-pixel
        # convs with the epilogues (the default before the 2x2 phases)
        configs["pytorch"] = {"triton_epilogues": False}
        configs["tritonconv"] = {"triton_convs": True}
        configs["subpixel"] = {"phase_conv": False}
    if gpu and compiled:  # where the best time so far goes (compiles for about a minute)
        configs["compiled"] = {"compile": True}
    result = {}
    for name, extra in configs.items():
        with EditPipeline(bundle, backend="torch", device=device,
                          precision="fp16" if gpu else "fp32", cuda_graphs=False,
                          **extra) as p:  # fmt: skip
            editor = p.device_editor
            w = torch.from_numpy(p.seeds_to_latents(list(range(batch)))).to(device)
            e = torch.from_numpy(p.embed(["blue goatee"])).to(device)
            for _ in range(3):
                editor.edit_device(w, e)
            if gpu:
                torch.cuda.synchronize()
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
            with profile(activities=activities, record_shapes=True) as prof:
                editor.edit_device(w, e)
                if gpu:
                    torch.cuda.synchronize()
        result[name] = {
            "mode": editor.mode,
            "batch": batch,
            **_top_events(prof, gpu, top),
            "operators": _top_operators(prof, gpu, top),
        }
        if gpu and generator is not None:
            work = layer_work(generator, batch, 1, up_form(editor.mode))
            fused = "tritonconv" in editor.mode
            result[name]["layers"] = layer_times(
                kernel_sequence(prof), work, peak_tflops, copy_gbs, fused
            )
        if gpu:
            torch.cuda.empty_cache()
    return result


def _device_us(ev, total: bool = False) -> float:
    """An event's GPU time (self, or with its children), whatever this torch calls it."""
    kind = "" if total else "self_"
    t = getattr(ev, f"{kind}device_time_total", None)
    return getattr(ev, f"{kind}cuda_time_total", 0.0) if t is None else t


def _top_operators(prof, gpu: bool, top: int) -> list[dict]:
    """aten operators by GPU time including their kernels, per input shape."""

    def us(ev) -> float:
        return _device_us(ev, total=True) if gpu else ev.cpu_time_total

    ops = [
        ev
        for ev in prof.key_averages(group_by_input_shape=True)
        if ev.key.startswith("aten::") and us(ev) > 0
    ]
    # an op that only calls others (aten::conv2d -> convolution -> cudnn_convolution) would
    # count their time again: keep the leaf-most of each chain, the one with own kernels
    ops = [ev for ev in ops if not gpu or _device_us(ev) > 0]
    ops.sort(key=us, reverse=True)
    return [
        {"op": ev.key, "shapes": str(ev.input_shapes)[:160], "ms": us(ev) / 1e3, "calls": ev.count}
        for ev in ops[:top]
    ]


def _top_events(prof, gpu: bool, top: int) -> dict:
    def self_us(ev) -> float:
        return _device_us(ev) if gpu else ev.self_cpu_time_total

    events = [ev for ev in prof.key_averages() if self_us(ev) > 0]
    if gpu:  # kernels only (CPU activity is recorded too, for the operators' shapes)
        events = [ev for ev in events if _is_kernel(ev)]
    events.sort(key=self_us, reverse=True)
    total = sum(self_us(ev) for ev in events)
    by_kind: dict[str, float] = {}
    for ev in events:
        kind = kernel_kind(ev.key) if gpu else "cpu"
        by_kind[kind] = by_kind.get(kind, 0.0) + self_us(ev) / 1e3
    return {
        "total_ms": total / 1e3,
        "by_kind": by_kind,
        "kernels": [
            {
                "name": ev.key[:120],
                "ms": self_us(ev) / 1e3,
                "share": self_us(ev) / total if total else None,
                "calls": ev.count,
            }
            for ev in events[:top]
        ],
    }


def kernel_kind(name: str) -> str:
    """A GPU kernel's kind from its name: conv (cuDNN/CUTLASS implicit GEMMs, depthwise),
    matmul (cuBLAS), triton (Inductor's generated kernels), copy, elementwise (the rest)."""
    low = name.lower()
    if low.startswith("triton"):
        return "triton"
    if re.search(r"conv(?!er)|implicit_gemm|fprop|dgrad|wgrad|winograd|cudnn", low):
        return "conv"
    if "gemm" in low or "gemv" in low or "cublas" in low or "cutlass" in low:
        return "matmul"
    if "copy" in low or "memcpy" in low or "memset" in low:
        return "copy"
    return "elementwise"


EPILOGUE_KERNEL = "triton_layer_epilogue"  # the layer-epilogue kernel's name in a profile


def layer_work(generator, batch: int, prompts: int = 1, up: str = "folded") -> list[dict]:
    """What each synthesis layer of one masked-generator call (``batch`` latents, ``prompts``
    per latent, both streams) has to do: the GFLOP its conv executes in form ``up``
    (``UP_TAPS``) and at the lower bound's count (``bound_gflop``), and the MB its layer
    epilogue moves at least: the conv's output read (or, ``fused_mb``, with the conv in the
    kernel, the conv's input), the next conv's input written, the masks, the new RGB skips
    written and the previous ones read (FP32). ``fused_mb`` is for one prompt per latent: with
    several, the original stream's conv runs in cuDNN and its output is read instead."""
    res, ch = generator.layer_resolutions(), generator.layer_channels()
    samples = batch * (1 + prompts)
    rows = []
    executed, bound = conv_macs(generator, up), conv_macs(generator, "transposed")
    for i, (r, c) in enumerate(zip(res, ch)):
        prev_c = ch[max(i - 1, 0)]
        r_in = r // 2 if i > 0 and i % 2 == 1 else r  # an up-sampling conv reads half size
        feature = samples * r * r * c * 2  # FP16
        rest = feature if i < len(res) - 1 else 0  # the next conv's input
        rest += batch * prompts * r * r * 2  # the masks
        if i == 0 or i % 2 == 0:  # a ToRGB: the new skips, and the previous ones read
            rest += samples * 3 * r * r * 4 + (samples * 3 * (r // 2) ** 2 * 4 if i else 0)
        rows.append(
            {
                "layer": i,
                "resolution": r,
                "in_channels": prev_c,
                "channels": c,
                "gflop": 2 * samples * executed[i] / 1e9,
                "bound_gflop": 2 * samples * bound[i] / 1e9,
                "epilogue_mb": (feature + rest) / 1e6,
                "fused_mb": (samples * r_in * r_in * prev_c * 2 + rest) / 1e6,
            }
        )
    return rows


def _is_kernel(ev) -> bool:
    """Whether a profiler event is a GPU kernel: on the device, and not a GPU-side span of a
    ``record_function`` range (compiled code makes some: "Torch-Compiled Region", "## Call
    CompiledFxGraph")."""
    return ev.device_type != torch.autograd.DeviceType.CPU and not getattr(
        ev, "is_user_annotation", False
    )


def kernel_sequence(prof) -> list[tuple[str, float]]:
    """The GPU kernels of a torch.profiler run in launch order: (name, ms)."""
    events = [ev for ev in prof.events() if _is_kernel(ev) and ev.time_range.elapsed_us() > 0]
    events.sort(key=lambda ev: ev.time_range.start)
    return [(ev.name, ev.time_range.elapsed_us() / 1e3) for ev in events]


def layer_times(
    kernels: list[tuple[str, float]],
    work: list[dict],
    peak_tflops: float | None = None,
    copy_gbs: float | None = None,
    convs_in_kernel: bool = False,
) -> dict | None:
    """One profiled call's GPU time per synthesis layer, from its ``kernels`` (name, ms) in
    launch order: a layer ends with its layer-epilogue launch; before it, its convolutions
    (``kernel_kind`` conv: cuDNN's; with ``convs_in_kernel``, i.e. ``--triton-convs``, a layer
    without one is a layer whose epilogue computes its conv) and the rest
    (``other_ms``); the kernels before the first layer's first conv (text, fusion, mapper,
    styles) are ``prelude_ms``, those after the last epilogue ``after_ms``. With the layers'
    ``work`` (:func:`layer_work`): the conv's TFLOP/s, the epilogue's GB/s over its least
    traffic, and (``peak_tflops``) each layer's time over its share of the lower bound, the
    ratio the 4x target asks of the whole. None unless there is one epilogue launch per layer
    (the PyTorch form has none)."""
    ends = [i for i, (name, _) in enumerate(kernels) if name.startswith(EPILOGUE_KERNEL)]
    if not ends or len(ends) != len(work):
        return None
    first_conv = next(
        (i for i, (name, _) in enumerate(kernels[: ends[0]]) if kernel_kind(name) == "conv"),
        ends[0],
    )
    rows = []
    start = first_conv
    for end, w in zip(ends, work):
        segment = kernels[start:end]
        conv = sum(ms for name, ms in segment if kernel_kind(name) == "conv")
        other = sum(ms for name, ms in segment if kernel_kind(name) != "conv")
        epilogue = kernels[end][1]
        fused = convs_in_kernel and conv == 0  # the conv computed in the epilogue kernel
        moved = w["fused_mb"] if fused else w["epilogue_mb"]
        row = {
            "layer": w["layer"],
            "resolution": w["resolution"],
            "channels": w["channels"],
            "ms": conv + epilogue + other,
            "conv_ms": conv,
            "epilogue_ms": epilogue,
            "other_ms": other,
            "conv_in_epilogue": fused,
            "conv_tflops": w["gflop"] / conv if conv else None,
            "epilogue_tflops": w["gflop"] / epilogue if fused else None,
            "epilogue_gbs": moved / epilogue,
        }
        if peak_tflops:
            row["x_lower_bound"] = row["ms"] / (w["bound_gflop"] / peak_tflops)
        if copy_gbs:
            row["epilogue_over_copy_bandwidth"] = row["epilogue_gbs"] / copy_gbs
        rows.append(row)
        start = end + 1
    total = sum(ms for _, ms in kernels)
    result = {
        "prelude_ms": sum(ms for _, ms in kernels[:first_conv]),
        "after_ms": sum(ms for _, ms in kernels[ends[-1] + 1 :]),
        "layers_ms": sum(r["ms"] for r in rows),
        "total_ms": total,
        "rows": rows,
    }
    if peak_tflops:
        bound = sum(w["bound_gflop"] for w in work) / peak_tflops
        result["x_lower_bound"] = total / bound
    return result


# the --compile configurations the check can time (mcarun bench options)
COMPILE_VARIANTS = {
    "default": ("--compile",),  # with the Triton epilogues, where they are the default
    # the compiled PyTorch form: the default before the Triton epilogues (2.61 instead of 2.39
    # ms per edit at batch 8 on an H100)
    "pytorch": ("--compile", "--no-triton-epilogues"),
    # the streams stacked: off by default under compile, unmeasured since a fix
    "stacked": ("--compile", "--stack-streams"),
    "nofold": ("--compile", "--no-fold-blur", "--nhwc"),  # as fast as folded on an H100
    "autotune": ("--compile-autotune",),  # Triton conv templates, if they win
    # fused tails under compile: ToRGB as a per-sample matrix product instead of a 3-channel
    # cuDNN convolution; never timed compiled (off by default: compile fuses the plain tails)
    "fused": ("--compile", "--fuse-tails"),
    # each mask head as one Triton kernel (mcaclip.runtime.kernels.triton_ops), never timed alone
    "tritonmask": ("--compile", "--triton-masks"),
    # up-sampling convs as 2x2 phase convs + blur: 367 instead of 567 GFLOP per edit (the
    # Triton epilogues are on by default only in the sub-pixel form)
    "phaseconv": ("--compile", "--phase-conv", "--no-triton-epilogues"),
    # both: fewer FLOPs and 0.7 GB less traffic per edit (2.40 ms on an H100)
    "phaseconv-tritonmask": ("--compile", "--phase-conv", "--triton-masks"),
    # the sub-pixel convs with the Triton epilogues: the compiled default before the 2x2
    # phases (2.39 ms on an H100; the phases blurred in the kernel then, 4x4 taps in float32,
    # 3.85 ms)
    "subpixel": ("--compile", "--no-phase-conv"),
    # the same, uncompiled (CUDA graphs only; the bench step times it too)
    "eager-subpixel": ("--no-phase-conv",),
    # the 512 and 1024 px layers' convs computed in the epilogue kernel (their outputs never
    # stored); uncompiled it is in the bench step
    "tritonconv": ("--compile", "--triton-convs"),
}
# the default list: the compiled default and the candidates (timed before the profile and edit
# steps), then the others if time is left
DEFAULT_COMPILE_VARIANTS = (
    "default,tritonconv,subpixel,pytorch,phaseconv-tritonmask,phaseconv,tritonmask"
)
BEFORE_TABLES = 3  # the default, the convs in the kernel and the sub-pixel form first


def _compile_variants(text: str) -> str:
    unknown = [n for n in text.split(",") if n not in COMPILE_VARIANTS]
    if unknown or not text:
        raise argparse.ArgumentTypeError(
            f"unknown {unknown}: choose from {', '.join(COMPILE_VARIANTS)}"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny-32 on CPU: check the plan")
    ap.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--preset", default="ffhq-1024")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip the torch.compile timing"
    )
    ap.add_argument(
        "--compile-variants",
        default=DEFAULT_COMPILE_VARIANTS,
        type=_compile_variants,
        help=f"comma-separated, in order, from: {', '.join(COMPILE_VARIANTS)} (the first at "
        "every batch size, the others at the largest: the 4x target's batch)",
    )
    ap.add_argument("--no-tests", dest="tests", action="store_false", help="skip the gpu tests")
    ap.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the kernel tables"
    )
    ap.add_argument(
        "--no-tuning",
        dest="tuning",
        action="store_false",
        help="skip timing the Triton epilogue's launch options",
    )
    ap.add_argument(
        "--no-edit", dest="edit", action="store_false", help="skip mcarun edit's throughput"
    )
    ap.add_argument("--work", type=Path, help="where the bundle goes (default: a temp dir)")
    ap.add_argument(
        "--budget",
        type=float,
        default=470,
        help="seconds for the whole check (steps that would not fit are left out)",
    )
    args = ap.parse_args(argv)
    DEADLINE[0] = time.perf_counter() + args.budget
    dry = args.dry_run
    if dry:
        args.preset, args.batch_sizes, args.iters, args.warmup = "tiny-32", "1,2", 2, 1
    elif not torch.cuda.is_available():
        print("gpu_check: PyTorch sees no CUDA GPU here; use --dry-run on CPU", file=sys.stderr)
        return 2
    out = args.out or RESULTS / ("gpu_check_dry_run.json" if dry else "gpu_check.json")
    device = "cpu" if dry else "cuda"
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="mcaclip-gpu-check-"))
    report: dict = {"dry_run": dry, "preset": args.preset, "batch_sizes": sizes, "steps": {}}
    report["left_out_for_time"] = []  # steps that did not fit in what was left of --budget
    t0 = time.perf_counter()
    SAVE[:] = [lambda r: save_json(out, r)]

    from mcaclip.config import load_preset
    from mcaclip.runtime.bench import machine_info

    report["environment"] = step(
        report,
        "environment",
        lambda: {
            **machine_info(),
            "measured_fp16_tflops": None if dry else measure_fp16_peak(),
            "measured_copy_gbs": None if dry else measure_copy_bandwidth(),
        },
    )
    env = report["environment"] or {}  # the measured rate and bandwidth (None in a dry run)
    peak, bandwidth = env.get("measured_fp16_tflops"), env.get("measured_copy_gbs")
    generator = load_preset(args.preset).generator
    if args.tests:
        report["gpu_tests"] = step(report, "gpu_tests", lambda: run_tests(dry, timeout=240))
    bundle = work / f"{args.preset}-torch"
    report["bundle"] = step(
        report, "bundle", lambda: build_bundle_1024(args.preset, bundle, max(sizes))
    )
    report["parity"] = step(report, "parity", lambda: parity(bundle, device, 4 if not dry else 2))
    report["bench"] = step(
        report,
        "bench",
        lambda: bench(bundle, args.batch_sizes, args.iters, args.warmup, 300, "--all-backends"),
    )

    def compile_bench(name: str, first: bool) -> None:
        """One ``--compile`` configuration (``COMPILE_VARIANTS``) in its own process, and only
        with time left (about a minute per batch size on an H100 for the default mode, most of
        it compiling; several for max-autotune): a slow or failing compile must not cost the
        rest. The first at every batch size, the others at the largest only."""
        batches = args.batch_sizes if first else str(max(sizes))
        compiled = "--compile" in " ".join(COMPILE_VARIANTS[name])
        step_name = "bench_compile" if name == "default" else f"bench_compile_{name}"
        if not compiled:  # an uncompiled configuration (eager-*): seconds, not a minute
            step_name = f"bench_{name}"
        if (compiled and not args.compile) or dry:
            return
        if remaining() <= 60 * len(batches.split(",")):
            report["left_out_for_time"].append(step_name)
            return
        report[step_name] = step(
            report,
            step_name,
            lambda: bench(
                bundle,
                batches,
                args.iters,
                args.warmup,
                240 if name != "autotune" else 480,
                "--backend",
                "torch",
                "--precision",
                "fp16",
                "--cuda-graphs",
                *COMPILE_VARIANTS[name],
            ),  # fmt: skip
        )
        if report[step_name] and report["bench"]:
            report["bench"]["variants"].update(report[step_name]["variants"])

    variants = args.compile_variants.split(",")
    for i, name in enumerate(variants[:BEFORE_TABLES]):  # the default and the candidates
        compile_bench(name, first=i == 0)
    if args.tuning and not (dry or remaining() > 120):
        report["left_out_for_time"].append("epilogue_tuning")
    if args.tuning and (dry or remaining() > 120):
        report["epilogue_tuning"] = step(
            report,
            "epilogue_tuning",
            lambda: epilogue_tuning(args.preset, max(sizes), dry, bandwidth),
        )
        refused = (report["epilogue_tuning"] or {}).get("chosen_failed")
        if refused:  # what the app launches would fail on this GPU: the step fails, rows kept
            report["steps"]["epilogue_tuning"].update(
                ok=False, error=f"the chosen launch options failed here: {refused} (see failed)"
            )
    if args.profile and not (dry or remaining() > 90):
        report["left_out_for_time"].append("profile")
    if args.profile and (dry or remaining() > 90):
        compiled = args.compile and not dry and remaining() > 240
        if args.compile and not dry and not compiled:
            report["left_out_for_time"].append("profile.compiled")
        report["profile"] = step(
            report,
            "profile",
            lambda: profile_kernels(
                bundle,
                device,
                max(sizes),
                compiled=compiled,
                generator=generator,
                peak_tflops=peak,
                copy_gbs=bandwidth,
            ),
        )
    if args.edit and not (dry or remaining() > 60):
        report["left_out_for_time"].append("edit")
    if args.edit and (dry or remaining() > 60):
        n = 4 if dry else 32
        report["edit"] = step(
            report, "edit", lambda: edit_throughput(bundle, device, n, max(sizes))
        )
    for name in variants[BEFORE_TABLES:]:
        compile_bench(name, first=False)
    flops = 2 * synthesis_flops(generator)  # two streams per edit
    executed = {form: 2 * synthesis_flops(generator, form) for form in UP_TAPS}
    moved = 2 * feature_bytes(generator)
    if report["bench"]:
        report["summary"] = step(
            report,
            "summary",
            lambda: summarize(report["bench"], flops, peak, moved, bandwidth, executed),
        )
    report["seconds"] = round(time.perf_counter() - t0, 1)
    save_json(out, report)
    failed = [k for k, v in report["steps"].items() if not v["ok"]]
    print(f"[gpu_check] wrote {out} in {report['seconds']} s; failed steps: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
