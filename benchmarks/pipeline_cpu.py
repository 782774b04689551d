"""ONNX Runtime vs PyTorch eager on CPU, same process, same bundle, batch 1 and 4.

Presets: toy-64, and 256 px with FFHQ channel widths (config-f at 256 px, ViT-B-32 text tower).
Random weights: speed does not depend on them. Also measures one latent edited with 4 prompts
in one call against 4 single-prompt calls (the original stream is shared).

    python -m benchmarks.pipeline_cpu            # both presets (about 12 min on 2 cores)
    python -m benchmarks.pipeline_cpu --quick    # toy-64, batch 1, 2 timed runs
    python -m benchmarks.pipeline_cpu --toy-only # toy-64, batch 1 and 4 (pipeline_cpu_toy64)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.common import time_call, write_result
from mcaclip.config import GeneratorConfig, Preset, load_preset
from mcaclip.export.builder import BatchProfile, build_bundle
from mcaclip.nn.editor import MCAEditor
from mcaclip.runtime.bench import bench_pipeline, format_table
from mcaclip.runtime.pipeline import EditPipeline

PROMPTS = ["blue goatee", "red hair", "glasses", "a smiling face"]


def ffhq_256() -> Preset:
    ffhq = load_preset("ffhq-1024")
    return Preset("ffhq-widths-256", GeneratorConfig(size=256), ffhq.clip, ffhq.editor)


def multi_prompt(pipeline: EditPipeline, iters: int) -> dict:
    """One latent x 4 prompts in one call vs 4 calls of one prompt (ms, p50)."""
    w = pipeline.seeds_to_latents([0])
    e = pipeline.embed(PROMPTS)
    together = time_call(lambda: pipeline.edit_batch(w, e), iters)
    apart = time_call(lambda: [pipeline.edit_batch(w, e[i : i + 1]) for i in range(4)], iters)
    return {
        "one_call_4_prompts_ms": together["p50_ms"],
        "four_single_calls_ms": apart["p50_ms"],
        "ratio": apart["p50_ms"] / together["p50_ms"],
    }


def run(preset: Preset, batches: list[int], iters: int, warmup: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    editor = MCAEditor.from_preset(preset, random_weights=True)
    bundle = workdir / preset.name
    profile = BatchProfile(1, max(batches), max(batches), max_prompts=4)
    build_bundle(
        editor, bundle, PROMPTS, profile=profile, random_weights=True, backend="onnxruntime"
    )
    del editor
    results, multi, torch_mode = {}, {}, None
    for backend in ("onnxruntime", "torch"):
        with EditPipeline(bundle, backend=backend) as pipeline:
            results[backend] = bench_pipeline(pipeline, batches, iters, warmup=warmup)
            multi[backend] = multi_prompt(pipeline, iters)
            if pipeline.device_editor is not None:
                torch_mode = pipeline.device_editor.mode  # e.g. cpu-fp32-fused-eager
    print(f"\n{preset.name} ({preset.generator.size} px)")
    print(format_table(results))
    base = {(r["batch"], r["stage"]): r["p50_ms"] for r in results["onnxruntime"]}
    ratios = [
        {
            "batch": r["batch"],
            "stage": r["stage"],
            "ort_speedup": r["p50_ms"] / base[(r["batch"], r["stage"])],
        }
        for r in results["torch"]
        if (r["batch"], r["stage"]) in base  # end_to_end_device: torch only
    ]
    for backend, m in multi.items():
        print(
            f"{backend}: 1 latent x 4 prompts {m['one_call_4_prompts_ms']:.1f} ms in one call, "
            f"{m['four_single_calls_ms']:.1f} ms in 4 calls ({m['ratio']:.2f}x)"
        )
    return {
        "preset": preset.name,
        "size": preset.generator.size,
        "precision": "fp32",
        "weights": "random",
        "rows": results,
        "torch_mode": torch_mode,
        "ort_speedup_vs_torch_eager": ratios,
        "multi_prompt": multi,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy-64, batch 1, 2 timed runs")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--toy-only", action="store_true", help="toy-64 only, batch 1 and 4 (pipeline_cpu_toy64)"
    )
    args = parser.parse_args()
    presets = (
        [load_preset("toy-64")]
        if args.quick or args.toy_only
        else [load_preset("toy-64"), ffhq_256()]
    )
    batches = [1] if args.quick else [1, 4]
    iters = 2 if args.quick else args.iters
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(p, batches, iters, args.warmup, Path(tmp)) for p in presets]
    name = "pipeline_cpu" + ("_quick" if args.quick else "_toy64" if args.toy_only else "")
    payload = {"runs": runs, "batches": batches, "iters": iters, "warmup": args.warmup}
    print(f"wrote {write_result(name, payload)}")
    for r in runs:
        e2e = [x for x in r["ort_speedup_vs_torch_eager"] if x["stage"] == "end_to_end"]
        summary = ", ".join(f"batch {x['batch']}: {x['ort_speedup']:.2f}x" for x in e2e)
        print(f"{r['preset']}: ONNX Runtime vs PyTorch eager end to end: {summary}")


if __name__ == "__main__":
    main()
