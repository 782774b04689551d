"""Runtime input and output: latent files, seed lists, PNGs, grids. Numpy only, no networks."""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mcaclip.errors import McaError, ShapeError
from mcaclip.fileio import atomic_write


class InputError(McaError):
    """A user-supplied input file or value is unusable."""


def load_latents(path: str | Path, n_latent: int, dim: int) -> np.ndarray:
    """Read W+ latents as float32 [N, L, D] from ``.pt`` (``torch.load(weights_only=True)``)
    or ``.npy`` (``allow_pickle=False``). [L, D] is one latent; [N, D] (W) is broadcast to W+."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: latent file not found")
    if path.suffix in (".pt", ".pth"):
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"{path}: refused: not a weights-only tensor file ({first[:120]}); "
                "save the latents with torch.save(tensor)"
            ) from None
        if isinstance(data, dict):
            tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise InputError(
                    f"{path}: expected one tensor of latents, found a dict {list(data)[:5]}"
                )
            data = tensors[0]
        if not isinstance(data, torch.Tensor):
            raise InputError(f"{path}: expected a tensor of latents, found {type(data).__name__}")
        array = data.detach().float().numpy()
    elif path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{path}: refused: {exc} (object arrays are pickles)") from None
        except OSError as exc:
            raise InputError(f"{path}: not a .npy file ({exc})") from None
        if not np.issubdtype(array.dtype, np.number):
            raise InputError(f"{path}: expected numbers, found dtype {array.dtype}")
        array = array.astype(np.float32)
    else:
        raise InputError(f"{path}: latents must be .pt or .npy")
    if array.ndim == 2 and array.shape == (n_latent, dim):
        array = array[None]
    elif array.ndim == 2 and array.shape[1] == dim:
        array = np.repeat(array[:, None], n_latent, axis=1)
    if array.ndim != 3 or array.shape[1:] != (n_latent, dim):
        raise ShapeError(
            f"{path}: latents have shape {list(array.shape)}; this bundle takes "
            f"[N, {n_latent}, {dim}], [{n_latent}, {dim}] or [N, {dim}]"
        )
    if array.shape[0] == 0:
        raise InputError(f"{path}: holds no latents")
    check_finite(array, str(path))
    return np.ascontiguousarray(array, dtype=np.float32)


def check_finite(array: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad.reshape(len(array), -1))[0])
        raise InputError(
            f"{what}: {int(bad.sum())} NaN/Inf values in latents {rows[:5].tolist()}; fix the file"
        )


def parse_seeds(text: str) -> list[int]:
    """``"0-7,10,12-13"`` -> [0, ..., 7, 10, 12, 13]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InputError(f"--seeds {text!r}: use numbers and ranges like 0-7,10")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InputError(f"--seeds {part!r}: range goes backwards")
        seeds.extend(range(lo, hi + 1))
    return seeds


def seed_latents(seeds: list[int], dim: int) -> np.ndarray:
    """z [N, dim] for each seed, as NVIDIA's and rosinality's scripts draw them."""
    return np.stack([np.random.RandomState(s).randn(dim) for s in seeds]).astype(np.float32)


def slugify(prompt: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "prompt"
    return slug


def prompt_slugs(prompts: list[str]) -> list[str]:
    """Distinct file-name slugs (a short hash tells apart prompts with the same slug)."""
    slugs = [slugify(p) for p in prompts]
    return [
        s if slugs.count(s) == 1 else f"{s}-{zlib.crc32(p.encode()):08x}"
        for s, p in zip(slugs, prompts)
    ]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> [..., H, W, 3] uint8 (round half up, clipped). The device
    backends compute the same on the device (``pixels=True`` in
    :meth:`mcaclip.runtime.pipeline.EditPipeline.edit`)."""
    pixels = (np.moveaxis(image, -3, -1) + 1) * 127.5 + 0.5
    return np.clip(pixels, 0, 255).astype(np.uint8)


def mask_picture(masks: list[np.ndarray], size: int) -> np.ndarray:
    """Per-layer masks [1, h, w] -> their mean at ``size`` px as a grey [size, size, 3] uint8."""
    total = np.zeros((size, size), np.float32)
    for m in masks:  # nearest up-sampling, added in place (no size x size temporary per layer)
        h, w = m.shape[-2], m.shape[-1]
        total.reshape(h, size // h, w, size // w)[...] += m.reshape(h, 1, w, 1)
    grey = np.clip(total / max(len(masks), 1) * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


# zlib level of the PNGs mcarun edit writes. Measured with PIL on one core of the 2-core EPYC
# (2026-11-27): a 1024 px photograph takes 330 ms at PIL's default 6 and 74 ms at 1 for an 11%
# larger file; at 1024 px encoding is most of an edit's cost on a GPU (benchmarks/output_cpu.py).
PNG_LEVEL = 1


def save_png(path: Path, pixels: np.ndarray, level: int = PNG_LEVEL) -> None:
    """Write ``pixels`` [H, W, 3] uint8 to ``path`` atomically, zlib ``level`` 0-9."""
    atomic_write(
        path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG", compress_level=level)
    )


@dataclass(frozen=True)
class PictureFormat:
    """How ``mcarun edit`` writes pictures: ``png`` (lossless; zlib ``png_level`` 0-9) or
    ``jpg`` (``jpeg_quality`` 1-100, full-resolution colour: 4:4:4, no chroma subsampling,
    which would smear the coloured edits). At 1024 px one core encodes a photograph in 74 ms as
    a level-1 PNG and in 5 ms as a quality-95 JPEG (45 dB PSNR, a third of the bytes)."""

    kind: str = "png"
    png_level: int = PNG_LEVEL
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.kind not in ("png", "jpg"):
            raise InputError(f"--format {self.kind}: use png or jpg")
        if not 0 <= self.png_level <= 9:
            raise InputError(
                f"--png-level {self.png_level}: use 0 (fastest, largest) to 9 (smallest)"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"--jpeg-quality {self.jpeg_quality}: use 1 to 100 (default 95)")

    @property
    def suffix(self) -> str:
        return "." + self.kind

    def save(self, path: Path, pixels: np.ndarray) -> None:
        """Write ``pixels`` [H, W, 3] uint8 to ``path`` atomically."""
        if self.kind == "png":
            save_png(path, pixels, self.png_level)
        else:
            atomic_write(
                path,
                lambda tmp: Image.fromarray(pixels).save(
                    tmp, format="JPEG", quality=self.jpeg_quality, subsampling=0
                ),
            )


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def grid(rows: list[list[np.ndarray]], pad: int = 2, min_tile: int = 0) -> np.ndarray:
    """Tiles [H, W, 3] in rows (all the same size) -> one picture, white gutters. Tiles smaller
    than ``min_tile`` px are enlarged by a whole factor, nearest-neighbour (every pixel a block:
    a 64 px face's goatee stays visible, nothing invented)."""
    factor = -(-min_tile // min(rows[0][0].shape[:2])) if min_tile else 1
    if factor > 1:
        rows = [[t.repeat(factor, 0).repeat(factor, 1) for t in r] for r in rows]
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = tile
    return out


def ensure_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there, before any work starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(
            f"{out}: output directory not writable ({exc.strerror}); choose another --out"
        ) from None
