"""`mcarun`: edit latents with an engine bundle, and benchmark its backends."""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path

import click

from mcaclip import __version__
from mcaclip.cli import run_cli
from mcaclip.errors import McaError
from mcaclip.fileio import atomic_write
from mcaclip.runtime.backends import BACKEND_NAMES, HOST_BACKENDS, TORCH_SWITCHES

log = logging.getLogger(__name__)


@click.group(name="mcarun")
@click.version_option(__version__, prog_name="mcarun")
def cli() -> None:
    """Edit StyleGAN2 latents with an MCA-CLIP engine bundle; benchmark backends."""


def _providers(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


# the torch backend's speed switches (TORCH_SWITCHES) as options: None unless given
SWITCH_OPTIONS = (
    (
        "fold_blur",
        "--fold-blur/--no-fold-blur",
        "torch backend: up-sampling conv and blur as one transposed conv "
        "(default: on for fp16 on a GPU, unless the 2x2 phase convs are: see --phase-conv).",
    ),
    (
        "channels_last",
        "--nhwc/--nchw",
        "torch backend on a GPU: channels-last activations (default: with --fold-blur).",
    ),
    (
        "subpixel",
        "--subpixel/--no-subpixel",
        "torch backend: folded up-sampling convs as plain convs with four output phases "
        "(default: on with the folded blur for fp16 on a GPU).",
    ),
    (
        "phase_conv",
        "--phase-conv/--no-phase-conv",
        "torch backend: up-sampling convs as 2x2 convs with four output phases, then the blur "
        "(4/9 of the sub-pixel form's multiply-adds; replaces --fold-blur; default: on with "
        "the Triton epilogues, which blur in their kernel, unless --fold-blur, --subpixel or "
        "--triton-convs is given; chosen by instruction counts, not yet timed as a whole).",
    ),
    (
        "fuse_tails",
        "--fuse-tails/--no-fuse-tails",
        "torch backend: fused element-wise tails (default: on for cpu, and for fp16 on a "
        "GPU without --compile).",
    ),
    (
        "stack_streams",
        "--stack-streams/--no-stack-streams",
        "torch backend: original and edited streams as one batch (default: on for fp16 "
        "on a GPU without --compile).",
    ),
    (
        "cudnn_benchmark",
        "--cudnn-benchmark/--no-cudnn-benchmark",
        "torch backend on a GPU: let cuDNN time its algorithms per shape (default: off).",
    ),
    (
        "triton_masks",
        "--triton-masks/--no-triton-masks",
        "torch backend, fp16 on a GPU without --triton-epilogues: each mask head as one fused "
        "Triton kernel (default: off; not timed alone).",
    ),
    (
        "triton_epilogues",
        "--triton-epilogues/--no-triton-epilogues",
        "torch backend, fp16 on a GPU: everything between two styled convs (both streams' "
        "tails, the mask head, the blend, ToRGB, the next conv's modulation) as one Triton "
        "kernel (default: on for fp16 on a GPU of compute capability 8.0+ with Triton, with "
        "the 2x2 phase or the sub-pixel convs, unless a switch it replaces is given: "
        "--fuse-tails, --stack-streams, --triton-masks; 2.1x faster per edit on an H100 and "
        "an H200).",
    ),
    (
        "triton_convs",
        "--triton-convs/--no-triton-convs",
        "torch backend, with the Triton epilogues: the kernel also computes the 3x3 and "
        "sub-pixel convs of up to 64 output channels (the 512 and 1024 px layers), so that "
        "their outputs never go through memory (default: off; not yet timed on a GPU).",
    ),
)
TRITON_CONVS_AUTO = (
    "torch backend, with the Triton epilogues: as --triton-convs, but only at the layers "
    "where that was faster on this GPU: at the first call of each batch shape every such layer "
    "is timed with its conv in the kernel and in cuDNN (a few calls each, before the CUDA "
    "graph is captured; default: off)."
)


def switch_flags(names, values: dict | None = None) -> list[str]:
    """The options of these torch switches as users type them: ``--fuse-tails``, and both
    spellings where the negative is not ``--no-...`` (``--nhwc/--nchw``); with ``values``
    (the switches given), ``--triton-convs-auto`` where that was the one."""
    flags = {name: spelled for name, spelled, _ in SWITCH_OPTIONS}
    texts = []
    for name in names:
        if values and name == "triton_convs" and values.get(name) == "auto":
            texts.append("--triton-convs-auto")
            continue
        positive, negative = flags[name].split("/")
        texts.append(positive if negative.startswith("--no-") else flags[name])
    return texts


def backend_options(inner):
    """--engine, --backend, --device, --precision, --form, --tuning; and, hidden from --help
    (tuning lives in profiles and --form: :mod:`mcaclip.runtime.tuning`), the older speed
    options, which still work: the torch switches, --cuda-graphs, --compile, --providers."""

    @functools.wraps(inner)
    def command(*args, triton_convs_auto: bool | None = None, **kwargs):
        ctx = click.get_current_context()
        ctx.meta["mcaclip.forms"] = (kwargs.pop("forms", ()), kwargs.pop("tuning", None))
        if triton_convs_auto:  # one switch for the backend: triton_convs="auto"
            if kwargs.get("triton_convs") is not None:
                raise click.UsageError(
                    "--triton-convs-auto chooses per layer: drop --triton-convs/--no-triton-convs"
                )
            kwargs["triton_convs"] = "auto"
        return inner(*args, **kwargs)

    f = click.option(
        "--triton-convs-auto", "triton_convs_auto", is_flag=True, default=None,
        help=TRITON_CONVS_AUTO, hidden=True,
    )(command)  # fmt: skip
    for name, flags, text in reversed(SWITCH_OPTIONS):
        f = click.option(flags, name, default=None, help=text, hidden=True)(f)
    f = click.option(
        "--tuning",
        type=click.Path(path_type=Path),
        help="Tuning profile to run with (default: BUNDLE/tuning.json from mcarun tune, when "
        "made on this machine).",
    )(f)
    f = click.option(
        "--form",
        "forms",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override one form of the fast path, e.g. triton_convs=auto, cuda_graphs=off, "
        "threads=2 (openvino) (list: docs/cli.md).",
    )(f)
    f = click.option(
        "--compile-autotune",
        "compile_",
        flag_value="max-autotune",
        hidden=True,
        help="As --compile, with Inductor's max-autotune (Triton templates for the convs, with "
        "the element-wise tails fused into them where they win; minutes per batch shape).",
    )(f)
    f = click.option(
        "--compile",
        "compile_",
        flag_value="default",
        hidden=True,
        help="torch backend on a GPU: torch.compile the masked generator (slow first call).",
    )(f)
    f = click.option(
        "--cuda-graphs/--no-cuda-graphs",
        default=None,
        hidden=True,
        help="torch/tensorrt on a GPU: replay one CUDA graph per batch shape (default: on).",
    )(f)
    f = click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "fp16"]),
        default=None,
        help="torch: fp16 on a GPU (default there; fp32 on cpu). openvino: fp32, or bf16/fp16 "
        "where the CPU has them (default bf16 where it has, else fp32).",
    )(f)
    f = click.option(
        "--device",
        help="torch/tensorrt device: cpu, cuda, cuda:N (default: cuda when PyTorch sees a GPU).",
    )(f)
    f = click.option(
        "--providers",
        hidden=True,
        help="ONNX Runtime providers in order, comma-separated "
        "(default: TensorRT, CUDA, CPU as installed).",
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(BACKEND_NAMES),
        help="Run the ONNX graphs (onnxruntime; openvino: fastest on CPU), the same networks in "
        "PyTorch, or TensorRT engines (default: onnxruntime; torch for bundles built with "
        "--backend torch).",
    )(f)
    f = click.option(
        "--engine",
        type=click.Path(path_type=Path),
        help="Engine bundle directory (mcaexport build-engine). edit: default the toy-world "
        "demo bundle, built once into ~/.cache/mcaclip.",
    )(f)
    return f


def _forms_given() -> tuple[dict, Path | None]:
    """The --form items (parsed) and --tuning of the running command."""
    from mcaclip.runtime.tuning import parse_forms

    ctx = click.get_current_context(silent=True)
    items, tuning = (ctx.meta.get("mcaclip.forms") if ctx else None) or ((), None)
    return parse_forms(items), tuning


def log_profile(profile: dict, tuning: Path | None) -> None:
    log.info("tuning profile %s: %s", tuning or "tuning.json", profile.get("chosen"))


def _open(
    engine: Path,
    backend: str,
    providers: str | None,
    device: str | None = None,
    precision: str | None = None,
    cuda_graphs: bool | None = None,
    compile_: bool = False,
    **switches,
):
    """``switches``: the torch backend's speed switches, TORCH_SWITCHES (None: its default).
    Forms come, lowest first, from the tuning profile (``--tuning`` or ``ENGINE/tuning.json``
    made on this machine), ``--form`` and the (hidden) options given."""
    from mcaclip.bundle import Bundle
    from mcaclip.runtime.pipeline import EditPipeline
    from mcaclip.runtime.tuning import profile_for

    given_forms, tuning = _forms_given()
    profile = profile_for(Path(engine), tuning)
    if profile and backend in (None, profile["backend"]):
        backend = profile["backend"]
        device = device or profile.get("device")
        precision = precision or profile.get("precision")
        forms = dict(profile.get("forms", {}))
        log_profile(profile, tuning)
    else:
        forms = {}
    forms.update(given_forms)
    if providers is None and forms.get("providers"):
        providers = ",".join(forms["providers"])
    if cuda_graphs is None:
        cuda_graphs = forms.get("cuda_graphs")
    if not compile_ and forms.get("compile"):
        compile_ = forms["compile"]
    from_forms = {k: forms[k] for k in switches if switches[k] is None and k in forms}
    if backend is None:  # a torch-only bundle has no ONNX graphs to run
        torch_only = Bundle.open(engine, verify=False).manifest.get("backend") == "torch"
        backend = "torch" if torch_only else "onnxruntime"
    given = [k for k, v in switches.items() if v is not None]
    if given and backend != "torch":
        flags = ", ".join(switch_flags(given, switches))
        raise McaError(
            f"{flags}: options of the torch backend, not {backend} (add --backend torch)"
        )
    if from_forms and backend != "torch":
        names = ", ".join(f"--form {k}" for k in from_forms)
        raise McaError(f"{names}: forms of the torch backend, not {backend} (add --backend torch)")
    switches = {**switches, **from_forms}
    host_forms = {k: forms[k] for k in ("threads", "streams") if k in forms}
    if host_forms and backend != "openvino":
        names = ", ".join(f"--form {k}" for k in host_forms)
        raise McaError(f"{names}: forms of the openvino backend, not {backend}")
    if backend == "onnxruntime" and precision not in (None, "fp32"):
        raise McaError(
            f"--precision {precision}: onnxruntime runs the bundle's FP32 graphs; use "
            "--backend openvino or torch for other precisions"
        )
    if device is None and backend not in HOST_BACKENDS:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision is None and backend != "openvino":  # openvino: its own default
        precision = "fp16" if device and device.startswith("cuda") else "fp32"
    # the pipeline logs a warning when the bundle has random weights
    return EditPipeline(
        engine,
        backend=backend,
        providers=_providers(providers),
        device=device,
        precision=precision,
        cuda_graphs=cuda_graphs,
        compile=compile_,
        **host_forms,
        **switches,
    )


@cli.command()
@backend_options
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--images",
    is_flag=True,
    help="Edit photos: PATHS are pictures or folders of them (faces found, aligned, inverted "
    "with the bundle's encoder); writes aligned, inversion and edit per face.",
)
@click.option(
    "--paste-back", is_flag=True, help="With --images: also blend each edit into its photo."
)
@click.option("--all-faces", is_flag=True, help="With --images: every face, not only the largest.")
@click.option(
    "--latents",
    type=click.Path(path_type=Path),
    help="W+ latents: .pt or .npy, [N,L,512], [L,512] or [N,512].",
)
@click.option("--seeds", help="Seeds for the mapping network instead of --latents, e.g. 0-7,10.")
@click.option("--truncation", default=0.7, show_default=True, help="Truncation for --seeds.")
@click.option(
    "--prompt", "prompts", multiple=True, required=True, help="What to edit (repeatable)."
)
@click.option("--batch-size", type=int, help="Latents per call (default: the bundle's opt batch).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--save-masks", is_flag=True, help="Also write mask pictures and per-layer masks.")
@click.option(
    "--grid", "make_grid", is_flag=True, help="Also write grid.png: originals, edits, masks."
)
@click.option("--overwrite", is_flag=True, help="Redo latents whose files exist.")
@click.option(
    "--format",
    "picture_format",
    type=click.Choice(["png", "jpg"]),
    default="png",
    show_default=True,
    help="Picture files: png (lossless) or jpg (4:4:4; at 1024 px 15x faster to encode "
    "than a level-1 PNG, a third of the bytes).",
)
@click.option(
    "--png-level",
    type=int,
    default=1,
    show_default=True,
    hidden=True,  # --form png_level=N
    help="PNG zlib level, 0 (fastest, largest) to 9 (smallest, slowest): at 1024 px a "
    "photograph takes 74 ms to encode at 1 and 330 ms at 6 (PIL's default) for 10% less.",
)
@click.option(
    "--jpeg-quality", type=int, default=95, hidden=True, help="With --format jpg (--form)."
)
@click.option(
    "--writers",
    type=int,
    hidden=True,  # --form writers=N
    help="Threads that encode and write pictures while the next batch is computed "
    "(default: one per CPU, at most 8; 0: write in the main thread).",
)
def edit(
    engine,
    backend,
    providers,
    device,
    precision,
    cuda_graphs,
    compile_,
    paths,
    images,
    paste_back,
    all_faces,
    latents,
    seeds,
    truncation,
    prompts,
    batch_size,
    out,
    save_masks,
    make_grid,
    overwrite,
    picture_format,
    png_level,
    jpeg_quality,
    writers,
    **switches,
):
    """Edit latents (--latents, --seeds) or photos (--images PATHS) with one or more prompts;
    writes {index:05d}_{prompt}.png files (photos: {picture}_{prompt}.png)."""
    from tqdm import tqdm

    from mcaclip.runtime.edit import edit_to_dir, writer_threads
    from mcaclip.runtime.io import PictureFormat, load_latents, parse_seeds

    sources = [
        n for n, on in (("--images", images), ("--latents", latents), ("--seeds", seeds)) if on
    ]
    if len(sources) != 1:
        raise McaError("give one of --images PATHS, --latents FILE or --seeds 0-7")
    if paths and not images:
        raise McaError(f"unexpected argument {paths[0]}: photos go with --images")
    if (paste_back or all_faces) and not images:
        raise McaError("--paste-back and --all-faces go with --images")
    forms, _ = _forms_given()  # the output's forms: --form png_level=, jpeg_quality=, writers=
    png_level = forms.get("png_level", png_level)
    jpeg_quality = forms.get("jpeg_quality", jpeg_quality)
    writers = forms.get("writers", writers)
    picture = PictureFormat(picture_format, png_level, jpeg_quality)  # checked before any work
    if images:
        options = dict(
            backend=backend,
            providers=providers,
            device=device,
            precision=precision,
            cuda_graphs=cuda_graphs,
            compile_=compile_,
            **switches,
        )
        return _edit_photos(
            engine,
            options,
            paths,
            list(prompts),
            out,
            batch_size,
            paste_back,
            all_faces,
            overwrite,
            picture,
        )
    writers = writer_threads(writers)
    start = time.perf_counter()
    engine = _default_engine(engine)
    with _open(
        engine, backend, providers, device, precision, cuda_graphs, compile_, **switches
    ) as pipeline:
        if latents is not None:
            w = load_latents(latents, pipeline.n_latent, pipeline.style_dim)
        else:
            w = pipeline.seeds_to_latents(parse_seeds(seeds), truncation)
        if batch_size is None:
            batch_size = int(pipeline.bundle.batch_profile["opt"])
        with tqdm(total=len(w), unit="latent", desc="editing", leave=False) as bar:
            summary = edit_to_dir(
                pipeline,
                w,
                list(prompts),
                out,
                batch_size,
                save_masks,
                make_grid,
                overwrite,
                progress=bar.update,
                picture=picture,
                writers=writers,
            )
    took = time.perf_counter() - start
    click.echo(
        f"{summary.latents} latents x {summary.prompts} prompts -> {out} "
        f"({summary.written} edited, {summary.skipped} already done) in {took:.1f} s"
    )
    if summary.grid is not None:
        click.echo(f"grid: {summary.grid}")


def _edit_photos(
    engine, options, paths, prompts, out, batch_size, paste, all_faces, overwrite, picture
):
    """``options``: :func:`_open`'s keywords (backend, device, switches, ...)."""
    from tqdm import tqdm

    from mcaclip.runtime.photo_edit import edit_photos
    from mcaclip.runtime.photos import list_pictures

    pictures = list_pictures(paths)  # a missing path is refused before any work
    start = time.perf_counter()
    engine = _default_engine(engine)
    with _open(engine, **options) as pipeline:
        if batch_size is None:
            batch_size = int(pipeline.bundle.batch_profile["opt"])
        with tqdm(total=len(pictures), unit="picture", desc="editing", leave=False) as bar:
            summary = edit_photos(
                pipeline,
                pictures,
                prompts,
                out,
                batch_size,
                paste,
                all_faces,
                overwrite,
                progress=bar.update,
                picture=picture,
            )
    took = time.perf_counter() - start
    stages = ", ".join(f"{k} {v:.2f}" for k, v in summary.seconds.items() if v)
    click.echo(
        f"{summary.pictures} pictures x {len(prompts)} prompts -> {out} ({summary.faces} faces "
        f"edited, {summary.skipped} pictures already done, {summary.failed} skipped) in "
        f"{took:.1f} s"
    )
    if stages:
        click.echo(f"seconds per stage: {stages}")
    if summary.failed:
        click.echo(f"skipped pictures and why: {out / 'failures.json'}", err=True)
    if summary.failed == summary.pictures:
        raise McaError(f"no picture could be edited ({out / 'failures.json'} says why)")


def _default_engine(engine):
    if engine is None:
        from mcaclip.toyfaces.demo import demo_bundle

        engine = demo_bundle()
        click.echo(f"no --engine: the toy-world demo bundle {engine}", err=True)
    return engine


@cli.command()
@backend_options
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--images", is_flag=True, help="PATHS are photos or folders (the default).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Latents file (.pt: a tensor [N,L,512] as e4e's latents.pt; or .npy); OUT.json names "
    "each row's picture and face.",
)
@click.option("--all-faces", is_flag=True, help="Every face of a picture, not only the largest.")
def invert(engine, paths, images, out, all_faces, **options):
    """Photos -> W+ latents with the bundle's encoder, for mcarun edit --latents."""
    from tqdm import tqdm

    from mcaclip.runtime.photo_edit import invert_photos
    from mcaclip.runtime.photos import list_pictures

    pictures = list_pictures(paths)
    start = time.perf_counter()
    engine = _default_engine(engine)
    with _open(engine, **options) as p:
        with tqdm(total=len(pictures), unit="picture", desc="inverting", leave=False) as bar:
            n, failures = invert_photos(p, pictures, out, all_faces, progress=bar.update)
    click.echo(
        f"{n} faces from {len(pictures)} pictures -> {out} ({len(failures)} pictures skipped; "
        f"index {out}.json) in {time.perf_counter() - start:.1f} s"
    )


@cli.command()
@click.option(
    "--engine", required=True, type=click.Path(path_type=Path), help="Engine bundle to tune."
)
@click.option("--batch-size", default=8, show_default=True, help="Latents per call to tune for.")
@click.option("--iters", default=10, show_default=True, help="Timed runs per configuration.")
@click.option("--warmup", default=2, show_default=True, help="Untimed runs first.")
@click.option("--compile", "compile_", is_flag=True, help="Also time torch.compile (GPU).")
def tune(engine, batch_size, iters, warmup, compile_):
    """Time the configurations this machine can run (as bench --all-backends) and write the
    fastest as BUNDLE/tuning.json, which edit and bench then use on this machine."""
    from mcaclip.runtime.bench import bench_variants, format_table, plan_variants
    from mcaclip.runtime.tuning import write_profile

    variants = plan_variants(engine, compile_="default" if compile_ else False)
    payload = bench_variants(engine, variants, [batch_size], iters, warmup)
    click.echo(format_table({n: v["rows"] for n, v in payload["variants"].items()}))
    path, profile = write_profile(engine, payload, batch_size)
    forms = ", ".join(f"{k}={v}" for k, v in profile["forms"].items()) or "the defaults"
    click.echo(
        f"fastest at batch {batch_size}: {profile['chosen']} ({profile['backend']}; {forms}); "
        f"wrote {path}"
    )


@cli.command()
@backend_options
@click.option(
    "--batch-sizes", default="1,4,8", show_default=True, help="Comma-separated latent batches."
)
@click.option("--iters", default=10, show_default=True, help="Timed runs per stage.")
@click.option("--warmup", default=2, show_default=True, help="Untimed runs first.")
@click.option("--compare-torch", is_flag=True, help="Also run the pipeline in PyTorch FP32 eager.")
@click.option(
    "--all-backends",
    is_flag=True,
    help="Every backend this machine has: ONNX Runtime, torch FP32 eager, and on a GPU torch "
    "FP16 + CUDA graphs (+ --compile) and TensorRT (when installed and the bundle has engines).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=Path("mcarun-bench.json"),
    show_default=True,
    help="Where to write the results (rewritten whole after each configuration, with "
    '"complete": false and the ones still to run under "pending" until the last).',
)
def bench(
    engine,
    backend,
    providers,
    device,
    precision,
    cuda_graphs,
    compile_,
    batch_sizes,
    iters,
    warmup,
    compare_torch,
    all_backends,
    json_path,
    **switches,
):
    """Latency per stage and end to end, per batch size (p50/p90/p99, images/s).

    On a GPU the torch and TensorRT stages run on device tensors and are timed with CUDA
    events; end_to_end includes the host copies of latents, float images and masks,
    end_to_end_pixels those of uint8 images only (what edit fetches without masks)."""
    from mcaclip.runtime.bench import bench_variants, format_table, plan_variants

    if engine is None:
        raise McaError("--engine BUNDLE is needed (mcaexport build-engine makes one)")
    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise McaError(f"--batch-sizes {batch_sizes!r}: use numbers like 1,4,8") from None
    if all_backends:
        if any(v is not None for v in switches.values()):
            raise McaError(
                "--all-backends times its own set of configurations; drop "
                f"{'/'.join(switch_flags(TORCH_SWITCHES, switches))}, or time one configuration "
                "with --backend torch and those options"
            )
        variants = plan_variants(engine, providers=_providers(providers), compile_=compile_)
    else:
        with _open(
            engine, backend, providers, device, precision, cuda_graphs, compile_, **switches
        ) as p:
            # the switches as resolved: the options given, --form and the tuning profile
            variants = [{**_variant(p), **{k: v for k, v in p.switches.items() if v is not None}}]
        if compare_torch and variants[0]["backend"] != "torch":
            variants.insert(
                0,
                {
                    "backend": "torch",
                    "device": variants[0]["device"] or "cpu",
                    "precision": "fp32",
                    "cuda_graphs": False,
                    "compile": False,
                },
            )

    def write(payload: dict) -> None:  # whole files only: after each variant, then the last
        atomic_write(
            json_path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2) + "\n")
        )

    payload = bench_variants(engine, variants, sizes, iters, warmup, progress=write)
    write(payload)
    click.echo(format_table({n: v["rows"] for n, v in payload["variants"].items()}))
    for name, reason in payload.get("skipped", {}).items():
        click.echo(f"not measured: {name} ({reason})")
    click.echo(f"wrote {json_path}")


def _variant(pipeline) -> dict:
    host = pipeline.backend in HOST_BACKENDS
    variant = {
        "backend": pipeline.backend,
        "device": pipeline.device if not host else None,
        "precision": pipeline.precision
        if pipeline.backend in ("torch", "openvino")
        else ("fp16" if pipeline.backend == "tensorrt" else "fp32"),
        "cuda_graphs": pipeline.cuda_graphs if not host else False,
        "compile": pipeline.compile,
        "providers": pipeline.providers,
    }
    if pipeline.backend == "openvino":
        variant.update(threads=pipeline.threads, streams=pipeline.streams)
    return variant


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()
