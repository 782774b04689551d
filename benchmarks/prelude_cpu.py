"""What runs before the masked generator in an edit (FF fusion, then the levels mapper), FP32
on the CPU at ffhq-1024 (18 x 512 latents, random weights), batch 8, one prompt per latent:
kernels per call (ATen operators, counted as ``benchmarks/synthesis_ops.py`` counts them) and
ms per call, in two forms timed in the same process on the same inputs:

- ``written-out``: every FF layer's attention as written (query and key projections, scores,
  softmax over the one key, weighted value) and every equalized-lr layer scaling its weight
  and bias on every call (what the torch backend ran before);
- ``short``: the one-key attention as the value projected (softmax gives the one key weight
  1: :meth:`mcaclip.nn.fusion.CrossAttention.forward`) and the weights scaled once
  (:func:`mcaclip.nn.stylegan2.freeze_weights`): what it runs now.

Both must give the same t_w and w' bit for bit (checked, in the JSON). On a GPU these graphs
are a few hundred small kernels of a few microseconds each inside the edit's CUDA graph: the
count is what the change is for there; not timed on a GPU.

    python -m benchmarks.prelude_cpu            # about 20 s
"""

from __future__ import annotations

import argparse
import contextlib
import io

import torch

from benchmarks.common import time_call, write_result
from benchmarks.synthesis_ops import Count
from mcaclip.config import load_preset
from mcaclip.nn import fusion
from mcaclip.nn.editor import MCAEditor
from mcaclip.nn.graphs import build_graph
from mcaclip.nn.stylegan2 import EqualLinear, freeze_weights


def prelude(editor, short: bool):
    """fn(w, e) -> (t_w, w') with the graphs in one form."""
    graphs = [build_graph(editor, name).eval() for name in ("fusion", "mapper")]
    for graph in graphs:
        for m in graph.modules():
            if isinstance(m, EqualLinear):
                m.frozen = False
        if short:
            freeze_weights(graph)

    def run(w, e):
        t_w = graphs[0](w, e)
        return t_w, graphs[1](w, t_w)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    preset = load_preset("ffhq-1024")
    with contextlib.redirect_stderr(io.StringIO()):  # "RANDOM weights"
        editor = MCAEditor.from_preset(preset, random_weights=True).eval()
    gen = preset.generator
    w = torch.randn(args.batch, gen.n_latent, gen.style_dim)
    e = torch.randn(args.batch, preset.clip.embed_dim)
    written_out = fusion.CrossAttention.forward
    results, outputs = {}, {}
    for form in ("written-out", "short"):
        if form == "written-out":  # the attention as written, whatever the number of keys
            fusion.CrossAttention.forward = fusion.CrossAttention.attend
        try:
            run = prelude(editor, form == "short")
            with torch.inference_mode():
                mode = Count()
                with mode:
                    outputs[form] = run(w, e)
                timing = time_call(lambda run=run: run(w, e), args.iters, warmup=2)
        finally:
            fusion.CrossAttention.forward = written_out
        results[form] = {"kernels": sum(mode.ops.values()), "ops": dict(mode.ops.most_common()),
                         **timing}  # fmt: skip
    same = all(torch.equal(a, b) for a, b in zip(outputs["written-out"], outputs["short"]))
    base, now = results["written-out"], results["short"]
    payload = {
        "preset": "ffhq-1024",
        "batch": args.batch,
        "precision": "fp32",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "forms": results,
        "bitwise_equal": same,
        "kernels_saved": base["kernels"] - now["kernels"],
        "speedup_p50": base["p50_ms"] / now["p50_ms"],
    }
    for form, r in results.items():
        print(f"{form:12s} {r['kernels']:4d} kernels  p50 {r['p50_ms']:.2f} ms")
    print(f"bitwise equal: {same}; {payload['speedup_p50']:.2f}x")
    print(f"wrote {write_result('prelude_cpu', payload)}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
