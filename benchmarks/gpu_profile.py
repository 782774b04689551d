"""Where the time of a 1024 px FP16 edit goes on a GPU, and what cuDNN autotuning changes.

``PYTHONPATH=. python -m benchmarks.gpu_profile --out DIR``: an ffhq-1024 bundle with random
weights (torch backend), then ms per edit at batch 1 and 8 (CUDA events) of FP32 eager and
FP16 + CUDA graphs with and without the folded blur and NHWC, and a torch.profiler table of
the eager FP16 edit (folded blur) at batch 8 (top kernels by GPU time). Writes
gpu_profile.json and the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.gpu_check import build_bundle_1024
from mcaclip.runtime.bench import machine_info, time_call
from mcaclip.runtime.pipeline import EditPipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="ffhq-1024")
    ap.add_argument(
        "--compile", action="store_true", help="time torch.compile variants instead (no profile)"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bundle = Path(tempfile.mkdtemp()) / "b"
    build_bundle_1024(args.preset, bundle, 8)
    result = {"machine": machine_info(), "preset": args.preset, "runs": []}
    configs = [  # (precision, cuda_graphs, channels_last, fold_blur)
        ("fp32", False, False, False),
        ("fp16", True, False, False),
        ("fp16", True, False, True),
        ("fp16", True, True, True),
    ]
    if args.compile:
        configs = [("fp16", True, False, True), ("fp16", True, True, True)]
    for precision, graphs, channels_last, fold in configs:
        with EditPipeline(bundle, backend="torch", device="cuda", precision=precision,
                          cuda_graphs=graphs, channels_last=channels_last,
                          fold_blur=fold, compile=args.compile) as p:  # fmt: skip
            editor = p.device_editor
            e = torch.from_numpy(p.embed(["blue goatee"])).cuda()
            for batch in (1, 8):
                w = torch.from_numpy(p.seeds_to_latents(list(range(batch)))).cuda()
                t = time_call(lambda w=w, ed=editor, e=e: ed.edit_device(w, e), 10, 3, cuda=True)
                row = {"mode": editor.mode, "batch": batch, "ms_per_edit": t["p50_ms"] / batch}
                result["runs"].append(row)
                print(row, flush=True)
        torch.cuda.empty_cache()
    if args.compile:
        result["seconds"] = time.perf_counter() - t0
        out = args.out / "gpu_profile_compile.json"
        out.write_text(json.dumps(result, indent=2, default=str))
        return
    with EditPipeline(bundle, backend="torch", device="cuda", precision="fp16",
                      cuda_graphs=False, fold_blur=True) as p:  # fmt: skip
        editor = p.device_editor
        e = torch.from_numpy(p.embed(["blue goatee"])).cuda()
        w = torch.from_numpy(p.seeds_to_latents(list(range(8)))).cuda()
        with torch.inference_mode():
            for _ in range(3):
                editor.edit_device(w, e)
            torch.cuda.synchronize()
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                editor.edit_device(w, e)
                torch.cuda.synchronize()
    averages = prof.key_averages()
    try:
        table = averages.table(sort_by="self_device_time_total", row_limit=25)
    except (KeyError, AttributeError, ValueError):
        table = averages.table(sort_by="self_cuda_time_total", row_limit=25)
    (args.out / "gpu_profile.txt").write_text(table)
    print(table[:6000])
    result["seconds"] = time.perf_counter() - t0
    (args.out / "gpu_profile.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
