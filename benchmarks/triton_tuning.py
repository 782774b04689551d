"""The layer-epilogue kernel alone, timed with other launch options on a GPU: how far the options
chosen from ptxas's reports (:func:`mcaclip.runtime.kernels.triton_ops.epilogue_blocks`, see
``benchmarks/triton_aot.py``) are from the fastest, and the kernel's GB/s (the GPU check puts it
next to the copy bandwidth it measures).

Each kind of launch of the largest maps of an edit (1024 px, then 512 px, as the GPU check
asks: the up-sampling layer and the ToRGB layer, per up-sampling form; the largest maps first,
so that a deadline leaves out the smaller ones) runs on random tensors of its real shapes with
each option set of :data:`CANDIDATES` that fits it: ``iters`` launches back to back between two
CUDA events, after a warm-up (which compiles). Every option's outputs are checked against the
chosen options' outputs (all outputs are NaN-filled first, so an element left unwritten shows).
An option the GPU refuses for its resources (shared memory, threads, registers) is recorded
with its error (``failed``) and the rest go on; where that is the chosen options
(``chosen_failed``: what the app launches would fail there), the first option that ran is the
reference. Any other error ends the run. The GPU check runs it as its ``epilogue_tuning`` step,
in a process of its own; on a CPU it runs in Triton's interpreter (tests), where the times mean
nothing.

    python -m benchmarks.triton_tuning               # on a GPU: ffhq-1024, batch 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.triton_aot import FORMS, kinds, launches, named
from mcaclip.runtime.kernels import triton_ops

# (pixels per program, channels per step, warps, stages): kinds of the chosen options, the
# first version's (64 x 64 or 128 x 32, 4 warps, 3 stages), and neighbours with no spills on
# sm_90 and sm_89 in triton_aot_sweep.json
CANDIDATES = (
    (32, 64, 8, 2),
    (32, 32, 4, 2),
    (64, 32, 4, 2),
    (32, 64, 4, 2),
    (32, 32, 8, 2),
    (64, 64, 8, 2),
    (64, 32, 8, 2),
    (64, 64, 4, 3),
    (128, 32, 4, 3),
    (128, 32, 8, 2),
)
# and for the launches that compute the conv in the kernel (--triton-convs; every channel in
# one step): (pixels, warps, stages), the chosen ones' neighbours
CONV_CANDIDATES = ((128, 8, 2), (64, 8, 2), (64, 4, 2), (128, 4, 3), (32, 4, 2))
OUTPUTS = ("x_o_ptr", "x_e_ptr", "m_ptr", "sk_o_ptr", "sk_e_ptr")  # next inputs, mask, skips


def largest(preset, batch: int, form: str, smallest: int) -> list[tuple]:
    """One layer-epilogue launch of each kind on maps of at least ``smallest`` pixels."""
    epilogues, _ = launches(preset, batch, 1, form, None)
    big = [e for e in epilogues if named(triton_ops._EPILOGUE, e[2])["hw"] >= smallest]
    return kinds(big)


def options_for(args: tuple, meta: dict) -> list[dict]:
    """The candidate options that fit this launch (channel block no wider than the launch's,
    pixel block dividing :func:`~mcaclip.runtime.kernels.triton_ops.epilogue_pixels`); the
    chosen options first."""
    hw = named(triton_ops._EPILOGUE, args)["hw"]
    pixels = triton_ops.launch_pixels(meta, hw)
    chosen = {k: meta[k] for k in ("BLOCK_P", "BLOCK_C", "num_warps", "num_stages")}
    out = [chosen]
    if meta["CONV"]:  # the channels stay in one step
        for p, w, s in CONV_CANDIDATES:
            option = {"BLOCK_P": p, "BLOCK_C": meta["BLOCK_C"], "num_warps": w, "num_stages": s}
            if pixels % p == 0 and option not in out:
                out.append(option)
        return out
    for p, c, w, s in CANDIDATES:
        option = {"BLOCK_P": p, "BLOCK_C": c, "num_warps": w, "num_stages": s}
        if c <= meta["BLOCK_C"] and pixels % p == 0 and option not in out:
            out.append(option)
    return out


def materialize(args: tuple, device: str) -> tuple:
    """The launch's arguments as real tensors on ``device`` (meta tensors in, same shapes,
    strides and dtypes; small random values, a tensor passed twice stays one tensor)."""
    made: dict[int, torch.Tensor] = {}
    out = []
    gen = torch.Generator(device=device).manual_seed(0)
    for a in args:
        if isinstance(a, torch.Tensor):
            if id(a) not in made:
                t = torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=device)
                made[id(a)] = t.normal_(0.0, 0.3, generator=gen)
            out.append(made[id(a)])
        else:
            out.append(a)
    return tuple(out)


def bytes_moved(args: tuple) -> int:
    """Bytes the kernel reads and writes at the least: each distinct tensor once (its second
    pass over the original stream's conv output is meant to come from cache)."""
    seen, total = set(), 0
    for a in args:
        if isinstance(a, torch.Tensor) and id(a) not in seen:
            seen.add(id(a))
            total += a.numel() * a.element_size()
    return total


def time_launch(grid, args, meta, iters: int, warmup: int) -> float:
    """Milliseconds per launch: ``iters`` launches back to back between two CUDA events (wall
    clock off a GPU), after ``warmup`` launches."""
    kernel = triton_ops._EPILOGUE
    for _ in range(warmup):
        kernel[grid](*args, **meta)
    if args[0].is_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            kernel[grid](*args, **meta)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        kernel[grid](*args, **meta)
    return (time.perf_counter() - t0) * 1e3 / iters


def issue_bound(grid, args, meta) -> dict:
    """The launch's machine code as this GPU's Triton compiled it, counted
    (:func:`benchmarks.triton_aot.sass_counts`), and on an H100/H200 its issue-bound
    milliseconds (:func:`benchmarks.triton_aot.issue_ms`, with this GPU's SM count): what
    the timing is to be read against. Empty off a GPU (the interpreter compiles nothing) or
    where the compiled kernel is not at hand."""
    from benchmarks.triton_aot import ISSUE_GPUS, issue_ms, sass_counts

    if not args[0].is_cuda:
        return {}
    try:  # the kernel the timed launches ran, from Triton's cache: looked up, not launched
        compiled = triton_ops._EPILOGUE.warmup(*args, grid=grid, **meta)
    except Exception:  # noqa: BLE001 (a Triton without warmup(): the counts are left out)
        return {}
    counts = sass_counts(compiled) if compiled is not None else {}
    if not counts:
        return {}
    major, minor = torch.cuda.get_device_capability(args[0].device)
    target = major * 10 + minor
    row = {"target": target, "programs": grid[0], "num_warps": meta["num_warps"], **counts}
    if target in ISSUE_GPUS:
        sms = torch.cuda.get_device_properties(args[0].device).multi_processor_count
        row["issue_ms"] = issue_ms(row, sms=sms)
    return {k: row[k] for k in ("sass_instructions", "sass_loops", "issue_ms") if k in row}


def _outputs(args: tuple) -> list[torch.Tensor]:
    """The output tensors a launch writes (one it does not write is the spare argument, an
    input: left out)."""
    k = named(triton_ops._EPILOGUE, args)
    return [k[name] for name in OUTPUTS if k[name] is not k["b1_ptr"]]


def _difference(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float | str:
    worst = 0.0
    for a, b in zip(got, ref):
        d = (a.float() - b.float()).abs().max().item()
        if d != d:  # NaN: an element this option did not write (outputs start as NaN)
            return "unwritten"
        worst = max(worst, d)
    return worst


def tune(preset, batch: int, forms: list[str], device: str, iters: int, smallest: int,
         deadline: float = float("inf"), warmup: int = 3) -> dict:  # fmt: skip
    """Every kind of launch of ``forms`` on maps of at least ``smallest`` pixels, with each
    candidate option, timed on ``device``; stops (and says so) at ``deadline`` (perf_counter)."""
    triton_ops.load()
    rows, left_out = [], []
    todo = [(form, *launch) for form in forms for launch in largest(preset, batch, form, smallest)]
    todo.sort(key=lambda t: -named(triton_ops._EPILOGUE, t[3])["hw"])  # stable: forms' order
    for form, layer, _, meta_args, meta in todo:
        args = materialize(meta_args, device)
        k = named(triton_ops._EPILOGUE, args)
        moved = bytes_moved(args)
        # the chosen options' outputs (or, where the GPU refused them, the first option's
        # that ran): every other option must give them
        reference = None
        for index, option in enumerate(options_for(args, meta)):  # the chosen ones first
            if time.perf_counter() > deadline:
                left_out.append(f"{form} layer {layer} {option}")
                continue
            tried = triton_ops.with_options(meta, k["C"], **option)
            grid = (k["raw_e_ptr"].shape[0] * k["hw"] // option["BLOCK_P"],)
            for t in _outputs(args):
                t.fill_(float("nan"))
            row = {"form": form, "layer": layer, "size": k["width"], "channels": k["C"],
                   "phase_blur": bool(meta["PHASE_BLUR"]), "rgb": bool(meta["HAS_RGB"]),
                   **option, "chosen": index == 0}  # fmt: skip
            try:
                ms = time_launch(grid, args, tried, iters, warmup)
            except Exception as exc:
                if not triton_ops.refused(exc):
                    raise
                rows.append({**row, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            if reference is None:
                reference = [t.clone() for t in _outputs(args)]
                check = "unwritten" if any(t.isnan().any() for t in reference) else 0.0
                row["reference"] = True
            else:
                check = _difference(_outputs(args), reference)
            bound = issue_bound(grid, args, tried)
            if bound.get("issue_ms"):
                bound["ms_over_issue_ms"] = round(ms / bound["issue_ms"], 3)
            rows.append({**row, "ms": round(ms, 4), "mb_moved": round(moved / 1e6, 3),
                         "gbs": round(moved / ms / 1e6, 1),
                         "max_abs_diff_vs_chosen": check, **bound})  # fmt: skip
        del args, k, reference
    timed = [r for r in rows if "ms" in r]
    best = {}
    for r in timed:
        key = (r["form"], r["layer"])
        if key not in best or r["ms"] < best[key]["ms"]:
            best[key] = r
    chosen = {(r["form"], r["layer"]): r for r in timed if r["chosen"]}
    return {
        "batch": batch,
        "device": device,
        "rows": rows,
        # per launch: the chosen options' time over the fastest candidate's (1.0: the best)
        "chosen_over_best": {
            f"{f} layer {layer}": round(chosen[(f, layer)]["ms"] / b["ms"], 3)
            for (f, layer), b in best.items()
            if (f, layer) in chosen
        },
        "best": {f"{f} layer {layer}": _options(b) for (f, layer), b in best.items()},
        "unequal": [
            r
            for r in timed
            if isinstance(r["max_abs_diff_vs_chosen"], str) or r["max_abs_diff_vs_chosen"] > 0.05
        ],  # fmt: skip
        "failed": [r for r in rows if "error" in r],
        "chosen_failed": [
            f"{r['form']} layer {r['layer']}" for r in rows if "error" in r and r["chosen"]
        ],  # fmt: skip
        "left_out_for_time": left_out,
    }


def _options(row: dict) -> list[int]:
    return [row["BLOCK_P"], row["BLOCK_C"], row["num_warps"], row["num_stages"]]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import machine_info, write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ffhq-1024")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--forms", default="subpixel,phases", help=f"from {', '.join(FORMS)}")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--smallest", type=int, default=512 * 512, help="pixels per map")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after")
    parser.add_argument("--json", type=Path, help="write here (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("triton_tuning: no CUDA GPU here (the kernels' timing needs one)")
        return 2
    deadline = time.perf_counter() + args.seconds
    result = tune(args.preset, args.batch, args.forms.split(","), "cuda", args.iters,
                  args.smallest, deadline)  # fmt: skip
    print(result["chosen_over_best"])
    payload = {"preset": args.preset, "precision": "fp16", **result}
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2) + "\n")
        tmp.replace(args.json)
    else:
        write_result("triton_tuning", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
