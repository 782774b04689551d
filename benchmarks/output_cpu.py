"""Writing `mcarun edit`'s PNGs at 1024 px: the old output path against the new one, on the CPU.

At 1024 px a GPU edits in a few milliseconds and encoding the pictures takes hundreds, so the
output path decides how many edits per second `mcarun edit` delivers. This runs the real
:func:`mcaclip.runtime.edit.edit_to_dir` over a stand-in pipeline whose "device" is idle CPU time
(``--device-ms`` of sleep per batch: a GPU computes while the CPU waits; the default 21 ms is a
batch of 8 at the 2.6 ms per edit measured on an H100 with ``--compile``, 2026-11-27) and whose
pictures are prepared up front, in these forms:

* ``old``: float32 pictures converted to uint8 on the host, PNG at PIL's default level 6,
  written in the main thread after each batch (mcaclip before 2026-11-27);
* ``level1``: the same, PNG level 1;
* ``writers``: level 6 on background writers (one per CPU, at most 8);
* ``new``: uint8 pictures (a device backend converts them before copying), level 1, background
  writers (the defaults now);
* ``jpg``: as ``new``, quality-95 JPEG (``--format jpg``).

The device-to-host copy is not modelled here (no GPU); its bytes per edit are reported: float32
pictures before, uint8 pictures now. Also timed: one picture of each content encoded in
memory on one core (``encode_one_picture``: PNG level 1 and 6, JPEG quality 95 and its
PSNR). Contents: ``noise`` (uniform random bytes, like
a random-weights generator), ``smooth`` (gradients and grain), ``photo`` (a photograph resized
to 1024 px; ``--photo PATH``, not measured without one).

    python -m benchmarks.output_cpu --photo some.jpg        # about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.common import write_result
from mcaclip.runtime.edit import default_writers, edit_to_dir
from mcaclip.runtime.io import PictureFormat, to_uint8
from mcaclip.runtime.pipeline import EditBatch

SIZE = 1024
FORMS = {  # name -> (pictures converted on the device, format, png level, writer threads)
    "old": (False, "png", 6, 0),
    "level1": (False, "png", 1, 0),
    "writers": (False, "png", 6, None),
    "new": (True, "png", 1, None),
    "jpg": (True, "jpg", 1, None),
}


class StandInPipeline:
    """What :func:`edit_to_dir` asks of an :class:`EditPipeline`, with prepared pictures and a
    device that takes ``device_ms`` per batch without using the CPU."""

    def __init__(self, pictures: np.ndarray, device_ms: float, on_device: bool):
        self.pictures = pictures  # [n, 3, H, W] float32 in [-1, 1]
        self.pixels = to_uint8(pictures) if on_device else None  # [n, H, W, 3]
        self.device_ms = device_ms
        self.size = pictures.shape[-1]
        graphs = {"masked_generator": {"outputs": [{"name": "image"}, {"name": "original"}]}}
        self.bundle = SimpleNamespace(graphs=graphs)

    def check_request(self, w, n_prompts, batch_size) -> None:
        pass

    def embed(self, prompts):
        return None

    def edit(self, w, prompts, batch_size, masks=True, pixels=False):
        n = len(self.pictures)
        for start in range(0, len(w), batch_size):
            idx = [(start + k) % n for k in range(min(batch_size, len(w) - start))]
            time.sleep(self.device_ms / 1e3)  # the GPU computes; the CPU is free
            if self.pixels is not None:  # converted on the device: uint8 arrives
                images, originals = self.pixels[idx][:, None], self.pixels[idx[::-1]]
            else:  # float32 arrives; the host converts
                images = to_uint8(self.pictures[idx][:, None])
                originals = to_uint8(self.pictures[idx[::-1]])
            yield EditBatch(list(range(start, start + len(idx))), images, originals, [])


def contents(photo: Path | None, n: int) -> dict[str, np.ndarray]:
    """n different pictures [n, 3, SIZE, SIZE] in [-1, 1] per kind of content."""
    rng = np.random.default_rng(0)
    out = {"noise": rng.integers(0, 256, (n, 3, SIZE, SIZE)).astype(np.float32)}
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    smooth = []
    for k in range(n):
        base = np.stack([(x / 4 + 16 * k) % 256, (y / 4) % 256, ((x + y) / 8 + 8 * k) % 256])
        smooth.append(np.clip(base + rng.integers(0, 6, base.shape), 0, 255))
    out["smooth"] = np.stack(smooth).astype(np.float32)
    if photo is not None:
        from PIL import Image

        with Image.open(photo) as img:
            big = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
        # n different crops-and-flips of one photograph: same statistics, different bytes
        pics = [np.roll(big[:, :: (-1) ** k], 37 * k, axis=1) for k in range(n)]
        out["photo"] = np.stack(pics).transpose(0, 3, 1, 2).astype(np.float32)
    return {k: v / 127.5 - 1 for k, v in out.items()}


def run(pictures: np.ndarray, form: str, latents: int, batch: int, device_ms: float) -> dict:
    on_device, kind, level, writers = FORMS[form]
    pipeline = StandInPipeline(pictures, device_ms, on_device)
    out = Path(tempfile.mkdtemp(prefix="mcaclip-output-bench-"))
    try:
        w = np.zeros((latents, 1, 1), np.float32)
        t0 = time.perf_counter()
        picture = PictureFormat(kind, png_level=level)
        edit_to_dir(pipeline, w, ["edit"], out, batch, picture=picture, writers=writers)
        seconds = time.perf_counter() - t0
        files = list(out.glob(f"*.{kind}"))
        assert len(files) == 2 * latents, len(files)
        return {
            "format": kind,
            "png_level": level if kind == "png" else None,
            "writers": default_writers() if writers is None else writers,
            "pixels_on_device": on_device,
            "seconds": seconds,
            "ms_per_edit": seconds / latents * 1e3,
            "edits_per_s": latents / seconds,
            "mib_per_edit_on_disk": sum(f.stat().st_size for f in files) / latents / 2**20,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def encode_one(pixels: np.ndarray) -> dict:
    """One picture [H, W, 3] uint8 encoded in memory on one core, min of 3: ms and KiB per
    form (PNG levels 1 and 6, PIL's default; JPEG quality 95, 4:4:4) and the JPEG's PSNR."""
    import io

    from PIL import Image

    forms = {
        "png_level1": {"format": "PNG", "compress_level": 1},
        "png_level6": {"format": "PNG", "compress_level": 6},
        "jpg_q95": {"format": "JPEG", "quality": 95, "subsampling": 0},
    }
    out = {}
    img = Image.fromarray(pixels)
    for name, kwargs in forms.items():
        times = []
        for _ in range(3):
            buf = io.BytesIO()
            t0 = time.perf_counter()
            img.save(buf, **kwargs)
            times.append(time.perf_counter() - t0)
        out[name] = {"ms": min(times) * 1e3, "kib": len(buf.getvalue()) / 1024}
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
    mse = ((back - pixels.astype(np.float64)) ** 2).mean()
    out["jpg_q95"]["psnr_db"] = float(10 * np.log10(255**2 / mse)) if mse else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, help="a photograph (any size, resized to 1024)")
    parser.add_argument("--latents", type=int, default=16, help="latents per form (1 prompt)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device-ms", type=float, default=21.0, help="device time per batch")
    parser.add_argument("--quick", action="store_true", help="4 latents, noise only")
    args = parser.parse_args()
    if args.quick:
        args.latents, args.photo = 4, None
    pics = contents(args.photo, min(args.latents, 8))
    if args.quick:
        pics = {"noise": pics["noise"]}
    results: dict[str, dict] = {}
    encode = {kind: encode_one(to_uint8(pictures[0])) for kind, pictures in pics.items()}
    for kind, e in encode.items():
        print(f"{kind:>7} one picture: " + ", ".join(
            f"{k} {v['ms']:.1f} ms {v['kib']:.0f} KiB" for k, v in e.items()))  # fmt: skip
    for kind, pictures in pics.items():
        results[kind] = {f: run(pictures, f, args.latents, args.batch, args.device_ms)
                         for f in FORMS}  # fmt: skip
        old = results[kind]["old"]["ms_per_edit"]
        for form, r in results[kind].items():
            r["speedup_vs_old"] = old / r["ms_per_edit"]
            print(f"{kind:>7} {form:>8}: {r['ms_per_edit']:7.1f} ms/edit "
                  f"{r['edits_per_s']:6.2f} edits/s  x{r['speedup_vs_old']:.2f}  "
                  f"{r['mib_per_edit_on_disk']:.2f} MiB/edit")  # fmt: skip
    picture = 3 * SIZE * SIZE  # values per picture; an edit copies its edit and original
    payload = {
        "size": SIZE,
        "latents": args.latents,
        "batch": args.batch,
        "prompts": 1,
        "device_ms_per_batch": args.device_ms,
        "photo": str(args.photo) if args.photo else None,
        "forms": {
            k: {"pixels_on_device": v[0], "format": v[1], "png_level": v[2], "writers": v[3]}
            for k, v in FORMS.items()
        },  # fmt: skip
        "device_to_host_mib_per_edit": {
            "before (float32 pictures)": 2 * picture * 4 / 2**20,
            "now (uint8 pictures)": 2 * picture / 2**20,
        },
        "encode_one_picture": encode,
        "results": results,
    }
    path = write_result("output_cpu_quick" if args.quick else "output_cpu", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
