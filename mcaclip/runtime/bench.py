"""Latency of each pipeline stage and of the whole edit, per batch size and backend."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from mcaclip.runtime.pipeline import EditPipeline

STAGES = ("text", "fusion", "mapper", "masked_generator", "end_to_end")


def machine_info() -> dict:
    """Where a measurement was taken: CPU/GPU, core count, library versions, date."""
    import onnxruntime
    import torch

    import mcaclip

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "mcaclip": mcaclip.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def time_call(fn: Callable[[], object], iters: int, warmup: int = 1) -> dict:
    """Wall-clock latency of ``fn()`` over ``iters`` runs after ``warmup``: p50/p90/p99 (ms)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()

    def pct(q: float) -> float:
        return times[min(len(times) - 1, round(q * (len(times) - 1)))]

    return {
        "iters": iters,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(times),
    }


def stage_calls(pipeline: EditPipeline, batch: int, prompt: str) -> dict[str, Callable]:
    """A zero-argument call per stage on ``batch`` seeded latents, inputs prepared up front.
    End to end = text encoder (the prompt uncached), fusion, mapper, masked generator."""
    w = pipeline.seeds_to_latents(list(range(batch)))
    e = pipeline.embed([prompt])
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
        "end_to_end": lambda: pipeline.edit_batch(w, e),
    }
    if "text_encoder" in pipeline.bundle.graphs:
        text = pipeline.runner("text_encoder")
        tokens, tok1 = pipeline.tokenize([prompt] * batch), pipeline.tokenize([prompt])
        calls["text"] = lambda: text.infer({"tokens": tokens})
        calls["end_to_end"] = lambda: pipeline.edit_batch(w, text.infer({"tokens": tok1})["e_t"])
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
        for stage in STAGES:
            if stage in calls:
                t = time_call(calls[stage], iters, warmup)
                rows.append(
                    {
                        "batch": batch,
                        "stage": stage,
                        **t,
                        "images_per_s": batch / (t["p50_ms"] / 1e3),
                    }
                )
    return rows


def format_table(results: dict[str, list[dict]]) -> str:
    """Rows of every backend side by side, with the speed-up of the first over the others."""
    names = list(results)
    lines = [
        f"{'batch':>5} {'stage':<17}"
        + "".join(f" {n + ' p50 ms':>20} {'p90':>8} {'img/s':>8}" for n in names)
        + ("".join(f" {names[0] + ' vs ' + n:>22}" for n in names[1:]))
    ]
    base = {(r["batch"], r["stage"]): r for r in results[names[0]]}
    for key, row in base.items():
        line = f"{key[0]:>5} {key[1]:<17}"
        others = []
        for n in names:
            r = next((x for x in results[n] if (x["batch"], x["stage"]) == key), None)
            if r is None:
                line += f" {'-':>20} {'-':>8} {'-':>8}"
                continue
            line += f" {r['p50_ms']:>20.2f} {r['p90_ms']:>8.2f} {r['images_per_s']:>8.2f}"
            others.append(r)
        for r in others[1:]:
            line += f" {r['p50_ms'] / row['p50_ms']:>21.2f}x"
        lines.append(line)
    return "\n".join(lines)
