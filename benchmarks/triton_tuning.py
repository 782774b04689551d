"""The layer-epilogue kernel alone, timed with other launch options on a GPU: how far the options
chosen from ptxas's reports (:func:`mcaclip.nn.triton_kernels.epilogue_blocks`, see
``benchmarks/triton_aot.py``) are from the fastest, and the kernel's rate against the copy
bandwidth.

Each kind of launch of the largest maps of an edit (1024 px: ToRGB layer and the up-sampling
layer before it, per up-sampling form) runs on random tensors of its real shapes, with each
option set of :data:`CANDIDATES` that fits it; CUDA events, median of ``iters`` after a warm-up.
The GPU check runs it as its ``epilogue_tuning`` step; on a CPU it runs in Triton's interpreter
(tests), where the times mean nothing.

    python -m benchmarks.triton_tuning               # on a GPU: ffhq-1024, batch 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.triton_aot import FORMS, launches
from mcaclip.nn import triton_kernels

# (pixels per program, channels per step, warps, stages): the chosen kind of option first, the
# first version's (64 x 64 or 128 x 32, 4 warps, 3 stages), and neighbours with no spills on
# sm_90 and sm_89 in triton_aot_sweep.json
CANDIDATES = (
    (32, 64, 8, 2),
    (32, 32, 4, 2),
    (32, 32, 8, 2),
    (64, 64, 8, 2),
    (64, 32, 8, 2),
    (64, 64, 4, 3),
    (128, 32, 4, 3),
    (128, 32, 8, 2),
)


def kinds(preset, batch: int, form: str, smallest: int) -> list[tuple]:
    """One layer-epilogue launch of each kind (in-place or blurred phases, ToRGB, channel block)
    on maps of at least ``smallest`` pixels: the last launch of a kind is on its largest map."""
    epilogues, _ = launches(preset, batch, 1, form, None)
    found = {}
    for layer, grid, args, meta in epilogues:
        if args[24] >= smallest:
            found[(meta["PHASES"], meta["PHASE_BLUR"], meta["HAS_RGB"], meta["BLOCK_C"])] = (
                layer, grid, args, meta)  # fmt: skip
    return list(found.values())


def options_for(args: tuple, meta: dict) -> list[dict]:
    """The candidate options that fit this launch (channel block no wider than the launch's,
    pixel block dividing the map, or its parity class with the in-kernel blur); the chosen
    options first."""
    pixels = args[24] // 4 if meta["PHASE_BLUR"] else args[24]
    chosen = {k: meta[k] for k in ("BLOCK_P", "BLOCK_C", "num_warps", "num_stages")}
    out = [chosen]
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


def bytes_moved(args: tuple, meta: dict) -> int:
    """Bytes the kernel must read and write at least: each distinct tensor once (the conv
    outputs, the outputs, the skips; the small per-sample vectors count too)."""
    seen, total = set(), 0
    for a in args:
        if isinstance(a, torch.Tensor) and id(a) not in seen:
            seen.add(id(a))
            total += a.numel() * a.element_size()
    return total


def time_launch(grid, args, meta, iters: int, warmup: int) -> float:
    """Median milliseconds of one launch (CUDA events on a GPU, wall clock elsewhere)."""
    kernel = triton_kernels._EPILOGUE
    cuda = args[0].is_cuda
    times = []
    for i in range(warmup + iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            kernel[grid](*args, **meta)
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            kernel[grid](*args, **meta)
            ms = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times.append(ms)
    return statistics.median(times)


OUTPUTS = (13, 14, 15, 22, 23)  # the launch's outputs: next inputs, mask, RGB skips


def _outputs(args: tuple) -> list[torch.Tensor]:
    """The output tensors a launch writes (an output it does not write is the spare argument,
    an input: left out)."""
    spare = args[7]
    return [args[i] for i in OUTPUTS if args[i] is not spare]


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
    triton_kernels.load()
    rows, left_out = [], []
    for form in forms:
        for layer, _, meta_args, meta in kinds(preset, batch, form, smallest):
            args = materialize(meta_args, device)
            moved = bytes_moved(args, meta)
            pixels = args[24]
            reference = None  # the chosen options' outputs: every other option must give them
            for k, option in enumerate(options_for(args, meta)):  # the chosen ones first
                if time.perf_counter() > deadline:
                    left_out.append(f"{form} layer {layer} {option}")
                    continue
                tried = {**meta, **option}
                grid = (args[1].shape[0] * pixels // option["BLOCK_P"],)
                for t in _outputs(args):
                    t.fill_(float("nan"))
                ms = time_launch(grid, args, tried, iters, warmup)
                if k == 0:
                    reference = [t.clone() for t in _outputs(args)]
                rows.append({"form": form, "layer": layer, "size": args[25],
                             "channels": args[26], "phase_blur": bool(meta["PHASE_BLUR"]),
                             "rgb": bool(meta["HAS_RGB"]), **option, "chosen": k == 0,
                             "ms": round(ms, 4), "mb_moved": round(moved / 1e6, 3),
                             "gbs": round(moved / ms / 1e6, 1),
                             "max_abs_diff_vs_chosen": None if reference is None
                             else _difference(_outputs(args), reference)})  # fmt: skip
            del args, reference
    best = {}
    for r in rows:
        key = (r["form"], r["layer"])
        if key not in best or r["ms"] < best[key]["ms"]:
            best[key] = r
    chosen = {(r["form"], r["layer"]): r for r in rows if r["chosen"]}
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
        "left_out_for_time": left_out,
    }


def _options(row: dict) -> list[int]:
    return [row["BLOCK_P"], row["BLOCK_C"], row["num_warps"], row["num_stages"]]


def main() -> None:
    from benchmarks.common import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ffhq-1024")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--forms", default="subpixel,phases", help=f"from {', '.join(FORMS)}")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--smallest", type=int, default=512 * 512, help="pixels per map")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("triton_tuning: no CUDA GPU here (the kernels' timing needs one)")
    result = tune(args.preset, args.batch, args.forms.split(","), "cuda", args.iters,
                  args.smallest)  # fmt: skip
    print(result["chosen_over_best"])
    write_result("triton_tuning", {"preset": args.preset, "precision": "fp16", **result})


if __name__ == "__main__":
    main()
