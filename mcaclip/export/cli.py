"""`mcaexport`: export editors to validated ONNX graphs and engine bundles; inspect bundles."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mcaclip import __version__
from mcaclip.bundle import Bundle
from mcaclip.cli import run_cli
from mcaclip.errors import ConfigError, McaError
from mcaclip.export.builder import BACKENDS, PRECISIONS, BatchProfile, build_bundle
from mcaclip.export.tensorrt import HARDWARE_COMPAT, TYPINGS


def _load_editor(
    checkpoint: Path | None, preset: str | None, random_weights: bool, encoder: str | None = None
):
    import torch

    from mcaclip.nn.editor import MCAEditor

    if encoder == "random" and not random_weights:
        raise McaError("--encoder random is for tests and benchmarks: add --random-weights")
    if checkpoint is not None:
        editor = MCAEditor.load(checkpoint, random_weights=random_weights)
        if preset is not None and editor.preset.name != preset:
            raise ConfigError(
                f"{checkpoint} was trained with preset {editor.preset.name!r}, not {preset!r}; "
                "drop --preset"
            )
        if encoder is not None:
            editor.attach_encoder(encoder)
        sources = {"checkpoint": str(checkpoint.resolve())}
        if encoder is not None:
            sources["encoder"] = encoder if encoder == "random" else str(Path(encoder).resolve())
        return editor, sources
    if not random_weights:
        raise McaError(
            "nothing to export: pass --checkpoint RUN/editor.safetensors (from mcatrain), "
            "or --random-weights --preset NAME for tests and benchmarks"
        )
    if preset is None:
        raise McaError("--random-weights needs --preset (ffhq-1024, toy-64, tiny-32 or a JSON)")
    torch.manual_seed(0)
    editor = MCAEditor.from_preset(preset, random_weights=True)
    if encoder is not None:
        editor.attach_encoder(encoder)
    return editor, {"checkpoint": None, "encoder": encoder}


def _prompts(prompt: tuple[str, ...], prompts_file: Path | None) -> list[str]:
    items = list(prompt)
    if prompts_file is not None:
        try:
            lines = prompts_file.read_text().splitlines()
        except OSError as exc:
            raise McaError(f"{prompts_file}: cannot read prompts file ({exc.strerror})") from None
        items += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return items


def source_options(f):
    f = click.option(
        "--checkpoint",
        type=click.Path(path_type=Path),
        help="Editor checkpoint (.safetensors from mcatrain); it names its generator and CLIP.",
    )(f)
    f = click.option("--preset", help="Preset name or JSON (required with --random-weights).")(f)
    f = click.option(
        "--encoder",
        help="Photo encoder for mcarun edit --images: e4e's e4e_ffhq_encode.pt (or ours); "
        "'random' with --random-weights.",
    )(f)
    f = click.option(
        "--random-weights",
        is_flag=True,
        help="Every network random: tests and benchmarks only; recorded in the manifest.",
    )(f)
    f = click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="fp32",
        show_default=True,
        help="fp16 adds FP16 graphs (FP32 inputs/outputs) for TensorRT/CUDA.",
    )(f)
    f = click.option(
        "--out", required=True, type=click.Path(path_type=Path), help="Output directory."
    )(f)
    f = click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")(f)
    return f


@click.group(name="mcaexport")
@click.version_option(__version__, prog_name="mcaexport")
def cli() -> None:
    """Export MCA-CLIP editors to ONNX graphs and engine bundles."""


def _progress(start: float):
    def report(name: str, precision: str) -> None:
        click.echo(
            f"[{time.perf_counter() - start:6.1f}s] exporting {name} ({precision}) ...", err=True
        )

    return report


def trt_options(f):
    """TensorRT builder options (build-engine --backend tensorrt, build-trt)."""
    f = click.option(
        "--device",
        help="The GPU to build the engines on (they run on GPUs of its kind): cuda or cuda:N "
        "(default: the current CUDA device).",
    )(f)
    f = click.option(
        "--version-compat",
        is_flag=True,
        help="Engines that later TensorRT versions can load (lean runtime; may be slower).",
    )(f)
    f = click.option(
        "--hardware-compat",
        type=click.Choice(HARDWARE_COMPAT),
        default="none",
        show_default=True,
        help="Engines that run on other GPUs: Ampere and newer, or the same compute capability.",
    )(f)
    f = click.option(
        "--trt-typing",
        type=click.Choice(TYPINGS),
        default="strong",
        show_default=True,
        help="strong: types from the FP16 graphs (TensorRT 10 and 11); fp16-flag: FP32 graphs "
        "with BuilderFlag.FP16 (TensorRT 10 only).",
    )(f)
    f = click.option(
        "--timing-cache",
        type=click.Path(path_type=Path),
        help="TensorRT timing cache file: loaded if present, saved back after the build.",
    )(f)
    f = click.option(
        "--opt-level",
        default=3,
        show_default=True,
        help="TensorRT builder optimization level 0..5.",
    )(f)
    f = click.option(
        "--workspace", default=4.0, show_default=True, help="TensorRT workspace limit in GiB."
    )(f)
    return f


def _trt_options(
    workspace, opt_level, timing_cache, trt_typing, hardware_compat, version_compat, device
):
    from mcaclip.export.tensorrt import TrtOptions

    return TrtOptions(
        workspace_gib=workspace,
        opt_level=opt_level,
        timing_cache=str(timing_cache) if timing_cache else None,
        typing=trt_typing,
        hardware_compat=hardware_compat,
        version_compat=version_compat,
        device=device,
    )


@cli.command("build-engine")
@source_options
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="auto: TensorRT where installed with a GPU, else ONNX Runtime; torch: PyTorch weights "
    "only (no ONNX graphs).",
)
@trt_options
@click.option(
    "--prompt", "prompt", multiple=True, help="Prompt to embed into the cache (repeatable)."
)
@click.option(
    "--prompts-file", type=click.Path(path_type=Path), help="File with one prompt per line."
)
@click.option("--min-batch", default=1, show_default=True, help="Smallest latent batch.")
@click.option("--opt-batch", default=4, show_default=True, help="Latent batch to optimise for.")
@click.option("--max-batch", default=8, show_default=True, help="Largest latent batch.")
@click.option(
    "--max-prompts", default=8, show_default=True, help="Most prompts per latent in one call."
)
@click.option(
    "--no-text-encoder", is_flag=True, help="Leave out the text encoder: only cached prompts work."
)
def build_engine(
    checkpoint,
    preset,
    encoder,
    random_weights,
    precision,
    out,
    overwrite,
    backend,
    prompt,
    prompts_file,
    min_batch,
    opt_batch,
    max_batch,
    max_prompts,
    no_text_encoder,
    workspace,
    opt_level,
    timing_cache,
    trt_typing,
    hardware_compat,
    version_compat,
    device,
):
    """Build an engine bundle: validated graphs, prompt cache, manifest (and TensorRT engines
    with --backend tensorrt, built from FP16 graphs on this machine's GPU)."""
    start = time.perf_counter()
    profile = BatchProfile(min_batch, opt_batch, max_batch, max_prompts)
    trt_options = _trt_options(  # checked before the editor is loaded
        workspace, opt_level, timing_cache, trt_typing, hardware_compat, version_compat, device
    )
    editor, sources = _load_editor(checkpoint, preset, random_weights, encoder)
    manifest = build_bundle(
        editor,
        out,
        _prompts(prompt, prompts_file),
        precision=precision,
        backend=backend,
        profile=profile,
        random_weights=random_weights,
        sources=sources,
        text_encoder=not no_text_encoder,
        overwrite=overwrite,
        on_graph=_progress(start),
        trt_options=trt_options,
    )
    click.echo(
        f"wrote {out} ({manifest['backend']}, {manifest['precision']}, "
        f"{len(manifest['graphs'])} graphs, "
        f"{len(manifest['prompts'])} cached prompts) in {time.perf_counter() - start:.1f} s"
    )


@cli.command("export-onnx")
@source_options
def export_onnx(checkpoint, preset, encoder, random_weights, precision, out, overwrite):
    """Export the validated ONNX graphs only (no prompt cache, no engines)."""
    start = time.perf_counter()
    editor, sources = _load_editor(checkpoint, preset, random_weights, encoder)
    manifest = build_bundle(
        editor,
        out,
        [],
        precision=precision,
        backend="onnxruntime",
        random_weights=random_weights,
        sources=sources,
        overwrite=overwrite,
        graphs_only=True,
        on_graph=_progress(start),
    )
    click.echo(f"wrote {len(manifest['graphs'])} graphs to {out / 'onnx'}")


@cli.command("build-trt")
@click.argument("bundle", type=click.Path(path_type=Path))
@trt_options
def build_trt(
    bundle, workspace, opt_level, timing_cache, trt_typing, hardware_compat, version_compat, device
):
    """(Re)build a bundle's TensorRT engines on this machine's GPU, from its FP16 graphs.

    Engines are tied to the GPU and TensorRT version they were built with: build the bundle
    anywhere (--precision fp16), then run this where it will serve."""
    from mcaclip.export.builder import rebuild_trt

    start = time.perf_counter()
    record = rebuild_trt(
        bundle,
        _trt_options(
            workspace, opt_level, timing_cache, trt_typing, hardware_compat, version_compat, device
        ),
    )
    click.echo(
        f"built {len(record['engines'])} TensorRT {record['version']} engines for "
        f"{record['gpu']} (sm {record['compute_capability']}) into {bundle}/trt in "
        f"{time.perf_counter() - start:.1f} s"
    )


@cli.command("check-trt")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--no-run", is_flag=True, help="Skip the half-precision CPU run of the FP16 graphs.")
def check_trt(bundle, no_run):
    """Will TensorRT take this bundle? Operators, opsets, types, dynamic axes, FP16 finiteness
    (no TensorRT or GPU needed)."""
    from mcaclip.export.trtcheck import check_bundle

    b = Bundle.open(bundle, verify=True)
    checks = check_bundle(b, run=not no_run)
    click.echo(
        f"{'graph':<17} {'onnx':<34} {'opset':>5} {'nodes':>6} {'ops':>4} {'fp16 PSNR':>10}  status"
    )
    problems = []
    for c in checks:
        psnr = f"{c.fp16_psnr_db:.1f} dB" if c.fp16_psnr_db else "-"
        status = "ok" if not c.problems else f"{len(c.problems)} problem(s)"
        click.echo(
            f"{c.name:<17} {c.onnx:<34} {c.opset:>5} {sum(c.ops.values()):>6} {len(c.ops):>4} "
            f"{psnr:>10}  {status}"
        )
        problems += [f"{c.name}: {p}" for p in c.problems]
    ops = sorted({op for c in checks for op in c.ops})
    click.echo(f"operators ({len(ops)}): {', '.join(ops)}")
    for p in problems:
        click.echo(f"  {p}", err=True)
    if problems:
        raise McaError(
            f"{bundle}: not ready for TensorRT ({len(problems)} problems; first: {problems[0]})"
        )
    click.echo(f"{bundle}: ready for TensorRT (every operator, type and axis is supported)")


@cli.command("inspect")
@click.argument("bundle", type=click.Path(path_type=Path))
def inspect_bundle(bundle):
    """Print a bundle's manifest as a table and verify every file's hash."""
    b = Bundle.open(bundle, verify=True)
    m = b.manifest
    p = m["preset"]
    g = p["generator"]
    n_latent = 2 * (g["size"].bit_length() - 1) - 2
    rows = [
        ("bundle", str(bundle)),
        ("schema", str(m["schema_version"])),
        ("created", m.get("created", "?")),
        ("versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)),
        (
            "preset",
            f"{p['name']} ({g['size']} px, W+ {n_latent} x {g['style_dim']}, "
            f"CLIP {p['clip']['model']})",
        ),
        (
            "weights",
            "RANDOM (tests/benchmarks only)"
            if m["random_weights"]
            else str(m["sources"].get("checkpoint")),
        ),
        ("backend", m["backend"]),
        ("precision", m["precision"]),
        (
            "batch",
            "min {min} / opt {opt} / max {max}, up to {max_prompts} prompts per latent".format(
                **m["batch_profile"]
            ),
        ),
        (
            "prompts",
            f"{len(m['prompts'])} cached"
            + (f": {', '.join(m['prompts'][:5])}" if m["prompts"] else ""),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    click.echo("")
    click.echo(f"{'graph':<17} {'inputs':<52} {'max |err| fp32':>14} {'fp16 PSNR':>10}")
    for name, entry in m["graphs"].items():
        ins = ", ".join(f"{t['name']}{t['shape']}" for t in entry["inputs"][:3])
        if len(entry["inputs"]) > 3:
            ins += f", +{len(entry['inputs']) - 3}"
        fp32 = entry["validation"].get("fp32", {}).get("max_abs", {})
        err = f"{max(fp32.values()):.1e}" if fp32 else "-"
        fp16 = entry["validation"].get("fp16", {}).get("psnr_db", {})
        psnr = f"{fp16['image']:.1f} dB" if "image" in fp16 else "-"
        click.echo(f"{name:<17} {ins[:52]:<52} {err:>14} {psnr:>10}")
    click.echo(f"\nhashes: OK ({len(b.files())} files verified)")


def main() -> None:
    run_cli(cli)
