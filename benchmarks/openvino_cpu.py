"""OpenVINO vs ONNX Runtime vs PyTorch eager on CPU: whole masked edits, one run, same bundles.

For each bundle (random ffhq-1024 and ffhq-widths 256 px weights; the trained toy-world demo
editor for numerics), batch 1 and 4, one prompt: the latency of ``edit_batch`` to uint8
pictures without masks (what ``mcarun edit`` does: fusion, mapper, masked generator), for
ONNX Runtime FP32 (the baseline), OpenVINO at each precision this CPU computes natively, and
the PyTorch CPU backend; and per precision the PSNR of the edited pictures against FP32 ONNX
Runtime (pictures in [-1, 1], peak-to-peak 2).

    python -m benchmarks.openvino_cpu                # 1024 + 256 px + toy (about 25 min)
    python -m benchmarks.openvino_cpu --quick        # toy-64 only, batch 1, 2 timed runs
    python -m benchmarks.openvino_cpu --workdir D    # keep the exported bundles in D, reuse

Writes ``benchmarks/results/openvino_cpu.json`` (``openvino_cpu_quick.json``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import time_call, write_result
from benchmarks.pipeline_cpu import ffhq_256
from mcaclip.bundle import MANIFEST
from mcaclip.config import load_preset
from mcaclip.export.builder import BatchProfile, build_bundle
from mcaclip.nn.editor import MCAEditor
from mcaclip.runtime.backends import openvino
from mcaclip.runtime.pipeline import EditPipeline
from mcaclip.toyfaces.demo import DEMO
from mcaclip.toyfaces.world import asset

PROMPT = "blue goatee"


def random_bundle(preset, workdir: Path, batches: list[int]) -> Path:
    out = workdir / preset.name
    if not (out / MANIFEST).is_file():
        torch.manual_seed(0)
        editor = MCAEditor.from_preset(preset, random_weights=True)
        profile = BatchProfile(1, max(batches), max(batches), max_prompts=1)
        build_bundle(
            editor, out, [PROMPT], profile=profile, random_weights=True, backend="onnxruntime"
        )
    return out


def toy_bundle(workdir: Path, batches: list[int]) -> Path:
    out = workdir / "toy-demo"
    if not (out / MANIFEST).is_file():
        editor = MCAEditor.load(asset(DEMO))
        profile = BatchProfile(1, max(batches), max(batches), max_prompts=1)
        build_bundle(editor, out, [PROMPT], profile=profile, backend="onnxruntime")
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def configurations() -> list[tuple[str, dict]]:
    configs = [("onnxruntime", {"backend": "onnxruntime"})]
    configs += [
        (f"openvino-{p}", {"backend": "openvino", "precision": p})
        for p in openvino.native_precisions()
    ]
    configs.append(("torch-cpu-fp32", {"backend": "torch", "device": "cpu"}))
    return configs


def run(name: str, bundle: Path, batches: list[int], iters: int, warmup: int) -> dict:
    rows, pictures, settings = [], {}, {}
    for config, options in configurations():
        with EditPipeline(bundle, **options) as p:
            w = p.seeds_to_latents(list(range(max(batches))))
            e = p.embed([PROMPT])
            pictures[config] = p.edit_batch(w, e, masks=False)[0]  # the largest batch
            if options["backend"] == "openvino":
                settings[config] = p.runner("masked_generator").settings
            if options["backend"] == "torch":
                settings[config] = {"mode": p.device_editor.mode}
            for batch in batches:
                chunk = w[:batch]
                t = time_call(
                    lambda chunk=chunk, e=e: p.edit_batch(chunk, e, masks=False, pixels=True),
                    iters,
                    warmup,
                )
                rows.append({"config": config, "batch": batch, **t})
                print(f"{name:>16} {config:>16} batch {batch}: {t['p50_ms']:9.1f} ms p50")
    base = {r["batch"]: r["p50_ms"] for r in rows if r["config"] == "onnxruntime"}
    for r in rows:
        r["speedup_vs_onnxruntime"] = base[r["batch"]] / r["p50_ms"]
    ref = pictures["onnxruntime"]
    numerics = {
        c: {
            "psnr_db": psnr(x, ref),
            "max_abs": float(np.abs(x - ref).max()),
            "latents": len(ref),
        }
        for c, x in pictures.items()
        if c != "onnxruntime"
    }
    for c, n in numerics.items():
        print(f"{name:>16} {c:>16} PSNR {n['psnr_db']:6.1f} dB to ONNX Runtime FP32")
    return {"bundle": name, "rows": rows, "numerics": numerics, "settings": settings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy-64 only, batch 1, 2 runs")
    parser.add_argument("--iters", type=int, default=3, help="timed runs (1024 px: 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep the exported bundles here")
    args = parser.parse_args()
    openvino.openvino()  # a one-line error without OpenVINO
    batches = [1] if args.quick else [1, 4]
    iters = 2 if args.quick else args.iters
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = [run("toy-64 (trained)", toy_bundle(work, batches), batches, iters, args.warmup)]
        if not args.quick:
            for preset in (ffhq_256(), load_preset("ffhq-1024")):
                bundle = random_bundle(preset, work, batches)
                size = preset.generator.size
                runs.append(run(f"{size} px (random)", bundle, batches, iters, args.warmup))
    payload = {
        "what": "edit_batch to uint8 pictures, no masks, one prompt; PSNR vs ONNX Runtime FP32",
        "batches": batches,
        "iters": iters,
        "warmup": args.warmup,
        "default_precision": openvino.resolve_precision(None),
        "cpu_precisions": openvino.native_precisions(),
        "runs": runs,
    }
    print(f"wrote {write_result('openvino_cpu' + ('_quick' if args.quick else ''), payload)}")


if __name__ == "__main__":
    main()
