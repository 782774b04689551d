"""``python -m mcaclip.toyfaces build``: train every network of the toy world on CPU, seeded.

Writes into ``--out`` (default: the package's ``toyfaces/assets``)::

    generator.safetensors/.json   the toy-64 StyleGAN2 (our nn/stylegan2.py), mapping attribute
                                  codes to renders: its W space encodes the attributes
    clip.safetensors              the toy CLIP (open_clip, the preset's architecture)
    probe.safetensors             attribute probes (evaluation only)
    parser.safetensors            face parser (stands in for BiSeNet)
    identity.safetensors          identity network (stands in for ArcFace)
    test_latents.pt               W+ latents of held-out faces [N, L, D] (as e4e inversions)
    train_latents.pt              W+ latents of training faces (mcatrain --world toy)
    test_faces.json               their attribute vectors
    metrics.json                  every network's held-out accuracy; build time and settings

``--micro`` runs the same steps at a tiny size in seconds (for tests). ``--reuse DIR`` takes
the probes, parser, identity net and CLIP of an earlier build with the same seed and settings
(every stage is seeded on its own, so they are what this build would train) and trains only
the generator: for trying generator recipes in 28 instead of 39 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from mcaclip.config import load_preset
from mcaclip.errors import WeightsMissingError
from mcaclip.fileio import atomic_write
from mcaclip.nn.stylegan2 import Generator
from mcaclip.nn.text import ClipTowers
from mcaclip.toyfaces.clip import train_clip
from mcaclip.toyfaces.data import encode, train_and_heldout
from mcaclip.toyfaces.demo import DEMO_STEPS
from mcaclip.toyfaces.train import (
    attribute_z,
    probe_accuracy,
    train_generator,
    train_identity,
    train_parser,
    train_probe,
)

log = logging.getLogger(__name__)
ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class BuildScale:
    size: int = 64
    n_train: int = 6000
    n_test: int = 300
    probe_steps: int = 300
    parser_steps: int = 400
    identity_steps: int = 300
    clip_steps: int = 1500
    # what a CLIP-guided editor needs of CLIP (train_clip's options; issue 27's diagnosis):
    # prompts in CLIP-NCE's templates, colour-swap hard negatives that bind a colour to its
    # part, no false negatives, and edit directions; no perspective warps (they undo binding)
    clip_template_odds: float = 0.5
    clip_swap_pairs: int = 6
    clip_multi_positive: bool = True
    clip_direction_weight: float = 1.0
    generator_steps: int = 7000
    generator_lr: float = 5e-3
    generator_part_weight: float = 8.0
    generator_glasses_weight: float = 12.0
    generator_edge_weight: float = 1.0
    generator_pattern_weight: float = 2.0  # see train_generator
    generator_eye_weight: float = 8.0
    generator_glasses_shape_weight: float = 16.0
    generator_face_shape_weight: float = 4.0
    generator_face_shape_hair: tuple[str, ...] | None = ("long",)  # see train_generator
    width: int = 32  # probe/identity width (parser: 3/4 of it)
    train_latents: int = 800  # W+ latents of training faces written for mcatrain


MICRO = BuildScale(
    size=32,
    n_train=128,
    n_test=32,
    probe_steps=5,
    parser_steps=5,
    identity_steps=5,
    clip_steps=3,
    clip_swap_pairs=2,
    generator_steps=5,
    width=8,
)


def _save(module: torch.nn.Module, path: Path, half: bool = False) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    if half:  # the readers cast back to float32
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(state, tmp))


@torch.no_grad()
def write_latents(generator, faces, path: Path) -> None:
    """W+ latents [N, L, D] of ``faces`` through the generator's mapping (what an encoder
    would give for their renders), written with torch.save in half precision (the package's
    size budget; the trainer reads them as float32)."""
    w = generator.mapping(attribute_z(encode(faces), generator.style_dim))
    latents = generator.broadcast(w).half().clone()
    atomic_write(path, lambda tmp: torch.save(latents, tmp))


REUSABLE = ("probe", "parser", "identity", "clip")


def _reusable(reuse: Path, scale: BuildScale, seed: int) -> dict:
    """The metrics of the build in ``reuse``, if its non-generator stages are this build's."""
    from mcaclip.toyfaces.world import asset

    prev = json.loads(asset("metrics.json", reuse).read_text())
    mine = {k: v for k, v in dataclasses.asdict(scale).items() if not k.startswith("generator")}
    theirs = {k: v for k, v in prev["scale"].items() if not k.startswith("generator")}
    if prev["seed"] != seed or mine != theirs:
        raise ValueError(
            f"--reuse {reuse}: built with seed {prev['seed']} and other settings than this "
            "build's; run the full build"
        )
    for name in REUSABLE:
        asset(f"{name}.safetensors", reuse)
    return prev


def _train_clip(preset, train, test, scale: BuildScale, seed: int):
    torch.manual_seed(seed)
    towers = ClipTowers.create(preset.clip, random_weights=True)  # trained from scratch
    return train_clip(
        towers,
        train,
        test,
        scale.clip_steps,
        seed=seed,
        template_odds=scale.clip_template_odds,
        swap_pairs=scale.clip_swap_pairs,
        multi_positive=scale.clip_multi_positive,
        direction_weight=scale.clip_direction_weight,
    )


def rebuild_clip(out: Path = ASSETS, scale: BuildScale = BuildScale(), seed: int = 0) -> dict:
    """Train the toy CLIP again into the build in ``out`` (the other networks stay: none of
    them reads CLIP) and update its metrics.json; the demo editor must be trained again."""
    from mcaclip.toyfaces.world import asset

    path = asset("metrics.json", out)
    metrics = json.loads(path.read_text())
    if metrics["seed"] != seed or metrics["scale"]["size"] != scale.size:
        raise ValueError(f"{out}: built with another seed or size; run the full build")
    preset = load_preset("toy-64" if scale.size == 64 else "tiny-32")
    t0 = time.perf_counter()
    train, test = train_and_heldout(scale.n_train, scale.n_test, scale.size, seed)
    towers, clip_m = _train_clip(preset, train, test, scale, seed)
    _save(towers.model, out / "clip.safetensors", half=True)
    seconds = time.perf_counter() - t0
    metrics["scale"].update({k: v for k, v in dataclasses.asdict(scale).items() if "clip" in k})
    metrics["seconds"]["total"] += seconds - metrics["seconds"]["clip"]
    metrics["seconds"]["clip"] = seconds
    metrics["clip"] = clip_m
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))
    return metrics


def build(
    out: Path = ASSETS, scale: BuildScale = BuildScale(), seed: int = 0, reuse: Path | None = None
) -> dict:
    start = time.perf_counter()
    prev = _reusable(reuse, scale, seed) if reuse is not None else None
    out.mkdir(parents=True, exist_ok=True)
    preset = load_preset("toy-64" if scale.size == 64 else "tiny-32")
    timings: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - t0
        log.info("%s: %.1f s", name, timings[name])
        return result

    train, test = timed(
        "render", lambda: train_and_heldout(scale.n_train, scale.n_test, scale.size, seed)
    )
    if prev is None:
        probe, probe_m = timed(
            "probe",
            lambda: train_probe(train, test, scale.probe_steps, width=scale.width, seed=seed),
        )
        parser, parser_m = timed(
            "parser",
            lambda: train_parser(
                train, test, scale.parser_steps, width=scale.width * 3 // 4, seed=seed
            ),
        )
        ident, ident_m = timed(
            "identity",
            lambda: train_identity(train, test, scale.identity_steps, width=scale.width, seed=seed),
        )
        towers, clip_m = timed("clip", lambda: _train_clip(preset, train, test, scale, seed))
    else:
        from mcaclip.toyfaces.world import load_probe

        probe = load_probe(reuse)
        probe_m, parser_m, ident_m, clip_m = (prev[k] for k in REUSABLE)
        for name in REUSABLE:
            if (reuse / f"{name}.safetensors").resolve() != (out / f"{name}.safetensors").resolve():
                shutil.copyfile(reuse / f"{name}.safetensors", out / f"{name}.safetensors")
        timings.update({k: prev["seconds"][k] for k in REUSABLE})  # as the earlier build took
        log.info("reused %s from %s", ", ".join(REUSABLE), reuse)
    torch.manual_seed(seed)
    generator = Generator(preset.generator)
    generator, gen_m, renders = timed(
        "generator",
        lambda: train_generator(
            generator,
            train,
            test,
            scale.generator_steps,
            lr=scale.generator_lr,
            part_weight=scale.generator_part_weight,
            glasses_weight=scale.generator_glasses_weight,
            edge_weight=scale.generator_edge_weight,
            pattern_weight=scale.generator_pattern_weight,
            eye_weight=scale.generator_eye_weight,
            glasses_shape_weight=scale.generator_glasses_shape_weight,
            face_shape_weight=scale.generator_face_shape_weight,
            face_shape_hair=scale.generator_face_shape_hair,
            seed=seed,
        ),
    )
    gen_m["probe_accuracy_on_renders"] = probe_accuracy(probe, test, renders)
    with torch.no_grad():
        w = generator.mapping(attribute_z(encode(test.faces), generator.style_dim))
        generator.latent_avg.copy_(w.mean(0))
        test_latents = generator.broadcast(w).clone()
    write_latents(generator, train.faces[: scale.train_latents], out / "train_latents.pt")

    generator.save(out / "generator.safetensors")
    if prev is None:
        _save(towers.model, out / "clip.safetensors", half=True)  # 6 M params, mostly tokens
        for name, net in (("probe", probe), ("parser", parser), ("identity", ident)):
            _save(net, out / f"{name}.safetensors")
    atomic_write(out / "test_latents.pt", lambda tmp: torch.save(test_latents, tmp))
    faces = [dataclasses.asdict(f) for f in test.faces]
    atomic_write(out / "test_faces.json", lambda tmp: Path(tmp).write_text(json.dumps(faces)))
    reused_seconds = sum(timings[k] for k in REUSABLE) if prev is not None else 0.0
    metrics = {
        "seed": seed,
        "scale": dataclasses.asdict(scale),
        "seconds": {**timings, "total": time.perf_counter() - start + reused_seconds},
        **({"reused_from_earlier_build": list(REUSABLE)} if prev is not None else {}),
        "probe": probe_m,
        "parser": parser_m,
        "identity": ident_m,
        "clip": clip_m,
        "generator": {k: v for k, v in gen_m.items() if k != "history"},
        "generator_history": gen_m["history"],
    }
    atomic_write(
        out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2))
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mcaclip.toyfaces", description="Toy-faces world"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train every toy network (about 45 min on 2 cores)")
    b.add_argument("--out", type=Path, default=ASSETS)
    b.add_argument("--micro", action="store_true", help="tiny sizes, seconds (tests)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="take probes, parser, identity net and CLIP from this earlier build (same seed and "
        "settings); train only the generator",
    )
    c = sub.add_parser("clip", help="train the toy CLIP again into a build (about 10 min)")
    c.add_argument("--out", type=Path, default=ASSETS)
    c.add_argument("--micro", action="store_true", help="tiny sizes, seconds (tests)")
    c.add_argument("--seed", type=int, default=0)
    d = sub.add_parser(
        "demo", help="train the demo editor (mcatrain --world toy) into assets/demo (20 min)"
    )
    d.add_argument("--steps", type=int, default=DEMO_STEPS)
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("encoder", help="train the photo encoder (e4e) on renders (about 15 min)")
    e.add_argument("--out", type=Path, default=ASSETS)
    e.add_argument("--steps", type=int, default=1500)
    e.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "demo":
        from mcaclip.toyfaces.demo import train_demo

        print(f"wrote {train_demo(args.steps, args.batch_size, args.seed)}")
        return
    if args.command == "encoder":
        from mcaclip.toyfaces.encoder import METRICS, EncoderRecipe, train_encoder

        try:
            path = train_encoder(EncoderRecipe(steps=args.steps, seed=args.seed), args.out)
        except WeightsMissingError as exc:
            parser.exit(2, f"error: {exc}\n")
        held_out = json.loads((args.out / METRICS).read_text())["held_out"]
        print(f"wrote {path}: held-out {json.dumps(held_out)}")
        return
    if args.command == "clip":
        try:
            metrics = rebuild_clip(args.out, MICRO if args.micro else BuildScale(), args.seed)
        except (ValueError, WeightsMissingError) as e:
            parser.exit(2, f"error: {e}\n")
        print(json.dumps(metrics["clip"], indent=2))
        return
    try:
        metrics = build(args.out, MICRO if args.micro else BuildScale(), args.seed, args.reuse)
    except (ValueError, WeightsMissingError) as e:
        parser.exit(2, f"error: {e}\n")
    print(
        json.dumps(
            {
                k: metrics[k]
                for k in ("seconds", "probe", "parser", "identity", "clip", "generator")
            },
            indent=2,
        )
    )
