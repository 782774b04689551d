"""`mcarun`: edit latents with an engine bundle, and benchmark its backends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from mcaclip import __version__
from mcaclip.cli import run_cli
from mcaclip.errors import McaError
from mcaclip.runtime.backends import BACKEND_NAMES


@click.group(name="mcarun")
@click.version_option(__version__, prog_name="mcarun")
def cli() -> None:
    """Edit StyleGAN2 latents with an MCA-CLIP engine bundle; benchmark backends."""


def _providers(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def backend_options(f):
    f = click.option(
        "--providers",
        help="ONNX Runtime providers in order, comma-separated "
        "(default: TensorRT, CUDA, CPU as installed).",
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(BACKEND_NAMES),
        default="onnxruntime",
        show_default=True,
        help="Run the ONNX graphs, or the same networks in PyTorch.",
    )(f)
    f = click.option(
        "--engine",
        required=True,
        type=click.Path(path_type=Path),
        help="Engine bundle directory (mcaexport build-engine).",
    )(f)
    return f


def _open(engine: Path, backend: str, providers: str | None):
    from mcaclip.runtime.pipeline import EditPipeline

    # the pipeline logs a warning when the bundle has random weights
    return EditPipeline(engine, backend=backend, providers=_providers(providers))


@cli.command()
@backend_options
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
def edit(
    engine,
    backend,
    providers,
    latents,
    seeds,
    truncation,
    prompts,
    batch_size,
    out,
    save_masks,
    make_grid,
    overwrite,
):
    """Edit latents with one or more prompts; writes {index:05d}_{prompt}.png files."""
    from tqdm import tqdm

    from mcaclip.runtime.edit import edit_to_dir
    from mcaclip.runtime.io import load_latents, parse_seeds

    if (latents is None) == (seeds is None):
        raise McaError("give either --latents FILE or --seeds 0-7")
    start = time.perf_counter()
    with _open(engine, backend, providers) as pipeline:
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
            )
    took = time.perf_counter() - start
    click.echo(
        f"{summary.latents} latents x {summary.prompts} prompts -> {out} "
        f"({summary.written} edited, {summary.skipped} already done) in {took:.1f} s"
    )
    if summary.grid is not None:
        click.echo(f"grid: {summary.grid}")


@cli.command()
@backend_options
@click.option(
    "--batch-sizes", default="1,4,8", show_default=True, help="Comma-separated latent batches."
)
@click.option("--iters", default=10, show_default=True, help="Timed runs per stage.")
@click.option("--warmup", default=2, show_default=True, help="Untimed runs first.")
@click.option(
    "--compare-torch", is_flag=True, help="Also run the pipeline in PyTorch eager, same process."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=Path("mcarun-bench.json"),
    show_default=True,
    help="Where to write the results.",
)
def bench(engine, backend, providers, batch_sizes, iters, warmup, compare_torch, json_path):
    """Latency per stage and end to end, per batch size (p50/p90/p99, images/s)."""
    from mcaclip.runtime.bench import bench_pipeline, format_table, machine_info
    from mcaclip.runtime.pipeline import EditPipeline

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise McaError(f"--batch-sizes {batch_sizes!r}: use numbers like 1,4,8") from None
    results, meta = {}, {}
    with _open(engine, backend, providers) as pipeline:
        manifest = pipeline.bundle.manifest
        results[backend] = bench_pipeline(pipeline, sizes, iters, warmup)
        meta[backend] = _backend_meta(pipeline)
    if compare_torch and backend != "torch":
        with EditPipeline(engine, backend="torch") as pipeline:
            results["torch"] = bench_pipeline(pipeline, sizes, iters, warmup)
            meta["torch"] = _backend_meta(pipeline)
    payload = {
        "machine": machine_info(),
        "bundle": str(engine),
        "preset": manifest["preset"]["name"],
        "precision": "fp32",
        "random_weights": manifest["random_weights"],
        "backends": {n: {**meta[n], "rows": rows} for n, rows in results.items()},
    }
    if len(results) > 1:
        base = {(r["batch"], r["stage"]): r["p50_ms"] for r in results[backend]}
        payload["speedup_vs_torch"] = [
            {
                "batch": r["batch"],
                "stage": r["stage"],
                "ratio": r["p50_ms"] / base[(r["batch"], r["stage"])],
            }
            for r in results["torch"]
            if (r["batch"], r["stage"]) in base
        ]
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(json_path)
    click.echo(format_table(results))
    click.echo(f"wrote {json_path}")


def _backend_meta(pipeline) -> dict:
    if pipeline.backend == "torch":
        return {"device": pipeline.device, "mode": "eager"}
    return {"providers": pipeline.runner("fusion").providers}


def main() -> None:
    run_cli(cli)
