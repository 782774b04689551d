"""Ground-truth quality benchmark of MCA-CLIP and its baselines in the toy-faces world.

``python -m benchmarks.quality_toyfaces [--quick] [--steps N] [--latents 200] [--seeds 0,1,2]
[--setting both|multi|per-prompt] [--methods a,b] [--area-weight W --tv-weight W --name STEM]``
(the last ones for sweeps)

Methods (trained here with the ordinary trainer on the toy world's networks, ``--world toy``):

===================  =====================================================================
styleclip-mapper     StyleCLIP's latent mapper with its CLIP loss, one model per prompt
cf-clip              CF-CLIP's architecture: text embedding mapping (TEM), no masks, CLIP-NCE
mca-wo-ff            MCA-CLIP with TEM instead of Feature Fusion (ablation "w/o FF")
mca-wo-pre           MCA-CLIP without the mask net (ablation "w/o PRE")
mca-clip             MCA-CLIP: Feature Fusion + latent mapper + Precision Region Editing
===================  =====================================================================

Two settings, both run by default: **per-prompt** (the paper's: every method one model per
prompt) and **multi** (the four text-conditioned methods one model over all benchmark prompts,
the text embedding an input; StyleCLIP's mapper has no text input and keeps one model per
prompt). Every method gets the same steps, batch and seeds (``--seeds``, default 0,1,2; the
tables give the mean over seeds +- their standard deviation); trained runs are reused only for
the same world, steps, batch, seed and mask weights.

For each method and prompt, on held-out latents (W+ of held-out attribute vectors, as e4e
inversions of unseen faces), the metrics are:

* success: the attribute probe reads the target attributes on the edited image (glasses the
  prompt adds may be of either kind the world draws: "yellow glasses" names no shape; until
  2026-12-08 only the counterfactual's round frames counted);
* preservation: share of the other visible attributes the probe reads unchanged, identity
  cosine (the toy identity network), MSE and SSIM outside the target's ground-truth region
  (the renderer's segmentation of the original and of the counterfactual face);
* oracle: PSNR / SSIM to the generator's image of the correctly edited attribute vector;
* mask focus (methods with masks): the mean mask inside the region minus outside it (0: the
  masks are not spatial), and the mean mask;
* mask IoU (methods with masks): mean of the per-layer masks at 64 px, thresholded at 0.5,
  against the ground-truth region;
* CLIP: cosine of the toy CLIP's image and prompt embeddings.

Writes ``benchmarks/results/quality_toyfaces.{json,md,png}`` (``--quick``: ``*_quick``): the
JSON holds every seed's rows (``runs``) and their mean and standard deviation (``results``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS, machine_info
from mcaclip.toyfaces.attributes import CHOICES, LABELS, Face
from mcaclip.toyfaces.demo import TOY_MASK_WEIGHTS
from mcaclip.training.regions import AREA_REGIONS, REGIONS

PROMPTS = {  # prompt -> (attribute changes, ground-truth region label)
    "red hair": ({"hair_colour": "red"}, "hair"),
    "blue goatee": ({"beard": "goatee", "beard_colour": "blue"}, "beard"),
    "green eyes": ({"eye_colour": "green"}, "eyes"),
    "purple lips": ({"lip_colour": "purple"}, "lips"),
    "yellow glasses": ({"glasses": "round", "glasses_colour": "yellow"}, "glasses"),
}
# other prompts of the vocabulary, which nobody tuned on: the demo editor is scored on them too
UNTUNED_PROMPTS = ("orange hair", "pink eyes", "black lips", "green beard", "blue glasses")
PART_ATTRS = {  # prompt's part word -> (attribute changes for colour c, region label)
    "hair": (lambda c: {"hair_colour": c}, "hair"),
    "eyes": (lambda c: {"eye_colour": c}, "eyes"),
    "lips": (lambda c: {"lip_colour": c}, "lips"),
    "goatee": (lambda c: {"beard": "goatee", "beard_colour": c}, "beard"),
    "beard": (lambda c: {"beard": "full", "beard_colour": c}, "beard"),
    "glasses": (lambda c: {"glasses": "round", "glasses_colour": c}, "glasses"),
}


def prompt_changes(prompt: str) -> tuple[dict, str]:
    """Attribute changes and ground-truth region of a toy prompt ("colour part")."""
    if prompt in PROMPTS:
        return PROMPTS[prompt]
    colour, part = prompt.split()
    changes, region = PART_ATTRS[part]
    return changes(colour), region


METHODS = {  # name -> TrainConfig overrides
    "styleclip-mapper": {"method": "styleclip-mapper"},
    "cf-clip": {"fusion": "tem", "no_masks": True},
    "mca-wo-ff": {"fusion": "tem"},
    "mca-wo-pre": {"no_masks": True},
    "mca-clip": {},
}
ATTRS = list(CHOICES)
NO_EDIT = "no edit (reference)"  # the unedited picture, scored like a method


# attributes a prompt sets without naming their value: "yellow glasses" asks for glasses, not
# for round ones. The counterfactual draws round frames on a face without glasses; the judge
# accepts either kind the world draws there (a face that has glasses must keep their kind)
UNNAMED = {"glasses": ("round", "square")}


def counterfactual(face: Face, changes: dict) -> Face:
    """The face as the prompt asks for it; a bald face gets short hair for a hair colour, and
    existing glasses keep their kind."""
    changes = dict(changes)
    if "hair_colour" in changes and face.hair_style == "bald":
        changes["hair_style"] = "short"
    if "glasses" in changes and face.glasses != "none":
        changes["glasses"] = face.glasses
    return dataclasses.replace(face, **changes)


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM of [N, 3, H, W] images in [-1, 1] (7x7 Gaussian window, sigma 1.5),
    averaged over channels and over ``mask`` [N, H, W] pixels (all pixels if None)."""
    a, b = (a + 1) / 2, (b + 1) / 2
    x = torch.arange(7, dtype=torch.float32) - 3
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(3, 1, 7, 7)

    def blur(t):
        return F.conv2d(F.pad(t, (3, 3, 3, 3), mode="reflect"), win, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    s = s.mean(1)  # channels
    if mask is None:
        return s.flatten(1).mean(1)
    m = mask.float()
    return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


# run folder tags of recipe options
RECIPE_TAGS = {
    "mask_init": "mi",
    "nce_distortion": "nd",
    "mask_ramp": "mr",
    "bg_region": "br",
    "area_region": "ar",
}
# values whose meaning changed: runs trained before are not reused (part: since the skin where
# a goatee or glasses grow is free, 2026-12-08)
VALUE_TAGS = {("bg_region", "part"): "partg"}


def _tag(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return "-".join(f"{v:g}" for v in value)
    return f"{value:g}"


def run_key(
    steps: int, batch: int, seed: int, mask_weights: dict, recipe: dict | None = None
) -> str:
    """Folder name of one training setting: the world's generator and CLIP, steps, batch, seed,
    mask weights and the toy recipe's options where set (a trained run is reused only for the
    same setting)."""
    from mcaclip.bundle import sha256
    from mcaclip.toyfaces.world import asset

    world = sha256(asset("generator.safetensors"))[:6] + sha256(asset("clip.safetensors"))[:6]
    weights = f"a{mask_weights['area']:g}-tv{mask_weights['tv']:g}"
    if "bg" in mask_weights:  # the paper's 0.2 unless set
        weights += f"-bg{mask_weights['bg']:g}"
    options = "".join(
        f"-{RECIPE_TAGS[k]}{VALUE_TAGS.get((k, v)) or _tag(v)}"
        for k, v in sorted((recipe or {}).items())
    )
    return f"{world}-steps{steps}-b{batch}-seed{seed}-{weights}{options}"


def train_methods(
    prompts: list[str],
    out: Path,
    steps: int,
    batch: int,
    seed: int,
    mask_weights: dict,
    methods: list[str] | None = None,
    per_prompt: bool = False,
    recipe: dict | None = None,
) -> dict:
    """Train ``methods`` (default: all; skipping runs that exist for the same setting), the
    text-conditioned ones over all prompts or, ``per_prompt``, one model per prompt (the paper's
    setting); ``recipe``: TrainConfig options of the MCA/CF-CLIP variants (``nce_distortion``,
    ``mask_init``); returns {method: {prompt: editor path}}."""
    from mcaclip.training.cli import STYLECLIP_WEIGHTS
    from mcaclip.training.trainer import LossWeights, TrainConfig, Trainer

    recipe = {k: v for k, v in (recipe or {}).items() if v is not None}
    out = out / run_key(steps, batch, seed, mask_weights, recipe)
    editors: dict[str, dict[str, Path]] = {}
    for name in methods or METHODS:
        overrides = METHODS[name]
        apart = per_prompt or name == "styleclip-mapper"
        groups = [[p] for p in prompts] if apart else [prompts]
        editors[name] = {}
        for group in groups:
            run = out / name / ("all" if not apart else group[0].replace(" ", "-"))
            editor = run / "editor.safetensors"
            if not editor.is_file():
                options = {}
                if name == "styleclip-mapper":
                    weights = LossWeights(**STYLECLIP_WEIGHTS)
                else:  # the paper's weights, the mask terms at the toy world's scale
                    weights = LossWeights(**mask_weights)
                    options = recipe
                config = TrainConfig(
                    prompts=group,
                    out=str(run),
                    world="toy",
                    steps=steps,
                    batch_size=batch,
                    seed=seed,
                    weights=weights,
                    val_every=steps,
                    ckpt_every=steps,
                    log_every=max(steps // 10, 1),
                    **overrides,
                    **options,
                )
                t0 = time.perf_counter()
                Trainer(config).fit()
                print(f"trained {name} {group} in {time.perf_counter() - t0:.0f} s", flush=True)
            for p in group:
                editors[name][p] = editor
    return editors


@torch.no_grad()
def attribute_scores(
    probe, edited: torch.Tensor, orig_pred: torch.Tensor, faces: list, cf: list, changes: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image [N]: success (the probe reads every target attribute of the counterfactual
    ``cf`` on ``edited``) and the share of the other attributes, visible on both the face and
    its counterfactual, that it reads as on the original (``orig_pred``)."""
    from mcaclip.toyfaces.data import labels, visibility

    target_idx = [ATTRS.index(a) for a in changes]
    others = [i for i in range(len(ATTRS)) if i not in target_idx]
    vis = visibility(faces)[:, others] & visibility(cf)[:, others]
    pred = probe.predict(edited)
    hit = pred[:, target_idx] == labels(cf)[:, target_idx]
    for j, a in enumerate(changes):  # a part the prompt adds, of a kind it does not name
        if a in UNNAMED:
            added = torch.tensor([getattr(f, a) == "none" for f in faces])
            kinds = torch.tensor([CHOICES[a].index(k) for k in UNNAMED[a]])
            hit[:, j] |= added & torch.isin(pred[:, target_idx[j]], kinds)
    success = hit.all(1).float()
    same = (pred[:, others] == orig_pred[:, others]) & vis
    return success, same.float().sum(1) / vis.float().sum(1).clamp(min=1)


@torch.no_grad()
def render_faces(G, faces: list[Face], batch: int = 50) -> torch.Tensor:
    """The generator's images [N, 3, H, W] of ``faces`` through its mapping, as the world's
    latents are made (the oracle of a counterfactual attribute vector)."""
    from mcaclip.toyfaces.data import encode
    from mcaclip.toyfaces.train import attribute_z

    w = G.broadcast(G.mapping(attribute_z(encode(faces), G.style_dim)))
    return torch.cat([G.synthesis(c) for c in torch.split(w, batch)])


@torch.no_grad()
def evaluate(editors: dict, prompts: list[str], n: int, batch: int = 50) -> tuple[dict, dict]:
    """Metrics per method and prompt, and a few images per method and prompt for the grid."""
    from mcaclip.nn.editor import MCAEditor
    from mcaclip.toyfaces.render import render_batch
    from mcaclip.toyfaces.world import asset, load_identity, load_probe

    faces = [Face(**f) for f in json.loads(asset("test_faces.json").read_text())][:n]
    w = torch.load(asset("test_latents.pt"), weights_only=True)[:n].float()
    probe, ident = load_probe(), load_identity()
    loaded: dict[Path, MCAEditor] = {}  # a multi-prompt editor serves all five prompts

    def load(path: Path) -> MCAEditor:
        if path not in loaded:
            loaded[path] = MCAEditor.load(path).eval()
        return loaded[path]

    first = load(next(iter(next(iter(editors.values())).values())))
    G, clip = first.generator, first.clip
    original = torch.cat([G.synthesis(c) for c in torch.split(w, batch)])
    orig_pred = probe.predict(original)
    orig_id = ident(original)
    results: dict = {}
    samples: dict = {"original": original[:4]}
    for prompt in prompts:
        changes, region_label = prompt_changes(prompt)
        cf = [counterfactual(f, changes) for f in faces]
        _, seg_orig = render_batch(faces)
        _, seg_cf = render_batch(cf)
        label = LABELS[region_label]
        region = torch.from_numpy((seg_orig == label) | (seg_cf == label))
        for a, kinds in UNNAMED.items():  # where any kind the judge accepts would be drawn
            if a in changes:
                for kind in sorted(set(kinds) - {changes[a]}):  # the counterfactual's: seg_cf
                    drawn = [counterfactual(f, {**changes, a: kind}) for f in faces]
                    _, seg_k = render_batch(drawn)
                    region |= torch.from_numpy(seg_k == label)
        oracle = render_faces(G, cf, batch)
        text = clip.embed_prompts([prompt])
        for method, per_prompt in {NO_EDIT: None, **editors}.items():
            if per_prompt is None:  # the reference: what leaving the picture alone scores
                outs, edited = [], original.clamp(-1, 1)
            else:
                editor = load(per_prompt[prompt])
                e = text.expand(n, -1)
                outs = [
                    editor(wc, ec) for wc, ec in zip(torch.split(w, batch), torch.split(e, batch))
                ]
                edited = torch.cat([o.image for o in outs]).clamp(-1, 1)
            success, keep = attribute_scores(probe, edited, orig_pred, faces, cf, changes)
            outside = ~region
            sq = (edited - original).square().mean(1)
            mse_out = (sq * outside).flatten(1).sum(1) / outside.flatten(1).sum(1).clamp(min=1)
            oracle_mse = (edited - oracle).square().flatten(1).mean(1)
            row = {
                "success": float(success.mean()),
                "attributes_kept": float(keep.mean()),
                "identity_cosine": float((ident(edited) * orig_id).sum(1).mean()),
                "mse_outside_region": float(mse_out.mean()),
                "ssim_outside_region": float(ssim(edited, original, outside).mean()),
                "oracle_psnr_db": float((10 * torch.log10(4 / oracle_mse.clamp(min=1e-10))).mean()),
                "oracle_ssim": float(ssim(edited, oracle).mean()),
                "clip_similarity": float((clip.encode_image(edited) @ text.t()).mean()),
                "mask_iou": None,
                "mask_focus": None,
                "mask_mean": None,
            }
            if outs and outs[0].masks:
                size = region.shape[-1]

                def upsampled(o, size=size):  # [B, layers, H, W] at the picture's size
                    return torch.cat(
                        [F.interpolate(m, size=size, mode="bilinear") for m in o.masks], 1
                    )

                per_layer = torch.cat([upsampled(o) for o in outs])
                masks = per_layer.mean(1)
                pred_region = masks > 0.5
                inter = (pred_region & region).flatten(1).sum(1).float()
                union = (pred_region | region).flatten(1).sum(1).float().clamp(min=1)
                row["mask_iou"] = float((inter / union).mean())
                # threshold-free: mean mask inside the region minus outside (0: not spatial)
                inside = (masks * region).flatten(1).sum(1) / region.flatten(1).sum(1).clamp(min=1)
                out_sum = (masks * ~region).flatten(1).sum(1)
                outside_mean = out_sum / (~region).flatten(1).sum(1).clamp(min=1)
                row["mask_focus"] = float((inside - outside_mean).mean())
                row["mask_mean"] = float(masks.mean())
                r = region[:, None].float()
                row["mask_inside_per_layer"] = (
                    ((per_layer * r).sum((2, 3)) / r.sum((2, 3)).clamp(min=1)).mean(0).tolist()
                )
                row["mask_outside_per_layer"] = (
                    ((per_layer * (1 - r)).sum((2, 3)) / (1 - r).sum((2, 3)).clamp(min=1))
                    .mean(0)
                    .tolist()
                )
            results.setdefault(method, {})[prompt] = row
            samples.setdefault(method, {})[prompt] = edited[:4]
        samples.setdefault("oracle", {})[prompt] = oracle[:4]
    return results, samples


COLUMNS = [
    ("success", "success", "{:.0%}"),
    ("attributes_kept", "attrs kept", "{:.0%}"),
    ("identity_cosine", "ID cos", "{:.3f}"),
    ("mse_outside_region", "MSE out", "{:.4f}"),
    ("ssim_outside_region", "SSIM out", "{:.3f}"),
    ("oracle_psnr_db", "oracle PSNR", "{:.1f}"),
    ("oracle_ssim", "oracle SSIM", "{:.3f}"),
    ("mask_iou", "mask IoU", "{:.2f}"),
    ("mask_focus", "mask focus", "{:+.2f}"),
    ("clip_similarity", "CLIP", "{:.3f}"),
]


def aggregate(runs: dict) -> dict:
    """{seed: {method: {prompt: row}}} -> {method: {prompt: row of means, with KEY_std and,
    for the method's mean over prompts, the "all" prompt}} (std over seeds, 0 for one)."""
    seeds = list(runs)
    out: dict = {}
    for method, per_prompt in runs[seeds[0]].items():
        out[method] = {}
        for prompt in [*per_prompt, "all"]:
            row: dict = {}
            for key, _, _ in COLUMNS:
                per_seed = []
                for seed in seeds:
                    rows = runs[seed][method]
                    picked = rows.values() if prompt == "all" else [rows[prompt]]
                    vals = [r[key] for r in picked if r[key] is not None]
                    if vals:
                        per_seed.append(float(np.mean(vals)))
                row[key] = float(np.mean(per_seed)) if per_seed else None
                row[f"{key}_std"] = float(np.std(per_seed)) if per_seed else None
            out[method][prompt] = row
    return out


def summary_table(results: dict) -> str:
    """Markdown of :func:`aggregate`'s output: the methods' means over prompts (+- std over
    seeds), then success per prompt."""

    def cell(row, key, fmt):
        if row[key] is None:
            return "-"
        return fmt.format(row[key]) + " ± " + fmt.format(row[f"{key}_std"]).lstrip("+")

    lines = ["| method | " + " | ".join(c[1] for c in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for method, per_prompt in results.items():
        cells = [cell(per_prompt["all"], key, fmt) for key, _, fmt in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Success per prompt:")
    lines.append("")
    prompts = [p for p in next(iter(results.values())) if p != "all"]
    lines.append("| method | " + " | ".join(prompts) + " |")
    lines.append("|---" * (len(prompts) + 1) + "|")
    for method, per_prompt in results.items():
        cells = [cell(per_prompt[p], "success", "{:.0%}") for p in prompts]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, stem: str, payload: dict, table: str) -> None:
    """``out/stem.json`` and ``out/stem.md``, each written whole (temp file, then rename)."""
    out.mkdir(parents=True, exist_ok=True)
    for ext, text in (("json", json.dumps(payload, indent=2)), ("md", table)):
        path = out / f"{stem}.{ext}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def save_grid(samples: dict, prompts: list[str], path: Path) -> None:
    """Rows: original, oracle (the correctly edited attribute vector), then each method in
    METHODS order; columns: prompts (first held-out latent)."""
    from PIL import Image

    rows = [[samples["original"][0]] * len(prompts), [samples["oracle"][p][0] for p in prompts]]
    rows += [
        [samples[m][p][0] for p in prompts]
        for m in samples
        if m not in ("original", "oracle", NO_EDIT)
    ]
    tiles = torch.stack([torch.stack(r) for r in rows])  # [R, C, 3, H, W]
    r, c, _, h, w = tiles.shape
    grid = tiles.permute(0, 3, 1, 4, 2).reshape(r * h, c * w, 3)
    img = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(img).resize((c * w * 2, r * h * 2), Image.NEAREST).save(tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: few steps and latents")
    ap.add_argument("--steps", type=int, default=1000)  # the README's table
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--latents", type=int, default=200)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument("--area-weight", type=float, default=TOY_MASK_WEIGHTS["area"])
    ap.add_argument("--tv-weight", type=float, default=TOY_MASK_WEIGHTS["tv"])
    ap.add_argument(
        "--nce-distortion",
        type=float,
        help="CLIP-NCE views' perspective strength (default: CF-CLIP's 0.5)",
    )
    ap.add_argument("--mask-init", type=float, help="masks start open at this value")
    ap.add_argument("--bg-weight", type=float, help="background loss weight (paper: 0.2)")
    ap.add_argument(
        "--bg-region",
        choices=REGIONS,
        help="what the background loss keeps (default: the parser's background, the paper)",
    )
    ap.add_argument(
        "--area-region",
        choices=AREA_REGIONS,
        help="what the mask area term counts (default: the whole mask, the paper)",
    )
    ap.add_argument(
        "--mask-ramp",
        metavar="START:END",
        help="mask area/TV weights off until START, full at END (shares of --steps)",
    )
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)} (default: all)",
    )
    ap.add_argument(
        "--setting",
        choices=("both", "per-prompt", "multi"),
        default="both",
        help="per-prompt: one model per prompt for every method (the paper's setting); multi: "
        "the text-conditioned methods learn all prompts in one model (default: both)",
    )
    ap.add_argument(
        "--demo",
        action="store_true",
        help="score the shipped demo editor instead (no training): the five prompts and five "
        "untuned ones of the vocabulary",
    )
    ap.add_argument("--runs", type=Path, default=Path("runs/quality_toyfaces"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--name", help="file stem of the results (default quality_toyfaces[_quick]; sweeps)"
    )
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        ap.error(
            f"--methods: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(METHODS)}"
        )
    if args.demo:
        return demo_main(args)
    prompts = list(PROMPTS)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    if args.quick:
        args.steps, args.latents, prompts, seeds = 4, 8, prompts[:2], seeds[:1]
        args.runs = args.runs.with_name(args.runs.name + "_quick")
    settings = ("per-prompt", "multi") if args.setting == "both" else (args.setting,)
    t0 = time.perf_counter()
    mask_weights = {"area": args.area_weight, "tv": args.tv_weight}
    if args.bg_weight is not None:
        mask_weights["bg"] = args.bg_weight
    ramp = tuple(float(v) for v in args.mask_ramp.split(":")) if args.mask_ramp else None
    recipe = {
        "nce_distortion": args.nce_distortion,
        "mask_init": args.mask_init,
        "mask_ramp": ramp,
        "bg_region": args.bg_region,
        "area_region": args.area_region,
    }
    runs: dict = {s: {} for s in settings}
    train_s = 0.0
    samples: dict = {}
    for setting in settings:
        for seed in seeds:
            t1 = time.perf_counter()
            editors = train_methods(
                prompts,
                args.runs,
                args.steps,
                args.batch_size,
                seed,
                mask_weights,
                methods,
                setting == "per-prompt",
                recipe,
            )
            train_s += time.perf_counter() - t1
            runs[setting][seed], shown = evaluate(editors, prompts, args.latents)
            samples.setdefault(setting, shown)  # the grid shows the first seed
            print(f"{setting} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    results = {s: aggregate(runs[s]) for s in settings}
    stem = args.name or ("quality_toyfaces_quick" if args.quick else "quality_toyfaces")
    table = "".join(
        f"## {setting} (seeds {', '.join(map(str, seeds))})\n\n"
        + summary_table(results[setting])
        + "\n"
        for setting in settings
    )
    payload = {
        "machine": machine_info(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "latents": args.latents,
        "seeds": seeds,
        "settings": list(settings),
        "mask_weights": mask_weights,
        "recipe": {k: v for k, v in recipe.items() if v is not None},  # {}: the defaults
        "prompts": {p: PROMPTS[p][0] for p in prompts},
        "train_seconds_this_invocation": train_s,  # 0 when every editor was already trained
        "eval_seconds": time.perf_counter() - t0 - train_s,
        "results": results,
        "runs": {s: {str(k): v for k, v in r.items()} for s, r in runs.items()},
    }
    write_outputs(args.out, stem, payload, table)
    for setting in settings:
        suffix = "" if setting == settings[0] else f"_{setting}"
        save_grid(samples[setting], prompts, args.out / f"{stem}{suffix}.png")
    print(table)
    print(f"train {train_s:.0f} s, total {time.perf_counter() - t0:.0f} s")
    return 0


def demo_main(args) -> int:
    """``--demo``: the demo editor (one model, any prompt) on tuned and untuned prompts."""
    from mcaclip.toyfaces.demo import DEMO
    from mcaclip.toyfaces.world import asset

    t0 = time.perf_counter()
    prompts = [*PROMPTS, *UNTUNED_PROMPTS]
    n = args.latents
    if args.quick:
        prompts, n = [prompts[0], prompts[-1]], 8
    editor = asset(DEMO)
    results, samples = evaluate({"demo editor": {p: editor for p in prompts}}, prompts, n)
    tuned = [p for p in prompts if p in PROMPTS]
    split = {
        method: {
            "benchmark prompts": _mean_row([rows[p] for p in tuned]),
            "untuned prompts": _mean_row([rows[p] for p in prompts if p not in PROMPTS]),
        }
        for method, rows in results.items()
    }
    lines = ["| editor | prompts | success | attrs kept | MSE out | mask IoU | mask focus |"]
    lines.append("|---|---|---|---|---|---|---|")
    for method, groups in split.items():
        for group, r in groups.items():
            if r is None:
                continue
            iou = "-" if r["mask_iou"] is None else f"{r['mask_iou']:.2f}"
            focus = "-" if r["mask_focus"] is None else f"{r['mask_focus']:+.2f}"
            lines.append(
                f"| {method} | {group} | {r['success']:.0%} | {r['attributes_kept']:.0%} | "
                f"{r['mse_outside_region']:.4f} | {iou} | {focus} |"
            )
    lines += ["", "| prompt | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
    for p in prompts:
        cells = " | ".join(f"{r[p]['success']:.0%}" for r in results.values())
        lines.append(f"| {p} | {cells} |")
    table = "\n".join(lines) + "\n"
    payload = {
        "machine": machine_info(),
        "editor": str(editor),
        "latents": n,
        "prompts": {p: prompt_changes(p)[0] for p in prompts},
        "untuned_prompts": [p for p in prompts if p not in PROMPTS],
        "seconds": time.perf_counter() - t0,
        "summary": split,
        "results": results,
    }
    stem = args.name or ("quality_toyfaces_demo_quick" if args.quick else "quality_toyfaces_demo")
    write_outputs(args.out, stem, payload, table)
    save_grid(samples, prompts, args.out / f"{stem}.png")
    print(table)
    return 0


def _mean_row(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    return {
        k: None if rows[0][k] is None else float(np.mean([r[k] for r in rows]))
        for k in ("success", "attributes_kept", "mse_outside_region", "mask_iou", "mask_focus")
    }


if __name__ == "__main__":
    raise SystemExit(main())
