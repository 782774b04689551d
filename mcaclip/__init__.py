"""mcaclip: train, export and serve MCA-CLIP, a text-guided region editor for StyleGAN2."""

from __future__ import annotations

__version__ = "0.1.0"
