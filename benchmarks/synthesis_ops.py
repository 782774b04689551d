"""GPU kernels per masked-generator call, counted on the CPU: the ATen operators (each one a
kernel launch on a GPU, views and allocations left out) and the Triton launches of one call of
the FP16 masked generator, with the Triton epilogues (and ``--triton-convs``) and in the
PyTorch form (fused tails, stacked streams: what ``--no-triton-epilogues`` runs).

The generator is built on PyTorch's meta device (no weights, no arithmetic), so a 1024 px
batch-8 call is counted in seconds on any machine. What it says: how many small kernels sit
between the big ones (each costs a few microseconds of GPU time even inside a CUDA graph: the
H200 profile of the GPU check counted 133 matrix-vector products and 235 copies, 3.3 ms of a
20 ms batch-8 call). What it cannot say: how long any of them takes.

    python -m benchmarks.synthesis_ops              # ffhq-1024, batch 8, one prompt
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.triton_aot import meta_inputs
from mcaclip.config import load_preset
from mcaclip.nn.editor import MaskedSynthesis, MCAEditor, stack_streams
from mcaclip.nn.graphs import Fp16Graph, build_graph
from mcaclip.nn.stylegan2 import fold_blur, freeze_weights, fuse_tails, subpixel
from mcaclip.runtime.kernels import synthesis, triton_ops
from mcaclip.runtime.kernels.synthesis import triton_epilogues

FREE = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh"}


class Count(TorchDispatchMode):
    """Counts the ATen operators that would launch a kernel (not views, not allocations)."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name == "to":  # a view where nothing changes, else a copy (a cast)
            copied = out is not args[0]
        else:
            copied = not func.is_view and name not in FREE
        if copied and func.namespace == "aten":
            self.ops[name] += 1
        return out


def count(preset_name: str, batch: int, prompts: int, condition: str | None) -> dict:
    """{form: {"total": kernels, "triton": launches, "ops": {name: count}}} for one call."""
    preset = load_preset(preset_name)
    if condition is not None:
        editor_cfg = dataclasses.replace(preset.editor, mask_condition=condition)
        preset = dataclasses.replace(preset, editor=editor_cfg)
    with torch.device("meta"), contextlib.redirect_stderr(io.StringIO()):  # "RANDOM weights"
        editor = MCAEditor.from_preset(preset, random_weights=True).eval()
    out = {}
    for form in ("triton_epilogues", "triton_convs", "pytorch"):
        graph = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
        subpixel(fold_blur(graph))
        freeze_weights(graph, channels_last=True)
        masked = next(m for m in graph.modules() if isinstance(m, MaskedSynthesis))
        launches = []
        if form.startswith("triton"):
            triton_epilogues(graph, convs=form == "triton_convs")
        else:  # the torch backend's FP16 form without them (--no-triton-epilogues)
            stack_streams(fuse_tails(graph))
        w, w_edit, cond = meta_inputs(editor, batch, prompts)
        real = triton_ops._epilogue_op

        def launch(*a, launches=launches):  # the op's outputs, allocated (on meta)
            launches.append(1)
            return triton_ops._epilogue_launch(*a)[0]

        triton_ops._epilogue_op = launch
        mode = Count()
        try:
            with torch.inference_mode(), mode:
                noise = masked.synthesis.make_noise(batch, "const")
                if form.startswith("triton"):  # what masked() runs on a GPU (not on meta)
                    synthesis.run(masked, masked.fast_path.plan, w, w_edit, cond, noise, prompts)
                else:
                    masked(w, w_edit, cond, noise=noise, prompts=prompts)
        finally:
            triton_ops._epilogue_op = real
        ops = dict(mode.ops.most_common())
        out[form] = {"total": sum(ops.values()) + len(launches), "triton": len(launches),
                     "aten": sum(ops.values()), "ops": ops}  # fmt: skip
    return out


def count_prelude(preset_name: str, batch: int, prompts: int) -> dict:
    """The same count for what runs before the masked generator in an edit (the torch backend's
    fusion and mapper graphs, FP32, weights frozen as it freezes them): {graph: {"total",
    "ops"}}."""
    from mcaclip.nn.stylegan2 import freeze_weights

    preset = load_preset(preset_name)
    with torch.device("meta"), contextlib.redirect_stderr(io.StringIO()):
        editor = MCAEditor.from_preset(preset, random_weights=True).eval()
    gen = preset.generator
    n = batch * prompts
    w = torch.empty(n, gen.n_latent, gen.style_dim, device="meta")
    e = torch.empty(n, preset.clip.embed_dim, device="meta")
    out = {}
    for name in ("fusion", "mapper"):
        graph = freeze_weights(build_graph(editor, name).eval())
        mode = Count()
        with torch.inference_mode(), mode:
            graph(w, e if name == "fusion" else w)
        ops = dict(mode.ops.most_common())
        out[name] = {"total": sum(ops.values()), "ops": ops}
    return out


def _commit() -> str | None:
    """The checkout's commit (with "+changes" if its tracked files differ), or None."""
    import subprocess

    here = {"cwd": __file__.rsplit("/", 2)[0], "capture_output": True, "text": True}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], **here).stdout.strip()
    except OSError:
        return None
    return (head + ("+changes" if dirty else "")) or None


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ffhq-1024")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--condition", default=None, help="mask condition (default: preset's)")
    parser.add_argument("--name", default="synthesis_ops", help="results/NAME.json")
    args = parser.parse_args(argv)
    counts = count(args.preset, args.batch, args.prompts, args.condition)
    prelude = count_prelude(args.preset, args.batch, args.prompts)
    payload = {"commit": _commit(), "preset": args.preset, "batch": args.batch,
               "prompts": args.prompts,
               "precision": "fp16", "device": "meta (counted, not run)", "forms": counts,
               "triton_over_pytorch": round(counts["triton_epilogues"]["total"]
                                            / counts["pytorch"]["total"], 3),
               "prelude": prelude}  # fmt: skip
    for name, c in prelude.items():
        print(f"{name:18s} {c['total']:4d} kernels  "
              + ", ".join(f"{k} {v}" for k, v in list(c["ops"].items())[:8]))  # fmt: skip
    for form, c in counts.items():
        print(
            f"{form:18s} {c['total']:4d} kernels ({c['triton']} Triton)  "
            + ", ".join(f"{k} {v}" for k, v in list(c["ops"].items())[:8])
        )
    print(f"wrote {write_result(args.name, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
