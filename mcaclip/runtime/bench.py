"""Latency of each pipeline stage and of the whole edit, per batch size and backend."""

from __future__ import annotations

import datetime
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from mcaclip.runtime.backends import HOST_BACKENDS, TORCH_SWITCHES
from mcaclip.runtime.pipeline import EditPipeline

log = logging.getLogger(__name__)

# end_to_end: float pictures and every layer's mask to the host (the API's full output);
# end_to_end_pixels: uint8 pictures only, what mcarun edit fetches without --save-masks/--grid
STAGES = (
    "text",
    "fusion",
    "mapper",
    "masked_generator",
    "end_to_end_device",
    "end_to_end",
    "end_to_end_pixels",
    "encode",
    "align",
    "paste",
)
# encode: the photo encoder on the batch's aligned faces; align: cutting the aligned faces out
# of photos (the warp; detection, which needs the finder's weights, is timed by
# benchmarks/photo_path.py); paste: blending each edit back into its photo (2x the generator's
# side); host arrays, CPU-side numpy for align and paste


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Where a measurement was taken: CPU/GPU, core count, library versions, date."""
    import onnxruntime
    import torch

    import mcaclip

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        **gpu_info(),
        "python": platform.python_version(),
        "mcaclip": mcaclip.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": _version_of("openvino"),
        "triton": _version_of("triton"),
    }


def _version_of(package: str) -> str | None:
    """An installed package's version, without importing it (None where it is missing)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def gpu_info() -> dict:
    """GPU name, compute capability, driver, CUDA/cuDNN versions, TF32 settings (or nulls)."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None}
    major, minor = torch.cuda.get_device_capability()
    info = {
        "gpu": torch.cuda.get_device_name(0),
        "compute_capability": f"{major}.{minor}",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "driver": None,
    }
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def time_call(fn: Callable[[], object], iters: int, warmup: int = 1, cuda: bool = False) -> dict:
    """Latency of ``fn()`` over ``iters`` runs after ``warmup``: p50/p90/p99 (ms).

    ``cuda``: each run is timed with CUDA events recorded around it on the current stream and
    the device synchronized after it (GPU time of the work ``fn`` queued, host overhead that
    delays the queue included); wall-clock times are reported beside them."""
    for _ in range(warmup):
        fn()
    times, wall = [], []
    if cuda:
        import torch

        torch.cuda.synchronize()
    for _ in range(iters):
        t0 = time.perf_counter()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            fn()
        wall.append((time.perf_counter() - t0) * 1e3)
    times = sorted(times if cuda else wall)

    def pct(q: float) -> float:
        return times[min(len(times) - 1, round(q * (len(times) - 1)))]

    return {
        "iters": iters,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(times),
        "wall_p50_ms": sorted(wall)[len(wall) // 2],
        "timer": "cuda-events" if cuda else "wall-clock",
    }


def stage_calls(pipeline: EditPipeline, batch: int, prompt: str) -> dict[str, Callable]:
    """A zero-argument call per stage on ``batch`` seeded latents, inputs prepared up front.
    End to end = text encoder (the prompt uncached), fusion, mapper, masked generator; with
    host arrays out: float pictures and masks (``end_to_end``) or uint8 pictures only
    (``end_to_end_pixels``)."""
    w = pipeline.seeds_to_latents(list(range(batch)))
    e = pipeline.embed([prompt])
    photo_calls = _photo_calls(pipeline, batch) if pipeline.has_encoder else {}
    if pipeline.device_editor is not None:
        return {**_device_stage_calls(pipeline, w, e, prompt), **photo_calls}
    e_rep = np.repeat(e, batch, axis=0)
    fusion, mapper = pipeline.runner("fusion"), pipeline.runner("mapper")
    generator = pipeline.runner("masked_generator")
    t_w = fusion.infer({"w": w, "e_t": e_rep})["t_w"]
    w_edit = mapper.infer({"w": w, "t_w": t_w})["w_edit"]
    calls: dict[str, Callable] = {
        "fusion": lambda: fusion.infer({"w": w, "e_t": e_rep}),
        "mapper": lambda: mapper.infer({"w": w, "t_w": t_w}),
        "masked_generator": lambda: generator.infer(
            {"w": w, "w_edit": w_edit[:, None], "e_t": e_rep[:, None]}
        ),
        **_end_to_end(pipeline, w, lambda: e),
    }
    if "text_encoder" in pipeline.bundle.graphs:
        text = pipeline.runner("text_encoder")
        tokens, tok1 = pipeline.tokenize([prompt] * batch), pipeline.tokenize([prompt])
        calls["text"] = lambda: text.infer({"tokens": tokens})
        calls.update(_end_to_end(pipeline, w, lambda: text.infer({"tokens": tok1})["e_t"]))
    return {**calls, **photo_calls}


def _photo_calls(pipeline: EditPipeline, batch: int) -> dict[str, Callable]:
    """The photo path's stages on ``batch`` faces: encode, align (warp), paste (see STAGES)."""
    from mcaclip.faces.align import paste_back, quad_alignment, warp_to_crop

    rng = np.random.default_rng(0)
    side, size = pipeline.encoder_size, pipeline.size
    faces = rng.uniform(-1, 1, (batch, 3, side, side)).astype(np.float32)
    photo = rng.integers(0, 256, (2 * size, 2 * size, 3), dtype=np.uint8)
    q = size / 2  # a face of the generator's size, turned a little, in the photo's middle
    quad = np.array([[q, q + 20], [q + 20, 3 * q], [3 * q, 3 * q - 20], [3 * q - 20, q]])
    alignment = quad_alignment(quad, size)
    edit = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    region = rng.uniform(0, 1, (size, size)).astype(np.float32)
    encoder = pipeline.runner("encoder")
    return {
        "encode": lambda: encoder.infer({"image": faces}),
        "align": lambda: [warp_to_crop(photo, alignment) for _ in range(batch)],
        "paste": lambda: [paste_back(photo, edit, alignment, region) for _ in range(batch)],
    }


def _end_to_end(pipeline: EditPipeline, w: np.ndarray, embed: Callable) -> dict:
    """The two host-array end-to-end stages, the embedding from ``embed()`` (the cached one,
    or the prompt through the text encoder)."""
    return {
        "end_to_end": lambda: pipeline.edit_batch(w, embed()),
        "end_to_end_pixels": lambda: pipeline.edit_batch(w, embed(), masks=False, pixels=True),
    }


def _device_stage_calls(pipeline: EditPipeline, w: np.ndarray, e: np.ndarray, prompt: str):
    """Stages on device tensors (no host copies); ``end_to_end`` is host arrays in and out."""
    import torch

    editor = pipeline.device_editor
    dev = editor.device
    wt = torch.from_numpy(w).to(dev)
    et = torch.from_numpy(e).to(dev)
    e_rep = et.repeat(len(w), 1)
    fusion, mapper = pipeline.runner("fusion"), pipeline.runner("mapper")
    generator = pipeline.runner("masked_generator")
    t_w = fusion.infer_device([wt, e_rep])[0].clone()
    w_edit = mapper.infer_device([wt, t_w])[0].clone()
    calls: dict[str, Callable] = {
        "fusion": lambda: fusion.infer_device([wt, e_rep]),
        "mapper": lambda: mapper.infer_device([wt, t_w]),
        "masked_generator": lambda: generator.infer_device(
            [wt, w_edit[:, None].contiguous(), e_rep[:, None].contiguous()]
        ),
        "end_to_end_device": lambda: editor.edit_device(wt, et),
        **_end_to_end(pipeline, w, lambda: e),
    }
    if "text_encoder" in pipeline.bundle.graphs:
        text = pipeline.runner("text_encoder")
        tokens = torch.from_numpy(pipeline.tokenize([prompt] * len(w))).to(dev)
        tok1 = pipeline.tokenize([prompt])
        calls["text"] = lambda: text.infer_device([tokens])
        calls.update(_end_to_end(pipeline, w, lambda: text.infer({"tokens": tok1})["e_t"]))
    return calls


def bench_pipeline(
    pipeline: EditPipeline,
    batch_sizes: list[int],
    iters: int = 5,
    warmup: int = 1,
    prompt: str = "blue goatee",
) -> list[dict]:
    """One row per (batch size, stage): latency (ms) and images/s."""
    rows = []
    for batch in batch_sizes:
        pipeline.check_batch(batch)
        calls = stage_calls(pipeline, batch, prompt)
        cuda = str(pipeline.device).startswith("cuda") and pipeline.backend not in HOST_BACKENDS
        for stage in STAGES:
            if stage in calls:
                t = time_call(calls[stage], iters, warmup, cuda=cuda)
                rows.append(
                    {
                        "batch": batch,
                        "stage": stage,
                        **t,
                        "images_per_s": batch / (t["p50_ms"] / 1e3),
                    }
                )
    return rows


def variant_name(v: dict) -> str:
    """e.g. ``torch-cuda-fp16-cudagraphs``, ``onnxruntime``, ``tensorrt-fp16-cudagraphs``."""
    if v["backend"] == "onnxruntime":
        return "onnxruntime"
    if v["backend"] == "openvino":  # e.g. openvino-bf16, openvino-fp32-t2-s1
        parts = ["openvino", v.get("precision") or "default"]
        parts += [f"{k[0]}{v[k]}" for k in ("threads", "streams") if v.get(k) is not None]
        return "-".join(parts)
    parts = [v["backend"]]
    if v["backend"] == "torch":
        parts += [v.get("device") or "cpu", v["precision"]]
        if v.get("channels_last") is not None:
            parts.append("nhwc" if v["channels_last"] else "nchw")
        if v.get("fold_blur") is not None:
            parts.append("fold" if v["fold_blur"] else "nofold")
        if v.get("cudnn_benchmark"):
            parts.append("cudnnbench")
        if v.get("phase_conv"):
            parts.append("phaseconv")
        elif v.get("phase_conv") is False:  # the sub-pixel form where the phases are default
            parts.append("nophaseconv")
        if v.get("triton_masks"):
            parts.append("tritonmask")
        if v.get("triton_convs"):
            parts.append("tritonconvauto" if v["triton_convs"] == "auto" else "tritonconv")
        words = {"subpixel": "subpixel", "fuse_tails": "fused", "stack_streams": "stacked"}
        plain = all(v.get(key) is False for key in words) and not v.get("triton_epilogues")
        if v.get("triton_epilogues"):
            parts.append("tritonepi")
        elif v.get("triton_epilogues") is False and not plain:
            parts.append("notritonepi")  # the PyTorch form where the kernel is the default
        if plain:
            parts.append("plain")  # all off: the plain graphs
        else:  # the switches given (None: the backend's default, not named)
            parts += [w if v[k] else f"no{w}" for k, w in words.items() if v.get(k) is not None]
    else:
        parts.append("fp16")
    if v.get("compile"):
        parts.append("compile-autotune" if v["compile"] == "max-autotune" else "compile")
    parts.append("cudagraphs" if v.get("cuda_graphs") else "eager")
    return "-".join(parts)


# torch FP16 + CUDA graphs on a GPU as --all-backends times it: the default, its PyTorch form
# (no Triton epilogues: the default before they were measured) and the plain form of the same
# folded-blur NHWC graphs (the default before the sub-pixel form, the fused tails and the
# stacked streams were measured on a GPU) to show what they gain on this one. NCHW, slower
# with the folded blur on an H100, is not timed (--nchw still runs it). --cudnn-benchmark
# changed nothing on an H100 with the folded transposed convs; it is timed again with the
# default's convs (both streams in one batch; run 4's H200 profile had the sub-pixel 32 -> 64
# px one at 330 TFLOP/s, in an sm_80 kernel, where the others reached 690-770; the default's
# are the 2x2 phase convs now).
PLAIN_FP16 = {"subpixel": False, "fuse_tails": False, "stack_streams": False,
              "triton_epilogues": False}  # fmt: skip


def plan_variants(engine, providers: list[str] | None = None, compile_: bool | str = False) -> list:
    """Every backend configuration worth timing on this machine for the bundle ``engine``:
    torch FP32 eager first (the baseline), then torch FP16 + CUDA graphs on a GPU (the
    default, its plain form, where Triton is installed and the editor has masks without the
    Triton epilogues, with the convs in them (all, or where faster; and where faster with the
    2x2 phase convs) and in the sub-pixel form instead of the 2x2 phases, with cuDNN's
    algorithm timing, and with torch.compile when asked), ONNX Runtime when the bundle has
    ONNX graphs, OpenVINO (where installed) at each precision this CPU computes natively,
    TensorRT when it has engines."""
    import importlib.util

    import torch

    from mcaclip.bundle import Bundle

    bundle = Bundle.open(engine, verify=False)
    gpu = torch.cuda.is_available()
    dev = "cuda" if gpu else "cpu"
    base = {"backend": "torch", "device": dev, "cuda_graphs": False, "compile": False}
    variants = [{**base, "precision": "fp32"}]
    if gpu:
        fp16 = {**base, "precision": "fp16", "cuda_graphs": True}
        variants += [fp16, {**fp16, **PLAIN_FP16}]
        if "masknet" in bundle.graphs and importlib.util.find_spec("triton") is not None:
            variants.append({**fp16, "triton_epilogues": False})  # the default's PyTorch form
            variants.append({**fp16, "triton_convs": True})  # the convs in the kernel too
            variants.append({**fp16, "triton_convs": "auto"})  # there where that was faster
            # the 2x2 phase up-sampling convs (cuDNN's, blurred in the kernel) with the 512 and
            # 1024 px layers' other convs in the kernel where that was faster (the convs in the
            # kernel alone run the sub-pixel form: its up-sampling convs fit in the kernel too)
            variants.append({**fp16, "phase_conv": True, "triton_convs": "auto"})
            # the sub-pixel convs with the epilogues: the default before the 2x2 phase convs
            # (2.5 ms less in cuDNN per 1024 px batch-8 call on an H200, their blur's 3x3 taps
            # in the kernel), chosen by counts
            variants.append({**fp16, "phase_conv": False})
        variants.append({**fp16, "cudnn_benchmark": True})  # cuDNN times its algorithms
        if compile_:  # True / "default", or "max-autotune"
            variants.append({**fp16, "compile": compile_})
    if any(g.get("onnx") for g in bundle.graphs.values()):
        variants.append({"backend": "onnxruntime", "providers": providers, "precision": "fp32"})
        variants += openvino_variants()
    variants.append({"backend": "tensorrt", "device": dev, "cuda_graphs": gpu, "precision": "fp16"})
    return variants


def openvino_variants() -> list[dict]:
    """OpenVINO at each precision the CPU computes natively, the default first; [] without
    OpenVINO (a machine without it is not an error for --all-backends)."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return []
    from mcaclip.runtime.backends import openvino

    native = openvino.native_precisions()
    first = openvino.resolve_precision(None)
    order = [first] + [p for p in native if p != first]
    return [{"backend": "openvino", "precision": p} for p in order]


def bench_variants(
    engine,
    variants: list[dict],
    batch_sizes: list[int],
    iters: int,
    warmup: int,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Time each variant (one pipeline at a time, GPU memory freed between them). A variant
    this machine cannot run is listed under ``skipped`` with the reason, not measured.
    ``progress``: called after each variant that ran with the results so far (``complete``
    false, the variants still to run under ``pending``), so that a run stopped part-way (a
    time limit, Ctrl-C) keeps what it measured; the returned payload has ``complete`` true."""
    import torch

    from mcaclip.errors import McaError

    results, skipped = {}, {}
    manifest = None
    names = [variant_name(v) for v in variants]
    for i, v in enumerate(variants):
        name = names[i]
        try:
            with EditPipeline(
                engine,
                backend=v["backend"],
                providers=v.get("providers"),
                device=v.get("device"),
                precision=v.get("precision"),
                cuda_graphs=v.get("cuda_graphs"),
                compile=v.get("compile", False),
                threads=v.get("threads"),
                streams=v.get("streams"),
                **{k: v.get(k) for k in TORCH_SWITCHES},
            ) as pipeline:
                manifest = pipeline.bundle.manifest
                rows = bench_pipeline(pipeline, batch_sizes, iters, warmup)
                info = dict(v)
                editor = pipeline.device_editor
                if editor is not None:  # what actually ran, defaults resolved
                    info["mode"] = editor.mode
                    if getattr(editor, "conv_tuning", None):  # --triton-convs-auto's timings
                        info["conv_tuning"] = editor.conv_tuning
                if v["backend"] == "onnxruntime":
                    info["providers"] = pipeline.runner("fusion").providers
                if v["backend"] == "openvino":  # precision, threads, streams as compiled
                    info["openvino"] = pipeline.runner("masked_generator").settings
                results[name] = {**info, "rows": rows}
        except McaError as exc:  # this machine lacks what the variant needs
            skipped[name] = str(exc)
        except Exception as exc:  # a failure (e.g. a Triton compile error): reported, not fatal
            log.exception("variant %s failed", name)
            skipped[name] = f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if progress is not None and results and i + 1 < len(variants):
            partial = _payload(engine, manifest, batch_sizes, iters, warmup, results, skipped)
            progress({**partial, "complete": False, "pending": names[i + 1 :]})
    if not results:  # nothing ran (a lone variant's one-line reason reaches the user)
        raise McaError(f"no backend could run {engine}: " + "; ".join(skipped.values()))
    payload = _payload(engine, manifest, batch_sizes, iters, warmup, results, skipped)
    return {**payload, "complete": True, "pending": []}


def _payload(engine, manifest, batch_sizes, iters, warmup, results: dict, skipped: dict) -> dict:
    """The bench JSON of the variants timed so far (``results``, the first the baseline)."""
    payload = {
        "machine": machine_info(),
        "bundle": str(engine),
        "preset": manifest["preset"]["name"],
        "random_weights": manifest["random_weights"],
        "batch_sizes": batch_sizes,
        "iters": iters,
        "warmup": warmup,
        "variants": results,
        "skipped": skipped,
    }
    base_name = next(iter(results))
    base = {(r["batch"], r["stage"]): r["p50_ms"] for r in results[base_name]["rows"]}
    payload["baseline"] = base_name
    payload["speedup_vs_baseline"] = {
        name: {
            f"b{r['batch']}:{r['stage']}": base[(r["batch"], r["stage"])] / r["p50_ms"]
            for r in v["rows"]
            if (r["batch"], r["stage"]) in base
        }
        for name, v in results.items()
        if name != base_name
    }
    return payload


def format_table(results: dict[str, list[dict]]) -> str:
    """Rows of every backend side by side, with each one's speed-up over the first."""
    names = list(results)
    lines = [
        f"{'batch':>5} {'stage':<17}"
        + "".join(f" {n[-26:] + ' p50 ms':>33} {'p90':>8} {'img/s':>8}" for n in names)
        + ("".join(f" {'x vs ' + str(i + 1):>8}" for i in range(1, len(names))))
    ]
    base = {(r["batch"], r["stage"]): r for r in results[names[0]]}
    for key, row in base.items():
        line = f"{key[0]:>5} {key[1]:<17}"
        others = []
        for n in names:
            r = next((x for x in results[n] if (x["batch"], x["stage"]) == key), None)
            if r is None:
                line += f" {'-':>33} {'-':>8} {'-':>8}"
                continue
            line += f" {r['p50_ms']:>33.2f} {r['p90_ms']:>8.2f} {r['images_per_s']:>8.2f}"
            others.append(r)
        for r in others[1:]:
            line += f" {row['p50_ms'] / r['p50_ms']:>7.2f}x"
        lines.append(line)
    return "\n".join(lines)
