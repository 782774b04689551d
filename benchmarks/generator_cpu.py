"""Our StyleGAN2 generator on CPU, eager, batch 1: seconds per image at 256 and 1024 px.

Baseline in the same run: the same weights with rosinality's grouped modulated convolution
(``groups=batch``), the form our dynamic-batch convolution replaces for export.

    python benchmarks/generator_cpu.py            # 256 and 1024 px, 3 timed runs each
    python benchmarks/generator_cpu.py --quick    # 256 px only, 1 timed run
"""

from __future__ import annotations

import argparse
import functools
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from benchmarks.common import time_call, write_result
from mcaclip.config import GeneratorConfig, load_preset
from mcaclip.nn.stylegan2 import Generator, ModulatedConv2d

# One synthesis pass at 1024 px, from ../shared/FACTS.md: 74.3 GMAC = 148.6 GFLOP.
GFLOP_1024 = 148.6


def grouped_forward(self: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    s = self.modulation(style).view(b, 1, c, 1, 1)
    weight = self.scale * self.weight * s
    if self.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
    k, o = self.kernel_size, self.out_channel
    if self.upsample:
        weight = weight.transpose(1, 2).reshape(b * c, o, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * c, h, w), weight, stride=2, groups=b)
        return self.blur(out.view(b, o, *out.shape[-2:]))
    out = F.conv2d(
        x.reshape(1, b * c, h, w), weight.view(b * o, c, k, k), padding=self.padding, groups=b
    )
    return out.view(b, o, h, w)


@contextmanager
def grouped_modconv():
    original = ModulatedConv2d.forward
    ModulatedConv2d.forward = grouped_forward
    try:
        yield
    finally:
        ModulatedConv2d.forward = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 px only, one timed run")
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    iters = 1 if args.quick else args.iters
    ffhq = load_preset("ffhq-1024").generator
    rows = []
    for size in (256,) if args.quick else (256, 1024):
        cfg = GeneratorConfig(size=size, style_dim=512, n_mlp=8, channel_multiplier=2)
        torch.manual_seed(0)
        G = Generator(cfg).eval()
        params = sum(p.numel() for p in G.parameters())
        w = G.broadcast(G.mapping(torch.randn(1, 512))).detach()
        run = functools.partial(G.synthesis, w)
        with torch.inference_mode():
            ours = time_call(run, iters)
            with grouped_modconv():
                grouped = time_call(run, iters)
                ref = run()
            err = (run() - ref).abs().max().item()
        row = {
            "size": size,
            "batch": 1,
            "precision": "fp32",
            "backend": "torch-eager-cpu",
            "params_M": round(params / 1e6, 2),
            "ours_s_per_image": ours["p50_ms"] / 1e3,
            "grouped_baseline_s_per_image": grouped["p50_ms"] / 1e3,
            "speedup_vs_grouped": grouped["p50_ms"] / ours["p50_ms"],
            "max_abs_diff_vs_grouped": err,
            "ours": ours,
            "grouped": grouped,
        }
        if size == 1024:
            row["gflops_achieved"] = GFLOP_1024 / (ours["p50_ms"] / 1e3)
        rows.append(row)
        print(
            f"{size:5d} px  params {row['params_M']:6.2f} M  "
            f"ours {row['ours_s_per_image']:.3f} s  "
            f"grouped {row['grouped_baseline_s_per_image']:.3f} s  "
            f"ratio {row['speedup_vs_grouped']:.2f}x  "
            f"max|diff| {err:.1e}"
        )
    n_ffhq = sum(p.numel() for p in Generator(ffhq).parameters())
    path = write_result(
        "generator_cpu" + ("_quick" if args.quick else ""),
        {"ffhq_1024_params_M": round(n_ffhq / 1e6, 2), "rows": rows},
    )
    print(f"ffhq-1024 parameters: {n_ffhq / 1e6:.2f} M; wrote {path}")


if __name__ == "__main__":
    main()
