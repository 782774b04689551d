"""The photo path per stage, and the photo encoder in ONNX Runtime against PyTorch eager.

``python -m benchmarks.photo_path [--quick] [--repeats 3] [--ffhq] [--photo FILE]``

1. **Toy world, end to end** (the demo bundle, toy finder): ``mcarun edit --images`` on 8
   toy photos (4 held-out renders saved as 64 px PNGs, 4 others enlarged 3x inside a
   400 x 300 picture), one prompt, ``--paste-back``; seconds per stage (read, find, align,
   encode, edit, paste, write) per face, the median of ``--repeats`` runs.
2. **Encoder speed-up**: the bundle's encoder graph in ONNX Runtime (CPU) against the same
   network in PyTorch FP32 eager, batch 1 and 4, in this process.
3. ``--ffhq``: e4e's IR-SE50 encoder at 256 px (random weights: speed only) exported to ONNX
   here, ONNX Runtime against eager at batch 1 and 4; the FFHQ crop (1024 px from a 2048 px
   photo) and paste-back; with MTCNN's weights (``$MCACLIP_MTCNN``) and ``--photo``, detection.

Writes ``benchmarks/results/photo_path.json`` (``--quick``: ``photo_path_quick.json``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import time_call, write_result


def toy_photos(root: Path, n: int) -> list[Path]:
    from PIL import Image

    from mcaclip.nn.stylegan2 import Generator
    from mcaclip.toyfaces.world import asset

    g = Generator.from_checkpoint(asset("generator.safetensors")).eval()
    w = torch.load(asset("test_latents.pt"), weights_only=True).float()[:n]
    with torch.no_grad():
        x = g.synthesis(w)
    faces = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    paths = []
    for i, face in enumerate(faces):
        if i % 2 == 0:
            picture = face
        else:  # on its background's colour, enlarged 3x
            picture = np.empty((300, 400, 3), np.uint8)
            picture[:] = face[0, 0]
            up = Image.fromarray(face).resize((192, 192), Image.BICUBIC)
            picture[50:242, 150:342] = np.asarray(up)
        paths.append(root / f"toy{i:02d}.png")
        Image.fromarray(picture).save(paths[-1])
    return paths


def photo_stages(engine: Path, n: int, repeats: int) -> dict:
    from mcaclip.runtime.photo_edit import edit_photos
    from mcaclip.runtime.pipeline import EditPipeline

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        pictures = toy_photos(Path(tmp), n)
        with EditPipeline(engine, backend="torch", device="cpu") as pipeline:
            for r in range(repeats + 1):  # the first: warm-up (the finder's template, caches)
                out = Path(tmp) / "out"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                summary = edit_photos(pipeline, pictures, ["blue goatee"], out, 4, paste=True)
                wall = time.perf_counter() - t0
                if r:
                    runs.append({"wall_s": wall, **summary.seconds, "faces": summary.faces})
    faces = runs[0]["faces"]
    per_face = {
        k: round(statistics.median(r[k] for r in runs) / faces * 1000, 2)
        for k in runs[0]
        if k != "faces"
    }
    return {"pictures": n, "faces": faces, "repeats": repeats, "ms_per_face": per_face}


@torch.no_grad()
def inversion_through_finder(n: int) -> dict:
    """The shipped toy encoder on held-out faces as photos (the 64 px render itself, and the
    render enlarged 3x on its background's colour inside 400 x 300): found, aligned, encoded;
    PSNR of G(w) to the render, identity cosine, attributes the probes read unchanged."""
    from PIL import Image

    from mcaclip.config import load_preset
    from mcaclip.faces.align import warp_to_crop
    from mcaclip.nn.encoder import load_encoder
    from mcaclip.nn.stylegan2 import Generator
    from mcaclip.runtime.photo_edit import encoder_input
    from mcaclip.toyfaces.align import ToyFaceFinder
    from mcaclip.toyfaces.data import visibility
    from mcaclip.toyfaces.encoder import ENCODER
    from mcaclip.toyfaces.world import asset, load_identity, load_probe

    g = Generator.from_checkpoint(asset("generator.safetensors")).eval()
    enc = load_encoder(asset(ENCODER), load_preset("toy-64").encoder, g.n_latent, g.style_dim)
    identity, probe, finder = load_identity(), load_probe(), ToyFaceFinder()
    import json as _json

    from mcaclip.toyfaces.attributes import Face

    faces = [Face(**f) for f in _json.loads(asset("test_faces.json").read_text())[:n]]
    w = torch.load(asset("test_latents.pt"), weights_only=True).float()[:n]
    x = g.synthesis(w)
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    seen = visibility(faces)
    out = {}
    for setting in ("render", "scene_x3"):
        crops, missed = [], 0
        for face in pixels:
            photo = face
            if setting == "scene_x3":
                photo = np.empty((300, 400, 3), np.uint8)
                photo[:] = face[0, 0]
                up = Image.fromarray(face).resize((192, 192), Image.BICUBIC)
                photo[50:242, 150:342] = np.asarray(up)
            found = finder.find(photo)
            if not found:
                missed += 1
                crops.append(face)
                continue
            crops.append(warp_to_crop(photo, finder.alignment(found[0], 64)))
        x_hat = g.synthesis(enc(torch.from_numpy(encoder_input(np.stack(crops), 64))))
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        kept = (probe.predict(x) == probe.predict(x_hat))[seen].float().mean()
        out[setting] = {
            "faces": n,
            "not_found": missed,
            "psnr_db": round(float((10 * torch.log10(4 / mse)).mean()), 2),
            "identity_cosine": round(float((identity(x) * identity(x_hat)).sum(-1).mean()), 4),
            "attributes_kept": round(float(kept), 4),
        }
    return out


def encoder_speed(module, side: int, onnx_path: Path, iters: int, batches=(1, 4)) -> list:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = []
    for b in batches:
        x = np.random.default_rng(0).uniform(-1, 1, (b, 3, side, side)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            eager = time_call(lambda xt=xt: module(xt), iters, warmup=1)
        onnx = time_call(lambda x=x: session.run(None, {"image": x}), iters, warmup=1)
        rows.append(
            {
                "batch": b,
                "torch_eager_p50_ms": round(eager["p50_ms"], 2),
                "onnxruntime_p50_ms": round(onnx["p50_ms"], 2),
                "speedup": round(eager["p50_ms"] / onnx["p50_ms"], 2),
            }
        )
    return rows


def bundle_encoder_speed(engine: Path, iters: int) -> dict:
    from mcaclip.export.exporter import export_graph
    from mcaclip.export.specs import export_spec
    from mcaclip.nn.editor import MCAEditor
    from mcaclip.nn.graphs import build_graph

    editor = MCAEditor.load(engine / "torch" / "editor.safetensors").eval()
    module = build_graph(editor, "encoder").eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.onnx"
        export_graph(module, export_spec(editor, "encoder"), editor, path)
        rows = encoder_speed(module, editor.preset.encoder.input_size, path, iters)
    return {"preset": editor.preset.name, "input": editor.preset.encoder.input_size, "rows": rows}


def ffhq(iters: int, photo: Path | None) -> dict:
    from mcaclip.export.exporter import export_graph
    from mcaclip.export.specs import export_spec
    from mcaclip.faces.align import ffhq_alignment, paste_back, warp_to_crop
    from mcaclip.nn.editor import MCAEditor
    from mcaclip.nn.graphs import build_graph

    torch.manual_seed(0)
    editor = MCAEditor.from_preset("ffhq-1024", random_weights=True, encoder="random").eval()
    module = build_graph(editor, "encoder").eval()
    result: dict = {"encoder": "e4e IR-SE50, 256 px, random weights"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.onnx"
        t0 = time.perf_counter()
        export_graph(module, export_spec(editor, "encoder"), editor, path, external_data=True)
        result["export_s"] = round(time.perf_counter() - t0, 1)
        result["rows"] = encoder_speed(module, 256, path, iters)
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    landmarks = np.array([[880, 900], [1160, 900], [1020, 1060], [900, 1200], [1140, 1200.0]])
    alignment = ffhq_alignment(landmarks, 1024)
    edit = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    region = rng.uniform(0, 1, (1024, 1024)).astype(np.float32)
    result["align_1024_from_2048_ms"] = round(
        time_call(lambda: warp_to_crop(picture, alignment), iters)["p50_ms"], 1
    )
    result["paste_1024_into_2048_ms"] = round(
        time_call(lambda: paste_back(picture, edit, alignment, region), iters)["p50_ms"], 1
    )
    if photo is not None:
        from mcaclip.faces.finders import MtcnnFinder
        from mcaclip.runtime.photos import read_photo

        finder = MtcnnFinder()  # refuses with a one-line error without MTCNN's weights
        image = read_photo(photo)
        faces = finder.find(image)
        result["mtcnn"] = {
            "photo": f"{photo.name} {image.shape[1]}x{image.shape[0]}",
            "faces": len(faces),
            "p50_ms": round(time_call(lambda: finder.find(image), iters)["p50_ms"], 1),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 photos, 1 repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--ffhq", action="store_true", help="also e4e at 256 px and FFHQ crops")
    ap.add_argument("--photo", type=Path, help="with --ffhq: a real photo for MTCNN")
    args = ap.parse_args(argv)
    from mcaclip.toyfaces.demo import demo_bundle

    n, repeats, iters = (2, 1, 2) if args.quick else (8, args.repeats, args.iters)
    engine = demo_bundle()
    payload = {
        "bundle": str(engine.name),
        "backend": "torch (photo path, CPU FP32); encoder: onnxruntime vs torch eager",
        "precision": "fp32",
        "toy_photo_path": photo_stages(engine, n, repeats),
        "toy_encoder": bundle_encoder_speed(engine, iters),
        "toy_inversion": inversion_through_finder(8 if args.quick else 100),
    }
    if args.ffhq:
        payload["ffhq"] = ffhq(iters, args.photo)
    path = write_result("photo_path_quick" if args.quick else "photo_path", payload)
    import json

    print(json.dumps({k: v for k, v in payload.items() if k != "bundle"}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
