"""The torch backend's inference switches on CPU: fused tails, stacked streams, 2x2 phase convs.

The masked generator of a 256 px editor with FFHQ channel widths (random weights), FP32, eager,
batch 1 and 4, one prompt per latent; p50 of ``--iters`` runs after a warm-up, each form timed
in the same process on the same inputs, ratios against the plain form of the same run. Also
checks that every form gives the plain form's image (max abs difference in the JSON).

    python -m benchmarks.switches_cpu            # about 4 min on 2 cores
    python -m benchmarks.switches_cpu --quick    # batch 1, 2 timed runs
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import time_call, write_result
from benchmarks.pipeline_cpu import ffhq_256
from mcaclip.nn.editor import MCAEditor, stack_streams
from mcaclip.nn.graphs import build_graph
from mcaclip.nn.stylegan2 import Generator, fuse_tails, phase_conv

FORMS = {  # name -> (fuse_tails, stack_streams, phase_conv)
    "plain": (False, False, False),
    "fused-tails": (True, False, False),
    "fused-tails+stacked-streams": (True, True, False),
    "fused-tails+phase-conv": (True, False, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, 2 timed runs")
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    batches, iters = ([1], 2) if args.quick else ([1, 4], args.iters)
    torch.manual_seed(0)
    preset = ffhq_256()
    editor = MCAEditor(preset, Generator(preset.generator)).eval()
    module = build_graph(editor, "masked_generator").eval()
    rows = []
    for batch in batches:
        gen = torch.Generator().manual_seed(batch)
        w = torch.randn(batch, editor.generator.n_latent, preset.generator.style_dim, generator=gen)
        w_edit = w[:, None] + 0.1 * torch.randn(batch, 1, *w.shape[1:], generator=gen)
        e = torch.randn(batch, 1, preset.clip.embed_dim, generator=gen)
        with torch.inference_mode():
            reference = None
            for name, (fused, stacked, phases) in FORMS.items():
                phase_conv(stack_streams(fuse_tails(module, fused), stacked), phases)
                image = module(w, w_edit, e)[0]
                reference = image if reference is None else reference
                t = time_call(lambda w=w, we=w_edit, e=e: module(w, we, e), iters, warmup=1)
                rows.append(
                    {
                        "batch": batch,
                        "form": name,
                        "p50_ms": t["p50_ms"],
                        "timing": t,
                        "max_abs_diff_vs_plain": float((image - reference).abs().max()),
                    }
                )
                print(f"batch {batch}  {name:28s} {t['p50_ms']:9.1f} ms", flush=True)
    plain = {r["batch"]: r["p50_ms"] for r in rows if r["form"] == "plain"}
    for r in rows:
        r["speedup_vs_plain"] = plain[r["batch"]] / r["p50_ms"]
    payload = {
        "preset": preset.name,
        "graph": "masked_generator",
        "precision": "fp32",
        "backend": "torch-eager-cpu",
        "batches": batches,
        "iters": iters,
        "rows": rows,
    }
    name = "switches_cpu" + ("_quick" if args.quick else "")
    print(f"wrote {write_result(name, payload)}")
    for r in rows:
        print(f"batch {r['batch']}  {r['form']:28s} {r['speedup_vs_plain']:.2f}x vs plain")


if __name__ == "__main__":
    main()
