"""The MCA-CLIP trainer: frozen G, CLIP, R and parser; trains fusion, mapper and mask net.

Run directory::

    config.json                   the run's full configuration (written first)
    log.jsonl                     one JSON line per logged step: every loss, lr, step time
    samples/step_NNNNNN.png       validation grid: original | edit | mask, one row per latent
    checkpoints/step_NNNNNN/      editor.safetensors/.json + state.pt (optimizer, RNG, step)
    checkpoints/latest            name of the newest complete checkpoint
    editor.safetensors/.json      the newest editor, what ``mcaexport --checkpoint`` reads
    frozen/                       random frozen networks of a --random-weights run

``resume`` continues a run exactly: same optimizer state, same RNG streams, same step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from mcaclip.config import Preset, load_preset
from mcaclip.errors import McaError, WeightsMissingError
from mcaclip.fileio import atomic_write
from mcaclip.nn.editor import MCAEditor
from mcaclip.nn.identity import IRSE, small_irse
from mcaclip.nn.parsing import BiSeNet, small_bisenet
from mcaclip.nn.weights import safe_torch_load
from mcaclip.training.data import LatentSource
from mcaclip.training.losses import (
    BackgroundLoss,
    ClipDirectLoss,
    ClipNCELoss,
    IdentityLoss,
    latent_l2,
    mask_area,
    mask_tv,
)
from mcaclip.training.regions import AREA_REGIONS, REGIONS

log = logging.getLogger(__name__)
METHODS = ("mca", "styleclip-mapper")


@dataclass
class LossWeights:
    """The paper's weights (MCA-CLIP); ``clip`` is StyleCLIP's loss, used by its mapper."""

    id: float = 0.2
    l2: float = 0.8
    nce: float = 0.3
    area: float = 2e-5
    tv: float = 3e-5
    bg: float = 0.2
    clip: float = 0.0


@dataclass
class TrainConfig:
    out: str  # run directory
    prompts: list[str]  # one prompt (the paper) or several (a multi-prompt editor)
    preset: str = "ffhq-1024"
    method: str = "mca"  # "mca" or "styleclip-mapper"
    fusion: str | None = None  # override the preset: "ff", "tem"
    fusion_tokens: int | None = None
    no_masks: bool = False  # ablation "w/o PRE"
    mask_init: float | None = None  # override the preset: initial mask value (0: random init)
    steps: int = 10000
    batch_size: int = 2
    lr: float = 5e-4  # fusion and mask net (plain layers)
    mapper_lr: float = 0.5  # levels mapper (equalized-lr layers, lr_mul 0.01), as StyleCLIP
    grad_clip: float = 1.0
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
    nce_distortion: float = 0.5  # CLIP-NCE views' perspective strength (CF-CLIP's: 0.5)
    # mask area and TV weights ramped in: 0 until this share of the steps, full from the next
    # (0, 0: full from the start, the paper); lets the edit land before the masks close
    mask_ramp: tuple[float, float] = (0.0, 0.0)
    # what the background loss keeps: "background" (Eq. 10, the paper) or "part": everything
    # outside the prompt's part as the parser labels it in x or x̂ (training/regions.py)
    bg_region: str = "background"
    # what the mask area term counts: "all" (Eq. 8, the paper) or "part": only the masks'
    # share outside the prompt's part (the region the part background loss frees); needs bg
    area_region: str = "all"
    latents: str | None = None  # e4e latents [N, 18, 512] (.pt); None: sample the mapping
    latent_space: str = "w+"  # for sampled latents: "w" or "w+"
    truncation: float = 0.7
    val_size: int = 4
    val_every: int = 500
    ckpt_every: int = 1000
    log_every: int = 10
    generator: str | None = None
    clip_model: str | None = None  # override the preset's CLIP architecture name
    clip_weights: str | None = None
    arcface: str | None = None
    parser: str | None = None
    random_weights: bool = False  # every frozen network random: tests and benchmarks only
    world: str | None = None  # "toy": the toy world's trained networks and latents (toy-64)
    amp: bool = False  # mixed precision on CUDA
    device: str = "cpu"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        data["weights"] = LossWeights(**data.get("weights", {}))
        if "mask_ramp" in data:
            data["mask_ramp"] = tuple(data["mask_ramp"])
        return cls(**data)

    def mask_scale(self, step: int) -> float:
        """Factor on the mask area and TV weights at ``step`` (0-based): ``mask_ramp``."""
        start, end = self.mask_ramp
        t = step / max(self.steps, 1)
        if end <= start:
            return 1.0 if t >= start else 0.0
        return min(max((t - start) / (end - start), 0.0), 1.0)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = c = config
        if c.method not in METHODS:
            raise McaError(f"--method {c.method!r}: choose one of {', '.join(METHODS)}")
        start, end = c.mask_ramp
        if not 0.0 <= start <= end <= 1.0:
            raise McaError(
                f"--mask-ramp {start:g}:{end:g}: need 0 <= START <= END <= 1 (shares of --steps)"
            )
        if c.bg_region not in REGIONS:
            raise McaError(f"--bg-region {c.bg_region!r}: choose one of {', '.join(REGIONS)}")
        if c.area_region not in AREA_REGIONS:
            raise McaError(
                f"--area-region {c.area_region!r}: choose one of {', '.join(AREA_REGIONS)}"
            )
        if c.area_region == "part" and not c.weights.bg:
            raise McaError(
                "--area-region part reads the face parser of the background loss: "
                "set --bg-weight above 0"
            )
        if not c.prompts:
            raise McaError("no prompt: pass --prompt at least once")
        self.out = Path(c.out)
        self.rank, self.world = _rank(), _world()
        self.device = torch.device(c.device)
        if c.world is not None:
            self.config = c = self._world_config(c)
        self.preset = self._preset()
        torch.manual_seed(c.seed)
        self.editor = self._build_editor(resume)
        self.losses = self._build_losses()
        trainable = self.editor.trainable_parameters()
        if not trainable:
            raise McaError("nothing to train: this configuration has no trainable parameters")
        mapper = [p for p in self.editor.mapper.parameters()]
        ids = {id(p) for p in mapper}
        self.optimizer = torch.optim.Adam(
            [
                {"params": [p for p in trainable if id(p) not in ids], "lr": c.lr},
                {"params": mapper, "lr": c.mapper_lr},
            ]
        )
        self.model = _Step(self.editor)
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(self.model)
        self.data = LatentSource(
            self.editor.generator, c.latents, c.latent_space, c.truncation, c.val_size
        )
        # own RNG streams (data, augmentations): a run never depends on global RNG state
        self.data_rng = torch.Generator().manual_seed(c.seed * 1000 + self.rank)
        self.aug_rng = torch.Generator().manual_seed(c.seed * 1000 + self.rank + 500)
        if "nce" in self.losses:
            self.losses["nce"].generator = self.aug_rng
        self.embeddings = self.editor.clip.embed_prompts(c.prompts).to(self.device)
        self.step = 0
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if resume:
            self._resume()
        elif self.rank == 0:
            self._start_run()

    # -- set-up ------------------------------------------------------------------------------

    @property
    def amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    @staticmethod
    def _world_config(c: TrainConfig) -> TrainConfig:
        """``world="toy"``: the toy world's generator, CLIP and training latents unless given."""
        if c.world != "toy":
            raise McaError(f"--world {c.world!r}: the only world is 'toy'")
        from mcaclip.toyfaces import world

        name = world.preset()
        if c.preset not in ("ffhq-1024", name):  # ffhq-1024: the option's default
            raise McaError(f"--world toy trains the {name} preset; drop --preset")
        if c.random_weights:
            raise McaError(
                "--world toy uses the toy world's trained networks; drop --random-weights"
            )
        files = world.sources()
        return dataclasses.replace(
            c,
            preset=name,
            generator=c.generator or files["generator"],
            clip_weights=c.clip_weights or files["clip_weights"],
            latents=c.latents or files["latents"],
        )

    def _preset(self) -> Preset:
        c = self.config
        p = load_preset(c.preset)
        editor = p.editor
        if c.method == "styleclip-mapper":
            editor = dataclasses.replace(editor, fusion="none", use_masks=False)
        if c.fusion is not None:
            editor = dataclasses.replace(editor, fusion=c.fusion)
        if c.fusion_tokens is not None:
            editor = dataclasses.replace(editor, fusion_tokens=c.fusion_tokens)
        if c.no_masks:
            editor = dataclasses.replace(editor, use_masks=False)
        if c.mask_init is not None:
            editor = dataclasses.replace(editor, mask_init=c.mask_init)
        clip = p.clip if c.clip_model is None else dataclasses.replace(p.clip, model=c.clip_model)
        return Preset(p.name, p.generator, clip, editor)

    def _need(self, path: str | None, flag: str, what: str, weight_name: str) -> str | None:
        """A weight file is needed unless its loss weight is 0 or every network is random."""
        weight = getattr(self.config.weights, weight_name) if weight_name else 1.0
        if path is not None:
            if not Path(path).is_file():
                raise WeightsMissingError(f"{flag} {path}: file not found ({what})")
            return path
        if weight == 0 or self.config.random_weights or self.config.world == "toy":
            return None
        extra = f" or set --{weight_name}-weight 0" if weight_name else ""
        raise WeightsMissingError(f"{flag} PATH is needed: {what}; pass it{extra}")

    def _build_editor(self, resume: bool) -> MCAEditor:
        c = self.config
        g = self._need(c.generator, "--generator", "the StyleGAN2 generator (rosinality .pt)", "")
        clip = self._need(c.clip_weights, "--clip-weights", "CLIP, for prompts and CLIP losses", "")
        frozen = self.out / "frozen"
        if resume and c.random_weights and (frozen / "generator.safetensors").is_file():
            g = g or str(frozen / "generator.safetensors")
            clip = clip or str(frozen / "clip.safetensors")
        editor = MCAEditor.from_preset(
            self.preset, random_weights=c.random_weights, generator=g, clip_weights=clip
        )
        self.sources = {
            k: v and str(Path(v).resolve()) for k, v in (("generator", g), ("clip_weights", clip))
        }
        return editor.to(self.device)

    def _build_losses(self) -> dict[str, nn.Module]:
        c, w = self.config, self.config.weights
        small = self.preset.generator.size <= 64  # random stand-ins sized to tiny presets
        losses: dict[str, nn.Module] = {}
        if w.id:
            path = self._need(
                c.arcface,
                "--arcface",
                "ArcFace IR-SE50 model_ir_se50.pth for the identity loss",
                "id",
            )
            if c.world == "toy" and path is None:
                from mcaclip.toyfaces.world import load_identity

                net = load_identity()
            else:
                net = IRSE.from_file(path) if path else (small_irse() if small else IRSE())
            losses["id"] = IdentityLoss(net.eval().requires_grad_(False), crop=not small)
        if w.bg:
            path = self._need(
                c.parser, "--parser", "BiSeNet 79999_iter.pth for the background loss", "bg"
            )
            if c.world == "toy" and path is None:
                from mcaclip.toyfaces.world import load_parser

                net = load_parser()
            else:
                net = BiSeNet.from_file(path) if path else (small_bisenet() if small else BiSeNet())
            losses["bg"] = BackgroundLoss(net.eval().requires_grad_(False), region=c.bg_region)
        if w.nce:
            losses["nce"] = ClipNCELoss(self.editor.clip, distortion=self.config.nce_distortion)
        if w.clip:
            losses["clip"] = ClipDirectLoss(self.editor.clip)
        return {k: v.to(self.device) for k, v in losses.items()}

    def _start_run(self) -> None:
        if (self.out / "checkpoints" / "latest").exists():
            raise McaError(
                f"{self.out}: holds a run already; pass --resume or choose another --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        record = {
            "train": self.config.to_dict(),
            "preset": self.preset.to_dict(),
            "losses_on": sorted(self.losses)
            + ["l2"]
            + (["area", "tv"] if self.editor.use_masks else []),
            "world_size": self.world,
        }
        atomic_write(
            self.out / "config.json", lambda t: Path(t).write_text(json.dumps(record, indent=2))
        )
        if self.config.random_weights:  # keep the random frozen networks: export needs them
            frozen = self.out / "frozen"
            self.editor.generator.save(frozen / "generator.safetensors")
            state = {k: v.contiguous() for k, v in self.editor.clip.model.state_dict().items()}
            atomic_write(frozen / "clip.safetensors", lambda t: save_file(state, t))
            self.sources = {
                "generator": str((frozen / "generator.safetensors").resolve()),
                "clip_weights": str((frozen / "clip.safetensors").resolve()),
            }

    # -- one step ----------------------------------------------------------------------------

    def losses_for(
        self, w: torch.Tensor, prompt_idx: torch.Tensor
    ) -> tuple[torch.Tensor, dict, dict]:
        """Total loss, each term (floats), and the seconds each term took."""
        c, weights = self.config, self.config.weights
        e_t = self.embeddings[prompt_idx]
        prompts = [c.prompts[i] for i in prompt_idx.tolist()]
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        with torch.autocast("cuda", enabled=self.amp):
            out = self.model(w, e_t)
        times["editor"] = time.perf_counter() - t0
        x_hat = out.image.float()
        x = out.original
        if x is None:
            with torch.no_grad():
                x = self.editor.generator.synthesis(w)
        terms: dict[str, torch.Tensor] = {"l2": latent_l2(w, out.w_edit.float())}
        maps: list = []  # the parser's (keep, outside), once per step, for bg and area

        def regions():
            if not maps:
                maps.extend(self.losses["bg"].maps(x, x_hat, prompts, c.area_region == "part"))
            return maps

        for name, fn in (
            ("id", lambda: self.losses["id"](x, x_hat)),
            ("nce", lambda: self.losses["nce"](x, x_hat, prompts)),
            ("bg", lambda: self.losses["bg"](x, x_hat, keep=regions()[0])),
            ("clip", lambda: self.losses["clip"](x_hat, e_t)),
            (
                "area",
                lambda: mask_area(out.masks, regions()[1] if c.area_region == "part" else None),
            ),
            ("tv", lambda: mask_tv(out.masks)),
        ):
            if getattr(weights, name) and (
                name in self.losses or name in ("area", "tv") and out.masks
            ):
                t0 = time.perf_counter()
                terms[name] = fn()
                times[name] = time.perf_counter() - t0
        ramp = c.mask_scale(self.step)
        total = sum(
            getattr(weights, k) * (ramp if k in ("area", "tv") else 1.0) * v
            for k, v in terms.items()
        )
        return total, {k: v.item() for k, v in terms.items()}, times

    def train_step(self) -> dict:
        c = self.config
        t0 = time.perf_counter()
        w = self.data.sample(c.batch_size, self.data_rng).to(self.device)
        prompt_idx = torch.randint(len(c.prompts), (c.batch_size,), generator=self.data_rng)
        self.editor.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, terms, times = self.losses_for(w, prompt_idx)
        t1 = time.perf_counter()
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.editor.trainable_parameters(), c.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        times["backward"] = time.perf_counter() - t1
        self.step += 1
        return {
            "step": self.step,
            "total": total.item(),
            **terms,
            "grad_norm": float(norm),
            "lr": self.optimizer.param_groups[0]["lr"],
            "mapper_lr": self.optimizer.param_groups[1]["lr"],
            "step_time": time.perf_counter() - t0,
            "times": times,
        }

    # -- the loop ----------------------------------------------------------------------------

    def fit(self, progress=None) -> list[dict]:
        c = self.config
        history = []
        while self.step < c.steps:
            record = self.train_step()
            history.append(record)
            if self.rank == 0:
                if self.step % c.log_every == 0 or self.step == c.steps:
                    with open(self.out / "log.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                if self.step % c.val_every == 0 or self.step == c.steps:
                    self.sample_grid()
                if self.step % c.ckpt_every == 0 or self.step == c.steps:
                    self.save_checkpoint()
            if progress:
                progress(record)
        return history

    def evaluate(self, seed: int = 0) -> dict:
        """Every loss term on the held-out latents (prompts in turn), with its own RNG for the
        augmentations, so that two evaluations differ only by the weights."""
        w = self.data.validation.to(self.device)
        idx = torch.arange(len(w)) % len(self.config.prompts)
        self.editor.eval()
        nce = self.losses.get("nce")
        saved = nce.generator if nce is not None else None
        if nce is not None:
            nce.generator = torch.Generator().manual_seed(seed)
        try:
            with torch.no_grad():
                total, terms, _ = self.losses_for(w, idx)
        finally:
            if nce is not None:
                nce.generator = saved
        return {"total": total.item(), **terms}

    @torch.no_grad()
    def sample_grid(self) -> Path:
        from mcaclip.runtime.io import grid, mask_picture, save_png, to_uint8

        self.editor.eval()
        w = self.data.validation.to(self.device)
        idx = torch.arange(len(w)) % len(self.config.prompts)
        out = self.editor(w, self.embeddings[idx])
        original = out.original if out.original is not None else self.editor.generator.synthesis(w)
        size = self.preset.generator.size
        rows = []
        for b in range(len(w)):
            row = [to_uint8(original[b].cpu().numpy()), to_uint8(out.image[b].cpu().numpy())]
            if out.masks:
                row.append(mask_picture([m[b].cpu().numpy() for m in out.masks], size))
            rows.append(row)
        path = self.out / "samples" / f"step_{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(path, grid(rows))
        return path

    def save_checkpoint(self) -> Path:
        ckpt = self.out / "checkpoints" / f"step_{self.step:06d}"
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        gen, clip = self.sources["generator"], self.sources["clip_weights"]
        self.editor.save(tmp / "editor.safetensors", gen, clip)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_data": self.data_rng.get_state(),
            "rng_aug": self.aug_rng.get_state(),
        }
        torch.save(state, tmp / "state.pt")
        shutil.rmtree(ckpt, ignore_errors=True)
        os.replace(tmp, ckpt)
        atomic_write(self.out / "checkpoints" / "latest", lambda t: Path(t).write_text(ckpt.name))
        for name in ("editor.safetensors", "editor.json"):
            atomic_write(self.out / name, lambda tmp, n=name: shutil.copyfile(ckpt / n, tmp))
        return ckpt

    def _resume(self) -> None:
        latest = self.out / "checkpoints" / "latest"
        if not latest.is_file():
            raise McaError(f"{self.out}: no checkpoint to resume from")
        ckpt = self.out / "checkpoints" / latest.read_text().strip()
        saved = MCAEditor.load(
            ckpt / "editor.safetensors", random_weights=self.config.random_weights
        )
        for name in MCAEditor.TRAINED:
            module = getattr(self.editor, name)
            if module is not None:
                module.load_state_dict(getattr(saved, name).state_dict())
        state = safe_torch_load(ckpt / "state.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.data_rng.set_state(state["rng_data"])
        self.aug_rng.set_state(state["rng_aug"])
        self.step = int(state["step"])
        self.sources = json.loads((ckpt / "editor.json").read_text())["config"]
        self.sources = {k: self.sources[k] for k in ("generator", "clip_weights")}
        log.info("resumed %s at step %d", self.out, self.step)


class _Step(nn.Module):
    """The editor's forward, as the module DistributedDataParallel wraps."""

    def __init__(self, editor: MCAEditor):
        super().__init__()
        self.editor = editor

    def forward(self, w: torch.Tensor, e_t: torch.Tensor):
        return self.editor(w, e_t)
