"""The GPU fast path's Triton kernels compiled for GPUs this machine does not have: registers,
spills, shared memory and occupancy per launch, from ptxas (no GPU or CUDA driver needed).

Triton's wheel carries ptxas, so a kernel compiles to a cubin for any NVIDIA architecture on a
CPU-only machine. This script enumerates the launches that ``--triton-epilogues`` (and
``--triton-masks``) make for one masked-generator call of a preset: the generator is built on
PyTorch's meta device (no weights, no arithmetic), each layer's launch is built by the same
function the custom op uses (:func:`mcaclip.runtime.kernels.triton_ops._epilogue_launch`),
specialized the way Triton's JIT specializes it (integer and pointer alignment, ints equal to
1), and compiled for each target. ptxas's report (``-v``) gives registers per thread, spill
stores and loads, and the stack frame; occupancy is worked out from registers, shared memory
and warps.

What it cannot say: how fast a kernel runs. Spills and occupancy only bound it, and so does
the machine code's size (nvdisasm, also in the wheel): a kernel without loops issues each of its
instructions once per warp, so programs x warps x instructions over the GPU's issue rate is a
lower bound on its time (``issue_ms``, for an H100/H200), which the layer epilogue, bound by its
instructions at 32 pixels a block, came within 1.4x of on an H200.

    python -m benchmarks.triton_aot                # ffhq-1024, batch 8, sm 90/89/86/80/120
    python -m benchmarks.triton_aot --targets 90 --forms subpixel --quick
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import subprocess
import tempfile
import time

import torch

from mcaclip.config import Preset, load_preset
from mcaclip.nn.editor import MaskedSynthesis, MCAEditor
from mcaclip.nn.graphs import Fp16Graph, build_graph
from mcaclip.nn.stylegan2 import fold_blur, freeze_weights, phase_conv, subpixel
from mcaclip.runtime.kernels import synthesis, triton_ops
from mcaclip.runtime.kernels.synthesis import triton_epilogues

# up-sampling forms of the torch backend (--fold-blur --subpixel is the FP16 GPU default)
FORMS = {"subpixel": (fold_blur, subpixel), "phases": (phase_conv,), "transposed": ()}
# and "convs": the sub-pixel form with the big maps' convs computed in the epilogue kernel
# (--triton-convs)
FORMS["convs"] = FORMS["subpixel"]
# compute capability -> (name, registers per SM, warps per SM, shared memory per SM, shared
# memory one block may have, blocks per SM), from NVIDIA's CUDA C++ programming guide (table
# "technical specifications per compute capability")
TARGETS = {
    90: ("H100 (sm_90)", 65536, 64, 228 * 1024, 227 * 1024, 32),
    89: ("RTX 40 / L4 / L40 (sm_89)", 65536, 48, 100 * 1024, 99 * 1024, 24),
    86: ("RTX 30 / A10 (sm_86)", 65536, 48, 100 * 1024, 99 * 1024, 16),
    80: ("A100 (sm_80)", 65536, 64, 164 * 1024, 163 * 1024, 32),
    120: ("RTX 50 (sm_120)", 65536, 48, 100 * 1024, 99 * 1024, 24),
}


def launches(preset: str | Preset, batch: int, prompts: int, form: str, condition: str | None):
    """The launches of one masked-generator call, built on the meta device (nothing is
    allocated or computed): (layer-epilogue launches, ``--triton-masks`` launches), each a
    list of (layer, grid, args, meta) in layer order."""
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    if condition is not None:
        preset = dataclasses.replace(
            preset, editor=dataclasses.replace(preset.editor, mask_condition=condition)
        )
    with torch.device("meta"), contextlib.redirect_stderr(io.StringIO()):  # "RANDOM weights"
        editor = MCAEditor.from_preset(preset, random_weights=True).eval()
    graph = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
    for transform in FORMS[form]:
        transform(graph)
    freeze_weights(graph, channels_last=True)
    triton_epilogues(graph, convs=form == "convs")
    masked = next(m for m in graph.modules() if isinstance(m, MaskedSynthesis))
    epilogues, heads = [], []

    def record(*a):
        out, *launch = triton_ops._epilogue_launch(*a)
        layer = len(epilogues)
        epilogues.append((layer, *launch))
        # the --triton-masks kernel on the same layer's features (the original stream's)
        k = named(triton_ops._EPILOGUE, launch[1])
        mask = k["m_ptr"]
        feature = mask.new_empty((k["raw_o_ptr"].shape[0], k["C"], *mask.shape[2:]))
        feature = feature.contiguous(memory_format=torch.channels_last)
        head = (k["w1_ptr"], k["b1_ptr"], k["w2_ptr"], k["b2_ptr"])
        term = k["term_ptr"] if launch[2]["HAS_TERM"] else None
        _, *head_launch = triton_ops._mask_head_launch(feature, *head, term, prompts)
        heads.append((layer, *head_launch))
        return out

    w, w_edit, cond = meta_inputs(editor, batch, prompts)
    real = triton_ops._epilogue_op
    triton_ops._epilogue_op = record
    try:
        with torch.inference_mode():
            noise = masked.synthesis.make_noise(batch, "const")
            synthesis.run(masked, masked.fast_path.plan, w, w_edit, cond, noise, prompts)
    finally:
        triton_ops._epilogue_op = real
    return epilogues, heads


def meta_inputs(editor, batch: int, prompts: int) -> tuple:
    """FP16 (w, w', text embedding) of a masked-generator call on the meta device."""
    n_latent, dim = editor.generator.n_latent, editor.generator.style_dim
    half = {"device": "meta", "dtype": torch.float16}
    w = torch.empty(batch, n_latent, dim, **half)
    w_edit = torch.empty(batch * prompts, n_latent, dim, **half)
    return w, w_edit, torch.empty(batch * prompts, editor.preset.clip.embed_dim, **half)


def named(kernel, args: tuple) -> dict:
    """A launch's arguments by the kernel's parameter names."""
    return dict(zip(kernel.arg_names, args))


def kinds(epilogues: list) -> list:
    """One layer-epilogue launch of each kind (in-place or blurred phases, ToRGB, channel
    block, conv in the kernel) from :func:`launches`' list: the last of a kind, the one on
    its largest map."""
    found = {}
    for launch in epilogues:
        meta = launch[3]
        kind = (meta["PHASES"], meta["PHASE_BLUR"], meta["HAS_RGB"], meta["BLOCK_C"], meta["CONV"])
        found[kind] = launch
    return list(found.values())


def compile_launch(kernel, args: tuple, meta: dict, capability: int) -> dict:
    """Compile one launch for a CUDA architecture as Triton's JIT would specialize it there;
    returns ptxas's report and the occupancy it allows."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", capability, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **meta)
    options, signature, constexprs, attrs = kernel._pack_args(
        backend, dict(meta), bound, specialization, options
    )
    start = time.perf_counter()
    compiled = triton.compile(
        ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__
    )
    report = ptxas_report(compiled.asm["ptx"], capability)
    warps = options.num_warps
    report.update(
        compile_s=round(time.perf_counter() - start, 2),
        num_warps=warps,
        shared_bytes=compiled.metadata.shared,
        occupancy=occupancy(capability, report["registers"], warps, compiled.metadata.shared),
        **sass_counts(compiled),
    )
    return report


def sass_counts(compiled) -> dict:
    """The kernel's machine code (SASS, by the nvdisasm in Triton's wheel), counted: its
    instructions and its loops (branches back to an earlier label, the trap's one-instruction
    loop after the exit not counted). A kernel without loops runs each instruction at most once
    per warp: then programs x warps x instructions bounds what the GPU issues. Empty where
    nvdisasm is missing."""
    try:
        sass = compiled.asm["sass"]
    except Exception:  # noqa: BLE001 (no nvdisasm: the counts are left out)
        return {}
    labels, ops, loops = {}, [], 0
    for line in sass.splitlines():
        label = re.fullmatch(r"\.?([A-Za-z_][\w.$]*):", line.strip())
        if label:
            labels[label.group(1)] = len(ops)
        elif "\t" in line:
            op = line.split("\t", 1)[1]
            target = re.search(r"\bBRA\s+`?\(?\.?([A-Za-z_][\w.$]*)", op)
            if target and labels.get(target.group(1), len(ops)) < len(ops):
                loops += 1
            ops.append(op)
    return {"sass_instructions": len(ops), "sass_loops": loops}


# the GPUs whose issue rate issue_ms assumes (SMs, boost clock): the ones the GPU check ran on
ISSUE_GPUS = {90: ("H100 SXM / H200", 132, 1.98e9)}


def issue_ms(row: dict, sms: int | None = None) -> float | None:
    """A launch's issue-bound time on ``ISSUE_GPUS``' GPU of its target, in milliseconds:
    every warp issues every instruction once (no ``sass_loops``), at one
    instruction per cycle from each of an SM's four schedulers; None elsewhere. A lower bound
    for a kernel bound by its instructions (the layer epilogue at 1024 px, batch 8: run 4
    timed the version of then on an H200 at 1.36 and 1.44x this bound as launched, 1.27-1.76x
    with other 32 or 64 pixel blocks, 1.85-2.8x with 128 at occupancy 1/8 to 1/4); not a
    timing."""
    gpu = ISSUE_GPUS.get(row["target"])
    if gpu is None or "sass_instructions" not in row or row["sass_loops"]:
        return None
    _, default_sms, clock = gpu
    sms = sms or default_sms  # the GPU's own SM count where known
    return round(row["programs"] * row["num_warps"] * row["sass_instructions"]
                 / (sms * 4 * clock) * 1e3, 4)  # fmt: skip


def ptxas_report(ptx: str, capability: int) -> dict:
    """Run Triton's ptxas on ``ptx`` with the flags Triton uses and read its ``-v`` report."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        try:
            ptxas = get_ptxas(capability)
        except TypeError:  # Triton before 3.6: one ptxas for every architecture
            ptxas = get_ptxas()
        cmd = [ptxas.path, "-lineinfo", "-v", "--regAllocOptLevel=2",
               f"--gpu-name={sm_arch_from_capability(capability)}", src, "-o",
               os.path.join(tmp, "k.cubin")]  # fmt: skip
        log = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, log)
        return int(found.group(1)) if found else 0

    return {
        "registers": number(r"Used (\d+) registers"),
        "spill_store_bytes": number(r"(\d+) bytes spill stores"),
        "spill_load_bytes": number(r"(\d+) bytes spill loads"),
        "stack_frame_bytes": number(r"(\d+) bytes stack frame"),
    }


def occupancy(capability: int, registers: int, warps: int, shared: int) -> float:
    """Resident warps per SM over the most the SM holds, limited by registers (allocated per
    warp in units of 256), shared memory (with the 1 kB the CUDA runtime keeps per block),
    blocks per SM and warps per SM; 0 where a block needs more shared memory than one block may
    have (the launch fails)."""
    _, regs_per_sm, max_warps, smem, per_block, max_blocks = TARGETS[capability]
    if shared > per_block:
        return 0.0
    per_warp = -(-max(registers, 1) * 32 // 256) * 256
    blocks = min(
        regs_per_sm // (per_warp * warps),
        smem // (shared + 1024),
        max_blocks,
        max_warps // warps,
    )
    return round(blocks * warps / max_warps, 3)


def describe(kernel: str, args: tuple, meta: dict) -> dict:
    """What a launch is, in numbers: map size, channels, pixels per map, blocks (and for the
    layer epilogue, the form of its input and whether it does ToRGB)."""
    if kernel == "mask_head":
        k = named(triton_ops._KERNEL, args)
        return {"size": int(k["hw"] ** 0.5), "channels": k["C"], "pixels": k["hw"],
                "block_p": meta["BLOCK_P"], "block_c": meta["BLOCK_C"]}  # fmt: skip
    k = named(triton_ops._EPILOGUE, args)
    return {
        "size": k["width"],
        "channels": k["C"],
        "pixels": k["hw"],
        "phases": bool(meta["PHASES"]),
        "phase_blur": bool(meta["PHASE_BLUR"]),
        "rgb": bool(meta["HAS_RGB"]),
        "block_p": meta["BLOCK_P"],
        "block_c": meta["BLOCK_C"],
    }


def main() -> None:
    from benchmarks.common import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ffhq-1024")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--targets", default="90,89,86,80,120", help="compute capabilities")
    parser.add_argument("--forms", default=",".join(FORMS), help="up-sampling forms")
    parser.add_argument(
        "--condition",
        choices=["none", "text"],
        default=None,
        help="the mask heads' text condition (default: the preset's)",
    )
    parser.add_argument("--quick", action="store_true", help="the largest maps' layers only")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="compile a grid of blocks, warps and stages on one launch of each kind (the "
        "largest map it runs on) instead of the chosen launches: how they were chosen",
    )
    parser.add_argument("--out", default=None, help="name under benchmarks/results/")
    args = parser.parse_args()
    targets = [int(t) for t in args.targets.split(",")]
    if args.sweep:
        return sweep(args, targets)
    rows = []
    for index, form in enumerate(args.forms.split(",")):
        epilogues, heads = launches(args.preset, args.batch, args.prompts, form, args.condition)
        # the mask-head kernel does not depend on the up-sampling form: once
        todo = [("layer_epilogue", triton_ops._EPILOGUE, e) for e in epilogues]
        todo += [("mask_head", triton_ops._KERNEL, h) for h in heads if index == 0]
        for name, kernel, (layer, grid, largs, meta) in todo:
            what = describe(name, largs, meta)
            if args.quick and what["pixels"] < 512 * 512:
                continue
            for cap in targets:
                report = compile_launch(kernel, largs, meta, cap)
                row = {"kernel": name, "form": form if name == "layer_epilogue" else None,
                       "layer": layer, "target": cap, "programs": grid[0], **what,
                       **report}  # fmt: skip
                row["issue_ms"] = issue_ms(row)
                rows.append(row)
                print(_line(row), flush=True)
    spilled = [r for r in rows if r["spill_store_bytes"] or r["spill_load_bytes"]]
    path = write_result(
        args.out or "triton_aot",
        {
            "what": "Triton kernels compiled ahead of time for GPUs not present (ptxas -v)",
            **_setting(args, targets),
            "summary": {
                "launches": len(rows),
                "spilling": len(spilled),
                "max_registers": max(r["registers"] for r in rows),
                "min_occupancy": min(r["occupancy"] for r in rows),
                # per form: the epilogue launches' issue-bound ms (issue_ms) on the H100/H200
                "epilogue_issue_ms": _issue_totals(rows),
            },
            "rows": rows,
        },
    )
    print(f"{len(rows)} launches compiled, {len(spilled)} spill; wrote {path}")


# the launch options tried by --sweep: pixels per program, channels per step, warps, stages
SWEEP = {
    "BLOCK_P": (32, 64, 128),
    "BLOCK_C": (32, 64),
    "num_warps": (4, 8),
    "num_stages": (1, 2, 3),
}
HEAD_SWEEP = {"BLOCK_P": (64, 128), "num_warps": (4, 8), "num_stages": (2, 3)}


def first_choice(tried: dict, chosen: dict, pixels: int) -> bool:
    """Whether options ``tried`` on a layer-epilogue launch (``chosen``: its launch as it is)
    are the first version's (64 x 64, or 128 x 32 on 32 channels, with Triton's default 4 warps
    and 3 stages), from before ptxas's reports were read."""
    block_p = min(pixels, max(16, 4096 // chosen["BLOCK_C"]))
    first = (block_p, chosen["BLOCK_C"], 4, 3)
    return (tried["BLOCK_P"], tried["BLOCK_C"], tried["num_warps"], tried["num_stages"]) == first


def sweep(args, targets: list[int]) -> None:
    """--sweep: each kind of launch (form, in-place or blurred phases, ToRGB, channel block) at
    the largest map it runs on, compiled with every option in SWEEP; the chosen one and the
    first version's marked."""
    import itertools

    from benchmarks.common import write_result

    rows = []
    for index, form in enumerate(args.forms.split(",")):
        epilogues, heads = launches(args.preset, args.batch, args.prompts, form, args.condition)
        todo = [("layer_epilogue", triton_ops._EPILOGUE, e, SWEEP) for e in kinds(epilogues)]
        if index == 0:
            todo.append(("mask_head", triton_ops._KERNEL, heads[-1], HEAD_SWEEP))
        for name, kernel, (layer, _, largs, meta), space in todo:
            what = describe(name, largs, meta)
            del what["block_p"], what["block_c"]  # the options tried are in the row
            conv = bool(meta.get("CONV"))  # the conv in the kernel: every channel in one step
            pixels = what["pixels"]
            if name == "layer_epilogue":
                pixels = triton_ops.launch_pixels(meta, pixels)
            for values in itertools.product(*space.values()):
                options = dict(zip(space, values))
                if options.get("BLOCK_C", 0) > meta["BLOCK_C"] or pixels % options["BLOCK_P"]:
                    continue  # wider than the channels, or not dividing the map
                if conv and options["BLOCK_C"] != meta["BLOCK_C"]:
                    continue
                if name == "layer_epilogue":  # ONE_STEP follows the channel block
                    tried = triton_ops.with_options(meta, named(kernel, largs)["C"], **options)
                else:
                    tried = {**meta, **options}
                for cap in targets:
                    report = compile_launch(kernel, largs, tried, cap)
                    row = {"kernel": name, "form": form if name == "layer_epilogue" else None,
                           "layer": layer, "target": cap, **what, **options,
                           "chosen": all(meta.get(k) == v for k, v in options.items()),
                           "first_choice": name == "layer_epilogue"
                           and first_choice(tried, meta, pixels), **report}  # fmt: skip
                    rows.append(row)
                    print(_line(row), flush=True)
    chosen = [r for r in rows if r["chosen"]]
    first = [r for r in rows if r["first_choice"]]
    path = write_result(
        args.out or "triton_aot_sweep",
        {
            "what": "launch options of the Triton kernels compiled ahead of time (ptxas -v): "
            "how the chosen ones were chosen",
            **_setting(args, targets),
            "summary": {
                "chosen": _span(chosen),
                "first_choice": _span(first),
            },
            "rows": rows,
        },
    )
    print(f"{len(rows)} compiled; wrote {path}")


def _setting(args, targets: list[int]) -> dict:
    """What a result file was compiled for: preset, batch, prompts, Triton, target GPUs."""
    import triton

    return {
        "preset": args.preset,
        "batch": args.batch,
        "prompts": args.prompts,
        "precision": "fp16",
        "triton": triton.__version__,
        "targets": {str(t): TARGETS[t][0] for t in targets},
    }


def _span(rows: list[dict]) -> dict:
    """Registers, spills and occupancy over some rows of the sweep, per kernel."""
    out = {}
    for kernel in sorted({r["kernel"] for r in rows}):
        mine = [r for r in rows if r["kernel"] == kernel]
        out[kernel] = {
            "registers": [min(r["registers"] for r in mine), max(r["registers"] for r in mine)],
            "spilling": sum(1 for r in mine if r["spill_store_bytes"]),
            "occupancy": [min(r["occupancy"] for r in mine), max(r["occupancy"] for r in mine)],
            "max_shared_bytes": max(r["shared_bytes"] for r in mine),
        }
    return out


def _issue_totals(rows: list[dict]) -> dict:
    """Per form, the sum of the layer-epilogue launches' ``issue_ms`` where every launch has
    one (none with loops), and how many launches that is."""
    out = {}
    for form in sorted({r["form"] for r in rows if r["kernel"] == "layer_epilogue"}):
        mine = [r for r in rows if r["form"] == form and r["target"] in ISSUE_GPUS]
        known = [r["issue_ms"] for r in mine if r["issue_ms"] is not None]
        if mine:
            out[form] = {"ms": round(sum(known), 3), "launches": len(known), "of": len(mine)}
    return out


def _line(row: dict) -> str:
    where = f"{row['kernel']} {row['form'] or ''} layer {row['layer']} sm_{row['target']}"
    return (
        f"{where}: {row['pixels']} px x {row['channels']} ch, {row['registers']} regs, "
        f"spills {row['spill_store_bytes']}/{row['spill_load_bytes']} B, "
        f"{row['num_warps']} warps, occupancy {row['occupancy']}, "
        f"{row.get('sass_instructions', '?')} instructions, {row['compile_s']} s"
    )


if __name__ == "__main__":
    main()
