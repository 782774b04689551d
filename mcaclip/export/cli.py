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


def _load_editor(checkpoint: Path | None, preset: str | None, random_weights: bool):
    import torch

    from mcaclip.nn.editor import MCAEditor

    if checkpoint is not None:
        editor = MCAEditor.load(checkpoint, random_weights=random_weights)
        if preset is not None and editor.preset.name != preset:
            raise ConfigError(
                f"{checkpoint} was trained with preset {editor.preset.name!r}, not {preset!r}; "
                "drop --preset"
            )
        return editor, {"checkpoint": str(checkpoint.resolve())}
    if not random_weights:
        raise McaError(
            "nothing to export: pass --checkpoint RUN/editor.safetensors (from mcatrain), "
            "or --random-weights --preset NAME for tests and benchmarks"
        )
    if preset is None:
        raise McaError("--random-weights needs --preset (ffhq-1024, toy-64, tiny-32 or a JSON)")
    torch.manual_seed(0)
    return MCAEditor.from_preset(preset, random_weights=True), {"checkpoint": None}


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


@cli.command("build-engine")
@source_options
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="auto: TensorRT where installed with a GPU, else ONNX Runtime.",
)
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
):
    """Build an engine bundle: validated graphs, prompt cache, manifest."""
    start = time.perf_counter()
    profile = BatchProfile(min_batch, opt_batch, max_batch, max_prompts)
    editor, sources = _load_editor(checkpoint, preset, random_weights)
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
    )
    click.echo(
        f"wrote {out} ({manifest['backend']}, {precision}, {len(manifest['graphs'])} graphs, "
        f"{len(manifest['prompts'])} cached prompts) in {time.perf_counter() - start:.1f} s"
    )


@cli.command("export-onnx")
@source_options
def export_onnx(checkpoint, preset, random_weights, precision, out, overwrite):
    """Export the validated ONNX graphs only (no prompt cache, no engines)."""
    start = time.perf_counter()
    editor, sources = _load_editor(checkpoint, preset, random_weights)
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
