"""Regenerate tests/data/rosinality_tiny*.pt with rosinality's own code (test oracle).

    python tools/make_rosinality_fixture.py --rosinality-repo /path/to/stylegan2-pytorch

It imports rosinality's ``model.py`` from the given checkout (nothing of it is copied here),
builds a 32 px generator with the tiny-32 widths, perturbs every parameter so that biases and
noise weights are non-zero, and saves ``{"g_ema", "latent_avg"}`` plus the reference output of
``Generator(..., input_is_latent=True, randomize_noise=False)`` for a fixed W+ latent. Their
CUDA ops are not compiled: on CPU, rosinality's code uses its pure-PyTorch reference paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.utils.cpp_extension


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rosinality-repo", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "tests" / "data")
    args = parser.parse_args()

    torch.utils.cpp_extension.load = lambda *a, **k: None  # CPU paths never call the ops
    sys.path.insert(0, str(args.rosinality_repo))
    import model  # noqa: PLC0415  (rosinality's module, from the checkout above)

    widths = {4: 32, 8: 32, 16: 32, 32: 16}

    class SmallGenerator(model.Generator):
        def __setattr__(self, name, value):
            if name == "channels":
                value = widths
            super().__setattr__(name, value)

    torch.manual_seed(1234)
    g = SmallGenerator(32, 64, 2, channel_multiplier=1).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if "noise" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
    latent_avg = torch.randn(64) * 0.1
    w_plus = torch.randn(2, g.n_latent, 64)
    with torch.no_grad():
        image, _ = g([w_plus], input_is_latent=True, randomize_noise=False)
        z = torch.randn(2, 64)
        w = g.style(z)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg}, args.out / "rosinality_tiny.pt")
    torch.save(
        {"w_plus": w_plus, "image": image, "z": z, "w": w},
        args.out / "rosinality_tiny_expected.pt",
    )
    print(f"wrote {args.out}; image range [{image.min():.3f}, {image.max():.3f}]")


if __name__ == "__main__":
    main()
