"""`mcatrain`: train an MCA-CLIP editor (or an ablation / baseline) into a run directory.

Multi-GPU: ``torchrun --nproc_per_node N -m mcaclip.training.cli ...`` (one process per GPU;
rank 0 logs and writes checkpoints). On CPU the gloo backend is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from mcaclip import __version__
from mcaclip.cli import run_cli
from mcaclip.errors import McaError
from mcaclip.training.regions import AREA_REGIONS, REGIONS

# StyleCLIP's latent mapper trains with its CLIP loss, L2 and identity (its defaults).
STYLECLIP_WEIGHTS = {
    "clip": 1.0,
    "l2": 0.8,
    "id": 0.1,
    "nce": 0.0,
    "area": 0.0,
    "tv": 0.0,
    "bg": 0.0,
}


def _weight_option(name: str, default: float, what: str):
    return click.option(
        f"--{name}-weight",
        f"w_{name}",
        type=float,
        default=None,
        help=f"{what} (MCA-CLIP default {default:g}).",
    )


@click.command(name="mcatrain")
@click.version_option(__version__, prog_name="mcatrain")
@click.option("--preset", default="ffhq-1024", show_default=True, help="Preset name or JSON.")
@click.option(
    "--prompt", "prompts", multiple=True, help="Target prompt; repeat for a multi-prompt editor."
)
@click.option("--prompts-file", type=click.Path(path_type=Path), help="One prompt per line.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option(
    "--generator",
    type=click.Path(path_type=Path),
    help="StyleGAN2 weights: rosinality .pt (stylegan2-ffhq-config-f.pt).",
)
@click.option("--clip-model", help="open_clip architecture (default: the preset's, ViT-B-32).")
@click.option(
    "--clip-weights",
    type=click.Path(path_type=Path),
    help="CLIP weights: OpenAI ViT-B-32.pt or open_clip .bin/.safetensors.",
)
@click.option(
    "--arcface",
    type=click.Path(path_type=Path),
    help="ArcFace IR-SE50 model_ir_se50.pth (identity loss).",
)
@click.option(
    "--parser", type=click.Path(path_type=Path), help="BiSeNet 79999_iter.pth (background loss)."
)
@click.option(
    "--latents",
    type=click.Path(path_type=Path),
    help="e4e latents [N,18,512] .pt; default: sample the mapping network.",
)
@click.option("--latent-space", type=click.Choice(["w", "w+"]), default="w+", show_default=True)
@click.option("--truncation", default=0.7, show_default=True)
@click.option(
    "--method", type=click.Choice(["mca", "styleclip-mapper"]), default="mca", show_default=True
)
@click.option(
    "--fusion",
    type=click.Choice(["ff", "tem"]),
    help="ff: Feature Fusion; tem: CF-CLIP's TEM (ablation w/o FF).",
)
@click.option("--fusion-tokens", type=int, help="Split each 512-d vector into T attention tokens.")
@click.option("--no-masks", is_flag=True, help="Ablation w/o PRE: no mask net, plain edited image.")
@click.option(
    "--mask-init",
    type=click.FloatRange(0, 1, max_open=True),
    help="Initial mask value everywhere, e.g. 0.95 (masks start open); 0: random init.",
)
@click.option("--steps", default=10000, show_default=True)
@click.option("--batch-size", default=2, show_default=True, help="Per process.")
@click.option(
    "--lr", default=5e-4, show_default=True, help="Adam learning rate of fusion and masks."
)
@click.option(
    "--mapper-lr", default=0.5, show_default=True, help="Adam lr of the equalized-lr mapper."
)
@click.option("--grad-clip", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@_weight_option("id", 0.2, "Identity loss weight")
@_weight_option("l2", 0.8, "Latent L2 weight")
@_weight_option("nce", 0.3, "CLIP-NCE weight")
@_weight_option("area", 2e-5, "Mask area weight")
@_weight_option("tv", 3e-5, "Mask TV weight")
@_weight_option("bg", 0.2, "Background loss weight")
@_weight_option("clip", 0.0, "StyleCLIP CLIP-loss weight")
@click.option(
    "--nce-distortion",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Perspective strength of CLIP-NCE's views (0.5: CF-CLIP's; 0: unwarped).",
)
@click.option(
    "--mask-ramp",
    callback=lambda ctx, param, value: _ramp(value),
    default="0:0",
    show_default=True,
    metavar="START:END",
    help="Mask area/TV weights off until START, full at END (shares of --steps), e.g. 0.3:0.7.",
)
@click.option(
    "--bg-region",
    type=click.Choice(REGIONS),
    default="background",
    show_default=True,
    help="What the background loss keeps: the parser's background (the paper) or everything "
    "outside the prompt's part.",
)
@click.option(
    "--area-region",
    type=click.Choice(AREA_REGIONS),
    default="all",
    show_default=True,
    help="What the mask area term counts: the whole mask (the paper) or only its share outside "
    "the prompt's part.",
)
@click.option(
    "--val-size", default=4, show_default=True, help="Held-out latents in the sample grid."
)
@click.option("--val-every", default=500, show_default=True)
@click.option("--ckpt-every", default=1000, show_default=True)
@click.option("--log-every", default=10, show_default=True)
@click.option("--amp", is_flag=True, help="Mixed precision (CUDA only).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available).")
@click.option(
    "--random-weights", is_flag=True, help="Every frozen network random: tests and benchmarks only."
)
@click.option(
    "--world",
    type=click.Choice(["toy"]),
    help="toy: train on the toy world's shipped networks and latents (toy-64, CPU-sized).",
)
def cli(prompts, prompts_file, resume, device, **kw):
    """Train an MCA-CLIP editor: frozen StyleGAN2, CLIP, ArcFace and face parser; trains
    feature fusion, latent mapper and mask net with the paper's six losses."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from mcaclip.training.trainer import LossWeights, TrainConfig, Trainer

    prompt_list = list(prompts)
    if prompts_file is not None:
        try:
            lines = Path(prompts_file).read_text().splitlines()
        except OSError as exc:
            raise McaError(f"{prompts_file}: cannot read ({exc.strerror})") from None
        prompt_list += [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    defaults = dataclass_defaults(LossWeights)
    if kw["method"] == "styleclip-mapper":
        defaults.update(STYLECLIP_WEIGHTS)
    given = {k: kw.pop(f"w_{k}") for k in defaults}
    weights = LossWeights(**{k: defaults[k] if v is None else v for k, v in given.items()})
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    kw = {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}
    config = TrainConfig(prompts=prompt_list, weights=weights, device=device, **kw)
    trainer = Trainer(config, resume=resume)
    rank0 = trainer.rank == 0
    with tqdm(total=config.steps, initial=trainer.step, disable=not rank0, desc="training") as bar:

        def progress(record):
            bar.update(1)
            shown = {k: f"{record[k]:.3f}" for k in ("total", "id", "nce", "bg") if k in record}
            bar.set_postfix(shown)

        trainer.fit(progress)
    if rank0:
        click.echo(f"trained {config.steps} steps; editor: {config.out}/editor.safetensors")
    if dist.is_initialized():
        dist.destroy_process_group()


def _ramp(value: str) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write START:END, e.g. 0.3:0.7") from None
    if not 0.0 <= start <= end <= 1.0:
        raise click.BadParameter(f"{value!r}: need 0 <= START <= END <= 1")
    return start, end


def dataclass_defaults(cls) -> dict:
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(cls)}


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()
